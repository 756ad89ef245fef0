//! `etcdserverpb.Cluster`: the member list and membership changes, mapped
//! onto openraft's learners and joint-consensus membership changes.
//!
//! - **MemberAdd** adds the member as an openraft learner (id from its
//!   peer URLs: [`added_member_id`]) and, unless `is_learner`, makes it a
//!   voter at once, as etcd does (the quorum grows with it). The new
//!   member is then started with `--initial-cluster-state existing`; it
//!   publishes its name and client URLs once it runs.
//! - **MemberPromote** turns a learner into a voter once it has caught up
//!   to 90 % of the leader's log (etcd's rule).
//! - **MemberRemove** drops a voter or learner (the leader may remove
//!   itself; it steps down once the change commits).
//! - **MemberUpdate** changes a member's peer URLs.
//!
//! Membership changes are made by the leader; a follower forwards the call
//! to the leader's client URL.

use super::{is_forwarded, mark_forwarded, ApiContext};
use crate::config::{added_member_id, parse_url};
use crate::mvcc::EtcdError;
use crate::raft::{NodeId, SettNode};
use openraft::ChangeMembers;
use sett_proto::etcdserverpb::cluster_client::ClusterClient;
use sett_proto::etcdserverpb::cluster_server::Cluster;
use sett_proto::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use std::collections::{BTreeMap, BTreeSet};
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

/// A learner may be promoted once it has this share of the leader's log.
const PROMOTE_READY_FRACTION: f64 = 0.9;

/// The Cluster service of one member.
#[derive(Debug, Clone)]
pub(crate) struct ClusterService {
    ctx: ApiContext,
}

impl ClusterService {
    pub(crate) fn new(ctx: ApiContext) -> ClusterService {
        ClusterService { ctx }
    }

    /// The members as etcd lists them.
    fn members(&self) -> Vec<Member> {
        let metrics = self.ctx.proposer().raft().metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, node)| Member {
                id: *id,
                name: node.name.clone(),
                peer_ur_ls: node.peer_urls.clone(),
                client_ur_ls: node.client_urls.clone(),
                is_learner: !voters.contains(id),
            })
            .collect()
    }

    fn revision(&self) -> i64 {
        self.ctx.store().current_revision()
    }

    /// The leader's Cluster service, when this member does not lead; an
    /// error for a call that was already forwarded once.
    fn forward_target<T>(
        &self,
        request: &GrpcRequest<T>,
    ) -> Result<Option<ClusterClient<tonic::transport::Channel>>, Status> {
        if self.ctx.is_leader() {
            return Ok(None);
        }
        if is_forwarded(request) {
            return Err(EtcdError::LEADER_CHANGED.to_status());
        }
        Ok(Some(ClusterClient::new(self.ctx.leader_channel()?)))
    }

    /// Waits (bounded) for a call forwarded to the leader.
    async fn forwarded<T>(
        &self,
        call: impl std::future::Future<Output = Result<GrpcResponse<T>, Status>>,
    ) -> Result<GrpcResponse<T>, Status> {
        tokio::time::timeout(self.ctx.inner.request_timeout, call)
            .await
            .map_err(|_| EtcdError::REQUEST_TIMEOUT.to_status())?
    }

    /// Applies a membership change on the leader.
    async fn change(&self, change: ChangeMembers<NodeId, SettNode>) -> Result<(), Status> {
        let timeout = self.ctx.inner.request_timeout;
        let raft = self.ctx.proposer().raft();
        match tokio::time::timeout(timeout, raft.change_membership(change, false)).await {
            Err(_) => Err(EtcdError::REQUEST_TIMEOUT.to_status()),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(openraft::error::RaftError::APIError(
                openraft::error::ClientWriteError::ChangeMembershipError(e),
            ))) => {
                // Another change in flight, or a change openraft finds
                // unsafe now: etcd's answer for a change it cannot make
                // safely at the moment.
                tracing::info!("membership change refused: {e}");
                Err(EtcdError::UNHEALTHY_CLUSTER.to_status())
            }
            Ok(Err(e)) => Err(super::raft_status(&e)),
        }
    }

    fn node(&self, id: NodeId) -> Result<(SettNode, bool), Status> {
        let metrics = self.ctx.proposer().raft().metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let node = membership
            .get_node(&id)
            .cloned()
            .ok_or_else(|| EtcdError::MEMBER_NOT_FOUND.to_status())?;
        let voter = membership.voter_ids().any(|v| v == id);
        Ok((node, voter))
    }
}

/// Normalized peer URLs, or etcd's bad-URL error.
fn peer_urls(urls: &[String]) -> Result<Vec<String>, Status> {
    if urls.is_empty() {
        return Err(EtcdError::MEMBER_BAD_URLS.to_status());
    }
    urls.iter()
        .map(|u| parse_url("peer URL", u).map_err(|_| EtcdError::MEMBER_BAD_URLS.to_status()))
        .collect()
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        request: GrpcRequest<MemberAddRequest>,
    ) -> Result<GrpcResponse<MemberAddResponse>, Status> {
        let caller = self.ctx.caller(&request).await?;
        self.ctx.require_root(&caller).await?;
        if let Some(mut leader) = self.forward_target(&request)? {
            let mut fwd = GrpcRequest::new(request.into_inner());
            mark_forwarded(&mut fwd);
            caller.forward_token(&mut fwd);
            return self.forwarded(leader.member_add(fwd)).await;
        }
        let req = request.into_inner();
        let urls = peer_urls(&req.peer_ur_ls)?;
        let id = added_member_id(&urls, &self.ctx.inner.cluster_token);
        {
            let metrics = self.ctx.proposer().raft().metrics().borrow().clone();
            let membership = metrics.membership_config.membership();
            // The URLs first: a member with the same URLs also has the
            // same id, and etcd names the URLs.
            if membership
                .nodes()
                .any(|(_, n)| n.peer_urls.iter().any(|u| urls.contains(u)))
            {
                return Err(EtcdError::PEER_URL_EXISTS.to_status());
            }
            if membership.get_node(&id).is_some() {
                return Err(EtcdError::MEMBER_EXISTS.to_status());
            }
        }
        let node = SettNode {
            name: String::new(),
            peer_urls: urls.clone(),
            client_urls: Vec::new(),
        };
        self.change(ChangeMembers::AddNodes(BTreeMap::from([(id, node)])))
            .await?;
        if !req.is_learner {
            self.change(ChangeMembers::AddVoterIds(BTreeSet::from([id])))
                .await?;
        }
        let mut resp = MemberAddResponse {
            member: Some(Member {
                id,
                name: String::new(),
                peer_ur_ls: urls,
                client_ur_ls: Vec::new(),
                is_learner: req.is_learner,
            }),
            members: self.members(),
            ..MemberAddResponse::default()
        };
        self.ctx.fill_header(&mut resp, Some(self.revision()));
        Ok(GrpcResponse::new(resp))
    }

    async fn member_remove(
        &self,
        request: GrpcRequest<MemberRemoveRequest>,
    ) -> Result<GrpcResponse<MemberRemoveResponse>, Status> {
        let caller = self.ctx.caller(&request).await?;
        self.ctx.require_root(&caller).await?;
        if let Some(mut leader) = self.forward_target(&request)? {
            let mut fwd = GrpcRequest::new(request.into_inner());
            mark_forwarded(&mut fwd);
            caller.forward_token(&mut fwd);
            return self.forwarded(leader.member_remove(fwd)).await;
        }
        let id = request.into_inner().id;
        let (_, voter) = self.node(id)?;
        let ids = BTreeSet::from([id]);
        if voter {
            // Not retained as a learner: the node leaves the membership.
            self.change(ChangeMembers::RemoveVoters(ids)).await?;
        } else {
            self.change(ChangeMembers::RemoveNodes(ids)).await?;
        }
        let mut resp = MemberRemoveResponse {
            members: self.members(),
            ..MemberRemoveResponse::default()
        };
        self.ctx.fill_header(&mut resp, Some(self.revision()));
        Ok(GrpcResponse::new(resp))
    }

    async fn member_update(
        &self,
        request: GrpcRequest<MemberUpdateRequest>,
    ) -> Result<GrpcResponse<MemberUpdateResponse>, Status> {
        let caller = self.ctx.caller(&request).await?;
        self.ctx.require_root(&caller).await?;
        if let Some(mut leader) = self.forward_target(&request)? {
            let mut fwd = GrpcRequest::new(request.into_inner());
            mark_forwarded(&mut fwd);
            caller.forward_token(&mut fwd);
            return self.forwarded(leader.member_update(fwd)).await;
        }
        let req = request.into_inner();
        let urls = peer_urls(&req.peer_ur_ls)?;
        let (node, _) = self.node(req.id)?;
        {
            let metrics = self.ctx.proposer().raft().metrics().borrow().clone();
            let taken = metrics
                .membership_config
                .membership()
                .nodes()
                .any(|(id, n)| *id != req.id && n.peer_urls.iter().any(|u| urls.contains(u)));
            if taken {
                return Err(EtcdError::PEER_URL_EXISTS.to_status());
            }
        }
        let node = SettNode {
            peer_urls: urls,
            ..node
        };
        self.change(ChangeMembers::SetNodes(BTreeMap::from([(req.id, node)])))
            .await?;
        let mut resp = MemberUpdateResponse {
            members: self.members(),
            ..MemberUpdateResponse::default()
        };
        self.ctx.fill_header(&mut resp, Some(self.revision()));
        Ok(GrpcResponse::new(resp))
    }

    async fn member_list(
        &self,
        request: GrpcRequest<MemberListRequest>,
    ) -> Result<GrpcResponse<MemberListResponse>, Status> {
        self.ctx.caller(&request).await?;
        if request.into_inner().linearizable {
            self.ctx.read_barrier().await?;
        }
        let mut resp = MemberListResponse {
            members: self.members(),
            ..MemberListResponse::default()
        };
        self.ctx.fill_header(&mut resp, Some(self.revision()));
        Ok(GrpcResponse::new(resp))
    }

    async fn member_promote(
        &self,
        request: GrpcRequest<MemberPromoteRequest>,
    ) -> Result<GrpcResponse<MemberPromoteResponse>, Status> {
        let caller = self.ctx.caller(&request).await?;
        self.ctx.require_root(&caller).await?;
        if let Some(mut leader) = self.forward_target(&request)? {
            let mut fwd = GrpcRequest::new(request.into_inner());
            mark_forwarded(&mut fwd);
            caller.forward_token(&mut fwd);
            return self.forwarded(leader.member_promote(fwd)).await;
        }
        let id = request.into_inner().id;
        let (_, voter) = self.node(id)?;
        if voter {
            return Err(EtcdError::MEMBER_NOT_LEARNER.to_status());
        }
        let metrics = self.ctx.proposer().raft().metrics().borrow().clone();
        let leader_index = metrics.last_log_index.unwrap_or(0) as f64;
        let matched = metrics
            .replication
            .as_ref()
            .and_then(|r| r.get(&id).cloned().flatten())
            .map_or(0, |l| l.index) as f64;
        if matched < PROMOTE_READY_FRACTION * leader_index {
            return Err(EtcdError::LEARNER_NOT_READY.to_status());
        }
        self.change(ChangeMembers::AddVoterIds(BTreeSet::from([id])))
            .await?;
        let mut resp = MemberPromoteResponse {
            members: self.members(),
            ..MemberPromoteResponse::default()
        };
        self.ctx.fill_header(&mut resp, Some(self.revision()));
        Ok(GrpcResponse::new(resp))
    }
}
