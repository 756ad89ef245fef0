//! Observability and limits of real `sett` processes:
//!
//! 1. `/metrics` on `--listen-metrics-urls` is valid Prometheus text and
//!    its series move with traffic: puts move the committed and applied
//!    indexes, the Raft log's fsync histogram and the per-call gRPC
//!    counters (a refused call is counted with its code); an open watch
//!    shows in the watcher gauge; a lease grant in the lease series.
//!    `/health` answers etcd's JSON.
//! 2. `--log-format json`: every line a member writes is a JSON object
//!    with `level` and `message`.
//! 3. gRPC reflection (v1 and v1alpha) lists the client services.
//! 4. `--max-concurrent-streams 2`: a third stream on one connection waits
//!    until one of the first two closes.
//! 5. `--config-check` shows the new flags and refuses bad values.
//!
//! Needs `target/<profile>/sett` (`cargo build -p sett-server --bin sett`).

#[path = "../src/cluster.rs"]
#[allow(dead_code)]
mod cluster;

use cluster::{connect, member_binary, run_scenario, Cluster, ClusterOptions};
use etcd_client::WatchStream;
use prometheus_parse::{LineInfo, Scrape, Value};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

/// Bound on one answer from a running member.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on a value polled until it reaches what is expected.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between two polls.
const POLL: Duration = Duration::from_millis(100);
/// Puts of the traffic step.
const PUTS: u64 = 20;

/// A port free on 127.0.0.1 right now.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("local address").port()
}

/// `GET path` over plain HTTP/1.1 on 127.0.0.1:`port`: status and body.
async fn http_get(port: u16, path: &str) -> (u16, String) {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("connect to the metrics port {port}: {e}"));
        let req =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.expect("send request");
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.expect("read response");
        buf
    };
    let buf = timeout(RESPONSE_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| panic!("no answer to GET {path} within {RESPONSE_TIMEOUT:?}"));
    let text = String::from_utf8(buf).expect("a UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("headers end");
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    assert!(
        head.starts_with("HTTP/1.1 "),
        "an HTTP/1.1 answer: {head:?}"
    );
    let head_lower = head.to_ascii_lowercase();
    assert!(
        !head_lower.contains("transfer-encoding: chunked"),
        "a body with a length: {head:?}"
    );
    (status, body.to_owned())
}

/// Scrapes `/metrics` and parses it; any line that is neither a sample
/// nor a known comment fails the test.
async fn scrape(port: u16) -> Scrape {
    let (status, body) = http_get(port, "/metrics").await;
    assert_eq!(status, 200, "GET /metrics: {body}");
    for line in body.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with('#') {
            let known = ["# HELP ", "# TYPE ", "# UNIT ", "# EOF"]
                .iter()
                .any(|p| line.starts_with(p));
            assert!(known, "unknown comment line in /metrics: {line:?}");
            continue;
        }
        assert!(
            matches!(LineInfo::parse(line), LineInfo::Sample { .. }),
            "unparsable line in /metrics: {line:?}"
        );
    }
    Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("/metrics parses")
}

/// The value of the one sample of `metric` whose labels include
/// `labels` (histograms: the bucket count is not a value; use `_count`).
fn value(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = s
        .samples
        .iter()
        .filter(|x| x.metric == metric)
        .filter(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .filter_map(|x| match x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
            _ => None,
        })
        .collect();
    assert!(
        matching.len() <= 1,
        "{metric} {labels:?} matches {} samples",
        matching.len()
    );
    matching.first().copied()
}

/// [`value`], which must exist.
#[track_caller]
fn must(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    value(s, metric, labels).unwrap_or_else(|| panic!("no series {metric} {labels:?}"))
}

/// A counter that may not exist yet (no call counted so far) as 0.
fn count(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    value(s, metric, labels).unwrap_or(0.0)
}

const KV_PUT: [(&str, &str); 3] = [
    ("grpc_type", "unary"),
    ("grpc_service", "etcdserverpb.KV"),
    ("grpc_method", "Put"),
];

fn with_code<'a>(labels: &[(&'a str, &'a str)], code: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut v = labels.to_vec();
    v.push(("grpc_code", code));
    v
}

/// Polls `/metrics` until `ok` holds for the scrape (at most
/// [`SETTLE_TIMEOUT`]); returns that scrape.
async fn scrape_until(port: u16, what: &str, ok: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let s = scrape(port).await;
        if ok(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not reached within {SETTLE_TIMEOUT:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Opens a watch and waits for its creation.
async fn open_watch(client: &mut etcd_client::Client, key: &str) -> WatchStream {
    let mut stream = timeout(RESPONSE_TIMEOUT, client.watch(key, None))
        .await
        .expect("watch call answered")
        .expect("watch opened");
    let created = timeout(RESPONSE_TIMEOUT, stream.message())
        .await
        .expect("created response in time")
        .expect("stream alive")
        .expect("a response");
    assert!(created.created(), "first response creates: {created:?}");
    stream
}

#[test]
fn series_move_with_traffic() {
    run_scenario("series_move_with_traffic", async {
        let port = free_port();
        let cluster = Cluster::start(ClusterOptions {
            members: 1,
            extra_args: vec![format!("--listen-metrics-urls=http://127.0.0.1:{port}")],
            ..ClusterOptions::default()
        });
        let mut client = connect(&cluster.client_url(0)).await;

        // The health check runs every second: wait until it has passed.
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let (status, body) = http_get(port, "/health").await;
            if status == 200 {
                assert_eq!(body, r#"{"health":"true"}"#);
                break;
            }
            assert_eq!((status, body.as_str()), (503, r#"{"health":"false"}"#));
            assert!(Instant::now() < deadline, "/health never turned true");
            tokio::time::sleep(POLL).await;
        }

        let before = scrape(port).await;
        assert_eq!(must(&before, "etcd_server_has_leader", &[]), 1.0);
        assert_eq!(must(&before, "etcd_server_is_leader", &[]), 1.0);
        assert!(must(&before, "sett_raft_term", &[]) >= 1.0);
        let no_labels: [(&str, &str); 0] = [];
        for series in [
            "etcd_server_leader_changes_seen_total",
            "etcd_server_proposals_pending",
            "etcd_server_proposals_failed_total",
            "etcd_mvcc_db_total_size_in_bytes",
            "etcd_debugging_mvcc_keys_total",
            "etcd_debugging_mvcc_current_revision",
            "etcd_debugging_mvcc_compact_revision",
            "etcd_debugging_mvcc_watcher_total",
            "etcd_disk_backend_commit_duration_seconds_count",
            "sett_apply_duration_seconds_count",
            "sett_engine_value_log_bytes",
            "sett_engine_memtable_bytes",
        ] {
            must(&before, series, &no_labels);
        }
        must(&before, "sett_engine_tables", &[("level", "0")]);
        assert!(must(&before, "etcd_server_leader_changes_seen_total", &[]) >= 1.0);

        for i in 0..PUTS {
            timeout(RESPONSE_TIMEOUT, client.put(format!("m/{i}"), "v", None))
                .await
                .expect("put answered")
                .expect("put succeeds");
        }
        let refused = timeout(RESPONSE_TIMEOUT, client.put("", "v", None))
            .await
            .expect("put answered");
        match refused {
            Err(etcd_client::Error::GRpcStatus(s)) => {
                assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}")
            }
            other => panic!("an empty key is refused: {other:?}"),
        }
        let watch = open_watch(&mut client, "w").await;
        let lease = timeout(RESPONSE_TIMEOUT, client.lease_grant(60, None))
            .await
            .expect("grant answered")
            .expect("grant succeeds");
        assert!(lease.id() != 0);

        let after = scrape(port).await;
        let delta = |metric: &str, labels: &[(&str, &str)]| {
            count(&after, metric, labels) - count(&before, metric, labels)
        };
        let n = PUTS as f64;
        assert!(
            delta("etcd_server_proposals_committed_total", &[]) >= n,
            "committed moved by at least {n}"
        );
        assert!(
            delta("etcd_server_proposals_applied_total", &[]) >= n,
            "applied moved by at least {n}"
        );
        assert!(delta("sett_raft_commit_index", &[]) >= n);
        assert!(delta("sett_raft_applied_index", &[]) >= n);
        assert!(
            delta("etcd_disk_wal_fsync_duration_seconds_count", &[]) >= 1.0,
            "the log's fsyncs are timed"
        );
        assert!(delta("sett_apply_duration_seconds_count", &[]) >= 1.0);
        assert_eq!(
            delta("grpc_server_handled_total", &with_code(&KV_PUT, "OK")),
            n,
            "every put handled OK"
        );
        assert_eq!(
            delta(
                "grpc_server_handled_total",
                &with_code(&KV_PUT, "InvalidArgument")
            ),
            1.0,
            "the refused put counted with its code"
        );
        assert_eq!(delta("grpc_server_started_total", &KV_PUT), n + 1.0);
        assert_eq!(
            delta("grpc_server_handling_seconds_count", &KV_PUT),
            n + 1.0
        );
        assert!(must(&after, "etcd_debugging_mvcc_watcher_total", &[]) >= 1.0);
        assert!(must(&after, "etcd_debugging_mvcc_watch_stream_total", &[]) >= 1.0);
        let watch_labels = [
            ("grpc_type", "bidi_stream"),
            ("grpc_service", "etcdserverpb.Watch"),
            ("grpc_method", "Watch"),
        ];
        assert!(delta("grpc_server_started_total", &watch_labels) >= 1.0);
        assert_eq!(delta("etcd_debugging_lease_granted_total", &[]), 1.0);
        assert!(must(&after, "sett_mvcc_leases", &[]) >= 1.0);
        assert!(must(&after, "etcd_debugging_mvcc_keys_total", &[]) >= n);
        assert!(must(&after, "etcd_debugging_mvcc_current_revision", &[]) >= n + 1.0);
        assert!(must(&after, "etcd_mvcc_db_total_size_in_bytes", &[]) > 0.0);
        assert_eq!(must(&after, "etcd_server_has_leader", &[]), 1.0);
        assert_eq!(must(&after, "etcd_server_proposals_pending", &[]), 0.0);

        // The watch ends: its watcher and stream leave the gauges, and
        // the call is counted as handled.
        let handled_watches = |s: &Scrape| {
            s.samples
                .iter()
                .filter(|x| x.metric == "grpc_server_handled_total")
                .filter(|x| x.labels.get("grpc_method") == Some("Watch"))
                .filter_map(|x| match x.value {
                    Value::Counter(v) | Value::Untyped(v) => Some(v),
                    _ => None,
                })
                .sum::<f64>()
        };
        let handled_before = handled_watches(&after);
        drop(watch);
        drop(client);
        scrape_until(port, "the watch leaves the gauges", |s| {
            must(s, "etcd_debugging_mvcc_watcher_total", &[]) == 0.0
                && must(s, "etcd_debugging_mvcc_watch_stream_total", &[]) == 0.0
                && handled_watches(s) >= handled_before + 1.0
        })
        .await;
        drop(cluster);
    });
}

#[test]
fn json_logs_are_one_object_per_line() {
    run_scenario("json_logs_are_one_object_per_line", async {
        let mut cluster = Cluster::start(ClusterOptions {
            members: 1,
            extra_args: vec!["--log-format=json".to_owned()],
            ..ClusterOptions::default()
        });
        let mut client = connect(&cluster.client_url(0)).await;
        timeout(RESPONSE_TIMEOUT, client.put("k", "v", None))
            .await
            .expect("put answered")
            .expect("put succeeds");
        drop(client);
        cluster.stop(0);
        let log = std::fs::read_to_string(cluster.dir().join("m1.log")).expect("member log");
        let mut lines = 0;
        for line in log.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
            let level = v["level"].as_str();
            assert!(
                matches!(level, Some("ERROR" | "WARN" | "INFO" | "DEBUG" | "TRACE")),
                "level in {line}"
            );
            assert!(v["message"].is_string(), "message in {line}");
            lines += 1;
        }
        assert!(
            log.contains(r#""message":"member started""#),
            "the start is logged: {log}"
        );
        assert!(lines >= 2, "a start and a stop at least: {log}");
    });
}

#[test]
fn reflection_lists_the_client_services() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as AlphaClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as AlphaRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse as AlphaResponse;
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest as AlphaServerRequest;

    run_scenario("reflection_lists_the_client_services", async {
        let cluster = Cluster::start(ClusterOptions {
            members: 1,
            ..ClusterOptions::default()
        });
        let channel = tonic::transport::Endpoint::from_shared(cluster.client_url(0))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");

        let ask = |m: MessageRequest| ServerReflectionRequest {
            host: String::new(),
            message_request: Some(m),
        };
        let mut v1 = ServerReflectionClient::new(channel.clone());
        let requests = vec![
            ask(MessageRequest::ListServices(String::new())),
            ask(MessageRequest::FileContainingSymbol(
                "etcdserverpb.KV".into(),
            )),
            ask(MessageRequest::FileContainingSymbol(
                "sett.raft.v1.Raft".into(),
            )),
        ];
        let mut answers = timeout(
            RESPONSE_TIMEOUT,
            v1.server_reflection_info(request_stream(requests)),
        )
        .await
        .expect("reflection answered")
        .expect("reflection call")
        .into_inner();
        let services = match next_answer(&mut answers).await {
            MessageResponse::ListServicesResponse(l) => {
                let mut names: Vec<String> = l.service.into_iter().map(|s| s.name).collect();
                names.sort();
                names
            }
            other => panic!("list services: {other:?}"),
        };
        for want in [
            "etcdserverpb.KV",
            "etcdserverpb.Watch",
            "etcdserverpb.Lease",
            "etcdserverpb.Cluster",
            "etcdserverpb.Maintenance",
            "sett.v1.Sett",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
        ] {
            assert!(services.iter().any(|s| s == want), "{want} in {services:?}");
        }
        assert!(
            !services.iter().any(|s| s.starts_with("sett.raft.")),
            "the peer transport is not listed: {services:?}"
        );
        match next_answer(&mut answers).await {
            MessageResponse::FileDescriptorResponse(f) => {
                assert!(!f.file_descriptor_proto.is_empty(), "KV's file comes back")
            }
            other => panic!("file containing etcdserverpb.KV: {other:?}"),
        }
        // The descriptors are registered whole; only the listing leaves
        // the peer service out.
        let _ = next_answer(&mut answers).await;

        let mut alpha = AlphaClient::new(channel);
        let request = AlphaServerRequest {
            host: String::new(),
            message_request: Some(AlphaRequest::ListServices(String::new())),
        };
        let mut answers = timeout(
            RESPONSE_TIMEOUT,
            alpha.server_reflection_info(request_stream(vec![request])),
        )
        .await
        .expect("v1alpha answered")
        .expect("v1alpha call")
        .into_inner();
        let answer = timeout(RESPONSE_TIMEOUT, answers.message())
            .await
            .expect("answer in time")
            .expect("stream alive")
            .expect("an answer");
        match answer.message_response {
            Some(AlphaResponse::ListServicesResponse(l)) => {
                let names: Vec<String> = l.service.into_iter().map(|s| s.name).collect();
                assert!(names.iter().any(|n| n == "etcdserverpb.KV"), "{names:?}");
                assert!(
                    names
                        .iter()
                        .any(|n| n == "grpc.reflection.v1alpha.ServerReflection"),
                    "{names:?}"
                );
            }
            other => panic!("v1alpha list services: {other:?}"),
        }
    });
}

/// The next answer of a v1 reflection stream.
async fn next_answer(
    answers: &mut tonic::Streaming<tonic_reflection::pb::v1::ServerReflectionResponse>,
) -> tonic_reflection::pb::v1::server_reflection_response::MessageResponse {
    timeout(RESPONSE_TIMEOUT, answers.message())
        .await
        .expect("answer in time")
        .expect("stream alive")
        .expect("an answer")
        .message_response
        .expect("a response")
}

/// A request stream of `items`; the client's side then ends (the server
/// still answers each request first).
fn request_stream<T: Send + 'static>(
    items: Vec<T>,
) -> impl tonic::codegen::tokio_stream::Stream<Item = T> + Send + 'static {
    tonic::codegen::tokio_stream::iter(items)
}

#[test]
fn a_third_stream_waits_for_a_free_slot() {
    run_scenario("a_third_stream_waits_for_a_free_slot", async {
        let port = free_port();
        let cluster = Cluster::start(ClusterOptions {
            members: 1,
            extra_args: vec![
                "--max-concurrent-streams=2".to_owned(),
                format!("--listen-metrics-urls=http://127.0.0.1:{port}"),
            ],
            ..ClusterOptions::default()
        });
        // One client, one endpoint: one HTTP/2 connection.
        let mut client = connect(&cluster.client_url(0)).await;
        let first = open_watch(&mut client, "a").await;
        let mut second = open_watch(&mut client, "b").await;
        let mut third_client = client.clone();
        let mut third = tokio::spawn(async move { open_watch(&mut third_client, "c").await });
        // Writes go through another connection and reach the two open
        // watches; the third has not got a stream.
        let mut writer = connect(&cluster.client_url(0)).await;
        timeout(RESPONSE_TIMEOUT, writer.put("b", "1", None))
            .await
            .expect("put answered")
            .expect("put succeeds");
        let event = timeout(RESPONSE_TIMEOUT, second.message())
            .await
            .expect("event in time")
            .expect("stream alive")
            .expect("an event");
        assert_eq!(event.events().len(), 1);
        // If the limit were not applied the third watch would be created
        // in milliseconds; with it, it cannot be while two are open.
        assert!(
            timeout(Duration::from_secs(2), &mut third).await.is_err(),
            "a third stream opened on a connection limited to two"
        );
        let s = scrape(port).await;
        assert_eq!(
            must(&s, "etcd_debugging_mvcc_watch_stream_total", &[]),
            2.0,
            "the server sees only two watch streams"
        );
        // Closing one frees a slot: the queued one proceeds.
        drop(first);
        let third = timeout(RESPONSE_TIMEOUT, third)
            .await
            .expect("the third watch opens once a slot is free")
            .expect("the third watch's task");
        drop(third);
        drop(second);
    });
}

#[test]
fn config_check_shows_and_validates_the_flags() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let run = |extra: &[&str]| {
        std::process::Command::new(member_binary())
            .arg("--config-check")
            .arg(format!("--data-dir={}", dir.path().join("m").display()))
            .args(extra)
            .output()
            .expect("run sett --config-check")
    };
    let out = run(&[
        "--listen-metrics-urls=http://127.0.0.1:9101,http://localhost:9102",
        "--log-format=json",
        "--max-concurrent-streams=2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON configuration");
    assert_eq!(
        cfg["listen_metrics_urls"],
        serde_json::json!(["http://127.0.0.1:9101", "http://localhost:9102"])
    );
    assert_eq!(cfg["log_format"], "json");
    assert_eq!(cfg["max_concurrent_streams"], 2);

    let defaults = run(&[]);
    assert!(defaults.status.success());
    let cfg: serde_json::Value = serde_json::from_slice(&defaults.stdout).expect("JSON");
    assert_eq!(cfg["listen_metrics_urls"], serde_json::json!([]));
    assert_eq!(cfg["log_format"], "console");
    assert_eq!(cfg["max_concurrent_streams"], u64::from(u32::MAX));

    for (bad, says) in [
        (
            "--listen-metrics-urls=ftp://127.0.0.1:9101",
            "--listen-metrics-urls",
        ),
        ("--listen-metrics-urls=http://127.0.0.1", "must name a port"),
        ("--max-concurrent-streams=0", "--max-concurrent-streams"),
        ("--log-format=xml", "--log-format"),
    ] {
        let out = run(&[bad]);
        assert_eq!(out.status.code(), Some(2), "{bad} is refused");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{bad}: {err}");
    }
}
