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

mod db;
mod error;
mod format;
pub mod fs;
mod iter;
mod levels;
mod manifest;
mod memtable;
mod options;
mod stream;
mod table;
mod txn;
mod vlog;

pub use db::{CheckReport, Db, Item, Stats, WriteBatch};
pub use error::{Error, Result};
pub use iter::{Iter, IterOptions};
pub use options::{Compression, EncryptionKey, Options};
pub use stream::{KvBatch, KvEntry, Stream, StreamOptions, StreamSummary, StreamWriter};
pub use txn::{Entry, Txn};
