//! `sett-bench threshold`: measures sett with every value inline in the
//! LSM tree against every value in the value log, for a range of value
//! sizes, to choose the default `value_threshold` — the smallest value size
//! from which separating values pays off.

use crate::data::{key, Rng, ValuePool};
use crate::measure::IoCounters;
use anyhow::Result;
use sett_engine::{Db, IterOptions, Options};
use std::path::Path;
use std::time::Instant;

/// Value sizes swept.
pub const VALUE_LENS: [usize; 7] = [64, 128, 256, 512, 1024, 2048, 4096];
/// Bytes of values loaded per run (before `scale`).
const DATA_BYTES: u64 = 256 << 20;

/// One measured configuration.
#[derive(Debug, serde::Serialize)]
pub struct ThresholdRecord {
    pub value_len: usize,
    /// "inline" (threshold above the value size) or "vlog" (threshold 0).
    pub placement: &'static str,
    pub keys: u64,
    pub load_ops_per_sec: f64,
    pub write_amp: f64,
    pub read_ops_per_sec: f64,
    pub scan_ops_per_sec: f64,
}

/// Runs one value size with one placement in a fresh directory under `dir`.
pub fn run_one(dir: &Path, value_len: usize, inline: bool, scale: f64) -> Result<ThresholdRecord> {
    let keys = ((DATA_BYTES / value_len as u64).min(1_000_000) as f64 * scale).max(1000.0) as u64;
    let tmp = tempfile::tempdir_in(dir)?;
    let mut opts = Options::new(tmp.path());
    opts.sync_writes = false;
    opts.value_threshold = if inline { usize::MAX } else { 0 };
    let db = Db::open(opts)?;
    let pool = ValuePool::new();

    let io0 = IoCounters::read()?;
    let start = Instant::now();
    let mut order: Vec<u64> = (0..keys).collect();
    let mut rng = Rng::new(7);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    for chunk in order.chunks(1000) {
        let mut wb = db.write_batch();
        for &i in chunk {
            wb.set(key(i).to_vec(), pool.value(i, value_len).to_vec())?;
        }
        wb.flush()?;
    }
    db.flush()?;
    db.wait_for_compactions()?;
    let load_secs = start.elapsed().as_secs_f64();
    let written = IoCounters::read()?.since(&io0).write_bytes;
    let user_bytes = keys * (value_len as u64 + 16);

    let reads = keys.min(200_000);
    let start = Instant::now();
    for _ in 0..reads {
        let i = rng.below(keys);
        let v = db.get(&key(i))?;
        anyhow::ensure!(
            v.as_deref() == Some(pool.value(i, value_len)),
            "wrong value"
        );
    }
    let read_secs = start.elapsed().as_secs_f64();

    let scans = (keys / 10).min(20_000);
    let start = Instant::now();
    for _ in 0..scans {
        let txn = db.begin_read();
        let mut it = txn.iter(IterOptions::default());
        it.seek(&key(rng.below(keys)))?;
        let mut n = 0;
        while it.valid() && n < 10 {
            std::hint::black_box(it.item().value()?);
            n += 1;
            it.next()?;
        }
    }
    let scan_secs = start.elapsed().as_secs_f64();
    db.close()?;
    Ok(ThresholdRecord {
        value_len,
        placement: if inline { "inline" } else { "vlog" },
        keys,
        load_ops_per_sec: keys as f64 / load_secs,
        write_amp: written as f64 / user_bytes as f64,
        read_ops_per_sec: reads as f64 / read_secs,
        scan_ops_per_sec: scans as f64 / scan_secs,
    })
}
