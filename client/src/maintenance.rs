//! The Maintenance service: per-member status, hashes and
//! defragmentation, snapshots, alarms.
//!
//! Calls that name an endpoint go to that member only, in one attempt
//! bounded by the request timeout; the others are routed and retried like
//! any call.

use crate::auth::Chan;
use crate::client::{status_of, Client};
use crate::error::Error;
use crate::retry::Kind;
use sett_proto::etcdserverpb::alarm_request::AlarmAction;
use sett_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use sett_proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, AlarmType, DefragmentRequest, DefragmentResponse, HashKvRequest,
    HashKvResponse, SnapshotRequest, SnapshotResponse, StatusResponse,
};

/// Handle on the Maintenance service of a [`Client`]; cheap to clone.
#[derive(Debug, Clone)]
pub struct Maintenance {
    client: Client,
}

impl Maintenance {
    pub(crate) fn new(client: Client) -> Maintenance {
        Maintenance { client }
    }

    /// The channel of `endpoint` (`http://host:port` or `host:port`).
    fn channel(&self, endpoint: &str) -> Result<Chan, Error> {
        let url = crate::client::normalize(endpoint)?;
        Ok(self.client.chan(self.client.channel_for(&url)?))
    }

    /// Status of the member at `endpoint`.
    pub async fn status(&self, endpoint: &str) -> Result<StatusResponse, Error> {
        let channel = self.channel(endpoint)?;
        status_of(channel, self.client.options().request_timeout).await
    }

    /// Hash of the key-value history of the member at `endpoint` up to
    /// `revision` (0: the current one).
    pub async fn hash_kv(&self, endpoint: &str, revision: i64) -> Result<HashKvResponse, Error> {
        let mut client = MaintenanceClient::new(self.channel(endpoint)?);
        let bound = self.client.options().request_timeout;
        match tokio::time::timeout(bound, client.hash_kv(HashKvRequest { revision })).await {
            Ok(r) => Ok(r?.into_inner()),
            Err(_) => Err(Error::Timeout(bound)),
        }
    }

    /// Defragments the storage of the member at `endpoint`. Not bounded
    /// by the request timeout: defragmenting a large store takes long.
    pub async fn defragment(&self, endpoint: &str) -> Result<DefragmentResponse, Error> {
        let mut client = MaintenanceClient::new(self.channel(endpoint)?);
        Ok(client.defragment(DefragmentRequest {}).await?.into_inner())
    }

    /// Streams a snapshot of one member's store (the next member in turn,
    /// the stream opened with retries; a break mid-stream is returned as
    /// an error, the snapshot must then be taken again).
    pub async fn snapshot(&self) -> Result<SnapshotStream, Error> {
        let inner = self
            .client
            .call(Kind::Read, |ch| async move {
                MaintenanceClient::new(ch)
                    .snapshot(SnapshotRequest {})
                    .await
            })
            .await?;
        Ok(SnapshotStream { inner })
    }

    /// The raised alarms of every member.
    pub async fn alarms(&self) -> Result<AlarmResponse, Error> {
        let req = AlarmRequest {
            action: AlarmAction::Get as i32,
            member_id: 0,
            alarm: AlarmType::None as i32,
        };
        self.client
            .call(Kind::Read, |ch| async move {
                MaintenanceClient::new(ch).alarm(req).await
            })
            .await
    }

    /// Disarms `alarm` of member `member_id`.
    pub async fn alarm_disarm(
        &self,
        member_id: u64,
        alarm: AlarmType,
    ) -> Result<AlarmResponse, Error> {
        let req = AlarmRequest {
            action: AlarmAction::Deactivate as i32,
            member_id,
            alarm: alarm as i32,
        };
        self.client
            .call(Kind::Write, |ch| async move {
                MaintenanceClient::new(ch).alarm(req).await
            })
            .await
    }
}

/// The chunks of a snapshot, in order.
#[derive(Debug)]
pub struct SnapshotStream {
    inner: tonic::Streaming<SnapshotResponse>,
}

impl SnapshotStream {
    /// The next chunk (`blob`, and `remaining_bytes` after it); `Ok(None)`
    /// after the last.
    pub async fn next(&mut self) -> Result<Option<SnapshotResponse>, Error> {
        Ok(self.inner.message().await?)
    }
}
