//! Merge operators (as in Badger): many cheap `add`s to one key, read as
//! the fold of all of them, and folded into one value in the background.
//!
//! Layout: the folded value ("base") lives at the key itself; each `add`
//! writes a separate operand key `RESERVED "mo/o/" be32(len) key be64(n)`
//! with `n` from a [`Sequence`], so an add is a blind write that never
//! conflicts. Badger keeps operands as versions of the key instead; that
//! would be unsafe here, where compaction keeps only the newest version
//! below the discard watermark and would silently drop operands.
//!
//! A merge pass reads the base and up to a bounded number of operands,
//! writes their fold as the new base and deletes those operands, all in
//! one serializable transaction: a reader sees either the operands or
//! their fold, never both or neither. Adds committed during a pass are
//! other keys and stay for the next pass; a pass racing another pass (or
//! a direct write of the key) conflicts and is retried at the next tick.
//!
//! The merge function must be associative and commutative: operands are
//! folded in `n` order, which is the order of `add` calls through one
//! handle but not across handles or concurrent callers.

use crate::db::Db;
use crate::iter::IterOptions;
use crate::keyspace::{sys_key, TAG_MERGE_OPERAND, TAG_MERGE_SEQ};
use crate::sequence::Sequence;
use crate::{Error, Result};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The function folding two values into one: `f(accumulated, next)`.
pub type MergeFn = dyn Fn(&[u8], &[u8]) -> Vec<u8> + Send + Sync;

/// Operand ids leased per sequence update.
const ID_BANDWIDTH: u64 = 1000;
/// Most operands one merge pass folds.
const MAX_OPERANDS_PER_PASS: usize = 10_000;
/// Bytes counted per pending delete on top of its key, for the size limit.
const DELETE_OVERHEAD_BYTES: usize = 64;
/// Most passes `stop` runs to fold everything left.
const MAX_FINAL_PASSES: usize = 1000;

struct Shared {
    db: Db,
    key: Vec<u8>,
    operand_prefix: Vec<u8>,
    ids: Sequence,
    f: Box<MergeFn>,
    /// One pass at a time per handle.
    pass: Mutex<()>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MergeOperator")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// A merge operator on one key; see the module docs. Get one with
/// [`Db::merge_operator`]. Dropping it stops the background thread after
/// a final merge, like [`MergeOperator::stop`].
#[derive(Debug)]
pub struct MergeOperator {
    shared: Arc<Shared>,
    stop_tx: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Db {
    /// A merge operator on `key` folding values with `f`, merging in the
    /// background every `interval`. Several operators (or processes) may
    /// serve one key.
    pub fn merge_operator(
        &self,
        key: impl Into<Vec<u8>>,
        f: impl Fn(&[u8], &[u8]) -> Vec<u8> + Send + Sync + 'static,
        interval: Duration,
    ) -> Result<MergeOperator> {
        let key = key.into();
        if key.is_empty() {
            return Err(Error::EmptyKey);
        }
        let len = u32::try_from(key.len())
            .map_err(|_| Error::InvalidArgument("merge key too long".into()))?;
        let mut operand_prefix = sys_key(TAG_MERGE_OPERAND, &len.to_be_bytes());
        operand_prefix.extend_from_slice(&key);
        let ids = self.get_sequence(sys_key(TAG_MERGE_SEQ, &key), ID_BANDWIDTH)?;
        let shared = Arc::new(Shared {
            db: self.clone(),
            key,
            operand_prefix,
            ids,
            f: Box::new(f),
            pass: Mutex::new(()),
        });
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(1);
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("sett-merge".into())
            .spawn(move || merge_loop(&s, &stop_rx, interval))
            .map_err(Error::Io)?;
        Ok(MergeOperator {
            shared,
            stop_tx: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

fn merge_loop(s: &Shared, stop: &Receiver<()>, interval: Duration) {
    loop {
        match stop.recv_timeout(interval) {
            Err(RecvTimeoutError::Timeout) => {
                if let Err(e) = s.merge_pass() {
                    tracing::debug!(error = %e, "merge pass failed; retrying next tick");
                }
            }
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

impl Shared {
    fn operand_key(&self, n: u64) -> Vec<u8> {
        let mut k = self.operand_prefix.clone();
        k.extend_from_slice(&n.to_be_bytes());
        k
    }

    fn fold(&self, values: impl IntoIterator<Item = Vec<u8>>) -> Option<Vec<u8>> {
        values.into_iter().reduce(|acc, v| (self.f)(&acc, &v))
    }

    /// Folds up to `MAX_OPERANDS_PER_PASS` operands into the base. Returns
    /// how many it folded (0: nothing to do, or a conflict to retry).
    fn merge_pass(&self) -> Result<usize> {
        let _one = self.pass.lock();
        let mut txn = self.db.begin_write();
        let base = match txn.get(&self.key)? {
            Some(item) => Some(item.value()?),
            None => None,
        };
        let opts = &self.db.inner().opts;
        let max_entries = opts
            .max_txn_entries
            .saturating_sub(1)
            .min(MAX_OPERANDS_PER_PASS);
        let max_bytes = opts.max_txn_bytes / 2;
        let mut keys = Vec::new();
        let mut values = Vec::new();
        {
            let mut it = txn.iter(IterOptions {
                prefix: self.operand_prefix.clone(),
                ..IterOptions::default()
            });
            let mut bytes = 0;
            it.rewind()?;
            while it.valid() && keys.len() < max_entries {
                let k = it.item().key();
                bytes += k.len() + DELETE_OVERHEAD_BYTES;
                if bytes > max_bytes {
                    break;
                }
                keys.push(k.to_vec());
                values.push(it.item().value()?);
                it.next()?;
            }
        }
        if keys.is_empty() {
            return Ok(0);
        }
        let merged = self
            .fold(base.into_iter().chain(values))
            .expect("at least one operand");
        txn.set(self.key.clone(), merged)?;
        let n = keys.len();
        for k in keys {
            txn.delete(k)?;
        }
        match txn.commit() {
            Ok(()) => Ok(n),
            Err(Error::Conflict) => Ok(0),
            Err(e) => Err(e),
        }
    }
}

impl MergeOperator {
    /// Adds `value` (committed before this returns).
    pub fn add(&self, value: impl Into<Vec<u8>>) -> Result<()> {
        let s = &self.shared;
        let k = s.operand_key(s.ids.next()?);
        s.db.update(|txn| txn.set(k, value))
    }

    /// The fold of the base and every operand, from one snapshot; `None`
    /// if nothing was ever added (nor written to the key).
    pub fn get(&self) -> Result<Option<Vec<u8>>> {
        let s = &self.shared;
        let txn = s.db.begin_read();
        let mut values = Vec::new();
        if let Some(item) = txn.get(&s.key)? {
            values.push(item.value()?);
        }
        let mut it = txn.iter(IterOptions {
            prefix: s.operand_prefix.clone(),
            ..IterOptions::default()
        });
        it.rewind()?;
        while it.valid() {
            values.push(it.item().value()?);
            it.next()?;
        }
        Ok(s.fold(values))
    }

    /// Runs one merge pass now; returns the number of operands folded.
    pub fn merge_now(&self) -> Result<usize> {
        self.shared.merge_pass()
    }

    /// Stops the background thread and folds everything left.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        let Some(tx) = self.stop_tx.take() else {
            return Ok(());
        };
        let _ = tx.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for _ in 0..MAX_FINAL_PASSES {
            if self.shared.merge_pass()? == 0 {
                // 0 is also a lost race; one more look settles it.
                let txn = self.shared.db.begin_read();
                let mut it = txn.iter(IterOptions {
                    prefix: self.shared.operand_prefix.clone(),
                    keys_only: true,
                    ..IterOptions::default()
                });
                it.rewind()?;
                if !it.valid() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

impl Drop for MergeOperator {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::debug!(error = %e, "final merge on drop failed; operands stay until the next merge");
        }
    }
}
