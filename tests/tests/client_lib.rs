//! The `sett-client` library against a real three-member cluster:
//!
//! - leader failover under load: writers put through one client while the
//!   leader is SIGKILLed; every put returns Ok (the client retries and
//!   finds the new leader) and every acknowledged key is readable after;
//! - watch resume: a watch served by one member, whose only endpoint that
//!   member is, stays open while the member is SIGKILLed and restarted,
//!   twice; it delivers every revision written meanwhile through the other
//!   members exactly once, in order, without gaps. (SIGKILL rather than
//!   SIGTERM: a member's graceful stop waits for open watch streams to
//!   end, so a SIGTERM does not stop a member that serves a watch.) A
//!   watch from a compacted revision then fails with the compact revision;
//! - the lease keeper keeps a lease alive past its TTL, dropping it lets
//!   the lease expire, and it stops once the lease is revoked;
//! - the typed calls round-trip: put with prev_kv, sorted, limited and
//!   counted ranges, a transaction built with `TxnBuilder`, prefix delete,
//!   lease listing and time-to-live with keys, member list, per-member
//!   status and `HashKV` (equal on every member), alarms, a snapshot.
//!
//! Every wait is bounded; no assertion is about timing.
//!
//! Needs `target/<profile>/sett` (`cargo build -p sett-server --bin sett`).
//! `SETT_CLUSTER_BIN=/usr/bin/etcd` runs the same scenarios against etcd,
//! which checks the client against the reference server.

#[path = "../src/cluster.rs"]
#[allow(dead_code)]
mod cluster;

use cluster::{run_scenario, text, Cluster, ClusterOptions};
use sett_client::{
    Client, ConnectOptions, GetOptions, PutOptions, RetryOptions, WatchOptions, WatchStream,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::time::timeout;

/// Concurrent writers in the failover scenario.
const WRITERS: usize = 4;
/// Acknowledged puts before the leader is killed.
const PUTS_BEFORE_KILL: usize = 100;
/// Acknowledged puts required after the kill.
const PUTS_AFTER_KILL: usize = 200;
/// Upper bound on puts per writer (a bound on the loop).
const PUTS_PER_WRITER_MAX: usize = 10_000;
/// Bound on waiting for the writers to make progress.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(40);
/// Bound on waiting for one watch response.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on the watcher collecting every expected event.
const WATCH_TIMEOUT: Duration = Duration::from_secs(60);
/// etcd's message for a read below the compacted revision.
const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
/// Keys written in each phase of the watch scenario.
const PHASE_KEYS: usize = 15;

/// Client options of the tests: short per-attempt timeouts, a retry
/// budget long enough for an election.
fn options() -> ConnectOptions {
    ConnectOptions::default()
        .with_connect_timeout(Duration::from_secs(2))
        .with_request_timeout(Duration::from_secs(5))
        .with_retry(RetryOptions {
            max_attempts: 30,
            total_timeout: Duration::from_secs(30),
            ..RetryOptions::default()
        })
}

async fn connect(urls: Vec<String>) -> Client {
    Client::connect(urls.clone(), options())
        .await
        .unwrap_or_else(|e| panic!("connect to {urls:?}: {e}"))
}

/// What the failover writers record.
#[derive(Debug, Default)]
struct Ledger {
    /// Acknowledged puts: key → (value, revision).
    acked: Mutex<BTreeMap<String, (String, i64)>>,
    /// Puts that returned an error: key and error.
    failed: Mutex<Vec<(String, String)>>,
    done: AtomicUsize,
    stop: AtomicBool,
}

async fn writer(w: usize, client: Client, ledger: Arc<Ledger>) {
    let kv = client.kv();
    for seq in 0..PUTS_PER_WRITER_MAX {
        if ledger.stop.load(Ordering::SeqCst) {
            return;
        }
        let key = format!("fo/w{w}/{seq:05}");
        let value = format!("v{w}-{seq}");
        match kv
            .put(key.as_str(), value.as_str(), PutOptions::new())
            .await
        {
            Ok(resp) => {
                let rev = resp.header.map_or(0, |h| h.revision);
                ledger.acked.lock().unwrap().insert(key, (value, rev));
                ledger.done.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) => ledger.failed.lock().unwrap().push((key, e.to_string())),
        }
    }
}

/// Waits until `ledger.done` reaches `target` or a put failed.
async fn wait_done(ledger: &Ledger, target: usize, what: &str) {
    let deadline = Instant::now() + PROGRESS_TIMEOUT;
    while ledger.done.load(Ordering::SeqCst) < target {
        let failed = ledger.failed.lock().unwrap().clone();
        assert!(failed.is_empty(), "puts failed {what}: {failed:?}");
        assert!(
            Instant::now() < deadline,
            "{what}: only {} of {target} puts acknowledged within {PROGRESS_TIMEOUT:?}",
            ledger.done.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn puts_survive_a_leader_kill() {
    run_scenario("puts_survive_a_leader_kill", async {
        let mut cluster = Cluster::start(ClusterOptions::default());
        let client = connect(cluster.client_urls()).await;
        let old_leader = cluster.leader().await;
        assert_eq!(
            client.leader_id(),
            Some(cluster.member_id(old_leader)),
            "the client found the leader at connect"
        );

        let ledger = Arc::new(Ledger::default());
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| tokio::spawn(writer(w, client.clone(), ledger.clone())))
            .collect();
        wait_done(&ledger, PUTS_BEFORE_KILL, "before the kill").await;
        cluster.kill(old_leader);
        let at_kill = ledger.done.load(Ordering::SeqCst);
        wait_done(&ledger, at_kill + PUTS_AFTER_KILL, "after the kill").await;
        ledger.stop.store(true, Ordering::SeqCst);
        for t in tasks {
            t.await.expect("writer task");
        }

        let failed = ledger.failed.lock().unwrap().clone();
        assert!(failed.is_empty(), "puts returned errors: {failed:?}");
        let new_leader = cluster.leader().await;
        assert_ne!(new_leader, old_leader);
        // The client moved its writes to the new leader.
        client
            .refresh_leader()
            .await
            .expect("rediscover the leader");
        assert_eq!(client.leader_id(), Some(cluster.member_id(new_leader)));

        let acked = ledger.acked.lock().unwrap().clone();
        assert!(acked.len() >= at_kill + PUTS_AFTER_KILL);
        let resp = client
            .kv()
            .get("fo/", GetOptions::new().with_prefix())
            .await
            .expect("read back");
        let stored: BTreeMap<String, String> = resp
            .kvs
            .iter()
            .map(|kv| (text(&kv.key), text(&kv.value)))
            .collect();
        for (key, (value, rev)) in &acked {
            assert_eq!(
                stored.get(key),
                Some(value),
                "acknowledged put of {key} at revision {rev} is not readable"
            );
        }
        assert_eq!(stored.len(), acked.len(), "keys nobody acknowledged");
        eprintln!(
            "{} puts acknowledged, {} after the kill",
            acked.len(),
            acked.len() - at_kill
        );
    });
}

/// Puts `PHASE_KEYS` keys `wr/<phase>/<n>` through `client`; their
/// `(key, revision)` in order.
async fn write_phase(client: &Client, phase: &str) -> Vec<(String, i64)> {
    let kv = client.kv();
    let mut out = Vec::with_capacity(PHASE_KEYS);
    for n in 0..PHASE_KEYS {
        let key = format!("wr/{phase}/{n:03}");
        let resp = kv
            .put(key.as_str(), "x", PutOptions::new())
            .await
            .unwrap_or_else(|e| panic!("put {key}: {e}"));
        out.push((key, resp.header.expect("header").revision));
    }
    out
}

/// Reads `want` events from `watch`; their `(key, revision)` in delivery
/// order, and the stream.
async fn collect(mut watch: WatchStream, want: usize) -> (Vec<(String, i64)>, WatchStream) {
    let mut got = Vec::with_capacity(want);
    let deadline = Instant::now() + WATCH_TIMEOUT;
    while got.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        let next = timeout(left, watch.next_events())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "only {} of {want} events within {WATCH_TIMEOUT:?}: {got:?}",
                    got.len()
                )
            })
            .expect("watch failed")
            .expect("watch ended");
        for e in next {
            let kv = e.kv.expect("event kv");
            got.push((text(&kv.key), kv.mod_revision));
        }
    }
    (got, watch)
}

#[test]
fn watch_resumes_across_member_restarts() {
    run_scenario("watch_resumes_across_member_restarts", async {
        let mut cluster = Cluster::start(ClusterOptions::default());
        let leader = cluster.leader().await;
        let watched = (leader + 1) % cluster.len();
        let others: Vec<String> = (0..cluster.len())
            .filter(|&i| i != watched)
            .map(|i| cluster.client_url(i))
            .collect();
        let writer = connect(others).await;
        let watcher = connect(vec![cluster.client_url(watched)]).await;
        let watch = watcher
            .watch()
            .watch("wr/", WatchOptions::new().with_prefix())
            .await
            .expect("create the watch");
        let first_id = watch.watch_id();

        let mut expected = write_phase(&writer, "a").await;
        let (mut got, mut watch) = collect(watch, PHASE_KEYS).await;
        // Two rounds: the watcher reads while its member is killed,
        // written around and restarted; the round's last phase is written
        // once the member is back, so the watcher has resumed by the time
        // it has every event of the round.
        for (down, up) in [("b", "c"), ("d", "e")] {
            let reader = tokio::spawn(collect(watch, 2 * PHASE_KEYS));
            cluster.kill(watched);
            expected.extend(write_phase(&writer, down).await);
            cluster.restart(watched);
            expected.extend(write_phase(&writer, up).await);
            let (round, w) = reader.await.expect("watch reader");
            got.extend(round);
            watch = w;
        }
        assert_eq!(expected.len(), 5 * PHASE_KEYS);
        assert_eq!(got, expected, "events differ from the puts");
        assert!(
            watch.resumes() >= 2,
            "the watch was resumed {} time(s) across two kills",
            watch.resumes()
        );
        eprintln!(
            "watch ids: first {first_id}, last {}; {} resumes; last revision {}",
            watch.watch_id(),
            watch.resumes(),
            watch.last_revision()
        );
        assert_eq!(watch.last_revision(), expected.last().expect("puts").1);

        // Nothing follows the expected events: a progress response at or
        // past the last revision comes next, without events.
        watch.request_progress().await.expect("progress request");
        let resp = timeout(RESPONSE_TIMEOUT, watch.next())
            .await
            .expect("progress response in time")
            .expect("watch failed")
            .expect("watch ended");
        assert!(
            resp.events.is_empty(),
            "unexpected events {:?}",
            resp.events
        );
        assert!(resp.header.expect("header").revision >= watch.last_revision());
        watch.cancel().await.expect("cancel");

        // A watch from a compacted revision fails with the compact revision
        // (at creation, or with its first response).
        let compact_at = expected[PHASE_KEYS].1;
        writer
            .kv()
            .compact(compact_at, true)
            .await
            .expect("compact");
        let from = expected[0].1;
        // Each member applies the compaction on its own: wait until the
        // watcher's member reports the history before it gone.
        let deadline = Instant::now() + RESPONSE_TIMEOUT;
        loop {
            let read = watcher
                .kv()
                .get("wr/", GetOptions::new().with_revision(from))
                .await;
            match read {
                Err(e) if e.status().map(|s| s.message()) == Some(COMPACTED) => break,
                other => assert!(
                    Instant::now() < deadline,
                    "member {watched} still serves revision {from}: {other:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let opts = WatchOptions::new().with_prefix().with_start_revision(from);
        let outcome = match watcher.watch().watch("wr/", opts).await {
            Ok(mut w) => timeout(RESPONSE_TIMEOUT, w.next())
                .await
                .expect("answer in time")
                .map(|r| r.map(|r| r.events.len())),
            Err(e) => Err(e),
        };
        match outcome {
            Err(sett_client::Error::Compacted { compact_revision }) => {
                assert_eq!(compact_revision, compact_at);
            }
            other => panic!("watch from compacted revision {from}: {other:?}"),
        }
    });
}

#[test]
fn lease_keeper_keeps_a_lease_until_dropped() {
    run_scenario("lease_keeper_keeps_a_lease_until_dropped", async {
        let cluster = Cluster::start(ClusterOptions::default());
        let client = connect(cluster.client_urls()).await;
        let lease = client.lease();
        let granted = lease.grant(2, 0).await.expect("grant");
        let (id, ttl) = (granted.id, granted.ttl);
        assert!(ttl > 0);
        let ttl_span = Duration::from_secs(u64::try_from(ttl).expect("positive ttl"));
        client
            .kv()
            .put("lk/key", "v", PutOptions::new().with_lease(id))
            .await
            .expect("put with the lease");

        let mut keeper = lease.keep_alive(id).await.expect("keeper");
        assert_eq!(keeper.id(), id);
        // Outlive the TTL three times over, watching the renewals.
        let until = Instant::now() + 3 * ttl_span;
        let mut renewals = 0usize;
        while Instant::now() < until {
            let left = until.saturating_duration_since(Instant::now());
            if let Ok(renewed) = timeout(left, keeper.changed()).await {
                let renewed = renewed.expect("the keeper stopped");
                assert!(renewed > 0, "renewal reported TTL {renewed}");
                renewals += 1;
            }
        }
        assert!(renewals > 0, "no renewal while outliving the TTL");
        assert!(keeper.is_alive());
        let left = lease.time_to_live(id, true).await.expect("time to live");
        assert!(left.ttl > 0, "lease {id:#x} expired while kept: {left:?}");
        let resp = client
            .kv()
            .get("lk/key", GetOptions::new())
            .await
            .expect("get");
        assert_eq!(resp.kvs.len(), 1, "the leased key is gone while kept");

        // Dropped, the lease expires and takes its key along.
        drop(keeper);
        let deadline = Instant::now() + ttl_span + Duration::from_secs(20);
        loop {
            let left = lease.time_to_live(id, false).await.expect("time to live");
            if left.ttl < 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "lease {id:#x} still alive after its keeper was dropped: {left:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let resp = client
            .kv()
            .get("lk/key", GetOptions::new())
            .await
            .expect("get");
        assert!(resp.kvs.is_empty(), "the leased key outlived the lease");

        // A keeper stops by itself once its lease is revoked.
        let second = lease.grant(6, 0).await.expect("grant").id;
        let mut keeper = lease.keep_alive(second).await.expect("keeper");
        lease.revoke(second).await.expect("revoke");
        let stop_deadline = Instant::now() + Duration::from_secs(60);
        while keeper.is_alive() {
            let left = stop_deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "keeper of a revoked lease keeps running");
            let _ = timeout(left, keeper.changed()).await;
        }
        assert!(keeper.ttl() <= 0);
        assert!(matches!(
            lease.keep_alive(second).await,
            Err(sett_client::Error::LeaseExpired { .. })
        ));
    });
}

#[test]
fn typed_api_round_trips() {
    use sett_client::etcdserverpb::compare::CompareResult;
    use sett_client::etcdserverpb::range_request::{SortOrder, SortTarget};
    use sett_client::etcdserverpb::response_op::Response;
    use sett_client::kv::{Compare, Op};
    use sett_client::{DeleteOptions, TxnBuilder};

    run_scenario("typed_api_round_trips", async {
        let cluster = Cluster::start(ClusterOptions::default());
        let client = connect(cluster.client_urls()).await;
        let kv = client.kv();

        // Puts, a prefix range sorted and limited, a count.
        for (k, v) in [("api/a", "3"), ("api/b", "1"), ("api/c", "2")] {
            kv.put(k, v, PutOptions::new()).await.expect("put");
        }
        let prev = kv
            .put("api/a", "4", PutOptions::new().with_prev_kv())
            .await
            .expect("put with prev_kv");
        assert_eq!(text(&prev.prev_kv.expect("prev kv").value), "3");
        let sorted = kv
            .get(
                "api/",
                GetOptions::new()
                    .with_prefix()
                    .with_sort(SortTarget::Value, SortOrder::Descend)
                    .with_limit(2),
            )
            .await
            .expect("sorted range");
        let keys: Vec<String> = sorted.kvs.iter().map(|kv| text(&kv.key)).collect();
        assert_eq!(keys, ["api/a", "api/c"]);
        assert!(sorted.more);
        assert_eq!(sorted.count, 3);
        let counted = kv
            .get("api/", GetOptions::new().with_prefix().with_count_only())
            .await
            .expect("count");
        assert_eq!((counted.count, counted.kvs.len()), (3, 0));

        // A transaction: the compare fails, the else branch reads.
        let txn = TxnBuilder::new()
            .when([Compare::value("api/b", CompareResult::Equal, "nope")])
            .and_then([Op::put("api/b", "changed", &PutOptions::new())])
            .or_else([Op::get("api/b", &GetOptions::new()).expect("op")]);
        let resp = kv.txn(txn).await.expect("txn");
        assert!(!resp.succeeded);
        match &resp.responses[0].response {
            Some(Response::ResponseRange(r)) => assert_eq!(text(&r.kvs[0].value), "1"),
            other => panic!("unexpected txn response {other:?}"),
        }

        // Delete a prefix with the deleted kvs.
        let deleted = kv
            .delete("api/", DeleteOptions::new().with_prefix().with_prev_kv())
            .await
            .expect("delete");
        assert_eq!((deleted.deleted, deleted.prev_kvs.len()), (3, 3));

        // Leases: listed, with their keys.
        let lease = client.lease().grant(60, 0).await.expect("grant").id;
        kv.put("api/leased", "x", PutOptions::new().with_lease(lease))
            .await
            .expect("put with lease");
        // Members list leases from their own applied state (as etcd's do),
        // so a lagging one may not list it at once.
        let deadline = Instant::now() + RESPONSE_TIMEOUT;
        loop {
            let listed = client.lease().leases().await.expect("leases");
            if listed.leases.iter().any(|l| l.id == lease) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "lease {lease:#x} not listed: {listed:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let ttl = client.lease().time_to_live(lease, true).await.expect("ttl");
        assert_eq!(ttl.keys.len(), 1);
        client.lease().revoke(lease).await.expect("revoke");

        // Cluster and maintenance.
        let members = client.cluster().member_list().await.expect("members");
        assert_eq!(members.members.len(), cluster.len());
        let maintenance = client.maintenance();
        let mut hashes = Vec::new();
        let rev = kv
            .get("api/", GetOptions::new().with_prefix())
            .await
            .expect("range")
            .header
            .expect("header")
            .revision;
        for url in cluster.client_urls() {
            let status = maintenance.status(&url).await.expect("status");
            assert_ne!(status.leader, 0);
            // Every member applied `rev` once it answers a linearizable read.
            let one = connect(vec![url.clone()]).await;
            one.kv().get("api/", GetOptions::new()).await.expect("read");
            let h = maintenance.hash_kv(&url, rev).await.expect("hash_kv");
            hashes.push(h.hash);
        }
        assert!(
            hashes.windows(2).all(|w| w[0] == w[1]),
            "members disagree: {hashes:?}"
        );
        let alarms = maintenance.alarms().await.expect("alarms");
        assert!(alarms.alarms.is_empty());
        let mut snapshot = maintenance.snapshot().await.expect("snapshot");
        let mut bytes = 0usize;
        let mut chunks = 0usize;
        while let Some(chunk) = snapshot.next().await.expect("snapshot chunk") {
            bytes += chunk.blob.len();
            chunks += 1;
            assert!(chunks < 1_000_000, "snapshot does not end");
        }
        assert!(bytes > 0, "empty snapshot");
    });
}
