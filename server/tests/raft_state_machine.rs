//! The engine-backed state machine: applied state stored with the data,
//! snapshots built by the engine stream and installed by the stream
//! writer into a swapped directory, and everything surviving a reopen.

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{CommittedLeaderId, EntryPayload};
use prost::Message;
use sett_proto::etcdserverpb::{DeleteRangeRequest, PutRequest};
use sett_server::raft::types::Membership;
use sett_server::raft::{
    Entry, FailureKind, KvApplier, LogId, Request, Response, SettNode, StateMachineStore,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn log_id(index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

fn entry(index: u64, req: Request) -> Entry {
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(req),
    }
}

fn put(key: &str, value: &[u8]) -> Request {
    Request::Put(
        PutRequest {
            key: key.as_bytes().to_vec().into(),
            value: value.to_vec().into(),
            ..PutRequest::default()
        }
        .encode_to_vec(),
    )
}

fn delete(key: &str) -> Request {
    Request::DeleteRange(
        DeleteRangeRequest {
            key: key.as_bytes().to_vec().into(),
            ..DeleteRangeRequest::default()
        }
        .encode_to_vec(),
    )
}

fn membership_entry(index: u64) -> Entry {
    let nodes: BTreeMap<u64, SettNode> = [1, 2, 3]
        .into_iter()
        .map(|id| {
            let node = SettNode {
                name: format!("n{id}"),
                peer_urls: vec![format!("http://10.0.0.{id}:2380")],
                client_urls: vec![format!("http://10.0.0.{id}:2379")],
            };
            (id, node)
        })
        .collect();
    let voters: BTreeSet<u64> = nodes.keys().copied().collect();
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Membership(Membership::new(vec![voters], nodes)),
    }
}

fn open(dir: &Path) -> StateMachineStore<KvApplier> {
    StateMachineStore::open(
        KvApplier::open(dir.join("sm")).unwrap(),
        dir.join("snapshots"),
    )
    .unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn snapshot_transfers_state_and_survives_reopen() {
    let leader_dir = tempfile::tempdir().unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let mut leader = open(leader_dir.path());
        let mut entries = vec![membership_entry(1)];
        let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for i in 2..500u64 {
            let (k, v) = (
                format!("key{:04}", i % 300),
                vec![i as u8; (i as usize % 5) * 600],
            );
            entries.push(entry(i, put(&k, &v)));
            model.insert(k, v);
        }
        model.remove("key0007");
        entries.push(entry(500, delete("key0007")));
        entries.push(entry(501, Request::Compact(Vec::new())));
        let out = leader.apply(entries).await.unwrap();
        assert_eq!(out.len(), 501);
        assert!(matches!(
            out[500],
            Response::Failed {
                kind: FailureKind::FailedPrecondition,
                ..
            }
        ));
        assert_eq!(leader.applier().get(b"key0007").unwrap(), None);
        for (k, v) in &model {
            assert!(
                leader.applier().get(k.as_bytes()).unwrap().as_ref() == Some(v),
                "{k}"
            );
        }

        let snap = leader
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(snap.meta.last_log_id, Some(log_id(501)));
        assert_eq!(snap.meta.last_membership.log_id(), &Some(log_id(1)));
        // Applying more after the build does not change the built snapshot.
        leader.apply([entry(502, put("late", b"x"))]).await.unwrap();

        // The follower receives the bytes into its own file, then installs.
        let mut follower = open(follower_dir.path());
        follower
            .apply([entry(1, put("stale", b"old"))])
            .await
            .unwrap();
        let recv = follower.begin_receiving_snapshot().await.unwrap();
        std::fs::copy(snap.snapshot.path(), recv.path()).unwrap();
        follower.install_snapshot(&snap.meta, recv).await.unwrap();

        let (applied, membership) = follower.applied_state().await.unwrap();
        assert_eq!(applied, Some(log_id(501)));
        assert_eq!(membership, snap.meta.last_membership);
        let fa = follower.applier();
        assert_eq!(
            fa.get(b"stale").unwrap(),
            None,
            "install replaces the old state"
        );
        assert_eq!(fa.get(b"late").unwrap(), None);
        for (k, v) in &model {
            assert!(fa.get(k.as_bytes()).unwrap().as_ref() == Some(v), "{k}");
        }
        assert_eq!(fa.get(b"key0007").unwrap(), None);
        // The follower keeps applying after the snapshot.
        follower
            .apply([entry(502, put("after", b"y"))])
            .await
            .unwrap();
        let cur = follower.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(cur.meta, snap.meta);
        follower.applier().close().unwrap();
        drop(follower);

        let mut follower = open(follower_dir.path());
        let (applied, membership) = follower.applied_state().await.unwrap();
        assert_eq!(applied, Some(log_id(502)));
        assert_eq!(membership, snap.meta.last_membership);
        assert_eq!(
            follower.applier().get(b"after").unwrap(),
            Some(b"y".to_vec())
        );
        for (k, v) in &model {
            assert!(
                follower.applier().get(k.as_bytes()).unwrap().as_ref() == Some(v),
                "{k}"
            );
        }
        let cur = follower.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(cur.meta, snap.meta);
        follower.applier().close().unwrap();
        leader.applier().close().unwrap();
    });
}

#[test]
fn damaged_snapshot_is_refused_and_state_kept() {
    let leader_dir = tempfile::tempdir().unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let mut leader = open(leader_dir.path());
        leader
            .apply((1..50).map(|i| entry(i, put(&format!("k{i}"), b"v"))))
            .await
            .unwrap();
        let snap = leader
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        let mut bytes = std::fs::read(snap.snapshot.path()).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;

        let mut follower = open(follower_dir.path());
        follower.apply([entry(1, put("mine", b"1"))]).await.unwrap();
        let recv = follower.begin_receiving_snapshot().await.unwrap();
        std::fs::write(recv.path(), &bytes).unwrap();
        assert!(follower.install_snapshot(&snap.meta, recv).await.is_err());
        assert_eq!(
            follower.applier().get(b"mine").unwrap(),
            Some(b"1".to_vec())
        );
        assert_eq!(follower.applied_state().await.unwrap().0, Some(log_id(1)));
        assert!(follower.get_current_snapshot().await.unwrap().is_none());

        // A truncated file is refused too.
        let recv = follower.begin_receiving_snapshot().await.unwrap();
        let whole = std::fs::read(snap.snapshot.path()).unwrap();
        std::fs::write(recv.path(), &whole[..whole.len() - 3]).unwrap();
        assert!(follower.install_snapshot(&snap.meta, recv).await.is_err());
        assert_eq!(
            follower.applier().get(b"mine").unwrap(),
            Some(b"1".to_vec())
        );
        follower.applier().close().unwrap();
        leader.applier().close().unwrap();
    });
}
