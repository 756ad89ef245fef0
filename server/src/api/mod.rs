//! The client-facing etcd v3 gRPC services of a member, served on
//! `--listen-client-urls` over the [`MvccApplier`] state machine.
//!
//! - [`kv`]: `etcdserverpb.KV`. Writes (Put, DeleteRange, Txn, Compact)
//!   are checked as etcd's gRPC layer checks them, then proposed through
//!   Raft by the [`Proposer`] (forwarded to the leader from a follower);
//!   the applied entry's answer is the response. Ranges are served from
//!   this member's store: linearizable by default (ReadIndex through the
//!   leader, then wait until applied here), serializable on request.
//! - [`watch`]: `etcdserverpb.Watch`, served from this member's store and
//!   its event log.
//! - [`lease`]: `etcdserverpb.Lease`; the leader keeps deadlines and
//!   revokes expired leases through Raft.
//! - [`maintenance`]: `etcdserverpb.Maintenance` (`Status` for
//!   `etcdctl endpoint status`).
//! - [`cluster`]: `etcdserverpb.Cluster` (`MemberList`).
//! - [`native`]: `sett.v1.Sett`, interactive serializable transactions.
//! - [`auth`]: `etcdserverpb.Auth`, and the token and permission checks
//!   every handler starts with while authentication is enabled.
//!
//! Client connections pass through [`authority::AuthorityFix`], which
//! accepts the URL-shaped HTTP/2 `:authority` etcdctl 3.4 sends; every
//! service is wrapped in [`grpc_go::GrpcGoErrors`], which answers requests
//! refused before their handler (too large, undecodable) as grpc-go does.
//!
//! Every response header carries the cluster id, this member's id, the
//! Raft term it knows and the store revision, as etcd's do; errors are
//! etcd's gRPC codes and message strings ([`EtcdError`]).

mod auth;
pub mod authority;
mod cluster;
mod grpc_go;
mod kv;
mod lease;
mod maintenance;
mod native;
mod watch;

use crate::config::MemberConfig;
use crate::mvcc::{EtcdError, MvccError, MvccStore, DEFAULT_MAX_TXN_OPS};
use crate::node::{NodeApplier, Proposer, ReadError, WriteError};
use crate::raft::{MvccApplier, Request, Response, StoreError};
use prost::Message;
use sett_proto::etcdserverpb::ResponseHeader;
use std::sync::Arc;
use std::time::Duration;
use tonic::Status;

/// Room for gRPC framing above `--max-request-bytes` in a received
/// message, as etcd allows.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;
/// Room given to the proposer's own deadline before the edge gives up.
const TIMEOUT_SLACK: Duration = Duration::from_secs(1);
/// The part of the request timeout that does not scale with the election
/// timeout (etcd: 5 s + 2 × election timeout).
const REQUEST_TIMEOUT_BASE: Duration = Duration::from_secs(5);

/// What every client service of a member shares; cheap to clone.
#[derive(Clone)]
pub(crate) struct ApiContext {
    inner: Arc<Inner>,
}

struct Inner {
    proposer: Proposer,
    applier: Arc<MvccApplier>,
    cluster_id: u64,
    cluster_token: String,
    quota_backend_bytes: u64,
    max_request_bytes: usize,
    max_txn_ops: usize,
    request_timeout: Duration,
    /// Lease deadlines (meaningful on the leader).
    leases: lease::LeaseClock,
    /// The member's data directory (for temporary snapshot files).
    data_dir: std::path::PathBuf,
    /// Whether this member, while it leads, last confirmed its leadership
    /// with a quorum (see [`ApiContext::known_leader`]).
    quorum_ok: std::sync::atomic::AtomicBool,
    /// Channels to other members' client URLs, for calls only the leader
    /// answers (lease keep-alives, membership changes).
    channels: parking_lot::Mutex<std::collections::HashMap<String, tonic::transport::Channel>>,
    /// How `https://` client URLs of other members are dialed; see
    /// [`crate::tls::client_url_dial_config`].
    client_tls: Option<tonic::transport::ClientTlsConfig>,
    /// Turns true when the member stops: streaming calls end then.
    stopped: tokio::sync::watch::Receiver<bool>,
    /// `--auth-token-ttl`.
    auth_token_ttl_secs: u64,
    /// `--bcrypt-cost`.
    bcrypt_cost: u32,
}

/// Metadata marking a call one member forwarded to the leader (the leader
/// never forwards it again).
const FORWARDED: &str = "sett-forwarded";

/// Whether another member forwarded this call.
fn is_forwarded<T>(req: &tonic::Request<T>) -> bool {
    req.metadata().get(FORWARDED).is_some()
}

/// Marks `req` as forwarded.
fn mark_forwarded<T>(req: &mut tonic::Request<T>) {
    req.metadata_mut()
        .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
}

impl std::fmt::Debug for ApiContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiContext")
            .field("member_id", &self.inner.proposer.member_id())
            .finish_non_exhaustive()
    }
}

/// Response messages that carry an etcd `ResponseHeader`.
pub(crate) trait HasHeader {
    /// The header field.
    fn header_mut(&mut self) -> &mut Option<ResponseHeader>;
}

macro_rules! has_header {
    ($($t:ty),* $(,)?) => {
        $(impl HasHeader for $t {
            fn header_mut(&mut self) -> &mut Option<ResponseHeader> {
                &mut self.header
            }
        })*
    };
}

use sett_proto::etcdserverpb as pb;
has_header!(
    pb::RangeResponse,
    pb::PutResponse,
    pb::DeleteRangeResponse,
    pb::TxnResponse,
    pb::CompactionResponse,
    pb::StatusResponse,
    pb::MemberListResponse,
    pb::MemberAddResponse,
    pb::MemberRemoveResponse,
    pb::MemberUpdateResponse,
    pb::MemberPromoteResponse,
    pb::AlarmResponse,
    pb::HashKvResponse,
    pb::WatchResponse,
    pb::SnapshotResponse,
    pb::HashResponse,
    pb::DefragmentResponse,
    pb::LeaseGrantResponse,
    pb::LeaseRevokeResponse,
    pb::LeaseKeepAliveResponse,
    pb::LeaseTimeToLiveResponse,
    pb::LeaseLeasesResponse,
);

impl ApiContext {
    fn new(
        proposer: Proposer,
        applier: Arc<MvccApplier>,
        cfg: &MemberConfig,
        stopped: tokio::sync::watch::Receiver<bool>,
    ) -> ApiContext {
        ApiContext {
            inner: Arc::new(Inner {
                proposer,
                applier,
                cluster_id: cfg.cluster_id,
                cluster_token: cfg.cluster_token.clone(),
                quota_backend_bytes: cfg.quota_backend_bytes,
                max_request_bytes: usize::try_from(cfg.max_request_bytes).unwrap_or(usize::MAX),
                max_txn_ops: DEFAULT_MAX_TXN_OPS,
                request_timeout: REQUEST_TIMEOUT_BASE
                    + 2 * Duration::from_millis(cfg.election_timeout_ms),
                leases: lease::LeaseClock::default(),
                data_dir: cfg.data_dir.clone(),
                channels: parking_lot::Mutex::default(),
                client_tls: crate::tls::client_url_dial_config(cfg).unwrap_or_else(|e| {
                    // The files were checked with the configuration.
                    tracing::warn!("TLS for dialing client URLs: {e}");
                    None
                }),
                quorum_ok: std::sync::atomic::AtomicBool::new(true),
                stopped,
                auth_token_ttl_secs: cfg.auth_token_ttl_secs,
                bcrypt_cost: cfg.bcrypt_cost,
            }),
        }
    }

    /// The live store (replaced when a snapshot is installed).
    fn store(&self) -> Arc<MvccStore> {
        self.inner.applier.store()
    }

    fn proposer(&self) -> &Proposer {
        &self.inner.proposer
    }

    /// Resolves once the member stops (or has gone).
    fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut stopped = self.inner.stopped.clone();
        async move {
            // An error means the member is gone: stopped as well.
            let _ = stopped.wait_for(|s| *s).await;
        }
    }

    /// The response stream of a streaming call fed by `rx`: ends with
    /// etcd's `etcdserver: server stopped` (Unavailable) as soon as the
    /// member stops, so that a graceful shutdown never waits for a
    /// stream a client keeps open (the producer notices that `rx` is
    /// gone and ends too).
    fn until_stopped<T>(
        &self,
        rx: tokio::sync::mpsc::Receiver<Result<T, Status>>,
    ) -> UntilStopped<T> {
        UntilStopped {
            rx: Some(rx),
            stop: Box::pin(self.stopped()),
        }
    }

    /// Fills the cluster, member and term fields of `resp`'s header,
    /// keeping the revision the store put there (or the current one).
    fn fill_header<T: HasHeader>(&self, resp: &mut T, revision: Option<i64>) {
        let raft_term = self.inner.proposer.raft().metrics().borrow().current_term;
        let h = resp
            .header_mut()
            .get_or_insert_with(ResponseHeader::default);
        h.cluster_id = self.inner.cluster_id;
        h.member_id = self.inner.proposer.member_id();
        h.raft_term = raft_term;
        if let Some(rev) = revision {
            h.revision = rev;
        }
    }

    /// Refuses an encoded request above `--max-request-bytes`.
    fn check_size(&self, encoded_len: usize) -> Result<(), Status> {
        if encoded_len > self.inner.max_request_bytes {
            return Err(EtcdError::REQUEST_TOO_LARGE.to_status());
        }
        Ok(())
    }

    /// Proposes `request` through Raft and decodes the applied answer,
    /// with the header filled in.
    async fn propose<T: Message + Default + HasHeader>(
        &self,
        request: Request,
    ) -> Result<T, Status> {
        let mut resp: T = self.propose_plain(request).await?;
        self.fill_header(&mut resp, None);
        Ok(resp)
    }

    /// Proposes `request` through Raft and decodes the applied answer as
    /// the state machine wrote it.
    async fn propose_plain<T: Message + Default>(&self, request: Request) -> Result<T, Status> {
        let timeout = self.inner.request_timeout;
        // The proposer bounds each step by `timeout`; the outer bound (with
        // slack) only catches a local proposal that never completes.
        let written = tokio::time::timeout(
            timeout + TIMEOUT_SLACK,
            self.proposer().write(request, timeout),
        )
        .await
        .map_err(|_| EtcdError::REQUEST_TIMEOUT.to_status())?
        .map_err(write_status)?;
        match written.data {
            Response::Encoded(bytes) => T::decode(bytes.as_slice())
                .map_err(|e| Status::internal(format!("undecodable applied response: {e}"))),
            Response::Failed { kind, message } => Err(Status::new(kind.code(), message)),
            Response::FailedWithDetail {
                kind,
                message,
                detail,
            } => Err(Status::with_details(kind.code(), message, detail.into())),
            Response::Empty => Err(Status::internal("applied entry gave no response")),
        }
    }

    /// etcd's space quota: above `--quota-backend-bytes`, raises this
    /// member's NOSPACE alarm (through Raft) and refuses the write.
    async fn check_quota(&self) -> Result<(), Status> {
        let store = self.store();
        if db_size(&store) <= self.inner.quota_backend_bytes {
            return Ok(());
        }
        let me = self.proposer().member_id();
        let raised = crate::raft::mvcc_applier::alarms(&store)
            .map_err(|e| Status::internal(e.to_string()))?
            .iter()
            .any(|a| a.member_id == me && a.alarm == pb::AlarmType::Nospace as i32);
        if !raised {
            tracing::warn!(
                quota = self.inner.quota_backend_bytes,
                "database space exceeded: raising the NOSPACE alarm"
            );
            let req = pb::AlarmRequest {
                action: pb::alarm_request::AlarmAction::Activate as i32,
                member_id: me,
                alarm: pb::AlarmType::Nospace as i32,
            };
            let _: pb::AlarmResponse = self.propose(Request::Alarm(req.encode_to_vec())).await?;
        }
        Err(EtcdError::NO_SPACE.to_status())
    }

    /// The leader as clients are told of it: the Raft leader, except that
    /// a leader which could not confirm its leadership with a quorum lately
    /// counts as none (openraft 0.9 leaves such a leader in place; etcd's
    /// CheckQuorum would make it step down).
    fn known_leader(&self) -> Option<u64> {
        let leader = self.proposer().raft().metrics().borrow().current_leader;
        let me = self.proposer().member_id();
        match leader {
            Some(l)
                if l == me
                    && !self
                        .inner
                        .quorum_ok
                        .load(std::sync::atomic::Ordering::Acquire) =>
            {
                None
            }
            l => l,
        }
    }

    /// Whether this member leads.
    fn is_leader(&self) -> bool {
        let leader = self.proposer().raft().metrics().borrow().current_leader;
        leader == Some(self.proposer().member_id())
    }

    /// A channel to the leader's first client URL (from the membership).
    fn leader_channel(&self) -> Result<tonic::transport::Channel, Status> {
        let url = {
            let m = self.proposer().raft().metrics();
            let m = m.borrow();
            let leader = m
                .current_leader
                .ok_or_else(|| EtcdError::NO_LEADER.to_status())?;
            m.membership_config
                .membership()
                .get_node(&leader)
                .and_then(|n| n.client_urls.first().cloned())
                .ok_or_else(|| EtcdError::LEADER_CHANGED.to_status())?
        };
        let mut channels = self.inner.channels.lock();
        if let Some(c) = channels.get(&url) {
            return Ok(c.clone());
        }
        let c = crate::tls::endpoint(&url, self.inner.client_tls.as_ref())
            .map_err(|e| Status::internal(format!("leader client URL {url:?}: {e}")))?
            .connect_timeout(self.inner.request_timeout)
            .connect_lazy();
        channels.insert(url, c.clone());
        Ok(c)
    }

    /// Waits until a read from this member's store is linearizable.
    async fn read_barrier(&self) -> Result<(), Status> {
        if crate::debug_faults::enabled(crate::debug_faults::Fault::LocalRead) {
            return Ok(());
        }
        let timeout = self.inner.request_timeout;
        tokio::time::timeout(
            timeout + TIMEOUT_SLACK,
            self.proposer().read_barrier(timeout),
        )
        .await
        .map_err(|_| EtcdError::REQUEST_TIMEOUT.to_status())?
        .map_err(read_status)
    }

    /// Runs a read on the live store, once more on the new store if a
    /// snapshot install closed the old one under it.
    fn read<T>(&self, f: impl Fn(&MvccStore) -> Result<T, MvccError>) -> Result<T, Status> {
        match f(&self.store()) {
            Err(MvccError::Storage(sett_engine::Error::Closed)) => {
                f(&self.store()).map_err(|e| mvcc_status(&e))
            }
            r => r.map_err(|e| mvcc_status(&e)),
        }
    }
}

/// A streaming call's responses until the member stops; see
/// [`ApiContext::until_stopped`].
pub(crate) struct UntilStopped<T> {
    /// `None` once the stream has ended.
    rx: Option<tokio::sync::mpsc::Receiver<Result<T, Status>>>,
    stop: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

impl<T> tokio_stream::Stream for UntilStopped<T> {
    type Item = Result<T, Status>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = self.get_mut();
        let Some(rx) = this.rx.as_mut() else {
            return Poll::Ready(None);
        };
        if this.stop.as_mut().poll(cx).is_ready() {
            // Dropping the receiver tells the producer to end.
            this.rx = None;
            return Poll::Ready(Some(Err(EtcdError::STOPPED.to_status())));
        }
        match rx.poll_recv(cx) {
            Poll::Ready(None) => {
                this.rx = None;
                Poll::Ready(None)
            }
            other => other,
        }
    }
}

/// Keeps [`Inner::quorum_ok`] current: while this member leads, it
/// confirms its leadership with a quorum every `interval` (a ReadIndex
/// round), bounded by `timeout`. Ends when the Raft group stops.
async fn watch_quorum(ctx: ApiContext, interval: Duration, timeout: Duration) {
    use std::sync::atomic::Ordering;
    let mut metrics = ctx.proposer().raft().metrics();
    loop {
        tokio::time::sleep(interval).await;
        if metrics.has_changed().is_err() {
            return;
        }
        let leads = metrics.borrow_and_update().current_leader == Some(ctx.proposer().member_id());
        let ok = !leads
            || matches!(
                tokio::time::timeout(timeout, ctx.proposer().raft().get_read_log_id()).await,
                Ok(Ok(_))
            );
        if ok != ctx.inner.quorum_ok.swap(ok, Ordering::AcqRel) {
            if ok {
                tracing::info!("leadership confirmed by a quorum again");
            } else {
                tracing::warn!("leader without a quorum: reporting no leader");
            }
        }
    }
}

/// etcd's `hasleader` check: a call carrying metadata `hasleader: true`
/// (etcdctl's watch, clients with "require leader") fails with
/// `etcdserver: no leader` while no leader is known.
fn require_leader(ctx: ApiContext) -> impl tonic::service::Interceptor + Clone {
    move |req: tonic::Request<()>| {
        let wants = req
            .metadata()
            .get("hasleader")
            .is_some_and(|v| v.as_bytes() == b"true");
        if wants && ctx.known_leader().is_none() {
            return Err(EtcdError::NO_LEADER.to_status());
        }
        Ok(req)
    }
}

/// The bytes the store occupies on disk: tables plus value log (what
/// `Status` reports and the space quota counts).
fn db_size(store: &MvccStore) -> u64 {
    let stats = store.db().stats();
    stats.bytes_per_level.iter().sum::<u64>() + stats.vlog_bytes
}

/// The client status of an MVCC error; storage failures are logged.
fn mvcc_status(e: &MvccError) -> Status {
    if e.etcd().is_none() {
        tracing::error!("read failed: {e}");
    }
    e.to_status()
}

fn write_status(e: WriteError) -> Status {
    use crate::network::ForwardError;
    match e {
        WriteError::NoLeader => EtcdError::NO_LEADER.to_status(),
        WriteError::Forward(ForwardError::Timeout(_)) => EtcdError::REQUEST_TIMEOUT.to_status(),
        WriteError::Forward(ForwardError::Unreachable(..)) => EtcdError::LEADER_CHANGED.to_status(),
        WriteError::Forward(ForwardError::Remote(e)) | WriteError::Raft(e) => raft_status(&e),
        WriteError::Forward(e) => {
            tracing::warn!("forwarding a write: {e}");
            EtcdError::LEADER_CHANGED.to_status()
        }
    }
}

fn raft_status<E: std::fmt::Display>(e: &openraft::error::RaftError<u64, E>) -> Status {
    match e {
        openraft::error::RaftError::Fatal(f) => {
            tracing::error!("raft stopped: {f}");
            EtcdError::STOPPED.to_status()
        }
        openraft::error::RaftError::APIError(e) => {
            tracing::debug!("write refused: {e}");
            EtcdError::LEADER_CHANGED.to_status()
        }
    }
}

fn read_status(e: ReadError) -> Status {
    match e {
        ReadError::NoLeader => EtcdError::NO_LEADER.to_status(),
        ReadError::Timeout => EtcdError::REQUEST_TIMEOUT.to_status(),
        ReadError::ReadIndex(e) => {
            tracing::debug!("read index: {e}");
            EtcdError::LEADER_CHANGED.to_status()
        }
        ReadError::LeaderChanged(e) => {
            tracing::debug!("{e}");
            EtcdError::LEADER_CHANGED.to_status()
        }
        ReadError::Raft(e) => {
            tracing::error!("raft stopped: {e}");
            EtcdError::STOPPED.to_status()
        }
    }
}

impl NodeApplier for MvccApplier {
    const SERVES_CLIENTS: bool = true;

    fn state_source(applier: &Arc<Self>) -> Option<Arc<dyn crate::metrics::StateSource>> {
        Some(applier.clone())
    }

    fn close(&self) -> Result<(), StoreError> {
        MvccApplier::close(self)
    }

    fn client_routes(
        applier: &Arc<Self>,
        proposer: &Proposer,
        config: &MemberConfig,
        stopped: &tokio::sync::watch::Receiver<bool>,
    ) -> Option<tonic::service::Routes> {
        let ctx = ApiContext::new(proposer.clone(), applier.clone(), config, stopped.clone());
        let election = Duration::from_millis(config.election_timeout_ms);
        tokio::spawn(watch_quorum(ctx.clone(), election / 2, election));
        let limit = ctx
            .inner
            .max_request_bytes
            .saturating_add(GRPC_OVERHEAD_BYTES);
        let gate = require_leader(ctx.clone());
        let kv = pb::kv_server::KvServer::new(kv::KvService::new(ctx.clone()))
            .max_decoding_message_size(limit)
            .max_encoding_message_size(usize::MAX);
        let maintenance = pb::maintenance_server::MaintenanceServer::new(
            maintenance::MaintenanceService::new(ctx.clone()),
        )
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX);
        let watch = pb::watch_server::WatchServer::new(watch::WatchService::new(
            ctx.clone(),
            Duration::from_millis(config.watch_progress_notify_interval_ms.max(1)),
        ))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX);
        let lease =
            pb::lease_server::LeaseServer::new(lease::LeaseService::start(ctx.clone(), election))
                .max_decoding_message_size(limit);
        let cluster =
            pb::cluster_server::ClusterServer::new(cluster::ClusterService::new(ctx.clone()))
                .max_decoding_message_size(limit);
        let auth = pb::auth_server::AuthServer::new(auth::AuthService::new(ctx.clone()))
            .max_decoding_message_size(limit);
        let native =
            sett_proto::sett::v1::sett_server::SettServer::new(native::NativeService::new(ctx))
                .max_decoding_message_size(limit)
                .max_encoding_message_size(usize::MAX);
        use tonic::service::interceptor::InterceptedService as Gated;
        Some(
            tonic::service::Routes::new(grpc_go::GrpcGoErrors(Gated::new(kv, gate.clone())))
                .add_service(grpc_go::GrpcGoErrors(Gated::new(watch, gate.clone())))
                .add_service(grpc_go::GrpcGoErrors(Gated::new(lease, gate.clone())))
                .add_service(grpc_go::GrpcGoErrors(Gated::new(native, gate.clone())))
                .add_service(grpc_go::GrpcGoErrors(Gated::new(maintenance, gate.clone())))
                .add_service(grpc_go::GrpcGoErrors(Gated::new(cluster, gate.clone())))
                .add_service(grpc_go::GrpcGoErrors(Gated::new(auth, gate))),
        )
    }
}
