//! fjall 3 (an LSM-tree in Rust).
//!
//! One database with one keyspace. Options: a block cache of
//! [`CACHE_BYTES`], [`MEMTABLE_BYTES`] memtables, bloom filters of
//! [`BLOOM_BITS_PER_KEY`] bits per key on every level (fjall's default uses
//! a 0.01 % false-positive rate on L0), no compression (the crate is built
//! without `lz4`), default worker threads (min(cores, 4)). The journal is
//! written to the OS on every batch (`manual_journal_persist = false`);
//! durable writes persist it with `PersistMode::SyncData` (fdatasync),
//! holding the journal lock, so fjall does not group-commit.

use crate::engine::{Engine, WriteMode, BLOOM_BITS_PER_KEY, CACHE_BYTES, MEMTABLE_BYTES};
use anyhow::{Context, Result};
use fjall::config::{BloomConstructionPolicy, FilterPolicy, FilterPolicyEntry};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use std::path::Path;
use std::time::{Duration, Instant};

/// Longest `settle` waits for flushes and compactions.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(900);
/// Consecutive idle polls that count as "background work finished": fjall
/// exposes no wait-for-compaction, only counters that read zero between
/// two compactions.
const SETTLE_IDLE_POLLS: u32 = 10;

/// An open fjall database and its one keyspace.
pub struct FjallEngine {
    db: Database,
    ks: Keyspace,
}

impl FjallEngine {
    /// Opens a new database in `dir`. Durability is chosen per write, so
    /// `_mode` changes nothing.
    pub fn open(dir: &Path, _mode: WriteMode) -> Result<FjallEngine> {
        let db = Database::builder(dir)
            .cache_size(CACHE_BYTES as u64)
            .open()
            .with_context(|| format!("opening {}", dir.display()))?;
        let ks = db.keyspace("bench", || {
            KeyspaceCreateOptions::default()
                .max_memtable_size(MEMTABLE_BYTES as u64)
                .filter_policy(FilterPolicy::all(FilterPolicyEntry::Bloom(
                    BloomConstructionPolicy::BitsPerKey(BLOOM_BITS_PER_KEY as f32),
                )))
        })?;
        Ok(FjallEngine { db, ks })
    }
}

impl Engine for FjallEngine {
    fn load_batch(&self, batch: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let mut wb = self.db.batch();
        for (k, v) in batch {
            wb.insert(&self.ks, k.as_slice(), v.as_slice());
        }
        wb.commit()?;
        Ok(())
    }

    fn put_durable(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut wb = self.db.batch().durability(Some(PersistMode::SyncData));
        wb.insert(&self.ks, key, value);
        wb.commit()?;
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.ks.get(key)?.map(|v| v.to_vec()))
    }

    fn scan(&self, start: &[u8], n: usize) -> Result<usize> {
        let mut read = 0;
        for guard in self.ks.range(start..).take(n) {
            let (k, v) = guard.into_inner()?;
            std::hint::black_box((&k, &v));
            read += 1;
        }
        Ok(read)
    }

    fn settle(&self) -> Result<()> {
        self.db.persist(PersistMode::SyncAll)?;
        self.ks.rotate_memtable_and_wait()?;
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        let mut idle = 0;
        while idle < SETTLE_IDLE_POLLS {
            let busy = self.db.outstanding_flushes()
                + self.db.active_compactions()
                + self.ks.sealed_memtable_count();
            idle = if busy == 0 { idle + 1 } else { 0 };
            anyhow::ensure!(Instant::now() < deadline, "fjall compactions still running");
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.db.persist(PersistMode::SyncAll)?;
        drop(self);
        Ok(())
    }
}
