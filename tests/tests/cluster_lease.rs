//! etcd 3.4 Lease semantics through a real etcd client against a real
//! three-member cluster: grants (server-chosen and client-chosen ids, the
//! minimum TTL, too large TTLs, duplicate ids), keys attached with a lease,
//! TimeToLive with keys, the lease list, revoke (keys deleted, one DELETE
//! event each, unknown leases), expiry without keep-alives, keep-alives
//! through the leader and through a follower, and a kept-alive lease
//! surviving a SIGKILL of the leader.
//!
//! One cluster serves the whole file, with etcd's default timing (100 ms
//! heartbeat, 1 s election timeout), so the minimum TTL is
//! ceil(1.5 × 1 s) = 2 s. Each step works under its own key prefix
//! (`l1/`, `l2/`, …) and runs as a task of its own, so that a failing step
//! is reported and the later ones still run. The leader kill runs last.
//! Every wait is bounded; sleeps only pace keep-alives, and no assertion
//! is about timing.
//!
//! Needs `target/<profile>/sett` (`cargo build -p sett-server --bin sett`).
//! `SETT_CLUSTER_BIN=/usr/bin/etcd` runs the same steps against etcd.

#[path = "../src/cluster.rs"]
#[allow(dead_code)]
mod cluster;

use cluster::{assert_grpc_err, assert_steps_passed, rev, step, text, Cluster, ClusterOptions};
use etcd_client::{
    Client, Error, EventType, GetOptions, LeaseGrantOptions, LeaseKeepAliveStream, LeaseKeeper,
    LeaseTimeToLiveOptions, PutOptions, Txn, TxnOp, WatchOptions, WatchStream,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::time::{sleep, timeout};

/// `--heartbeat-interval` of the cluster, in milliseconds.
const HEARTBEAT_MS: u64 = 100;
/// `--election-timeout` of the cluster, in milliseconds.
const ELECTION_MS: u64 = 1_000;
/// The smallest TTL granted: ceil(1.5 × election timeout), in seconds.
const MIN_TTL: i64 = (3 * ELECTION_MS as i64 + 1_999) / 2_000;
/// Bound on one watch response, keep-alive answer or reconnect.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on waiting for a lease to expire on its own.
const EXPIRY_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on a follower catching up with the leader's lease list.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on one keep-alive round trip in a keep-alive loop.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between polls.
const POLL: Duration = Duration::from_millis(100);

const LEASE_NOT_FOUND: &str = "etcdserver: requested lease not found";
const LEASE_EXISTS: &str = "etcdserver: lease already exists";
const TTL_TOO_LARGE: &str = "etcdserver: too large lease TTL";

// ---- helpers ----

/// Grants a lease of `ttl` seconds with a server-chosen id; returns
/// `(id, granted ttl)`.
async fn grant(c: &mut Client, ttl: i64) -> (i64, i64) {
    let resp = c
        .lease_grant(ttl, None)
        .await
        .unwrap_or_else(|e| panic!("grant a lease of {ttl}s: {e}"));
    assert_eq!(resp.error(), "", "grant answered with an error");
    (resp.id(), resp.ttl())
}

async fn put_with_lease(c: &mut Client, key: &str, value: &str, lease: i64) -> i64 {
    let resp = c
        .put(key, value, Some(PutOptions::new().with_lease(lease)))
        .await
        .unwrap_or_else(|e| panic!("put {key} with lease {lease:x}: {e}"));
    rev(resp.header())
}

/// `(key, value, lease)` of every key under `prefix`, linearizably read.
async fn under(c: &mut Client, prefix: &str) -> Vec<(String, String, i64)> {
    let resp = c
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await
        .unwrap_or_else(|e| panic!("get prefix {prefix}: {e}"));
    resp.kvs()
        .iter()
        .map(|kv| (text(kv.key()), text(kv.value()), kv.lease()))
        .collect()
}

/// `(ttl, granted ttl, sorted keys)` of lease `id`.
async fn time_to_live(c: &mut Client, id: i64) -> (i64, i64, Vec<String>) {
    let resp = c
        .lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .unwrap_or_else(|e| panic!("time-to-live of lease {id:x}: {e}"));
    assert_eq!(resp.id(), id, "time-to-live answers for the lease asked");
    let mut keys: Vec<String> = resp.keys().iter().map(|k| text(k)).collect();
    keys.sort_unstable();
    (resp.ttl(), resp.granted_ttl(), keys)
}

async fn lease_ids(c: &mut Client) -> Vec<i64> {
    let resp = c.leases().await.expect("lease list");
    let mut ids: Vec<i64> = resp.leases().iter().map(|l| l.id()).collect();
    ids.sort_unstable();
    ids
}

/// Polls `c`'s lease list until `pred` holds for it (bounded).
async fn wait_lease_list(c: &mut Client, what: &str, pred: impl Fn(&[i64]) -> bool) {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    loop {
        let ids = lease_ids(c).await;
        if pred(&ids) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: lease list {ids:x?} after {CONVERGE_TIMEOUT:?}"
        );
        sleep(POLL).await;
    }
}

/// Opens a watch on `prefix` from the next revision.
async fn watch_prefix(c: &mut Client, prefix: &str) -> WatchStream {
    let mut stream = c
        .watch(prefix, Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap_or_else(|e| panic!("watch {prefix}: {e}"));
    let r = next_response(&mut stream, prefix, RESPONSE_TIMEOUT).await;
    assert!(r.created() && !r.canceled(), "watch {prefix}: {r:?}");
    stream
}

async fn next_response(
    stream: &mut WatchStream,
    what: &str,
    bound: Duration,
) -> etcd_client::WatchResponse {
    match timeout(bound, stream.message()).await {
        Ok(Ok(Some(r))) => r,
        Ok(Ok(None)) => panic!("{what}: the watch stream ended"),
        Ok(Err(e)) => panic!("{what}: watch stream error: {e}"),
        Err(_) => panic!("{what}: no watch response within {bound:?}"),
    }
}

/// Reads `n` events; returns `(is_delete, key, mod_revision)` of each.
async fn events(
    stream: &mut WatchStream,
    n: usize,
    what: &str,
    bound: Duration,
) -> Vec<(bool, String, i64)> {
    let deadline = Instant::now() + bound;
    let mut out = Vec::new();
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let r = next_response(stream, what, left).await;
        assert!(!r.canceled(), "{what}: watch cancelled: {r:?}");
        for e in r.events() {
            let kv = e.kv().expect("event kv");
            out.push((
                e.event_type() == EventType::Delete,
                text(kv.key()),
                kv.mod_revision(),
            ));
        }
    }
    out
}

/// Asserts that nothing but the answer to a progress request arrives on
/// `stream`: no event beyond those already read.
async fn expect_quiet(stream: &mut WatchStream, what: &str) {
    stream.request_progress().await.expect("progress request");
    loop {
        let r = next_response(stream, what, RESPONSE_TIMEOUT).await;
        assert!(
            r.events().is_empty(),
            "{what}: unexpected events {:?}",
            r.events()
        );
        if r.watch_id() == -1 {
            return;
        }
    }
}

// ---- keep-alive loop ----

/// What a keep-alive loop saw.
#[derive(Debug, Default)]
struct KeepAliveLog {
    /// TTLs answered to keep-alives (the stream's first answer, consumed
    /// by the client, counts with the TTL of the lease as granted).
    answered: Vec<i64>,
    /// Transport or server errors (the loop reconnects after each).
    errors: Vec<String>,
    /// Answers saying the lease does not exist (TTL ≤ 0).
    not_found: Vec<String>,
}

/// Keeps lease `id` alive through `client`, one keep-alive every
/// `period`, until `stop` is set; reconnects the keep-alive stream after
/// any error.
async fn keep_alive_loop(
    mut client: Client,
    id: i64,
    granted: i64,
    period: Duration,
    stop: Arc<AtomicBool>,
) -> KeepAliveLog {
    /// More rounds than any step runs for.
    const ROUNDS_MAX: usize = 10_000;
    let mut log = KeepAliveLog::default();
    let mut session: Option<(LeaseKeeper, LeaseKeepAliveStream)> = None;
    for _ in 0..ROUNDS_MAX {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        match session.as_mut() {
            None => match timeout(KEEP_ALIVE_TIMEOUT, client.lease_keep_alive(id)).await {
                Ok(Ok((keeper, stream))) => {
                    assert_eq!(keeper.id(), id, "keeper for the lease asked");
                    log.answered.push(granted);
                    session = Some((keeper, stream));
                }
                // etcd-client's way of saying the first answer had TTL 0.
                Ok(Err(Error::LeaseKeepAliveError(m))) if m.contains("not found") => {
                    log.not_found.push(m);
                }
                Ok(Err(e)) => log.errors.push(format!("open: {e}")),
                Err(_) => log.errors.push("open: timed out".to_owned()),
            },
            Some((keeper, stream)) => {
                let round = async {
                    keeper.keep_alive().await?;
                    stream.message().await
                };
                match timeout(KEEP_ALIVE_TIMEOUT, round).await {
                    Ok(Ok(Some(resp))) => {
                        assert_eq!(resp.id(), id, "keep-alive answer for the lease sent");
                        if resp.ttl() > 0 {
                            log.answered.push(resp.ttl());
                        } else {
                            log.not_found.push(format!("keep-alive answered {resp:?}"));
                            session = None;
                        }
                    }
                    Ok(Ok(None)) => {
                        log.errors.push("the keep-alive stream ended".to_owned());
                        session = None;
                    }
                    Ok(Err(e)) => {
                        log.errors.push(e.to_string());
                        session = None;
                    }
                    Err(_) => {
                        log.errors.push("keep-alive timed out".to_owned());
                        session = None;
                    }
                }
            }
        }
        sleep(period).await;
    }
    log
}

/// Runs [`keep_alive_loop`] for `run` (paced by sleeps only).
async fn keep_alive_for(client: Client, id: i64, granted: i64, run: Duration) -> KeepAliveLog {
    let stop = Arc::new(AtomicBool::new(false));
    let period = Duration::from_millis(u64::try_from(granted).expect("ttl") * 1000 / 4);
    let task = tokio::spawn(keep_alive_loop(client, id, granted, period, stop.clone()));
    sleep(run).await;
    stop.store(true, Ordering::Relaxed);
    task.await.expect("keep-alive task")
}

// ---- the steps ----

/// Grants, the minimum TTL, client-chosen ids, keys attached to a lease,
/// TimeToLive with keys (also through a follower) and the lease list.
async fn grant_and_attach(mut c: Client, mut f: Client) {
    // A TTL below the minimum is raised to it; a server-chosen id is
    // positive.
    let (short, ttl) = grant(&mut c, 1).await;
    assert!(short > 0, "server-chosen lease id {short} is positive");
    assert_eq!(ttl, MIN_TTL, "TTL 1 raised to the minimum");
    let (zero, ttl) = grant(&mut c, 0).await;
    assert_eq!(ttl, MIN_TTL, "TTL 0 raised to the minimum");
    c.lease_revoke(zero).await.expect("revoke");
    let (long, ttl) = grant(&mut f, 60).await;
    assert!(long > 0 && long != short, "ids {short:x} {long:x}");
    assert_eq!(
        ttl, 60,
        "a TTL above the minimum is kept (through a follower)"
    );

    // A client-chosen id is used as given; granting it again fails.
    let chosen = 0x5e77_1ea5e;
    let resp = c
        .lease_grant(30, Some(LeaseGrantOptions::new().with_id(chosen)))
        .await
        .expect("grant with a chosen id");
    assert_eq!((resp.id(), resp.ttl()), (chosen, 30));
    assert_grpc_err(
        c.lease_grant(30, Some(LeaseGrantOptions::new().with_id(chosen)))
            .await,
        "FailedPrecondition",
        LEASE_EXISTS,
    );
    assert_grpc_err(
        c.lease_grant(9_000_000_001, None).await,
        "OutOfRange",
        TTL_TOO_LARGE,
    );

    // Keys attached to a lease carry its id.
    put_with_lease(&mut c, "l1/b", "vb", long).await;
    put_with_lease(&mut f, "l1/a", "va", long).await;
    put_with_lease(&mut c, "l1/c", "vc", chosen).await;
    c.put("l1/plain", "no lease", None).await.expect("put");
    assert_eq!(
        under(&mut f, "l1/").await,
        [
            ("l1/a".into(), "va".into(), long),
            ("l1/b".into(), "vb".into(), long),
            ("l1/c".into(), "vc".into(), chosen),
            ("l1/plain".into(), "no lease".into(), 0),
        ]
    );
    // A put with an unknown lease fails and writes nothing.
    assert_grpc_err(
        c.put("l1/x", "v", Some(PutOptions::new().with_lease(0x7777)))
            .await,
        "NotFound",
        LEASE_NOT_FOUND,
    );
    assert_eq!(under(&mut c, "l1/x").await, []);

    // TimeToLive: remaining TTL within the granted one, the keys; the
    // same through a follower (etcd forwards it to the leader).
    for (who, client) in [("leader", &mut c), ("follower", &mut f)] {
        let (ttl, granted, keys) = time_to_live(client, long).await;
        assert_eq!(granted, 60, "granted TTL via the {who}");
        assert!(0 < ttl && ttl <= 60, "remaining TTL {ttl} via the {who}");
        assert_eq!(keys, ["l1/a", "l1/b"], "attached keys via the {who}");
        let (ttl, granted, keys) = time_to_live(client, chosen).await;
        assert_eq!(granted, 30, "via the {who}");
        assert!(0 < ttl && ttl <= 30, "remaining TTL {ttl} via the {who}");
        assert_eq!(keys, ["l1/c"], "via the {who}");
        let (_, _, keys) = time_to_live(client, short).await;
        assert!(keys.is_empty(), "a lease without keys: {keys:?}");
    }
    // Without the keys flag, no keys.
    let resp = c
        .lease_time_to_live(long, None)
        .await
        .expect("time-to-live without keys");
    assert!(resp.keys().is_empty(), "keys not asked for: {resp:?}");

    // The list holds every lease, on every member once it has applied.
    let all = [short, long, chosen];
    for (who, client) in [("leader", &mut c), ("follower", &mut f)] {
        wait_lease_list(client, &format!("lease list via the {who}"), |ids| {
            all.iter().all(|id| ids.contains(id))
        })
        .await;
    }

    // A put with ignore_lease keeps the key's lease; a plain put detaches
    // the key; a delete detaches it too.
    c.put("l1/a", "va2", Some(PutOptions::new().with_ignore_lease()))
        .await
        .expect("put with ignore_lease");
    c.put("l1/b", "vb2", None)
        .await
        .expect("put without a lease");
    let txn = Txn::new().and_then([TxnOp::put(
        "l1/t",
        "vt",
        Some(PutOptions::new().with_lease(long)),
    )]);
    c.txn(txn).await.expect("txn put with a lease");
    put_with_lease(&mut c, "l1/d", "vd", long).await;
    c.delete("l1/d", None).await.expect("delete");
    let (_, _, keys) = time_to_live(&mut f, long).await;
    assert_eq!(
        keys,
        ["l1/a", "l1/t"],
        "keys on the lease after ignore_lease, a detach, a delete and a txn put"
    );

    for id in all {
        c.lease_revoke(id).await.expect("revoke");
    }
    assert_eq!(
        under(&mut c, "l1/").await,
        [
            ("l1/b".into(), "vb2".into(), 0),
            ("l1/plain".into(), "no lease".into(), 0)
        ],
        "revokes delete the attached keys only"
    );
}

/// Revoke (through a follower) deletes the attached keys in one revision,
/// one DELETE event per key; a revoked or unknown lease is NotFound.
async fn revoke(mut c: Client, mut f: Client) {
    let what = "revoke";
    let (id, _) = grant(&mut c, 60).await;
    put_with_lease(&mut c, "l2/b", "vb", id).await;
    put_with_lease(&mut f, "l2/a", "va", id).await;
    c.put("l2/keep", "v", None).await.expect("put");
    let mut watch = watch_prefix(&mut c, "l2/").await;
    let resp = f.lease_revoke(id).await.expect("revoke through a follower");
    let at = rev(resp.header());
    let evs = events(&mut watch, 2, what, RESPONSE_TIMEOUT).await;
    assert_eq!(
        evs,
        [(true, "l2/a".into(), at), (true, "l2/b".into(), at)],
        "{what}: one DELETE per attached key, in key order, at the revoke's revision"
    );
    expect_quiet(&mut watch, what).await;
    assert_eq!(
        under(&mut c, "l2/").await,
        [("l2/keep".into(), "v".into(), 0)]
    );

    let (ttl, _, keys) = time_to_live(&mut c, id).await;
    assert_eq!(ttl, -1, "{what}: time-to-live of a revoked lease");
    assert!(keys.is_empty(), "{keys:?}");
    assert_grpc_err(c.lease_revoke(id).await, "NotFound", LEASE_NOT_FOUND);
    assert_grpc_err(
        f.lease_revoke(0x4242_4242).await,
        "NotFound",
        LEASE_NOT_FOUND,
    );
    // A keep-alive of an unknown lease is answered with TTL 0, which the
    // client reports as "lease not found".
    for (who, client) in [("leader", &mut c), ("follower", &mut f)] {
        match timeout(RESPONSE_TIMEOUT, client.lease_keep_alive(id)).await {
            Ok(Err(Error::LeaseKeepAliveError(m))) => {
                assert!(m.contains("not found"), "{what} via the {who}: {m}")
            }
            other => panic!("{what}: keep-alive of a revoked lease via the {who}: {other:?}"),
        }
    }
}

/// Without keep-alives a lease expires: its keys are deleted (one DELETE
/// event each, one revision), TimeToLive answers -1, the list drops it.
async fn expiry(mut c: Client, mut f: Client) {
    let what = "expiry";
    let mut watch = watch_prefix(&mut f, "l3/").await;
    let (id, ttl) = grant(&mut f, MIN_TTL).await;
    assert_eq!(ttl, MIN_TTL);
    let mut put_revs = Vec::new();
    for k in ["l3/c", "l3/a", "l3/b"] {
        put_revs.push(put_with_lease(&mut c, k, "v", id).await);
    }
    let evs = events(&mut watch, 6, what, EXPIRY_TIMEOUT).await;
    let puts: Vec<(bool, String, i64)> = ["l3/c", "l3/a", "l3/b"]
        .iter()
        .zip(&put_revs)
        .map(|(k, r)| (false, (*k).to_owned(), *r))
        .collect();
    assert_eq!(evs[..3], puts[..], "{what}: the puts");
    let at = evs[3].2;
    assert!(at > put_revs[2], "{what}: deletes after the puts: {evs:?}");
    assert_eq!(
        evs[3..],
        [
            (true, "l3/a".into(), at),
            (true, "l3/b".into(), at),
            (true, "l3/c".into(), at)
        ],
        "{what}: one DELETE per attached key, in key order, in one revision"
    );
    expect_quiet(&mut watch, what).await;
    assert_eq!(under(&mut c, "l3/").await, []);
    for (who, client) in [("leader", &mut c), ("follower", &mut f)] {
        let (ttl, granted, keys) = time_to_live(client, id).await;
        assert_eq!(
            (ttl, granted, keys.len()),
            (-1, 0, 0),
            "{what}: time-to-live of an expired lease via the {who}"
        );
        wait_lease_list(client, &format!("{what}: list via the {who}"), |ids| {
            !ids.contains(&id)
        })
        .await;
    }
}

/// Keep-alives through the leader and through a follower keep leases of
/// the minimum TTL alive for four TTLs.
async fn keep_alive(mut c: Client, f: Client) {
    let what = "keep-alive";
    let (via_leader, ttl) = grant(&mut c, MIN_TTL).await;
    let (via_follower, _) = grant(&mut c, MIN_TTL).await;
    put_with_lease(&mut c, "l4/follower", "v", via_follower).await;
    put_with_lease(&mut c, "l4/leader", "v", via_leader).await;
    let period = Duration::from_millis(u64::try_from(ttl).expect("ttl") * 1000 / 4);
    let stop = Arc::new(AtomicBool::new(false));
    let a = tokio::spawn(keep_alive_loop(
        c.clone(),
        via_leader,
        ttl,
        period,
        stop.clone(),
    ));
    let b = tokio::spawn(keep_alive_loop(f, via_follower, ttl, period, stop.clone()));
    sleep(Duration::from_secs(4 * u64::try_from(ttl).expect("ttl"))).await;
    // Checked while the keep-alives still run.
    let keys = under(&mut c, "l4/").await;
    let (ttl_a, granted_a, _) = time_to_live(&mut c, via_leader).await;
    let (ttl_b, granted_b, _) = time_to_live(&mut c, via_follower).await;
    stop.store(true, Ordering::Relaxed);
    let log_a = a.await.expect("keep-alive task");
    let log_b = b.await.expect("keep-alive task");
    for (who, log) in [("leader", &log_a), ("follower", &log_b)] {
        assert!(
            log.errors.is_empty() && log.not_found.is_empty(),
            "{what} via the {who}: {log:?}"
        );
        assert!(
            log.answered.len() >= 2 && log.answered.iter().all(|t| *t == ttl),
            "{what} via the {who}: every keep-alive answered with the granted TTL: {log:?}"
        );
    }
    assert_eq!(
        keys,
        [
            ("l4/follower".into(), "v".into(), via_follower),
            ("l4/leader".into(), "v".into(), via_leader)
        ],
        "{what}: the keys outlived four TTLs"
    );
    assert!(
        ttl_a >= 0 && ttl_b >= 0 && granted_a == ttl && granted_b == ttl,
        "{what}: time-to-live while kept alive: {ttl_a}/{granted_a}, {ttl_b}/{granted_b}"
    );
    for id in [via_leader, via_follower] {
        c.lease_revoke(id).await.expect("revoke");
    }
}

/// A lease kept alive through a follower survives a SIGKILL of the
/// leader: the keep-alives reconnect, a new leader takes over, and the
/// lease and its key still exist. Returns the cluster (two members run).
async fn leader_kill(mut cluster: Cluster) -> Cluster {
    let what = "leader kill";
    const TTL: i64 = 4;
    let leader = cluster.leader().await;
    let via = (leader + 1) % cluster.len();
    let mut f = cluster.client(via).await;
    let (id, ttl) = grant(&mut f, TTL).await;
    assert_eq!(ttl, TTL);
    put_with_lease(&mut f, "l5/k", "v", id).await;
    let ttl_span = Duration::from_secs(u64::try_from(TTL).expect("ttl"));

    // Past the first deadline, so only keep-alives hold the lease.
    let before = keep_alive_for(f.clone(), id, ttl, 2 * ttl_span).await;
    assert!(
        before.errors.is_empty() && before.not_found.is_empty(),
        "{what}: keep-alives before the kill: {before:?}"
    );

    // A lease nobody keeps alive, granted just before the kill with a TTL
    // long enough to outlive the old leader: the new leader must expire it.
    let (orphan, _) = grant(&mut f, 3 * TTL).await;
    put_with_lease(&mut f, "l5/orphan", "v", orphan).await;

    let stop = Arc::new(AtomicBool::new(false));
    let period = ttl_span / 4;
    let task = tokio::spawn(keep_alive_loop(f.clone(), id, ttl, period, stop.clone()));
    let killed = Instant::now();
    cluster.kill(leader);
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, leader, "{what}: a running member leads");
    eprintln!(
        "{what}: killed {}, {} leads after {:?}",
        cluster.name(leader),
        cluster.name(new_leader),
        killed.elapsed()
    );
    sleep(3 * ttl_span).await;
    let keys = under(&mut f, "l5/k").await;
    let (left, granted, attached) = time_to_live(&mut f, id).await;
    stop.store(true, Ordering::Relaxed);
    let after = task.await.expect("keep-alive task");
    eprintln!(
        "{what}: {} keep-alives answered after the kill, {} errors",
        after.answered.len(),
        after.errors.len()
    );
    assert!(
        after.not_found.is_empty(),
        "{what}: the lease expired or vanished around the leader change: {after:?}"
    );
    assert!(
        !after.answered.is_empty(),
        "{what}: no keep-alive answered after the kill: {after:?}"
    );
    assert_eq!(
        keys,
        [("l5/k".into(), "v".into(), id)],
        "{what}: the key of the kept-alive lease"
    );
    assert!(
        (0..=TTL).contains(&left) && granted == TTL && attached == ["l5/k"],
        "{what}: time-to-live after the leader change: ttl {left}, granted {granted}, keys {attached:?}"
    );
    let mut n = cluster.client(new_leader).await;
    assert_eq!(
        under(&mut n, "l5/k").await,
        keys,
        "{what}: via the new leader"
    );

    // The new leader expires the lease nobody kept alive.
    let deadline = Instant::now() + EXPIRY_TIMEOUT;
    while !under(&mut n, "l5/orphan").await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{what}: lease {orphan:x} (TTL {}s, no keep-alives) not expired {EXPIRY_TIMEOUT:?} \
             after the new leader took over",
            3 * TTL
        );
        sleep(POLL).await;
    }
    let (left, _, _) = time_to_live(&mut n, orphan).await;
    assert_eq!(left, -1, "{what}: time-to-live of the expired lease");
    cluster
}

/// Leases are durable: after every member is stopped and started again,
/// a granted lease (with its TTL and keys) is still there on every member
/// and a revoked one is still gone. Restarts a member a previous step
/// killed first. Returns the cluster.
async fn restart_all(mut cluster: Cluster) -> Cluster {
    let what = "restart";
    for i in 0..cluster.len() {
        if !cluster.is_running(i) {
            cluster.restart(i);
            cluster.wait_ready(i).await;
        }
    }
    let leader = cluster.leader().await;
    let mut c = cluster.client(leader).await;
    let (kept, _) = grant(&mut c, 600).await;
    let (gone, _) = grant(&mut c, 600).await;
    put_with_lease(&mut c, "l6/kept", "v", kept).await;
    put_with_lease(&mut c, "l6/gone", "v", gone).await;
    c.lease_revoke(gone).await.expect("revoke");
    // Every member has applied the writes before it is stopped.
    for i in 0..cluster.len() {
        let mut m = cluster.client(i).await;
        wait_lease_list(
            &mut m,
            &format!("{what}: list on {}", cluster.name(i)),
            |ids| ids.contains(&kept) && !ids.contains(&gone),
        )
        .await;
    }
    drop(c);
    for i in 0..cluster.len() {
        cluster.stop(i);
    }
    for i in 0..cluster.len() {
        cluster.restart(i);
    }
    let leader = cluster.leader().await;
    for i in 0..cluster.len() {
        cluster.wait_ready(i).await;
        let mut m = cluster.client(i).await;
        let who = format!("{what}: via {}", cluster.name(i));
        let (ttl, granted, keys) = time_to_live(&mut m, kept).await;
        assert!(
            granted == 600 && 0 < ttl && ttl <= 600 && keys == ["l6/kept"],
            "{who}: time-to-live of a granted lease: ttl {ttl}, granted {granted}, keys {keys:?}"
        );
        let (ttl, _, _) = time_to_live(&mut m, gone).await;
        assert_eq!(ttl, -1, "{who}: a revoked lease stays revoked");
        wait_lease_list(&mut m, &who, |ids| {
            ids.contains(&kept) && !ids.contains(&gone)
        })
        .await;
        assert_eq!(
            under(&mut m, "l6/").await,
            [("l6/kept".into(), "v".into(), kept)],
            "{who}: keys"
        );
    }
    let mut c = cluster.client(leader).await;
    c.lease_revoke(kept)
        .await
        .expect("revoke after the restart");
    assert_eq!(under(&mut c, "l6/").await, []);
    cluster
}

#[test]
fn etcd_lease_semantics() {
    let started = Instant::now();
    let cluster = Cluster::start(ClusterOptions {
        heartbeat_interval_ms: HEARTBEAT_MS,
        election_timeout_ms: ELECTION_MS,
        ..ClusterOptions::default()
    });
    eprintln!(
        "cluster up in {:?} at {}",
        started.elapsed(),
        cluster.dir().display()
    );
    let rt = cluster::runtime();
    let (failures, cluster) = rt.block_on(async move {
        let leader = cluster.leader().await;
        let follower = (leader + 1) % cluster.len();
        let c = cluster.client(leader).await;
        let f = cluster.client(follower).await;
        let mut failures = Vec::new();
        let fs = &mut failures;
        step(
            fs,
            "grant and attach",
            grant_and_attach(c.clone(), f.clone()),
        )
        .await;
        step(fs, "revoke", revoke(c.clone(), f.clone())).await;
        step(fs, "expiry", expiry(c.clone(), f.clone())).await;
        step(fs, "keep-alive", keep_alive(c, f)).await;
        let cluster = step(fs, "leader kill", leader_kill(cluster)).await;
        let cluster = match cluster {
            Some(cluster) => step(fs, "restart", restart_all(cluster)).await,
            None => None,
        };
        (failures, cluster)
    });
    eprintln!("lease steps done in {:?}", started.elapsed());
    assert_steps_passed(&failures);
    drop(cluster);
}
