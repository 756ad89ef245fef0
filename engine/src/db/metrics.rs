//! Counters behind [`crate::Stats`]. Relaxed atomics: each counter is
//! exact, but a snapshot of several is not taken at one instant.

use std::sync::atomic::{AtomicU64, Ordering};

/// Running totals since open.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) gets: AtomicU64,
    pub(crate) commits: AtomicU64,
    pub(crate) entries_written: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
    pub(crate) commit_groups: AtomicU64,
    pub(crate) syncs: AtomicU64,
    pub(crate) flushes: AtomicU64,
    pub(crate) compactions: AtomicU64,
    pub(crate) write_stalls: AtomicU64,
    pub(crate) write_slowdowns: AtomicU64,
}

impl Metrics {
    /// Adds `n` to `counter`.
    #[inline]
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads `counter`.
    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
