//! Transactions: a snapshot to read from plus a buffer of writes that
//! commit atomically.
//!
//! Serializable snapshot isolation, as in Badger: a read-write transaction
//! remembers a fingerprint of every key it reads; at commit, if any
//! transaction that committed after this one's snapshot wrote one of those
//! keys, the commit fails with [`Error::Conflict`].

use crate::db::{Db, DbInner, Item, WriteRequest};
use crate::format::{key_hash, key_with_version, now_secs, ValueStruct, META_DELETE};
use crate::iter::{Iter, IterOptions};
use crate::txn::oracle::CommitRefused;
use crate::vlog::WriteEntry;
use crate::{Error, Result};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A write to make: key, value, and optional TTL and user byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
    /// One byte of caller metadata kept with the value.
    pub user_meta: u8,
    /// Unix seconds after which the entry is gone; 0 = never.
    pub expires_at: u64,
}

impl Entry {
    /// An entry that never expires.
    pub fn new(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Entry {
        Entry {
            key: key.into(),
            value: value.into(),
            user_meta: 0,
            expires_at: 0,
        }
    }

    /// Makes the entry expire `ttl` from now (whole seconds, rounded up).
    pub fn with_ttl(mut self, ttl: Duration) -> Entry {
        let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        self.expires_at = now_secs() + secs.max(1);
        self
    }

    /// Attaches one byte of caller metadata.
    pub fn with_user_meta(mut self, meta: u8) -> Entry {
        self.user_meta = meta;
        self
    }
}

#[derive(Debug, Clone)]
struct Pending {
    value: Vec<u8>,
    meta: u8,
    user_meta: u8,
    expires_at: u64,
}

/// Per-entry overhead counted against the transaction size limit.
const ENTRY_OVERHEAD_BYTES: usize = 24;

/// A transaction. Read-only ones come from [`Db::begin_read`] or
/// [`Db::view`], read-write ones from [`Db::begin_write`] or [`Db::update`].
/// Dropping a transaction discards it.
#[derive(Debug)]
pub struct Txn {
    db: Db,
    read_ts: u64,
    update: bool,
    /// Whether reads are tracked for conflict detection.
    track_reads: bool,
    pending: BTreeMap<Vec<u8>, Pending>,
    pending_bytes: usize,
    reads: Mutex<Vec<u64>>,
    finished: bool,
}

impl Txn {
    pub(crate) fn new(db: Db, update: bool, track_reads: bool) -> Txn {
        let read_ts = db.inner().oracle.acquire_read();
        Txn::with_read_ts(db, update, track_reads, read_ts)
    }

    /// A transaction reading at `read_ts`, already registered with the
    /// oracle.
    pub(crate) fn with_read_ts(db: Db, update: bool, track_reads: bool, read_ts: u64) -> Txn {
        Txn {
            db,
            read_ts,
            update,
            track_reads,
            pending: BTreeMap::new(),
            pending_bytes: 0,
            reads: Mutex::new(Vec::new()),
            finished: false,
        }
    }

    pub(crate) fn inner(&self) -> &Arc<DbInner> {
        self.db.inner()
    }

    /// The snapshot timestamp this transaction reads at.
    pub fn read_ts(&self) -> u64 {
        self.read_ts
    }

    fn check_open(&self) -> Result<()> {
        if self.finished {
            return Err(Error::TxnFinished);
        }
        if self.inner().is_closing() {
            return Err(Error::Closed);
        }
        Ok(())
    }

    pub(crate) fn record_read(&self, key: &[u8]) {
        if self.track_reads {
            self.reads.lock().push(key_hash(key));
        }
    }

    /// Reads `key` as of this transaction's snapshot, seeing its own
    /// pending writes. `None` if absent, deleted or expired.
    pub fn get(&self, key: &[u8]) -> Result<Option<Item>> {
        self.check_open()?;
        if key.is_empty() {
            return Err(Error::EmptyKey);
        }
        if let Some(p) = self.pending.get(key) {
            let vs = ValueStruct {
                meta: p.meta,
                user_meta: p.user_meta,
                expires_at: p.expires_at,
                payload: p.value.clone(),
            };
            if vs.is_deleted_or_expired(now_secs()) {
                return Ok(None);
            }
            return Ok(Some(Item {
                key: key.to_vec(),
                version: self.read_ts,
                vs,
                db: self.inner().clone(),
            }));
        }
        self.record_read(key);
        crate::db::count_get(self.inner());
        match self.inner().get_at(key, self.read_ts)? {
            Some((version, vs)) if !vs.is_deleted_or_expired(now_secs()) => Ok(Some(Item {
                key: key.to_vec(),
                version,
                vs,
                db: self.inner().clone(),
            })),
            _ => Ok(None),
        }
    }

    /// Iterates over the snapshot (and, in a read-write transaction, its
    /// own pending writes).
    pub fn iter(&self, opts: IterOptions) -> Iter<'_> {
        Iter::new(self, opts)
    }

    /// Writes `value` under `key`.
    pub fn set(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Result<()> {
        self.set_entry(Entry::new(key, value))
    }

    /// Writes a full entry (TTL, user meta).
    pub fn set_entry(&mut self, e: Entry) -> Result<()> {
        self.add(e.key, e.value, 0, e.user_meta, e.expires_at)
    }

    /// Deletes `key`.
    pub fn delete(&mut self, key: impl Into<Vec<u8>>) -> Result<()> {
        self.add(key.into(), Vec::new(), META_DELETE, 0, 0)
    }

    /// True if `e` can be added without exceeding the transaction limits.
    pub fn would_fit(&self, e: &Entry) -> bool {
        let o = &self.inner().opts;
        self.pending.len() < o.max_txn_entries
            && self.pending_bytes + e.key.len() + e.value.len() + ENTRY_OVERHEAD_BYTES
                <= o.max_txn_bytes
    }

    fn add(
        &mut self,
        key: Vec<u8>,
        value: Vec<u8>,
        meta: u8,
        user_meta: u8,
        expires_at: u64,
    ) -> Result<()> {
        self.check_open()?;
        if self.inner().opts.read_only {
            return Err(Error::ReadOnly);
        }
        if !self.update {
            return Err(Error::ReadOnlyTxn);
        }
        let o = &self.inner().opts;
        if key.is_empty() {
            return Err(Error::EmptyKey);
        }
        if key.len() > o.max_key_size {
            return Err(Error::KeyTooLarge {
                len: key.len(),
                max: o.max_key_size,
            });
        }
        if value.len() > o.max_value_size {
            return Err(Error::ValueTooLarge {
                len: value.len(),
                max: o.max_value_size,
            });
        }
        let size = key.len() + value.len() + ENTRY_OVERHEAD_BYTES;
        let replaced = self
            .pending
            .get(&key)
            .map_or(0, |p| key.len() + p.value.len() + ENTRY_OVERHEAD_BYTES);
        let entries = self.pending.len() + usize::from(replaced == 0);
        let bytes = self.pending_bytes + size - replaced;
        if entries > o.max_txn_entries || bytes > o.max_txn_bytes {
            return Err(Error::TxnTooBig { entries, bytes });
        }
        self.pending_bytes = bytes;
        self.pending.insert(
            key,
            Pending {
                value,
                meta,
                user_meta,
                expires_at,
            },
        );
        Ok(())
    }

    /// Number of pending writes.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Pending writes as internal-key entries for iteration.
    pub(crate) fn pending_entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.pending
            .iter()
            .map(|(k, p)| {
                let vs = ValueStruct {
                    meta: p.meta,
                    user_meta: p.user_meta,
                    expires_at: p.expires_at,
                    payload: p.value.clone(),
                };
                (key_with_version(k, self.read_ts), vs.encode())
            })
            .collect()
    }

    /// Commits and waits until the writes are applied (and, with
    /// `sync_writes`, durable).
    pub fn commit(self) -> Result<()> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.commit_with_callback(move |r| {
            let _ = tx.send(r);
        });
        rx.recv().unwrap_or(Err(Error::Closed))
    }

    /// Managed mode: commits at the caller's `commit_ts` and waits. The
    /// caller guarantees that timestamps only grow for any one key.
    pub fn commit_at(self, commit_ts: u64) -> Result<()> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.commit_at_with_callback(commit_ts, move |r| {
            let _ = tx.send(r);
        });
        rx.recv().unwrap_or(Err(Error::Closed))
    }

    /// Managed mode: [`Txn::commit_at`] without waiting.
    pub fn commit_at_with_callback(
        self,
        commit_ts: u64,
        callback: impl FnOnce(Result<()>) + Send + 'static,
    ) {
        if !self.inner().opts.managed {
            callback(Err(Error::InvalidArgument(
                "commit_at needs a database opened in managed mode".into(),
            )));
            return;
        }
        if commit_ts == 0 {
            callback(Err(Error::InvalidArgument(
                "commit timestamp 0 is reserved".into(),
            )));
            return;
        }
        self.commit_inner(Some(commit_ts), Box::new(callback));
    }

    /// Commits without waiting: `callback` runs on the commit thread with
    /// the outcome (a conflict is reported before this returns).
    pub fn commit_with_callback(self, callback: impl FnOnce(Result<()>) + Send + 'static) {
        if self.inner().opts.managed && !self.pending.is_empty() {
            callback(Err(Error::InvalidArgument(
                "a managed-mode database commits with commit_at".into(),
            )));
            return;
        }
        self.commit_inner(None, Box::new(callback));
    }

    fn commit_inner(
        mut self,
        commit_ts: Option<u64>,
        callback: Box<dyn FnOnce(Result<()>) + Send>,
    ) {
        if let Err(e) = self.check_open() {
            callback(Err(e));
            return;
        }
        self.finished = true;
        if self.pending.is_empty() {
            callback(Ok(()));
            return;
        }
        let inner = self.inner().clone();
        let Some(tx) = inner.write_tx.lock().clone() else {
            callback(Err(Error::Closed));
            return;
        };
        let reads = std::mem::take(&mut *self.reads.lock());
        let writes: Vec<u64> = self.pending.keys().map(|k| key_hash(k)).collect();
        let mut entries: Vec<WriteEntry> = std::mem::take(&mut self.pending)
            .into_iter()
            .map(|(key, p)| WriteEntry {
                key,
                value: p.value,
                meta: p.meta,
                user_meta: p.user_meta,
                expires_at: p.expires_at,
                version: 0,
            })
            .collect();
        let mut callback: Option<Box<dyn FnOnce(Result<()>) + Send>> = Some(callback);
        let slot = &mut callback;
        let enqueue = move |ts: u64| {
            for e in &mut entries {
                e.version = ts;
            }
            let done = slot.take().expect("callback present until sent");
            tx.send(WriteRequest {
                entries,
                commit_ts: ts,
                sync: false,
                rewrite: false,
                done,
            })
        };
        let oracle = &inner.oracle;
        let sent = match commit_ts {
            Some(ts) => oracle.commit_at(self.read_ts, &reads, writes, ts, enqueue),
            None => oracle.commit(self.read_ts, &reads, writes, enqueue),
        };
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(crossbeam_channel::SendError(req))) => (req.done)(Err(Error::Closed)),
            Err(CommitRefused::Conflict) => {
                if let Some(cb) = callback.take() {
                    cb(Err(Error::Conflict));
                }
            }
        }
    }

    /// Discards the transaction (same as dropping it).
    pub fn discard(self) {}
}

impl Drop for Txn {
    fn drop(&mut self) {
        self.db.inner().oracle.release_read(self.read_ts);
    }
}
