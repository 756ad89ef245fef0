//! `etcdserverpb.KV`: Range from this member's store, writes through Raft.

use super::ApiContext;
use crate::mvcc::{check_delete, check_put, check_range, validate_txn, MvccError};
use crate::raft::Request;
use prost::Message;
use sett_proto::etcdserverpb::kv_server::Kv;
use sett_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

/// The KV service of one member.
#[derive(Debug, Clone)]
pub(crate) struct KvService {
    ctx: ApiContext,
}

impl KvService {
    pub(crate) fn new(ctx: ApiContext) -> KvService {
        KvService { ctx }
    }

    /// Checks the size of `req` and wraps its encoding for the log.
    fn encode<M: Message>(&self, req: &M, wrap: fn(Vec<u8>) -> Request) -> Result<Request, Status> {
        self.ctx.check_size(req.encoded_len())?;
        Ok(wrap(req.encode_to_vec()))
    }
}

fn checked(r: Result<(), MvccError>) -> Result<(), Status> {
    r.map_err(|e| e.to_status())
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        request: GrpcRequest<RangeRequest>,
    ) -> Result<GrpcResponse<RangeResponse>, Status> {
        let caller = self.ctx.caller(&request);
        let req = request.into_inner();
        checked(check_range(&req))?;
        if !req.serializable {
            self.ctx.read_barrier().await?;
        }
        // As etcd: the token and the permission are checked against the
        // state this member has applied once it has caught up.
        let caller = caller.await?;
        self.ctx
            .require_read(&caller, &req.key, &req.range_end)
            .await?;
        let mut resp = if req.range_end.is_empty() {
            self.ctx.read(|store| store.range(&req))?
        } else {
            // A range may visit many keys: off the async workers, so a
            // large read cannot hold up heartbeats and other requests.
            let ctx = self.ctx.clone();
            tokio::task::spawn_blocking(move || ctx.read(|store| store.range(&req)))
                .await
                .map_err(|e| Status::internal(format!("range task failed: {e}")))??
        };
        self.ctx.fill_header(&mut resp, None);
        Ok(GrpcResponse::new(resp))
    }

    async fn put(
        &self,
        request: GrpcRequest<PutRequest>,
    ) -> Result<GrpcResponse<PutResponse>, Status> {
        let caller = self.ctx.caller(&request).await?;
        let req = request.into_inner();
        checked(check_put(&req))?;
        if crate::debug_faults::skip_this_put() {
            let mut resp = PutResponse::default();
            self.ctx.fill_header(&mut resp, None);
            return Ok(GrpcResponse::new(resp));
        }
        let cmd = self
            .ctx
            .as_user(&caller, self.encode(&req, Request::Put)?)
            .await?;
        self.ctx.check_quota().await?;
        self.ctx.propose(cmd).await.map(GrpcResponse::new)
    }

    async fn delete_range(
        &self,
        request: GrpcRequest<DeleteRangeRequest>,
    ) -> Result<GrpcResponse<DeleteRangeResponse>, Status> {
        let caller = self.ctx.caller(&request).await?;
        let req = request.into_inner();
        checked(check_delete(&req))?;
        let cmd = self
            .ctx
            .as_user(&caller, self.encode(&req, Request::DeleteRange)?)
            .await?;
        self.ctx.propose(cmd).await.map(GrpcResponse::new)
    }

    async fn txn(
        &self,
        request: GrpcRequest<TxnRequest>,
    ) -> Result<GrpcResponse<TxnResponse>, Status> {
        let caller = self.ctx.caller(&request).await?;
        let req = request.into_inner();
        checked(validate_txn(&req, self.ctx.inner.max_txn_ops))?;
        let cmd = self
            .ctx
            .as_user(&caller, self.encode(&req, Request::Txn)?)
            .await?;
        if crate::raft::mvcc_applier::txn_has_put(&req) {
            self.ctx.check_quota().await?;
        }
        self.ctx.propose(cmd).await.map(GrpcResponse::new)
    }

    async fn compact(
        &self,
        request: GrpcRequest<CompactionRequest>,
    ) -> Result<GrpcResponse<CompactionResponse>, Status> {
        let caller = self.ctx.caller(&request).await?;
        let req = request.into_inner();
        let cmd = self
            .ctx
            .as_user(&caller, self.encode(&req, Request::Compact)?)
            .await?;
        self.ctx.propose(cmd).await.map(GrpcResponse::new)
    }
}
