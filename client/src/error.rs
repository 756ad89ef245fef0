//! The one error type of the client library and how retryable a failure
//! is.

use std::time::Duration;

/// etcd's message for a request refused because no leader is known.
pub(crate) const NO_LEADER: &str = "etcdserver: no leader";
/// etcd's message for a request not committed or confirmed in time.
pub(crate) const REQUEST_TIMED_OUT: &str = "etcdserver: request timed out";

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server (or the transport under the call) answered with a gRPC
    /// status; see [`Error::is_retryable`] and [`Error::status`].
    #[error("{}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    /// A transport error while building or connecting a channel.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// An endpoint that is not a valid `http://host:port` or `host:port`.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// [`crate::Client::connect`] was given no endpoint.
    #[error("no endpoints given")]
    NoEndpoints,
    /// TLS settings that cannot be used: a missing or unreadable file, a
    /// file that holds no certificate or key, an `https://` endpoint
    /// without a CA to verify it.
    #[error("TLS: {0}")]
    Tls(String),
    /// A call (with its retries) did not finish within its time bound.
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
    /// A watch could not be created or resumed at its revision because the
    /// history before `compact_revision` was compacted away. Watch again
    /// from `compact_revision` (after reading the current state).
    #[error("required revision has been compacted (compact revision {compact_revision})")]
    Compacted {
        /// The oldest revision still available.
        compact_revision: i64,
    },
    /// The server cancelled a watch for a reason other than compaction.
    #[error("watch canceled by the server: {reason}")]
    WatchCanceled {
        /// The server's cancel reason.
        reason: String,
    },
    /// A lease is gone: the server reported a TTL of zero or less for it.
    #[error("lease {id:#x} not found or expired")]
    LeaseExpired {
        /// The lease id.
        id: i64,
    },
    /// Options that contradict each other or a bad argument.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A response that breaks the protocol (e.g. a stream closed before
    /// its first message).
    #[error("unexpected response: {0}")]
    Protocol(String),
}

impl Error {
    /// The gRPC status, if the call failed with one.
    pub fn status(&self) -> Option<&tonic::Status> {
        match self {
            Error::Status(s) => Some(s),
            _ => None,
        }
    }

    /// Whether the failure is transient, so that the same call may succeed
    /// later (possibly on another member): `Unavailable` (which covers
    /// etcd's "no leader", "leader changed", "request timed out"), a
    /// broken connection, or a client-side timeout.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Status(s) => is_unavailable(s) || is_transport_failure(s),
            Error::Transport(_) | Error::Timeout(_) => true,
            _ => false,
        }
    }

    /// Whether the server said it has no leader (an election is going on
    /// or the member lost its quorum).
    pub fn is_no_leader(&self) -> bool {
        self.status().is_some_and(|s| s.message() == NO_LEADER)
    }
}

/// A status with code `Unavailable`.
pub(crate) fn is_unavailable(s: &tonic::Status) -> bool {
    s.code() == tonic::Code::Unavailable
}

/// A status made by the client's transport rather than sent by a server:
/// a reset or closed connection surfaces as `Unknown`, `Internal` or
/// `Cancelled` with the underlying error as its source (statuses decoded
/// from a server's answer carry no source).
pub(crate) fn is_transport_failure(s: &tonic::Status) -> bool {
    use std::error::Error as _;
    matches!(
        s.code(),
        tonic::Code::Unknown | tonic::Code::Internal | tonic::Code::Cancelled
    ) && s.source().is_some()
}
