//! The entry point of the `server_request` fuzz target (`fuzz/`), kept in
//! the crate so `cargo test` compiles and runs it. Not a public API.
//!
//! # The layer driven
//!
//! A full Raft round trip costs about a millisecond, too slow for tens of
//! millions of inputs, so this drives the two layers on either side of
//! Raft, exactly as a member runs them, on an in-memory engine:
//!
//! 1. the gRPC services' request checks (`check_range`, `check_put`,
//!    `check_delete`, `validate_txn` with the default `--max-txn-ops`), as
//!    `api/kv.rs` runs them before proposing;
//! 2. the state machine: [`MvccApplier::apply`] on a log entry carrying
//!    the protobuf-encoded request (what Raft would have committed), which
//!    decodes it and runs the MVCC store's apply code;
//! 3. the reads served outside Raft: [`MvccStore::range`] (KV Range) and
//!    [`MvccStore::events_since`] (the log read a watcher does when it is
//!    created and whenever it catches up).
//!
//! Not covered: Raft itself, the network, and the watch stream's own
//! bookkeeping (watch ids, the response queue), which live in the gRPC
//! stream task.
//!
//! # Input
//!
//! A sequence of `tag u8 | len u16 (LE) | len bytes` records; the tag picks
//! the request type, the bytes are its protobuf encoding (decoded with
//! prost, so anything is accepted as input). Some tags send the bytes to
//! the log without the gRPC checks, as a member running older code could
//! have proposed them: the state machine must refuse bad ones on its own.
//!
//! # Invariants asserted
//!
//! - nothing panics, and the engine never reports a storage error;
//! - a request the gRPC checks refuse gets an etcd error and is not
//!   proposed; an entry the state machine refuses changes no revision;
//! - revisions never go back; a Put adds exactly one revision and a later
//!   Range of its key returns the value put;
//! - Range honours its limit; watch reads return events in revision
//!   order, inside the requested range and revisions.

use crate::mvcc::{check_delete, check_put, check_range, validate_txn, MvccError, MvccStore};
use crate::mvcc::{EtcdError, DEFAULT_MAX_TXN_OPS};
use crate::raft::{Applier, Entry, MvccApplier, Request, Response};
use openraft::{CommittedLeaderId, EntryPayload, LogId};
use prost::Message;
use sett_proto::etcdserverpb::watch_request::RequestUnion;
use sett_proto::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, TxnRequest, TxnResponse, WatchRequest,
};

/// Inputs run against one store before it is thrown away, bounding the
/// memory a long fuzzing run holds.
pub const INPUTS_PER_STORE: u64 = 1000;
/// Requests taken from one input at most.
const REQUESTS_PER_INPUT: usize = 16;
/// Events one watch read returns (the watch service's `EVENTS_PER_READ`).
const EVENTS_PER_READ: usize = 1000;

/// An in-memory member's state machine and its read path, fed one fuzz
/// input at a time.
#[derive(Debug)]
pub struct RequestFuzzer {
    applier: MvccApplier,
    /// Holds the state machine's directory switch (the engine itself is
    /// in memory).
    _dir: tempfile::TempDir,
    /// Index of the next log entry.
    next_index: u64,
    /// Inputs run on this store.
    inputs: u64,
}

impl RequestFuzzer {
    /// A fresh member state at revision 1.
    pub fn new() -> RequestFuzzer {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut options = MvccStore::default_options(dir.path().join("engine"));
        options.in_memory = true;
        options.sync_writes = false;
        let applier = MvccApplier::open_with(dir.path(), options, DEFAULT_MAX_TXN_OPS)
            .expect("open an in-memory state machine");
        RequestFuzzer {
            applier,
            _dir: dir,
            next_index: 1,
            inputs: 0,
        }
    }

    /// Runs one fuzz input; starts over on a fresh store every
    /// [`INPUTS_PER_STORE`] inputs.
    pub fn run(&mut self, data: &[u8]) {
        if self.inputs == INPUTS_PER_STORE {
            *self = RequestFuzzer::new();
        }
        self.inputs += 1;
        let mut rest = data;
        let mut n = 0;
        while let [tag, a, b, tail @ ..] = rest {
            if n == REQUESTS_PER_INPUT {
                break;
            }
            n += 1;
            let len = (u16::from_le_bytes([*a, *b]) as usize).min(tail.len());
            let (body, next) = tail.split_at(len);
            self.request(*tag, body);
            rest = next;
        }
    }

    fn store(&self) -> std::sync::Arc<MvccStore> {
        self.applier.store()
    }

    /// One request: `tag` picks its type, `body` is its encoding.
    fn request(&mut self, tag: u8, body: &[u8]) {
        match tag % 12 {
            0 => self.range(body),
            1 => self.put(body),
            2 => {
                let Ok(req) = DeleteRangeRequest::decode(body) else {
                    return;
                };
                if refused_by_grpc(check_delete(&req)) {
                    return;
                }
                let before = self.store().current_revision();
                if let Some(resp) = self.propose(Request::DeleteRange(body.to_vec())) {
                    let resp = DeleteRangeResponse::decode(&resp[..]).expect("response decodes");
                    let after = self.store().current_revision();
                    assert_eq!(after, before + i64::from(resp.deleted > 0));
                }
            }
            3 => {
                let Ok(req) = TxnRequest::decode(body) else {
                    return;
                };
                if refused_by_grpc(validate_txn(&req, DEFAULT_MAX_TXN_OPS)) {
                    return;
                }
                let before = self.store().current_revision();
                if let Some(resp) = self.propose(Request::Txn(body.to_vec())) {
                    TxnResponse::decode(&resp[..]).expect("response decodes");
                    let after = self.store().current_revision();
                    assert!(after == before || after == before + 1);
                }
            }
            4 => {
                // The KV service proposes compactions unchecked.
                if CompactionRequest::decode(body).is_ok() {
                    self.propose(Request::Compact(body.to_vec()));
                }
            }
            5 => {
                self.propose(Request::LeaseGrant(body.to_vec()));
            }
            6 => {
                self.propose(Request::LeaseRevoke(body.to_vec()));
            }
            7 => self.watch(body),
            8 => {
                self.propose(Request::Alarm(body.to_vec()));
            }
            // Straight to the log, past the gRPC checks (undecodable bytes
            // included).
            9 => {
                self.propose(Request::Put(body.to_vec()));
            }
            10 => {
                self.propose(Request::DeleteRange(body.to_vec()));
            }
            _ => {
                self.propose(Request::Txn(body.to_vec()));
            }
        }
    }

    /// Applies `req` as the next committed log entry. Returns the encoded
    /// answer if it applied; asserts a refusal changed no revision.
    fn propose(&mut self, req: Request) -> Option<Vec<u8>> {
        let store = self.store();
        let (rev, compacted) = (store.current_revision(), store.compacted_revision());
        let entry = Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), self.next_index),
            payload: EntryPayload::Normal(req),
        };
        self.next_index += 1;
        let mut out = self
            .applier
            .apply(vec![entry])
            .expect("the in-memory state machine never fails");
        assert_eq!(out.len(), 1, "one response per entry");
        let after = (store.current_revision(), store.compacted_revision());
        assert!(
            after.0 >= rev && after.1 >= compacted,
            "a revision went back"
        );
        match out.pop() {
            Some(Response::Encoded(bytes)) => Some(bytes),
            Some(Response::Failed { .. } | Response::FailedWithDetail { .. }) => {
                assert_eq!(after, (rev, compacted), "a refused entry changed the store");
                None
            }
            other => panic!("unexpected response {other:?}"),
        }
    }

    fn put(&mut self, body: &[u8]) {
        let Ok(req) = PutRequest::decode(body) else {
            return;
        };
        if refused_by_grpc(check_put(&req)) {
            return;
        }
        let before = self.store().current_revision();
        let Some(resp) = self.propose(Request::Put(body.to_vec())) else {
            return;
        };
        PutResponse::decode(&resp[..]).expect("response decodes");
        let store = self.store();
        assert_eq!(
            store.current_revision(),
            before + 1,
            "a put adds one revision"
        );
        if !req.ignore_value {
            let read = store
                .range(&RangeRequest {
                    key: req.key.clone(),
                    ..RangeRequest::default()
                })
                .expect("read back a put");
            let kv = read.kvs.first().expect("the key just put");
            assert_eq!((&kv.key, &kv.value), (&req.key, &req.value));
            assert_eq!(kv.mod_revision, before + 1);
        }
    }

    fn range(&mut self, body: &[u8]) {
        let Ok(req) = RangeRequest::decode(body) else {
            return;
        };
        if refused_by_grpc(check_range(&req)) {
            return;
        }
        let resp: RangeResponse = match self.store().range(&req) {
            Ok(r) => r,
            Err(e) => {
                assert_etcd(e);
                return;
            }
        };
        if req.limit > 0 {
            assert!(resp.kvs.len() as i64 <= req.limit, "range over its limit");
        }
        if req.count_only {
            assert!(resp.kvs.is_empty());
        }
    }

    fn watch(&mut self, body: &[u8]) {
        let Ok(WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(c)),
        }) = WatchRequest::decode(body)
        else {
            return;
        };
        // etcd's rule: an empty key watches "\0".
        let key: &[u8] = if c.key.is_empty() { &[0] } else { &c.key };
        let store = self.store();
        let current = store.current_revision();
        let events = match store.events_since(
            c.start_revision,
            key,
            &c.range_end,
            c.prev_kv,
            EVENTS_PER_READ,
        ) {
            Ok(evs) => evs,
            Err(e) => {
                assert_etcd(e);
                return;
            }
        };
        let start = c.start_revision.max(1);
        let mut last = start;
        for ev in &events {
            let kv = ev.kv.as_ref().expect("an event carries its key");
            assert!(kv.mod_revision >= last && kv.mod_revision <= current);
            last = kv.mod_revision;
            let k: &[u8] = &kv.key;
            let in_range = if c.range_end.is_empty() {
                k == key
            } else if c.range_end[..] == [0] {
                k >= key
            } else {
                k >= key && k < &c.range_end[..]
            };
            assert!(in_range, "watch event outside its range");
        }
    }
}

impl Default for RequestFuzzer {
    fn default() -> Self {
        RequestFuzzer::new()
    }
}

/// True if the gRPC checks refused the request; the refusal must be an
/// etcd error (a gRPC status for the client), never anything else.
fn refused_by_grpc(r: Result<(), MvccError>) -> bool {
    match r {
        Ok(()) => false,
        Err(e) => {
            assert_etcd(e);
            true
        }
    }
}

/// Asserts `e` is an etcd (client-facing) error, not a storage failure.
fn assert_etcd(e: MvccError) {
    match e {
        MvccError::Etcd(EtcdError { .. }) => {}
        other => panic!("storage error on the in-memory engine: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(tag: u8, m: &impl Message) -> Vec<u8> {
        let body = m.encode_to_vec();
        let mut out = vec![tag];
        out.extend_from_slice(&(body.len() as u16).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn fuzz_entry_smoke() {
        let mut f = RequestFuzzer::new();
        let put = PutRequest {
            key: b"a".to_vec().into(),
            value: b"1".to_vec().into(),
            ..PutRequest::default()
        };
        let mut input = op(1, &put);
        input.extend(op(
            0,
            &RangeRequest {
                key: b"a".to_vec().into(),
                ..RangeRequest::default()
            },
        ));
        // Refused by the checks: empty key.
        input.extend(op(1, &PutRequest::default()));
        // Straight to the log: the state machine refuses it itself.
        input.extend(op(9, &PutRequest::default()));
        input.extend(op(
            9,
            &PutRequest {
                lease: 42,
                ..put.clone()
            },
        ));
        input.extend([11, 3, 0, 0xff, 0xff, 0xff]);
        f.run(&input);
        assert_eq!(f.store().current_revision(), 2);
        for data in [&[][..], &[0], &[7, 1, 0, 0], &[4, 2, 0, 8, 99]] {
            f.run(data);
        }
    }
}
