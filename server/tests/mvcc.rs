//! etcd MVCC semantics of `sett_server::mvcc::MvccStore`: revisions, Put,
//! DeleteRange, Range, Txn, Compact, the event log, HashKV, leases, meta,
//! reopen and snapshots.

use bytes::Bytes;
use sett_engine::Options;
use sett_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use sett_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use sett_proto::etcdserverpb::request_op::Request;
use sett_proto::etcdserverpb::response_op::Response;
use sett_proto::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RangeResponse,
    RequestOp, TxnRequest,
};
use sett_proto::mvccpb::event::EventType;
use sett_proto::mvccpb::KeyValue;
use sett_server::mvcc::{EtcdError, MvccError, MvccStore, SnapshotImporter};

fn mem_store() -> MvccStore {
    let mut o = Options::in_memory();
    o.managed = true;
    MvccStore::open(o).unwrap()
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn put(s: &MvccStore, k: &str, v: &str) -> i64 {
    let r = s
        .put(
            &PutRequest {
                key: b(k),
                value: b(v),
                ..Default::default()
            },
            &[],
        )
        .unwrap();
    r.header.unwrap().revision
}

fn del(s: &MvccStore, k: &str, end: &str) -> i64 {
    s.delete_range(
        &DeleteRangeRequest {
            key: b(k),
            range_end: b(end),
            prev_kv: false,
        },
        &[],
    )
    .unwrap()
    .deleted
}

fn range(s: &MvccStore, k: &str, end: &str) -> RangeResponse {
    s.range(&RangeRequest {
        key: b(k),
        range_end: b(end),
        ..Default::default()
    })
    .unwrap()
}

fn keys(r: &RangeResponse) -> Vec<String> {
    r.kvs
        .iter()
        .map(|kv| String::from_utf8(kv.key.to_vec()).unwrap())
        .collect()
}

fn get(s: &MvccStore, k: &str) -> Option<KeyValue> {
    range(s, k, "").kvs.into_iter().next()
}

fn assert_etcd<T: std::fmt::Debug>(r: Result<T, MvccError>, want: EtcdError) {
    let e = r.expect_err("expected an etcd error");
    assert_eq!(e.etcd(), Some(want), "got {e}");
    let st = e.to_status();
    assert_eq!(st.code(), want.code);
    assert_eq!(st.message(), want.message);
}

fn op_put(k: &str, v: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestPut(PutRequest {
            key: b(k),
            value: b(v),
            ..Default::default()
        })),
    }
}

fn op_del(k: &str, end: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
            key: b(k),
            range_end: b(end),
            prev_kv: false,
        })),
    }
}

fn op_range(k: &str, end: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestRange(RangeRequest {
            key: b(k),
            range_end: b(end),
            ..Default::default()
        })),
    }
}

fn cmp(k: &str, target: CompareTarget, result: CompareResult, u: TargetUnion) -> Compare {
    Compare {
        result: result as i32,
        target: target as i32,
        key: b(k),
        range_end: Bytes::new(),
        target_union: Some(u),
    }
}

#[test]
fn revisions_versions_and_create_revision() {
    let s = mem_store();
    assert_eq!(s.current_revision(), 1);
    assert_eq!(range(&s, "a", "").header.unwrap().revision, 1);
    assert_eq!(put(&s, "a", "1"), 2);
    assert_eq!(put(&s, "a", "2"), 3);
    assert_eq!(put(&s, "b", "x"), 4);
    let a = get(&s, "a").unwrap();
    assert_eq!((a.create_revision, a.mod_revision, a.version), (2, 3, 2));
    assert_eq!(a.value, b("2"));
    // Delete resets: a new put creates the key again.
    assert_eq!(del(&s, "a", ""), 1);
    assert_eq!(s.current_revision(), 5);
    assert!(get(&s, "a").is_none());
    assert_eq!(put(&s, "a", "3"), 6);
    let a = get(&s, "a").unwrap();
    assert_eq!((a.create_revision, a.mod_revision, a.version), (6, 6, 1));
    // A delete that matches nothing keeps the revision.
    assert_eq!(del(&s, "zz", ""), 0);
    assert_eq!(s.current_revision(), 6);
    // Past revisions stay readable; header is always the current revision.
    let old = s
        .range(&RangeRequest {
            key: b("a"),
            revision: 3,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(old.kvs[0].value, b("2"));
    assert_eq!(old.header.unwrap().revision, 6);
    let gone = s
        .range(&RangeRequest {
            key: b("a"),
            revision: 5,
            ..Default::default()
        })
        .unwrap();
    assert!(gone.kvs.is_empty());
}

#[test]
fn put_flags() {
    let s = mem_store();
    let req = |k: &str, iv: bool, il: bool| PutRequest {
        key: b(k),
        ignore_value: iv,
        ignore_lease: il,
        prev_kv: true,
        ..Default::default()
    };
    assert_etcd(s.put(&req("a", true, false), &[]), EtcdError::KEY_NOT_FOUND);
    assert_etcd(s.put(&req("a", false, true), &[]), EtcdError::KEY_NOT_FOUND);
    assert_eq!(s.current_revision(), 1);
    let mut r = req("a", true, false);
    r.value = b("v");
    assert_etcd(s.put(&r, &[]), EtcdError::VALUE_PROVIDED);
    let mut r = req("a", false, true);
    r.lease = 5;
    assert_etcd(s.put(&r, &[]), EtcdError::LEASE_PROVIDED);
    assert_etcd(
        s.put(
            &PutRequest {
                key: b("a"),
                lease: 77,
                ..Default::default()
            },
            &[],
        ),
        EtcdError::LEASE_NOT_FOUND,
    );
    put(&s, "a", "orig");
    let resp = s.put(&req("a", true, false), &[]).unwrap();
    assert_eq!(resp.prev_kv.unwrap().value, b("orig"));
    assert_eq!(resp.header.unwrap().revision, 3);
    let a = get(&s, "a").unwrap();
    assert_eq!((a.value.clone(), a.version), (b("orig"), 2));
    // prev_kv absent on a new key.
    let resp = s
        .put(
            &PutRequest {
                key: b("new"),
                value: b("x"),
                prev_kv: true,
                ..Default::default()
            },
            &[],
        )
        .unwrap();
    assert!(resp.prev_kv.is_none());
}

#[test]
fn empty_keys_are_rejected() {
    let s = mem_store();
    assert_etcd(s.range(&RangeRequest::default()), EtcdError::EMPTY_KEY);
    assert_etcd(s.put(&PutRequest::default(), &[]), EtcdError::EMPTY_KEY);
    assert_etcd(
        s.delete_range(&DeleteRangeRequest::default(), &[]),
        EtcdError::EMPTY_KEY,
    );
    let t = TxnRequest {
        compare: vec![Compare::default()],
        ..Default::default()
    };
    assert_etcd(s.txn(&t, &[]), EtcdError::EMPTY_KEY);
    let t = TxnRequest {
        success: vec![op_put("", "x")],
        ..Default::default()
    };
    assert_etcd(s.txn(&t, &[]), EtcdError::EMPTY_KEY);
    assert_etcd(
        s.range(&RangeRequest {
            key: b("a"),
            sort_order: 9,
            ..Default::default()
        }),
        EtcdError::INVALID_SORT_OPTION,
    );
}

#[test]
fn delete_range_prev_kvs_and_events() {
    let s = mem_store();
    for k in ["a", "b", "c", "d"] {
        put(&s, k, k);
    }
    let r = s
        .delete_range(
            &DeleteRangeRequest {
                key: b("b"),
                range_end: b("d"),
                prev_kv: true,
            },
            &[],
        )
        .unwrap();
    assert_eq!(r.deleted, 2);
    assert_eq!(r.header.unwrap().revision, 6);
    let prev: Vec<_> = r.prev_kvs.iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(prev, vec![b("b"), b("c")]);
    let ev = s.events_since(6, b"\0", b"\0", true, 0).unwrap();
    assert_eq!(ev.len(), 2);
    for (e, k) in ev.iter().zip(["b", "c"]) {
        assert_eq!(e.r#type, EventType::Delete as i32);
        let kv = e.kv.as_ref().unwrap();
        assert_eq!((kv.key.clone(), kv.mod_revision, kv.version), (b(k), 6, 0));
        assert_eq!(e.prev_kv.as_ref().unwrap().value, b(k));
    }
    assert_eq!(keys(&range(&s, "\0", "\0")), vec!["a", "d"]);
}

#[test]
fn range_keys_limits_and_counts() {
    let s = mem_store();
    for k in ["a", "ab", "abc", "b", "c"] {
        put(&s, k, k);
    }
    assert_eq!(keys(&range(&s, "a", "b")), vec!["a", "ab", "abc"]);
    assert_eq!(keys(&range(&s, "ab", "\0")), vec!["ab", "abc", "b", "c"]);
    assert_eq!(keys(&range(&s, "\0", "\0")).len(), 5);
    assert_eq!(keys(&range(&s, "c", "a")), Vec::<String>::new());
    let r = s
        .range(&RangeRequest {
            key: b("a"),
            range_end: b("\0"),
            limit: 2,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        (keys(&r), r.more, r.count),
        (vec!["a".into(), "ab".into()], true, 5)
    );
    let r = s
        .range(&RangeRequest {
            key: b("a"),
            range_end: b("\0"),
            limit: 5,
            ..Default::default()
        })
        .unwrap();
    assert!(!r.more);
    let r = s
        .range(&RangeRequest {
            key: b("a"),
            range_end: b("\0"),
            count_only: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!((r.kvs.len(), r.count, r.more), (0, 5, false));
    let r = s
        .range(&RangeRequest {
            key: b("a"),
            range_end: b("\0"),
            keys_only: true,
            ..Default::default()
        })
        .unwrap();
    assert!(r
        .kvs
        .iter()
        .all(|kv| kv.value.is_empty() && kv.version == 1));
}

#[test]
fn range_sort_and_filters() {
    let s = mem_store();
    put(&s, "a", "3"); // rev 2
    put(&s, "b", "1"); // rev 3
    put(&s, "c", "2"); // rev 4
    put(&s, "a", "0"); // rev 5: a version 2, mod 5
    let req = |order: SortOrder, target: SortTarget| RangeRequest {
        key: b("a"),
        range_end: b("\0"),
        sort_order: order as i32,
        sort_target: target as i32,
        ..Default::default()
    };
    let r = s.range(&req(SortOrder::Descend, SortTarget::Key)).unwrap();
    assert_eq!(keys(&r), vec!["c", "b", "a"]);
    let r = s.range(&req(SortOrder::Ascend, SortTarget::Value)).unwrap();
    assert_eq!(keys(&r), vec!["a", "b", "c"]);
    let r = s.range(&req(SortOrder::Descend, SortTarget::Mod)).unwrap();
    assert_eq!(keys(&r), vec!["a", "c", "b"]);
    let r = s
        .range(&req(SortOrder::Descend, SortTarget::Create))
        .unwrap();
    assert_eq!(keys(&r), vec!["c", "b", "a"]);
    let r = s
        .range(&req(SortOrder::Descend, SortTarget::Version))
        .unwrap();
    assert_eq!(keys(&r)[0], "a");
    // NONE with a non-KEY target sorts ascending.
    let r = s.range(&req(SortOrder::None, SortTarget::Mod)).unwrap();
    assert_eq!(keys(&r), vec!["b", "c", "a"]);
    // Sort, then truncate.
    let mut q = req(SortOrder::Descend, SortTarget::Mod);
    q.limit = 1;
    let r = s.range(&q).unwrap();
    assert_eq!((keys(&r), r.more, r.count), (vec!["a".into()], true, 3));
    // Filters; count stays the number of keys in the range.
    let mut q = req(SortOrder::None, SortTarget::Key);
    q.min_mod_revision = 3;
    q.max_mod_revision = 4;
    let r = s.range(&q).unwrap();
    assert_eq!((keys(&r), r.count), (vec!["b".into(), "c".into()], 3));
    let mut q = req(SortOrder::None, SortTarget::Key);
    q.max_create_revision = 2;
    assert_eq!(keys(&s.range(&q).unwrap()), vec!["a"]);
    let mut q = req(SortOrder::None, SortTarget::Key);
    q.min_create_revision = 3;
    q.limit = 1;
    let r = s.range(&q).unwrap();
    assert_eq!((keys(&r), r.more), (vec!["b".into()], true));
}

#[test]
fn future_and_compacted_revisions() {
    let s = mem_store();
    for i in 0..5 {
        put(&s, "k", &i.to_string()); // revs 2..=6
    }
    let at = |rev: i64| {
        s.range(&RangeRequest {
            key: b("k"),
            revision: rev,
            ..Default::default()
        })
    };
    assert_etcd(at(7), EtcdError::FUTURE_REV);
    assert_eq!(at(0).unwrap().kvs[0].value, b("4"));
    assert_eq!(at(-3).unwrap().kvs[0].value, b("4"));
    let c = |rev: i64| {
        s.compact(
            &CompactionRequest {
                revision: rev,
                physical: false,
            },
            &[],
        )
    };
    assert_etcd(c(7), EtcdError::FUTURE_REV);
    let resp = c(4).unwrap();
    assert_eq!(resp.header.unwrap().revision, 6);
    assert_eq!(s.current_revision(), 6);
    assert_eq!(s.compacted_revision(), 4);
    assert_etcd(c(4), EtcdError::COMPACTED);
    assert_etcd(c(3), EtcdError::COMPACTED);
    assert_etcd(at(3), EtcdError::COMPACTED);
    assert_eq!(at(4).unwrap().kvs[0].value, b("2"));
    assert_etcd(s.events_since(3, b"k", b"", false, 0), EtcdError::COMPACTED);
    let ev = s.events_since(4, b"k", b"", false, 0).unwrap();
    assert_eq!(ev.len(), 3);
    assert_etcd(s.hash_kv(3), EtcdError::COMPACTED);
    // etcd refuses to hash the compaction revision itself.
    assert_etcd(s.hash_kv(4), EtcdError::COMPACTED);
    assert_eq!(s.hash_kv(5).unwrap().compact_revision, 4);
    // Force the engine to drop what it may; reads at >= 4 still work.
    s.db().compact().unwrap();
    assert_eq!(at(4).unwrap().kvs[0].value, b("2"));
    assert_eq!(at(5).unwrap().kvs[0].value, b("3"));
    // Compact at the current revision is allowed.
    c(6).unwrap();
    assert_eq!(at(0).unwrap().kvs[0].value, b("4"));
}

#[test]
fn txn_compares() {
    let s = mem_store();
    put(&s, "a", "va"); // rev 2
    put(&s, "a", "vb"); // rev 3, version 2
    let run = |c: Compare| {
        s.txn(
            &TxnRequest {
                compare: vec![c],
                ..Default::default()
            },
            &[],
        )
        .unwrap()
        .succeeded
    };
    use CompareResult::*;
    use CompareTarget as T;
    assert!(run(cmp("a", T::Version, Equal, TargetUnion::Version(2))));
    assert!(run(cmp("a", T::Version, Greater, TargetUnion::Version(1))));
    assert!(!run(cmp("a", T::Version, Less, TargetUnion::Version(2))));
    assert!(run(cmp("a", T::Version, NotEqual, TargetUnion::Version(3))));
    assert!(run(cmp(
        "a",
        T::Create,
        Equal,
        TargetUnion::CreateRevision(2)
    )));
    assert!(run(cmp("a", T::Mod, Equal, TargetUnion::ModRevision(3))));
    assert!(run(cmp("a", T::Mod, Less, TargetUnion::ModRevision(4))));
    assert!(run(cmp("a", T::Value, Equal, TargetUnion::Value(b("vb")))));
    assert!(run(cmp(
        "a",
        T::Value,
        Greater,
        TargetUnion::Value(b("va"))
    )));
    assert!(run(cmp("a", T::Lease, Equal, TargetUnion::Lease(0))));
    // Missing keys compare as zero, except VALUE which fails.
    assert!(run(cmp("zz", T::Version, Equal, TargetUnion::Version(0))));
    assert!(run(cmp(
        "zz",
        T::Create,
        Equal,
        TargetUnion::CreateRevision(0)
    )));
    assert!(run(cmp("zz", T::Mod, Less, TargetUnion::ModRevision(1))));
    assert!(!run(cmp(
        "zz",
        T::Value,
        Equal,
        TargetUnion::Value(Bytes::new())
    )));
    assert!(!run(cmp(
        "zz",
        T::Value,
        NotEqual,
        TargetUnion::Value(b("x"))
    )));
    // Ranges: every key must match.
    put(&s, "ab", "x"); // rev 4
    let mut c = cmp("a", T::Version, Equal, TargetUnion::Version(1));
    c.range_end = b("b");
    assert!(!run(c.clone()));
    c.result = Greater as i32;
    c.target_union = Some(TargetUnion::Version(0));
    assert!(run(c));
    // Read-only txns keep the revision.
    assert_eq!(s.current_revision(), 4);
}

#[test]
fn txn_writes_share_one_revision() {
    let s = mem_store();
    put(&s, "x", "0"); // rev 2
    let t = TxnRequest {
        compare: vec![cmp(
            "x",
            CompareTarget::Value,
            CompareResult::Equal,
            TargetUnion::Value(b("0")),
        )],
        success: vec![
            op_range("a", ""),
            op_put("a", "1"),
            op_put("b", "2"),
            op_range("a", ""),
            op_del("x", ""),
        ],
        failure: vec![op_put("f", "f")],
    };
    let r = s.txn(&t, &[]).unwrap();
    assert!(r.succeeded);
    assert_eq!(r.header.unwrap().revision, 3);
    assert_eq!(s.current_revision(), 3);
    let revs: Vec<i64> = r
        .responses
        .iter()
        .map(|op| match op.response.as_ref().unwrap() {
            Response::ResponseRange(x) => x.header.unwrap().revision,
            Response::ResponsePut(x) => x.header.unwrap().revision,
            Response::ResponseDeleteRange(x) => x.header.unwrap().revision,
            Response::ResponseTxn(x) => x.header.unwrap().revision,
        })
        .collect();
    assert_eq!(revs, vec![2, 3, 3, 3, 3]);
    let Response::ResponseRange(first) = r.responses[0].response.as_ref().unwrap() else {
        panic!()
    };
    assert!(first.kvs.is_empty());
    let Response::ResponseRange(later) = r.responses[3].response.as_ref().unwrap() else {
        panic!()
    };
    assert_eq!(later.kvs[0].mod_revision, 3);
    assert_eq!(get(&s, "a").unwrap().mod_revision, 3);
    assert_eq!(get(&s, "b").unwrap().create_revision, 3);
    assert!(get(&s, "x").is_none());
    let ev = s.events_since(3, b"\0", b"\0", false, 0).unwrap();
    let kinds: Vec<(i32, Bytes)> = ev
        .iter()
        .map(|e| (e.r#type, e.kv.as_ref().unwrap().key.clone()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (EventType::Put as i32, b("a")),
            (EventType::Put as i32, b("b")),
            (EventType::Delete as i32, b("x")),
        ]
    );
    // Failure branch now (x is gone).
    let r = s.txn(&t, &[]).unwrap();
    assert!(!r.succeeded);
    assert_eq!(r.header.unwrap().revision, 4);
    assert!(get(&s, "f").is_some());
}

#[test]
fn nested_txns_use_pre_state_compares() {
    let s = mem_store();
    put(&s, "k", "1"); // rev 2
    let inner = TxnRequest {
        compare: vec![cmp(
            "k",
            CompareTarget::Value,
            CompareResult::Equal,
            TargetUnion::Value(b("1")),
        )],
        success: vec![op_put("inner-ok", "y")],
        failure: vec![op_put("inner-fail", "n")],
    };
    let outer = TxnRequest {
        compare: vec![],
        success: vec![
            op_put("k", "2"),
            RequestOp {
                request: Some(Request::RequestTxn(inner)),
            },
        ],
        failure: vec![],
    };
    let r = s.txn(&outer, &[]).unwrap();
    assert!(r.succeeded);
    // The inner compare saw k = "1" (before the outer put), as in etcd.
    assert!(get(&s, "inner-ok").is_some());
    assert!(get(&s, "inner-fail").is_none());
    let Response::ResponseTxn(nested) = r.responses[1].response.as_ref().unwrap() else {
        panic!()
    };
    assert!(nested.succeeded);
    assert_eq!(nested.header.unwrap().revision, 0);
    assert_eq!(s.current_revision(), 3);
}

#[test]
fn txn_validation() {
    let s = mem_store();
    let dup = TxnRequest {
        success: vec![op_put("a", "1"), op_put("a", "2")],
        ..Default::default()
    };
    assert_etcd(s.txn(&dup, &[]), EtcdError::DUPLICATE_KEY);
    let put_del = TxnRequest {
        success: vec![op_del("a", "c"), op_put("b", "2")],
        ..Default::default()
    };
    assert_etcd(s.txn(&put_del, &[]), EtcdError::DUPLICATE_KEY);
    let nested = |success: Vec<RequestOp>, failure: Vec<RequestOp>| RequestOp {
        request: Some(Request::RequestTxn(TxnRequest {
            compare: vec![],
            success,
            failure,
        })),
    };
    // Then/else of one nested txn may share keys; a sibling put may not.
    let ok = TxnRequest {
        success: vec![nested(vec![op_put("a", "1")], vec![op_put("a", "2")])],
        ..Default::default()
    };
    assert!(s.txn(&ok, &[]).is_ok());
    let bad = TxnRequest {
        success: vec![nested(vec![op_put("a", "1")], vec![]), op_put("a", "3")],
        ..Default::default()
    };
    assert_etcd(s.txn(&bad, &[]), EtcdError::DUPLICATE_KEY);
    // As in etcd, a "\0" range_end is taken literally by the duplicate
    // check: a from-key delete does not clash with a put.
    let from_key = TxnRequest {
        success: vec![op_del("a", "\0"), op_put("b", "2")],
        ..Default::default()
    };
    assert!(s.txn(&from_key, &[]).is_ok());
    assert!(get(&s, "b").is_some());
    // Overlapping deletes are fine.
    let dels = TxnRequest {
        success: vec![op_del("a", "c"), op_del("b", "d")],
        ..Default::default()
    };
    assert!(s.txn(&dels, &[]).is_ok());
    let many = TxnRequest {
        success: (0..129).map(|i| op_put(&format!("k{i}"), "v")).collect(),
        ..Default::default()
    };
    assert_etcd(s.txn(&many, &[]), EtcdError::TOO_MANY_OPS);
    let max = TxnRequest {
        success: (0..128).map(|i| op_put(&format!("k{i}"), "v")).collect(),
        ..Default::default()
    };
    let rev = s.current_revision();
    s.txn(&max, &[]).unwrap();
    assert_eq!(s.current_revision(), rev + 1);
    assert_eq!(range(&s, "k", "l").count, 128);
    // Path checks: ignore_value on a missing key fails the whole txn.
    let t = TxnRequest {
        success: vec![
            op_put("q", "1"),
            RequestOp {
                request: Some(Request::RequestPut(PutRequest {
                    key: b("missing"),
                    ignore_value: true,
                    ..Default::default()
                })),
            },
        ],
        ..Default::default()
    };
    assert_etcd(s.txn(&t, &[]), EtcdError::KEY_NOT_FOUND);
    assert!(get(&s, "q").is_none());
    let t = TxnRequest {
        success: vec![RequestOp {
            request: Some(Request::RequestRange(RangeRequest {
                key: b("a"),
                revision: 1000,
                ..Default::default()
            })),
        }],
        ..Default::default()
    };
    assert_etcd(s.txn(&t, &[]), EtcdError::FUTURE_REV);
}

#[test]
fn events_since_filters_and_limits() {
    let s = mem_store();
    put(&s, "a", "1"); // 2
    put(&s, "b", "1"); // 3
    put(&s, "a", "2"); // 4
    let t = TxnRequest {
        success: vec![op_put("a", "3"), op_put("c", "1")],
        ..Default::default()
    };
    s.txn(&t, &[]).unwrap(); // 5: two events
    del(&s, "a", ""); // 6
    let ev = s.events_since(0, b"a", b"", true, 0).unwrap();
    let summary: Vec<(i32, i64, i64)> = ev
        .iter()
        .map(|e| {
            let kv = e.kv.as_ref().unwrap();
            (e.r#type, kv.mod_revision, kv.version)
        })
        .collect();
    assert_eq!(summary, vec![(0, 2, 1), (0, 4, 2), (0, 5, 3), (1, 6, 0)]);
    assert!(ev[0].prev_kv.is_none());
    assert_eq!(ev[1].prev_kv.as_ref().unwrap().value, b("1"));
    assert_eq!(ev[3].prev_kv.as_ref().unwrap().value, b("3"));
    // Limit never splits a revision.
    let ev = s.events_since(5, b"\0", b"\0", false, 1).unwrap();
    assert_eq!(ev.len(), 2);
    let ev = s.events_since(4, b"\0", b"\0", false, 1).unwrap();
    assert_eq!(ev.len(), 1);
    assert!(s
        .events_since(7, b"\0", b"\0", false, 0)
        .unwrap()
        .is_empty());
    let ev = s.events_since(1, b"b", b"d", false, 0).unwrap();
    assert_eq!(ev.len(), 2);
}

#[test]
fn leases_attach_and_revoke() {
    let s = mem_store();
    s.lease_grant(7, 30, &[]).unwrap();
    assert_eq!(s.current_revision(), 1);
    assert_etcd(s.lease_grant(7, 30, &[]), EtcdError::LEASE_EXISTS);
    for k in ["b", "a"] {
        s.put(
            &PutRequest {
                key: b(k),
                value: b("v"),
                lease: 7,
                ..Default::default()
            },
            &[],
        )
        .unwrap();
    }
    put(&s, "c", "plain");
    assert_eq!(get(&s, "a").unwrap().lease, 7);
    assert_eq!(s.lease_keys(7).unwrap(), vec![b"a".to_vec(), b"b".to_vec()]);
    // Overwriting without a lease detaches.
    put(&s, "b", "v2");
    assert_eq!(s.lease_keys(7).unwrap(), vec![b"a".to_vec()]);
    let rev = s.lease_revoke(7, &[]).unwrap();
    assert_eq!(rev, 6);
    assert!(get(&s, "a").is_none());
    assert!(s.lease(7).unwrap().is_none());
    assert_etcd(s.lease_revoke(7, &[]), EtcdError::LEASE_NOT_FOUND);
    let ev = s.events_since(6, b"\0", b"\0", false, 0).unwrap();
    assert_eq!(ev.len(), 1);
    // A lease without keys revokes without a new revision.
    s.lease_grant(8, 5, &[]).unwrap();
    assert_eq!(s.leases().unwrap().len(), 1);
    assert_eq!(s.lease_revoke(8, &[]).unwrap(), 6);
}

fn feed(s: &MvccStore, seed: u64) {
    let mut x = seed;
    let mut next = || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        x >> 33
    };
    for i in 0..300 {
        let k = format!("key{:02}", next() % 40);
        match next() % 5 {
            0 => {
                del(s, &k, "");
            }
            1 => {
                let t = TxnRequest {
                    compare: vec![cmp(
                        &k,
                        CompareTarget::Version,
                        CompareResult::Greater,
                        TargetUnion::Version(1),
                    )],
                    success: vec![op_del(&k, "")],
                    failure: vec![op_put(&k, &format!("t{i}"))],
                };
                s.txn(&t, &[]).unwrap();
            }
            _ => {
                put(
                    s,
                    &k,
                    &format!("v{i}-{}", "x".repeat((next() % 3000) as usize)),
                );
            }
        }
        if i == 150 {
            s.compact(
                &CompactionRequest {
                    revision: s.current_revision() - 20,
                    physical: true,
                },
                &[],
            )
            .unwrap();
        }
    }
}

#[test]
fn hash_kv_is_deterministic() {
    let (a, b2) = (mem_store(), mem_store());
    feed(&a, 1);
    feed(&b2, 1);
    assert_eq!(a.current_revision(), b2.current_revision());
    let ha = a.hash_kv(0).unwrap();
    assert_eq!(ha, b2.hash_kv(0).unwrap());
    let mid = a.current_revision() - 5;
    assert_eq!(a.hash_kv(mid).unwrap(), b2.hash_kv(mid).unwrap());
    // Physical compaction does not change the hash.
    a.db().compact().unwrap();
    assert_eq!(a.hash_kv(0).unwrap(), ha);
    put(&a, "key00", "different");
    put(&b2, "key00", "other");
    assert_ne!(a.hash_kv(0).unwrap().hash, b2.hash_kv(0).unwrap().hash);
}

#[test]
fn meta_is_stored_with_the_data_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = MvccStore::open(MvccStore::default_options(dir.path())).unwrap();
        s.put(
            &PutRequest {
                key: b("a"),
                value: b("1"),
                ..Default::default()
            },
            &[(b"applied", b"log-5")],
        )
        .unwrap();
        assert_eq!(s.meta(b"applied").unwrap(), Some(b"log-5".to_vec()));
        // A failed apply writes nothing; apply_meta records the entry.
        assert!(s
            .put(
                &PutRequest {
                    key: b("zz"),
                    ignore_value: true,
                    ..Default::default()
                },
                &[(b"applied", b"log-6")],
            )
            .is_err());
        assert_eq!(s.meta(b"applied").unwrap(), Some(b"log-5".to_vec()));
        s.apply_meta(&[(b"applied", b"log-6")]).unwrap();
        s.apply_meta(&[(b"applied", b"log-7")]).unwrap();
        assert_eq!(s.meta(b"applied").unwrap(), Some(b"log-7".to_vec()));
        put(&s, "b", "2");
        put(&s, "a", "3");
        s.compact(
            &CompactionRequest {
                revision: 3,
                physical: false,
            },
            &[(b"applied", b"log-10")],
        )
        .unwrap();
        assert_eq!(s.current_revision(), 4);
        s.db().close().unwrap();
    }
    let s = MvccStore::open(MvccStore::default_options(dir.path())).unwrap();
    assert_eq!(s.current_revision(), 4);
    assert_eq!(s.compacted_revision(), 3);
    assert_eq!(s.meta(b"applied").unwrap(), Some(b"log-10".to_vec()));
    assert_eq!(get(&s, "a").unwrap().version, 2);
    assert_eq!(put(&s, "c", "x"), 5);
}

#[test]
fn meta_rewritten_at_one_revision_survives_flush_compaction_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = MvccStore::open(MvccStore::default_options(dir.path())).unwrap();
        put(&s, "a", "1");
        for i in 0..5 {
            s.apply_meta(&[(b"applied", format!("n{i}").as_bytes())])
                .unwrap();
            s.lease_grant(100 + i, 10, &[]).unwrap();
            s.lease_revoke(100 + i, &[]).unwrap();
            s.db().flush().unwrap();
        }
        s.db().compact().unwrap();
        assert_eq!(s.current_revision(), 2);
        assert_eq!(s.meta(b"applied").unwrap(), Some(b"n4".to_vec()));
        assert!(s.leases().unwrap().is_empty());
        s.apply_meta(&[(b"applied", b"last")]).unwrap();
        s.db().close().unwrap();
    }
    let s = MvccStore::open(MvccStore::default_options(dir.path())).unwrap();
    assert_eq!(s.meta(b"applied").unwrap(), Some(b"last".to_vec()));
    assert!(s.leases().unwrap().is_empty());
    assert_eq!(get(&s, "a").unwrap().value, b("1"));
}

#[test]
fn snapshot_roundtrip() {
    let mut o = Options::in_memory();
    o.managed = true;
    o.memtable_size = 64 << 10;
    o.table_size = 32 << 10;
    let src = MvccStore::open(o).unwrap();
    feed(&src, 7);
    src.db().flush().unwrap();
    feed(&src, 8);
    src.lease_grant(9, 60, &[]).unwrap();
    src.apply_meta(&[(b"applied", b"idx-42")]).unwrap();
    let mut chunks = Vec::new();
    let info = src
        .export_snapshot(|c| {
            chunks.push(c);
            Ok(())
        })
        .unwrap();
    assert_eq!(info.revision, src.current_revision());
    let dir = tempfile::tempdir().unwrap();
    let mut imp =
        SnapshotImporter::new(MvccStore::default_options(dir.path().join("snap"))).unwrap();
    for c in &chunks {
        imp.write_chunk(c).unwrap();
    }
    let dst = imp.finish().unwrap();
    assert_eq!(dst.current_revision(), src.current_revision());
    assert_eq!(dst.compacted_revision(), src.compacted_revision());
    assert_eq!(dst.hash_kv(0).unwrap(), src.hash_kv(0).unwrap());
    assert_eq!(dst.meta(b"applied").unwrap(), Some(b"idx-42".to_vec()));
    assert_eq!(dst.lease(9).unwrap(), src.lease(9).unwrap());
    for rev in [0, src.compacted_revision(), src.current_revision() - 3] {
        let q = RangeRequest {
            key: b("\0"),
            range_end: b("\0"),
            revision: rev,
            ..Default::default()
        };
        assert_eq!(dst.range(&q).unwrap(), src.range(&q).unwrap());
    }
    let since = src.compacted_revision();
    assert_eq!(
        dst.events_since(since, b"\0", b"\0", true, 0).unwrap(),
        src.events_since(since, b"\0", b"\0", true, 0).unwrap()
    );
    // The imported store keeps going.
    let r = src.current_revision() + 1;
    assert_eq!(put(&dst, "after", "x"), r);
    // Garbage chunks are an error, not a panic.
    let mut imp =
        SnapshotImporter::new(MvccStore::default_options(dir.path().join("bad"))).unwrap();
    assert!(imp.write_chunk(&[0xff, 0xff, 0xff]).is_err());
}

#[test]
fn framed_snapshot_stream() {
    let src = mem_store();
    feed(&src, 3);
    let mut bytes = Vec::new();
    let info = src.write_snapshot(&mut bytes).unwrap();
    assert_eq!(info.revision, src.current_revision());
    let dir = tempfile::tempdir().unwrap();
    let dst = SnapshotImporter::read_from(
        MvccStore::default_options(dir.path().join("a")),
        &mut bytes.as_slice(),
    )
    .unwrap();
    assert_eq!(dst.hash_kv(0).unwrap(), src.hash_kv(0).unwrap());
    // A truncated stream is an error.
    let cut = &bytes[..bytes.len() - 4];
    assert!(SnapshotImporter::read_from(
        MvccStore::default_options(dir.path().join("b")),
        &mut &cut[..],
    )
    .is_err());
}

mod native {
    use super::*;
    use sett_proto::sett::v1::{self as native, write::Op};
    use sett_server::mvcc::NativeCommitOutcome;

    fn commit(read_rev: i64, reads: &[(&str, &str)], writes: Vec<Op>) -> native::CommitRequest {
        native::CommitRequest {
            txn: Some(native::TxnHandle {
                id: 1,
                read_revision: read_rev,
            }),
            reads: reads
                .iter()
                .map(|(k, e)| native::KeyRange {
                    key: b(k),
                    range_end: b(e),
                })
                .collect(),
            writes: writes
                .into_iter()
                .map(|op| native::Write { op: Some(op) })
                .collect(),
        }
    }

    fn wput(k: &str, v: &str) -> Op {
        Op::Put(native::Put {
            key: b(k),
            value: b(v),
            lease: 0,
        })
    }

    #[test]
    fn conflicts_and_commits() {
        let s = mem_store();
        put(&s, "a", "1"); // 2
        put(&s, "b", "1"); // 3
                           // Read at 3, nothing changed since: commits at 4.
        let r = s
            .native_commit(
                &commit(3, &[("a", "")], vec![wput("c", "x"), wput("d", "y")]),
                &[],
            )
            .unwrap();
        assert_eq!(r, NativeCommitOutcome::Committed { revision: 4 });
        assert_eq!(get(&s, "d").unwrap().mod_revision, 4);
        // Read at 2; b changed at 3 -> conflict on a range read.
        let r = s
            .native_commit(&commit(2, &[("b", "c")], vec![wput("e", "x")]), &[])
            .unwrap();
        assert_eq!(
            r,
            NativeCommitOutcome::Conflict {
                key: b"b".to_vec(),
                revision: 3
            }
        );
        assert!(get(&s, "e").is_none());
        // Blind writes never conflict.
        let r = s
            .native_commit(&commit(2, &[], vec![wput("b", "2")]), &[])
            .unwrap();
        assert_eq!(r, NativeCommitOutcome::Committed { revision: 5 });
        // Duplicate keys are refused like an etcd txn.
        assert_etcd(
            s.native_commit(&commit(5, &[], vec![wput("x", "1"), wput("x", "2")]), &[]),
            EtcdError::DUPLICATE_KEY,
        );
        s.compact(
            &CompactionRequest {
                revision: 4,
                physical: false,
            },
            &[],
        )
        .unwrap();
        let r = s
            .native_commit(&commit(3, &[("a", "")], vec![]), &[])
            .unwrap();
        assert_eq!(
            r,
            NativeCommitOutcome::Compacted {
                compact_revision: 4
            }
        );
    }
}

#[test]
fn txn_ranges_see_earlier_ops_of_the_txn() {
    let s = mem_store();
    for k in ["a", "c", "e"] {
        put(&s, k, "old"); // 2, 3, 4
    }
    let t = TxnRequest {
        success: vec![
            op_put("b", "new"),
            op_del("c", "d"),
            op_put("f", "new"),
            op_range("a", "\0"),
            RequestOp {
                request: Some(Request::RequestRange(RangeRequest {
                    key: b("a"),
                    range_end: b("\0"),
                    revision: 4,
                    ..Default::default()
                })),
            },
        ],
        ..Default::default()
    };
    let r = s.txn(&t, &[]).unwrap();
    let Response::ResponseRange(now) = r.responses[3].response.as_ref().unwrap() else {
        panic!()
    };
    assert_eq!(keys(now), vec!["a", "b", "e", "f"]);
    assert_eq!(now.count, 4);
    assert_eq!(now.kvs[1].mod_revision, 5);
    assert_eq!(now.kvs[0].mod_revision, 2);
    let Response::ResponseRange(before) = r.responses[4].response.as_ref().unwrap() else {
        panic!()
    };
    assert_eq!(keys(before), vec!["a", "c", "e"]);
    assert_eq!(before.header.unwrap().revision, 5);
    assert_eq!(keys(&range(&s, "a", "\0")), vec!["a", "b", "e", "f"]);
}

#[test]
fn concurrent_reads_during_applies_and_compactions() {
    let s = std::sync::Arc::new(mem_store());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (s, stop) = (s.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut last = 0;
                let mut reads = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = s
                        .range(&RangeRequest {
                            key: b("\0"),
                            range_end: b("\0"),
                            ..Default::default()
                        })
                        .unwrap();
                    let rev = r.header.unwrap().revision;
                    assert!(rev >= last);
                    last = rev;
                    for kv in &r.kvs {
                        assert!(kv.mod_revision <= rev);
                    }
                    match s.events_since(rev - 5, b"\0", b"\0", true, 0) {
                        Ok(_) => {}
                        Err(e) => assert_eq!(e.etcd(), Some(EtcdError::COMPACTED)),
                    }
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for i in 0..400 {
        put(&s, &format!("k{}", i % 17), &i.to_string());
        if i % 50 == 49 {
            s.compact(
                &CompactionRequest {
                    revision: s.current_revision() - 10,
                    physical: false,
                },
                &[],
            )
            .unwrap();
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    assert_eq!(s.current_revision(), 401);
}
