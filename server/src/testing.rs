//! Support for tests of this crate and of crates built on it: a real
//! one-member cluster (engine storage, Raft, gRPC on ephemeral loopback
//! ports) running in the caller's Tokio runtime.

use crate::config::Flags;
use crate::node::{bind, Node, NodeError};
use crate::raft::MvccApplier;
use std::time::Duration;

/// The runtime the tests run a cluster in: two worker threads (the
/// machines this runs on have two cores), timers and I/O enabled.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("Tokio runtime")
}

/// Bound on waiting for the member to elect itself.
const LEADER_WAIT: Duration = Duration::from_secs(30);

/// A running one-member cluster and the directory it keeps its data in.
#[derive(Debug)]
pub struct SingleMember {
    /// The member.
    pub node: Node<MvccApplier>,
    /// `http://127.0.0.1:port` of its client services.
    pub client_url: String,
    _dir: tempfile::TempDir,
}

impl SingleMember {
    /// Starts a member in a fresh temporary directory and waits until it
    /// leads.
    pub async fn start() -> Result<SingleMember, NodeError> {
        SingleMember::start_with(|_| {}).await
    }

    /// As [`SingleMember::start`], with `adjust` applied to the member's
    /// flags first (limits, quotas, intervals).
    pub async fn start_with(adjust: impl FnOnce(&mut Flags)) -> Result<SingleMember, NodeError> {
        let dir = tempfile::tempdir().map_err(|source| NodeError::Bind {
            url: "temporary directory".into(),
            source,
        })?;
        let bind_any = || {
            bind("127.0.0.1:0".parse().expect("loopback address")).map_err(|source| {
                NodeError::Bind {
                    url: "127.0.0.1:0".into(),
                    source,
                }
            })
        };
        let (peer, client) = (bind_any()?, bind_any()?);
        let local = |l: &tokio::net::TcpListener| {
            l.local_addr().map_err(|source| NodeError::Bind {
                url: "listener".into(),
                source,
            })
        };
        let (peer_addr, client_addr) = (local(&peer)?, local(&client)?);
        let mut flags = Flags {
            name: Some("solo".into()),
            data_dir: Some(dir.path().to_owned()),
            listen_peer_urls: Some(format!("http://{peer_addr}")),
            initial_advertise_peer_urls: Some(format!("http://{peer_addr}")),
            listen_client_urls: Some(format!("http://{client_addr}")),
            advertise_client_urls: Some(format!("http://{client_addr}")),
            initial_cluster: Some(format!("solo=http://{peer_addr}")),
            heartbeat_interval: Some(50),
            election_timeout: Some(500),
            ..Flags::default()
        };
        adjust(&mut flags);
        let cfg = flags.resolve()?;
        let node =
            Node::start_with_all_listeners(cfg, |d| MvccApplier::open(d), vec![peer], vec![client])
                .await?;
        node.raft()
            .wait(Some(LEADER_WAIT))
            .metrics(|m| m.current_leader.is_some(), "leader")
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        Ok(SingleMember {
            node,
            client_url: format!("http://{client_addr}"),
            _dir: dir,
        })
    }

    /// A channel to the client services.
    pub async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(self.client_url.clone())
            .expect("valid URL")
            .connect()
            .await
            .expect("connect to the member")
    }
}
