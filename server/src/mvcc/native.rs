//! Commits of sett's native interactive transactions (`sett.v1.Commit`):
//! serializable snapshot isolation decided at apply time from the event
//! log — the commit succeeds iff no key in any read range changed after
//! the read revision — in O(events since the read revision).

use super::error::{EtcdError, Result};
use super::keys::{self, decode_event, decode_event_key, KeyRange, EVENTS};
use super::store::MvccStore;
use super::txn::check_intervals;
use super::write::{check_put, MetaWrites, WriteCtx};
use sett_engine::IterOptions;
use sett_proto::etcdserverpb::request_op::Request;
use sett_proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RequestOp};
use sett_proto::sett::v1::write::Op;
use sett_proto::sett::v1::CommitRequest;

/// The deterministic outcome of a native commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NativeCommitOutcome {
    /// The writes took effect at `revision` (the current revision if the
    /// commit changed no key).
    Committed {
        /// Revision of the writes.
        revision: i64,
    },
    /// `key` (in the read set) changed at `revision` > the read revision.
    Conflict {
        /// One key whose change caused the abort.
        key: Vec<u8>,
        /// The revision of that change.
        revision: i64,
    },
    /// The read revision is below the compaction point.
    Compacted {
        /// The compacted revision.
        compact_revision: i64,
    },
}

fn as_ops(req: &CommitRequest) -> Vec<RequestOp> {
    req.writes
        .iter()
        .filter_map(|w| match &w.op {
            Some(Op::Put(p)) => Some(Request::RequestPut(PutRequest {
                key: p.key.clone(),
                value: p.value.clone(),
                lease: p.lease,
                ..PutRequest::default()
            })),
            Some(Op::Delete(d)) => Some(Request::RequestDeleteRange(DeleteRangeRequest {
                key: d.key.clone(),
                range_end: d.range_end.clone(),
                prev_kv: false,
            })),
            None => None,
        })
        .map(|r| RequestOp { request: Some(r) })
        .collect()
}

impl MvccStore {
    /// Applies a native commit. Bad requests (empty keys, a key written
    /// twice, unknown lease, a write without an op) are errors and write
    /// nothing; conflicts and compaction are outcomes (also writing
    /// nothing: record the entry with [`MvccStore::apply_meta`]).
    pub fn native_commit(
        &self,
        req: &CommitRequest,
        meta: MetaWrites<'_>,
    ) -> Result<NativeCommitOutcome> {
        let read_rev = req.txn.as_ref().map_or(0, |t| t.read_revision);
        let ops = as_ops(req);
        if ops.len() != req.writes.len() {
            return Err(EtcdError::KEY_NOT_FOUND.into());
        }
        for op in &ops {
            match &op.request {
                Some(Request::RequestPut(p)) => check_put(p)?,
                Some(Request::RequestDeleteRange(d)) if d.key.is_empty() => {
                    return Err(EtcdError::EMPTY_KEY.into())
                }
                _ => {}
            }
        }
        if req.reads.iter().any(|r| r.key.is_empty()) {
            return Err(EtcdError::EMPTY_KEY.into());
        }
        check_intervals(&ops)?;
        let _g = self.apply_lock.lock();
        let compacted = self.compacted_revision();
        if read_rev < compacted {
            return Ok(NativeCommitOutcome::Compacted {
                compact_revision: compacted,
            });
        }
        let mut ctx = WriteCtx::new(self)?;
        if read_rev > ctx.begin {
            return Err(EtcdError::FUTURE_REV.into());
        }
        if !req.reads.is_empty() {
            let reads: Vec<KeyRange> = req
                .reads
                .iter()
                .map(|r| KeyRange::new(&r.key, &r.range_end))
                .collect();
            let mut it = ctx.base.iter(IterOptions {
                lower_bound: Some(keys::event_key(read_rev + 1, 0)),
                upper_bound: Some(vec![EVENTS + 1]),
                ..IterOptions::default()
            });
            it.rewind()?;
            while it.valid() {
                let item = it.item();
                let (rev, _) = decode_event_key(item.key())?;
                let raw = item.value()?;
                let (_, key) = decode_event(&raw)?;
                if reads.iter().any(|r| r.contains(key)) {
                    return Ok(NativeCommitOutcome::Conflict {
                        key: key.to_vec(),
                        revision: rev,
                    });
                }
                it.next()?;
            }
        }
        for op in &ops {
            if let Some(Request::RequestPut(p)) = &op.request {
                if p.lease != 0 && !ctx.lease_exists(p.lease)? {
                    return Err(EtcdError::LEASE_NOT_FOUND.into());
                }
            }
        }
        for op in &ops {
            match &op.request {
                Some(Request::RequestPut(p)) => {
                    ctx.apply_put(p)?;
                }
                Some(Request::RequestDeleteRange(d)) => {
                    ctx.apply_delete(d)?;
                }
                _ => unreachable!("as_ops builds puts and deletes only"),
            }
        }
        let revision = ctx.commit(meta)?;
        Ok(NativeCommitOutcome::Committed { revision })
    }
}
