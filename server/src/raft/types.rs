//! The openraft type configuration of sett and the commands its log carries.
//!
//! - [`TypeConfig`]: `NodeId = u64`, `Node = SettNode` (peer and client
//!   URLs), `D = Request`, `R = Response`, `SnapshotData = SnapshotFile`
//!   (a handle on a snapshot file, fit for `generic-snapshot-data`: the
//!   network layer streams the file, the follower writes the chunks into
//!   the handle `begin_receiving_snapshot` gave it), Tokio runtime.
//! - [`Request`]: one state-machine command. etcd requests travel as their
//!   protobuf encoding, so the log needs no second serialisation of etcd's
//!   messages;
//!   the leader fills in what must be decided once for the whole cluster
//!   (a lease id, a revision to compact to) before proposing.
//! - [`Response`]: the result of applying one entry; a deterministic
//!   refusal (unknown lease, conflicting native transaction, ...) is a
//!   [`Response::Failed`], never a storage error, because every member
//!   reaches the same verdict.
//!
//! Every type here is serialised with `postcard` in the Raft log and in
//! the state machine's applied-state record, so variants may be added only
//! at the end of an enum.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A member's id (etcd's member id).
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The openraft type configuration of a sett cluster.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = SettNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = SnapshotFile,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A log entry of sett's Raft log.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id (term, leader and index).
pub type LogId = openraft::LogId<NodeId>;
/// A vote.
pub type Vote = openraft::Vote<NodeId>;
/// The membership as recorded by the state machine.
pub type StoredMembership = openraft::StoredMembership<NodeId, SettNode>;
/// A membership configuration.
pub type Membership = openraft::Membership<NodeId, SettNode>;
/// What describes a snapshot: last applied log id, membership, id.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, SettNode>;
/// A snapshot: meta plus data handle.
pub type Snapshot = openraft::Snapshot<TypeConfig>;
/// openraft's storage error for sett's node id.
pub type StorageError = openraft::StorageError<NodeId>;
/// The Raft handle of a sett node.
pub type Raft = openraft::Raft<TypeConfig>;

/// What a member publishes about itself (etcd's `Member` without id/name).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettNode {
    /// The member's name (`--name`).
    pub name: String,
    /// URLs other members reach the Raft transport at.
    pub peer_urls: Vec<String>,
    /// URLs clients reach the etcd and native APIs at.
    pub client_urls: Vec<String>,
}

impl std::fmt::Display for SettNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}(peers={:?}, clients={:?})",
            self.name, self.peer_urls, self.client_urls
        )
    }
}

/// One state-machine command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// An `etcdserverpb.PutRequest`, protobuf-encoded.
    Put(Vec<u8>),
    /// An `etcdserverpb.DeleteRangeRequest`, protobuf-encoded.
    DeleteRange(Vec<u8>),
    /// An `etcdserverpb.TxnRequest`, protobuf-encoded.
    Txn(Vec<u8>),
    /// An `etcdserverpb.CompactionRequest`, protobuf-encoded.
    Compact(Vec<u8>),
    /// An `etcdserverpb.LeaseGrantRequest`, protobuf-encoded, with the id
    /// already chosen by the leader when the client asked for id 0.
    LeaseGrant(Vec<u8>),
    /// An `etcdserverpb.LeaseRevokeRequest`, protobuf-encoded (also used
    /// by the leader for expired leases).
    LeaseRevoke(Vec<u8>),
    /// A commit of a native interactive transaction (`sett.v1`),
    /// protobuf-encoded: read revision, read set and writes; the state
    /// machine aborts it deterministically on conflict.
    NativeCommit(Vec<u8>),
    /// Changes nothing (a leader's barrier, tests).
    Noop,
    /// An `etcdserverpb.AlarmRequest` (activate or deactivate),
    /// protobuf-encoded.
    Alarm(Vec<u8>),
    /// A change of the auth state (passwords already hashed, tokens
    /// already chosen by the member that received the request).
    Auth(crate::auth::AuthCommand),
    /// A client's write (`request`) made by `user` (empty: no user; auth
    /// was disabled when the request was received): while auth is
    /// enabled, the state machine applies it only if `user` holds the
    /// permissions it needs in the auth state at apply time.
    AsUser {
        /// The user the request's token named.
        user: String,
        /// The write.
        request: Box<Request>,
    },
}

impl Request {
    /// The request itself, without its [`Request::AsUser`] wrapping.
    pub fn inner(&self) -> &Request {
        match self {
            Request::AsUser { request, .. } => request.inner(),
            r => r,
        }
    }
}

/// The class of a deterministic refusal, mapped to a gRPC code at the
/// server edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureKind {
    /// gRPC `InvalidArgument`.
    InvalidArgument,
    /// gRPC `NotFound`.
    NotFound,
    /// gRPC `OutOfRange`.
    OutOfRange,
    /// gRPC `FailedPrecondition`.
    FailedPrecondition,
    /// gRPC `ResourceExhausted`.
    ResourceExhausted,
    /// gRPC `Aborted`: a native transaction lost a conflict.
    Conflict,
    /// gRPC `PermissionDenied`.
    PermissionDenied,
    /// gRPC `Unauthenticated`.
    Unauthenticated,
}

impl FailureKind {
    /// The gRPC code a client gets.
    pub fn code(self) -> tonic::Code {
        match self {
            FailureKind::InvalidArgument => tonic::Code::InvalidArgument,
            FailureKind::NotFound => tonic::Code::NotFound,
            FailureKind::OutOfRange => tonic::Code::OutOfRange,
            FailureKind::FailedPrecondition => tonic::Code::FailedPrecondition,
            FailureKind::ResourceExhausted => tonic::Code::ResourceExhausted,
            FailureKind::Conflict => tonic::Code::Aborted,
            FailureKind::PermissionDenied => tonic::Code::PermissionDenied,
            FailureKind::Unauthenticated => tonic::Code::Unauthenticated,
        }
    }
}

/// The result of applying one log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Nothing to report (blank, membership and no-op entries).
    Empty,
    /// The protobuf-encoded etcd (or native) response.
    Encoded(Vec<u8>),
    /// A deterministic refusal with etcd's error message text.
    Failed {
        /// Which gRPC code the edge returns.
        kind: FailureKind,
        /// The message, exactly as etcd words it.
        message: String,
    },
    /// A deterministic refusal that carries an encoded error detail for
    /// the client (a native transaction's `sett.v1.ErrorDetail`), sent in
    /// the gRPC status details.
    FailedWithDetail {
        /// Which gRPC code the edge returns.
        kind: FailureKind,
        /// The message.
        message: String,
        /// The encoded detail message.
        detail: Vec<u8>,
    },
}

/// The data of a snapshot: a file in the snapshot format of
/// [`crate::raft::snapshot_codec`].
///
/// The leader's handle points at a finished snapshot file; the handle
/// returned by `begin_receiving_snapshot` points at an empty file under the
/// receiving member's snapshot directory that the network layer fills
/// (with [`SnapshotFile::path`] and ordinary file writes) before calling
/// `Raft::install_full_snapshot`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    path: PathBuf,
}

impl SnapshotFile {
    /// A handle on the file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> SnapshotFile {
        SnapshotFile { path: path.into() }
    }

    /// Where the snapshot's bytes are.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
