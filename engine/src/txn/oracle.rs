//! The timestamp oracle: hands out read and commit timestamps, detects
//! conflicts between serializable transactions, and knows the oldest
//! snapshot still in use (below which compaction may drop old versions).
//!
//! Invariants:
//! - commit timestamps are handed out strictly increasing, and commits
//!   reach the write queue in that order (the send happens under the lock);
//! - `visible_ts` only grows, and every commit at or below it is fully
//!   applied to the memtable, so a snapshot at `visible_ts` is stable;
//! - `committed` holds every commit newer than the oldest active read
//!   timestamp, which is exactly what conflict checks need.

use parking_lot::Mutex;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug)]
struct Inner {
    next_ts: u64,
    /// Recent commits: (commit ts, fingerprints of written keys).
    committed: VecDeque<(u64, Vec<u64>)>,
    /// Read timestamps of open transactions and iterators, with counts.
    active: BTreeMap<u64, usize>,
}

/// Timestamp oracle; shared by all transactions of one database.
#[derive(Debug)]
pub(crate) struct Oracle {
    inner: Mutex<Inner>,
    visible_ts: AtomicU64,
    /// Managed mode: the caller picks timestamps and the discard watermark.
    managed: bool,
    /// The caller's discard watermark (managed mode only).
    managed_discard_ts: AtomicU64,
}

/// Why a commit could not be given a timestamp.
pub(crate) enum CommitRefused {
    Conflict,
}

impl Oracle {
    /// An oracle whose last durable commit was `last_ts`.
    pub(crate) fn new(last_ts: u64, managed: bool) -> Oracle {
        Oracle {
            managed,
            managed_discard_ts: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                next_ts: last_ts + 1,
                committed: VecDeque::new(),
                active: BTreeMap::new(),
            }),
            visible_ts: AtomicU64::new(last_ts),
        }
    }

    /// Takes a read timestamp and registers it as in use; pair with
    /// [`Oracle::release_read`].
    pub(crate) fn acquire_read(&self) -> u64 {
        let mut g = self.inner.lock();
        let ts = self.visible_ts.load(Ordering::Acquire);
        *g.active.entry(ts).or_insert(0) += 1;
        ts
    }

    /// Registers a caller-chosen read timestamp (managed mode); pair with
    /// [`Oracle::release_read`].
    pub(crate) fn acquire_read_at(&self, ts: u64) {
        *self.inner.lock().active.entry(ts).or_insert(0) += 1;
    }

    /// Releases a read timestamp from [`Oracle::acquire_read`].
    pub(crate) fn release_read(&self, ts: u64) {
        let mut g = self.inner.lock();
        match g.active.get_mut(&ts) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                g.active.remove(&ts);
            }
            None => debug_assert!(false, "released an unknown read ts {ts}"),
        }
        self.prune(&mut g);
    }

    /// Drops remembered commits that no open or future transaction can
    /// conflict with: those at or below every active read timestamp and at
    /// or below `visible_ts` (which every future reader starts from).
    fn prune(&self, g: &mut Inner) {
        let visible = self.visible_ts.load(Ordering::Acquire);
        let bound = g
            .active
            .keys()
            .next()
            .copied()
            .unwrap_or(visible)
            .min(visible);
        while g.committed.front().is_some_and(|(c, _)| *c <= bound) {
            g.committed.pop_front();
        }
    }

    /// Checks `reads` against commits after `read_ts`, then assigns the
    /// commit timestamp and runs `enqueue` with it while still holding the
    /// lock, so that the write queue sees commits in timestamp order.
    pub(crate) fn commit<T>(
        &self,
        read_ts: u64,
        reads: &[u64],
        writes: Vec<u64>,
        enqueue: impl FnOnce(u64) -> T,
    ) -> Result<T, CommitRefused> {
        let mut g = self.inner.lock();
        if self.has_conflict(&g, read_ts, reads) {
            return Err(CommitRefused::Conflict);
        }
        let ts = g.next_ts;
        g.next_ts += 1;
        g.committed.push_back((ts, writes));
        self.prune(&mut g);
        Ok(enqueue(ts))
    }

    /// Managed mode: like [`Oracle::commit`] with the caller's `commit_ts`.
    pub(crate) fn commit_at<T>(
        &self,
        read_ts: u64,
        reads: &[u64],
        writes: Vec<u64>,
        commit_ts: u64,
        enqueue: impl FnOnce(u64) -> T,
    ) -> Result<T, CommitRefused> {
        debug_assert!(self.managed);
        let mut g = self.inner.lock();
        if self.has_conflict(&g, read_ts, reads) {
            return Err(CommitRefused::Conflict);
        }
        g.next_ts = g.next_ts.max(commit_ts + 1);
        g.committed.push_back((commit_ts, writes));
        self.prune(&mut g);
        Ok(enqueue(commit_ts))
    }

    fn has_conflict(&self, g: &Inner, read_ts: u64, reads: &[u64]) -> bool {
        if reads.is_empty() {
            return false;
        }
        let newer = |ts: &u64| *ts > read_ts;
        if self.managed {
            g.committed
                .iter()
                .any(|(ts, w)| newer(ts) && w.iter().any(|x| reads.contains(x)))
        } else {
            g.committed
                .iter()
                .rev()
                .take_while(|(ts, _)| newer(ts))
                .any(|(_, w)| w.iter().any(|x| reads.contains(x)))
        }
    }

    /// After an ingest of versions up to `ts`: later commits get larger
    /// timestamps and readers see the ingested data.
    pub(crate) fn advance_to(&self, ts: u64) {
        let mut g = self.inner.lock();
        g.next_ts = g.next_ts.max(ts + 1);
        self.visible_ts.fetch_max(ts, Ordering::AcqRel);
    }

    /// The read timestamps in use right now (each once), ascending.
    pub(crate) fn active_reads(&self) -> Vec<u64> {
        self.inner.lock().active.keys().copied().collect()
    }

    /// Managed mode: sets the discard watermark.
    pub(crate) fn set_discard_ts(&self, ts: u64) {
        self.managed_discard_ts.store(ts, Ordering::Release);
    }

    /// Called by the commit thread once every commit up to `ts` is applied.
    pub(crate) fn set_visible(&self, ts: u64) {
        let prev = self.visible_ts.fetch_max(ts, Ordering::AcqRel);
        debug_assert!(prev <= ts, "visible ts went backwards");
    }

    /// Newest fully applied commit.
    pub(crate) fn visible_ts(&self) -> u64 {
        self.visible_ts.load(Ordering::Acquire)
    }

    /// The oldest timestamp any reader may still read at: versions older
    /// than the newest one at or below it are invisible to everyone.
    pub(crate) fn discard_ts(&self) -> u64 {
        if self.managed {
            return self.managed_discard_ts.load(Ordering::Acquire);
        }
        let g = self.inner.lock();
        let visible = self.visible_ts.load(Ordering::Acquire);
        g.active
            .keys()
            .next()
            .copied()
            .unwrap_or(visible)
            .min(visible)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_only_with_newer_overlapping_commits() {
        let o = Oracle::new(0, false);
        let r1 = o.acquire_read();
        let r2 = o.acquire_read();
        let c1 = o.commit(r1, &[1], vec![1], |ts| ts).ok().unwrap();
        o.set_visible(c1);
        // r2 read key 1, which c1 wrote after r2 started.
        assert!(matches!(
            o.commit(r2, &[1], vec![2], |ts| ts),
            Err(CommitRefused::Conflict)
        ));
        // A read of another key does not conflict.
        assert!(o.commit(r2, &[3], vec![3], |ts| ts).is_ok());
        o.release_read(r1);
        o.release_read(r2);
        // The second commit got ts 2 but was never applied, so it is not visible.
        assert_eq!(o.discard_ts(), c1);
    }

    #[test]
    fn discard_ts_tracks_oldest_reader() {
        let o = Oracle::new(10, false);
        let r = o.acquire_read();
        let c = o.commit(r, &[], vec![], |ts| ts).ok().unwrap();
        o.set_visible(c);
        assert_eq!(o.discard_ts(), 10);
        o.release_read(r);
        assert_eq!(o.discard_ts(), 11);
    }
}
