//! Ingests sorted streams straight into tables, bypassing the memtable,
//! the value log and compaction.
//!
//! Each stream (a `stream_id`) must arrive in internal-key order (key
//! ascending, versions of one key newest first) and the key ranges of
//! different streams must not overlap — exactly what [`crate::Db::stream`]
//! produces. Values are stored inline in the tables whatever their size.
//! Nothing is visible until [`StreamWriter::finish`], which records every
//! table in the manifest in one atomic edit: a crash before that leaves the
//! database as it was (the unrecorded table files are removed at open).
//!
//! Into an empty database the tables go to the last level. Into a
//! non-empty one they go to L0, and every ingested version must be newer
//! than everything already stored. Other writes must not run during an
//! ingest.

use super::{KvBatch, KvEntry};
use crate::db::Db;
use crate::format::{compare_keys, key_with_version, user_key, ValueStruct, META_DELETE};
use crate::levels::table_meta;
use crate::manifest::ManifestEdit;
use crate::table::{Table, TableBuilder};
use crate::{Error, Result};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug)]
struct Open {
    builder: TableBuilder,
    /// Last internal key added to this stream.
    last: Vec<u8>,
}

/// Builds tables from sorted streams; see the module docs.
#[derive(Debug)]
pub struct StreamWriter {
    db: Db,
    open: HashMap<u32, Open>,
    done: Vec<Arc<Table>>,
    into_empty: bool,
    existing_max_version: u64,
    min_version: u64,
    max_version: u64,
    entries: u64,
    finished: bool,
}

impl Db {
    /// Prepares an ingest: flushes the memtable and notes whether the
    /// database is empty.
    pub fn stream_writer(&self) -> Result<StreamWriter> {
        self.flush()?;
        let inner = self.inner();
        let v = inner.levels.current();
        let into_empty = v.levels.iter().all(Vec::is_empty) && inner.mem.read().active.is_empty();
        let existing_max_version = v
            .levels
            .iter()
            .flatten()
            .map(|t| t.max_version())
            .max()
            .unwrap_or(0)
            .max(inner.oracle.visible_ts());
        Ok(StreamWriter {
            db: self.clone(),
            open: HashMap::new(),
            done: Vec::new(),
            into_empty,
            existing_max_version,
            min_version: u64::MAX,
            max_version: 0,
            entries: 0,
            finished: false,
        })
    }
}

impl StreamWriter {
    /// Adds one batch.
    pub fn write(&mut self, batch: KvBatch) -> Result<()> {
        for e in batch.entries {
            self.add(batch.stream_id, e)?;
        }
        Ok(())
    }

    fn add(&mut self, stream_id: u32, e: KvEntry) -> Result<()> {
        let inner = self.db.inner().clone();
        if e.key.is_empty() {
            return Err(Error::EmptyKey);
        }
        if e.version == 0 {
            return Err(Error::InvalidArgument("stream entry with version 0".into()));
        }
        let ikey = key_with_version(&e.key, e.version);
        let table_size = inner.opts.table_size;
        let st = self.open.entry(stream_id).or_insert_with(|| Open {
            builder: TableBuilder::new(inner.table_options()),
            last: Vec::new(),
        });
        if !st.last.is_empty() {
            if !compare_keys(&st.last, &ikey).is_lt() {
                return Err(Error::InvalidArgument(format!(
                    "stream {stream_id} is not sorted: key {:?} version {} after {:?}",
                    e.key,
                    e.version,
                    user_key(&st.last)
                )));
            }
            // Cut tables only between user keys: one key's versions stay
            // in one table.
            if user_key(&st.last) != e.key.as_slice() && st.builder.estimated_size() >= table_size {
                let full =
                    std::mem::replace(&mut st.builder, TableBuilder::new(inner.table_options()));
                self.done.push(inner.write_table(full)?);
            }
        }
        let vs = ValueStruct {
            meta: if e.deleted { META_DELETE } else { 0 },
            user_meta: e.user_meta,
            expires_at: e.expires_at,
            payload: if e.deleted { Vec::new() } else { e.value },
        };
        st.builder.add(&ikey, &vs.encode());
        st.last = ikey;
        self.min_version = self.min_version.min(e.version);
        self.max_version = self.max_version.max(e.version);
        self.entries += 1;
        Ok(())
    }

    /// Writes the last tables and makes everything visible atomically.
    /// Returns the number of entries ingested.
    pub fn finish(mut self) -> Result<u64> {
        let inner = self.db.inner().clone();
        for (_, st) in std::mem::take(&mut self.open) {
            if !st.builder.is_empty() {
                self.done.push(inner.write_table(st.builder)?);
            }
        }
        self.finished = true;
        if self.done.is_empty() {
            return Ok(0);
        }
        let mut tables = std::mem::take(&mut self.done);
        tables.sort_by(|a, b| compare_keys(a.smallest(), b.smallest()));
        for w in tables.windows(2) {
            if user_key(w[0].largest()) >= user_key(w[1].smallest()) {
                self.discard(&tables);
                return Err(Error::InvalidArgument(
                    "stream writer: the key ranges of two streams overlap".into(),
                ));
            }
        }
        if !self.into_empty && self.min_version <= self.existing_max_version {
            self.discard(&tables);
            return Err(Error::InvalidArgument(format!(
                "stream writer: ingesting version {} into a database that already holds version {}",
                self.min_version, self.existing_max_version
            )));
        }
        inner.fs.sync_dir(&inner.dir)?;
        let level = if self.into_empty {
            inner.opts.max_levels - 1
        } else {
            0
        };
        let mut edits: Vec<ManifestEdit> = tables
            .iter()
            .map(|t| ManifestEdit::AddTable(table_meta(t, level)))
            .collect();
        edits.push(ManifestEdit::NextFileId(inner.next_file_id()));
        edits.push(ManifestEdit::MaxVersion(self.max_version));
        inner.apply_edits(&edits)?;
        inner.levels.install_ingested(level, tables);
        inner.oracle.advance_to(self.max_version);
        inner.notify_state_change();
        Ok(self.entries)
    }

    fn discard(&self, tables: &[Arc<Table>]) {
        let fs = &self.db.inner().fs;
        for t in tables {
            let _ = fs.remove(t.path());
        }
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        if !self.finished {
            // An abandoned ingest: its table files were never recorded.
            let done = std::mem::take(&mut self.done);
            self.discard(&done);
        }
    }
}
