//! sett's own engine.
//!
//! Options: the engine's defaults, with the shared cache, memtable and
//! filter sizes set explicitly and no compression. `sync_writes` follows the
//! write mode: bulk loads go through the write-batch API without fsync;
//! durable writes are one `update` transaction each, waiting for the group
//! commit's fsync.

use crate::engine::{Engine, WriteMode, BLOOM_BITS_PER_KEY, CACHE_BYTES, MEMTABLE_BYTES};
use anyhow::{Context, Result};
use sett_engine::{Compression, Db, GcOutcome, IterOptions, Options};
use std::path::Path;

/// An open sett database.
pub struct SettEngine {
    db: Db,
}

impl SettEngine {
    /// Opens a new database in `dir`; `mode` sets `sync_writes`.
    pub fn open(dir: &Path, mode: WriteMode) -> Result<SettEngine> {
        SettEngine::open_with(dir, mode, None)
    }

    /// [`SettEngine::open`], optionally with another value-log file size.
    pub fn open_with(
        dir: &Path,
        mode: WriteMode,
        vlog_file_bytes: Option<u64>,
    ) -> Result<SettEngine> {
        let mut opts = Options::new(dir);
        if let Some(b) = vlog_file_bytes {
            opts.vlog_file_size = b;
        }
        opts.sync_writes = mode == WriteMode::Durable;
        opts.block_cache_size = CACHE_BYTES;
        opts.memtable_size = MEMTABLE_BYTES;
        opts.bloom_bits_per_key = BLOOM_BITS_PER_KEY;
        opts.compression = Compression::None;
        let db = Db::open(opts).with_context(|| format!("opening {}", dir.display()))?;
        Ok(SettEngine { db })
    }
}

impl Engine for SettEngine {
    fn load_batch(&self, batch: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let mut wb = self.db.write_batch();
        for (k, v) in batch {
            wb.set(k.clone(), v.clone())?;
        }
        wb.flush()?;
        Ok(())
    }

    fn put_durable(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.db
            .update(|txn| txn.set(key.to_vec(), value.to_vec()))?;
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get(key)?)
    }

    fn scan(&self, start: &[u8], n: usize) -> Result<usize> {
        let txn = self.db.begin_read();
        let mut it = txn.iter(IterOptions::default());
        it.seek(start)?;
        let mut read = 0;
        while read < n && it.valid() {
            let item = it.item();
            let v = item.value()?;
            std::hint::black_box((item.key(), &v));
            read += 1;
            it.next()?;
        }
        Ok(read)
    }

    fn settle(&self) -> Result<()> {
        // Like the peers: memtable to tables, then no compaction pending.
        self.db.flush()?;
        self.db.wait_for_compactions()?;
        Ok(())
    }

    fn close(self: Box<Self>) -> Result<()> {
        let this = *self;
        this.db.close()?;
        Ok(())
    }

    fn has_value_log_gc(&self) -> bool {
        true
    }

    fn compact_all(&self) -> Result<()> {
        self.db.compact()?;
        Ok(())
    }

    fn value_log_gc(&self, discard_ratio: f64) -> Result<bool> {
        Ok(match self.db.run_value_log_gc(discard_ratio)? {
            GcOutcome::Collected(_) => true,
            GcOutcome::NothingToDo => false,
            other => anyhow::bail!("unexpected value-log GC outcome {other:?}"),
        })
    }
}
