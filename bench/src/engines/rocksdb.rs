//! RocksDB (Debian's librocksdb 7.8.3, linked dynamically).
//!
//! Options: defaults except an LRU block cache of [`CACHE_BYTES`], a full
//! (not block-based) bloom filter of [`BLOOM_BITS_PER_KEY`] bits per key,
//! [`MEMTABLE_BYTES`] write buffers and no compression. WAL on; bulk writes
//! use `sync = false`, durable ones `sync = true` (fdatasync). Concurrent
//! durable writers are group-committed by RocksDB itself.

use crate::engine::{Engine, WriteMode, BLOOM_BITS_PER_KEY, CACHE_BYTES, MEMTABLE_BYTES};
use anyhow::{Context, Result};
use rocksdb::{BlockBasedOptions, Cache, DBCompressionType, Options, WriteBatch, WriteOptions, DB};
use std::path::Path;
use std::time::{Duration, Instant};

/// Longest `settle` waits for compactions before giving up.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(900);

/// An open RocksDB database.
pub struct RocksEngine {
    db: DB,
    bulk: WriteOptions,
    durable: WriteOptions,
}

impl RocksEngine {
    /// Opens a new database in `dir`. Durability is chosen per write, so
    /// `_mode` changes nothing.
    pub fn open(dir: &Path, _mode: WriteMode) -> Result<RocksEngine> {
        let cache = Cache::new_lru_cache(CACHE_BYTES).context("creating block cache")?;
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_bloom_filter(BLOOM_BITS_PER_KEY as f64, false);

        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_block_based_table_factory(&table);
        opts.set_compression_type(DBCompressionType::None);
        opts.set_write_buffer_size(MEMTABLE_BYTES);
        opts.set_max_background_jobs(2);
        let db = DB::open(&opts, dir).with_context(|| format!("opening {}", dir.display()))?;

        let mut bulk = WriteOptions::default();
        bulk.set_sync(false);
        let mut durable = WriteOptions::default();
        durable.set_sync(true);
        Ok(RocksEngine { db, bulk, durable })
    }

    fn int_property(&self, name: &str) -> Result<u64> {
        self.db
            .property_int_value(name)?
            .with_context(|| format!("RocksDB has no property {name}"))
    }
}

impl Engine for RocksEngine {
    fn load_batch(&self, batch: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let mut wb = WriteBatch::default();
        for (k, v) in batch {
            wb.put(k, v);
        }
        self.db.write_opt(wb, &self.bulk)?;
        Ok(())
    }

    fn put_durable(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.db.put_opt(key, value, &self.durable)?;
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get(key)?)
    }

    fn scan(&self, start: &[u8], n: usize) -> Result<usize> {
        let mut it = self.db.raw_iterator();
        it.seek(start);
        let mut read = 0;
        while read < n && it.valid() {
            let (k, v) = (it.key().unwrap_or_default(), it.value().unwrap_or_default());
            std::hint::black_box((k, v));
            read += 1;
            it.next();
        }
        it.status()?;
        Ok(read)
    }

    fn settle(&self) -> Result<()> {
        // Flushing the memtable also persists the WAL's contents.
        self.db.flush()?;
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let busy = self.int_property("rocksdb.compaction-pending")?
                + self.int_property("rocksdb.num-running-compactions")?
                + self.int_property("rocksdb.num-running-flushes")?
                + self.int_property("rocksdb.mem-table-flush-pending")?;
            if busy == 0 {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "RocksDB compactions still running"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn close(self: Box<Self>) -> Result<()> {
        drop(self);
        Ok(())
    }
}
