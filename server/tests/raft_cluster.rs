//! A three-member openraft cluster in one process on the engine-backed
//! stores, with an in-memory network: writes replicate, logs are purged
//! behind snapshots, a new learner catches up through a streamed snapshot
//! file (`generic-snapshot-data`: `full_snapshot` copies the file into the
//! handle from `begin_receiving_snapshot`, as the gRPC transport will), and
//! a restarted member recovers its state from disk.

use prost::Message;
use sett_proto::etcdserverpb::PutRequest;
use sett_server::raft::types::Raft;
use sett_server::raft::{KvApplier, LogStore, NodeId, Request, SettNode, StateMachineStore};
use sett_server::testing::runtime;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

mod common;

use common::{config, node, Router as Net};

/// The in-memory network of members holding a `KvApplier`.
type Router = Net<KvApplier>;

async fn start(router: &Router, id: NodeId, dir: &Path) -> Raft {
    let log = LogStore::open(dir.join("raft")).unwrap();
    let sm = StateMachineStore::open(KvApplier::open(dir.join("sm")).unwrap(), dir.join("snap"))
        .unwrap();
    let applier = sm.applier().clone();
    let raft = Raft::new(id, config(), router.clone(), log, sm)
        .await
        .unwrap();
    router.nodes.lock().insert(id, (raft.clone(), applier));
    raft
}

async fn stop(router: &Router, id: NodeId) {
    let (raft, applier) = router.nodes.lock().remove(&id).unwrap();
    raft.shutdown().await.unwrap();
    drop(raft);
    applier.close().unwrap();
}

fn put(k: &str, v: &str) -> Request {
    Request::Put(
        PutRequest {
            key: k.as_bytes().to_vec().into(),
            value: v.as_bytes().to_vec().into(),
            ..PutRequest::default()
        }
        .encode_to_vec(),
    )
}

fn value(router: &Router, id: NodeId, k: &str) -> Option<String> {
    let applier = router.nodes.lock().get(&id).unwrap().1.clone();
    applier
        .get(k.as_bytes())
        .unwrap()
        .map(|v| String::from_utf8(v).unwrap())
}

const WAIT: Option<Duration> = Some(Duration::from_secs(20));

#[test]
fn cluster_replicates_snapshots_and_restarts() {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let rt = runtime();
    rt.block_on(async {
        let router = Router::default();
        for id in 1..=3 {
            start(&router, id, dirs[id as usize - 1].path()).await;
        }
        let r1 = router.raft(1).unwrap();
        let members: BTreeMap<NodeId, SettNode> = (1..=3).map(|id| (id, node(id))).collect();
        r1.initialize(members).await.unwrap();
        let m = r1
            .wait(WAIT)
            .metrics(|m| m.current_leader.is_some(), "leader elected")
            .await
            .unwrap();
        let leader = router.raft(m.current_leader.unwrap()).unwrap();

        let mut last = 0;
        for i in 0..150 {
            let resp = leader
                .client_write(put(&format!("k{i:03}"), &format!("v{i}")))
                .await
                .unwrap();
            last = resp.log_id.index;
        }
        for id in 1..=3 {
            let r = router.raft(id).unwrap();
            r.wait(WAIT)
                .applied_index_at_least(Some(last), "replicated")
                .await
                .unwrap();
            let m = r
                .wait(WAIT)
                .metrics(
                    |m| m.purged.is_some() && m.snapshot.is_some(),
                    "snapshot and purge",
                )
                .await
                .unwrap();
            assert!(m.purged.unwrap().index > 0);
            assert_eq!(value(&router, id, "k149").as_deref(), Some("v149"));
        }

        // A learner joining after the purge can only catch up by snapshot.
        start(&router, 4, dirs[3].path()).await;
        let resp = leader.add_learner(4, node(4), true).await.unwrap();
        let r4 = router.raft(4).unwrap();
        r4.wait(WAIT)
            .applied_index_at_least(Some(resp.log_id.index), "learner caught up")
            .await
            .unwrap();
        let m4 = r4.metrics().borrow().clone();
        assert!(m4.snapshot.is_some(), "learner installed a snapshot");
        for i in 0..150 {
            assert_eq!(
                value(&router, 4, &format!("k{i:03}")),
                Some(format!("v{i}"))
            );
        }

        // Restart a follower: its state comes back from disk, then it
        // catches up with writes made while it was down.
        let follower = (1..=3).find(|&id| Some(id) != m.current_leader).unwrap();
        stop(&router, follower).await;
        for i in 150..200 {
            last = leader
                .client_write(put(&format!("k{i:03}"), &format!("v{i}")))
                .await
                .unwrap()
                .log_id
                .index;
        }
        let rf = start(&router, follower, dirs[follower as usize - 1].path()).await;
        assert_eq!(value(&router, follower, "k149").as_deref(), Some("v149"));
        rf.wait(WAIT)
            .applied_index_at_least(Some(last), "restarted follower caught up")
            .await
            .unwrap();
        assert_eq!(value(&router, follower, "k199").as_deref(), Some("v199"));

        for id in [1, 2, 3, 4] {
            stop(&router, id).await;
        }
    });
}
