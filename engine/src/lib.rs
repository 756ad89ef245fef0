//! sett-engine: an embeddable LSM-tree storage engine with a separate value
//! log (the WiscKey design), MVCC snapshots and serializable optimistic
//! transactions.
//!
//! ```no_run
//! use sett_engine::{Db, Options};
//! # fn main() -> sett_engine::Result<()> {
//! let db = Db::open(Options::new("/tmp/sett-example"))?;
//! db.update(|txn| txn.set(b"hello".to_vec(), b"world".to_vec()))?;
//! assert_eq!(db.get(b"hello")?, Some(b"world".to_vec()));
//! db.close()?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod backup;
mod bucket;
#[doc(hidden)]
pub mod crash_point;
mod db;
mod error;
mod format;
pub mod fs;
#[doc(hidden)]
pub mod fuzzing;
mod iter;
mod keyspace;
mod levels;
mod manifest;
mod memtable;
mod merge_op;
mod options;
mod sequence;
mod stream;
mod table;
mod txn;
mod vlog;

pub use backup::{BackupOptions, BackupSummary, RestoreSummary};
pub use bucket::{Bucket, BucketStats, Cursor, CursorEntry};
pub use db::{Change, Commit, Subscription, DEFAULT_SUBSCRIPTION_CAPACITY};
pub use db::{CheckReport, Db, GcOutcome, GcReport, GcStats, Item, Stats, WriteBatch};
pub use db::{SyncLatency, SYNC_LATENCY_BOUNDS_US};
pub use error::{Error, Result};
pub use iter::{Iter, IterOptions};
pub use keyspace::{Keyspace, KeyspaceIter, MAX_KEYSPACE_NAME_BYTES, RESERVED_PREFIX};
pub use merge_op::{MergeFn, MergeOperator};
pub use options::{Compression, EncryptionKey, Options};
pub use sequence::Sequence;
pub use stream::{KvBatch, KvEntry, Stream, StreamOptions, StreamSummary, StreamWriter};
pub use txn::{Entry, Txn};
