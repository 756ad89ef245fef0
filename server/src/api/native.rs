//! `sett.v1.Sett`: interactive serializable transactions (see
//! `proto/proto/sett/v1/sett.proto` for the contract).
//!
//! The server keeps no per-transaction state: a `TxnHandle` is the id
//! and the read revision, so any member serves the reads, and `Commit` is
//! proposed through Raft like any write. The state machine decides the
//! commit at apply time (`MvccStore::native_commit`): it aborts with
//! ABORTED and an `ErrorDetail` when a key of the read set changed after
//! the read revision. History at the read revision is not pinned: a
//! `Compact` past it makes later reads fail with etcd's compacted error
//! and the commit abort with reason COMPACTED (the client retries).

use super::ApiContext;
use crate::mvcc::{EtcdError, MvccStore};
use crate::raft::Request;
use prost::Message;
use sett_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use sett_proto::etcdserverpb::RangeRequest as EtcdRange;
use sett_proto::sett::v1::sett_server::Sett;
use sett_proto::sett::v1::{
    BeginRequest, BeginResponse, CommitRequest, CommitResponse, GetRequest, GetResponse, KeyRange,
    RangeRequest, RangeResponse, ResponseHeader, RollbackRequest, RollbackResponse, TxnHandle,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

/// The TTL reported when the client asks for none, in milliseconds. The
/// server keeps no state per transaction, so it only informs the client.
const DEFAULT_TTL_MS: i64 = 60_000;

/// The native service of one member.
#[derive(Debug, Clone)]
pub(crate) struct NativeService {
    ctx: ApiContext,
    next_id: Arc<AtomicU64>,
}

impl NativeService {
    pub(crate) fn new(ctx: ApiContext) -> NativeService {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let seed = (ctx.proposer().member_id() << 48) | ((millis << 8) & ((1 << 48) - 1));
        NativeService {
            ctx,
            next_id: Arc::new(AtomicU64::new(seed)),
        }
    }

    fn header(&self, revision: i64) -> Option<ResponseHeader> {
        let raft_term = self.ctx.proposer().raft().metrics().borrow().current_term;
        Some(ResponseHeader {
            cluster_id: self.ctx.inner.cluster_id,
            member_id: self.ctx.proposer().member_id(),
            revision,
            raft_term,
        })
    }
}

/// The read revision of a handle, refused when missing or not positive.
fn read_revision(txn: Option<&TxnHandle>) -> Result<i64, Status> {
    match txn {
        Some(t) if t.read_revision > 0 => Ok(t.read_revision),
        _ => Err(Status::invalid_argument(
            "sett: a transaction handle from Begin is required",
        )),
    }
}

impl NativeService {
    /// Waits (bounded) until this member's store has reached `rev`: a
    /// handle from a member further ahead may be read on one still
    /// applying.
    async fn reach(&self, rev: i64) {
        let mut revisions = self.ctx.store().subscribe();
        // On timeout, or when the store was replaced meanwhile, the read
        // itself answers (future revision, or from the new store).
        let _ = tokio::time::timeout(
            self.ctx.inner.request_timeout,
            revisions.wait_for(|r| *r >= rev),
        )
        .await;
    }
}

/// Checks a revision a transaction reads at against `store`.
fn check_revision(store: &MvccStore, rev: i64) -> Result<(), Status> {
    if rev > store.current_revision() {
        return Err(EtcdError::FUTURE_REV.to_status());
    }
    if rev < store.compacted_revision() {
        return Err(EtcdError::COMPACTED.to_status());
    }
    Ok(())
}

/// The smallest key after `k`.
fn successor(k: &[u8]) -> Vec<u8> {
    let mut v = k.to_vec();
    v.push(0);
    v
}

#[tonic::async_trait]
impl Sett for NativeService {
    async fn begin(
        &self,
        request: GrpcRequest<BeginRequest>,
    ) -> Result<GrpcResponse<BeginResponse>, Status> {
        self.ctx.caller(&request).await?;
        let req = request.into_inner();
        let rev = if req.read_revision > 0 {
            // A member behind the requested revision waits until it
            // has applied it (linearizable), then checks it.
            self.ctx.read_barrier().await?;
            let store = self.ctx.store();
            check_revision(&store, req.read_revision)?;
            req.read_revision
        } else {
            if !req.serializable {
                self.ctx.read_barrier().await?;
            }
            self.ctx.store().current_revision()
        };
        let ttl_ms = if req.ttl_ms > 0 {
            req.ttl_ms
        } else {
            DEFAULT_TTL_MS
        };
        Ok(GrpcResponse::new(BeginResponse {
            header: self.header(rev),
            txn: Some(TxnHandle {
                id: self.next_id.fetch_add(1, Ordering::Relaxed),
                read_revision: rev,
            }),
            ttl_ms,
        }))
    }

    async fn get(
        &self,
        request: GrpcRequest<GetRequest>,
    ) -> Result<GrpcResponse<GetResponse>, Status> {
        let caller = self.ctx.caller(&request).await?;
        let req = request.into_inner();
        let rev = read_revision(req.txn.as_ref())?;
        if req.key.is_empty() {
            return Err(EtcdError::EMPTY_KEY.to_status());
        }
        self.ctx.require_read(&caller, &req.key, &[]).await?;
        self.reach(rev).await;
        let range = EtcdRange {
            key: req.key,
            revision: rev,
            ..EtcdRange::default()
        };
        let resp = self.ctx.read(|store| store.range(&range))?;
        let current = resp.header.as_ref().map_or(0, |h| h.revision);
        Ok(GrpcResponse::new(GetResponse {
            header: self.header(current),
            kv: resp.kvs.into_iter().next(),
        }))
    }

    async fn range(
        &self,
        request: GrpcRequest<RangeRequest>,
    ) -> Result<GrpcResponse<RangeResponse>, Status> {
        let caller = self.ctx.caller(&request).await?;
        let req = request.into_inner();
        let rev = read_revision(req.txn.as_ref())?;
        if req.key.is_empty() {
            return Err(EtcdError::EMPTY_KEY.to_status());
        }
        self.ctx
            .require_read(&caller, &req.key, &req.range_end)
            .await?;
        self.reach(rev).await;
        let (sort_order, sort_target) = if req.reverse {
            (SortOrder::Descend as i32, SortTarget::Key as i32)
        } else {
            (SortOrder::None as i32, SortTarget::Key as i32)
        };
        let range = EtcdRange {
            key: req.key.clone(),
            range_end: req.range_end.clone(),
            limit: req.limit.max(0),
            revision: rev,
            keys_only: req.keys_only,
            sort_order,
            sort_target,
            ..EtcdRange::default()
        };
        let resp = self.ctx.read(|store| store.range(&range))?;
        let current = resp.header.as_ref().map_or(0, |h| h.revision);
        // What this answer proves absent-or-present: the whole range, or
        // up to the last key returned when the limit cut it.
        let covered = match (resp.more, resp.kvs.last()) {
            (true, Some(last)) if req.reverse => KeyRange {
                key: last.key.clone(),
                range_end: req.range_end.clone(),
            },
            (true, Some(last)) => KeyRange {
                key: req.key.clone(),
                range_end: successor(&last.key).into(),
            },
            _ => KeyRange {
                key: req.key,
                range_end: req.range_end,
            },
        };
        Ok(GrpcResponse::new(RangeResponse {
            header: self.header(current),
            more: resp.more,
            kvs: resp.kvs,
            covered: Some(covered),
        }))
    }

    async fn commit(
        &self,
        request: GrpcRequest<CommitRequest>,
    ) -> Result<GrpcResponse<CommitResponse>, Status> {
        let caller = self.ctx.caller(&request).await?;
        let req = request.into_inner();
        read_revision(req.txn.as_ref())?;
        self.ctx.check_size(req.encoded_len())?;
        if !req.writes.is_empty() {
            self.ctx.check_quota().await?;
        }
        let cmd = self
            .ctx
            .as_user(&caller, Request::NativeCommit(req.encode_to_vec()))
            .await?;
        let mut resp: CommitResponse = self.ctx.propose_plain(cmd).await?;
        let rev = resp.header.as_ref().map_or(0, |h| h.revision);
        resp.header = self.header(rev);
        Ok(GrpcResponse::new(resp))
    }

    async fn rollback(
        &self,
        request: GrpcRequest<RollbackRequest>,
    ) -> Result<GrpcResponse<RollbackResponse>, Status> {
        self.ctx.caller(&request).await?;
        // Nothing is held for a transaction: rollback only answers.
        let rev = request.into_inner().txn.map_or(0, |t| t.read_revision);
        Ok(GrpcResponse::new(RollbackResponse {
            header: self.header(rev),
        }))
    }
}
