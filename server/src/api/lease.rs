//! `etcdserverpb.Lease`: grants and revokes go through Raft; keep-alives
//! and expiry are the leader's business, as in etcd.
//!
//! - **Grant**: the member picks an ID when the client asks for 0 (16 bits
//!   of its member id, then a clock-seeded counter), raises the TTL to the
//!   minimum (`ceil(1.5 × election timeout)`, so a lease outlives a leader
//!   election) and proposes the grant.
//! - **Expiry** ([`LeaseClock`]): only the leader keeps deadlines, in
//!   memory. When a member becomes leader (a new term), every lease gets a
//!   fresh full TTL; a lease the leader has not seen yet gets its deadline
//!   when first seen. A background task proposes a revoke for each lease
//!   past its deadline; the revoke deletes the attached keys (one delete
//!   event each).
//! - **KeepAlive / TimeToLive**: answered by the leader; a follower
//!   forwards each to the leader's client URL (from the membership) and
//!   relays the answer. As in etcd, a keep-alive of an unknown lease
//!   answers TTL 0 and a time-to-live TTL -1. A keep-alive stream ends
//!   with `etcdserver: server stopped` when the member stops.
//! - **Leases**: the lease list of this member's store.

use super::{is_forwarded, ApiContext, FORWARDED};
use crate::mvcc::EtcdError;
use crate::raft::Request;
use parking_lot::Mutex;
use prost::Message;
use sett_proto::etcdserverpb::lease_client::LeaseClient;
use sett_proto::etcdserverpb::lease_server::Lease;
use sett_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status, Streaming};

/// The largest TTL etcd grants, in seconds.
const MAX_LEASE_TTL_SECS: i64 = 9_000_000_000;
/// How often the leader looks for expired leases.
const EXPIRY_CHECK: Duration = Duration::from_millis(250);
/// Keep-alive responses queued towards one client.
const OUT_QUEUE: usize = 64;

/// The leader's lease deadlines; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct LeaseClock {
    state: Mutex<ClockState>,
}

#[derive(Debug, Default)]
struct ClockState {
    /// The term in which this member last led; deadlines are valid only
    /// for it.
    term: Option<u64>,
    deadlines: HashMap<i64, Instant>,
}

impl LeaseClock {
    /// Brings the deadlines in line with `leases` (id, granted TTL) as the
    /// leader of `term`, or drops them when `term` is `None` (not leader).
    /// Returns the leases past their deadline.
    fn sync(&self, term: Option<u64>, leases: &[(i64, i64)], now: Instant) -> Vec<i64> {
        let mut st = self.state.lock();
        if st.term != term {
            // A new term (or no longer leading): every deadline restarts.
            st.deadlines.clear();
            st.term = term;
        }
        if term.is_none() {
            return Vec::new();
        }
        let mut live = HashMap::with_capacity(leases.len());
        for &(id, ttl) in leases {
            let deadline = st
                .deadlines
                .get(&id)
                .copied()
                .unwrap_or_else(|| now + ttl_duration(ttl));
            live.insert(id, deadline);
        }
        st.deadlines = live;
        let mut expired: Vec<i64> = st
            .deadlines
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(id, _)| *id)
            .collect();
        expired.sort_unstable();
        expired
    }

    /// Restarts lease `id`'s full TTL.
    fn renew(&self, id: i64, ttl: i64, now: Instant) {
        self.state
            .lock()
            .deadlines
            .insert(id, now + ttl_duration(ttl));
    }

    /// Restarts lease `id`'s full TTL unless it is already past its
    /// deadline (its revoke is on its way: a keep-alive must not revive
    /// it, as etcd's lessor refuses it too). Whether it was renewed.
    fn renew_if_live(&self, id: i64, ttl: i64, now: Instant) -> bool {
        let mut st = self.state.lock();
        if st.deadlines.get(&id).is_some_and(|d| *d <= now) {
            return false;
        }
        st.deadlines.insert(id, now + ttl_duration(ttl));
        true
    }

    /// Time left on lease `id`, if the leader tracks it.
    fn remaining(&self, id: i64, now: Instant) -> Option<Duration> {
        self.state
            .lock()
            .deadlines
            .get(&id)
            .map(|d| d.saturating_duration_since(now))
    }
}

fn ttl_duration(ttl: i64) -> Duration {
    Duration::from_secs(u64::try_from(ttl).unwrap_or(0))
}

/// The Lease service of one member.
#[derive(Debug, Clone)]
pub(crate) struct LeaseService {
    ctx: ApiContext,
    min_ttl: i64,
    next_id: std::sync::Arc<AtomicI64>,
}

impl LeaseService {
    /// The service; starts the expiry task (it ends when the Raft group
    /// stops).
    pub(crate) fn start(ctx: ApiContext, election_timeout: Duration) -> LeaseService {
        let min_ttl = i64::try_from((election_timeout.as_millis() * 3).div_ceil(2000))
            .unwrap_or(1)
            .max(1);
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let prefix = ((ctx.proposer().member_id() & 0xffff) as i64) << 47;
        let seed = prefix | ((millis << 8) & ((1 << 47) - 1));
        tokio::spawn(expire(ctx.clone()));
        LeaseService {
            ctx,
            min_ttl,
            next_id: std::sync::Arc::new(AtomicI64::new(seed.max(1))),
        }
    }

    /// A client of the leader's Lease service, for forwarding.
    fn leader_client(&self) -> Result<LeaseClient<Channel>, Status> {
        Ok(LeaseClient::new(self.ctx.leader_channel()?))
    }

    /// Renews lease `id` on the leader; the TTL granted, 0 for an unknown
    /// lease (etcd's answer).
    async fn keep_alive_once(
        &self,
        id: i64,
        forwarded: bool,
        caller: &super::auth::Caller,
    ) -> Result<i64, Status> {
        if self.ctx.is_leader() {
            let store = self.ctx.store();
            let lease = store.lease(id).map_err(|e| e.to_status())?;
            return Ok(match lease {
                Some(l)
                    if self
                        .ctx
                        .inner
                        .leases
                        .renew_if_live(id, l.ttl_secs, Instant::now()) =>
                {
                    l.ttl_secs
                }
                // Unknown, or expired and being revoked: etcd answers 0.
                _ => 0,
            });
        }
        if forwarded {
            return Err(EtcdError::LEADER_CHANGED.to_status());
        }
        let mut client = self.leader_client()?;
        let mut req = GrpcRequest::new(tokio_stream::once(LeaseKeepAliveRequest { id }));
        req.metadata_mut()
            .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
        caller.forward_token(&mut req);
        let timeout = self.ctx.inner.request_timeout;
        let call = async {
            let mut responses = client.lease_keep_alive(req).await?.into_inner();
            match responses.next().await {
                Some(r) => r.map(|r| r.ttl),
                None => Err(EtcdError::LEADER_CHANGED.to_status()),
            }
        };
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| EtcdError::REQUEST_TIMEOUT.to_status())?
    }
}

/// The leader's expiry loop: revokes leases past their deadline.
async fn expire(ctx: ApiContext) {
    let mut metrics = ctx.proposer().raft().metrics();
    loop {
        tokio::time::sleep(EXPIRY_CHECK).await;
        if metrics.has_changed().is_err() {
            return; // the Raft group stopped
        }
        let m = metrics.borrow_and_update().clone();
        let me = ctx.proposer().member_id();
        let term = (m.current_leader == Some(me)).then_some(m.current_term);
        let leases = if term.is_some() {
            match ctx.store().leases() {
                Ok(l) => l.into_iter().map(|l| (l.id, l.ttl_secs)).collect(),
                Err(e) => {
                    tracing::warn!("lease expiry: {e}");
                    continue;
                }
            }
        } else {
            Vec::new()
        };
        for id in ctx.inner.leases.sync(term, &leases, Instant::now()) {
            tracing::debug!(id, "lease expired");
            let req = LeaseRevokeRequest { id }.encode_to_vec();
            if let Err(e) = ctx
                .propose::<LeaseRevokeResponse>(Request::LeaseRevoke(req))
                .await
            {
                // Already revoked (NotFound) or no quorum: the next round
                // sees the store as it is.
                tracing::debug!(id, "revoking an expired lease: {e}");
            }
        }
    }
}

type KeepAliveStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: GrpcRequest<LeaseGrantRequest>,
    ) -> Result<GrpcResponse<LeaseGrantResponse>, Status> {
        self.ctx.caller(&request).await?;
        let mut req = request.into_inner();
        if req.ttl > MAX_LEASE_TTL_SECS {
            return Err(EtcdError::LEASE_TTL_TOO_LARGE.to_status());
        }
        req.ttl = req.ttl.max(self.min_ttl);
        self.ctx.check_quota().await?;
        if req.id == 0 {
            req.id = self.next_id.fetch_add(1, Ordering::Relaxed);
        }
        let resp: LeaseGrantResponse = self
            .ctx
            .propose(Request::LeaseGrant(req.encode_to_vec()))
            .await?;
        self.ctx.proposer().metrics().lease_granted();
        if self.ctx.is_leader() {
            self.ctx
                .inner
                .leases
                .renew(resp.id, resp.ttl, Instant::now());
        }
        Ok(GrpcResponse::new(resp))
    }

    async fn lease_revoke(
        &self,
        request: GrpcRequest<LeaseRevokeRequest>,
    ) -> Result<GrpcResponse<LeaseRevokeResponse>, Status> {
        let caller = self.ctx.caller(&request).await?;
        let req = request.into_inner();
        let cmd = self
            .ctx
            .as_user(&caller, Request::LeaseRevoke(req.encode_to_vec()))
            .await?;
        self.ctx.propose(cmd).await.map(GrpcResponse::new)
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        request: GrpcRequest<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<GrpcResponse<KeepAliveStream>, Status> {
        let forwarded = is_forwarded(&request);
        let caller = self.ctx.caller(&request).await?;
        let mut incoming = request.into_inner();
        let (tx, rx) = mpsc::channel(OUT_QUEUE);
        let svc = self.clone();
        let stopped = self.ctx.stopped();
        tokio::spawn(async move {
            tokio::pin!(stopped);
            loop {
                let req = tokio::select! {
                    msg = incoming.next() => match msg {
                        Some(Ok(req)) => req,
                        // A request refused by the gRPC layer ends the
                        // stream with grpc-go's status, as in etcd.
                        Some(Err(e)) => {
                            let _ = tx.send(Err(super::grpc_go::stream_error(e))).await;
                            return;
                        }
                        // The client closed its side.
                        None => return,
                    },
                    // The member stops (the response stream ends with
                    // `server stopped`), or the client went away.
                    () = &mut stopped => return,
                    () = tx.closed() => return,
                };
                let reply = match svc.keep_alive_once(req.id, forwarded, &caller).await {
                    Ok(ttl) => {
                        let mut resp = LeaseKeepAliveResponse {
                            id: req.id,
                            ttl,
                            ..LeaseKeepAliveResponse::default()
                        };
                        let rev = svc.ctx.store().current_revision();
                        svc.ctx.fill_header(&mut resp, Some(rev));
                        Ok(resp)
                    }
                    Err(s) => Err(s),
                };
                let failed = reply.is_err();
                if tx.send(reply).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(GrpcResponse::new(Box::pin(self.ctx.until_stopped(rx))))
    }

    async fn lease_time_to_live(
        &self,
        request: GrpcRequest<LeaseTimeToLiveRequest>,
    ) -> Result<GrpcResponse<LeaseTimeToLiveResponse>, Status> {
        let forwarded = is_forwarded(&request);
        let caller = self.ctx.caller(&request).await?;
        let req = request.into_inner();
        if !self.ctx.is_leader() {
            if forwarded {
                return Err(EtcdError::LEADER_CHANGED.to_status());
            }
            let mut client = self.leader_client()?;
            let mut fwd = GrpcRequest::new(req);
            fwd.metadata_mut()
                .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
            caller.forward_token(&mut fwd);
            let timeout = self.ctx.inner.request_timeout;
            return tokio::time::timeout(timeout, client.lease_time_to_live(fwd))
                .await
                .map_err(|_| EtcdError::REQUEST_TIMEOUT.to_status())?;
        }
        let store = self.ctx.store();
        let Some(lease) = store.lease(req.id).map_err(|e| e.to_status())? else {
            // etcd answers an unknown (or expired) lease with TTL -1.
            let mut resp = LeaseTimeToLiveResponse {
                id: req.id,
                ttl: -1,
                ..LeaseTimeToLiveResponse::default()
            };
            self.ctx
                .fill_header(&mut resp, Some(store.current_revision()));
            return Ok(GrpcResponse::new(resp));
        };
        let remaining = self
            .ctx
            .inner
            .leases
            .remaining(req.id, Instant::now())
            .map_or(lease.ttl_secs, |d| d.as_secs() as i64);
        let keys = if req.keys {
            store
                .lease_keys(req.id)
                .map_err(|e| e.to_status())?
                .into_iter()
                .map(Into::into)
                .collect()
        } else {
            Vec::new()
        };
        let mut resp = LeaseTimeToLiveResponse {
            id: req.id,
            ttl: remaining,
            granted_ttl: lease.ttl_secs,
            keys,
            ..LeaseTimeToLiveResponse::default()
        };
        self.ctx
            .fill_header(&mut resp, Some(store.current_revision()));
        Ok(GrpcResponse::new(resp))
    }

    async fn lease_leases(
        &self,
        request: GrpcRequest<LeaseLeasesRequest>,
    ) -> Result<GrpcResponse<LeaseLeasesResponse>, Status> {
        self.ctx.caller(&request).await?;
        let store = self.ctx.store();
        let leases = store
            .leases()
            .map_err(|e| e.to_status())?
            .into_iter()
            .map(|l| LeaseStatus { id: l.id })
            .collect();
        let mut resp = LeaseLeasesResponse {
            leases,
            ..LeaseLeasesResponse::default()
        };
        self.ctx
            .fill_header(&mut resp, Some(store.current_revision()));
        Ok(GrpcResponse::new(resp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_expires_only_as_leader_and_restarts_on_a_new_term() {
        let clock = LeaseClock::default();
        let t0 = Instant::now();
        let leases = [(1, 5), (2, 10)];
        assert!(clock.sync(Some(1), &leases, t0).is_empty());
        assert_eq!(
            clock.sync(Some(1), &leases, t0 + Duration::from_secs(6)),
            [1]
        );
        clock.renew(1, 5, t0 + Duration::from_secs(6));
        assert!(clock
            .sync(Some(1), &leases, t0 + Duration::from_secs(7))
            .is_empty());
        // Not leading: nothing expires; leading again restarts every TTL.
        assert!(clock
            .sync(None, &leases, t0 + Duration::from_secs(60))
            .is_empty());
        assert!(clock
            .sync(Some(2), &leases, t0 + Duration::from_secs(61))
            .is_empty());
        assert_eq!(
            clock.sync(Some(2), &leases, t0 + Duration::from_secs(71)),
            [1, 2]
        );
        // A revoked lease is forgotten.
        assert!(clock
            .sync(Some(2), &[], t0 + Duration::from_secs(72))
            .is_empty());
        assert_eq!(clock.remaining(1, t0), None);
    }

    #[test]
    fn an_expired_lease_is_not_revived() {
        let clock = LeaseClock::default();
        let t0 = Instant::now();
        assert!(clock.sync(Some(1), &[(1, 5)], t0).is_empty());
        assert!(clock.renew_if_live(1, 5, t0 + Duration::from_secs(4)));
        assert!(!clock.renew_if_live(1, 5, t0 + Duration::from_secs(10)));
        assert_eq!(
            clock.sync(Some(1), &[(1, 5)], t0 + Duration::from_secs(10)),
            [1]
        );
    }
}
