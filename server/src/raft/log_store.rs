//! The Raft log on a dedicated sett-engine database.
//!
//! # Contract (openraft 0.9 `RaftLogStorage`, storage-v2)
//! - `append(entries, callback)`: the entries are written in one engine
//!   commit (several only if they exceed one transaction's limits, in log
//!   order, so a crash leaves a prefix). The database is opened with
//!   `sync_writes`, so a commit completes only after the group commit's
//!   fsync; the callback fires after that, with its outcome. `append`
//!   returns once the commit is queued, without waiting for it: until the
//!   commit completes the entries sit in an in-memory `pending` map that
//!   every read consults first, so they are readable when `append`
//!   returns. Openraft can then replicate them and queue the next append
//!   while this one's fsync runs, and the engine's group commit shares
//!   one fsync among the queued appends (as etcd overlaps its WAL fsync
//!   with sending to followers).
//! - `truncate` and `get_log_state` first wait until no append is in
//!   flight, so they see (and delete) every appended entry.
//! - `save_vote` returns after the vote's commit is fsynced.
//! - `truncate(id)` deletes every entry with index `>= id.index`, highest
//!   first (a crash in between leaves a shorter prefix of the old log, which
//!   is still a valid log).
//! - `purge(id)` deletes every entry with index `<= id.index`; the new
//!   `last_purged` is written in the first commit, so it is durable before
//!   any entry disappears. Entries a crash leaves at or below
//!   `last_purged` are never returned and are removed by the next purge.
//! - `get_log_state` reports the persisted `last_purged` and the last entry
//!   (or `last_purged` when the log is empty).
//!
//! # Key layout (engine in normal, non-managed mode)
//! | key | value |
//! |---|---|
//! | `log/` ‖ be64(index) | postcard [`Entry`] |
//! | `meta/vote` | postcard [`Vote`] |
//! | `meta/last_purged` | postcard [`LogId`] |
//!
//! Big-endian indexes make key order log order. Every decoded entry is
//! checked against the index in its key.
//!
//! # Space
//! The value log doubles as the engine's WAL, so purged entries are
//! garbage there; each purge starts a best-effort value-log GC pass on the
//! blocking pool, and the log database uses 64 MiB value-log files so that
//! whole files become collectable soon.
//!
//! # Threads
//! Engine calls that wait run on Tokio's blocking pool; the runtime never
//! waits for an fsync. An append only queues its commit; the callback runs
//! on the engine's commit thread. [`LogStore`] is cheap to clone (clones
//! share one `Db` and one `pending` map); openraft uses a clone as the log
//! reader of each replication task.

use super::error::{blocking, StoreError};
use super::types::{Entry, LogId, StorageError, TypeConfig, Vote};
use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{OptionalSend, RaftLogId};
use parking_lot::{Condvar, Mutex};
use sett_engine::{Db, GcOutcome, IterOptions, Options, Txn};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

const LOG_PREFIX: &[u8] = b"log/";
const VOTE_KEY: &[u8] = b"meta/vote";
const LAST_PURGED_KEY: &[u8] = b"meta/last_purged";

/// Value-log files one purge's GC pass may collect.
const GC_FILES_PER_PURGE_MAX: usize = 4;
/// Garbage share that makes a value-log file worth collecting.
const GC_DISCARD_RATIO: f64 = 0.5;
/// Value-log file size of the log database: small files become garbage
/// (and collectable) soon after a purge.
const VLOG_FILE_BYTES: u64 = 64 << 20;

/// Most deletions one truncate or purge commit carries.
const DELETE_CHUNK_ENTRIES: usize = 16 * 1024;

/// The engine key of the entry at `index`.
fn log_key(index: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(LOG_PREFIX.len() + 8);
    k.extend_from_slice(LOG_PREFIX);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// The index a log key names.
fn key_index(key: &[u8]) -> Result<u64, StoreError> {
    let raw = key
        .strip_prefix(LOG_PREFIX)
        .and_then(|r| <[u8; 8]>::try_from(r).ok())
        .ok_or_else(|| StoreError::Corruption(format!("malformed log key {key:?}")))?;
    Ok(u64::from_be_bytes(raw))
}

/// The first key after every log key.
fn log_end_key() -> Vec<u8> {
    let mut k = LOG_PREFIX.to_vec();
    *k.last_mut().expect("non-empty prefix") += 1;
    k
}

fn decode_entry(key: &[u8], bytes: &[u8]) -> Result<Entry, StoreError> {
    let index = key_index(key)?;
    let entry: Entry = postcard::from_bytes(bytes)?;
    if entry.log_id.index != index {
        return Err(StoreError::Corruption(format!(
            "log key names index {index} but the entry holds {}",
            entry.log_id
        )));
    }
    Ok(entry)
}

/// The Raft log store; see the module docs.
#[derive(Debug, Clone)]
pub struct LogStore {
    db: Db,
    pending: Arc<Pending>,
    /// The commit index openraft last reported (`save_committed`), kept
    /// in memory only, for the metrics.
    committed: Arc<std::sync::atomic::AtomicU64>,
}

/// Entries whose append commit is queued but not yet complete, by index,
/// and a signal for "none left".
#[derive(Debug, Default)]
struct Pending {
    entries: Mutex<BTreeMap<u64, Entry>>,
    drained: Condvar,
}

impl Pending {
    fn add(&self, entries: &[Entry]) {
        let mut p = self.entries.lock();
        for e in entries {
            p.insert(e.log_id.index, e.clone());
        }
    }

    /// Forgets `ids` once their commit completed (an entry replaced since
    /// by a newer append at the same index stays).
    fn done(&self, ids: &[LogId]) {
        let mut p = self.entries.lock();
        for id in ids {
            if p.get(&id.index).is_some_and(|e| e.log_id == *id) {
                p.remove(&id.index);
            }
        }
        if p.is_empty() {
            self.drained.notify_all();
        }
    }

    /// Blocks until no append is in flight.
    fn wait_drained(&self) {
        let mut p = self.entries.lock();
        while !p.is_empty() {
            self.drained.wait(&mut p);
        }
    }

    /// The pending entries with index in `[start, end)`.
    fn range(&self, start: u64, end: Option<u64>) -> Vec<Entry> {
        let p = self.entries.lock();
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        p.range((Bound::Included(start), upper))
            .map(|(_, e)| e.clone())
            .collect()
    }
}

impl LogStore {
    /// Opens (creating if needed) the log database in `dir` with
    /// `sync_writes` on.
    pub fn open(dir: impl AsRef<Path>) -> Result<LogStore, StoreError> {
        let mut opts = Options::new(dir.as_ref());
        opts.compaction_threads = 1;
        opts.vlog_file_size = VLOG_FILE_BYTES;
        LogStore::open_with(opts)
    }

    /// Opens with explicit engine options; `sync_writes` is forced on and
    /// managed mode off.
    pub fn open_with(mut opts: Options) -> Result<LogStore, StoreError> {
        opts.sync_writes = true;
        opts.managed = false;
        Ok(LogStore {
            db: Db::open(opts)?,
            pending: Arc::default(),
            committed: Arc::default(),
        })
    }

    /// The index of the last entry openraft reported committed since this
    /// process opened the log (0 before the first report).
    pub fn committed_index(&self) -> u64 {
        self.committed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The underlying database (for stats and integrity checks).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Flushes and closes the database; every clone stops working.
    pub fn close(&self) -> Result<(), StoreError> {
        Ok(self.db.close()?)
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        txn: &Txn,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        match txn.get(key)? {
            Some(item) => Ok(Some(postcard::from_bytes(&item.value()?)?)),
            None => Ok(None),
        }
    }

    /// Keys of log entries in `[from, to)`, in ascending order.
    fn log_keys(db: &Db, from: u64, to: Option<u64>) -> Result<Vec<Vec<u8>>, StoreError> {
        let txn = db.begin_read();
        let mut it = txn.iter(IterOptions {
            lower_bound: Some(log_key(from)),
            upper_bound: Some(to.map_or_else(log_end_key, log_key)),
            keys_only: true,
            ..IterOptions::default()
        });
        let mut keys = Vec::new();
        it.rewind()?;
        while it.valid() {
            keys.push(it.item().key().to_vec());
            it.next()?;
        }
        Ok(keys)
    }

    /// Starts a best-effort value-log GC pass (a few files at most) on the
    /// blocking pool: purged entries are garbage in the value log, which
    /// doubles as the engine's WAL. Failures are only logged; a concurrent
    /// pass makes this one a no-op.
    fn reclaim_in_background(&self) {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            for _ in 0..GC_FILES_PER_PURGE_MAX {
                match db.run_value_log_gc(GC_DISCARD_RATIO) {
                    Ok(GcOutcome::Collected(_)) => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "raft log value-log GC failed");
                        break;
                    }
                }
            }
        });
    }

    /// Commits `txn` and waits for it (durable: `sync_writes`).
    fn commit(txn: Txn) -> Result<(), StoreError> {
        Ok(txn.commit()?)
    }

    /// `entries` as one write transaction, or `None` if they exceed one
    /// transaction's limits.
    fn one_commit(&self, entries: &[Entry]) -> Result<Option<Txn>, StoreError> {
        let mut txn = self.db.begin_write();
        for entry in entries {
            let e =
                sett_engine::Entry::new(log_key(entry.log_id.index), postcard::to_allocvec(entry)?);
            if !txn.would_fit(&e) {
                return Ok(None);
            }
            txn.set_entry(e)?;
        }
        Ok(Some(txn))
    }

    fn append_blocking(db: &Db, entries: Vec<Entry>) -> Result<(), StoreError> {
        let mut txn = db.begin_write();
        let mut prev: Option<u64> = None;
        for entry in entries {
            let index = entry.log_id.index;
            if let Some(p) = prev {
                assert_eq!(p + 1, index, "appended entries must be consecutive");
            }
            prev = Some(index);
            let e = sett_engine::Entry::new(log_key(index), postcard::to_allocvec(&entry)?);
            if !txn.would_fit(&e) {
                Self::commit(std::mem::replace(&mut txn, db.begin_write()))?;
            }
            txn.set_entry(e)?;
        }
        Self::commit(txn)
    }

    fn last_purged_blocking(txn: &Txn) -> Result<Option<LogId>, StoreError> {
        Self::read_meta(txn, LAST_PURGED_KEY)
    }

    fn last_entry_blocking(txn: &Txn) -> Result<Option<LogId>, StoreError> {
        let mut it = txn.iter(IterOptions {
            reverse: true,
            prefix: LOG_PREFIX.to_vec(),
            ..IterOptions::default()
        });
        it.rewind()?;
        if !it.valid() {
            return Ok(None);
        }
        let item = it.item();
        let entry = decode_entry(item.key(), &item.value()?)?;
        Ok(Some(*entry.get_log_id()))
    }

    fn entries_blocking(db: &Db, start: u64, end: Option<u64>) -> Result<Vec<Entry>, StoreError> {
        // Entries at or below last_purged may survive a crash mid-purge;
        // they are not part of the log. One snapshot for both reads.
        let txn = db.begin_read();
        let floor = Self::last_purged_blocking(&txn)?.map_or(0, |l| l.index + 1);
        let start = start.max(floor);
        if end.is_some_and(|e| e <= start) {
            return Ok(Vec::new());
        }
        let mut it = txn.iter(IterOptions {
            lower_bound: Some(log_key(start)),
            upper_bound: Some(end.map_or_else(log_end_key, log_key)),
            ..IterOptions::default()
        });
        let mut out: Vec<Entry> = Vec::new();
        it.rewind()?;
        while it.valid() {
            let item = it.item();
            let entry = decode_entry(item.key(), &item.value()?)?;
            if let Some(last) = out.last() {
                if last.log_id.index + 1 != entry.log_id.index {
                    return Err(StoreError::Corruption(format!(
                        "log gap: {} followed by {}",
                        last.log_id, entry.log_id
                    )));
                }
            }
            out.push(entry);
            it.next()?;
        }
        Ok(out)
    }

    /// Deletes `keys` in chunks, committing each; `first` is written in the
    /// first commit.
    fn delete_chunks(
        db: &Db,
        keys: &[Vec<u8>],
        mut first: Option<(&[u8], Vec<u8>)>,
    ) -> Result<(), StoreError> {
        let mut chunks = keys.chunks(DELETE_CHUNK_ENTRIES);
        loop {
            let chunk = chunks.next();
            if chunk.is_none() && first.is_none() {
                return Ok(());
            }
            let mut txn = db.begin_write();
            if let Some((k, v)) = first.take() {
                txn.set(k.to_vec(), v)?;
            }
            for k in chunk.unwrap_or_default() {
                txn.delete(k.clone())?;
            }
            Self::commit(txn)?;
        }
    }
}

/// Converts openraft's range bounds into `[start, end)` (`end = None`:
/// unbounded).
fn index_range<RB: RangeBounds<u64>>(range: &RB) -> Option<(u64, Option<u64>)> {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.checked_add(1),
        Bound::Excluded(&e) => Some(e),
        Bound::Unbounded => None,
    };
    Some((start, end))
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let Some((start, end)) = index_range(&range) else {
            return Ok(Vec::new());
        };
        // Pending entries first: one leaves `pending` only after the
        // engine shows it, so no entry is missed in between. They are the
        // newest run of the log, so when they cover `start` they are the
        // whole answer.
        let pending = self.pending.range(start, end);
        if pending.first().is_some_and(|e| e.log_id.index == start) {
            return Ok(pending);
        }
        let db = self.db.clone();
        let mut out = blocking(move || LogStore::entries_blocking(&db, start, end))
            .await
            .map_err(|e| e.read_logs())?;
        if let Some(first) = pending.first() {
            out.retain(|e| e.log_id.index < first.log_id.index);
            out.extend(pending);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let db = self.db.clone();
        let pending = self.pending.clone();
        let (last_purged, last_entry) = blocking(move || {
            pending.wait_drained();
            let txn = db.begin_read();
            Ok((
                LogStore::last_purged_blocking(&txn)?,
                LogStore::last_entry_blocking(&txn)?,
            ))
        })
        .await
        .map_err(|e| e.read_logs())?;
        // After a purge of everything (or a crash mid-purge) the last
        // entry may be at or below last_purged.
        let last_log_id = match (last_entry, last_purged) {
            (Some(e), Some(p)) if e.index <= p.index => Some(p),
            (Some(e), _) => Some(e),
            (None, p) => p,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id,
        })
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not persisted: `read_committed` keeps answering `None`, so a
        // restart re-applies from the state machine's own applied index
        // exactly as before. The value only feeds the metrics.
        if let Some(c) = committed {
            self.committed
                .fetch_max(c.index, std::sync::atomic::Ordering::AcqRel);
        }
        Ok(())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let db = self.db.clone();
        let bytes = postcard::to_allocvec(vote).map_err(|e| StoreError::from(e).write_vote())?;
        blocking(move || {
            let mut txn = db.begin_write();
            txn.set(VOTE_KEY.to_vec(), bytes)?;
            LogStore::commit(txn)
        })
        .await
        .map_err(|e| e.write_vote())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        let db = self.db.clone();
        blocking(move || LogStore::read_meta(&db.begin_read(), VOTE_KEY))
            .await
            .map_err(|e| e.read_vote())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        if entries.is_empty() {
            callback.log_io_completed(Ok(()));
            return Ok(());
        }
        let one = match self.one_commit(&entries) {
            Ok(one) => one,
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                return Err(e.write_logs());
            }
        };
        if let Some(txn) = one {
            self.pending.add(&entries);
            let ids: Vec<LogId> = entries.iter().map(|e| e.log_id).collect();
            let pending = self.pending.clone();
            txn.commit_with_callback(move |r| {
                pending.done(&ids);
                callback.log_io_completed(r.map_err(|e| std::io::Error::other(e.to_string())));
            });
            return Ok(());
        }
        // Too large for one commit: several, waited for in turn (rare:
        // one transaction holds far more than a replication batch).
        let db = self.db.clone();
        let pending = self.pending.clone();
        let written = blocking(move || {
            pending.wait_drained();
            LogStore::append_blocking(&db, entries)
        });
        match written.await {
            Ok(()) => {
                // The commit returned, so the group commit's fsync is done.
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(e.write_logs())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let db = self.db.clone();
        let pending = self.pending.clone();
        blocking(move || {
            // Every appended entry in the engine first, so none lands
            // after the deletion.
            pending.wait_drained();
            let mut keys = LogStore::log_keys(&db, log_id.index, None)?;
            // Highest first: a crash leaves a prefix of the old log.
            keys.reverse();
            LogStore::delete_chunks(&db, &keys, None)
        })
        .await
        .map_err(|e| e.write_logs())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let db = self.db.clone();
        blocking(move || {
            if let Some(prev) = LogStore::last_purged_blocking(&db.begin_read())? {
                assert!(
                    prev.index <= log_id.index,
                    "purge must not move backwards: {prev} then {log_id}"
                );
            }
            let to = log_id.index.checked_add(1);
            let keys = LogStore::log_keys(&db, 0, to)?;
            let record = postcard::to_allocvec(&log_id)?;
            LogStore::delete_chunks(&db, &keys, Some((LAST_PURGED_KEY, record)))
        })
        .await
        .map_err(|e| e.write_logs())?;
        self.reclaim_in_background();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_keys_sort_in_index_order() {
        let idx = [0u64, 1, 255, 256, 65_535, 1 << 40, u64::MAX];
        for w in idx.windows(2) {
            assert!(log_key(w[0]) < log_key(w[1]));
            assert!(log_key(w[1]) < log_end_key());
        }
        for i in idx {
            assert_eq!(key_index(&log_key(i)).unwrap(), i);
        }
        assert!(key_index(b"log/123").is_err());
    }

    #[test]
    fn ranges_convert_to_half_open() {
        assert_eq!(index_range(&(3..7)), Some((3, Some(7))));
        assert_eq!(index_range(&(3..=7)), Some((3, Some(8))));
        assert_eq!(index_range(&(..)), Some((0, None)));
        assert_eq!(index_range(&(5..)), Some((5, None)));
        assert_eq!(index_range(&(0..=u64::MAX)), Some((0, None)));
        let excl = (Bound::Excluded(u64::MAX), Bound::Unbounded);
        assert_eq!(index_range(&excl), None);
    }
}
