//! Model test: random puts, deletes, txns, compactions and flushes against
//! `MvccStore` and a `BTreeMap`-per-revision model; every Range (at the
//! latest or a past revision) and every error must match.

use bytes::Bytes;
use proptest::prelude::*;
use sett_engine::Options;
use sett_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use sett_proto::etcdserverpb::request_op::Request;
use sett_proto::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    ResponseHeader, TxnRequest,
};
use sett_proto::mvccpb::KeyValue;
use sett_server::mvcc::{EtcdError, MvccStore, SnapshotImporter};
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
enum Op {
    Put(String, String),
    Delete(String, Option<String>),
    /// if version(key) == v { put(k2, val) } else { delete(k3) }
    Txn(String, i64, String, String, String),
    Compact(u8),
    Flush,
    /// Export a snapshot, import it into a fresh store, continue there.
    SnapshotSwap,
    Range(String, Option<String>, u8, i64),
}

type State = BTreeMap<Vec<u8>, KeyValue>;

struct Model {
    history: Vec<State>, // index = revision (0 unused)
    compacted: i64,
}

impl Model {
    fn rev(&self) -> i64 {
        self.history.len() as i64 - 1
    }
    fn cur(&self) -> &State {
        self.history.last().unwrap()
    }
    fn put(st: &mut State, k: &str, v: &str, rev: i64) {
        let e = st.get(k.as_bytes()).cloned();
        st.insert(
            k.as_bytes().to_vec(),
            KeyValue {
                key: Bytes::copy_from_slice(k.as_bytes()),
                create_revision: e.as_ref().map_or(rev, |e| e.create_revision),
                mod_revision: rev,
                version: e.as_ref().map_or(1, |e| e.version + 1),
                value: Bytes::copy_from_slice(v.as_bytes()),
                lease: 0,
            },
        );
    }
    fn in_range(k: &[u8], start: &str, end: &Option<String>) -> bool {
        match end {
            None => k == start.as_bytes(),
            Some(e) if e == "\0" => k >= start.as_bytes(),
            Some(e) => k >= start.as_bytes() && k < e.as_bytes(),
        }
    }
    fn commit(&mut self, st: State, changed: bool) {
        if changed {
            self.history.push(st);
        }
    }
}

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "ab", "b", "ba", "c", "d", "e", "ee"]).prop_map(String::from)
}

fn end() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("\0".to_string())),
        key().prop_map(Some),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (key(), "[a-z]{0,6}").prop_map(|(k, v)| Op::Put(k, v)),
        2 => (key(), end()).prop_map(|(k, e)| Op::Delete(k, e)),
        2 => (key(), 0i64..3, key(), "[a-z]{1,3}", key()).prop_map(|(k, v, k2, val, k3)| Op::Txn(k, v, k2, val, k3)),
        1 => any::<u8>().prop_map(Op::Compact),
        1 => Just(Op::Flush),
        1 => Just(Op::SnapshotSwap),
        4 => (key(), end(), any::<u8>(), 0i64..4).prop_map(|(k, e, r, l)| Op::Range(k, e, r, l)),
    ]
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn run(ops: Vec<Op>) {
    let mut o = Options::in_memory();
    o.managed = true;
    o.memtable_size = 64 << 10;
    let mut s = MvccStore::open(o).unwrap();
    let mut m = Model {
        history: vec![State::new(), State::new()],
        compacted: 0,
    };
    for op in ops {
        let next = m.rev() + 1;
        match op {
            Op::Put(k, v) => {
                s.put(
                    &PutRequest {
                        key: b(&k),
                        value: b(&v),
                        ..Default::default()
                    },
                    &[],
                )
                .unwrap();
                let mut st = m.cur().clone();
                Model::put(&mut st, &k, &v, next);
                m.commit(st, true);
            }
            Op::Delete(k, e) => {
                let r = s
                    .delete_range(
                        &DeleteRangeRequest {
                            key: b(&k),
                            range_end: e.as_deref().map(b).unwrap_or_default(),
                            prev_kv: true,
                        },
                        &[],
                    )
                    .unwrap();
                let mut st = m.cur().clone();
                let gone: Vec<KeyValue> = st
                    .values()
                    .filter(|kv| Model::in_range(&kv.key, &k, &e))
                    .cloned()
                    .collect();
                for kv in &gone {
                    st.remove(kv.key.as_ref());
                }
                assert_eq!(r.deleted, gone.len() as i64);
                assert_eq!(r.prev_kvs, gone);
                m.commit(st, !gone.is_empty());
            }
            Op::Txn(k, v, k2, val, k3) => {
                let req = TxnRequest {
                    compare: vec![Compare {
                        result: CompareResult::Equal as i32,
                        target: CompareTarget::Version as i32,
                        key: b(&k),
                        range_end: Bytes::new(),
                        target_union: Some(TargetUnion::Version(v)),
                    }],
                    success: vec![RequestOp {
                        request: Some(Request::RequestPut(PutRequest {
                            key: b(&k2),
                            value: b(&val),
                            ..Default::default()
                        })),
                    }],
                    failure: vec![RequestOp {
                        request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                            key: b(&k3),
                            ..Default::default()
                        })),
                    }],
                };
                let r = s.txn(&req, &[]).unwrap();
                let ver = m.cur().get(k.as_bytes()).map_or(0, |kv| kv.version);
                let mut st = m.cur().clone();
                let changed = if ver == v {
                    Model::put(&mut st, &k2, &val, next);
                    true
                } else {
                    st.remove(k3.as_bytes()).is_some()
                };
                assert_eq!(r.succeeded, ver == v);
                m.commit(st, changed);
                assert_eq!(r.header.unwrap().revision, m.rev());
            }
            Op::Compact(x) => {
                let target = i64::from(x) % (m.rev() + 2);
                let r = s.compact(
                    &CompactionRequest {
                        revision: target,
                        physical: false,
                    },
                    &[],
                );
                if target <= m.compacted {
                    assert_eq!(r.unwrap_err().etcd(), Some(EtcdError::COMPACTED));
                } else if target > m.rev() {
                    assert_eq!(r.unwrap_err().etcd(), Some(EtcdError::FUTURE_REV));
                } else {
                    r.unwrap();
                    m.compacted = target;
                }
            }
            Op::SnapshotSwap => {
                let mut bytes = Vec::new();
                s.write_snapshot(&mut bytes).unwrap();
                let mut o = Options::in_memory();
                o.managed = true;
                s = SnapshotImporter::read_from(o, &mut bytes.as_slice()).unwrap();
            }
            Op::Flush => {
                s.db().flush().unwrap();
                s.db().compact().unwrap();
            }
            Op::Range(k, e, r, limit) => {
                let rev = i64::from(r) % (m.rev() + 2);
                let got = s.range(&RangeRequest {
                    key: b(&k),
                    range_end: e.as_deref().map(b).unwrap_or_default(),
                    revision: rev,
                    limit,
                    ..Default::default()
                });
                if rev > m.rev() {
                    assert_eq!(got.unwrap_err().etcd(), Some(EtcdError::FUTURE_REV));
                    continue;
                }
                if rev > 0 && rev < m.compacted {
                    assert_eq!(got.unwrap_err().etcd(), Some(EtcdError::COMPACTED));
                    continue;
                }
                let at = if rev <= 0 { m.rev() } else { rev };
                let all: Vec<KeyValue> = m.history[at as usize]
                    .values()
                    .filter(|kv| Model::in_range(&kv.key, &k, &e))
                    .cloned()
                    .collect();
                let got = got.unwrap();
                let n = if limit > 0 {
                    (limit as usize).min(all.len())
                } else {
                    all.len()
                };
                assert_eq!(got.kvs, all[..n].to_vec(), "range {k:?}..{e:?} at {at}");
                assert_eq!(got.count, all.len() as i64);
                assert_eq!(got.more, n < all.len());
                assert_eq!(
                    got.header,
                    Some(ResponseHeader {
                        revision: m.rev(),
                        ..Default::default()
                    })
                );
            }
        }
        assert_eq!(s.current_revision(), m.rev());
        assert_eq!(s.compacted_revision(), m.compacted);
    }
    // The event log replays the model's history from the compaction point.
    let from = m.compacted.max(2);
    let events = s.events_since(from, b"\0", b"\0", false, 0).unwrap();
    let mut replay = m.history[(from - 1) as usize].clone();
    for e in &events {
        let kv = e.kv.clone().unwrap();
        if e.r#type == 0 {
            replay.insert(kv.key.to_vec(), kv);
        } else {
            replay.remove(kv.key.as_ref());
        }
    }
    assert_eq!(&replay, m.cur());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn store_matches_model(ops in prop::collection::vec(op(), 1..120)) {
        run(ops);
    }
}
