//! redb 4 (a copy-on-write B-tree in Rust).
//!
//! One file, one table of `&[u8] -> &[u8]`, a cache of [`CACHE_BYTES`].
//! Each bulk batch is one write transaction committed with
//! `Durability::None` (written to the OS, no fsync); durable writes commit
//! with `Durability::Immediate`. redb has a single writer: concurrent
//! durable writers queue on `begin_write`, one fsync each. Reads open a
//! read transaction per call (per point read, per scan), like a server
//! serving independent requests.

use crate::engine::{Engine, WriteMode, CACHE_BYTES};
use anyhow::{Context, Result};
use redb::{Builder, Database, Durability, ReadableDatabase, TableDefinition};
use std::path::Path;

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("bench");

/// An open redb database.
pub struct RedbEngine {
    db: Database,
}

impl RedbEngine {
    /// Opens a new database file in `dir`. Durability is chosen per commit,
    /// so `_mode` changes nothing.
    pub fn open(dir: &Path, _mode: WriteMode) -> Result<RedbEngine> {
        let path = dir.join("bench.redb");
        let db = Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        // Create the table up front so reads never meet a missing table.
        let txn = db.begin_write()?;
        txn.open_table(TABLE)?;
        txn.commit()?;
        Ok(RedbEngine { db })
    }

    fn commit_pairs<'a>(
        &self,
        pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>,
        durability: Durability,
    ) -> Result<()> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(durability)?;
        {
            let mut table = txn.open_table(TABLE)?;
            for (k, v) in pairs {
                table.insert(k, v)?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}

impl Engine for RedbEngine {
    fn load_batch(&self, batch: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let pairs = batch.iter().map(|(k, v)| (k.as_slice(), v.as_slice()));
        self.commit_pairs(pairs, Durability::None)
    }

    fn put_durable(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.commit_pairs(std::iter::once((key, value)), Durability::Immediate)
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TABLE)?;
        Ok(table.get(key)?.map(|g| g.value().to_vec()))
    }

    fn scan(&self, start: &[u8], n: usize) -> Result<usize> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TABLE)?;
        let mut read = 0;
        for entry in table.range(start..)?.take(n) {
            let (k, v) = entry?;
            std::hint::black_box((k.value(), v.value()));
            read += 1;
        }
        Ok(read)
    }

    fn settle(&self) -> Result<()> {
        // An empty durable commit makes the earlier `Durability::None`
        // commits durable. redb has no background work.
        self.commit_pairs(std::iter::empty(), Durability::Immediate)
    }

    fn close(self: Box<Self>) -> Result<()> {
        drop(self);
        Ok(())
    }
}
