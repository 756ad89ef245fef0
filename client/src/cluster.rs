//! The Cluster service: membership listing and changes.

use crate::client::Client;
use crate::error::Error;
use crate::retry::Kind;
use sett_proto::etcdserverpb::cluster_client::ClusterClient;
use sett_proto::etcdserverpb::{
    MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};

/// Handle on the Cluster service of a [`Client`]; cheap to clone.
/// Membership changes are retried like mutations.
#[derive(Debug, Clone)]
pub struct Cluster {
    client: Client,
}

impl Cluster {
    pub(crate) fn new(client: Client) -> Cluster {
        Cluster { client }
    }

    /// Every member (a linearizable listing).
    pub async fn member_list(&self) -> Result<MemberListResponse, Error> {
        let req = MemberListRequest { linearizable: true };
        self.client
            .call(Kind::Read, |ch| async move {
                ClusterClient::new(ch).member_list(req).await
            })
            .await
    }

    /// Adds a member with `peer_urls`, as a learner if `is_learner`.
    pub async fn member_add(
        &self,
        peer_urls: impl IntoIterator<Item = impl Into<String>>,
        is_learner: bool,
    ) -> Result<MemberAddResponse, Error> {
        let req = MemberAddRequest {
            peer_ur_ls: peer_urls.into_iter().map(Into::into).collect(),
            is_learner,
        };
        self.client
            .call(Kind::Write, |ch| {
                let req = req.clone();
                async move { ClusterClient::new(ch).member_add(req).await }
            })
            .await
    }

    /// Removes member `id`.
    pub async fn member_remove(&self, id: u64) -> Result<MemberRemoveResponse, Error> {
        let req = MemberRemoveRequest { id };
        self.client
            .call(Kind::Write, |ch| async move {
                ClusterClient::new(ch).member_remove(req).await
            })
            .await
    }

    /// Replaces the peer URLs of member `id`.
    pub async fn member_update(
        &self,
        id: u64,
        peer_urls: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<MemberUpdateResponse, Error> {
        let req = MemberUpdateRequest {
            id,
            peer_ur_ls: peer_urls.into_iter().map(Into::into).collect(),
        };
        self.client
            .call(Kind::Write, |ch| {
                let req = req.clone();
                async move { ClusterClient::new(ch).member_update(req).await }
            })
            .await
    }

    /// Promotes learner `id` to a voting member.
    pub async fn member_promote(&self, id: u64) -> Result<MemberPromoteResponse, Error> {
        let req = MemberPromoteRequest { id };
        self.client
            .call(Kind::Write, |ch| async move {
                ClusterClient::new(ch).member_promote(req).await
            })
            .await
    }
}
