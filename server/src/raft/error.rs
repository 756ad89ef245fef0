//! Errors of the Raft storage layer and their conversion into openraft's
//! [`openraft::StorageError`] (which makes openraft stop the node: every
//! error here means the local disk state cannot be trusted or written).

use super::types::{LogId, NodeId, StorageError};
use openraft::{ErrorSubject, ErrorVerb, StorageIOError};

/// What can go wrong below openraft.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The engine failed.
    #[error("engine: {0}")]
    Engine(#[from] sett_engine::Error),
    /// A file outside the engine (snapshot files, directory switch) failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A stored record does not decode.
    #[error("decode: {0}")]
    Decode(#[from] postcard::Error),
    /// Stored bytes are inconsistent (bad checksum, wrong index, bad magic).
    #[error("corruption: {0}")]
    Corruption(String),
    /// A blocking task panicked or was cancelled.
    #[error("background task failed: {0}")]
    Task(String),
}

impl StoreError {
    /// As an openraft error about `subject` / `verb`.
    pub fn to_storage(&self, subject: ErrorSubject<NodeId>, verb: ErrorVerb) -> StorageError {
        StorageIOError::new(subject, verb, self).into()
    }

    /// Failure writing log entries.
    pub fn write_logs(&self) -> StorageError {
        StorageIOError::write_logs(self).into()
    }

    /// Failure reading log entries.
    pub fn read_logs(&self) -> StorageError {
        StorageIOError::read_logs(self).into()
    }

    /// Failure writing the vote.
    pub fn write_vote(&self) -> StorageError {
        StorageIOError::write_vote(self).into()
    }

    /// Failure reading the vote.
    pub fn read_vote(&self) -> StorageError {
        StorageIOError::read_vote(self).into()
    }

    /// Failure applying entries up to `log_id`.
    pub fn apply(&self, log_id: LogId) -> StorageError {
        StorageIOError::apply(log_id, self).into()
    }

    /// Failure reading the state machine.
    pub fn read_state_machine(&self) -> StorageError {
        StorageIOError::read_state_machine(self).into()
    }

    /// Failure writing a snapshot.
    pub fn write_snapshot(&self) -> StorageError {
        StorageIOError::write_snapshot(None, self).into()
    }

    /// Failure reading a snapshot.
    pub fn read_snapshot(&self) -> StorageError {
        StorageIOError::read_snapshot(None, self).into()
    }
}

/// Runs blocking storage work off the async runtime.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
}
