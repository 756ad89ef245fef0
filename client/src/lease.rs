//! The Lease service, and [`LeaseKeeper`]: a background task that keeps a
//! lease alive.
//!
//! The keeper renews the lease over one `LeaseKeepAlive` stream every
//! third of its TTL (but not more often than every 500 ms), opens a
//! new stream (to the leader when known) after a failure, and publishes
//! the TTL of each renewal. It stops when dropped, when
//! [`LeaseKeeper::stop`] is called, or when the server reports the lease
//! gone (a TTL of zero or less); it also gives up once the lease must
//! have expired and the retry budget has passed without a renewal.

use crate::auth::Chan;
use crate::client::Client;
use crate::error::Error;
use crate::retry::{Backoff, Kind};
use sett_proto::etcdserverpb::lease_client::LeaseClient;
use sett_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

/// Shortest pause between two renewals.
const MIN_RENEW_INTERVAL: Duration = Duration::from_millis(500);

/// Handle on the Lease service of a [`Client`]; cheap to clone.
#[derive(Debug, Clone)]
pub struct Lease {
    client: Client,
}

/// One renewal over a fresh stream on `channel`.
async fn keep_alive_on(
    channel: Chan,
    id: i64,
) -> Result<tonic::Response<LeaseKeepAliveResponse>, tonic::Status> {
    let (tx, rx) = mpsc::channel(1);
    tx.send(LeaseKeepAliveRequest { id })
        .await
        .map_err(|_| tonic::Status::internal("keep-alive queue closed"))?;
    let mut stream = LeaseClient::new(channel)
        .lease_keep_alive(ReceiverStream::new(rx))
        .await?
        .into_inner();
    match stream.message().await? {
        Some(resp) => Ok(tonic::Response::new(resp)),
        None => Err(tonic::Status::unavailable(
            "keep-alive stream closed without an answer",
        )),
    }
}

/// Pause between renewals of a lease with `ttl` seconds left.
fn renew_interval(ttl: i64) -> Duration {
    let third = Duration::from_secs(u64::try_from(ttl.max(0)).unwrap_or(0)) / 3;
    third.max(MIN_RENEW_INTERVAL)
}

impl Lease {
    pub(crate) fn new(client: Client) -> Lease {
        Lease { client }
    }

    /// Grants a lease of `ttl` seconds; `id` 0 lets the server choose the
    /// id.
    pub async fn grant(&self, ttl: i64, id: i64) -> Result<LeaseGrantResponse, Error> {
        let req = LeaseGrantRequest { ttl, id };
        self.client
            .call(Kind::Write, |ch| async move {
                LeaseClient::new(ch).lease_grant(req).await
            })
            .await
    }

    /// Revokes lease `id`, deleting its keys.
    pub async fn revoke(&self, id: i64) -> Result<LeaseRevokeResponse, Error> {
        let req = LeaseRevokeRequest { id };
        self.client
            .call(Kind::Write, |ch| async move {
                LeaseClient::new(ch).lease_revoke(req).await
            })
            .await
    }

    /// The remaining TTL of lease `id` (-1 when it is gone), with its keys
    /// if `keys`.
    pub async fn time_to_live(
        &self,
        id: i64,
        keys: bool,
    ) -> Result<LeaseTimeToLiveResponse, Error> {
        let req = LeaseTimeToLiveRequest { id, keys };
        self.client
            .call(Kind::Read, |ch| async move {
                LeaseClient::new(ch).lease_time_to_live(req).await
            })
            .await
    }

    /// Every live lease.
    pub async fn leases(&self) -> Result<LeaseLeasesResponse, Error> {
        self.client
            .call(Kind::Read, |ch| async move {
                LeaseClient::new(ch)
                    .lease_leases(LeaseLeasesRequest {})
                    .await
            })
            .await
    }

    /// Renews lease `id` once; a TTL of zero or less in the answer means
    /// the lease is gone. (Renewing twice is harmless, so this is retried
    /// like a read.)
    pub async fn keep_alive_once(&self, id: i64) -> Result<LeaseKeepAliveResponse, Error> {
        self.client
            .call(Kind::Read, |ch| keep_alive_on(ch, id))
            .await
    }

    /// Renews lease `id` once and starts a [`LeaseKeeper`] that keeps it
    /// alive; fails with [`Error::LeaseExpired`] if the lease is gone.
    pub async fn keep_alive(&self, id: i64) -> Result<LeaseKeeper, Error> {
        let first = self.keep_alive_once(id).await?;
        if first.ttl <= 0 {
            return Err(Error::LeaseExpired { id });
        }
        let (tx, rx) = watch::channel(first.ttl);
        let task = tokio::spawn(keep(self.client.clone(), id, first.ttl, tx));
        Ok(LeaseKeeper { id, ttl: rx, task })
    }
}

/// Keeps a lease alive in the background until dropped; see the module
/// docs.
#[derive(Debug)]
pub struct LeaseKeeper {
    id: i64,
    ttl: watch::Receiver<i64>,
    task: tokio::task::JoinHandle<()>,
}

impl LeaseKeeper {
    /// The lease id.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// The TTL in seconds the last renewal reported; zero or less once the
    /// lease is gone (or the keeper gave up).
    pub fn ttl(&self) -> i64 {
        *self.ttl.borrow()
    }

    /// Whether the keeper still runs and the lease was live at the last
    /// renewal.
    pub fn is_alive(&self) -> bool {
        self.ttl() > 0 && !self.task.is_finished()
    }

    /// Waits for the next renewal and returns its TTL; `None` once the
    /// keeper has stopped.
    pub async fn changed(&mut self) -> Option<i64> {
        match self.ttl.changed().await {
            Ok(()) => Some(*self.ttl.borrow_and_update()),
            Err(_) => None,
        }
    }

    /// Stops renewing (as dropping does); the lease then expires after its
    /// TTL unless renewed otherwise.
    pub fn stop(self) {}
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The keeper's task: renews `id` every third of its TTL until the lease
/// is gone, the receiver is dropped, or renewals failed past the lease's
/// expiry plus the retry budget.
async fn keep(client: Client, id: i64, mut ttl: i64, tx: watch::Sender<i64>) {
    let opts = client.options().clone();
    let mut backoff = Backoff::new(&opts.retry);
    let mut expires_at = Instant::now() + Duration::from_secs(ttl.max(0) as u64);
    tokio::time::sleep(renew_interval(ttl)).await;
    loop {
        let target = client.target(Kind::Write);
        let (req_tx, req_rx) = mpsc::channel(1);
        // Queued before the call: some servers answer the call's headers
        // only with the first response.
        if req_tx.send(LeaseKeepAliveRequest { id }).await.is_err() {
            return;
        }
        let opened = tokio::time::timeout(
            opts.request_timeout,
            LeaseClient::new(client.chan(target.channel.clone()))
                .lease_keep_alive(ReceiverStream::new(req_rx)),
        )
        .await;
        if let Ok(Ok(resp)) = opened {
            let mut responses = resp.into_inner();
            loop {
                let answer = tokio::time::timeout(opts.request_timeout, responses.message()).await;
                let Ok(Ok(Some(r))) = answer else { break };
                if r.ttl <= 0 {
                    tx.send_replace(0);
                    return;
                }
                ttl = r.ttl;
                expires_at = Instant::now() + Duration::from_secs(ttl as u64);
                tx.send_replace(ttl);
                backoff.reset(opts.retry.initial_backoff);
                tokio::time::sleep(renew_interval(ttl)).await;
                if tx.is_closed() || req_tx.send(LeaseKeepAliveRequest { id }).await.is_err() {
                    break;
                }
            }
        }
        if tx.is_closed() {
            return;
        }
        client.note_failure(&target);
        if Instant::now() > expires_at + opts.retry.total_timeout {
            // Unrenewed past its expiry and the retry budget: gone.
            tx.send_replace(0);
            return;
        }
        tokio::time::sleep(backoff.next_pause()).await;
        client.rediscover(target.epoch).await;
    }
}
