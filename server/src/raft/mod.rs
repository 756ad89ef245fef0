//! openraft on sett-engine.
//!
//! - [`types`]: the openraft type configuration and the log's commands.
//! - [`log_store`]: the Raft log, vote and purge point in a dedicated
//!   engine database (`<data-dir>/raft`), durable before openraft is told.
//! - [`state_machine`]: openraft's state machine and snapshot builder over
//!   an [`Applier`], plus the snapshot files.
//! - [`kv_applier`]: a plain key-value [`Applier`] for tests.
//! - [`mvcc_applier`]: the etcd MVCC store as the [`Applier`].
//! - [`snapshot_codec`]: the snapshot file format (engine stream frames).
//! - [`dir_switch`]: crash-safe swap of a database directory on install.

pub mod dir_switch;
pub mod error;
pub mod kv_applier;
pub mod log_store;
pub mod mvcc_applier;
pub mod snapshot_codec;
pub mod state_machine;
pub mod types;

pub use error::StoreError;
pub use kv_applier::KvApplier;
pub use log_store::LogStore;
pub use mvcc_applier::MvccApplier;
pub use state_machine::{AppliedState, Applier, SnapshotBuilder, StateMachineStore};
pub use types::{
    Entry, FailureKind, LogId, NodeId, Request, Response, SettNode, SnapshotFile, TypeConfig,
};
