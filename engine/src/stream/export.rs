//! Parallel export of one snapshot.
//!
//! The key space (or a prefix of it) is cut at the first keys of the
//! tables of the current tree, so that each range costs a few table reads.
//! Worker threads take ranges from a shared counter, walk them with a
//! snapshot iterator and send batches to the caller's thread, which hands
//! them to the sink one at a time. Batches of one range arrive in key
//! order; batches of different ranges interleave. Each range that is
//! exported completely ends with an empty batch of its `stream_id` (the
//! end-of-range marker), which lets the stream writer finish that range's
//! tables at once instead of holding them in memory until the end.

use super::{KvBatch, KvEntry};
use crate::db::Db;
use crate::format::{now_secs, user_key};
use crate::iter::{prefix_end, IterOptions};
use crate::txn::Txn;
use crate::{Error, Result};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// What to export.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// Snapshot to read; `None` = the newest. Must not be newer than the
    /// newest applied commit.
    pub read_ts: Option<u64>,
    /// Only keys with this prefix.
    pub prefix: Vec<u8>,
    /// Only versions newer than this (incremental export). With a
    /// non-zero value, deletions are exported too, so that applying the
    /// stream on top of an older copy reproduces the source.
    pub since_ts: u64,
    /// Worker threads.
    pub workers: usize,
    /// Export every version at or below the snapshot (deletions and
    /// expired entries included), not only the newest live one.
    pub all_versions: bool,
    /// Approximate bytes per batch handed to the sink.
    pub batch_bytes: usize,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            read_ts: None,
            prefix: Vec::new(),
            since_ts: 0,
            workers: 4,
            all_versions: false,
            batch_bytes: 4 << 20,
        }
    }
}

/// Totals of one export.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamSummary {
    /// The snapshot exported.
    pub read_ts: u64,
    /// Key ranges the export was split into.
    pub ranges: usize,
    /// Entries delivered.
    pub entries: u64,
    /// Bytes of keys and values delivered.
    pub bytes: u64,
}

/// Key ranges an export aims for per worker, so that workers that finish
/// early take more and all end together.
const RANGES_PER_WORKER: usize = 8;

type ChooseFn<'a> = Box<dyn Fn(&[u8], u64) -> bool + Send + Sync + 'a>;
type ConvertFn<'a> = Box<dyn Fn(KvEntry) -> Option<KvEntry> + Send + Sync + 'a>;

/// A configured export; see [`Db::stream`].
pub struct Stream<'a> {
    db: Db,
    opts: StreamOptions,
    choose: Option<ChooseFn<'a>>,
    convert: Option<ConvertFn<'a>>,
}

impl std::fmt::Debug for Stream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl Db {
    /// An export of a consistent snapshot, split over worker threads.
    pub fn stream(&self, opts: StreamOptions) -> Stream<'static> {
        Stream {
            db: self.clone(),
            opts,
            choose: None,
            convert: None,
        }
    }
}

impl<'a> Stream<'a> {
    /// Exports only keys (and versions) for which `f(key, version)` is
    /// true; it runs before the value is read.
    pub fn choose(mut self, f: impl Fn(&[u8], u64) -> bool + Send + Sync + 'a) -> Self {
        self.choose = Some(Box::new(f));
        self
    }

    /// Transforms (or, returning `None`, drops) each entry before it is
    /// batched.
    pub fn convert(mut self, f: impl Fn(KvEntry) -> Option<KvEntry> + Send + Sync + 'a) -> Self {
        self.convert = Some(Box::new(f));
        self
    }

    /// Runs the export, calling `sink` on this thread for every batch. An
    /// error from the sink stops the workers and is returned.
    pub fn run(self, mut sink: impl FnMut(KvBatch) -> Result<()>) -> Result<StreamSummary> {
        let inner = self.db.inner().clone();
        let txn = match self.opts.read_ts {
            None => self.db.begin_read(),
            Some(ts) => {
                if ts > inner.oracle.visible_ts() {
                    return Err(Error::InvalidArgument(format!(
                        "stream read_ts {ts} is newer than the newest commit {}",
                        inner.oracle.visible_ts()
                    )));
                }
                inner.oracle.acquire_read_at(ts);
                Txn::with_read_ts(self.db.clone(), false, false, ts)
            }
        };
        let ranges = self.key_ranges();
        let workers = self.opts.workers.clamp(1, 64).min(ranges.len().max(1));
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let (tx, rx) = crossbeam_channel::bounded::<Result<KvBatch>>(workers * 2);
        let mut summary = StreamSummary {
            read_ts: txn.read_ts(),
            ranges: ranges.len(),
            ..StreamSummary::default()
        };
        let mut first_err: Option<Error> = None;
        std::thread::scope(|s| {
            for _ in 0..workers {
                let tx = tx.clone();
                let (txn, ranges, next, stop, this) = (&txn, &ranges, &next, &stop, &self);
                s.spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((lo, hi)) = ranges.get(i) else { break };
                        let res = this.export_range(txn, i as u32, lo, hi.as_deref(), stop, &tx);
                        if let Err(e) = res {
                            stop.store(true, Ordering::Relaxed);
                            let _ = tx.send(Err(e));
                            break;
                        }
                    }
                });
            }
            drop(tx);
            for msg in rx.iter() {
                if first_err.is_some() {
                    continue; // drain so workers can finish
                }
                match msg.and_then(|b| {
                    summary.entries += b.entries.len() as u64;
                    summary.bytes += b.payload_bytes() as u64;
                    sink(b)
                }) {
                    Ok(()) => {}
                    Err(e) => {
                        stop.store(true, Ordering::Relaxed);
                        first_err = Some(e);
                    }
                }
            }
        });
        match first_err {
            Some(e) => Err(e),
            None => Ok(summary),
        }
    }

    /// Cuts the prefix's key range into about `RANGES_PER_WORKER` ranges
    /// per worker of similar size, at block boundaries of the tree's
    /// tables: each table offers its first key and every `step`-th block
    /// separator, and an even sample of those (by position) is kept. So a
    /// few large tables that each span the whole key space (a fresh L0)
    /// still give every worker work.
    fn key_ranges(&self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let lo = self.opts.prefix.clone();
        let hi = prefix_end(&self.opts.prefix).filter(|_| !self.opts.prefix.is_empty());
        let version = self.db.inner().levels.current();
        let tables: Vec<_> = version.levels.iter().flatten().collect();
        let target = self.opts.workers.clamp(1, 64) * RANGES_PER_WORKER;
        let blocks: usize = tables.iter().map(|t| t.block_count()).sum();
        let step = (blocks / (target * 4)).max(1);
        let mut cuts: Vec<Vec<u8>> = Vec::new();
        for t in &tables {
            cuts.push(user_key(t.smallest()).to_vec());
            // A table whose index cannot be read offers only its first key;
            // reading its data will report the damage.
            if let Ok(seps) = t.block_separators(step) {
                cuts.extend(seps.iter().map(|s| user_key(s).to_vec()));
            }
        }
        cuts.retain(|k| {
            k.as_slice() > lo.as_slice() && hi.as_deref().is_none_or(|h| k.as_slice() < h)
        });
        cuts.sort();
        cuts.dedup();
        if cuts.len() >= target {
            // Keep `target - 1` cuts, evenly spaced.
            let n = cuts.len();
            cuts = (1..target).map(|j| cuts[j * n / target].clone()).collect();
            cuts.dedup();
        }
        let mut ranges = Vec::with_capacity(cuts.len() + 1);
        let mut start = lo;
        for c in cuts {
            ranges.push((std::mem::replace(&mut start, c.clone()), Some(c)));
        }
        ranges.push((start, hi));
        debug_assert!(ranges
            .windows(2)
            .all(|w| w[0].1.as_deref() == Some(w[1].0.as_slice())));
        ranges
    }

    fn export_range(
        &self,
        txn: &Txn,
        stream_id: u32,
        lo: &[u8],
        hi: Option<&[u8]>,
        stop: &AtomicBool,
        tx: &crossbeam_channel::Sender<Result<KvBatch>>,
    ) -> Result<()> {
        let mut it = txn.iter(IterOptions {
            lower_bound: Some(lo.to_vec()),
            upper_bound: hi.map(<[u8]>::to_vec),
            all_versions: true,
            ..IterOptions::default()
        });
        it.rewind()?;
        let now = now_secs();
        let o = &self.opts;
        let mut batch = KvBatch {
            stream_id,
            entries: Vec::new(),
        };
        let mut batch_bytes = 0usize;
        let mut last_key: Option<Vec<u8>> = None;
        while it.valid() {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let item = it.item();
            let newest = last_key.as_deref() != Some(item.key());
            if newest {
                last_key = Some(item.key().to_vec());
            }
            let wanted = item.version() > o.since_ts
                && (o.all_versions
                    || (newest && (o.since_ts > 0 || !item.vs.is_deleted_or_expired(now))))
                && self
                    .choose
                    .as_ref()
                    .is_none_or(|f| f(item.key(), item.version()));
            if wanted {
                let deleted = item.vs.is_delete();
                let value = if deleted {
                    Ok(Vec::new())
                } else {
                    item.value()
                };
                let value = match value {
                    Ok(v) => Some(v),
                    // Value-log GC keeps only values a snapshot can read: an
                    // older version's value (shadowed) or an expired one may
                    // be gone. The shadowed version is skipped, as compaction
                    // would drop it; the expired one keeps its place (its
                    // value can never be read again) so that an incremental
                    // export still carries the expiry.
                    Err(Error::ValueCollected { .. }) if !newest => None,
                    Err(Error::ValueCollected { .. }) if item.vs.is_expired(now) => {
                        Some(Vec::new())
                    }
                    Err(e) => return Err(e),
                };
                let Some(value) = value else {
                    it.next()?;
                    continue;
                };
                let entry = KvEntry {
                    key: item.key().to_vec(),
                    value,
                    version: item.version(),
                    user_meta: item.user_meta(),
                    expires_at: item.expires_at(),
                    deleted,
                };
                let entry = match &self.convert {
                    Some(f) => f(entry),
                    None => Some(entry),
                };
                if let Some(e) = entry {
                    batch_bytes += e.key.len() + e.value.len();
                    batch.entries.push(e);
                    if batch_bytes >= o.batch_bytes {
                        let full = std::mem::replace(
                            &mut batch,
                            KvBatch {
                                stream_id,
                                entries: Vec::new(),
                            },
                        );
                        batch_bytes = 0;
                        if tx.send(Ok(full)).is_err() {
                            return Ok(());
                        }
                    }
                }
            }
            it.next()?;
        }
        if !batch.entries.is_empty() && tx.send(Ok(batch)).is_err() {
            return Ok(());
        }
        // The end-of-range marker: nothing more will come for `stream_id`,
        // so a consumer may finish its tables for that range now.
        let _ = tx.send(Ok(KvBatch {
            stream_id,
            entries: Vec::new(),
        }));
        Ok(())
    }
}
