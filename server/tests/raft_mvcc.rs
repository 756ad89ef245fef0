//! The etcd MVCC store as the Raft state machine (`MvccApplier`): openraft's
//! storage suite, etcd requests through `apply`, deterministic refusals,
//! snapshot export / install, and a three-member in-memory cluster whose
//! stores end up identical.

mod common;

use common::{config, node};
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, EntryPayload};
use prost::Message;
use sett_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use sett_proto::etcdserverpb::request_op::Request as Op;
use sett_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, Compare, DeleteRangeRequest, DeleteRangeResponse,
    LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest, PutRequest, PutResponse,
    RangeRequest, RequestOp, TxnRequest, TxnResponse,
};
use sett_server::mvcc::MvccStore;
use sett_server::raft::types::{Membership, Raft, StorageError};
use sett_server::raft::{
    Applier, Entry, FailureKind, LogId, LogStore, MvccApplier, NodeId, Request, Response, SettNode,
    StateMachineStore, TypeConfig,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;

// ---------------------------------------------------------------- helpers

fn log_id(index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

fn entry(index: u64, req: Request) -> Entry {
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(req),
    }
}

fn blank(index: u64) -> Entry {
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Blank,
    }
}

fn membership_entry(index: u64) -> Entry {
    let nodes: BTreeMap<u64, SettNode> = (1..=3).map(|id| (id, node(id))).collect();
    let voters: BTreeSet<u64> = nodes.keys().copied().collect();
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Membership(Membership::new(vec![voters], nodes)),
    }
}

fn put_req(k: &str, v: &str) -> PutRequest {
    PutRequest {
        key: k.as_bytes().to_vec().into(),
        value: v.as_bytes().to_vec().into(),
        ..PutRequest::default()
    }
}

fn put(k: &str, v: &str) -> Request {
    Request::Put(put_req(k, v).encode_to_vec())
}

fn delete(k: &str, end: &str) -> Request {
    Request::DeleteRange(
        DeleteRangeRequest {
            key: k.as_bytes().to_vec().into(),
            range_end: end.as_bytes().to_vec().into(),
            prev_kv: true,
        }
        .encode_to_vec(),
    )
}

fn compact(rev: i64) -> Request {
    Request::Compact(
        CompactionRequest {
            revision: rev,
            physical: false,
        }
        .encode_to_vec(),
    )
}

/// `if value(k) == expect then put(k, new) else put(other, "else")`.
fn txn(k: &str, expect: &str, new: &str) -> Request {
    Request::Txn(
        TxnRequest {
            compare: vec![Compare {
                result: CompareResult::Equal as i32,
                target: CompareTarget::Value as i32,
                key: k.as_bytes().to_vec().into(),
                range_end: Vec::new().into(),
                target_union: Some(TargetUnion::Value(expect.as_bytes().to_vec().into())),
            }],
            success: vec![RequestOp {
                request: Some(Op::RequestPut(put_req(k, new))),
            }],
            failure: vec![RequestOp {
                request: Some(Op::RequestPut(put_req("else", "else"))),
            }],
        }
        .encode_to_vec(),
    )
}

fn encoded<T: Message + Default>(r: &Response) -> T {
    match r {
        Response::Encoded(b) => T::decode(b.as_slice()).expect("decodes"),
        other => panic!("expected an encoded response, got {other:?}"),
    }
}

/// `(value, mod_revision)` of `k` at the current revision.
fn get(s: &MvccStore, k: &str) -> Option<(String, i64)> {
    let r = s
        .range(&RangeRequest {
            key: k.as_bytes().to_vec().into(),
            ..RangeRequest::default()
        })
        .unwrap();
    r.kvs.first().map(|kv| {
        (
            String::from_utf8(kv.value.to_vec()).unwrap(),
            kv.mod_revision,
        )
    })
}

fn open(dir: &Path) -> MvccApplier {
    MvccApplier::open(dir.join("sm")).unwrap()
}

// ---------------------------------------------------------------- suite

struct EngineStores;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore<MvccApplier>, TempDir> for EngineStores {
    async fn build(
        &self,
    ) -> Result<(TempDir, LogStore, StateMachineStore<MvccApplier>), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = LogStore::open(dir.path().join("raft")).map_err(|e| e.read_logs())?;
        let applier =
            MvccApplier::open(dir.path().join("sm")).map_err(|e| e.read_state_machine())?;
        let sm = StateMachineStore::open(applier, dir.path().join("snapshots"))
            .map_err(|e| e.read_snapshot())?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(EngineStores).expect("openraft storage suite");
}

// ---------------------------------------------------------------- apply

#[test]
fn etcd_requests_apply_at_revisions_and_record_the_log_id() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path());
    let st = a.applied_state().unwrap();
    assert_eq!(st.last_applied, None);

    let out = a
        .apply(vec![
            blank(1),
            membership_entry(2),
            entry(3, put("a", "1")),
            entry(4, put("b", "2")),
            entry(5, txn("a", "1", "10")),
            entry(6, txn("a", "1", "11")),
            entry(7, delete("b", "")),
            entry(8, compact(4)),
            entry(9, Request::Noop),
        ])
        .unwrap();
    assert_eq!(out.len(), 9);
    assert_eq!(out[0], Response::Empty);
    assert_eq!(out[1], Response::Empty);
    let p: PutResponse = encoded(&out[2]);
    assert_eq!(p.header.unwrap().revision, 2);
    let p: PutResponse = encoded(&out[3]);
    assert_eq!(p.header.unwrap().revision, 3);
    let t: TxnResponse = encoded(&out[4]);
    assert!(t.succeeded);
    assert_eq!(t.header.unwrap().revision, 4);
    let t: TxnResponse = encoded(&out[5]);
    assert!(!t.succeeded, "a is 10 now");
    assert_eq!(t.header.unwrap().revision, 5);
    let d: DeleteRangeResponse = encoded(&out[6]);
    assert_eq!(d.deleted, 1);
    assert_eq!(d.prev_kvs[0].value.as_ref(), b"2");
    assert_eq!(d.header.unwrap().revision, 6);
    let c: CompactionResponse = encoded(&out[7]);
    assert_eq!(c.header.unwrap().revision, 6);
    assert_eq!(out[8], Response::Empty);

    let s = a.store();
    assert_eq!(s.current_revision(), 6);
    assert_eq!(s.compacted_revision(), 4);
    assert_eq!(get(&s, "a"), Some(("10".into(), 4)));
    assert_eq!(get(&s, "else"), Some(("else".into(), 5)));
    assert_eq!(get(&s, "b"), None);
    let old = s.range(&RangeRequest {
        key: b"a".to_vec().into(),
        revision: 3,
        ..RangeRequest::default()
    });
    assert_eq!(
        old.unwrap_err().to_string(),
        "etcdserver: mvcc: required revision has been compacted"
    );

    let st = a.applied_state().unwrap();
    assert_eq!(st.last_applied, Some(log_id(9)));
    assert_eq!(st.membership.log_id(), &Some(log_id(2)));
    assert_eq!(
        st.membership.membership().voter_ids().collect::<Vec<_>>(),
        vec![1, 2, 3]
    );

    // Leases: grant, attach, revoke deletes the key at a new revision.
    let out = a
        .apply(vec![
            entry(
                10,
                Request::LeaseGrant(LeaseGrantRequest { ttl: 30, id: 7 }.encode_to_vec()),
            ),
            entry(
                11,
                Request::Put(
                    PutRequest {
                        lease: 7,
                        ..put_req("leased", "x")
                    }
                    .encode_to_vec(),
                ),
            ),
            entry(
                12,
                Request::LeaseRevoke(LeaseRevokeRequest { id: 7 }.encode_to_vec()),
            ),
            entry(
                13,
                Request::LeaseRevoke(LeaseRevokeRequest { id: 7 }.encode_to_vec()),
            ),
        ])
        .unwrap();
    let g: LeaseGrantResponse = encoded(&out[0]);
    assert_eq!((g.id, g.ttl), (7, 30));
    assert_eq!(
        out[3],
        Response::Failed {
            kind: FailureKind::NotFound,
            message: "etcdserver: requested lease not found".into()
        }
    );
    assert_eq!(s.current_revision(), 8);
    assert_eq!(get(&s, "leased"), None);
    assert_eq!(a.applied_state().unwrap().last_applied, Some(log_id(13)));

    // Everything survives a reopen.
    let hash = s.hash_kv(0).unwrap();
    a.close().unwrap();
    drop(s);
    drop(a);
    let a = open(dir.path());
    let st = a.applied_state().unwrap();
    assert_eq!(st.last_applied, Some(log_id(13)));
    assert_eq!(st.membership.log_id(), &Some(log_id(2)));
    assert_eq!(a.store().hash_kv(0).unwrap(), hash);
    a.close().unwrap();
}

#[test]
fn refused_requests_write_nothing_but_advance_the_applied_log_id() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path());
    a.apply(vec![entry(1, put("a", "1"))]).unwrap();
    let s = a.store();
    let before = s.hash_kv(0).unwrap();

    let ignore_missing = Request::Put(
        PutRequest {
            key: b"missing".to_vec().into(),
            ignore_value: true,
            ..PutRequest::default()
        }
        .encode_to_vec(),
    );
    // Alone in a batch: recorded by `apply_meta`.
    let out = a.apply(vec![entry(2, ignore_missing.clone())]).unwrap();
    assert_eq!(
        out,
        vec![Response::Failed {
            kind: FailureKind::InvalidArgument,
            message: "etcdserver: key not found".into()
        }]
    );
    assert_eq!(a.applied_state().unwrap().last_applied, Some(log_id(2)));
    assert_eq!(s.current_revision(), 2);
    assert_eq!(s.hash_kv(0).unwrap(), before);

    // More refusals: a future compaction, an undecodable request, a
    // membership change recorded only by the batch's closing meta write.
    let out = a
        .apply(vec![
            entry(3, compact(99)),
            entry(4, Request::Put(vec![0xff, 0xff, 0xff])),
            membership_entry(5),
            entry(6, ignore_missing),
        ])
        .unwrap();
    assert_eq!(
        out[0],
        Response::Failed {
            kind: FailureKind::OutOfRange,
            message: "etcdserver: mvcc: required revision is a future revision".into()
        }
    );
    assert!(matches!(
        &out[1],
        Response::Failed {
            kind: FailureKind::InvalidArgument,
            ..
        }
    ));
    assert_eq!(out[2], Response::Empty);
    assert!(matches!(&out[3], Response::Failed { .. }));
    let st = a.applied_state().unwrap();
    assert_eq!(st.last_applied, Some(log_id(6)));
    assert_eq!(st.membership.log_id(), &Some(log_id(5)));
    assert_eq!(s.current_revision(), 2);
    assert_eq!(s.hash_kv(0).unwrap(), before);

    // A refusal in the middle of a batch, then a write.
    let out = a
        .apply(vec![entry(7, compact(99)), entry(8, put("b", "2"))])
        .unwrap();
    assert!(matches!(&out[0], Response::Failed { .. }));
    let p: PutResponse = encoded(&out[1]);
    assert_eq!(p.header.unwrap().revision, 3);
    assert_eq!(a.applied_state().unwrap().last_applied, Some(log_id(8)));
    a.close().unwrap();
}

// ---------------------------------------------------------------- snapshots

fn fill(a: &MvccApplier, from: u64, n: u64) -> u64 {
    let mut entries = Vec::new();
    for i in 0..n {
        let idx = from + i;
        let req = match i % 5 {
            0..=2 => put(&format!("k{:03}", i % 37), &format!("v{idx}")),
            3 => txn(&format!("k{:03}", i % 37), "nope", &format!("t{idx}")),
            _ => delete(&format!("k{:03}", i % 37), &format!("k{:03}", i % 37 + 3)),
        };
        entries.push(entry(idx, req));
    }
    a.apply(entries).unwrap();
    from + n
}

#[test]
fn snapshot_export_install_gives_equal_stores() {
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let a = open(d1.path());
    let b = open(d2.path());
    a.apply(vec![membership_entry(1)]).unwrap();
    let mut next = fill(&a, 2, 200);
    let cut = a.store().current_revision() / 2;
    a.apply(vec![entry(next, compact(cut))]).unwrap();
    next += 1;
    next = fill(&a, next, 50);

    // b has state of its own that the install replaces.
    fill(&b, 1, 10);
    let old_b = b.store();

    let mut bytes = Vec::new();
    let exported = a.export(&mut bytes).unwrap();
    assert_eq!(exported, a.applied_state().unwrap());
    assert_eq!(exported.last_applied, Some(log_id(next - 1)));
    let mut rx = b.subscribe_store();
    let installed = b.install(&mut bytes.as_slice()).unwrap();
    assert_eq!(installed, exported);
    assert_eq!(b.applied_state().unwrap(), exported);
    assert!(rx.has_changed().unwrap());
    assert!(Arc::ptr_eq(&rx.borrow_and_update(), &b.store()));
    assert!(!Arc::ptr_eq(&old_b, &b.store()));

    let (sa, sb) = (a.store(), b.store());
    assert_eq!(sb.current_revision(), sa.current_revision());
    assert_eq!(sb.compacted_revision(), cut);
    assert_eq!(sb.hash_kv(0).unwrap(), sa.hash_kv(0).unwrap());
    assert_eq!(sb.hash_kv(cut + 1).unwrap(), sa.hash_kv(cut + 1).unwrap());

    // Both go on identically from there.
    fill(&a, next, 30);
    fill(&b, next, 30);
    assert_eq!(sb.hash_kv(0).unwrap(), sa.hash_kv(0).unwrap());
    assert_eq!(b.applied_state().unwrap(), a.applied_state().unwrap());

    // A damaged snapshot is an error and leaves the store alone.
    let mut bad = bytes.clone();
    bad.truncate(bad.len() / 2);
    assert!(b.install(&mut bad.as_slice()).is_err());
    assert_eq!(b.store().hash_kv(0).unwrap(), sa.hash_kv(0).unwrap());

    // The installed store survives a reopen.
    let h = sb.hash_kv(0).unwrap();
    b.close().unwrap();
    drop((sb, old_b, rx, b));
    let b = open(d2.path());
    assert_eq!(b.store().hash_kv(0).unwrap(), h);
    a.close().unwrap();
    b.close().unwrap();
}

#[test]
fn state_machine_store_builds_and_installs_mvcc_snapshots() {
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let rt = rt();
    rt.block_on(async {
        let mut s1 = StateMachineStore::open(open(d1.path()), d1.path().join("snap")).unwrap();
        let mut s2 = StateMachineStore::open(open(d2.path()), d2.path().join("snap")).unwrap();
        let entries: Vec<Entry> = std::iter::once(membership_entry(1))
            .chain((2..60).map(|i| entry(i, put(&format!("k{}", i % 9), &format!("v{i}")))))
            .collect();
        s1.apply(entries).await.unwrap();
        let snap = s1
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(snap.meta.last_log_id, Some(log_id(59)));
        let recv = s2.begin_receiving_snapshot().await.unwrap();
        std::fs::copy(snap.snapshot.path(), recv.path()).unwrap();
        s2.install_snapshot(&snap.meta, recv).await.unwrap();
        assert_eq!(
            s2.applied_state().await.unwrap(),
            s1.applied_state().await.unwrap()
        );
        assert_eq!(
            s2.applier().store().hash_kv(0).unwrap(),
            s1.applier().store().hash_kv(0).unwrap()
        );
        s1.applier().close().unwrap();
        s2.applier().close().unwrap();
    });
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

// ---------------------------------------------------------------- cluster

/// The in-memory network of members holding a `MvccApplier`.
type Router = common::Router<MvccApplier>;

/// The store of member `id`.
fn store(router: &Router, id: NodeId) -> Arc<MvccStore> {
    router.nodes.lock().get(&id).unwrap().1.store()
}

async fn start(router: &Router, id: NodeId, dir: &Path) -> Raft {
    let log = LogStore::open(dir.join("raft")).unwrap();
    let sm = StateMachineStore::open(open(dir), dir.join("snap")).unwrap();
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

const WAIT: Option<Duration> = Some(Duration::from_secs(30));

async fn write(leader: &Raft, req: Request) -> (u64, Response) {
    let resp = leader.client_write(req).await.unwrap();
    (resp.log_id.index, resp.data)
}

async fn assert_converged(router: &Router, ids: &[NodeId], last: u64) -> i64 {
    for &id in ids {
        router
            .raft(id)
            .unwrap()
            .wait(WAIT)
            .applied_index_at_least(Some(last), "replicated")
            .await
            .unwrap();
    }
    let first = store(router, ids[0]);
    let want = first.hash_kv(0).unwrap();
    for &id in &ids[1..] {
        let s = store(router, id);
        assert_eq!(
            s.current_revision(),
            first.current_revision(),
            "member {id}"
        );
        assert_eq!(s.hash_kv(0).unwrap(), want, "member {id}");
        assert_eq!(get(&s, "k000"), get(&first, "k000"), "member {id}");
    }
    want.revision
}

#[test]
fn cluster_of_mvcc_stores_converges() {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    rt().block_on(async {
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
        for i in 0..120u64 {
            let k = format!("k{:03}", i % 40);
            let req = match i % 4 {
                3 => txn(&k, "nope", "t"),
                _ => put(&k, &format!("v{i}")),
            };
            let (idx, resp) = write(&leader, req).await;
            assert!(matches!(resp, Response::Encoded(_)), "{resp:?}");
            last = idx;
        }
        // A refusal replicates as a refusal.
        let (idx, resp) = write(&leader, compact(1_000_000)).await;
        assert!(matches!(
            resp,
            Response::Failed {
                kind: FailureKind::OutOfRange,
                ..
            }
        ));
        assert!(idx > last);
        let (idx, _) = write(&leader, delete("k010", "k020")).await;
        let (idx2, _) = write(&leader, compact(50)).await;
        assert!(idx2 > idx);
        last = idx2;
        let rev = assert_converged(&router, &[1, 2, 3], last).await;
        assert_eq!(rev, 1 + 1 + 120, "120 writes, a delete, a new store at 1");
        for id in 1..=3 {
            let m = router
                .raft(id)
                .unwrap()
                .wait(WAIT)
                .metrics(|m| m.snapshot.is_some() && m.purged.is_some(), "snapshot")
                .await
                .unwrap();
            assert!(m.purged.unwrap().index > 0);
        }

        // A learner joining after the purge catches up by snapshot.
        start(&router, 4, dirs[3].path()).await;
        let resp = leader.add_learner(4, node(4), true).await.unwrap();
        last = resp.log_id.index;
        assert_converged(&router, &[1, 2, 3, 4], last).await;
        let m4 = router.raft(4).unwrap().metrics().borrow().clone();
        assert!(m4.snapshot.is_some(), "learner installed a snapshot");
        assert_eq!(store(&router, 4).compacted_revision(), 50);

        // A restarted follower recovers from disk and catches up.
        let follower = (1..=3).find(|&id| Some(id) != m.current_leader).unwrap();
        stop(&router, follower).await;
        for i in 0..30u64 {
            last = write(&leader, put(&format!("k{:03}", i), "late")).await.0;
        }
        start(&router, follower, dirs[follower as usize - 1].path()).await;
        assert_converged(&router, &[1, 2, 3, 4], last).await;
        assert_eq!(get(&store(&router, follower), "k029").unwrap().0, "late");

        for id in [1, 2, 3, 4] {
            stop(&router, id).await;
        }
    });
}
