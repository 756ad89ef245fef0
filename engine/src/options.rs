//! Tuning knobs for [`crate::Db`].

use crate::fs::{Fs, MemFs, PosixFs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Block compression for tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Blocks stored as written.
    None,
    /// Each block compressed with zstd at the given level.
    Zstd(i32),
}

/// A 256-bit master key. Its `Debug` output never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptionKey(pub [u8; 32]);

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EncryptionKey(<redacted>)")
    }
}

/// Options for opening a database. Start from [`Options::new`] (on disk) or
/// [`Options::in_memory`] and adjust fields.
#[derive(Debug, Clone)]
pub struct Options {
    /// Directory holding all files.
    pub dir: PathBuf,
    /// Keep everything in memory; nothing touches the disk.
    pub in_memory: bool,
    /// Wait for fsync before a commit returns.
    pub sync_writes: bool,
    /// Bytes a memtable may hold before it is frozen and flushed.
    pub memtable_size: usize,
    /// Frozen memtables allowed to wait for flush before writers stall.
    pub max_immutable_memtables: usize,
    /// Values at least this long go to the value log; shorter ones are
    /// stored inline in the LSM. The default, 1 KiB, comes from
    /// `sett-bench threshold` (see docs/BENCHMARKS.md): from 1 KiB up,
    /// separation more than doubles load speed and halves write
    /// amplification, while below it short scans lose more than loads gain.
    pub value_threshold: usize,
    /// Largest value-log file before a new one is started.
    pub vlog_file_size: u64,
    /// Target uncompressed size of a table block.
    pub block_size: usize,
    /// Bloom filter bits per key (0 disables filters).
    pub bloom_bits_per_key: usize,
    /// Block compression.
    pub compression: Compression,
    /// Target size of a table written by compaction.
    pub table_size: u64,
    /// Target total size of level 1; each deeper level is
    /// `level_size_multiplier` times larger.
    pub base_level_size: u64,
    /// Growth factor between levels.
    pub level_size_multiplier: u64,
    /// Number of levels, L0 included.
    pub max_levels: usize,
    /// L0 table count that triggers compaction into L1.
    pub l0_compaction_trigger: usize,
    /// L0 table count at which writers are slowed down.
    pub l0_slowdown_trigger: usize,
    /// L0 table count at which writers stop until compaction catches up.
    pub l0_stall_trigger: usize,
    /// Background compaction threads.
    pub compaction_threads: usize,
    /// Bytes of decompressed blocks kept in the block cache. Only tables
    /// written with compression use it: uncompressed blocks are read in
    /// place from the memory-mapped file, cached by the operating system.
    pub block_cache_size: usize,
    /// Bytes of decoded table indexes kept in memory, shared by all
    /// tables; indexes beyond it are decoded again from the file when
    /// needed. 0 keeps every table's index in memory for its whole life.
    pub index_cache_size: usize,
    /// Largest key accepted.
    pub max_key_size: usize,
    /// Largest value accepted.
    pub max_value_size: usize,
    /// Most entries one transaction may write.
    pub max_txn_entries: usize,
    /// Most bytes one transaction may write.
    pub max_txn_bytes: usize,
    /// Run compactions in background threads. Off only for tests that
    /// drive compaction by hand.
    pub background_compaction: bool,
    /// Managed mode: the caller chooses read and commit timestamps
    /// ([`crate::Db::begin_read_at`], [`crate::Txn::commit_at`]) and the
    /// discard watermark ([`crate::Db::set_discard_ts`]).
    pub managed: bool,
    /// Versions at or below the discard timestamp kept per key (at least 1:
    /// the newest).
    pub num_versions_to_keep: usize,
    /// Open without writing anything; several read-only handles (and
    /// processes) may share a directory, but no writer.
    pub read_only: bool,
    /// How long `open` waits for the directory lock; `None` fails at once.
    pub lock_timeout: Option<Duration>,
    /// AES-256 master key: when set, every file is encrypted at rest with
    /// data keys that are themselves stored encrypted under this key.
    pub encryption_key: Option<EncryptionKey>,
    /// How often a new data key is started for new files.
    pub encryption_key_rotation: Duration,
    /// The file layer; chosen from `in_memory` unless set explicitly.
    pub fs: Option<Arc<dyn Fs>>,
}

impl Options {
    /// Defaults for a database stored in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Options {
        Options {
            dir: dir.into(),
            in_memory: false,
            sync_writes: true,
            memtable_size: 64 << 20,
            max_immutable_memtables: 4,
            value_threshold: 1024,
            vlog_file_size: 1 << 30,
            block_size: 4096,
            bloom_bits_per_key: 10,
            compression: Compression::None,
            table_size: 8 << 20,
            base_level_size: 64 << 20,
            level_size_multiplier: 10,
            max_levels: 7,
            l0_compaction_trigger: 4,
            l0_slowdown_trigger: 12,
            l0_stall_trigger: 20,
            compaction_threads: 2,
            block_cache_size: 256 << 20,
            index_cache_size: 64 << 20,
            max_key_size: 64 << 10,
            max_value_size: 1 << 30,
            max_txn_entries: 100_000,
            max_txn_bytes: 96 << 20,
            background_compaction: true,
            managed: false,
            num_versions_to_keep: 1,
            read_only: false,
            lock_timeout: None,
            encryption_key: None,
            encryption_key_rotation: Duration::from_secs(10 * 24 * 3600),
            fs: None,
        }
    }

    /// Defaults for a database that lives only in memory.
    pub fn in_memory() -> Options {
        Options {
            in_memory: true,
            sync_writes: false,
            ..Options::new("/sett-in-memory")
        }
    }

    /// The file layer these options select.
    pub(crate) fn file_system(&self) -> Arc<dyn Fs> {
        match (&self.fs, self.in_memory) {
            (Some(fs), _) => fs.clone(),
            (None, true) => Arc::new(MemFs::new()),
            (None, false) => Arc::new(PosixFs),
        }
    }

    /// Checks the options for contradictions.
    pub(crate) fn validate(&self) -> crate::Result<()> {
        let bad = |m: &str| Err(crate::Error::InvalidOptions(m.to_string()));
        if self.memtable_size < 4096 {
            return bad("memtable_size must be at least 4096");
        }
        if self.block_size < 256 {
            return bad("block_size must be at least 256");
        }
        if self.max_levels < 2 {
            return bad("max_levels must be at least 2");
        }
        if self.l0_compaction_trigger < 1
            || self.l0_slowdown_trigger < self.l0_compaction_trigger
            || self.l0_stall_trigger <= self.l0_slowdown_trigger
        {
            return bad(
                "need 1 <= l0_compaction_trigger <= l0_slowdown_trigger < l0_stall_trigger",
            );
        }
        if self.level_size_multiplier < 2 {
            return bad("level_size_multiplier must be at least 2");
        }
        if self.vlog_file_size < 1 << 16 {
            return bad("vlog_file_size must be at least 64 KiB");
        }
        if self.max_value_size > u32::MAX as usize / 2 {
            return bad("max_value_size must be below 2 GiB");
        }
        if self.num_versions_to_keep < 1 {
            return bad("num_versions_to_keep must be at least 1");
        }
        if self.read_only && self.in_memory {
            return bad("an in-memory database cannot be opened read-only");
        }
        if let Compression::Zstd(l) = self.compression {
            if !(1..=22).contains(&l) {
                return bad("zstd level must be in 1..=22");
            }
        }
        Ok(())
    }
}
