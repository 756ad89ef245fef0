//! The sending side of the Raft transport: openraft's network over tonic
//! channels.
//!
//! One lazily connected [`Channel`] per peer, shared by every openraft
//! replication stream and by [`GrpcNetworkFactory::forward`]; tonic
//! reconnects it on its own after a failure. A channel is replaced when a
//! peer's first peer URL changes. Transport failures map to openraft's
//! errors: no connection → `Unreachable` (openraft backs off), a call past
//! `RPCOption::hard_ttl` → `Timeout`, anything else → `NetworkError`; an
//! error returned by the remote `Raft` → `RemoteError`.
//!
//! Snapshots stream their file as `SnapshotHeader`, data chunks, then a
//! `SnapshotTrailer` with the chunk count and byte total; each chunk must
//! be accepted by the transport within `hard_ttl` (an idle timeout, not a
//! bound on the whole transfer), and the transfer stops when openraft
//! cancels the replication stream.

use super::codec::{encode, Identity, MESSAGE_BYTES_MAX};
use crate::raft::types::{Snapshot, Vote};
use crate::raft::{NodeId, Request, SettNode, TypeConfig};
use openraft::error::{
    CheckIsLeaderError, ClientWriteError, Fatal, NetworkError, RPCError, RaftError, RemoteError,
    ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, ClientWriteResponse, SnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{StorageError, StorageIOError};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use sett_proto::sett::raft::v1 as pb;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tonic::transport::{Channel, ClientTlsConfig};
use tonic::{Code, Status};

type Client = pb::raft_client::RaftClient<Channel>;
type RpcErr = RPCError<NodeId, SettNode, RaftError<NodeId>>;
type SnapErr = StreamingError<TypeConfig, Fatal<NodeId>>;

/// Snapshot data chunk size when openraft names none, in bytes.
const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;
/// Largest snapshot data chunk, in bytes (well under the gRPC limit).
const SNAPSHOT_CHUNK_BYTES_MAX: usize = 4 << 20;
/// Snapshot messages buffered between the file reader and the transport.
const SNAPSHOT_QUEUE_DEPTH: usize = 4;

#[derive(Debug)]
struct Peers {
    me: Identity,
    connect_timeout: Duration,
    /// Per peer: the URL the channel was built for, and the channel.
    channels: Mutex<HashMap<NodeId, (String, Channel)>>,
    /// How `https://` peer URLs are dialed.
    tls: Option<ClientTlsConfig>,
}

fn unreachable(msg: impl Into<String>) -> Unreachable {
    Unreachable::new(&std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        msg.into(),
    ))
}

impl Peers {
    fn client(&self, target: NodeId, node: &SettNode) -> Result<Client, Unreachable> {
        let url = node
            .peer_urls
            .first()
            .ok_or_else(|| unreachable(format!("member {target:x} has no peer URL")))?;
        let mut channels = self.channels.lock();
        let channel = match channels.get(&target) {
            Some((u, ch)) if u == url => ch.clone(),
            _ => {
                let endpoint = crate::tls::endpoint(url, self.tls.as_ref())
                    .map_err(|e| unreachable(format!("bad peer URL {url:?}: {e}")))?
                    .connect_timeout(self.connect_timeout)
                    .tcp_nodelay(true);
                let ch = endpoint.connect_lazy();
                channels.insert(target, (url.clone(), ch.clone()));
                ch
            }
        };
        Ok(Client::new(channel)
            .max_decoding_message_size(MESSAGE_BYTES_MAX)
            .max_encoding_message_size(MESSAGE_BYTES_MAX))
    }
}

/// openraft's `RaftNetworkFactory` over gRPC; cheap to clone (clones share
/// the channels).
#[derive(Debug, Clone)]
pub struct GrpcNetworkFactory {
    peers: Arc<Peers>,
}

impl GrpcNetworkFactory {
    /// A factory for the member `me`; `connect_timeout` bounds each TCP
    /// connection attempt.
    pub fn new(me: Identity, connect_timeout: Duration) -> GrpcNetworkFactory {
        GrpcNetworkFactory::with_tls(me, connect_timeout, None)
    }

    /// As [`GrpcNetworkFactory::new`], dialing `https://` peer URLs with
    /// `tls` (the peer CA and this member's peer certificate).
    pub fn with_tls(
        me: Identity,
        connect_timeout: Duration,
        tls: Option<ClientTlsConfig>,
    ) -> GrpcNetworkFactory {
        GrpcNetworkFactory {
            peers: Arc::new(Peers {
                me,
                connect_timeout,
                channels: Mutex::new(HashMap::new()),
                tls: tls.map(|t| t.timeout(connect_timeout)),
            }),
        }
    }

    /// This member's identity on the transport.
    pub fn identity(&self) -> Identity {
        self.peers.me
    }

    /// Sends `request` to `leader` (at `node`), which proposes it with
    /// `Raft::client_write` and answers once it is applied. `timeout`
    /// bounds the whole call.
    pub async fn forward(
        &self,
        leader: NodeId,
        node: &SettNode,
        request: &Request,
        timeout: Duration,
    ) -> Result<ClientWriteResponse<TypeConfig>, ForwardError> {
        let mut client = self
            .peers
            .client(leader, node)
            .map_err(|e| ForwardError::Unreachable(leader, e.to_string()))?;
        let payload = encode(request).map_err(|e| ForwardError::Protocol(e.to_string()))?;
        let req = pb::ForwardRequest {
            header: Some(self.peers.me.header_to(leader)),
            payload: payload.into(),
        };
        let reply = match tokio::time::timeout(timeout, client.forward(req)).await {
            Err(_) => return Err(ForwardError::Timeout(leader)),
            Ok(Err(s)) if is_unreachable(&s) => {
                return Err(ForwardError::Unreachable(leader, s.to_string()))
            }
            Ok(Err(s)) => return Err(ForwardError::Protocol(s.to_string())),
            Ok(Ok(r)) => r.into_inner(),
        };
        match reply.result {
            Some(pb::forward_response::Result::Ok(b)) => {
                postcard::from_bytes(&b).map_err(|e| ForwardError::Protocol(e.to_string()))
            }
            Some(pb::forward_response::Result::Error(b)) => Err(ForwardError::Remote(
                postcard::from_bytes(&b).map_err(|e| ForwardError::Protocol(e.to_string()))?,
            )),
            None => Err(ForwardError::Protocol("empty forward reply".into())),
        }
    }
}

impl GrpcNetworkFactory {
    /// Asks `leader` (at `node`) for a read index: it confirms its
    /// leadership with a quorum and answers the log index a linearizable
    /// read must see applied. `timeout` bounds the whole call.
    pub async fn read_index(
        &self,
        leader: NodeId,
        node: &SettNode,
        timeout: Duration,
    ) -> Result<u64, ReadIndexError> {
        let mut client = self
            .peers
            .client(leader, node)
            .map_err(|e| ReadIndexError::Unreachable(leader, e.to_string()))?;
        let req = pb::ReadIndexRequest {
            header: Some(self.peers.me.header_to(leader)),
        };
        let reply = match tokio::time::timeout(timeout, client.read_index(req)).await {
            Err(_) => return Err(ReadIndexError::Timeout(leader)),
            Ok(Err(s)) if is_unreachable(&s) => {
                return Err(ReadIndexError::Unreachable(leader, s.to_string()))
            }
            Ok(Err(s)) => return Err(ReadIndexError::Protocol(s.to_string())),
            Ok(Ok(r)) => r.into_inner(),
        };
        match reply.result {
            Some(pb::read_index_response::Result::Index(i)) => Ok(i),
            Some(pb::read_index_response::Result::Error(b)) => Err(ReadIndexError::Remote(
                postcard::from_bytes(&b).map_err(|e| ReadIndexError::Protocol(e.to_string()))?,
            )),
            None => Err(ReadIndexError::Protocol("empty read index reply".into())),
        }
    }
}

impl GrpcNetworkFactory {
    /// Asks `leader` (at `node`) to record this member's `name` and
    /// `client_urls` in the membership.
    pub async fn publish(
        &self,
        leader: NodeId,
        node: &SettNode,
        name: String,
        client_urls: Vec<String>,
        timeout: Duration,
    ) -> Result<(), String> {
        let mut client = self.peers.client(leader, node).map_err(|e| e.to_string())?;
        let req = pb::PublishRequest {
            header: Some(self.peers.me.header_to(leader)),
            client_urls,
            name,
        };
        match tokio::time::timeout(timeout, client.publish(req)).await {
            Err(_) => Err(format!("leader {leader:x} did not answer in time")),
            Ok(Err(s)) => Err(s.to_string()),
            Ok(Ok(r)) if r.get_ref().error.is_empty() => Ok(()),
            Ok(Ok(r)) => Err(r.into_inner().error),
        }
    }
}

impl GrpcNetworkFactory {
    /// Tells `successor` (at `node`) that this member, its leader, has
    /// stopped Raft `stopped_ms_ago` milliseconds ago after it matched
    /// log index `last_log_index`, so that it campaigns at once
    /// (`crate::node::handover`).
    pub async fn take_over(
        &self,
        successor: NodeId,
        node: &SettNode,
        stopped_ms_ago: u64,
        last_log_index: u64,
        timeout: Duration,
    ) -> Result<(), String> {
        let mut client = self
            .peers
            .client(successor, node)
            .map_err(|e| e.to_string())?;
        let req = pb::TakeOverRequest {
            header: Some(self.peers.me.header_to(successor)),
            heartbeats_stopped_ms_ago: stopped_ms_ago,
            last_log_index,
        };
        match tokio::time::timeout(timeout, client.take_over(req)).await {
            Err(_) => Err(format!("member {successor:x} did not answer in time")),
            Ok(Err(s)) => Err(s.to_string()),
            Ok(Ok(r)) if r.get_ref().error.is_empty() => Ok(()),
            Ok(Ok(r)) => Err(r.into_inner().error),
        }
    }
}

/// Why a leader gave no read index.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadIndexError {
    /// No connection to the leader.
    #[error("leader {0:x} unreachable: {1}")]
    Unreachable(NodeId, String),
    /// No answer in time.
    #[error("leader {0:x} did not answer in time")]
    Timeout(NodeId),
    /// The receiver refused: typically `ForwardToLeader` when it is no
    /// longer the leader, or `QuorumNotEnough`.
    #[error("{0}")]
    Remote(RaftError<NodeId, CheckIsLeaderError<NodeId, SettNode>>),
    /// The reply did not decode, or the receiver refused the message.
    #[error("read index protocol error: {0}")]
    Protocol(String),
}

/// Why a forwarded write has no result.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardError {
    /// No connection to the leader; the write was not delivered.
    #[error("leader {0:x} unreachable: {1}")]
    Unreachable(NodeId, String),
    /// No answer in time; the write may or may not have been applied.
    #[error("leader {0:x} did not answer in time")]
    Timeout(NodeId),
    /// The receiver refused: typically `ForwardToLeader` when it is no
    /// longer the leader.
    #[error("{0}")]
    Remote(RaftError<NodeId, ClientWriteError<NodeId, SettNode>>),
    /// The reply did not decode, or the receiver refused the message.
    #[error("forward protocol error: {0}")]
    Protocol(String),
}

impl RaftNetworkFactory<TypeConfig> for GrpcNetworkFactory {
    type Network = GrpcNetwork;

    async fn new_client(&mut self, target: NodeId, node: &SettNode) -> GrpcNetwork {
        GrpcNetwork {
            peers: self.peers.clone(),
            target,
            node: node.clone(),
        }
    }
}

/// openraft's `RaftNetwork` to one peer over gRPC.
#[derive(Debug)]
pub struct GrpcNetwork {
    peers: Arc<Peers>,
    target: NodeId,
    node: SettNode,
}

fn is_unreachable(s: &Status) -> bool {
    // A refused or failed connection is `Unavailable`; a member of another
    // cluster (or a reused address) is refused by its header check.
    matches!(s.code(), Code::Unavailable | Code::FailedPrecondition)
}

impl GrpcNetwork {
    fn rpc_error(&self, s: Status, action: RPCTypes, ttl: Duration) -> RpcErr {
        if is_unreachable(&s) {
            RPCError::Unreachable(unreachable(s.to_string()))
        } else if s.code() == Code::DeadlineExceeded {
            self.timeout(action, ttl).into()
        } else {
            RPCError::Network(NetworkError::new(&s))
        }
    }

    fn timeout(&self, action: RPCTypes, ttl: Duration) -> Timeout<NodeId> {
        Timeout {
            action,
            id: self.peers.me.node_id,
            target: self.target,
            timeout: ttl,
        }
    }

    /// Decodes a unary reply's `ok` / `error` payloads.
    // The error type is openraft's, fixed by the `RaftNetwork` trait.
    #[allow(clippy::result_large_err)]
    fn decode<T: DeserializeOwned>(
        &self,
        ok: Option<Result<bytes::Bytes, bytes::Bytes>>,
    ) -> Result<T, RpcErr> {
        let bad = |e: postcard::Error| RPCError::Network(NetworkError::new(&e));
        match ok {
            Some(Ok(b)) => postcard::from_bytes(&b).map_err(bad),
            Some(Err(b)) => {
                let e: RaftError<NodeId> = postcard::from_bytes(&b).map_err(bad)?;
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            None => Err(RPCError::Network(NetworkError::new(&std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "empty reply",
            )))),
        }
    }

    async fn send_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, SnapErr> {
        let mut client = self.peers.client(self.target, &self.node)?;
        let ttl = option.hard_ttl();
        let chunk_bytes = option
            .snapshot_chunk_size()
            .unwrap_or(SNAPSHOT_CHUNK_BYTES)
            .clamp(1, SNAPSHOT_CHUNK_BYTES_MAX);
        let storage = |e: &dyn std::error::Error| -> SnapErr {
            let e = std::io::Error::other(e.to_string());
            StreamingError::StorageError(StorageError::from(StorageIOError::read_snapshot(
                Some(snapshot.meta.signature()),
                &e,
            )))
        };
        let header = pb::SnapshotHeader {
            peer: Some(self.peers.me.header_to(self.target)),
            vote: encode(&vote).map_err(|e| storage(&e))?.into(),
            meta: encode(&snapshot.meta).map_err(|e| storage(&e))?.into(),
        };
        let mut file = tokio::fs::File::open(snapshot.snapshot.path())
            .await
            .map_err(|e| storage(&e))?;
        let (tx, rx) = tokio::sync::mpsc::channel(SNAPSHOT_QUEUE_DEPTH);
        let timeout = self.timeout(RPCTypes::InstallSnapshot, ttl);
        let closed = || -> SnapErr {
            NetworkError::new(&std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "snapshot stream closed by the transport",
            ))
            .into()
        };
        let produce = async move {
            let send = |chunk: pb::install_snapshot_request::Chunk| {
                let (tx, timeout) = (tx.clone(), timeout.clone());
                async move {
                    let msg = pb::InstallSnapshotRequest { chunk: Some(chunk) };
                    match tokio::time::timeout(ttl, tx.send(msg)).await {
                        Err(_) => Err(SnapErr::from(timeout.clone())),
                        Ok(Err(_)) => Err(closed()),
                        Ok(Ok(())) => Ok(()),
                    }
                }
            };
            send(pb::install_snapshot_request::Chunk::Header(header)).await?;
            let (mut chunk_count, mut size_bytes) = (0u64, 0u64);
            loop {
                let mut buf = Vec::with_capacity(chunk_bytes);
                // Fill the chunk (a short read is not the end of the file).
                while buf.len() < chunk_bytes {
                    let n = (&mut file)
                        .take((chunk_bytes - buf.len()) as u64)
                        .read_to_end(&mut buf)
                        .await
                        .map_err(|e| storage(&e))?;
                    if n == 0 {
                        break;
                    }
                }
                if buf.is_empty() {
                    break;
                }
                chunk_count += 1;
                size_bytes += buf.len() as u64;
                let last = buf.len() < chunk_bytes;
                send(pb::install_snapshot_request::Chunk::Data(buf.into())).await?;
                if last {
                    break;
                }
            }
            send(pb::install_snapshot_request::Chunk::Trailer(
                pb::SnapshotTrailer {
                    chunk_count,
                    size_bytes,
                },
            ))
            .await
        };
        let call = client.install_snapshot(tokio_stream::wrappers::ReceiverStream::new(rx));
        let (produced, called) = tokio::join!(produce, call);
        let reply = match called {
            Ok(r) => r.into_inner(),
            Err(s) if is_unreachable(&s) => {
                return Err(StreamingError::Unreachable(unreachable(s.to_string())))
            }
            Err(s) => {
                // The reader's own failure, if any, explains more.
                produced?;
                return Err(NetworkError::new(&s).into());
            }
        };
        produced?;
        let bad = |e: postcard::Error| SnapErr::from(NetworkError::new(&e));
        match reply.result {
            Some(pb::install_snapshot_response::Result::Ok(b)) => {
                postcard::from_bytes(&b).map_err(bad)
            }
            Some(pb::install_snapshot_response::Result::Error(b)) => {
                let fatal: Fatal<NodeId> = postcard::from_bytes(&b).map_err(bad)?;
                Err(StreamingError::RemoteError(RemoteError::new(
                    self.target,
                    fatal,
                )))
            }
            None => Err(closed()),
        }
    }
}

impl RaftNetwork<TypeConfig> for GrpcNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        let mut client = self.peers.client(self.target, &self.node)?;
        let ttl = option.hard_ttl();
        let req = pb::AppendEntriesRequest {
            header: Some(self.peers.me.header_to(self.target)),
            payload: encode(&rpc)
                .map_err(|e| RPCError::Network(NetworkError::new(&e)))?
                .into(),
        };
        let reply = match tokio::time::timeout(ttl, client.append_entries(req)).await {
            Err(_) => return Err(self.timeout(RPCTypes::AppendEntries, ttl).into()),
            Ok(Err(s)) => return Err(self.rpc_error(s, RPCTypes::AppendEntries, ttl)),
            Ok(Ok(r)) => r.into_inner(),
        };
        self.decode(reply.result.map(|r| match r {
            pb::append_entries_response::Result::Ok(b) => Ok(b),
            pb::append_entries_response::Result::Error(b) => Err(b),
        }))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        let mut client = self.peers.client(self.target, &self.node)?;
        let ttl = option.hard_ttl();
        let req = pb::VoteRequest {
            header: Some(self.peers.me.header_to(self.target)),
            payload: encode(&rpc)
                .map_err(|e| RPCError::Network(NetworkError::new(&e)))?
                .into(),
        };
        let reply = match tokio::time::timeout(ttl, client.vote(req)).await {
            Err(_) => return Err(self.timeout(RPCTypes::Vote, ttl).into()),
            Ok(Err(s)) => return Err(self.rpc_error(s, RPCTypes::Vote, ttl)),
            Ok(Ok(r)) => r.into_inner(),
        };
        self.decode(reply.result.map(|r| match r {
            pb::vote_response::Result::Ok(b) => Ok(b),
            pb::vote_response::Result::Error(b) => Err(b),
        }))
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, SnapErr> {
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            r = self.send_snapshot(vote, snapshot, option) => r,
        }
    }
}
