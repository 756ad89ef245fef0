//! The native `sett.v1` transaction service over real gRPC on a
//! one-member cluster: reads at the read revision, commit of the writes,
//! deterministic aborts (with their `ErrorDetail`) when the read set
//! changed, write skew refused, compacted read revisions. (Concurrent
//! transfers through the retrying helper: `client/tests/txn_helper.rs`.)

use prost::Message;
use sett_proto::etcdserverpb::kv_client::KvClient;
use sett_proto::etcdserverpb::{CompactionRequest, PutRequest, RangeRequest as EtcdRange};
use sett_proto::sett::v1::sett_client::SettClient;
use sett_proto::sett::v1::write::Op;
use sett_proto::sett::v1::{
    BeginRequest, CommitRequest, ErrorDetail, ErrorReason, GetRequest, KeyRange, Put, RangeRequest,
    TxnHandle, Write,
};
use sett_server::testing::{runtime, SingleMember};
use tonic::transport::Channel;

fn put(key: &str, value: &str) -> Write {
    Write {
        op: Some(Op::Put(Put {
            key: key.as_bytes().to_vec().into(),
            value: value.as_bytes().to_vec().into(),
            lease: 0,
        })),
    }
}

fn single(key: &str) -> KeyRange {
    KeyRange {
        key: key.as_bytes().to_vec().into(),
        range_end: Default::default(),
    }
}

async fn begin(c: &mut SettClient<Channel>) -> TxnHandle {
    c.begin(BeginRequest::default())
        .await
        .unwrap()
        .into_inner()
        .txn
        .unwrap()
}

async fn get_num(c: &mut SettClient<Channel>, txn: &TxnHandle, key: &str) -> i64 {
    let kv = c
        .get(GetRequest {
            txn: Some(*txn),
            key: key.as_bytes().to_vec().into(),
        })
        .await
        .unwrap()
        .into_inner()
        .kv;
    kv.map_or(0, |kv| {
        std::str::from_utf8(&kv.value).unwrap().parse().unwrap()
    })
}

fn detail(status: &tonic::Status) -> ErrorDetail {
    ErrorDetail::decode(status.details()).unwrap()
}

#[test]
fn native_transactions_commit_abort_and_keep_invariants() {
    let rt = runtime();
    rt.block_on(async {
        let one = SingleMember::start().await.unwrap();
        let channel = one.channel().await;
        let mut c = SettClient::new(channel.clone());
        let mut kv = KvClient::new(channel);

        // Reads see the read revision, not later writes.
        let first = begin(&mut c).await;
        let seed = c
            .commit(CommitRequest {
                txn: Some(first),
                reads: vec![],
                writes: vec![put("a", "50"), put("b", "50")],
            })
            .await
            .unwrap()
            .into_inner();
        assert!(seed.commit_revision >= 2);
        let t = begin(&mut c).await;
        assert_eq!(t.read_revision, seed.commit_revision);
        kv.put(PutRequest {
            key: "a".into(),
            value: "70".into(),
            ..PutRequest::default()
        })
        .await
        .unwrap();
        assert_eq!(get_num(&mut c, &t, "a").await, 50);

        // The read key changed after the read revision: ABORTED with the
        // conflicting key and revision; nothing written.
        let err = c
            .commit(CommitRequest {
                txn: Some(t),
                reads: vec![single("a")],
                writes: vec![put("b", "1")],
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Aborted);
        assert_eq!(err.message(), "sett: transaction conflict");
        let d = detail(&err);
        assert_eq!(d.reason, ErrorReason::Conflict as i32);
        assert_eq!(&d.key[..], b"a");
        assert_eq!(d.revision, seed.commit_revision + 1);
        let b = kv
            .range(EtcdRange {
                key: "b".into(),
                ..EtcdRange::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(&b.kvs[0].value[..], b"50");

        // A range read with a limit covers only what it returned: a write
        // past the covered span does not conflict, one inside it does.
        let t = begin(&mut c).await;
        let r = c
            .range(RangeRequest {
                txn: Some(t),
                key: "a".into(),
                range_end: "c".into(),
                limit: 1,
                ..RangeRequest::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(r.more);
        let covered = r.covered.unwrap();
        assert_eq!(&covered.key[..], b"a");
        assert_eq!(&covered.range_end[..], b"a\0");
        kv.put(PutRequest {
            key: "b".into(),
            value: "50".into(),
            ..PutRequest::default()
        })
        .await
        .unwrap();
        c.commit(CommitRequest {
            txn: Some(t),
            reads: vec![covered],
            writes: vec![put("x", "1")],
        })
        .await
        .unwrap();

        // Write skew: two transactions each read both keys and write a
        // different one; the second to commit must abort.
        let t1 = begin(&mut c).await;
        let t2 = begin(&mut c).await;
        let both = vec![single("a"), single("b")];
        c.commit(CommitRequest {
            txn: Some(t1),
            reads: both.clone(),
            writes: vec![put("a", "0")],
        })
        .await
        .unwrap();
        let err = c
            .commit(CommitRequest {
                txn: Some(t2),
                reads: both,
                writes: vec![put("b", "0")],
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Aborted);

        // A read revision below the compaction point: reads fail with
        // etcd's compacted error, the commit aborts with reason COMPACTED.
        let old = begin(&mut c).await;
        kv.put(PutRequest {
            key: "z".into(),
            value: "1".into(),
            ..PutRequest::default()
        })
        .await
        .unwrap();
        let now = begin(&mut c).await;
        kv.compact(CompactionRequest {
            revision: now.read_revision,
            physical: false,
        })
        .await
        .unwrap();
        let err = c
            .get(GetRequest {
                txn: Some(old),
                key: "z".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::OutOfRange);
        let err = c
            .commit(CommitRequest {
                txn: Some(old),
                reads: vec![single("z")],
                writes: vec![put("z", "2")],
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Aborted);
        assert_eq!(detail(&err).reason, ErrorReason::Compacted as i32);

        // Without a handle: a clear InvalidArgument.
        let err = c
            .get(GetRequest {
                txn: None,
                key: "a".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);

        one.node.shutdown().await.unwrap();
    });
}
