//! The sett node: an openraft group whose log store and state machine both
//! live in sett-engine, serving the etcd v3 API.
//!
//! - [`mvcc`]: etcd's multi-version key-value semantics (revisions, ranges,
//!   transactions, compaction, the event log for watches) on the engine in
//!   managed mode.
//! - [`raft`]: the openraft type configuration, the engine-backed log store
//!   and state machine.
//! - [`network`]: the Raft transport between members over gRPC.
//! - [`node`]: one member: storage, Raft, bootstrap, write forwarding and
//!   linearizable reads.
//! - [`api`]: the etcd v3 services clients call.
//! - [`auth`]: users, roles, permissions and tokens (etcd's auth store).
//! - [`dbfile`]: the snapshot file of `Maintenance.Snapshot`.
//! - [`config`]: etcd-style flags and the member's persisted configuration.
//! - [`metrics`]: Prometheus series and the `/metrics` and `/health`
//!   listener.
//! - [`tls`]: TLS files, the listeners' rustls configuration, dialing
//!   `https://` URLs of other members.

pub mod api;
pub mod auth;
pub mod config;
pub mod dbfile;
pub mod debug_faults;
#[doc(hidden)]
pub mod fuzzing;
pub mod metrics;
pub mod mvcc;
pub mod network;
pub mod node;
pub mod raft;
mod read_batch;
pub mod testing;
pub mod tls;
