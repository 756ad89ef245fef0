//! An in-memory Raft network for tests: members in one process call each
//! other's `Raft` handles directly; a snapshot "transfer" copies the file
//! into the handle from `begin_receiving_snapshot`, as the gRPC transport
//! streams it. Generic over the state machine's applier.

use openraft::error::{
    Fatal, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed, StreamingError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{Config, SnapshotPolicy};
use parking_lot::Mutex;
use sett_server::raft::types::{Raft, Snapshot, Vote};
use sett_server::raft::{NodeId, SettNode, TypeConfig};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

/// A running member: its Raft handle and its state.
pub type Member<A> = (Raft, Arc<A>);

/// The Raft configuration of the in-memory test clusters: fast elections,
/// a snapshot every 40 entries and no log kept behind it (so a member that
/// falls behind catches up by snapshot).
pub fn config() -> Arc<Config> {
    let c = Config {
        heartbeat_interval: 50,
        election_timeout_min: 300,
        election_timeout_max: 600,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(40),
        max_in_snapshot_log_to_keep: 0,
        purge_batch_size: 1,
        ..Config::default()
    };
    Arc::new(c.validate().expect("valid config"))
}

/// The members reachable through the network, by id.
pub struct Router<A> {
    pub nodes: Arc<Mutex<BTreeMap<NodeId, Member<A>>>>,
}

impl<A> Clone for Router<A> {
    fn clone(&self) -> Self {
        Router {
            nodes: self.nodes.clone(),
        }
    }
}

impl<A> Default for Router<A> {
    fn default() -> Self {
        Router {
            nodes: Arc::default(),
        }
    }
}

impl<A> Router<A> {
    pub fn raft(&self, id: NodeId) -> Result<Raft, Unreachable> {
        self.nodes
            .lock()
            .get(&id)
            .map(|(r, _)| r.clone())
            .ok_or_else(|| {
                Unreachable::new(&std::io::Error::new(
                    std::io::ErrorKind::NotConnected,
                    format!("node {id} is down"),
                ))
            })
    }
}

/// A connection to one member.
pub struct Conn<A> {
    target: NodeId,
    router: Router<A>,
}

impl<A: Send + Sync + 'static> RaftNetworkFactory<TypeConfig> for Router<A> {
    type Network = Conn<A>;

    async fn new_client(&mut self, target: NodeId, _node: &SettNode) -> Conn<A> {
        Conn {
            target,
            router: self.clone(),
        }
    }
}

type RpcErr = RPCError<NodeId, SettNode, RaftError<NodeId>>;

impl<A: Send + Sync + 'static> RaftNetwork<TypeConfig> for Conn<A> {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        let raft = self.router.raft(self.target)?;
        raft.append_entries(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        let raft = self.router.raft(self.target)?;
        raft.vote(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        _cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let raft = self.router.raft(self.target)?;
        let remote =
            |e: Fatal<NodeId>| StreamingError::RemoteError(RemoteError::new(self.target, e));
        let recv = raft
            .begin_receiving_snapshot()
            .await
            .map_err(|e| remote(e.into_fatal().expect("only fatal errors")))?;
        // The "transfer": the gRPC transport streams these bytes instead.
        let (from, to) = (snapshot.snapshot.path().to_owned(), recv.path().to_owned());
        tokio::task::spawn_blocking(move || std::fs::copy(from, to))
            .await
            .expect("copy task")
            .map_err(|e| NetworkError::new(&e))?;
        let snapshot = Snapshot {
            meta: snapshot.meta,
            snapshot: recv,
        };
        raft.install_full_snapshot(vote, snapshot)
            .await
            .map_err(remote)
    }
}

/// The membership record of member `id`.
pub fn node(id: NodeId) -> SettNode {
    SettNode {
        name: format!("n{id}"),
        peer_urls: vec![format!("mem://{id}")],
        client_urls: Vec::new(),
    }
}
