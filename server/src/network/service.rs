//! The receiving side of the Raft transport: the tonic `sett.raft.v1.Raft`
//! service over a local openraft `Raft`.
//!
//! Every call checks its `PeerHeader` first. `InstallSnapshot` writes the
//! data chunks into the file `Raft::begin_receiving_snapshot` hands out
//! and calls `Raft::install_full_snapshot` only after a trailer whose chunk
//! count and byte total match what arrived (fsynced first); a stream that
//! breaks off, or carries anything out of order, installs nothing and its
//! partial file is removed.
//!
//! `TakeOver` comes from a stopping leader naming this member its
//! successor ([`crate::node::handover`]); the service keeps when it last
//! accepted an AppendEntries for it.

use super::codec::{decode_request, encode_reply, Identity};
use crate::node::handover::{self, LastHeard};
use crate::raft::types::{Raft, Snapshot, SnapshotMeta, Vote};
use crate::raft::{NodeId, Request};
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use sett_proto::sett::raft::v1 as pb;
use sett_proto::sett::raft::v1::install_snapshot_request::Chunk;
use std::path::PathBuf;
use tokio::io::AsyncWriteExt;
use tokio_stream::StreamExt;
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status, Streaming};

/// The Raft transport service of one member.
#[derive(Clone)]
pub struct RaftService {
    raft: Raft,
    me: Identity,
    last_heard: LastHeard,
}

impl std::fmt::Debug for RaftService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftService").field("me", &self.me).finish()
    }
}

impl RaftService {
    /// The service of member `me`, handing messages to `raft`.
    pub fn new(raft: Raft, me: Identity) -> RaftService {
        RaftService {
            raft,
            me,
            last_heard: LastHeard::default(),
        }
    }

    /// As a tonic service, with sett's message size limits.
    pub fn into_server(self) -> pb::raft_server::RaftServer<RaftService> {
        pb::raft_server::RaftServer::new(self)
            .max_decoding_message_size(super::codec::MESSAGE_BYTES_MAX)
            .max_encoding_message_size(super::codec::MESSAGE_BYTES_MAX)
    }

    async fn receive_snapshot(
        &self,
        mut stream: Streaming<pb::InstallSnapshotRequest>,
    ) -> Result<pb::InstallSnapshotResponse, Status> {
        let header = match stream.next().await {
            Some(Ok(pb::InstallSnapshotRequest {
                chunk: Some(Chunk::Header(h)),
            })) => h,
            Some(Err(s)) => return Err(s),
            _ => {
                return Err(Status::invalid_argument(
                    "snapshot stream must start with a header",
                ))
            }
        };
        self.me.check(header.peer.as_ref())?;
        let vote: Vote = decode_request(&header.vote, "snapshot vote")?;
        let meta: SnapshotMeta = decode_request(&header.meta, "snapshot meta")?;
        let data = self
            .raft
            .begin_receiving_snapshot()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let path = data.path().to_owned();
        let guard = RemoveOnDrop(Some(path.clone()));
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .await
            .map_err(|e| Status::internal(format!("snapshot file: {e}")))?;
        let (mut chunk_count, mut size_bytes) = (0u64, 0u64);
        let trailer = loop {
            let msg = match stream.next().await {
                Some(m) => m?,
                None => return Err(Status::aborted("snapshot stream ended without a trailer")),
            };
            match msg.chunk {
                Some(Chunk::Data(b)) => {
                    chunk_count += 1;
                    size_bytes += b.len() as u64;
                    file.write_all(&b)
                        .await
                        .map_err(|e| Status::internal(format!("snapshot write: {e}")))?;
                }
                Some(Chunk::Trailer(t)) => break t,
                Some(Chunk::Header(_)) | None => {
                    return Err(Status::invalid_argument(
                        "snapshot stream carries a second header or an empty message",
                    ))
                }
            }
        };
        if stream.next().await.is_some() {
            return Err(Status::invalid_argument(
                "snapshot stream continues after its trailer",
            ));
        }
        if trailer.chunk_count != chunk_count || trailer.size_bytes != size_bytes {
            return Err(Status::data_loss(format!(
                "snapshot trailer says {} chunks / {} bytes, received {chunk_count} / {size_bytes}",
                trailer.chunk_count, trailer.size_bytes
            )));
        }
        file.flush()
            .await
            .and(file.sync_all().await)
            .map_err(|e| Status::internal(format!("snapshot sync: {e}")))?;
        drop(file);
        let snapshot = Snapshot {
            meta,
            snapshot: data,
        };
        // From here the state machine owns the file: if the leader gives up
        // on this call (its future is dropped) while the install runs, the
        // file must stay until the install has renamed it into place.
        // A file openraft refused is removed below; one left by a dropped
        // call is a `.part` file, removed when the member next starts.
        let mut guard = guard;
        guard.0 = None;
        let result = match self.raft.install_full_snapshot(vote, snapshot).await {
            Ok(resp) => pb::install_snapshot_response::Result::Ok(
                encode_reply(&resp, "snapshot response")?.into(),
            ),
            Err(fatal) => pb::install_snapshot_response::Result::Error(
                encode_reply(&fatal, "snapshot error")?.into(),
            ),
        };
        // An installed snapshot's file was renamed into place; one openraft
        // refused (stale vote) is still here.
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(?path, "leftover snapshot file not removed: {e}");
            }
        }
        Ok(pb::InstallSnapshotResponse {
            result: Some(result),
        })
    }
}

/// Removes a received snapshot file that was not installed.
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[tonic::async_trait]
impl pb::raft_server::Raft for RaftService {
    async fn append_entries(
        &self,
        request: GrpcRequest<pb::AppendEntriesRequest>,
    ) -> Result<GrpcResponse<pb::AppendEntriesResponse>, Status> {
        let req = request.into_inner();
        self.me.check(req.header.as_ref())?;
        let rpc = decode_request(&req.payload, "AppendEntries payload")?;
        let result = match self.raft.append_entries(rpc).await {
            Ok(r) => {
                if !matches!(r, openraft::raft::AppendEntriesResponse::HigherVote(_)) {
                    self.last_heard.touch();
                }
                pb::append_entries_response::Result::Ok(
                    encode_reply(&r, "AppendEntries response")?.into(),
                )
            }
            Err(e) => pb::append_entries_response::Result::Error(
                encode_reply(&e, "AppendEntries error")?.into(),
            ),
        };
        Ok(GrpcResponse::new(pb::AppendEntriesResponse {
            result: Some(result),
        }))
    }

    async fn vote(
        &self,
        request: GrpcRequest<pb::VoteRequest>,
    ) -> Result<GrpcResponse<pb::VoteResponse>, Status> {
        let req = request.into_inner();
        self.me.check(req.header.as_ref())?;
        let rpc = decode_request(&req.payload, "Vote payload")?;
        let result = match self.raft.vote(rpc).await {
            Ok(r) => pb::vote_response::Result::Ok(encode_reply(&r, "Vote response")?.into()),
            Err(e) => pb::vote_response::Result::Error(encode_reply(&e, "Vote error")?.into()),
        };
        Ok(GrpcResponse::new(pb::VoteResponse {
            result: Some(result),
        }))
    }

    async fn install_snapshot(
        &self,
        request: GrpcRequest<Streaming<pb::InstallSnapshotRequest>>,
    ) -> Result<GrpcResponse<pb::InstallSnapshotResponse>, Status> {
        self.receive_snapshot(request.into_inner())
            .await
            .map(GrpcResponse::new)
    }

    async fn forward(
        &self,
        request: GrpcRequest<pb::ForwardRequest>,
    ) -> Result<GrpcResponse<pb::ForwardResponse>, Status> {
        let req = request.into_inner();
        let from: NodeId = self.me.check(req.header.as_ref())?;
        let cmd: Request = decode_request(&req.payload, "forwarded request")?;
        tracing::debug!(from, "forwarded write");
        let written: Result<_, RaftError<NodeId, ClientWriteError<NodeId, _>>> =
            self.raft.client_write(cmd).await;
        let result = match written {
            Ok(r) => pb::forward_response::Result::Ok(encode_reply(&r, "write response")?.into()),
            Err(e) => pb::forward_response::Result::Error(encode_reply(&e, "write error")?.into()),
        };
        Ok(GrpcResponse::new(pb::ForwardResponse {
            result: Some(result),
        }))
    }

    async fn read_index(
        &self,
        request: GrpcRequest<pb::ReadIndexRequest>,
    ) -> Result<GrpcResponse<pb::ReadIndexResponse>, Status> {
        let req = request.into_inner();
        self.me.check(req.header.as_ref())?;
        let checked: Result<_, RaftError<NodeId, CheckIsLeaderError<NodeId, _>>> =
            self.raft.get_read_log_id().await;
        let result = match checked {
            Ok((read_log_id, _applied)) => {
                pb::read_index_response::Result::Index(read_log_id.map_or(0, |l| l.index))
            }
            Err(e) => {
                pb::read_index_response::Result::Error(encode_reply(&e, "read index error")?.into())
            }
        };
        Ok(GrpcResponse::new(pb::ReadIndexResponse {
            result: Some(result),
        }))
    }

    async fn publish(
        &self,
        request: GrpcRequest<pb::PublishRequest>,
    ) -> Result<GrpcResponse<pb::PublishResponse>, Status> {
        let req = request.into_inner();
        let from = self.me.check(req.header.as_ref())?;
        let error = match publish_member(&self.raft, from, req.name, req.client_urls).await {
            Ok(()) => String::new(),
            Err(e) => e,
        };
        Ok(GrpcResponse::new(pb::PublishResponse { error }))
    }

    async fn take_over(
        &self,
        request: GrpcRequest<pb::TakeOverRequest>,
    ) -> Result<GrpcResponse<pb::TakeOverResponse>, Status> {
        let req = request.into_inner();
        let from = self.me.check(req.header.as_ref())?;
        let error = match handover::accept(
            &self.raft,
            from,
            &self.last_heard,
            req.heartbeats_stopped_ms_ago,
            req.last_log_index,
        ) {
            Ok(()) => String::new(),
            Err(e) => e,
        };
        Ok(GrpcResponse::new(pb::TakeOverResponse { error }))
    }
}

/// Records `name` and `client_urls` as member `id`'s in the membership
/// (on the leader). The member's peer URLs stay as they are, so no Raft
/// message is routed differently.
pub async fn publish_member(
    raft: &Raft,
    id: NodeId,
    name: String,
    client_urls: Vec<String>,
) -> Result<(), String> {
    let metrics = raft.metrics().borrow().clone();
    let Some(current) = metrics
        .membership_config
        .membership()
        .get_node(&id)
        .cloned()
    else {
        return Err(format!("member {id:x} is not in the membership"));
    };
    if current.client_urls == client_urls && current.name == name {
        return Ok(());
    }
    let node = crate::raft::SettNode {
        name,
        client_urls,
        ..current
    };
    let change = openraft::ChangeMembers::SetNodes(std::collections::BTreeMap::from([(id, node)]));
    raft.change_membership(change, true)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}
