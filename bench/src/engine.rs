//! The small interface every benchmarked engine is driven through.
//!
//! All engines are configured alike (see `engines/*.rs`): 256 MiB of block
//! cache, 64 MiB memtables where there are memtables, bloom filters of 10
//! bits per key where there are filters, no block compression, and their
//! write-ahead log on. Bulk writes never wait for fsync; durable writes
//! always do.

use anyhow::Result;
use std::path::Path;

/// Bytes of block (or page) cache given to every engine.
pub const CACHE_BYTES: usize = 256 << 20;

/// Bytes of each memtable, for the engines that have them.
pub const MEMTABLE_BYTES: usize = 64 << 20;

/// Bloom filter bits per key, for the engines that have filters.
pub const BLOOM_BITS_PER_KEY: usize = 10;

/// How commits are made durable for the lifetime of an open database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Commits go to the OS (the write-ahead log is written) but do not wait
    /// for fsync.
    Bulk,
    /// Every commit waits for fsync before returning.
    Durable,
}

/// One open database. Methods take `&self` so that many threads can write
/// at once; implementations are `Send + Sync`.
pub trait Engine: Send + Sync {
    /// Writes all pairs as one atomic batch (or transaction), without fsync.
    fn load_batch(&self, batch: &[(Vec<u8>, Vec<u8>)]) -> Result<()>;

    /// Writes one pair as its own commit and returns once it is on disk.
    fn put_durable(&self, key: &[u8], value: &[u8]) -> Result<()>;

    /// The value of `key` at the latest committed state.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Reads up to `n` entries (key and value) from the first key at or
    /// after `start`, in key order; returns how many were read.
    fn scan(&self, start: &[u8], n: usize) -> Result<usize>;

    /// Makes everything written so far durable and waits for the engine's
    /// background work (memtable flushes, compactions) to finish, so the
    /// next workload starts from a quiet engine.
    fn settle(&self) -> Result<()>;

    /// Closes the database.
    fn close(self: Box<Self>) -> Result<()>;

    /// Whether the engine has value-log garbage collection (the `gc`
    /// workload runs only then).
    fn has_value_log_gc(&self) -> bool {
        false
    }

    /// Compacts everything, so that value-log garbage is known to the GC.
    fn compact_all(&self) -> Result<()> {
        Ok(())
    }

    /// One value-log GC step: collects at most one file at least
    /// `discard_ratio` garbage; returns false when nothing qualifies.
    fn value_log_gc(&self, _discard_ratio: f64) -> Result<bool> {
        anyhow::bail!("this engine has no value-log GC")
    }
}

/// The engines this binary can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum EngineKind {
    /// sett's own engine (`sett-engine`).
    Sett,
    /// RocksDB through the `rocksdb` crate.
    Rocksdb,
    /// fjall, an LSM-tree in Rust.
    Fjall,
    /// redb, a copy-on-write B-tree in Rust.
    Redb,
}

impl EngineKind {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Sett => "sett",
            EngineKind::Rocksdb => "rocksdb",
            EngineKind::Fjall => "fjall",
            EngineKind::Redb => "redb",
        }
    }

    /// Whether this binary was built with the engine.
    pub fn available(self) -> bool {
        self != EngineKind::Sett || cfg!(feature = "sett")
    }

    /// Opens a fresh database in `dir` (which exists and is empty).
    pub fn open(self, dir: &Path, mode: WriteMode) -> Result<Box<dyn Engine>> {
        use crate::engines;
        Ok(match self {
            #[cfg(feature = "sett")]
            EngineKind::Sett => Box::new(engines::sett::SettEngine::open(dir, mode)?),
            #[cfg(not(feature = "sett"))]
            EngineKind::Sett => anyhow::bail!("sett-bench was built without the `sett` feature"),
            EngineKind::Rocksdb => Box::new(engines::rocksdb::RocksEngine::open(dir, mode)?),
            EngineKind::Fjall => Box::new(engines::fjall::FjallEngine::open(dir, mode)?),
            EngineKind::Redb => Box::new(engines::redb::RedbEngine::open(dir, mode)?),
        })
    }

    /// Like [`EngineKind::open`], for the `gc` workload: sett's value-log
    /// files are `vlog_file_bytes` long, so that the workload's shape (how
    /// many files the data spans) does not change with the scale.
    pub fn open_gc(
        self,
        dir: &Path,
        mode: WriteMode,
        vlog_file_bytes: u64,
    ) -> Result<Box<dyn Engine>> {
        match self {
            #[cfg(feature = "sett")]
            EngineKind::Sett => Ok(Box::new(crate::engines::sett::SettEngine::open_with(
                dir,
                mode,
                Some(vlog_file_bytes),
            )?)),
            _ => self.open(dir, mode),
        }
    }
}
