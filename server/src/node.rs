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

use crate::config::{ClusterState, ConfigError, MemberConfig};
use crate::network::{ForwardError, GrpcNetworkFactory, Identity, RaftService};
use crate::raft::types::Raft;
use crate::raft::{
    Applier, KvApplier, LogStore, NodeId, Request, SettNode, StateMachineStore, StoreError,
    TypeConfig,
};
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::raft::ClientWriteResponse;
use openraft::SnapshotPolicy;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A state machine a [`Node`] can run on.
pub trait NodeApplier: Applier {
    /// Flushes and closes the databases; called once the Raft group has
    /// stopped.
    fn close(&self) -> Result<(), StoreError>;
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

/// openraft's configuration for a member: etcd's heartbeat and election
/// timeout (elections randomized over `[timeout, 2 × timeout)` as in
/// etcd), a snapshot every `--snapshot-count` entries, and
/// `--experimental-snapshot-catchup-entries` of log kept behind it.
pub fn raft_config(cfg: &MemberConfig) -> Result<openraft::Config, NodeError> {
    let c = openraft::Config {
        cluster_name: cfg.cluster_token.clone(),
        heartbeat_interval: cfg.heartbeat_interval_ms,
        election_timeout_min: cfg.election_timeout_ms,
        election_timeout_max: 2 * cfg.election_timeout_ms,
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
    let mut out = Vec::with_capacity(cfg.listen_peer_urls.len());
    for url in &cfg.listen_peer_urls {
        let bind_err = |source| NodeError::Bind {
            url: url.clone(),
            source,
        };
        let hostport = url.strip_prefix("http://").unwrap_or(url);
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
    network: GrpcNetworkFactory,
    peer_addrs: Vec<SocketAddr>,
    stop: tokio::sync::watch::Sender<bool>,
    servers: Vec<JoinHandle<Result<(), tonic::transport::Error>>>,
}

impl<A: NodeApplier> std::fmt::Debug for Node<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.config.name)
            .field("id", &self.config.node_id)
            .field("peer_addrs", &self.peer_addrs)
            .finish_non_exhaustive()
    }
}

impl<A: NodeApplier> Node<A> {
    /// Starts the member `cfg` (persisting `cfg` as `member.json`), with
    /// its state machine opened by `open_applier` on `<data-dir>/sm`, and
    /// serving the Raft transport on `--listen-peer-urls`.
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
        cfg.save()?;
        let raft_config = Arc::new(raft_config(&cfg)?);
        let dir = cfg.data_dir.clone();
        let log = LogStore::open(dir.join("raft"))?;
        let sm = StateMachineStore::open(open_applier(&dir.join("sm"))?, dir.join("snap"))?;
        let applier = sm.applier().clone();
        let me = Identity {
            cluster_id: cfg.cluster_id,
            node_id: cfg.node_id,
        };
        let network = GrpcNetworkFactory::new(me, Duration::from_millis(cfg.election_timeout_ms));
        let raft = Raft::new(cfg.node_id, raft_config, network.clone(), log.clone(), sm)
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;

        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut peer_addrs = Vec::new();
        let mut servers = Vec::new();
        for listener in listeners {
            peer_addrs.push(listener.local_addr().map_err(|source| NodeError::Bind {
                url: "peer listener".into(),
                source,
            })?);
            let svc = RaftService::new(raft.clone(), me).into_server();
            let mut stopped = stopped.clone();
            servers.push(tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(svc)
                    .serve_with_incoming_shutdown(
                        tokio_stream::wrappers::TcpListenerStream::new(listener),
                        async move {
                            let _ = stopped.wait_for(|s| *s).await;
                        },
                    ),
            ));
        }
        tracing::info!(
            name = %cfg.name,
            id = format_args!("{:x}", cfg.node_id),
            cluster = format_args!("{:x}", cfg.cluster_id),
            peers = ?peer_addrs,
            "member started"
        );
        let node = Node {
            config: cfg,
            raft,
            applier,
            log,
            network,
            peer_addrs,
            stop,
            servers,
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

    /// The peer transport client (for forwarding).
    pub fn network(&self) -> &GrpcNetworkFactory {
        &self.network
    }

    /// Proposes `request`: locally when this member leads, else forwarded
    /// to the leader. Retries once per leader change, a bounded number of
    /// times.
    pub async fn write(
        &self,
        request: Request,
        timeout: Duration,
    ) -> Result<ClientWriteResponse<TypeConfig>, WriteError> {
        const ATTEMPTS_MAX: usize = 3;
        let mut last = WriteError::NoLeader;
        for _ in 0..ATTEMPTS_MAX {
            let metrics = self.raft.metrics().borrow().clone();
            let Some(leader) = metrics.current_leader else {
                return Err(WriteError::NoLeader);
            };
            if leader == self.config.node_id {
                match self.raft.client_write(request.clone()).await {
                    Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                        // Leadership moved between the metrics and the write.
                        last = WriteError::NoLeader;
                        continue;
                    }
                    r => return Ok(r?),
                }
            }
            let Some(node) = metrics.membership_config.membership().get_node(&leader) else {
                return Err(WriteError::NoLeader);
            };
            match self
                .network
                .forward(leader, &node.clone(), &request, timeout)
                .await
            {
                Ok(r) => return Ok(r),
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

    /// Stops serving, stops the Raft group and closes the databases.
    pub async fn shutdown(self) -> Result<(), NodeError> {
        let _ = self.stop.send(true);
        for server in self.servers {
            match server.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("peer server: {e}"),
                Err(e) => tracing::warn!("peer server task: {e}"),
            }
        }
        self.raft
            .shutdown()
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        drop(self.raft);
        self.applier.close()?;
        self.log.close()?;
        tracing::info!(name = %self.config.name, "member stopped");
        Ok(())
    }
}
