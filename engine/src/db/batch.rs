//! Bulk loading: many writes committed as a pipeline of large commits,
//! without conflict checks and without waiting for each commit.

use super::Db;
use crate::txn::{Entry, Txn};
use crate::{Error, Result};
use parking_lot::{Condvar, Mutex};
use std::sync::Arc;

#[derive(Debug, Default)]
struct InFlight {
    count: Mutex<(usize, Option<Error>)>,
    cv: Condvar,
}

/// Collects writes and commits them in batches as large as a transaction
/// may be. Call [`WriteBatch::flush`] at the end: it commits the rest and
/// waits for every commit, returning the first error. Writes of one batch
/// are not atomic as a whole. Dropping a batch without `flush` discards
/// the writes not yet committed.
#[derive(Debug)]
pub struct WriteBatch {
    db: Db,
    txn: Txn,
    in_flight: Arc<InFlight>,
    /// Managed mode: the timestamp every commit of the batch uses.
    commit_ts: Option<u64>,
}

/// Commits one batch may have outstanding before `set` waits.
const MAX_IN_FLIGHT: usize = 4;

impl WriteBatch {
    pub(crate) fn new(db: Db) -> WriteBatch {
        let txn = db.begin_batch_txn();
        WriteBatch {
            db,
            txn,
            in_flight: Arc::default(),
            commit_ts: None,
        }
    }

    pub(crate) fn new_at(db: Db, commit_ts: u64) -> WriteBatch {
        WriteBatch {
            commit_ts: Some(commit_ts),
            ..WriteBatch::new(db)
        }
    }

    /// Queues a write of `value` under `key`.
    pub fn set(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Result<()> {
        self.set_entry(Entry::new(key, value))
    }

    /// Queues a write of a full entry (TTL, user meta).
    pub fn set_entry(&mut self, entry: Entry) -> Result<()> {
        self.push(|t, e| t.set_entry(e), entry)
    }

    /// Queues a deletion of `key`.
    pub fn delete(&mut self, key: impl Into<Vec<u8>>) -> Result<()> {
        self.push(|t, e| t.delete(e.key), Entry::new(key, Vec::new()))
    }

    fn push(&mut self, op: impl FnOnce(&mut Txn, Entry) -> Result<()>, entry: Entry) -> Result<()> {
        self.take_error()?;
        if !self.txn.would_fit(&entry) {
            self.commit_current()?;
        }
        op(&mut self.txn, entry)
    }

    fn take_error(&self) -> Result<()> {
        match self.in_flight.count.lock().1.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn commit_current(&mut self) -> Result<()> {
        let txn = std::mem::replace(&mut self.txn, self.db.begin_batch_txn());
        if txn.pending_len() == 0 {
            return Ok(());
        }
        {
            let mut g = self.in_flight.count.lock();
            while g.0 >= MAX_IN_FLIGHT {
                self.in_flight.cv.wait(&mut g);
            }
            g.0 += 1;
        }
        let fl = self.in_flight.clone();
        let done = move |res: Result<()>| {
            let mut g = fl.count.lock();
            g.0 -= 1;
            if let Err(e) = res {
                g.1.get_or_insert(e);
            }
            fl.cv.notify_all();
        };
        match self.commit_ts {
            Some(ts) => txn.commit_at_with_callback(ts, done),
            None => txn.commit_with_callback(done),
        }
        Ok(())
    }

    /// Commits everything queued and waits until all of it is written.
    pub fn flush(mut self) -> Result<()> {
        self.commit_current()?;
        let mut g = self.in_flight.count.lock();
        while g.0 > 0 {
            self.in_flight.cv.wait(&mut g);
        }
        match g.1.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
