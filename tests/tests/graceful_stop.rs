//! SIGTERM of the leader of a three-member cluster while clients write
//! in a loop through every member:
//!
//! - the leader exits 0;
//! - it hands its leadership over to a follower, and one of the other
//!   two becomes leader;
//! - every acknowledged write is in the store afterwards;
//! - a write sent to the stopping leader before the signal either
//!   succeeds or fails with an etcd error (`etcdserver: ...`), never with
//!   a broken connection.
//!
//! The window from the signal to the first write acknowledged in a newer
//! term is printed, not asserted. `failover_window` (ignored; run it by
//! name) repeats the stop `SETT_FAILOVER_ROUNDS` times (20) and prints the
//! median and maximum of that window, the figure docs/BENCHMARKS.md
//! quotes:
//!
//! ```sh
//! cargo test -p sett-tests --test graceful_stop -- --ignored --nocapture failover_window
//! ```
//!
//! Needs `target/<profile>/sett` (`cargo build -p sett-server --bin sett`).

#[path = "../src/cluster.rs"]
#[allow(dead_code)]
mod cluster;

use cluster::{run_scenario, text, Cluster, ClusterOptions};
use etcd_client::{Client, ConnectOptions, GetOptions};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bound on one write of a writer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed write.
const RETRY_PAUSE: Duration = Duration::from_millis(5);
/// Bound on the writers reaching a state the test waits for.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(60);
/// Acknowledged writes each writer needs before the stop.
const ACKS_BEFORE: usize = 5;
/// Pause between two checks of the writers' progress.
const POLL: Duration = Duration::from_millis(20);
/// Rounds of `failover_window` unless `SETT_FAILOVER_ROUNDS` says.
const DEFAULT_ROUNDS: usize = 20;

/// One acknowledged write.
#[derive(Debug, Clone)]
struct Ack {
    key: String,
    value: String,
    /// When the acknowledgement arrived.
    at: Instant,
    /// The Raft term in the response header.
    term: u64,
}

/// One failed write.
#[derive(Debug, Clone)]
struct Failure {
    /// When it was sent.
    sent: Instant,
    /// The error as the client reports it.
    error: String,
    /// Whether it is a gRPC status with etcd's wording.
    etcd_error: bool,
}

/// What one writer saw.
#[derive(Debug, Default)]
struct Log {
    acks: Vec<Ack>,
    failures: Vec<Failure>,
}

/// Writers putting `w<n>/<seq>` in a loop, one per client URL, each
/// connected to that member only.
struct Writers {
    stop: Arc<AtomicBool>,
    /// Never locked across an await.
    logs: Vec<Arc<Mutex<Log>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    async fn start(urls: &[String], tag: &str) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let mut logs = Vec::new();
        let mut tasks = Vec::new();
        for (n, url) in urls.iter().enumerate() {
            let log = Arc::new(Mutex::new(Log::default()));
            let opts = ConnectOptions::new()
                .with_connect_timeout(Duration::from_secs(2))
                .with_timeout(WRITE_TIMEOUT);
            let mut client = Client::connect([url.as_str()], Some(opts))
                .await
                .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
            let (stop, shared, prefix) = (stop.clone(), log.clone(), format!("{tag}{n}/"));
            tasks.push(tokio::spawn(async move {
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("{prefix}{seq:08}");
                    let value = format!("v{seq}");
                    let sent = Instant::now();
                    match client.put(key.as_str(), value.as_str(), None).await {
                        Ok(resp) => {
                            let term = resp.header().map_or(0, |h| h.raft_term());
                            let ack = Ack {
                                key,
                                value,
                                at: Instant::now(),
                                term,
                            };
                            shared.lock().expect("writer log").acks.push(ack);
                        }
                        Err(e) => {
                            let etcd_error = matches!(&e, etcd_client::Error::GRpcStatus(s)
                                if s.message().starts_with("etcdserver: "));
                            let failure = Failure {
                                sent,
                                error: e.to_string(),
                                etcd_error,
                            };
                            shared.lock().expect("writer log").failures.push(failure);
                            tokio::time::sleep(RETRY_PAUSE).await;
                        }
                    }
                    seq += 1;
                }
            }));
            logs.push(log);
        }
        Writers { stop, logs, tasks }
    }

    /// Waits (bounded) until `done` holds for the writers' logs.
    async fn wait_for(&self, what: &str, done: impl Fn(&[&Log]) -> bool) {
        let deadline = Instant::now() + PROGRESS_TIMEOUT;
        loop {
            let guards: Vec<_> = self
                .logs
                .iter()
                .map(|l| l.lock().expect("writer log"))
                .collect();
            let logs: Vec<&Log> = guards.iter().map(|g| &**g).collect();
            if done(&logs) {
                return;
            }
            let summary: Vec<(usize, Option<String>)> = logs
                .iter()
                .map(|l| (l.acks.len(), l.failures.last().map(|f| f.error.clone())))
                .collect();
            drop(guards);
            assert!(
                Instant::now() < deadline,
                "{what}: not within {PROGRESS_TIMEOUT:?}; (acks, last error) per writer: {summary:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stops the writers and returns their logs.
    async fn finish(self) -> Vec<Log> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.expect("writer task");
        }
        self.logs
            .into_iter()
            .map(|l| std::mem::take(&mut *l.lock().expect("writer log")))
            .collect()
    }
}

/// The first acknowledgement in a term above `term` among `logs`.
fn first_ack_after(logs: &[&Log], term: u64) -> Option<Instant> {
    logs.iter()
        .flat_map(|l| l.acks.iter())
        .filter(|a| a.term > term)
        .map(|a| a.at)
        .min()
}

/// The current term as member `i` reports it.
async fn term_of(cluster: &Cluster, i: usize) -> u64 {
    let s = cluster
        .status(i)
        .await
        .unwrap_or_else(|e| panic!("status of {}: {e}", cluster.name(i)));
    s.raft_term()
}

/// What [`stop_leader_under_writes`] saw.
struct Stopped {
    /// The member that led and was stopped.
    leader: usize,
    /// Per writer, in the order of the members given.
    logs: Vec<Log>,
    /// When SIGTERM was sent.
    signalled: Instant,
    /// From the signal to the first write acknowledged in a newer term.
    window: Duration,
}

/// SIGTERMs the leader with a writer on each of `writer_members(leader)`.
async fn stop_leader_under_writes(
    cluster: &mut Cluster,
    writer_members: impl Fn(usize) -> Vec<usize>,
    tag: &str,
) -> Stopped {
    let leader = cluster.leader().await;
    let term = term_of(cluster, leader).await;
    let members = writer_members(leader);
    let urls: Vec<String> = members.iter().map(|&i| cluster.client_url(i)).collect();
    let writers = Writers::start(&urls, tag).await;
    writers
        .wait_for("writes before the stop", |logs| {
            logs.iter().all(|l| l.acks.len() >= ACKS_BEFORE)
        })
        .await;
    let signalled = Instant::now();
    tokio::task::block_in_place(|| cluster.stop(leader));
    let exited = signalled.elapsed();
    writers
        .wait_for("a write acknowledged in a newer term", |logs| {
            first_ack_after(logs, term).is_some()
        })
        .await;
    let logs = writers.finish().await;
    let refs: Vec<&Log> = logs.iter().collect();
    let first = first_ack_after(&refs, term).expect("an acknowledgement in a newer term");
    let window = first.saturating_duration_since(signalled);
    eprintln!(
        "{tag}: {} (leader) exited {exited:?} after SIGTERM; first write in a newer term {window:?} after it",
        cluster.name(leader)
    );
    Stopped {
        leader,
        logs,
        signalled,
        window,
    }
}

#[test]
fn sigterm_of_the_leader_under_writes() {
    run_scenario("sigterm_of_the_leader_under_writes", async {
        let mut cluster = Cluster::start(ClusterOptions::default());
        let all: Vec<usize> = (0..cluster.len()).collect();
        let Stopped {
            leader: stopped,
            logs,
            signalled,
            ..
        } = stop_leader_under_writes(&mut cluster, |_| all.clone(), "w").await;

        // A new leader among the other two, which the stopped one named.
        let leader = cluster.leader().await;
        assert_ne!(leader, stopped, "the stopped member cannot lead");
        assert!(
            cluster.log_contains(stopped, "leadership handed over"),
            "the stopping leader handed over to no follower; its log tail:\n{}",
            cluster.log_tail(stopped)
        );

        // Every acknowledged write is there (one linearizable read).
        let mut client = cluster.client(leader).await;
        let resp = client
            .get("w", Some(GetOptions::new().with_prefix()))
            .await
            .expect("read back the writes");
        let stored: BTreeMap<String, String> = resp
            .kvs()
            .iter()
            .map(|kv| (text(kv.key()), text(kv.value())))
            .collect();
        let mut acked = 0;
        for log in &logs {
            for ack in &log.acks {
                assert_eq!(
                    stored.get(&ack.key),
                    Some(&ack.value),
                    "acknowledged write {} (term {}) is missing",
                    ack.key,
                    ack.term
                );
                acked += 1;
            }
        }

        // Writes on the stopping leader: each one sent before the signal
        // succeeded or failed with etcd's wording. (Once the signal is
        // in, the member takes no new calls and then closes: refusals of
        // calls sent after it are a connection's, as for any member that
        // is down.)
        let on_leader = &logs[stopped];
        for f in on_leader.failures.iter().filter(|f| f.sent < signalled) {
            assert!(
                f.etcd_error,
                "a write sent to the leader before SIGTERM failed without an etcd error: {}",
                f.error
            );
        }
        let after: Vec<&Failure> = on_leader
            .failures
            .iter()
            .filter(|f| f.sent >= signalled)
            .collect();
        eprintln!(
            "{acked} acknowledged writes, all present; the stopped leader acknowledged {} and \
             refused {} sent after the signal",
            on_leader.acks.len(),
            after.len(),
        );
        if let Some(f) = after.first() {
            eprintln!("  first refusal after the signal: {}", f.error);
        }
    });
}

#[test]
#[ignore = "measurement: 20 leader stops; run by name"]
fn failover_window() {
    let rounds: usize = std::env::var("SETT_FAILOVER_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_ROUNDS);
    run_scenario("failover_window", async {
        let mut cluster = Cluster::start(ClusterOptions::default());
        let n = cluster.len();
        let mut windows = Vec::with_capacity(rounds);
        for round in 0..rounds {
            let tag = format!("r{round}-");
            let Stopped {
                leader: stopped,
                window,
                ..
            } = stop_leader_under_writes(
                &mut cluster,
                |leader| (0..n).filter(|&i| i != leader).collect(),
                &tag,
            )
            .await;
            windows.push(window);
            cluster.restart(stopped);
            cluster.wait_ready(stopped).await;
            cluster.leader().await;
        }
        windows.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let median = ms(windows[windows.len() / 2]);
        let max = ms(*windows.last().expect("one round at least"));
        let all: Vec<String> = windows.iter().map(|w| format!("{:.0}", ms(*w))).collect();
        eprintln!(
            "failover_window: {rounds} leader SIGTERMs, SIGTERM -> first write in a newer term: \
             median {median:.0} ms, max {max:.0} ms; all (ms): {}",
            all.join(" ")
        );
    });
}
