//! `etcdserverpb.Maintenance`: `Status` (what `etcdctl endpoint status`
//! shows), `HashKV` and an empty alarm list. Snapshot, Defragment, Hash,
//! MoveLeader and Downgrade answer `UNIMPLEMENTED`.

use super::ApiContext;
use sett_proto::etcdserverpb::maintenance_server::Maintenance;
use sett_proto::etcdserverpb::{
    alarm_request::AlarmAction, AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse,
    DowngradeRequest, DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse,
    MoveLeaderRequest, MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest,
    StatusResponse,
};
use std::pin::Pin;
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

/// The etcd API level a member reports as its `version`: the release
/// whose wire interface and semantics sett serves.
pub(crate) const ETCD_API_VERSION: &str = "3.4.0";

/// The Maintenance service of one member.
#[derive(Debug, Clone)]
pub(crate) struct MaintenanceService {
    ctx: ApiContext,
}

impl MaintenanceService {
    pub(crate) fn new(ctx: ApiContext) -> MaintenanceService {
        MaintenanceService { ctx }
    }
}

fn unimplemented(what: &str) -> Status {
    Status::unimplemented(format!("sett: Maintenance.{what} is not supported yet"))
}

type SnapshotStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(
        &self,
        request: GrpcRequest<AlarmRequest>,
    ) -> Result<GrpcResponse<AlarmResponse>, Status> {
        // No alarm is ever raised (no space quota alarm, no corruption
        // alarm yet): listing answers an empty list.
        match AlarmAction::try_from(request.into_inner().action) {
            Ok(AlarmAction::Get) => {
                let mut resp = AlarmResponse::default();
                let rev = self.ctx.store().current_revision();
                self.ctx.fill_header(&mut resp, Some(rev));
                Ok(GrpcResponse::new(resp))
            }
            _ => Err(unimplemented("Alarm (activate/deactivate)")),
        }
    }

    async fn status(
        &self,
        _request: GrpcRequest<StatusRequest>,
    ) -> Result<GrpcResponse<StatusResponse>, Status> {
        let metrics = self.ctx.proposer().raft().metrics().borrow().clone();
        let store = self.ctx.store();
        let stats = store.db().stats();
        let db_size = stats.bytes_per_level.iter().sum::<u64>() + stats.vlog_bytes;
        let me = self.ctx.proposer().member_id();
        let is_learner = !metrics
            .membership_config
            .membership()
            .voter_ids()
            .any(|id| id == me);
        let mut resp = StatusResponse {
            version: ETCD_API_VERSION.to_owned(),
            db_size: i64::try_from(db_size).unwrap_or(i64::MAX),
            leader: metrics.current_leader.unwrap_or(0),
            raft_index: metrics.last_log_index.unwrap_or(0),
            raft_term: metrics.current_term,
            raft_applied_index: metrics.last_applied.map_or(0, |l| l.index),
            errors: Vec::new(),
            db_size_in_use: i64::try_from(db_size).unwrap_or(i64::MAX),
            is_learner,
            ..StatusResponse::default()
        };
        self.ctx
            .fill_header(&mut resp, Some(store.current_revision()));
        Ok(GrpcResponse::new(resp))
    }

    async fn defragment(
        &self,
        _request: GrpcRequest<DefragmentRequest>,
    ) -> Result<GrpcResponse<DefragmentResponse>, Status> {
        Err(unimplemented("Defragment"))
    }

    async fn hash(
        &self,
        _request: GrpcRequest<HashRequest>,
    ) -> Result<GrpcResponse<HashResponse>, Status> {
        Err(unimplemented("Hash"))
    }

    async fn hash_kv(
        &self,
        request: GrpcRequest<HashKvRequest>,
    ) -> Result<GrpcResponse<HashKvResponse>, Status> {
        let rev = request.into_inner().revision;
        let h = self.ctx.read(|store| store.hash_kv(rev))?;
        let mut resp = HashKvResponse {
            hash: h.hash,
            compact_revision: h.compact_revision,
            ..HashKvResponse::default()
        };
        self.ctx.fill_header(&mut resp, Some(h.current_revision));
        Ok(GrpcResponse::new(resp))
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(
        &self,
        _request: GrpcRequest<SnapshotRequest>,
    ) -> Result<GrpcResponse<SnapshotStream>, Status> {
        Err(unimplemented("Snapshot"))
    }

    async fn move_leader(
        &self,
        _request: GrpcRequest<MoveLeaderRequest>,
    ) -> Result<GrpcResponse<MoveLeaderResponse>, Status> {
        Err(unimplemented("MoveLeader"))
    }

    async fn downgrade(
        &self,
        _request: GrpcRequest<DowngradeRequest>,
    ) -> Result<GrpcResponse<DowngradeResponse>, Status> {
        Err(unimplemented("Downgrade"))
    }
}
