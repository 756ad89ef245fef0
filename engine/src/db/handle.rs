//! The public database handle.

use super::flush::{compaction_loop, flush_loop};
use super::metrics::Metrics;
use super::write::writer_loop;
use super::{DbInner, WriteBatch};
use crate::format::now_secs;
use crate::iter::IterOptions;
use crate::options::Options;
use crate::txn::Txn;
use crate::{Error, Result};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// An open database. Cheap to clone; all clones share one database, which
/// closes when [`Db::close`] is called or the last clone (and the last
/// transaction) is dropped.
///
/// Thread-safety: `Db` is `Send + Sync`; any number of threads may read and
/// commit concurrently.
#[derive(Debug, Clone)]
pub struct Db {
    inner: Arc<DbInner>,
    _guard: Arc<CloseOnDrop>,
}

#[derive(Debug)]
struct CloseOnDrop(Arc<DbInner>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let Err(e) = close_inner(&self.0) {
            tracing::error!(error = %e, "closing database on drop failed");
        }
    }
}

/// Sizes and counters of an open database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Tables per level.
    pub tables_per_level: Vec<usize>,
    /// Table bytes per level.
    pub bytes_per_level: Vec<u64>,
    /// Entries (all versions and tombstones) stored in tables.
    pub table_entries: u64,
    /// Bytes in value-log files.
    pub vlog_bytes: u64,
    /// Values read from the value log since open.
    pub vlog_reads: u64,
    /// Frozen memtables waiting for flush.
    pub immutable_memtables: usize,
    /// Newest visible commit timestamp.
    pub visible_ts: u64,
    /// Point reads served (transactions' `get`).
    pub gets: u64,
    /// Commits applied (value-log GC moves not included).
    pub commits: u64,
    /// Entries written by those commits.
    pub entries_written: u64,
    /// Key and value bytes written by those commits.
    pub bytes_written: u64,
    /// Groups the commit thread wrote (each one append, at most one sync).
    pub commit_groups: u64,
    /// Value-log syncs for commits.
    pub syncs: u64,
    /// Durations of every data-file sync (commits, flushes, value-log GC,
    /// new tables).
    pub sync_latency: super::SyncLatency,
    /// Bytes held by memtables (the active one and those frozen).
    pub memtable_bytes: u64,
    /// Memtables flushed to L0.
    pub flushes: u64,
    /// Compactions run (table moves included).
    pub compactions: u64,
    /// Commit groups that waited because L0 was full.
    pub write_stalls: u64,
    /// Commit groups delayed because L0 was filling up.
    pub write_slowdowns: u64,
    /// Block-cache lookups that hit.
    pub cache_hits: u64,
    /// Block-cache lookups that missed.
    pub cache_misses: u64,
    /// Bytes of blocks in the cache.
    pub cache_bytes: u64,
    /// Bytes of decoded table indexes in the index cache.
    pub index_cache_bytes: u64,
    /// Value-log garbage collection: runs, files and bytes reclaimed.
    pub value_log_gc: super::GcStats,
}

/// What [`Db::check`] looked at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Tables whose every block was read and checksummed.
    pub tables: usize,
    /// Internal entries walked (all versions).
    pub entries: u64,
    /// Value-log values read and verified.
    pub vlog_values: u64,
}

impl Db {
    /// Opens the database described by `opts`, creating it if needed, and
    /// recovers whatever a crash left in the value log.
    pub fn open(opts: Options) -> Result<Db> {
        let inner = Arc::new(DbInner::open(opts)?);
        if inner.opts.read_only {
            return Ok(Db {
                _guard: Arc::new(CloseOnDrop(inner.clone())),
                inner,
            });
        }
        let (wtx, wrx) = crossbeam_channel::unbounded();
        let (ftx, frx) = crossbeam_channel::unbounded();
        *inner.write_tx.lock() = Some(wtx);
        *inner.flush_tx.lock() = Some(ftx);
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.to_string())
                .spawn(f)
                .map_err(Error::Io)
        };
        let mut threads = Vec::new();
        {
            let db = inner.clone();
            threads.push(spawn(
                "sett-commit",
                Box::new(move || writer_loop(db, wrx)),
            )?);
            let db = inner.clone();
            threads.push(spawn("sett-flush", Box::new(move || flush_loop(db, frx)))?);
            if inner.opts.background_compaction {
                for i in 0..inner.opts.compaction_threads.max(1) {
                    let db = inner.clone();
                    threads.push(spawn(
                        &format!("sett-compact-{i}"),
                        Box::new(move || compaction_loop(db)),
                    )?);
                }
            }
        }
        inner.threads.lock().extend(threads);
        Ok(Db {
            _guard: Arc::new(CloseOnDrop(inner.clone())),
            inner,
        })
    }

    pub(crate) fn inner(&self) -> &Arc<DbInner> {
        &self.inner
    }

    /// Flushes everything to tables, stops background work and releases
    /// the directory lock. Further calls on any clone (and on transactions
    /// begun before) fail with [`Error::Closed`].
    pub fn close(&self) -> Result<()> {
        close_inner(&self.inner)
    }

    /// Starts a read-only transaction at the newest snapshot.
    pub fn begin_read(&self) -> Txn {
        Txn::new(self.clone(), false, false)
    }

    /// Starts a read-write transaction at the newest snapshot.
    pub fn begin_write(&self) -> Txn {
        Txn::new(self.clone(), true, true)
    }

    /// Managed mode: a read-only transaction at `read_ts`.
    pub fn begin_read_at(&self, read_ts: u64) -> Result<Txn> {
        self.require_managed()?;
        self.inner.oracle.acquire_read_at(read_ts);
        Ok(Txn::with_read_ts(self.clone(), false, false, read_ts))
    }

    /// Managed mode: a read-write transaction reading at `read_ts`; commit
    /// it with [`Txn::commit_at`].
    pub fn begin_write_at(&self, read_ts: u64) -> Result<Txn> {
        self.require_managed()?;
        self.inner.oracle.acquire_read_at(read_ts);
        Ok(Txn::with_read_ts(self.clone(), true, true, read_ts))
    }

    /// Managed mode: versions at or below `ts` that are not among the
    /// newest `num_versions_to_keep` of their key may be dropped by
    /// compaction. Reads below `ts` are no longer guaranteed.
    pub fn set_discard_ts(&self, ts: u64) -> Result<()> {
        self.require_managed()?;
        self.inner.oracle.set_discard_ts(ts);
        Ok(())
    }

    /// Managed mode: a bulk-load batch whose commits all use `commit_ts`.
    pub fn write_batch_at(&self, commit_ts: u64) -> Result<WriteBatch> {
        self.require_managed()?;
        Ok(WriteBatch::new_at(self.clone(), commit_ts))
    }

    fn require_managed(&self) -> Result<()> {
        if self.inner.opts.managed {
            Ok(())
        } else {
            Err(Error::InvalidArgument(
                "this call needs a database opened in managed mode".into(),
            ))
        }
    }

    /// A write-only transaction without read tracking, for bulk loads.
    pub(crate) fn begin_batch_txn(&self) -> Txn {
        Txn::new(self.clone(), true, false)
    }

    /// Runs `f` in a read-only transaction.
    pub fn view<T>(&self, f: impl FnOnce(&Txn) -> Result<T>) -> Result<T> {
        let txn = self.begin_read();
        f(&txn)
    }

    /// Runs `f` in a read-write transaction and commits it if `f` returns
    /// `Ok`. A conflict is returned as [`Error::Conflict`], not retried.
    pub fn update<T>(&self, f: impl FnOnce(&mut Txn) -> Result<T>) -> Result<T> {
        let mut txn = self.begin_write();
        let out = f(&mut txn)?;
        txn.commit()?;
        Ok(out)
    }

    /// Reads the newest value of `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let txn = self.begin_read();
        match txn.get(key)? {
            Some(item) => Ok(Some(item.value()?)),
            None => Ok(None),
        }
    }

    /// A batch for bulk loading.
    pub fn write_batch(&self) -> WriteBatch {
        WriteBatch::new(self.clone())
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.is_closing() {
            return Err(Error::Closed);
        }
        self.inner.check_bg_error()
    }

    fn check_writable(&self) -> Result<()> {
        self.check_open()?;
        if self.inner.opts.read_only {
            return Err(Error::ReadOnly);
        }
        Ok(())
    }

    /// Writes the current memtable to a table and waits until every frozen
    /// memtable is flushed.
    pub fn flush(&self) -> Result<()> {
        self.check_writable()?;
        // Rotation must happen on the commit thread's side of the queue so
        // that it falls between two commits; an empty commit does that.
        let (tx, rx) = crossbeam_channel::bounded(1);
        let sender = self.inner.write_tx.lock().clone().ok_or(Error::Closed)?;
        let inner = self.inner.clone();
        let marker = super::WriteRequest {
            entries: Vec::new(),
            commit_ts: 0,
            sync: false,
            rewrite: false,
            done: Box::new(move |r| {
                if r.is_ok() && !inner.mem.read().active.is_empty() {
                    inner.rotate_memtable();
                }
                let _ = tx.send(r);
            }),
        };
        sender.send(marker).map_err(|_| Error::Closed)?;
        rx.recv().unwrap_or(Err(Error::Closed))?;
        while !self.inner.mem.read().immutables.is_empty() {
            self.inner.check_bg_error()?;
            self.inner
                .wait_state_change(std::time::Duration::from_millis(10));
        }
        Ok(())
    }

    /// Flushes, then compacts every table down to the last level,
    /// dropping every version no snapshot can see.
    pub fn compact(&self) -> Result<()> {
        self.flush()?;
        self.inner.compact_fully()
    }

    /// Waits until no level needs compaction.
    pub fn wait_for_compactions(&self) -> Result<()> {
        self.check_writable()?;
        self.inner.compact_all(false)
    }

    /// Counters and sizes.
    pub fn stats(&self) -> Stats {
        let v = self.inner.levels.current();
        let m = &self.inner.metrics;
        let (cache_hits, cache_misses) = self
            .inner
            .cache
            .as_ref()
            .map_or((0, 0), |c| c.hits_misses());
        Stats {
            tables_per_level: v.levels.iter().map(Vec::len).collect(),
            bytes_per_level: (0..v.levels.len()).map(|l| v.level_bytes(l)).collect(),
            table_entries: v.levels.iter().flatten().map(|t| t.key_count()).sum(),
            vlog_bytes: self.inner.vlog.size_bytes(),
            vlog_reads: self.inner.vlog.reads(),
            immutable_memtables: self.inner.mem.read().immutables.len(),
            visible_ts: self.inner.oracle.visible_ts(),
            gets: Metrics::get(&m.gets),
            commits: Metrics::get(&m.commits),
            entries_written: Metrics::get(&m.entries_written),
            bytes_written: Metrics::get(&m.bytes_written),
            commit_groups: Metrics::get(&m.commit_groups),
            syncs: Metrics::get(&m.syncs),
            sync_latency: m.sync_latency(),
            memtable_bytes: {
                let mem = self.inner.mem.read();
                let frozen: usize = mem.immutables.iter().map(|t| t.size_bytes()).sum();
                (mem.active.size_bytes() + frozen) as u64
            },
            flushes: Metrics::get(&m.flushes),
            compactions: Metrics::get(&m.compactions),
            write_stalls: Metrics::get(&m.write_stalls),
            write_slowdowns: Metrics::get(&m.write_slowdowns),
            cache_hits,
            cache_misses,
            cache_bytes: self.inner.cache.as_ref().map_or(0, |c| c.used_bytes()),
            index_cache_bytes: self
                .inner
                .index_cache
                .as_ref()
                .map_or(0, |c| c.used_bytes()),
            value_log_gc: self.value_log_gc_stats(),
        }
    }

    /// Verifies the whole database: every table block's checksum, the
    /// level invariants, the order of all entries, and every value-log
    /// entry a snapshot can still read. Returns the first problem as an
    /// error.
    pub fn check(&self) -> Result<CheckReport> {
        self.check_open()?;
        let mut report = CheckReport::default();
        let v = self.inner.levels.current();
        if let Some(bad) = v.check_invariants() {
            return Err(Error::corruption(self.inner.dir.join("MANIFEST"), 0, bad));
        }
        for t in v.levels.iter().flatten() {
            t.verify()?;
            report.tables += 1;
        }
        let txn = self.begin_read();
        let mut it = txn.iter(IterOptions {
            all_versions: true,
            ..IterOptions::default()
        });
        it.rewind()?;
        let mut prev: Option<(Vec<u8>, u64)> = None;
        let now = now_secs();
        // Per key, versions older than the newest one at or below the
        // discard timestamp are invisible to every snapshot: value-log GC
        // may already have deleted their values (compaction drops them).
        let discard_ts = self.inner.oracle.discard_ts();
        let mut hidden = false;
        while it.valid() {
            let item = it.item();
            if prev
                .as_ref()
                .is_none_or(|(pk, _)| pk.as_slice() != item.key())
            {
                hidden = false;
            }
            let visible = !hidden;
            hidden |= item.version() <= discard_ts;
            if let Some((pk, pv)) = &prev {
                let ordered = pk.as_slice() < item.key()
                    || (pk.as_slice() == item.key() && *pv > item.version());
                if !ordered {
                    return Err(Error::corruption(
                        &self.inner.dir,
                        0,
                        "entries out of order",
                    ));
                }
            }
            prev = Some((item.key().to_vec(), item.version()));
            report.entries += 1;
            if visible && item.value_in_log() && !item.vs.is_deleted_or_expired(now) {
                item.value()?;
                report.vlog_values += 1;
            }
            it.next()?;
        }
        Ok(report)
    }
}

fn close_inner(inner: &Arc<DbInner>) -> Result<()> {
    if inner.closing.swap(true, Ordering::AcqRel) {
        return Ok(());
    }
    // A running value-log GC notices `closing` and stops; wait for it.
    drop(inner.vlog.gc.running.lock());
    // Stop the commit thread after it drains its queue.
    inner.write_tx.lock().take();
    let threads: Vec<_> = std::mem::take(&mut *inner.threads.lock());
    let (commit, rest): (Vec<_>, Vec<_>) = threads
        .into_iter()
        .partition(|t| t.thread().name() == Some("sett-commit"));
    for t in commit {
        let _ = t.join();
    }
    if inner.opts.read_only {
        inner.dir_lock.lock().take();
        return Ok(());
    }
    let mut result = inner.check_bg_error();
    if result.is_ok() && !inner.mem.read().active.is_empty() {
        inner.rotate_memtable();
    }
    // The flush thread drains what is queued, then stops.
    inner.flush_tx.lock().take();
    inner.notify_state_change();
    for t in rest {
        let _ = t.join();
    }
    if result.is_ok() {
        result = inner.check_bg_error();
    }
    if result.is_ok() {
        result = inner.vlog.sync();
    }
    inner.vlog.persist_discard();
    inner.levels.collect_garbage(&*inner.fs);
    inner.dir_lock.lock().take();
    result
}
