//! `etcdserverpb.Cluster`: `MemberList` from the membership this member
//! knows. Membership changes answer `UNIMPLEMENTED`.

use super::ApiContext;
use sett_proto::etcdserverpb::cluster_server::Cluster;
use sett_proto::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

/// The Cluster service of one member.
#[derive(Debug, Clone)]
pub(crate) struct ClusterService {
    ctx: ApiContext,
}

impl ClusterService {
    pub(crate) fn new(ctx: ApiContext) -> ClusterService {
        ClusterService { ctx }
    }
}

fn unimplemented(what: &str) -> Status {
    Status::unimplemented(format!("sett: Cluster.{what} is not supported yet"))
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        _request: GrpcRequest<MemberAddRequest>,
    ) -> Result<GrpcResponse<MemberAddResponse>, Status> {
        Err(unimplemented("MemberAdd"))
    }

    async fn member_remove(
        &self,
        _request: GrpcRequest<MemberRemoveRequest>,
    ) -> Result<GrpcResponse<MemberRemoveResponse>, Status> {
        Err(unimplemented("MemberRemove"))
    }

    async fn member_update(
        &self,
        _request: GrpcRequest<MemberUpdateRequest>,
    ) -> Result<GrpcResponse<MemberUpdateResponse>, Status> {
        Err(unimplemented("MemberUpdate"))
    }

    async fn member_list(
        &self,
        request: GrpcRequest<MemberListRequest>,
    ) -> Result<GrpcResponse<MemberListResponse>, Status> {
        if request.into_inner().linearizable {
            self.ctx.read_barrier().await?;
        }
        let metrics = self.ctx.proposer().raft().metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: Vec<u64> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, node)| Member {
                id: *id,
                name: node.name.clone(),
                peer_ur_ls: node.peer_urls.clone(),
                client_ur_ls: node.client_urls.clone(),
                is_learner: !voters.contains(id),
            })
            .collect();
        let mut resp = MemberListResponse {
            members,
            ..MemberListResponse::default()
        };
        let rev = self.ctx.store().current_revision();
        self.ctx.fill_header(&mut resp, Some(rev));
        Ok(GrpcResponse::new(resp))
    }

    async fn member_promote(
        &self,
        _request: GrpcRequest<MemberPromoteRequest>,
    ) -> Result<GrpcResponse<MemberPromoteResponse>, Status> {
        Err(unimplemented("MemberPromote"))
    }
}
