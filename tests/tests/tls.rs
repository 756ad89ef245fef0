//! TLS on the client and peer URLs, against real `sett` processes with
//! certificates made here (`rcgen`): a CA, member certificates for
//! `127.0.0.1` and `localhost` (usable as server and client
//! certificates), a client certificate, and a second, unrelated CA.
//!
//! 1. `mtls_cluster_serves_trusted_clients_only`: three members with
//!    `https://` peer and client URLs, both requiring client certificates.
//!    Writes and reads work on every member through sett-client, also
//!    through a follower (which forwards the write to the leader over the
//!    peer TLS) and a follower's LeaseTimeToLive (forwarded to the
//!    leader's client URL over TLS); etcdctl 3.4 works with `--cacert
//!    --cert --key`, and settctl with the same flags. Refused: plaintext
//!    to the TLS port, a client trusting the wrong CA, a client without a
//!    certificate, a client certificate from the wrong CA; none of them, nor a client that never starts its
//!    handshake, keeps a trusted client out. A restart's configuration
//!    (`member.json`) keeps TLS on.
//! 2. `member_with_a_foreign_peer_certificate_stays_outside`: the third
//!    member's peer certificate comes from the other CA. The other two form
//!    a quorum and serve; the third never learns of a leader and its
//!    writes fail.
//! 3. `config_check_names_the_bad_tls_flag`: `sett --config-check` exits 2
//!    naming the flag for an `https://` URL without a certificate,
//!    `--client-cert-auth` without a CA, a missing and a non-PEM
//!    certificate file; a good configuration passes.
//!
//! Waits are bounded polls; nothing asserts a duration. Needs
//! `target/<profile>/sett` and `/usr/bin/etcdctl` 3.4.

#[path = "../src/cluster.rs"]
#[allow(dead_code)]
mod cluster;

use cluster::{built_binary, member_binary, run_scenario, two_free_ports, ExtraMember};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use sett_client::etcdserverpb::kv_client::KvClient;
use sett_client::etcdserverpb::lease_client::LeaseClient;
use sett_client::etcdserverpb::{LeaseTimeToLiveRequest, PutRequest};
use sett_client::{Client, ConnectOptions, GetOptions, PutOptions, RetryOptions, TlsOptions};
use sett_tests::etcd_ref::{etcdctl, require_binaries};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Bound on the cluster electing a leader all expected members agree on.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on one call of a test client.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between two polls.
const POLL: Duration = Duration::from_millis(200);
const TOKEN: &str = "sett-tls-test";

/// A certificate authority that signs certificates into a directory.
struct Ca {
    params: CertificateParams,
    key: KeyPair,
}

impl Ca {
    /// A new CA named `name`, its certificate written to `<dir>/<name>.pem`.
    fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).expect("write CA");
        Ca { params, key }
    }

    /// A certificate for `name` (CN) with `usages`, valid for 127.0.0.1
    /// and localhost; writes `<dir>/<name>.pem` and `<dir>/<name>-key.pem`
    /// and returns their paths.
    fn issue(
        &self,
        dir: &Path,
        name: &str,
        usages: &[ExtendedKeyUsagePurpose],
    ) -> (PathBuf, PathBuf) {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = usages.to_vec();
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let key = KeyPair::generate().expect("leaf key");
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("leaf certificate");
        let (cert_path, key_path) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}-key.pem")),
        );
        std::fs::write(&cert_path, cert.pem()).expect("write certificate");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        (cert_path, key_path)
    }
}

const BOTH: &[ExtendedKeyUsagePurpose] = &[
    ExtendedKeyUsagePurpose::ServerAuth,
    ExtendedKeyUsagePurpose::ClientAuth,
];
const CLIENT: &[ExtendedKeyUsagePurpose] = &[ExtendedKeyUsagePurpose::ClientAuth];

/// The files of a test: `ca.pem` (the cluster's CA), `other-ca.pem`, a
/// member certificate from each, a client certificate from each.
struct Pki {
    dir: tempfile::TempDir,
    member: (PathBuf, PathBuf),
    foreign_member: (PathBuf, PathBuf),
    client: (PathBuf, PathBuf),
    foreign_client: (PathBuf, PathBuf),
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("sett-tls-")
            .tempdir()
            .expect("temporary directory");
        let ca = Ca::new(dir.path(), "ca");
        let other = Ca::new(dir.path(), "other-ca");
        Pki {
            member: ca.issue(dir.path(), "member", BOTH),
            foreign_member: other.issue(dir.path(), "foreign-member", BOTH),
            client: ca.issue(dir.path(), "client", CLIENT),
            foreign_client: other.issue(dir.path(), "foreign-client", CLIENT),
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    fn other_ca(&self) -> PathBuf {
        self.path("other-ca.pem")
    }

    /// Client TLS settings: trusting `ca`, presenting `cert` if given.
    fn client_tls(&self, ca: &Path, cert: Option<&(PathBuf, PathBuf)>) -> TlsOptions {
        let tls = TlsOptions::new().with_ca_file(ca);
        match cert {
            Some((c, k)) => tls.with_client_cert_files(c, k),
            None => tls,
        }
    }

    /// The settings of a well-behaved client.
    fn good_client(&self) -> TlsOptions {
        self.client_tls(&self.ca(), Some(&self.client))
    }
}

/// One planned member: name, ports, and the peer certificate it uses.
struct Plan {
    name: String,
    client_port: u16,
    peer_port: u16,
    peer_cert: (PathBuf, PathBuf),
}

impl Plan {
    fn client_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.peer_port)
    }
}

/// Every flag of member `p` of `plans`, both sides TLS with client
/// certificates required.
fn member_args(pki: &Pki, plans: &[Plan], p: &Plan, data_dir: &Path) -> Vec<String> {
    let initial_cluster = plans
        .iter()
        .map(|q| format!("{}={}", q.name, q.peer_url()))
        .collect::<Vec<_>>()
        .join(",");
    let s = |p: &Path| p.display().to_string();
    vec![
        format!("--name={}", p.name),
        format!("--data-dir={}", data_dir.display()),
        format!("--listen-client-urls={}", p.client_url()),
        format!("--advertise-client-urls={}", p.client_url()),
        format!("--listen-peer-urls={}", p.peer_url()),
        format!("--initial-advertise-peer-urls={}", p.peer_url()),
        format!("--initial-cluster={initial_cluster}"),
        "--initial-cluster-state=new".to_owned(),
        format!("--initial-cluster-token={TOKEN}"),
        "--heartbeat-interval=50".to_owned(),
        "--election-timeout=500".to_owned(),
        format!("--cert-file={}", s(&pki.member.0)),
        format!("--key-file={}", s(&pki.member.1)),
        "--client-cert-auth".to_owned(),
        format!("--trusted-ca-file={}", s(&pki.ca())),
        format!("--peer-cert-file={}", s(&p.peer_cert.0)),
        format!("--peer-key-file={}", s(&p.peer_cert.1)),
        "--peer-client-cert-auth".to_owned(),
        format!("--peer-trusted-ca-file={}", s(&pki.ca())),
    ]
}

/// `sett` with `args` and no `SETT_*` variable: exit code, stdout, stderr.
fn run_sett(args: &[String]) -> (i32, String, String) {
    let mut cmd = Command::new(member_binary());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SETT_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.args(args).output().expect("run sett");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The resolved configuration `sett --config-check args` prints.
fn config_of(args: &[String]) -> serde_json::Value {
    let mut all = vec!["--config-check".to_owned()];
    all.extend_from_slice(args);
    let (code, out, err) = run_sett(&all);
    assert_eq!(code, 0, "config-check of {args:?} failed: {err}");
    serde_json::from_str(&out).expect("config-check prints JSON")
}

/// Three members; member `foreign` (if any) gets the other CA's peer
/// certificate. Names are picked so that the member that initializes the
/// cluster (the smallest node id) is not the foreign one.
fn plan(pki: &Pki, foreign: bool) -> Vec<Plan> {
    let mut plans: Vec<Plan> = (1..=3)
        .map(|i| {
            let (client_port, peer_port) = two_free_ports();
            Plan {
                name: format!("m{i}"),
                client_port,
                peer_port,
                peer_cert: pki.member.clone(),
            }
        })
        .collect();
    if foreign {
        // Ask sett for the node ids; the largest is never the initializer.
        let ids: Vec<u64> = plans
            .iter()
            .map(|p| {
                let dir = pki.path(&format!("probe-{}", p.name));
                config_of(&member_args(pki, &plans, p, &dir))["node_id"]
                    .as_u64()
                    .expect("node_id")
            })
            .collect();
        let last = (0..plans.len()).max_by_key(|&i| ids[i]).expect("members");
        plans[last].peer_cert = pki.foreign_member.clone();
        // Put it last, so that indexes 0 and 1 are the healthy pair.
        let p = plans.remove(last);
        plans.push(p);
    }
    plans
}

/// Spawns every planned member.
fn spawn_all(pki: &Pki, plans: &[Plan]) -> Vec<ExtraMember> {
    plans
        .iter()
        .map(|p| {
            let mut m = ExtraMember::new(pki.dir.path(), &p.name);
            m.client_url = p.client_url();
            m.peer_url = p.peer_url();
            let args = member_args(pki, plans, p, &m.data_dir);
            m.spawn(&member_binary(), &args);
            m
        })
        .collect()
}

fn options(tls: TlsOptions) -> ConnectOptions {
    ConnectOptions::default()
        .with_connect_timeout(Duration::from_secs(3))
        .with_request_timeout(CALL_TIMEOUT)
        .with_retry(RetryOptions::none())
        .with_tls(tls)
}

/// Member `url`'s leader as it reports it (0: none), over TLS.
async fn leader_seen_by(url: &str, tls: &TlsOptions) -> Result<u64, String> {
    let call = async {
        let client = Client::connect([url], options(tls.clone()))
            .await
            .map_err(|e| e.to_string())?;
        let s = client
            .maintenance()
            .status(url)
            .await
            .map_err(|e| e.to_string())?;
        Ok(s.leader)
    };
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))
}

/// Waits until every member of `members` names the same leader.
async fn wait_agreed_leader(members: &[&ExtraMember], tls: &TlsOptions) -> u64 {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let mut seen = Vec::new();
        for m in members {
            seen.push(leader_seen_by(&m.client_url, tls).await);
        }
        if let Ok(first) = &seen[0] {
            if *first != 0 && seen.iter().all(|s| s.as_ref() == Ok(first)) {
                return *first;
            }
        }
        let tails: Vec<String> = members
            .iter()
            .map(|m| format!("--- {}:\n{}", m.name, m.log_tail()))
            .collect();
        assert!(
            Instant::now() < deadline,
            "no agreed leader within {START_TIMEOUT:?}: {seen:?}\n{}",
            tails.join("\n")
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Whether a client with `tls` (or none) can get a Status from `url`.
async fn can_connect(url: &str, tls: Option<TlsOptions>) -> Result<(), String> {
    let mut opts = options(TlsOptions::new());
    opts.tls = tls;
    let call = async {
        let client = Client::connect([url], opts)
            .await
            .map_err(|e| e.to_string())?;
        client
            .maintenance()
            .status(url)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    };
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))
}

#[test]
fn mtls_cluster_serves_trusted_clients_only() {
    require_binaries();
    run_scenario("mtls_cluster_serves_trusted_clients_only", async {
        let pki = Pki::new();
        let plans = plan(&pki, false);
        let members = spawn_all(&pki, &plans);
        let all: Vec<&ExtraMember> = members.iter().collect();
        let good = pki.good_client();
        let leader = wait_agreed_leader(&all, &good).await;

        // Through each member alone, a write, then a read on every member.
        let urls: Vec<String> = members.iter().map(|m| m.client_url.clone()).collect();
        for (i, url) in urls.iter().enumerate() {
            let client = Client::connect([url], options(good.clone()))
                .await
                .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
            client
                .kv()
                .put(format!("k{i}"), format!("v{i}"), PutOptions::new())
                .await
                .unwrap_or_else(|e| panic!("put through {url}: {e}"));
        }
        let everyone = Client::connect(urls.clone(), options(good.clone()))
            .await
            .expect("connect to every member");
        for (i, url) in urls.iter().enumerate() {
            for j in 0..urls.len() {
                let client = Client::connect([url], options(good.clone()))
                    .await
                    .expect("connect");
                let got = client
                    .kv()
                    .get(format!("k{j}"), GetOptions::new())
                    .await
                    .unwrap_or_else(|e| panic!("get k{j} from {url}: {e}"));
                assert_eq!(got.kvs.len(), 1, "k{j} on member {i}");
                assert_eq!(got.kvs[0].value, format!("v{j}").into_bytes());
            }
        }

        // A follower's own KV service forwards the write to the leader
        // (the peer transport, over TLS), and its LeaseTimeToLive goes to
        // the leader's client URL (over TLS with the member certificate).
        let status = everyone
            .maintenance()
            .status(&urls[0])
            .await
            .expect("status");
        assert_eq!(status.leader, leader);
        let mut follower = None;
        for url in &urls {
            let s = everyone.maintenance().status(url).await.expect("status");
            if s.header.as_ref().map(|h| h.member_id) != Some(leader) {
                follower = Some(url.clone());
            }
        }
        let follower = follower.expect("a follower");
        let channel = sett_client::connect_with_tls(std::slice::from_ref(&follower), Some(&good))
            .await
            .expect("channel to the follower");
        KvClient::new(channel.clone())
            .put(PutRequest {
                key: b"via-follower".to_vec().into(),
                value: b"yes".to_vec().into(),
                ..PutRequest::default()
            })
            .await
            .expect("put through the follower");
        let got = everyone
            .kv()
            .get("via-follower", GetOptions::new())
            .await
            .expect("get");
        assert_eq!(&got.kvs[0].value[..], b"yes");
        let lease = everyone.lease().grant(60, 0).await.expect("lease grant");
        let ttl = LeaseClient::new(channel)
            .lease_time_to_live(LeaseTimeToLiveRequest {
                id: lease.id,
                keys: false,
            })
            .await
            .expect("lease time-to-live through the follower")
            .into_inner();
        assert!(ttl.ttl > 0, "lease {} has TTL {}", lease.id, ttl.ttl);

        // Clients that must be refused.
        let url = &urls[0];
        let plain = url.replacen("https://", "http://", 1);
        assert!(can_connect(&plain, None).await.is_err(), "plaintext client");
        let wrong_ca = pki.client_tls(&pki.other_ca(), Some(&pki.client));
        assert!(
            can_connect(url, Some(wrong_ca)).await.is_err(),
            "client trusting the wrong CA"
        );
        let no_cert = pki.client_tls(&pki.ca(), None);
        assert!(
            can_connect(url, Some(no_cert)).await.is_err(),
            "client without a certificate"
        );
        let foreign_cert = pki.client_tls(&pki.ca(), Some(&pki.foreign_client));
        assert!(
            can_connect(url, Some(foreign_cert)).await.is_err(),
            "client certificate of the wrong CA"
        );
        // And the well-behaved one still gets in, also while a client
        // that connected but never starts its handshake holds a
        // connection open.
        let addr = url.trim_start_matches("https://");
        let _silent = std::net::TcpStream::connect(addr).expect("connect a silent client");
        can_connect(url, Some(good.clone()))
            .await
            .expect("trusted client");

        // etcdctl 3.4 with etcd's TLS flags.
        let (ca, cert, key) = (
            pki.ca().display().to_string(),
            pki.client.0.display().to_string(),
            pki.client.1.display().to_string(),
        );
        let tls_args = [
            format!("--cacert={ca}"),
            format!("--cert={cert}"),
            format!("--key={key}"),
        ];
        let ctl = |args: &[&str]| {
            let mut all: Vec<&str> = tls_args.iter().map(String::as_str).collect();
            all.extend_from_slice(args);
            etcdctl(url, &all, None)
        };
        let put = ctl(&["put", "from-etcdctl", "hello"]);
        assert_eq!(put.code, 0, "etcdctl put: {put:?}");
        assert_eq!(put.stdout.trim(), "OK");
        let get = ctl(&["get", "k1"]);
        assert_eq!(get.code, 0, "etcdctl get: {get:?}");
        assert_eq!(get.stdout, "k1\nv1\n");
        let got = everyone
            .kv()
            .get("from-etcdctl", GetOptions::new())
            .await
            .expect("get");
        assert_eq!(&got.kvs[0].value[..], b"hello");
        let refused = etcdctl(
            url,
            &[&format!("--cacert={ca}"), "--dial-timeout=2s", "get", "k1"],
            None,
        );
        assert_ne!(refused.code, 0, "etcdctl without a client certificate");

        // settctl with the same flags; `host:port` then means https.
        let settctl = |args: &[String]| {
            let out = Command::new(built_binary("settctl"))
                .env_remove("SETT_ENDPOINTS")
                .args(args)
                .output()
                .expect("run settctl");
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        let host_port = url.trim_start_matches("https://").to_owned();
        let mut args = vec![format!("--endpoints={host_port}")];
        args.extend(tls_args.iter().cloned());
        let (code, out, err) = settctl(&[args.clone(), vec!["get".into(), "k2".into()]].concat());
        assert_eq!((code, out.as_str()), (0, "k2\nv2\n"), "settctl get: {err}");
        let missing = pki.path("missing-ca.pem");
        let (code, _, err) = settctl(&[
            format!("--endpoints={url}"),
            format!("--cacert={}", missing.display()),
            "get".into(),
            "k2".into(),
        ]);
        assert_ne!(code, 0, "settctl with a missing CA file");
        assert!(err.contains("missing-ca.pem"), "{err}");

        // A restart with only --data-dir keeps TLS on.
        let stored = config_of(&[format!("--data-dir={}", members[0].data_dir.display())]);
        assert_eq!(stored["client_tls"]["client_cert_auth"], true, "{stored}");
        assert_eq!(
            stored["peer_tls"]["trusted_ca_file"],
            pki.ca().display().to_string(),
            "{stored}"
        );
        assert_eq!(
            stored["listen_client_urls"][0],
            plans[0].client_url(),
            "{stored}"
        );
    });
}

#[test]
fn member_with_a_foreign_peer_certificate_stays_outside() {
    run_scenario(
        "member_with_a_foreign_peer_certificate_stays_outside",
        async {
            let pki = Pki::new();
            let plans = plan(&pki, true);
            let members = spawn_all(&pki, &plans);
            let good = pki.good_client();
            let healthy: Vec<&ExtraMember> = members[..2].iter().collect();
            let leader = wait_agreed_leader(&healthy, &good).await;
            assert_ne!(leader, 0);

            // The pair serves writes and reads.
            let pair: Vec<String> = healthy.iter().map(|m| m.client_url.clone()).collect();
            let client = Client::connect(pair, options(good.clone()))
                .await
                .expect("connect to the healthy pair");
            client
                .kv()
                .put("pair", "serves", PutOptions::new())
                .await
                .expect("put on the healthy pair");
            let got = client
                .kv()
                .get("pair", GetOptions::new())
                .await
                .expect("get");
            assert_eq!(&got.kvs[0].value[..], b"serves");

            // The outsider answers its clients (its client side is fine)
            // but knows no leader, and a write through it fails.
            let outsider = &members[2];
            assert_eq!(
                leader_seen_by(&outsider.client_url, &good).await,
                Ok(0),
                "outsider's log:\n{}",
                outsider.log_tail()
            );
            let channel = sett_client::connect_with_tls(
                std::slice::from_ref(&outsider.client_url),
                Some(&good),
            )
            .await
            .expect("channel to the outsider");
            let put = tokio::time::timeout(
                CALL_TIMEOUT,
                KvClient::new(channel).put(PutRequest {
                    key: b"outsider".to_vec().into(),
                    value: b"no".to_vec().into(),
                    ..PutRequest::default()
                }),
            )
            .await;
            assert!(
                !matches!(put, Ok(Ok(_))),
                "a write through the outsider succeeded"
            );
            let got = client
                .kv()
                .get("outsider", GetOptions::new())
                .await
                .expect("get");
            assert!(got.kvs.is_empty(), "the outsider's write was applied");
        },
    );
}

#[test]
fn config_check_names_the_bad_tls_flag() {
    let pki = Pki::new();
    let (client_port, peer_port) = two_free_ports();
    let client_url = format!("https://127.0.0.1:{client_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let base = vec![
        "--config-check".to_owned(),
        "--name=m1".to_owned(),
        format!("--data-dir={}", pki.path("check").display()),
        format!("--listen-client-urls={client_url}"),
        format!("--advertise-client-urls={client_url}"),
        format!("--listen-peer-urls={peer_url}"),
        format!("--initial-advertise-peer-urls={peer_url}"),
        format!("--initial-cluster=m1={peer_url}"),
    ];
    let with = |extra: &[String]| {
        let mut args = base.clone();
        args.extend_from_slice(extra);
        run_sett(&args)
    };
    let cert = format!("--cert-file={}", pki.member.0.display());
    let key = format!("--key-file={}", pki.member.1.display());
    let ca = format!("--trusted-ca-file={}", pki.ca().display());

    let (code, _, err) = with(&[]);
    assert_eq!(code, 2, "https without a certificate: {err}");
    assert!(
        err.contains("--cert-file") && err.contains(&client_url),
        "{err}"
    );

    let (code, _, err) = with(&[cert.clone(), key.clone(), "--client-cert-auth".into()]);
    assert_eq!(code, 2, "client-cert-auth without a CA: {err}");
    assert!(
        err.contains("--client-cert-auth") && err.contains("--trusted-ca-file"),
        "{err}"
    );

    let missing = pki.path("missing.pem");
    let (code, _, err) = with(&[
        format!("--cert-file={}", missing.display()),
        key.clone(),
        ca.clone(),
    ]);
    assert_eq!(code, 2, "missing certificate file: {err}");
    assert!(
        err.contains("--cert-file") && err.contains("missing.pem"),
        "{err}"
    );

    let junk = pki.path("junk.pem");
    std::fs::write(&junk, "certainly not PEM\n").expect("write junk");
    let (code, _, err) = with(&[
        cert.clone(),
        format!("--key-file={}", junk.display()),
        ca.clone(),
    ]);
    assert_eq!(code, 2, "non-PEM key file: {err}");
    assert!(
        err.contains("--key-file") && err.contains("junk.pem"),
        "{err}"
    );

    // A key that is not the certificate's.
    let (code, _, err) = with(&[
        cert.clone(),
        format!("--key-file={}", pki.client.1.display()),
        ca.clone(),
    ]);
    assert_eq!(code, 2, "mismatched key: {err}");
    assert!(err.contains("--cert-file"), "{err}");

    let (code, out, err) = with(&[cert, key, ca, "--client-cert-auth".into()]);
    assert_eq!(code, 0, "a good configuration: {err}");
    let cfg: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(cfg["client_tls"]["client_cert_auth"], true);
    assert_eq!(
        cfg["client_tls"]["cert_file"],
        pki.member.0.display().to_string()
    );
}
