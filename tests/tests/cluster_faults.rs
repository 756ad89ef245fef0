//! Faults against a real three-member cluster, checked through an etcd
//! client:
//!
//! 1. the leader is SIGKILLed under concurrent write load; a new leader
//!    takes over, writes go on, the old leader rejoins, and every
//!    acknowledged write is on every member with consistent revisions;
//!    meanwhile a reader checks that linearizable reads on every member see
//!    the newest write acknowledged before they began;
//! 2. a follower stopped while the leader's log is purged past its position
//!    (small `--snapshot-count`) catches up, by snapshot, to the leader's
//!    exact state;
//! 3. every member is SIGKILLed and restarted: every acknowledged write
//!    survives and revisions go on from where they were;
//! 4. a leader frozen with SIGSTOP while the others elect a new leader and
//!    take a write does not serve the old value to linearizable reads, nor
//!    order a write before the new leader's, once it runs again;
//! 5. a member left without a quorum (a follower; then the leader, which
//!    must step down as etcd's does) stops naming a leader, acknowledges no
//!    write and no linearizable read, serves serializable reads, and
//!    refuses requests that require a leader with "etcdserver: no leader".
//!
//! The scenarios run one at a time (each starts its own cluster; the
//! machines that run them may have two cores). Every wait is bounded.
//!
//! Needs `target/<profile>/sett` (`cargo build -p sett-server --bin sett`).

#[path = "../src/cluster.rs"]
#[allow(dead_code)]
mod cluster;

use cluster::{put_retrying, run_scenario, text, Cluster, ClusterOptions};
use etcd_client::{Client, GetOptions, KeyValue};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bound on a member converging to the expected state.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(90);
/// Bound on the load making the progress a phase waits for.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on one client request made by a writer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on a member without a quorum ceasing to name a leader.
const STEP_DOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request that must not succeed is given.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Attempts per write (each on the next member) before it counts as unknown.
const WRITE_ATTEMPTS: usize = 30;
/// Concurrent writer tasks in the load.
const WRITERS: usize = 3;
/// Upper bound on the writes of one writer.
const WRITES_PER_WRITER_MAX: usize = 100_000;

/// `(key, value, create, mod, version)` of every kv.
type Row = (String, String, i64, i64, i64);

fn rows(kvs: &[KeyValue]) -> Vec<Row> {
    kvs.iter()
        .map(|kv| {
            (
                text(kv.key()),
                text(kv.value()),
                kv.create_revision(),
                kv.mod_revision(),
                kv.version(),
            )
        })
        .collect()
}

/// An acknowledged write.
#[derive(Debug, Clone)]
struct Ack {
    value: String,
    revision: i64,
}

/// What the writers learned: acknowledged writes and writes whose outcome
/// is unknown (every attempt failed, but one may have been applied).
#[derive(Debug, Default)]
struct Ledger {
    acked: Mutex<BTreeMap<String, Ack>>,
    unknown: Mutex<BTreeMap<String, String>>,
    failed_attempts: AtomicUsize,
    /// Failed attempts by error text, for the test's output.
    errors: Mutex<BTreeMap<String, usize>>,
    /// The longest time one write took, all attempts included, and its key.
    slowest: Mutex<(Duration, String)>,
    /// The acknowledged write with the highest revision: key, value, revision.
    newest: Mutex<Option<(String, String, i64)>>,
    /// Linearizable reads that missed a write acknowledged before they began.
    stale_reads: Mutex<Vec<String>>,
    /// Linearizable reads checked by [`reader`].
    reads_checked: AtomicUsize,
    stop: AtomicBool,
}

impl Ledger {
    fn acked_len(&self) -> usize {
        self.acked.lock().unwrap().len()
    }
}

/// Writer `w`: puts `load/w<w>/<seq>` until told to stop, each write tried
/// on member `(w + seq + attempt) % n` for up to [`WRITE_ATTEMPTS`].
async fn writer(w: usize, urls: Vec<String>, ledger: Arc<Ledger>) {
    let mut clients = Vec::with_capacity(urls.len());
    for url in &urls {
        clients.push(cluster::connect(url).await);
    }
    for seq in 0..WRITES_PER_WRITER_MAX {
        if ledger.stop.load(Ordering::SeqCst) {
            return;
        }
        let key = format!("load/w{w}/{seq:06}");
        let value = format!("value-{w}-{seq}");
        let mut acked = false;
        let first_try = Instant::now();
        for attempt in 0..WRITE_ATTEMPTS {
            let c = &mut clients[(w + seq + attempt) % urls.len()];
            match tokio::time::timeout(WRITE_TIMEOUT, c.put(key.as_str(), value.as_str(), None))
                .await
            {
                Ok(Ok(resp)) => {
                    let revision = resp.header().expect("put header").revision();
                    {
                        let mut newest = ledger.newest.lock().unwrap();
                        if newest.as_ref().is_none_or(|n| n.2 < revision) {
                            *newest = Some((key.clone(), value.clone(), revision));
                        }
                    }
                    ledger.acked.lock().unwrap().insert(
                        key.clone(),
                        Ack {
                            value: value.clone(),
                            revision,
                        },
                    );
                    acked = true;
                    break;
                }
                failed => {
                    let why = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => format!("no answer within {WRITE_TIMEOUT:?}"),
                    };
                    let why: String = why.chars().take(160).collect();
                    *ledger.errors.lock().unwrap().entry(why).or_default() += 1;
                    ledger.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        let took = first_try.elapsed();
        let mut slowest = ledger.slowest.lock().unwrap();
        if took > slowest.0 {
            *slowest = (took, key.clone());
        }
        drop(slowest);
        if !acked {
            ledger.unknown.lock().unwrap().insert(key, value);
        }
    }
}

/// Reader: over and over, takes the newest acknowledged write and reads its
/// key linearizably from the next member. A read that succeeds must see the
/// write (it was acknowledged before the read began); one that does not is
/// recorded as stale. Failed reads (dead member, election) are fine.
async fn reader(urls: Vec<String>, ledger: Arc<Ledger>) {
    let mut clients = Vec::with_capacity(urls.len());
    for url in &urls {
        clients.push(cluster::connect(url).await);
    }
    for round in 0..WRITES_PER_WRITER_MAX {
        if ledger.stop.load(Ordering::SeqCst) {
            return;
        }
        let newest = ledger.newest.lock().unwrap().clone();
        let Some((key, value, revision)) = newest else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let m = round % urls.len();
        let read = tokio::time::timeout(WRITE_TIMEOUT, clients[m].get(key.as_str(), None)).await;
        let Ok(Ok(resp)) = read else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        ledger.reads_checked.fetch_add(1, Ordering::Relaxed);
        let header_rev = resp.header().expect("range header").revision();
        let seen = rows(resp.kvs());
        let fresh = header_rev >= revision
            && seen.len() == 1
            && seen[0].1 == value
            && seen[0].3 >= revision;
        if !fresh {
            ledger.stale_reads.lock().unwrap().push(format!(
                "read of {key} (acknowledged at revision {revision}) from {} \
                 returned {seen:?} at header revision {header_rev}",
                urls[m]
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until at least `target` writes are acknowledged.
async fn wait_acked(cluster: &Cluster, ledger: &Ledger, target: usize, phase: &str) {
    let deadline = Instant::now() + PROGRESS_TIMEOUT;
    while ledger.acked_len() < target {
        assert!(
            Instant::now() < deadline,
            "{phase}: only {} of {target} writes acknowledged within {PROGRESS_TIMEOUT:?} \
             ({} failed attempts)\n{}",
            ledger.acked_len(),
            ledger.failed_attempts.load(Ordering::Relaxed),
            cluster.all_log_tails()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `check` on linearizable prefix reads of member `i` until it
/// returns `Ok`, at most [`CONVERGE_TIMEOUT`]. `check` gets the header
/// revision and the rows.
async fn converge<F>(cluster: &Cluster, i: usize, prefix: &str, opts: GetOptions, check: F)
where
    F: Fn(i64, &[Row]) -> Result<(), String>,
{
    let mut client = cluster.client(i).await;
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    loop {
        let last = match client.get(prefix, Some(opts.clone())).await {
            Ok(resp) => {
                let revision = resp.header().expect("range header").revision();
                check(revision, &rows(resp.kvs()))
            }
            Err(e) => Err(format!("range failed: {e}")),
        };
        match last {
            Ok(()) => return,
            Err(why) => assert!(
                Instant::now() < deadline,
                "member {} did not converge within {CONVERGE_TIMEOUT:?}: {why}\nlog tail:\n{}",
                cluster.name(i),
                cluster.log_tail(i)
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Leader SIGKILL under write load, then the old leader rejoins.
#[test]
fn leader_kill_under_load() {
    run_scenario("leader_kill_under_load", async {
        let mut cluster = Cluster::start(ClusterOptions::default());
        let ledger = Arc::new(Ledger::default());
        let mut writers: Vec<_> = (0..WRITERS)
            .map(|w| tokio::spawn(writer(w, cluster.client_urls(), ledger.clone())))
            .collect();
        writers.push(tokio::spawn(reader(cluster.client_urls(), ledger.clone())));

        wait_acked(&cluster, &ledger, 60, "before the kill").await;
        let old = cluster.leader().await;
        let acked_at_kill = ledger.acked_len();
        let killed_at = Instant::now();
        cluster.kill(old);
        eprintln!(
            "killed leader {} after {acked_at_kill} acknowledged writes",
            cluster.name(old)
        );

        let new = cluster.leader().await;
        assert_ne!(new, old, "a killed member cannot lead");
        eprintln!(
            "new leader {} reported {:?} after the kill",
            cluster.name(new),
            killed_at.elapsed()
        );
        // A write after the kill succeeds (the new leader may still be
        // settling in: retry, bounded).
        let mut c = cluster.client(new).await;
        let post_kill_rev = put_retrying(
            &mut c,
            "load/after-kill",
            "ok",
            PROGRESS_TIMEOUT,
            "no write succeeded after the kill",
            || cluster.all_log_tails(),
        )
        .await;
        eprintln!(
            "first write after the kill acknowledged {:?} after it",
            killed_at.elapsed()
        );
        wait_acked(&cluster, &ledger, acked_at_kill + 60, "after the kill").await;

        cluster.restart(old);
        cluster.wait_ready(old).await;
        let acked_at_restart = ledger.acked_len();
        wait_acked(
            &cluster,
            &ledger,
            acked_at_restart + 60,
            "after the restart",
        )
        .await;

        ledger.stop.store(true, Ordering::SeqCst);
        for handle in writers {
            tokio::time::timeout(PROGRESS_TIMEOUT, handle)
                .await
                .expect("writers stop in time")
                .expect("writer task");
        }

        let acked = ledger.acked.lock().unwrap().clone();
        let unknown = ledger.unknown.lock().unwrap().clone();
        eprintln!(
            "{} acknowledged writes, {} unknown, {} failed attempts",
            acked.len(),
            unknown.len(),
            ledger.failed_attempts.load(Ordering::Relaxed)
        );
        eprintln!(
            "slowest write (all attempts): {:?}",
            ledger.slowest.lock().unwrap()
        );
        for (why, n) in ledger.errors.lock().unwrap().iter() {
            eprintln!("  {n} x {why}");
        }
        eprintln!(
            "{} linearizable reads of the newest acknowledged write checked",
            ledger.reads_checked.load(Ordering::Relaxed)
        );
        let stale = ledger.stale_reads.lock().unwrap().clone();
        assert!(
            stale.is_empty(),
            "{} stale linearizable reads: {stale:#?}",
            stale.len()
        );
        // Distinct requests got distinct revisions.
        let revisions: BTreeSet<i64> = acked.values().map(|a| a.revision).collect();
        assert_eq!(
            revisions.len(),
            acked.len(),
            "two acknowledged puts share a revision"
        );
        assert!(!revisions.contains(&post_kill_rev));

        let check = |header_rev: i64, rows: &[Row]| -> Result<(), String> {
            let found: BTreeMap<&str, &Row> = rows.iter().map(|r| (r.0.as_str(), r)).collect();
            for (key, ack) in &acked {
                let Some(row) = found.get(key.as_str()) else {
                    return Err(format!(
                        "acknowledged key {key} (revision {}) missing",
                        ack.revision
                    ));
                };
                if row.1 != ack.value || row.3 < ack.revision {
                    return Err(format!("{key}: acknowledged {ack:?}, found {row:?}"));
                }
            }
            for row in rows {
                if row.3 > header_rev || row.2 > row.3 {
                    return Err(format!(
                        "revisions of {row:?} inconsistent with header revision {header_rev}"
                    ));
                }
                let expected = acked
                    .get(&row.0)
                    .map(|a| a.value.as_str())
                    .or_else(|| unknown.get(&row.0).map(String::as_str))
                    .or((row.0 == "load/after-kill").then_some("ok"));
                if expected != Some(row.1.as_str()) {
                    return Err(format!("{row:?} was never written"));
                }
            }
            Ok(())
        };
        let prefix = GetOptions::new().with_prefix();
        for i in 0..cluster.len() {
            converge(&cluster, i, "load/", prefix.clone(), check).await;
        }
        // With the load stopped every member answers the same, at the same
        // revision.
        let mut finals = Vec::new();
        for i in 0..cluster.len() {
            let mut c = cluster.client(i).await;
            let resp = c
                .get("load/", Some(prefix.clone()))
                .await
                .expect("final range");
            finals.push((resp.header().expect("header").revision(), rows(resp.kvs())));
        }
        for (i, f) in finals.iter().enumerate().skip(1) {
            assert_eq!(
                f.0,
                finals[0].0,
                "final revision of {} vs {}",
                cluster.name(i),
                cluster.name(0)
            );
            assert!(
                f.1 == finals[0].1,
                "final contents of {} differ from {}",
                cluster.name(i),
                cluster.name(0)
            );
        }
    });
}

/// A follower stopped while the log is purged past its position converges
/// to the leader's state (by snapshot).
#[test]
fn stopped_follower_catches_up_by_snapshot() {
    run_scenario("stopped_follower_catches_up_by_snapshot", async {
        let mut cluster = Cluster::start(ClusterOptions {
            snapshot_count: 50,
            snapshot_catchup_entries: 5,
            ..ClusterOptions::default()
        });
        let leader = cluster.leader().await;
        let follower = (leader + 1) % cluster.len();
        cluster.stop(follower);

        // Several hundred writes: puts, overwrites and deletes, from four
        // concurrent tasks through the leader.
        const KEYS: usize = 400;
        const TASKS: usize = 4;
        let url = cluster.client_url(leader);
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                let mut c = cluster::connect(&url).await;
                for i in (t..KEYS).step_by(TASKS) {
                    let key = format!("snap/{i:04}");
                    c.put(key.as_str(), format!("v1-{i}-{}", "p".repeat(64)), None)
                        .await
                        .unwrap_or_else(|e| panic!("put {key}: {e}"));
                    if i % 5 == 0 {
                        c.put(key.as_str(), format!("v2-{i}"), None)
                            .await
                            .unwrap_or_else(|e| panic!("overwrite {key}: {e}"));
                    }
                    if i % 11 == 0 {
                        c.delete(key.as_str(), None)
                            .await
                            .unwrap_or_else(|e| panic!("delete {key}: {e}"));
                    }
                }
            }));
        }
        for task in tasks {
            task.await.expect("writer task");
        }
        let mut lc = cluster.client(leader).await;
        let expected = lc
            .get("snap/", Some(GetOptions::new().with_prefix()))
            .await
            .expect("leader range");
        let expected_rev = expected.header().expect("header").revision();
        let expected = rows(expected.kvs());
        assert_eq!(expected.len(), KEYS - KEYS.div_ceil(11));
        // Compact half the history away; what the follower installs must
        // carry both the compaction point and the history above it.
        let compact_at = expected_rev / 2;
        lc.compact(compact_at, None).await.expect("compact");
        let old_at = compact_at + 20;
        let old_rows = rows(
            lc.get(
                "snap/",
                Some(GetOptions::new().with_prefix().with_revision(old_at)),
            )
            .await
            .expect("old read on the leader")
            .kvs(),
        );
        assert!(!old_rows.is_empty() && old_rows != expected);

        cluster.restart(follower);
        let serializable = GetOptions::new().with_prefix().with_serializable();
        converge(&cluster, follower, "snap/", serializable, |rev, got| {
            if got == expected.as_slice() && rev >= expected_rev {
                Ok(())
            } else {
                Err(format!(
                    "{} of {} rows, revision {rev} of {expected_rev}",
                    got.len(),
                    expected.len()
                ))
            }
        })
        .await;
        let by_snapshot = cluster.log_contains(follower, "snapshot");
        eprintln!(
            "follower {} converged; its log mentions a snapshot: {by_snapshot}",
            cluster.name(follower)
        );
        // The follower serves linearizable reads again as well.
        let mut fc = cluster.client(follower).await;
        let lin = fc
            .get("snap/", Some(GetOptions::new().with_prefix()))
            .await
            .expect("linearizable range on the follower");
        assert_eq!(rows(lin.kvs()), expected);
        // History above the compaction point, and the point itself.
        let old = fc
            .get(
                "snap/",
                Some(
                    GetOptions::new()
                        .with_prefix()
                        .with_serializable()
                        .with_revision(old_at),
                ),
            )
            .await
            .expect("old serializable read on the follower");
        assert!(
            rows(old.kvs()) == old_rows,
            "history at revision {old_at} differs on the follower"
        );
        match fc
            .get(
                "snap/",
                Some(
                    GetOptions::new()
                        .with_prefix()
                        .with_serializable()
                        .with_revision(compact_at - 1),
                ),
            )
            .await
        {
            Err(etcd_client::Error::GRpcStatus(st)) => {
                assert_eq!(format!("{:?}", st.code()), "OutOfRange", "{st:?}");
                assert_eq!(
                    st.message(),
                    "etcdserver: mvcc: required revision has been compacted"
                );
            }
            other => panic!("read below the compaction point on the follower: {other:?}"),
        }
    });
}

/// Every member SIGKILLed at once and restarted with `--data-dir` only.
#[test]
fn whole_cluster_kill_and_restart() {
    run_scenario("whole_cluster_kill_and_restart", async {
        let mut cluster = Cluster::start(ClusterOptions::default());
        let mut clients: Vec<Client> = Vec::new();
        for i in 0..cluster.len() {
            clients.push(cluster.client(i).await);
        }
        let mut max_seen = 0;
        for i in 0..150usize {
            let c = &mut clients[i % cluster.len()];
            let key = format!("crash/{i:04}");
            let resp = c
                .put(key.as_str(), format!("value-{i}"), None)
                .await
                .unwrap_or_else(|e| panic!("put {key}: {e}"));
            max_seen = max_seen.max(resp.header().expect("header").revision());
            if i % 10 == 9 {
                let resp = c
                    .delete(format!("crash/{:04}", i - 5), None)
                    .await
                    .unwrap_or_else(|e| panic!("delete: {e}"));
                max_seen = max_seen.max(resp.header().expect("header").revision());
            }
        }
        let before = clients[0]
            .get("crash/", Some(GetOptions::new().with_prefix()))
            .await
            .expect("range before the kill");
        max_seen = max_seen.max(before.header().expect("header").revision());
        let before = rows(before.kvs());
        assert_eq!(before.len(), 135);

        for i in 0..cluster.len() {
            cluster.kill(i);
        }
        for i in 0..cluster.len() {
            cluster.restart(i);
        }
        let leader = cluster.leader().await;
        for i in 0..cluster.len() {
            cluster.wait_ready(i).await;
        }

        for i in 0..cluster.len() {
            converge(
                &cluster,
                i,
                "crash/",
                GetOptions::new().with_prefix(),
                |rev, got| {
                    if got != before.as_slice() {
                        return Err(format!("{} rows, expected {}", got.len(), before.len()));
                    }
                    if rev < max_seen {
                        return Err(format!("revision {rev} went back below {max_seen}"));
                    }
                    Ok(())
                },
            )
            .await;
        }
        // The membership, names and client URLs survive too.
        cluster
            .wait_members_published(cluster::LEADER_TIMEOUT)
            .await;
        let mut c = cluster.client(leader).await;
        let resp = c
            .put("crash/next", "after-restart", None)
            .await
            .expect("put after restart");
        let next = resp.header().expect("header").revision();
        assert!(
            next > max_seen,
            "revision {next} after the restart, {max_seen} seen before"
        );
        let back = c.get("crash/next", None).await.expect("get after restart");
        assert_eq!(back.kvs()[0].create_revision(), next);
    });
}

/// A leader frozen (SIGSTOP) while the others elect a new one and accept a
/// write must not answer a linearizable read with the old value once it
/// runs again, nor place a write before the new leader's.
#[test]
fn paused_leader_serves_no_stale_reads() {
    run_scenario("paused_leader_serves_no_stale_reads", async {
        let mut cluster = Cluster::start(ClusterOptions::default());
        let old = cluster.leader().await;
        let mut oc = cluster.client(old).await;
        let r1 = oc
            .put("pause/k", "v1", None)
            .await
            .expect("put v1")
            .header()
            .expect("header")
            .revision();

        cluster.pause(old);
        let new = cluster.leader().await;
        assert_ne!(new, old);
        let mut nc = cluster.client(new).await;
        let r2 = put_retrying(
            &mut nc,
            "pause/k",
            "v2",
            PROGRESS_TIMEOUT,
            "no write on the new leader",
            || cluster.all_log_tails(),
        )
        .await;
        assert!(r2 > r1);

        cluster.resume(old);
        // The first requests after it wakes up are the interesting ones:
        // it may still believe it leads.
        let mut answered = 0;
        for _ in 0..20 {
            let read = tokio::time::timeout(WRITE_TIMEOUT, oc.get("pause/k", None)).await;
            if let Ok(Ok(resp)) = read {
                answered += 1;
                let header_rev = resp.header().expect("header").revision();
                assert_eq!(
                    rows(resp.kvs()).first().map(|r| r.1.as_str()),
                    Some("v2"),
                    "stale linearizable read from the resumed old leader (header revision {header_rev})"
                );
                assert!(header_rev >= r2);
            }
        }
        match oc.put("pause/k", "v3", None).await {
            Ok(resp) => {
                let r3 = resp.header().expect("header").revision();
                assert!(
                    r3 > r2,
                    "write through the old leader at {r3}, not after {r2}"
                );
            }
            Err(e) => eprintln!("write through the resumed old leader failed: {e}"),
        }
        eprintln!("{answered} of 20 reads through the resumed old leader answered");
        // It rejoins as a follower and serves the current value.
        converge(
            &cluster,
            old,
            "pause/",
            GetOptions::new().with_prefix(),
            |rev, got| match got.first() {
                Some(row) if rev >= r2 && row.3 >= r2 => Ok(()),
                other => Err(format!("{other:?} at revision {rev}")),
            },
        )
        .await;
    });
}

/// A follower cut off from the quorum (the two others killed); see
/// [`minority_scenario`].
#[test]
fn minority_follower_without_quorum() {
    run_scenario("minority_follower_without_quorum", minority_scenario(false));
}

/// The leader cut off from the quorum (the two others killed): as in etcd
/// (CheckQuorum), it must step down; see [`minority_scenario`].
#[test]
fn isolated_leader_steps_down() {
    run_scenario("isolated_leader_steps_down", minority_scenario(true));
}

/// A member cut off from the quorum (the two others killed) soon names no
/// leader in Status, acknowledges no write and no linearizable read, still
/// serves serializable reads, and answers requests that require a leader
/// (metadata `hasleader=true`) with Unavailable "etcdserver: no leader";
/// with the others back, the cluster works again and lost nothing. The
/// member kept is the leader if `keep_leader`, else a follower.
///
/// Departures from etcd that do not stop the scenario (still naming a
/// leader, serving a leader-requiring request) are collected and reported
/// at the end, so the recovery is checked either way.
async fn minority_scenario(keep_leader: bool) {
    let mut failures: Vec<String> = Vec::new();
    let mut cluster = Cluster::start(ClusterOptions::default());
    let leader = cluster.leader().await;
    let alone = if keep_leader {
        leader
    } else {
        (leader + 1) % cluster.len()
    };
    let mut c = cluster.client(alone).await;
    let r1 = c
        .put("quorum/k", "v1", None)
        .await
        .expect("put v1")
        .header()
        .expect("header")
        .revision();
    // The lone member has applied the write before the others go.
    let deadline = Instant::now() + PROGRESS_TIMEOUT;
    loop {
        let ser = c
            .get("quorum/k", Some(GetOptions::new().with_serializable()))
            .await
            .expect("serializable read");
        if !ser.kvs().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "write never applied on the member"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in 0..cluster.len() {
        if i != alone {
            cluster.kill(i);
        }
    }
    // It notices that it has no leader (etcd: within an election
    // timeout or two; a leader steps down by CheckQuorum).
    let deadline = Instant::now() + STEP_DOWN_TIMEOUT;
    loop {
        let st = cluster.status(alone).await;
        if matches!(&st, Ok(s) if s.leader() == 0) {
            break;
        }
        if Instant::now() >= deadline {
            failures.push(format!(
                "{STEP_DOWN_TIMEOUT:?} after losing its quorum, {} (the {}) still reports \
                 a leader in Status: {st:?}",
                cluster.name(alone),
                if keep_leader {
                    "old leader"
                } else {
                    "follower"
                },
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let put = tokio::time::timeout(PROBE_TIMEOUT, c.put("quorum/lost", "x", None)).await;
    assert!(
        !matches!(put, Ok(Ok(_))),
        "a write was acknowledged without a quorum: {put:?}"
    );
    let lin = tokio::time::timeout(PROBE_TIMEOUT, c.get("quorum/k", None)).await;
    assert!(
        !matches!(lin, Ok(Ok(_))),
        "a linearizable read was served without a quorum: {lin:?}"
    );
    let ser = c
        .get("quorum/k", Some(GetOptions::new().with_serializable()))
        .await
        .expect("serializable reads need no leader");
    assert_eq!(
        rows(ser.kvs()),
        vec![("quorum/k".to_owned(), "v1".to_owned(), r1, r1, 1)]
    );
    let opts = etcd_client::ConnectOptions::new()
        .with_require_leader(true)
        .with_timeout(WRITE_TIMEOUT);
    let mut rl = Client::connect([cluster.client_url(alone)], Some(opts))
        .await
        .expect("connect");
    match rl
        .get("quorum/k", Some(GetOptions::new().with_serializable()))
        .await
    {
        Err(etcd_client::Error::GRpcStatus(st))
            if format!("{:?}", st.code()) == "Unavailable"
                && st.message() == "etcdserver: no leader" => {}
        other => failures.push(format!(
            "a serializable Range with metadata hasleader=true on {} without a quorum: \
             expected Unavailable \"etcdserver: no leader\", got {other:?}",
            cluster.name(alone)
        )),
    }

    for i in 0..cluster.len() {
        if i != alone {
            cluster.restart(i);
        }
    }
    let leader = cluster.leader().await;
    let mut lc = cluster.client(leader).await;
    let r2 = put_retrying(
        &mut lc,
        "quorum/k",
        "v2",
        PROGRESS_TIMEOUT,
        "no write after recovery",
        String::new,
    )
    .await;
    assert!(r2 > r1);
    for i in 0..cluster.len() {
        converge(
            &cluster,
            i,
            "quorum/k",
            GetOptions::new(),
            |rev, got| match got.first() {
                Some(row) if row.1 == "v2" && row.2 == r1 && row.3 == r2 && rev >= r2 => Ok(()),
                other => Err(format!("{other:?} at revision {rev}")),
            },
        )
        .await;
    }
    assert!(
        failures.is_empty(),
        "departures from etcd:\n{}",
        failures.join("\n")
    );
}
