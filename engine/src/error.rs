//! The engine's error type.
//!
//! Corruption (bytes on disk that fail a checksum or do not parse) is kept
//! apart from I/O failures: a caller can retry or report an I/O error, but
//! corruption means the data itself is wrong and must never be papered over.

use std::path::PathBuf;

/// Result alias used across the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every error the engine returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O error.
    #[error("I/O error: {0}")]
    Io(#[source] std::io::Error),

    /// Bytes read from disk are not what was written: a checksum failed or a
    /// structure does not parse. Names the file and the byte offset.
    #[error("corruption in {file} at offset {offset}: {reason}")]
    Corruption {
        /// The file holding the bad bytes.
        file: PathBuf,
        /// Byte offset of the bad record or block.
        offset: u64,
        /// What was wrong.
        reason: String,
    },

    /// A serializable transaction read a key that another transaction
    /// committed after this one started. Retry the transaction.
    #[error(
        "transaction conflict: a key read by this transaction was changed concurrently; retry"
    )]
    Conflict,

    /// The transaction holds more writes than one commit may carry.
    #[error("transaction too big: {entries} entries / {bytes} bytes exceed the limit")]
    TxnTooBig {
        /// Entries pending in the transaction.
        entries: usize,
        /// Encoded size of the pending writes.
        bytes: usize,
    },

    /// The key is empty.
    #[error("key cannot be empty")]
    EmptyKey,

    /// The key is longer than the engine accepts.
    #[error("key of {len} bytes exceeds the limit of {max} bytes")]
    KeyTooLarge {
        /// Length of the key given.
        len: usize,
        /// Largest accepted length.
        max: usize,
    },

    /// The value is longer than the engine accepts.
    #[error("value of {len} bytes exceeds the limit of {max} bytes")]
    ValueTooLarge {
        /// Length of the value given.
        len: usize,
        /// Largest accepted length.
        max: usize,
    },

    /// A write was attempted in a read-only transaction.
    #[error("cannot write in a read-only transaction")]
    ReadOnlyTxn,

    /// The transaction was already committed or discarded.
    #[error("transaction already finished")]
    TxnFinished,

    /// The database has been closed.
    #[error("database is closed")]
    Closed,

    /// Another process (or another `Db` in this one) holds the directory lock.
    #[error("database directory {0} is locked by another process or handle")]
    Locked(PathBuf),

    /// The database was opened read-only.
    #[error("database is open read-only")]
    ReadOnly,

    /// Encryption failed: a wrong or missing key, or an undecryptable file.
    #[error("encryption error: {0}")]
    Encryption(String),

    /// The call does not fit the database's mode or its arguments are
    /// invalid (for example a commit timestamp outside managed mode).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The options are inconsistent.
    #[error("invalid options: {0}")]
    InvalidOptions(String),

    /// The value lived in a value-log file that garbage collection has
    /// deleted: the [`crate::Item`] outlived its transaction, or it is an
    /// old version that no snapshot can see any more (all-versions
    /// iteration returns those until compaction drops them).
    #[error("value no longer available: value-log file {fid} was garbage-collected")]
    ValueCollected {
        /// The deleted value-log file.
        fid: u32,
    },

    /// A background worker failed earlier; the database refuses further
    /// writes so that nothing is acknowledged that cannot be made durable.
    #[error("database is in a failed state after a background error: {0}")]
    Poisoned(String),

    /// The bucket does not exist (or was deleted).
    #[error("bucket not found: {0}")]
    BucketNotFound(String),

    /// A bucket of that name already exists.
    #[error("bucket already exists: {0}")]
    BucketExists(String),

    /// A name is used by a key where a bucket was expected, or the other way
    /// round (a bucket may not hold a key and a sub-bucket of one name).
    #[error("incompatible value: {0}")]
    IncompatibleValue(String),

    /// A change subscription fell too far behind and was cancelled; the
    /// changes after the last one received were not delivered. Subscribe
    /// again and re-read the state.
    #[error("subscription cancelled: the subscriber fell behind")]
    SubscriptionLagged,
}

impl From<std::io::Error> for Error {
    /// An I/O error, unless it carries an engine error: the encryption
    /// layer (`fs::encrypted`) reports corruption and key errors through
    /// the `io::Error` of the `Fs` traits, and they are unwrapped here.
    fn from(e: std::io::Error) -> Self {
        if !e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            return Error::Io(e);
        }
        let kind = e.kind();
        match e.into_inner().map(|b| b.downcast::<Error>()) {
            Some(Ok(inner)) => *inner,
            Some(Err(other)) => Error::Io(std::io::Error::new(kind, other)),
            None => Error::Io(kind.into()),
        }
    }
}

impl Error {
    /// Builds a [`Error::Corruption`].
    pub fn corruption(file: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        Error::Corruption {
            file: file.into(),
            offset,
            reason: reason.into(),
        }
    }

    /// True for [`Error::Corruption`].
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corruption { .. })
    }
}
