//! Streams: parallel export of a consistent snapshot, and ingestion of
//! sorted streams straight into tables. Raft snapshots, backups and
//! restores are built on these two.

mod entry;
mod export;
mod writer;

pub use entry::{KvBatch, KvEntry};
pub use export::{Stream, StreamOptions, StreamSummary};
pub use writer::StreamWriter;
