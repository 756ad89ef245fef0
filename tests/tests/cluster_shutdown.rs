//! Stopping a member (SIGTERM) while clients hold streams open on it: a
//! Watch stream and a LeaseKeepAlive stream on the member, a unary Put
//! in flight. The member exits promptly (it does not wait for the
//! streams, which a client may keep open forever); the watch and
//! keep-alive clients see their streams end or fail; the Put gets an
//! answer (and if it succeeded, the write is there after the restart);
//! restarted, the member serves reads, writes and watches again. Done
//! once on a follower and once on the leader.
//!
//! Needs `target/<profile>/sett` (`cargo build -p sett-server --bin sett`).
//! `SETT_CLUSTER_BIN=/usr/bin/etcd` runs the same steps against etcd.

#[path = "../src/cluster.rs"]
#[allow(dead_code)]
mod cluster;

use cluster::{put_retrying, run_scenario, text, Cluster, ClusterOptions};
use etcd_client::{Client, EventType, WatchOptions, WatchStream};
use std::time::{Duration, Instant};
use tokio::time::timeout;

/// Bound on one answer from a running member.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(15);
/// What a stopping member logs when a connection is still open at the
/// end of its grace period: a stream that did not end on the stop.
const ABANDONED: &str = "connections still open";
/// Bound on a stream's end once its member has exited.
const STREAM_END_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on the answer to the Put in flight during the stop.
const IN_FLIGHT_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on retried writes while the cluster settles.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// TTL of the kept-alive lease, in seconds.
const LEASE_TTL: i64 = 60;

/// Reads the next watch response, which must carry a PUT of `key` =
/// `value`.
async fn expect_put(stream: &mut WatchStream, key: &str, value: &str) {
    let resp = timeout(RESPONSE_TIMEOUT, stream.message())
        .await
        .unwrap_or_else(|_| panic!("no watch event for {key} within {RESPONSE_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("watch stream failed before the stop: {e}"))
        .unwrap_or_else(|| panic!("watch stream ended before the stop"));
    let events = resp.events();
    assert_eq!(events.len(), 1, "one event for {key}: {resp:?}");
    assert_eq!(events[0].event_type(), EventType::Put);
    let kv = events[0].kv().expect("a put event carries its kv");
    assert_eq!(
        (text(kv.key()), text(kv.value())),
        (key.to_owned(), value.to_owned())
    );
}

/// Opens a watch on `prefix` through `client` and waits for its creation.
async fn open_watch(client: &mut Client, prefix: &str) -> WatchStream {
    let mut stream = timeout(
        RESPONSE_TIMEOUT,
        client.watch(prefix, Some(WatchOptions::new().with_prefix())),
    )
    .await
    .unwrap_or_else(|_| panic!("watch {prefix}: no answer within {RESPONSE_TIMEOUT:?}"))
    .unwrap_or_else(|e| panic!("watch {prefix}: {e}"));
    let created = timeout(RESPONSE_TIMEOUT, stream.message())
        .await
        .unwrap_or_else(|_| panic!("watch {prefix}: not created within {RESPONSE_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("watch {prefix}: {e}"))
        .unwrap_or_else(|| panic!("watch {prefix}: stream ended"));
    assert!(
        created.created() && !created.canceled(),
        "watch {prefix}: {created:?}"
    );
    stream
}

/// Stops member `i` with a watch stream, a keep-alive stream and a Put
/// in flight on it, then restarts it; `tag` names the keys.
async fn stop_with_streams(cluster: &mut Cluster, i: usize, tag: &str) {
    let other = (i + 1) % cluster.len();
    let mut on_member = cluster.client(i).await;
    let mut elsewhere = cluster.client(other).await;
    let prefix = format!("{tag}/");

    // A working watch stream on the member.
    let mut watch = open_watch(&mut on_member, &prefix).await;
    let before = format!("{prefix}before");
    put_retrying(&mut elsewhere, &before, "1", SETTLE_TIMEOUT, "put", || {
        cluster.all_log_tails()
    })
    .await;
    expect_put(&mut watch, &before, "1").await;

    // A working keep-alive stream on the member.
    let lease = timeout(RESPONSE_TIMEOUT, on_member.lease_grant(LEASE_TTL, None))
        .await
        .expect("lease grant answered")
        .expect("lease grant");
    let (mut keeper, mut keep_alive) =
        timeout(RESPONSE_TIMEOUT, on_member.lease_keep_alive(lease.id()))
            .await
            .expect("keep-alive stream opened in time")
            .expect("keep-alive stream");
    keeper.keep_alive().await.expect("keep-alive sent");
    let renewed = timeout(RESPONSE_TIMEOUT, keep_alive.message())
        .await
        .expect("keep-alive answered in time")
        .expect("keep-alive answer")
        .expect("keep-alive stream open");
    assert!(renewed.ttl() > 0, "lease renewed: {renewed:?}");

    // A Put in flight when SIGTERM arrives.
    // Outside the watched prefix: the watch may see nothing after the stop.
    let in_flight_key = format!("{tag}-in-flight");
    let in_flight = {
        let mut client = on_member.clone();
        let key = in_flight_key.clone();
        tokio::spawn(async move { timeout(IN_FLIGHT_TIMEOUT, client.put(key, "2", None)).await })
    };
    tokio::time::sleep(Duration::from_millis(5)).await;

    let started = Instant::now();
    tokio::task::block_in_place(|| cluster.stop(i));
    let took = started.elapsed();
    eprintln!("{tag}: member {} stopped in {took:?}", cluster.name(i));
    // Every connection closed by itself: the member did not have to
    // abandon one at the end of its grace period (it logs when it does).
    assert!(
        !cluster.log_contains(i, ABANDONED),
        "{tag}: member {} abandoned connections still open at its stop:\n{}",
        cluster.name(i),
        cluster.log_tail(i)
    );

    // Both streams have ended (cleanly or with an error), none hangs.
    match timeout(STREAM_END_TIMEOUT, watch.message()).await {
        Ok(Ok(None)) => eprintln!("{tag}: watch stream ended"),
        Ok(Err(e)) => eprintln!("{tag}: watch stream failed: {e}"),
        Ok(Ok(Some(r))) => panic!("{tag}: watch response after the stop: {r:?}"),
        Err(_) => panic!("{tag}: watch stream still open {STREAM_END_TIMEOUT:?} after the stop"),
    }
    match timeout(STREAM_END_TIMEOUT, keep_alive.message()).await {
        Ok(Ok(None)) => eprintln!("{tag}: keep-alive stream ended"),
        Ok(Err(e)) => eprintln!("{tag}: keep-alive stream failed: {e}"),
        Ok(Ok(Some(r))) => panic!("{tag}: keep-alive response after the stop: {r:?}"),
        Err(_) => {
            panic!("{tag}: keep-alive stream still open {STREAM_END_TIMEOUT:?} after the stop")
        }
    }
    // The Put in flight has its answer.
    let put_ok = match in_flight.await.expect("put task") {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => {
            eprintln!("{tag}: put in flight failed: {e}");
            false
        }
        Err(_) => panic!("{tag}: put in flight unanswered {IN_FLIGHT_TIMEOUT:?} after the stop"),
    };
    eprintln!("{tag}: put in flight succeeded: {put_ok}");

    // Restarted, the member serves again: reads (with the write in
    // flight if it was acknowledged), writes, watches.
    cluster.restart(i);
    cluster.wait_ready(i).await;
    let mut again = cluster.client(i).await;
    if put_ok {
        let got = timeout(RESPONSE_TIMEOUT, again.get(in_flight_key.as_str(), None))
            .await
            .expect("get answered in time")
            .expect("get after the restart");
        assert_eq!(
            got.kvs().first().map(|kv| text(kv.value())),
            Some("2".to_owned()),
            "{tag}: the acknowledged put in flight after the restart"
        );
    }
    let mut watch = open_watch(&mut again, &prefix).await;
    let after = format!("{prefix}after");
    put_retrying(
        &mut again,
        &after,
        "3",
        SETTLE_TIMEOUT,
        "put after restart",
        || cluster.all_log_tails(),
    )
    .await;
    expect_put(&mut watch, &after, "3").await;
    let (mut keeper, mut keep_alive) =
        timeout(RESPONSE_TIMEOUT, again.lease_keep_alive(lease.id()))
            .await
            .expect("keep-alive stream opened in time after the restart")
            .expect("keep-alive stream after the restart");
    keeper.keep_alive().await.expect("keep-alive sent");
    let renewed = timeout(RESPONSE_TIMEOUT, keep_alive.message())
        .await
        .expect("keep-alive answered in time after the restart")
        .expect("keep-alive answer after the restart")
        .expect("keep-alive stream open after the restart");
    assert!(
        renewed.ttl() > 0,
        "lease renewed after the restart: {renewed:?}"
    );
}

#[test]
fn stopping_a_member_ends_its_streams() {
    run_scenario("stopping_a_member_ends_its_streams", async {
        let mut cluster = Cluster::start(ClusterOptions::default());
        let leader = cluster.leader().await;
        let follower = (leader + 1) % cluster.len();
        stop_with_streams(&mut cluster, follower, "follower").await;
        let leader = cluster.leader().await;
        stop_with_streams(&mut cluster, leader, "leader").await;
    });
}
