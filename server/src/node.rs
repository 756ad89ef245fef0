//! One sett member: storage, the Raft group, the peer transport server and
//! bootstrap.
//!
//! Data directory layout:
//!
//! | path | what |
//! |---|---|
//! | `member.json` | the resolved [`MemberConfig`] (see [`crate::config`]) |
//! | `raft/` | the Raft log ([`LogStore`]) |
//! | `sm/` | the state machine's databases (the [`NodeApplier`]) |
//! | `snap/` | snapshot files |
//!
//! # Bootstrap
//! With `--initial-cluster-state new` and an uninitialized log, the member
//! with the smallest node id of the initial cluster calls
//! `Raft::initialize` with every member; the others wait to be contacted.
//! An initialized log (a restart) or `existing` needs no call.
//!
//! # The applier seam
//! [`Node`] is generic over the state machine's [`NodeApplier`]: the tests
//! and the binary use [`KvApplier`] today; the etcd MVCC store plugs in by
//! implementing [`NodeApplier`] and being passed to [`Node::start`].

pub mod handover;
pub mod health;
pub mod incoming;
pub mod reflection;

use crate::api::authority::AuthorityFix;
use crate::config::{ClusterState, ConfigError, MemberConfig};
use crate::metrics::{Metrics, StateSource};
use crate::network::{
    publish_member, ForwardError, GrpcNetworkFactory, Identity, RaftService, ReadIndexError,
};
use crate::raft::types::Raft;
use crate::raft::{
    Applier, KvApplier, LogStore, NodeId, Request, SettNode, StateMachineStore, StoreError,
    TypeConfig,
};
use crate::read_batch::ReadBatch;
use openraft::error::{CheckIsLeaderError, ClientWriteError, InitializeError, RaftError};
use openraft::raft::ClientWriteResponse;
use openraft::SnapshotPolicy;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// A state machine a [`Node`] can run on.
pub trait NodeApplier: Applier + Sized {
    /// Flushes and closes the databases; called once the Raft group has
    /// stopped.
    fn close(&self) -> Result<(), StoreError>;

    /// Whether [`NodeApplier::client_routes`] offers services (the client
    /// URLs are bound only then).
    const SERVES_CLIENTS: bool = false;

    /// The gRPC services this state machine offers clients on
    /// `--listen-client-urls`, if any (none: the client URLs are not
    /// bound). `stopped` turns true when the member stops: streaming
    /// calls must end then, or the graceful shutdown waits for them (up
    /// to [`SHUTDOWN_GRACE`]).
    fn client_routes(
        _applier: &Arc<Self>,
        _proposer: &Proposer,
        _config: &MemberConfig,
        _stopped: &tokio::sync::watch::Receiver<bool>,
    ) -> Option<tonic::service::Routes> {
        None
    }

    /// What a metrics scrape reads of this state machine's store, if
    /// anything.
    fn state_source(_applier: &Arc<Self>) -> Option<Arc<dyn StateSource>> {
        None
    }
}

impl NodeApplier for KvApplier {
    fn close(&self) -> Result<(), StoreError> {
        KvApplier::close(self)
    }
}

/// Why a node cannot start or stop cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The local storage failed.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    /// A listen URL cannot be bound.
    #[error("cannot listen on {url}: {source}")]
    Bind {
        /// The URL.
        url: String,
        /// The failure.
        source: std::io::Error,
    },
    /// openraft refused the configuration or stopped.
    #[error("raft: {0}")]
    Raft(String),
    /// A TLS file became unusable since the configuration was checked.
    #[error("TLS: {0}")]
    Tls(String),
}

/// Why a write has no result.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// No leader is known (election in progress, or no quorum).
    #[error("no leader")]
    NoLeader,
    /// The local Raft refused.
    #[error(transparent)]
    Raft(#[from] RaftError<NodeId, ClientWriteError<NodeId, SettNode>>),
    /// Forwarding to the leader failed.
    #[error(transparent)]
    Forward(#[from] ForwardError),
}

/// Why a linearizable read cannot be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// No leader is known, or the leader could not confirm its leadership
    /// with a quorum.
    #[error("no leader")]
    NoLeader,
    /// The read index was not confirmed, or not applied here, in time.
    #[error("read index not reached in time")]
    Timeout,
    /// Asking the leader failed.
    #[error(transparent)]
    ReadIndex(#[from] ReadIndexError),
    /// Asking the leader failed (in a round shared with other reads).
    #[error("read index: {0}")]
    LeaderChanged(String),
    /// The local Raft stopped.
    #[error("raft: {0}")]
    Raft(String),
}

/// How often a write or read is retried after the leader changed under
/// it.
const LEADER_CHANGE_ATTEMPTS: usize = 3;

/// Proposes writes and confirms linearizable reads for one member: locally
/// when it leads, through the leader otherwise. Cheap to clone.
#[derive(Clone)]
pub struct Proposer {
    raft: Raft,
    network: GrpcNetworkFactory,
    me: NodeId,
    /// Concurrent linearizable reads share ReadIndex rounds.
    reads: Arc<ReadBatch<ReadRound>>,
    /// The member's metrics.
    metrics: Arc<Metrics>,
}

/// The outcome of one ReadIndex round, shared by the reads that waited
/// for it.
#[derive(Debug, Clone)]
enum ReadRound {
    /// The leader's commit index, confirmed with a quorum.
    Index(u64),
    /// Leadership moved while asking: ask again.
    Retry,
    /// No leader, or it could not confirm itself with a quorum.
    NoLeader,
    /// The round did not finish in time.
    Timeout,
    /// Asking the leader failed.
    LeaderChanged(String),
    /// The local Raft stopped.
    Stopped(String),
}

/// Bound on one shared ReadIndex round (each read also has its own
/// deadline).
const READ_ROUND_TIMEOUT: Duration = Duration::from_secs(5);

impl std::fmt::Debug for Proposer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proposer").field("me", &self.me).finish()
    }
}

impl Proposer {
    /// The Raft handle.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// This member's id.
    pub fn member_id(&self) -> NodeId {
        self.me
    }

    /// The member's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The current leader, with its node when it is another member (only
    /// that node is copied out of the metrics).
    fn leader(&self) -> Option<(NodeId, Option<SettNode>)> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let leader = m.current_leader?;
        let node = (leader != self.me)
            .then(|| m.membership_config.membership().get_node(&leader).cloned())
            .flatten();
        Some((leader, node))
    }

    /// Proposes `request`: locally when this member leads, else forwarded
    /// to the leader; a forwarded write is answered once this member has
    /// applied it too, or when `timeout` (which bounds the whole call)
    /// runs out after the leader applied it. Retries once per leader
    /// change, a bounded number of times.
    pub async fn write(
        &self,
        request: Request,
        timeout: Duration,
    ) -> Result<ClientWriteResponse<TypeConfig>, WriteError> {
        let _pending = self.metrics.proposal_started();
        let written = self.write_once(request, timeout).await;
        if written.is_err() {
            self.metrics.proposal_failed();
        }
        written
    }

    /// [`Proposer::write`] without the metrics.
    async fn write_once(
        &self,
        request: Request,
        timeout: Duration,
    ) -> Result<ClientWriteResponse<TypeConfig>, WriteError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let left = || deadline.saturating_duration_since(tokio::time::Instant::now());
        let mut last = WriteError::NoLeader;
        for _ in 0..LEADER_CHANGE_ATTEMPTS {
            let Some((leader, node)) = self.leader() else {
                return Err(WriteError::NoLeader);
            };
            if leader == self.me {
                match self.raft.client_write(request.clone()).await {
                    Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                        // Leadership moved between the metrics and the write.
                        last = WriteError::NoLeader;
                        continue;
                    }
                    r => return Ok(r?),
                }
            }
            let Some(node) = node else {
                return Err(WriteError::NoLeader);
            };
            match self.network.forward(leader, &node, &request, left()).await {
                Ok(r) => {
                    // As etcd does, answer once this member has applied the
                    // write too: a read or watch that follows here sees it.
                    let applied = self
                        .raft
                        .wait(Some(left()))
                        .applied_index_at_least(Some(r.log_id.index), "forwarded write")
                        .await;
                    if let Err(e) = applied {
                        tracing::debug!("forwarded write applied on the leader, not here yet: {e}");
                    }
                    return Ok(r);
                }
                Err(ForwardError::Remote(RaftError::APIError(
                    ClientWriteError::ForwardToLeader(_),
                ))) => {
                    // The leader changed under us: ask again.
                    last = WriteError::NoLeader;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(last)
    }

    /// Waits until a read served from this member's state machine is
    /// linearizable (ReadIndex): the leader confirms its leadership with a
    /// quorum and names its commit index, then this member waits until it
    /// has applied that index. `timeout` bounds the whole wait.
    pub async fn read_barrier(&self, timeout: Duration) -> Result<(), ReadError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let left = || deadline.saturating_duration_since(tokio::time::Instant::now());
        let mut last = ReadError::NoLeader;
        for _ in 0..LEADER_CHANGE_ATTEMPTS {
            let me = self.clone();
            let round = tokio::time::timeout(
                left(),
                self.reads.join(move || {
                    let me = me.clone();
                    async move { me.read_round().await }
                }),
            )
            .await;
            let index = match round {
                Err(_) => return Err(ReadError::Timeout),
                Ok(None) => return Err(ReadError::Raft("read round ended".into())),
                Ok(Some(ReadRound::Index(i))) => i,
                Ok(Some(ReadRound::Retry)) => {
                    last = ReadError::NoLeader;
                    continue;
                }
                Ok(Some(ReadRound::NoLeader)) => return Err(ReadError::NoLeader),
                Ok(Some(ReadRound::Timeout)) => return Err(ReadError::Timeout),
                Ok(Some(ReadRound::LeaderChanged(e))) => return Err(ReadError::LeaderChanged(e)),
                Ok(Some(ReadRound::Stopped(e))) => return Err(ReadError::Raft(e)),
            };
            return match self
                .raft
                .wait(Some(left()))
                .applied_index_at_least(Some(index), "read index")
                .await
            {
                Ok(_) => Ok(()),
                Err(openraft::metrics::WaitError::Timeout(..)) => Err(ReadError::Timeout),
                Err(e) => Err(ReadError::Raft(e.to_string())),
            };
        }
        Err(last)
    }

    /// One ReadIndex round: the leader's commit index, confirmed with a
    /// quorum (locally when this member leads, else asked of the leader).
    async fn read_round(&self) -> ReadRound {
        let Some((leader, node)) = self.leader() else {
            return ReadRound::NoLeader;
        };
        if leader == self.me {
            let checked =
                tokio::time::timeout(READ_ROUND_TIMEOUT, self.raft.get_read_log_id()).await;
            return match checked {
                Err(_) => ReadRound::Timeout,
                Ok(Ok((read_log_id, _))) => ReadRound::Index(read_log_id.map_or(0, |l| l.index)),
                Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_)))) => {
                    ReadRound::Retry
                }
                Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_)))) => {
                    ReadRound::NoLeader
                }
                Ok(Err(e)) => ReadRound::Stopped(e.to_string()),
            };
        }
        let Some(node) = node else {
            return ReadRound::NoLeader;
        };
        match self
            .network
            .read_index(leader, &node, READ_ROUND_TIMEOUT)
            .await
        {
            Ok(i) => ReadRound::Index(i),
            Err(ReadIndexError::Remote(RaftError::APIError(
                CheckIsLeaderError::ForwardToLeader(_),
            ))) => ReadRound::Retry,
            Err(ReadIndexError::Remote(RaftError::APIError(
                CheckIsLeaderError::QuorumNotEnough(_),
            ))) => ReadRound::NoLeader,
            Err(ReadIndexError::Timeout(_)) => ReadRound::Timeout,
            Err(e) => ReadRound::LeaderChanged(e.to_string()),
        }
    }
}

/// openraft's configuration for a member: etcd's heartbeat and election
/// timeout, a snapshot every `--snapshot-count` entries, and
/// `--experimental-snapshot-catchup-entries` of log kept behind it.
///
/// Elections are randomized over `[timeout, 1.25 × timeout)`, narrower
/// than etcd's `[timeout, 2 × timeout)`: openraft makes a follower refuse
/// votes for `election_timeout_max` after it last heard from the leader
/// (its leader lease), so with etcd's range the first candidate after a
/// leader's death is nearly always refused and writes resumed only after
/// a second timeout, 2–4 × the election timeout later. With the narrower
/// range they resume in about 2.5 × (measured by the nemesis).
pub fn raft_config(cfg: &MemberConfig) -> Result<openraft::Config, NodeError> {
    let c = openraft::Config {
        cluster_name: cfg.cluster_token.clone(),
        heartbeat_interval: cfg.heartbeat_interval_ms,
        election_timeout_min: cfg.election_timeout_ms,
        election_timeout_max: cfg.election_timeout_ms + (cfg.election_timeout_ms / 4).max(1),
        // An idle bound per snapshot chunk, not for the whole transfer.
        install_snapshot_timeout: cfg.election_timeout_ms.max(1000),
        snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.snapshot_count),
        max_in_snapshot_log_to_keep: cfg.snapshot_catchup_entries,
        ..openraft::Config::default()
    };
    c.validate().map_err(|e| NodeError::Raft(e.to_string()))
}

/// Binds every `--listen-peer-urls` address.
pub async fn bind_peer_listeners(cfg: &MemberConfig) -> Result<Vec<TcpListener>, NodeError> {
    bind_urls(&cfg.listen_peer_urls).await
}

/// Binds the address of every `http(s)://host:port` URL of `urls`.
pub async fn bind_urls(urls: &[String]) -> Result<Vec<TcpListener>, NodeError> {
    let mut out = Vec::with_capacity(urls.len());
    for url in urls {
        let bind_err = |source| NodeError::Bind {
            url: url.clone(),
            source,
        };
        let hostport = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .unwrap_or(url);
        let addr = tokio::net::lookup_host(hostport)
            .await
            .map_err(bind_err)?
            .next()
            .ok_or_else(|| {
                bind_err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "host resolves to no address",
                ))
            })?;
        out.push(bind(addr).map_err(bind_err)?);
    }
    Ok(out)
}

/// Binds `addr` with `SO_REUSEADDR`, so a restarted member gets its port
/// back at once.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// A running member; see the module docs.
pub struct Node<A: NodeApplier> {
    config: MemberConfig,
    raft: Raft,
    applier: Arc<A>,
    log: LogStore,
    proposer: Proposer,
    peer_addrs: Vec<SocketAddr>,
    client_addrs: Vec<SocketAddr>,
    stop: tokio::sync::watch::Sender<bool>,
    servers: Vec<ServerTask>,
    metrics: Arc<Metrics>,
    metrics_addrs: Vec<SocketAddr>,
    /// The `/metrics` servers, by address.
    metrics_servers: Vec<(SocketAddr, JoinHandle<std::io::Result<()>>)>,
}

impl<A: NodeApplier> std::fmt::Debug for Node<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.config.name)
            .field("id", &self.config.node_id)
            .field("peer_addrs", &self.peer_addrs)
            .field("client_addrs", &self.client_addrs)
            .finish_non_exhaustive()
    }
}

impl<A: NodeApplier> Node<A> {
    /// Starts the member `cfg` (persisting `cfg` as `member.json`), with
    /// its state machine opened by `open_applier` on `<data-dir>/sm`,
    /// serving the Raft transport on `--listen-peer-urls` and the state
    /// machine's client services (if any) on `--listen-client-urls`.
    pub async fn start(
        cfg: MemberConfig,
        open_applier: impl FnOnce(&Path) -> Result<A, StoreError>,
    ) -> Result<Node<A>, NodeError> {
        let listeners = bind_peer_listeners(&cfg).await?;
        Node::start_with_listeners(cfg, open_applier, listeners).await
    }

    /// As [`Node::start`], serving the Raft transport on already bound
    /// `listeners` (tests bind ephemeral ports first).
    pub async fn start_with_listeners(
        cfg: MemberConfig,
        open_applier: impl FnOnce(&Path) -> Result<A, StoreError>,
        listeners: Vec<TcpListener>,
    ) -> Result<Node<A>, NodeError> {
        cfg.validate()?;
        let client_listeners = if A::SERVES_CLIENTS {
            bind_urls(&cfg.listen_client_urls).await?
        } else {
            Vec::new()
        };
        Node::start_with_all_listeners(cfg, open_applier, listeners, client_listeners).await
    }

    /// As [`Node::start`], with the peer and client listeners already
    /// bound. Client listeners are closed unused when the state machine
    /// offers no client services.
    pub async fn start_with_all_listeners(
        cfg: MemberConfig,
        open_applier: impl FnOnce(&Path) -> Result<A, StoreError>,
        listeners: Vec<TcpListener>,
        client_listeners: Vec<TcpListener>,
    ) -> Result<Node<A>, NodeError> {
        cfg.validate()?;
        let metrics_listeners = bind_urls(&cfg.listen_metrics_urls).await?;
        cfg.save()?;
        let raft_config = Arc::new(raft_config(&cfg)?);
        let dir = cfg.data_dir.clone();
        let metrics = Arc::new(Metrics::new());
        let log = LogStore::open(dir.join("raft"))?;
        let sm = StateMachineStore::open(open_applier(&dir.join("sm"))?, dir.join("snap"))?
            .with_metrics(metrics.clone());
        let applier = sm.applier().clone();
        metrics.attach_log(log.clone());
        if let Some(source) = A::state_source(&applier) {
            metrics.attach_state(source);
        }
        let me = Identity {
            cluster_id: cfg.cluster_id,
            node_id: cfg.node_id,
        };
        let tls_err = |e: crate::tls::TlsError| NodeError::Tls(e.to_string());
        let network = GrpcNetworkFactory::with_tls(
            me,
            Duration::from_millis(cfg.election_timeout_ms),
            crate::tls::dial_config(&cfg.peer_tls).map_err(tls_err)?,
        );
        let raft = Raft::new(cfg.node_id, raft_config, network.clone(), log.clone(), sm)
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        metrics.attach_raft(raft.clone());

        let proposer = Proposer {
            raft: raft.clone(),
            network,
            me: cfg.node_id,
            reads: Arc::default(),
            metrics: metrics.clone(),
        };

        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut servers = Vec::new();
        let peer_routes =
            tonic::service::Routes::new(RaftService::new(raft.clone(), me).into_server());
        let listeners = with_tls(listeners, &cfg.listen_peer_urls, &cfg.peer_tls)?;
        let peer_addrs = serve(listeners, peer_routes, false, None, &stopped, &mut servers)?;
        let client_addrs = match A::client_routes(&applier, &proposer, &cfg, &stopped) {
            Some(routes) => {
                let health = health::service(
                    proposer.clone(),
                    Duration::from_millis(cfg.election_timeout_ms),
                    stopped.clone(),
                );
                let routes = reflection::add_services(routes.add_service(health));
                let routes = crate::metrics::grpc::instrument(routes, metrics.clone());
                let listeners =
                    with_tls(client_listeners, &cfg.listen_client_urls, &cfg.client_tls)?;
                let streams = Some(cfg.max_concurrent_streams);
                serve(listeners, routes, true, streams, &stopped, &mut servers)?
            }
            None => Vec::new(),
        };
        let mut metrics_addrs = Vec::new();
        let mut metrics_servers = Vec::new();
        for listener in metrics_listeners {
            let addr = listener.local_addr().map_err(|source| NodeError::Bind {
                url: "metrics listener".into(),
                source,
            })?;
            let task = tokio::spawn(crate::metrics::http::serve(
                listener,
                metrics.clone(),
                stopped.clone(),
            ));
            metrics_addrs.push(addr);
            metrics_servers.push((addr, task));
        }
        tracing::info!(
            name = %cfg.name,
            id = format_args!("{:x}", cfg.node_id),
            cluster = format_args!("{:x}", cfg.cluster_id),
            peers = ?peer_addrs,
            clients = ?client_addrs,
            metrics = ?metrics_addrs,
            "member started"
        );
        if A::SERVES_CLIENTS {
            tokio::spawn(publish(
                proposer.clone(),
                cfg.name.clone(),
                cfg.advertise_client_urls.clone(),
                Duration::from_millis(cfg.election_timeout_ms),
                stopped.clone(),
            ));
        }
        let node = Node {
            config: cfg,
            raft,
            applier,
            log,
            proposer,
            peer_addrs,
            client_addrs,
            stop,
            servers,
            metrics,
            metrics_addrs,
            metrics_servers,
        };
        node.bootstrap().await?;
        Ok(node)
    }

    async fn bootstrap(&self) -> Result<(), NodeError> {
        let cfg = &self.config;
        if cfg.initial_cluster_state != ClusterState::New {
            return Ok(());
        }
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        let first = cfg.initial_members.keys().next().copied();
        if initialized || first != Some(cfg.node_id) {
            return Ok(());
        }
        tracing::info!(members = cfg.initial_members.len(), "initializing cluster");
        match self.raft.initialize(cfg.initial_members.clone()).await {
            Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(NodeError::Raft(e.to_string())),
        }
    }

    /// The Raft handle.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The state machine's applier (for reads served outside Raft).
    pub fn applier(&self) -> &Arc<A> {
        &self.applier
    }

    /// The resolved configuration.
    pub fn config(&self) -> &MemberConfig {
        &self.config
    }

    /// The addresses the Raft transport listens on.
    pub fn peer_addrs(&self) -> &[SocketAddr] {
        &self.peer_addrs
    }

    /// The addresses the client services listen on (none when the state
    /// machine offers none).
    pub fn client_addrs(&self) -> &[SocketAddr] {
        &self.client_addrs
    }

    /// The addresses `/metrics` and `/health` are served on.
    pub fn metrics_addrs(&self) -> &[SocketAddr] {
        &self.metrics_addrs
    }

    /// The member's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The peer transport client (for forwarding).
    pub fn network(&self) -> &GrpcNetworkFactory {
        &self.proposer.network
    }

    /// Proposes writes and confirms reads for this member.
    pub fn proposer(&self) -> &Proposer {
        &self.proposer
    }

    /// [`Proposer::write`] of this member.
    pub async fn write(
        &self,
        request: Request,
        timeout: Duration,
    ) -> Result<ClientWriteResponse<TypeConfig>, WriteError> {
        self.proposer.write(request, timeout).await
    }

    /// Resolves once this member has been removed from the cluster (it
    /// was in the membership and no longer is), as etcd members notice
    /// their removal; also resolves if the Raft group stops.
    pub async fn removed(&self) {
        let me = self.config.node_id;
        let mut metrics = self.raft.metrics();
        let mut was_member = false;
        loop {
            let is_member = metrics
                .borrow_and_update()
                .membership_config
                .membership()
                .get_node(&me)
                .is_some();
            if is_member {
                was_member = true;
            } else if was_member {
                return;
            }
            if metrics.changed().await.is_err() {
                return;
            }
        }
    }

    /// Stops serving, stops the Raft group and closes the databases.
    ///
    /// Serving stops gracefully: no new connections or calls are taken,
    /// calls in flight finish, and streaming calls (Watch,
    /// LeaseKeepAlive, Snapshot) end with `etcdserver: server stopped`.
    /// Connections still open after [`SHUTDOWN_GRACE`] are abandoned.
    /// A leader then hands its leadership over ([`handover`]).
    pub async fn shutdown(self) -> Result<(), NodeError> {
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        for mut server in self.servers {
            match tokio::time::timeout_at(deadline, &mut server.task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::warn!("{} server on {}: {e}", server.kind, server.addr),
                Ok(Err(e)) => tracing::warn!("{} server task on {}: {e}", server.kind, server.addr),
                Err(_) => {
                    tracing::warn!(
                        "{} server on {}: connections still open {SHUTDOWN_GRACE:?} after \
                         stopping; closing them",
                        server.kind,
                        server.addr
                    );
                    server.task.abort();
                }
            }
        }
        for (addr, mut task) in self.metrics_servers {
            match tokio::time::timeout_at(deadline, &mut task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::warn!("metrics server on {addr}: {e}"),
                Ok(Err(e)) => tracing::warn!("metrics server task on {addr}: {e}"),
                Err(_) => task.abort(),
            }
        }
        let election_timeout = Duration::from_millis(self.config.election_timeout_ms);
        let successor =
            handover::choose_successor(&self.raft, self.config.node_id, election_timeout).await;
        self.raft
            .shutdown()
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        if let Some(successor) = successor {
            let stopped = std::time::Instant::now();
            handover::hand_over(
                &self.proposer.network,
                &successor,
                stopped,
                election_timeout,
            )
            .await;
        }
        drop(self.raft);
        self.applier.close()?;
        self.log.close()?;
        tracing::info!(name = %self.config.name, "member stopped");
        Ok(())
    }
}

/// How long a stopping member waits for open connections and calls to
/// finish before it closes them anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// One listener's server.
struct ServerTask {
    /// `"client"` or `"peer"`.
    kind: &'static str,
    /// The listening address.
    addr: SocketAddr,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

/// Pairs each listener with the TLS acceptor of its URL: `https://` URLs
/// (the one at the listener's position in `urls`) terminate TLS with
/// `files`, `http://` ones stay plaintext.
fn with_tls(
    listeners: Vec<TcpListener>,
    urls: &[String],
    files: &crate::config::TlsFiles,
) -> Result<Vec<(TcpListener, Option<TlsAcceptor>)>, NodeError> {
    let needed = urls.iter().any(|u| u.starts_with("https://"));
    let acceptor = if needed {
        crate::tls::acceptor(files).map_err(|e| NodeError::Tls(e.to_string()))?
    } else {
        None
    };
    Ok(listeners
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            let https = urls.get(i).is_some_and(|u| u.starts_with("https://"));
            (l, acceptor.clone().filter(|_| https))
        })
        .collect())
}

/// Serves `routes` on each listener until `stopped` turns true; returns
/// the bound addresses. Connections come from [`incoming::connections`]
/// (TLS terminated there when the listener has an acceptor); client
/// connections (`clients`) then pass through [`AuthorityFix`].
fn serve(
    listeners: Vec<(TcpListener, Option<TlsAcceptor>)>,
    routes: tonic::service::Routes,
    clients: bool,
    max_streams: Option<u32>,
    stopped: &tokio::sync::watch::Receiver<bool>,
    servers: &mut Vec<ServerTask>,
) -> Result<Vec<SocketAddr>, NodeError> {
    use tokio_stream::StreamExt;
    let mut addrs = Vec::with_capacity(listeners.len());
    for (listener, tls) in listeners {
        let addr = listener.local_addr().map_err(|source| NodeError::Bind {
            url: "listener".into(),
            source,
        })?;
        addrs.push(addr);
        let mut stopped = stopped.clone();
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        let server = tonic::transport::Server::builder()
            .max_concurrent_streams(max_streams)
            .add_routes(routes.clone());
        let incoming = incoming::connections(listener, tls);
        let task = if clients {
            let incoming = incoming.map(|conn| conn.map(AuthorityFix::new));
            tokio::spawn(server.serve_with_incoming_shutdown(incoming, shutdown))
        } else {
            tokio::spawn(server.serve_with_incoming_shutdown(incoming, shutdown))
        };
        servers.push(ServerTask {
            kind: if clients { "client" } else { "peer" },
            addr,
            task,
        });
    }
    Ok(addrs)
}

/// Makes the membership carry this member's name and advertised client
/// URLs (`--initial-cluster` names only peer URLs, a MemberAdd only peer
/// URLs), as etcd members publish theirs: retried every `interval` until
/// the membership holds them or the member stops.
async fn publish(
    proposer: Proposer,
    name: String,
    client_urls: Vec<String>,
    interval: Duration,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let metrics = proposer.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let published = membership
            .get_node(&proposer.me)
            .is_some_and(|n| n.client_urls == client_urls && n.name == name);
        if published {
            tracing::debug!("name and client URLs published");
            return;
        }
        let result = match metrics.current_leader {
            Some(leader) if leader == proposer.me => {
                publish_member(&proposer.raft, leader, name.clone(), client_urls.clone()).await
            }
            Some(leader) => match membership.get_node(&leader) {
                Some(node) => {
                    proposer
                        .network
                        .publish(
                            leader,
                            &node.clone(),
                            name.clone(),
                            client_urls.clone(),
                            interval,
                        )
                        .await
                }
                None => Err("leader not in the membership".into()),
            },
            // Not in any membership yet (a member waiting to be added).
            None => Err("no leader".into()),
        };
        if let Err(e) = result {
            tracing::debug!("publishing name and client URLs: {e}");
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
    }
}
