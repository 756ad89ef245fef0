//! The workloads.
//!
//! | workload | what | latency sample |
//! |---|---|---|
//! | `load-1k` | 1M random 16 B keys, 1 KiB values, batches of 1000, no fsync, fresh db | one batch |
//! | `load-128` | 2M random 16 B keys, 128 B values, batches of 1000, no fsync, fresh db | one batch |
//! | `read-random` | 1M uniform point reads of keys written by `load-128`, 1 thread | one read |
//! | `scan` | 100k scans of 10 entries from random existing keys of `load-128`, 1 thread | one scan |
//! | `durable-1` | 2000 commits of one 16 B key + 256 B value, each waiting for fsync, 1 thread | one commit |
//! | `durable-32` | 20000 such commits from 32 threads at once | one commit |
//! | `gc` | `load-1k`'s data written, then overwritten 3 times; full compaction; value-log GC (discard ratio 0.5) until it finds nothing; engines with a value log only | one GC step |
//!
//! Every count is multiplied by `--scale`. Single-threaded throughput is
//! operations divided by the summed time spent inside the engine (building
//! batches and checking results are not timed); multi-threaded throughput
//! is operations divided by wall-clock time.

use crate::data::{self, Rng, ValuePool, KEY_LEN};
use crate::engine::Engine;
use crate::measure::Latency;
use anyhow::{ensure, Result};
use std::time::{Duration, Instant};

/// Pairs per bulk-load batch.
pub const BATCH_LEN: usize = 1000;
/// Entries read by each scan.
pub const SCAN_LEN: usize = 10;
/// Value length of the durable workloads.
pub const DURABLE_VALUE_LEN: usize = 256;
/// First key index used by the durable workloads (disjoint from loads).
const DURABLE_KEY_BASE: u64 = 1 << 40;

/// A workload name as given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WorkloadArg {
    /// 1M keys with 1 KiB values.
    #[value(name = "load-1k")]
    Load1k,
    /// 2M keys with 128 B values.
    #[value(name = "load-128")]
    Load128,
    /// 1M point reads over the `load-128` data.
    ReadRandom,
    /// 100k 10-entry scans over the `load-128` data.
    Scan,
    /// Both `durable-1` and `durable-32`.
    Durable,
    /// Fsynced commits from one writer.
    #[value(name = "durable-1")]
    Durable1,
    /// Fsynced commits from 32 writers.
    #[value(name = "durable-32")]
    Durable32,
    /// Overwrite the `load-1k` data 3 times, then value-log GC.
    Gc,
}

/// One workload to run and report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Workload {
    /// See the module table.
    Load1k,
    /// See the module table.
    Load128,
    /// See the module table.
    ReadRandom,
    /// See the module table.
    Scan,
    /// See the module table.
    Durable1,
    /// See the module table.
    Durable32,
    /// See the module table.
    Gc,
}

impl Workload {
    /// Expands command-line names into a sorted, deduplicated list.
    pub fn from_args(args: &[WorkloadArg]) -> Vec<Workload> {
        let mut out: Vec<Workload> = args
            .iter()
            .flat_map(|a| match a {
                WorkloadArg::Load1k => vec![Workload::Load1k],
                WorkloadArg::Load128 => vec![Workload::Load128],
                WorkloadArg::ReadRandom => vec![Workload::ReadRandom],
                WorkloadArg::Scan => vec![Workload::Scan],
                WorkloadArg::Durable => vec![Workload::Durable1, Workload::Durable32],
                WorkloadArg::Durable1 => vec![Workload::Durable1],
                WorkloadArg::Durable32 => vec![Workload::Durable32],
                WorkloadArg::Gc => vec![Workload::Gc],
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Load1k => "load-1k",
            Workload::Load128 => "load-128",
            Workload::ReadRandom => "read-random",
            Workload::Scan => "scan",
            Workload::Durable1 => "durable-1",
            Workload::Durable32 => "durable-32",
            Workload::Gc => "gc",
        }
    }

    /// Operations at scale 1.
    fn base_ops(self) -> u64 {
        match self {
            Workload::Load1k => 1_000_000,
            Workload::Load128 => 2_000_000,
            Workload::ReadRandom => 1_000_000,
            Workload::Scan => 100_000,
            Workload::Durable1 => 2_000,
            Workload::Durable32 => 20_000,
            Workload::Gc => 1_000_000,
        }
    }

    /// Operations at `scale` (at least one).
    pub fn ops(self, scale: f64) -> u64 {
        ((self.base_ops() as f64 * scale).round() as u64).max(1)
    }

    /// Writer or reader threads.
    pub fn threads(self) -> usize {
        match self {
            Workload::Durable32 => 32,
            _ => 1,
        }
    }

    /// Value length written, for the workloads that write.
    pub fn value_len(self) -> Option<usize> {
        match self {
            Workload::Load1k | Workload::Gc => Some(1024),
            Workload::Load128 => Some(128),
            Workload::Durable1 | Workload::Durable32 => Some(DURABLE_VALUE_LEN),
            Workload::ReadRandom | Workload::Scan => None,
        }
    }

    /// What one latency sample covers.
    pub fn latency_unit(self) -> &'static str {
        match self {
            Workload::Load1k | Workload::Load128 => "batch",
            Workload::ReadRandom => "read",
            Workload::Scan => "scan",
            Workload::Durable1 | Workload::Durable32 => "commit",
            Workload::Gc => "gc step",
        }
    }
}

/// Timing of one workload run.
#[derive(Debug)]
pub struct Phase {
    /// Operations done (keys written, reads, scans, commits).
    pub ops: u64,
    /// Time the throughput is computed from (see the module docs).
    pub elapsed: Duration,
    /// Latency samples, each covering [`Workload::latency_unit`].
    pub latency: Latency,
}

/// Writes keys `0..ops` (in the random order their mix gives) with values
/// of `value_len`, in batches of [`BATCH_LEN`].
pub fn load(engine: &dyn Engine, pool: &ValuePool, ops: u64, value_len: usize) -> Result<Phase> {
    load_round(engine, pool, ops, value_len, 0)
}

/// Write rounds of the `gc` workload: the load and three overwrites.
pub const GC_ROUNDS: u64 = 4;
/// Discard ratio the `gc` workload collects at.
pub const GC_DISCARD_RATIO: f64 = 0.5;
/// Value-log file size of the `gc` workload at scale 1 (sett's default);
/// scaled with `--scale`.
pub const GC_VLOG_FILE_BYTES: u64 = 1 << 30;
/// Most GC steps one run may take (a bound; each collects one file).
const GC_STEPS_MAX: u64 = 1_000_000;

/// Index of the value key `i` gets in write round `round` (0: the load).
fn round_value_index(i: u64, round: u64) -> u64 {
    i ^ (round << 48)
}

/// Like [`load`], with the values of write round `round`.
pub fn load_round(
    engine: &dyn Engine,
    pool: &ValuePool,
    ops: u64,
    value_len: usize,
    round: u64,
) -> Result<Phase> {
    let mut latency = Latency::new();
    let mut elapsed = Duration::ZERO;
    let mut batch: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(BATCH_LEN);
    let mut next = 0u64;
    while next < ops {
        let end = (next + BATCH_LEN as u64).min(ops);
        batch.clear();
        batch.extend((next..end).map(|i| {
            let v = pool.value(round_value_index(i, round), value_len);
            (data::key(i).to_vec(), v.to_vec())
        }));
        let t = Instant::now();
        engine.load_batch(&batch)?;
        let d = t.elapsed();
        latency.record(d);
        elapsed += d;
        next = end;
    }
    Ok(Phase {
        ops,
        elapsed,
        latency,
    })
}

/// Reads `ops` uniformly chosen keys among the `loaded` written by
/// [`load`] and checks every value.
pub fn read_random(
    engine: &dyn Engine,
    pool: &ValuePool,
    loaded: u64,
    value_len: usize,
    ops: u64,
) -> Result<Phase> {
    let mut rng = Rng::new(0xBEEF_0001);
    let mut latency = Latency::new();
    let mut elapsed = Duration::ZERO;
    for _ in 0..ops {
        let i = rng.below(loaded);
        let key = data::key(i);
        let t = Instant::now();
        let got = engine.get(&key)?;
        let d = t.elapsed();
        latency.record(d);
        elapsed += d;
        let Some(got) = got else {
            anyhow::bail!("key index {i} missing")
        };
        ensure!(
            got == pool.value(i, value_len),
            "key index {i}: wrong value"
        );
    }
    Ok(Phase {
        ops,
        elapsed,
        latency,
    })
}

/// Runs `ops` scans of [`SCAN_LEN`] entries, each from a uniformly chosen
/// key among the `loaded` written by [`load`].
pub fn scan(engine: &dyn Engine, loaded: u64, ops: u64) -> Result<Phase> {
    let mut rng = Rng::new(0xBEEF_0002);
    let mut latency = Latency::new();
    let mut elapsed = Duration::ZERO;
    let mut entries = 0u64;
    for _ in 0..ops {
        let i = rng.below(loaded);
        let key = data::key(i);
        let t = Instant::now();
        let n = engine.scan(&key, SCAN_LEN)?;
        let d = t.elapsed();
        latency.record(d);
        elapsed += d;
        // The start key exists, so at least it is found; fewer than
        // SCAN_LEN only at the end of the key space.
        ensure!(
            (1..=SCAN_LEN).contains(&n),
            "scan from key index {i} read {n} entries"
        );
        entries += n as u64;
    }
    ensure!(
        entries >= ops * SCAN_LEN as u64 * 9 / 10,
        "scans read only {entries} entries"
    );
    Ok(Phase {
        ops,
        elapsed,
        latency,
    })
}

/// Runs value-log GC steps until one finds nothing to collect; ops =
/// files collected, one latency sample per step.
pub fn value_log_gc(engine: &dyn Engine, discard_ratio: f64) -> Result<Phase> {
    let mut latency = Latency::new();
    let start = Instant::now();
    let mut collected = 0u64;
    loop {
        ensure!(collected < GC_STEPS_MAX, "value-log GC does not converge");
        let t = Instant::now();
        let more = engine.value_log_gc(discard_ratio)?;
        latency.record(t.elapsed());
        if !more {
            break;
        }
        collected += 1;
    }
    Ok(Phase {
        ops: collected,
        elapsed: start.elapsed(),
        latency,
    })
}

/// Reads every `stride`-th of the `loaded` keys and checks it holds its
/// value of write round `round`.
pub fn verify_round(
    engine: &dyn Engine,
    pool: &ValuePool,
    loaded: u64,
    value_len: usize,
    round: u64,
    stride: u64,
) -> Result<()> {
    for i in (0..loaded).step_by(stride.max(1) as usize) {
        let got = engine.get(&data::key(i))?;
        ensure!(
            got.as_deref() == Some(pool.value(round_value_index(i, round), value_len)),
            "key index {i}: missing or not its round-{round} value"
        );
    }
    Ok(())
}

/// Key index of the `j`-th durable write of thread `t` out of `threads`.
fn durable_index(t: usize, j: u64, threads: usize) -> u64 {
    DURABLE_KEY_BASE + j * threads as u64 + t as u64
}

/// Splits `ops` durable commits over `threads` writers, all started at
/// once; returns wall-clock throughput and per-commit latency.
pub fn durable(engine: &dyn Engine, pool: &ValuePool, ops: u64, threads: usize) -> Result<Phase> {
    assert!(threads >= 1);
    let per_thread = |t: usize| ops / threads as u64 + u64::from((t as u64) < ops % threads as u64);
    let start = Instant::now();
    let results: Vec<Result<Latency>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || -> Result<Latency> {
                    let mut latency = Latency::new();
                    for j in 0..per_thread(t) {
                        let i = durable_index(t, j, threads);
                        let key = data::key(i);
                        let value = pool.value(i, DURABLE_VALUE_LEN);
                        let t0 = Instant::now();
                        engine.put_durable(&key, value)?;
                        latency.record(t0.elapsed());
                    }
                    Ok(latency)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("writer thread panicked"))
            .collect()
    });
    let elapsed = start.elapsed();
    let mut latency = Latency::new();
    for r in results {
        latency.merge(&r?);
    }
    ensure!(
        latency.count() == ops,
        "recorded {} commits, expected {ops}",
        latency.count()
    );
    Ok(Phase {
        ops,
        elapsed,
        latency,
    })
}

/// Checks that every key written by [`durable`] reads back.
pub fn verify_durable(
    engine: &dyn Engine,
    pool: &ValuePool,
    ops: u64,
    threads: usize,
) -> Result<()> {
    for t in 0..threads {
        let mut j = 0u64;
        loop {
            let i = durable_index(t, j, threads);
            // Thread t wrote j = 0..per_thread(t); index order is j-major.
            if j * threads as u64 + t as u64 >= ops {
                break;
            }
            let got = engine.get(&data::key(i))?;
            ensure!(
                got.as_deref() == Some(pool.value(i, DURABLE_VALUE_LEN)),
                "durable key index {i} missing or wrong"
            );
            j += 1;
        }
    }
    Ok(())
}

/// Bytes of user data a write workload of `ops` carries.
pub fn user_bytes(ops: u64, value_len: usize) -> u64 {
    ops * (KEY_LEN + value_len) as u64
}
