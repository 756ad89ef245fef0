//! Coalescing batches (bbolt's `DB.Batch`): concurrent callers' closures
//! run in one shared write transaction that commits once.
//!
//! Protocol. A caller joins the open group (or opens one, which begins
//! the shared transaction), runs its closure on the shared transaction
//! under the group's lock — on its own thread, so closures need not be
//! `Send` or `'static` — and waits. The group closes when it is
//! `MAX_BATCH_DELAY` old or has `MAX_BATCH_CALLS` members; once every
//! member has run its closure, whichever member notices first commits.
//! If any closure failed (its writes cannot be taken back out of the
//! shared transaction) or the commit failed (a conflict, a size limit),
//! every member runs its closure again alone in its own transaction, so
//! one caller's failure never fails another. Hence closures must be
//! idempotent: one may run twice, the first run's writes discarded.
//!
//! Invariant: a group's transaction commits only after all its members
//! ran; a member returns `Ok` only if its writes committed (in the group
//! or alone).

use super::Db;
use crate::txn::Txn;
use crate::{Error, Result};
use parking_lot::{Condvar, Mutex};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a group stays open for more callers.
const MAX_BATCH_DELAY: Duration = Duration::from_millis(10);
/// Most callers in one group.
const MAX_BATCH_CALLS: usize = 1000;
/// Conflicts a solo retry of a batch closure absorbs before giving up.
const SOLO_CONFLICT_RETRIES: usize = 16;
/// Conflicts [`Db::update_retrying`] absorbs before giving up.
const MAX_CONFLICT_RETRIES: usize = 10_000;

/// Per-database batching state: the group open for joining.
#[derive(Debug, Default)]
pub(crate) struct Batcher {
    open: Mutex<Option<Arc<Group>>>,
}

#[derive(Debug)]
struct Group {
    deadline: Instant,
    txn: Mutex<Shared>,
    state: Mutex<State>,
    cv: Condvar,
}

#[derive(Debug)]
struct Shared {
    /// Taken by the committing member.
    txn: Option<Txn>,
    /// A closure failed (or panicked): the transaction is not committed.
    failed: bool,
}

#[derive(Debug, Default)]
struct State {
    joined: usize,
    ran: usize,
    closed: bool,
    committing: bool,
    /// Set once: whether the shared transaction committed.
    committed: Option<bool>,
}

impl Group {
    fn try_join(&self) -> bool {
        let mut st = self.state.lock();
        if st.closed || st.joined >= MAX_BATCH_CALLS || Instant::now() >= self.deadline {
            return false;
        }
        st.joined += 1;
        self.cv.notify_all();
        true
    }
}

/// Counts a member's closure as run even if it panics.
struct Ran<'g>(&'g Group);

impl Drop for Ran<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.txn.lock().failed = true;
        }
        self.0.state.lock().ran += 1;
        self.0.cv.notify_all();
    }
}

impl Db {
    /// Runs `f` in a write transaction shared with concurrent `batch`
    /// callers and commits them together (one commit for many callers,
    /// after up to 10 ms of waiting for company). Returns once `f`'s writes
    /// are committed, or `f`'s error / the commit error of a solo retry.
    ///
    /// `f` must be idempotent: when the combined commit fails, or another
    /// caller's closure fails, `f` is run again alone and the first run's
    /// writes are discarded. Conflicts of the solo run are retried a few
    /// times. Use [`Db::update`] when one caller writes at a time.
    pub fn batch(&self, mut f: impl FnMut(&mut Txn) -> Result<()>) -> Result<()> {
        let batcher = &self.inner().extras.batcher;
        let group = {
            let mut open = batcher.open.lock();
            match open.as_ref() {
                Some(g) if g.try_join() => g.clone(),
                _ => {
                    let g = Arc::new(Group {
                        deadline: Instant::now() + MAX_BATCH_DELAY,
                        txn: Mutex::new(Shared {
                            txn: Some(self.begin_write()),
                            failed: false,
                        }),
                        state: Mutex::new(State {
                            joined: 1,
                            ..State::default()
                        }),
                        cv: Condvar::new(),
                    });
                    *open = Some(g.clone());
                    g
                }
            }
        };
        {
            let _ran = Ran(&group);
            let mut shared = group.txn.lock();
            if !shared.failed {
                let txn = shared
                    .txn
                    .as_mut()
                    .expect("taken only after every member ran");
                if f(txn).is_err() {
                    shared.failed = true;
                }
            }
        }
        if self.finish_group(&group) {
            return Ok(());
        }
        self.run_solo(&mut f)
    }

    /// Waits for the group's outcome, committing it if this member is the
    /// first to see the group closed and complete. True if it committed.
    fn finish_group(&self, group: &Arc<Group>) -> bool {
        let mut st = group.state.lock();
        loop {
            if let Some(ok) = st.committed {
                return ok;
            }
            if !st.closed && (st.joined >= MAX_BATCH_CALLS || Instant::now() >= group.deadline) {
                st.closed = true;
            }
            if st.closed && !st.committing && st.ran == st.joined {
                st.committing = true;
                drop(st);
                let ok = self.commit_group(group);
                let mut st = group.state.lock();
                st.committed = Some(ok);
                group.cv.notify_all();
                return ok;
            }
            if st.closed {
                group.cv.wait(&mut st);
            } else {
                group.cv.wait_until(&mut st, group.deadline);
            }
        }
    }

    fn commit_group(&self, group: &Arc<Group>) -> bool {
        {
            let mut open = self.inner().extras.batcher.open.lock();
            if open.as_ref().is_some_and(|g| Arc::ptr_eq(g, group)) {
                *open = None;
            }
        }
        let (txn, failed) = {
            let mut shared = group.txn.lock();
            (shared.txn.take(), shared.failed)
        };
        let txn = txn.expect("one member commits");
        if failed {
            return false;
        }
        match txn.commit() {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(error = %e, "coalesced batch failed; members retry alone");
                false
            }
        }
    }

    fn run_solo(&self, f: &mut impl FnMut(&mut Txn) -> Result<()>) -> Result<()> {
        let mut conflicts = 0;
        loop {
            let mut txn = self.begin_write();
            f(&mut txn)?;
            match txn.commit() {
                Err(Error::Conflict) if conflicts < SOLO_CONFLICT_RETRIES => conflicts += 1,
                r => return r,
            }
        }
    }

    /// [`Db::update`] that reruns `f` on [`Error::Conflict`] (with a short
    /// backoff, up to a bound); `f` must tolerate running more than once.
    pub(crate) fn update_retrying<T>(&self, mut f: impl FnMut(&mut Txn) -> Result<T>) -> Result<T> {
        let mut attempt = 0usize;
        loop {
            let mut txn = self.begin_write();
            let out = f(&mut txn)?;
            match txn.commit() {
                Ok(()) => return Ok(out),
                Err(Error::Conflict) if attempt < MAX_CONFLICT_RETRIES => {
                    attempt += 1;
                    if attempt < 8 {
                        std::thread::yield_now();
                    } else {
                        let us = 50 * (attempt.min(20) as u64);
                        std::thread::sleep(Duration::from_micros(us));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}
