//! Ingests sorted streams straight into tables, bypassing the memtable,
//! the value log and compaction.
//!
//! Each stream (a `stream_id`) must arrive in internal-key order (key
//! ascending, versions of one key newest first) and the key ranges of
//! different streams must not overlap — exactly what [`crate::Db::stream`]
//! produces. An empty batch ends its stream: the stream's last table is
//! written at once (so memory stays bounded by the streams in flight, not
//! by the whole ingest); entries that still follow for that stream must
//! start a new user key. Values are stored inline in the tables whatever
//! their size.
//! Nothing is visible until [`StreamWriter::finish`], which records every
//! table in the manifest in one atomic edit: a crash before that leaves the
//! database as it was (the unrecorded table files are removed at open).
//!
//! Into an empty database the tables go to the last level. Into a
//! non-empty one they go to L0, and every ingested version must be newer
//! than everything already stored. Other writes must not run during an
//! ingest.
//!
//! Finished tables are written and synced by `TABLE_WRITER_THREADS`
//! background threads (at most `TABLES_QUEUED_MAX` waiting), so the caller
//! keeps building the next table while earlier ones reach the disk; one
//! fsync after another on the caller's thread left the disk idle between
//! tables and made ingest several times slower.

use super::{KvBatch, KvEntry};
use crate::db::Db;
use crate::format::{compare_keys, key_with_version, user_key, ValueStruct, META_DELETE};
use crate::levels::table_meta;
use crate::manifest::ManifestEdit;
use crate::table::{Table, TableBuilder};
use crate::{Error, Result};
use crossbeam_channel::{Receiver, Sender};
use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;

/// Threads writing and syncing finished tables.
const TABLE_WRITER_THREADS: usize = 2;
/// Finished tables waiting for a writer thread; `write` blocks beyond.
const TABLES_QUEUED_MAX: usize = 2;

/// The background table writers: builders in, opened tables out.
#[derive(Debug)]
struct TableWriters {
    tx: Option<Sender<TableBuilder>>,
    results: Receiver<Result<Arc<Table>>>,
    threads: Vec<JoinHandle<()>>,
}

impl TableWriters {
    fn start(db: &Db) -> Result<TableWriters> {
        let (tx, rx) = crossbeam_channel::bounded::<TableBuilder>(TABLES_QUEUED_MAX);
        let (rtx, results) = crossbeam_channel::unbounded();
        let mut threads = Vec::with_capacity(TABLE_WRITER_THREADS);
        for i in 0..TABLE_WRITER_THREADS {
            let (rx, rtx, inner) = (rx.clone(), rtx.clone(), db.inner().clone());
            let t = std::thread::Builder::new()
                .name(format!("sett-ingest-{i}"))
                .spawn(move || {
                    for b in rx {
                        let written = inner.write_table(b);
                        crate::crash_point::hit("ingest.table_written");
                        if rtx.send(written).is_err() {
                            return;
                        }
                    }
                })
                .map_err(Error::Io)?;
            threads.push(t);
        }
        Ok(TableWriters {
            tx: Some(tx),
            results,
            threads,
        })
    }

    /// Queues `b` (waiting while the queue is full).
    fn submit(&self, b: TableBuilder) -> Result<()> {
        let tx = self.tx.as_ref().expect("submit after stop");
        tx.send(b)
            .map_err(|_| Error::Poisoned("stream writer: table writer threads stopped".into()))
    }

    /// Moves the tables written so far into `done`; the first error, if any.
    fn collect(&self, done: &mut Vec<Arc<Table>>) -> Result<()> {
        let mut first_err = None;
        for r in self.results.try_iter() {
            match r {
                Ok(t) => done.push(t),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Waits for every queued table, then collects as [`Self::collect`].
    fn stop(&mut self, done: &mut Vec<Arc<Table>>) -> Result<()> {
        self.tx.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.collect(done)
    }
}

#[derive(Debug)]
struct Open {
    /// `None` after an end-of-stream marker, until the next entry.
    builder: Option<TableBuilder>,
    /// Last internal key added to this stream.
    last: Vec<u8>,
}

/// Builds tables from sorted streams; see the module docs.
#[derive(Debug)]
pub struct StreamWriter {
    db: Db,
    open: HashMap<u32, Open>,
    done: Vec<Arc<Table>>,
    writers: TableWriters,
    into_empty: bool,
    existing_max_version: u64,
    min_version: u64,
    max_version: u64,
    entries: u64,
    /// The oracle and manifest are raised to at least this timestamp by
    /// `finish` (a restored backup's snapshot timestamp).
    ts_floor: u64,
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
            writers: TableWriters::start(self)?,
            into_empty,
            existing_max_version,
            min_version: u64::MAX,
            max_version: 0,
            entries: 0,
            ts_floor: 0,
            finished: false,
        })
    }
}

impl StreamWriter {
    /// Adds one batch; an empty batch ends its stream (see the module
    /// docs).
    pub fn write(&mut self, batch: KvBatch) -> Result<()> {
        if batch.entries.is_empty() {
            return self.end_stream(batch.stream_id);
        }
        for e in batch.entries {
            self.add(batch.stream_id, e)?;
        }
        Ok(())
    }

    /// Makes [`StreamWriter::finish`] raise the database's newest
    /// timestamp to at least `ts` in the same manifest edit as the tables
    /// (or alone, if nothing was ingested). A restored backup uses it so
    /// that the database's timestamp is the backup's snapshot.
    pub(crate) fn raise_ts_to(&mut self, ts: u64) {
        self.ts_floor = self.ts_floor.max(ts);
    }

    /// Writes the open table of `stream_id`, if any.
    fn end_stream(&mut self, stream_id: u32) -> Result<()> {
        if let Some(st) = self.open.get_mut(&stream_id) {
            if let Some(b) = st.builder.take() {
                if !b.is_empty() {
                    self.writers.submit(b)?;
                    self.writers.collect(&mut self.done)?;
                }
            }
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
            builder: None,
            last: Vec::new(),
        });
        let builder = match &mut st.builder {
            Some(b) => b,
            None => {
                if !st.last.is_empty() && user_key(&st.last) == e.key.as_slice() {
                    return Err(Error::InvalidArgument(format!(
                        "stream {stream_id} continues key {:?} after its end marker",
                        e.key
                    )));
                }
                st.builder.insert(TableBuilder::new(inner.table_options()))
            }
        };
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
            if user_key(&st.last) != e.key.as_slice() && builder.estimated_size() >= table_size {
                let full = std::mem::replace(builder, TableBuilder::new(inner.table_options()));
                self.writers.submit(full)?;
                self.writers.collect(&mut self.done)?;
            }
        }
        let vs = ValueStruct {
            meta: if e.deleted { META_DELETE } else { 0 },
            user_meta: e.user_meta,
            expires_at: e.expires_at,
            payload: if e.deleted { Vec::new() } else { e.value },
        };
        builder.add(&ikey, &vs.encode());
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
            if let Some(b) = st.builder.filter(|b| !b.is_empty()) {
                self.writers.submit(b)?;
            }
        }
        self.writers.stop(&mut self.done)?;
        self.finished = true;
        if self.done.is_empty() {
            if self.ts_floor > inner.oracle.visible_ts() {
                inner.apply_edits(&[ManifestEdit::MaxVersion(self.ts_floor)])?;
                inner.oracle.advance_to(self.ts_floor);
            }
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
        crate::crash_point::hit("ingest.tables_written");
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
        let max_version = self.max_version.max(self.ts_floor);
        edits.push(ManifestEdit::MaxVersion(max_version));
        inner.apply_edits(&edits)?;
        crate::crash_point::hit("ingest.manifest_applied");
        inner.levels.install_ingested(level, tables);
        inner.oracle.advance_to(max_version);
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
            let _ = self.writers.stop(&mut self.done);
            let done = std::mem::take(&mut self.done);
            self.discard(&done);
        }
    }
}
