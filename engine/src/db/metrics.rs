//! Counters behind [`crate::Stats`]. Relaxed atomics: each counter is
//! exact, but a snapshot of several is not taken at one instant.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds, in microseconds, of the buckets of
/// [`SyncLatency::counts`]: 1 ms doubling up to 8.192 s (the buckets etcd
/// uses for its fsync histograms). One more bucket counts slower syncs.
pub const SYNC_LATENCY_BOUNDS_US: [u64; 14] = [
    1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 256_000, 512_000, 1_024_000,
    2_048_000, 4_096_000, 8_192_000,
];

/// How long the syncs of data files took since open: every value-log
/// fsync (commit groups, flushes, value-log GC) and every new table's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncLatency {
    /// Syncs per bucket (not cumulative): `counts[i]` took at most
    /// `SYNC_LATENCY_BOUNDS_US[i]` and more than the bound before it; the
    /// last entry counts those above every bound.
    pub counts: Vec<u64>,
    /// Total time spent in those syncs, in nanoseconds.
    pub sum_ns: u64,
}

impl SyncLatency {
    /// Syncs measured.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

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
    /// Per bucket of [`SYNC_LATENCY_BOUNDS_US`], plus one above them.
    sync_buckets: [AtomicU64; SYNC_LATENCY_BOUNDS_US.len() + 1],
    sync_ns: AtomicU64,
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

    /// Records one data-file sync that took `took`.
    pub(crate) fn record_sync(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let bucket = SYNC_LATENCY_BOUNDS_US.partition_point(|&bound| bound < us);
        debug_assert!(bucket < self.sync_buckets.len());
        Metrics::add(&self.sync_buckets[bucket], 1);
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        Metrics::add(&self.sync_ns, ns);
    }

    /// The sync latencies recorded so far.
    pub(crate) fn sync_latency(&self) -> SyncLatency {
        SyncLatency {
            counts: self.sync_buckets.iter().map(Metrics::get).collect(),
            sum_ns: Metrics::get(&self.sync_ns),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syncs_land_in_their_bucket() {
        let m = Metrics::default();
        m.record_sync(Duration::from_micros(10));
        m.record_sync(Duration::from_micros(1_000));
        m.record_sync(Duration::from_micros(1_001));
        m.record_sync(Duration::from_secs(60));
        let l = m.sync_latency();
        assert_eq!(l.counts.len(), SYNC_LATENCY_BOUNDS_US.len() + 1);
        assert_eq!(l.counts[0], 2, "at most 1 ms");
        assert_eq!(l.counts[1], 1, "above 1 ms, at most 2 ms");
        assert_eq!(*l.counts.last().unwrap(), 1, "above every bound");
        assert_eq!(l.count(), 4);
        assert_eq!(l.sum_ns, 10_000 + 1_000_000 + 1_001_000 + 60_000_000_000);
    }
}
