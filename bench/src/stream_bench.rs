//! `sett-bench stream`: the engine's parallel snapshot export and the
//! stream writer, on a ~1 GiB database (1M keys × 1 KiB values at scale 1).
//!
//! 1. **Export** the whole snapshot to a null sink with 1 and with 2
//!    workers (best of two runs each): MB/s of keys + values delivered and
//!    the 2-vs-1 speed-up. Targets: ≥ 300 MB/s, ≥ 1.5×.
//! 2. **Ingest** that export (held in memory, so only ingestion is timed)
//!    into a fresh database with the stream writer, against re-inserting
//!    the same entries through write batches of 1000 and waiting until
//!    flushes and compactions are done (the stream writer's tables need no
//!    compaction). Target: stream writer ≥ 5× faster.
//! 3. **Copy**: export piped straight into a stream writer, end to end.
//!
//! Values of 1 KiB sit at the default `value_threshold`, so the source
//! keeps them in the value log and the export reads them from there; the
//! stream writer stores them inline in its tables.

use crate::data::{key, Rng, ValuePool};
use crate::engine::{BLOOM_BITS_PER_KEY, CACHE_BYTES, MEMTABLE_BYTES};
use crate::rss::Rss;
use anyhow::{ensure, Context, Result};
use clap::Args;
use serde::Serialize;
use sett_engine::{Compression, Db, Entry, KvBatch, Options, StreamOptions};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Keys at scale 1.
const KEYS: u64 = 1_000_000;
/// Bytes per value.
const VALUE_LEN: usize = 1024;
/// Entries per write batch (load and re-insert).
const BATCH_LEN: usize = 1000;
/// Timed runs per export configuration; the best is reported.
const EXPORT_RUNS: usize = 2;
/// Point reads that check the copies.
const CHECK_READS: u64 = 2000;

/// `sett-bench stream` arguments.
#[derive(Debug, Args)]
pub struct StreamBenchArgs {
    /// Multiplies the key count (0.01 for a quick run).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Print one JSON object on stdout (the table goes to stderr).
    #[arg(long)]
    json: bool,
    /// Parent of the temporary databases [default: the system temp dir].
    /// Must be on the disk to measure, not tmpfs.
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Everything measured.
#[derive(Debug, Serialize)]
struct StreamRecord {
    keys: u64,
    value_len: usize,
    /// Bytes of keys and values in the database.
    user_bytes: u64,
    load_secs: f64,
    export_1_worker_mb_per_sec: f64,
    export_2_workers_mb_per_sec: f64,
    /// 2-worker over 1-worker export speed.
    export_speedup: f64,
    /// Stream writer: from `stream_writer()` to `finish()` returning.
    ingest_stream_writer_secs: f64,
    /// Write batches: until the last batch is committed.
    ingest_write_batch_secs: f64,
    /// Write batches, plus flush and compactions finishing.
    ingest_write_batch_settled_secs: f64,
    /// The same data through 1000-key transactions with `sync_writes`,
    /// until flushed and compacted.
    ingest_txn_settled_secs: f64,
    /// `ingest_txn_settled_secs / ingest_stream_writer_secs`.
    ingest_txn_speedup: f64,
    /// `ingest_write_batch_settled_secs / ingest_stream_writer_secs`.
    ingest_speedup: f64,
    /// Export piped into a stream writer, end to end.
    copy_mb_per_sec: f64,
    /// Resident memory after the export runs.
    rss_after_export: Rss,
}

fn bench_options(dir: &Path) -> Options {
    let mut o = Options::new(dir);
    o.sync_writes = false;
    o.block_cache_size = CACHE_BYTES;
    o.memtable_size = MEMTABLE_BYTES;
    o.bloom_bits_per_key = BLOOM_BITS_PER_KEY;
    o.compression = Compression::None;
    o
}

/// CPU seconds (user + system) this process has used, from
/// `/proc/self/stat` (fields 14 and 15, in clock ticks of 1/100 s).
fn process_cpu_secs() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    // The command name (field 2) may hold spaces: count from after it, so
    // that fields 14 and 15 are at 11 and 12.
    let rest = stat.rsplit_once(')').context("bad /proc/self/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64> {
        Ok(fields
            .get(i)
            .context("short /proc/self/stat")?
            .parse::<f64>()?)
    };
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

/// The 1-minute load average, to show how busy the machine was.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

fn mb_per_sec(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs.max(1e-9)
}

/// Checks `CHECK_READS` random keys of `db` against the pool.
fn spot_check(db: &Db, pool: &ValuePool, keys: u64, what: &str) -> Result<()> {
    let mut rng = Rng::new(99);
    for _ in 0..CHECK_READS.min(keys) {
        let i = rng.below(keys);
        let v = db.get(&key(i))?;
        ensure!(
            v.as_deref() == Some(pool.value(i, VALUE_LEN)),
            "{what}: wrong value for key {i}"
        );
    }
    Ok(())
}

/// Runs the benchmark.
pub fn run(args: StreamBenchArgs) -> Result<()> {
    ensure!(
        args.scale.is_finite() && args.scale > 0.0,
        "--scale must be positive"
    );
    let keys = ((KEYS as f64 * args.scale) as u64).max(BATCH_LEN as u64);
    let parent = args.dir.unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let base = tempfile::Builder::new()
        .prefix("sett-bench-stream-")
        .tempdir_in(&parent)?;
    let pool = ValuePool::new();
    let user_bytes = keys * (crate::data::KEY_LEN + VALUE_LEN) as u64;
    eprintln!(
        "sett-bench stream: {keys} keys × {VALUE_LEN} B ({:.2} GiB), dir {}",
        user_bytes as f64 / (1u64 << 30) as f64,
        base.path().display()
    );

    // The source database.
    eprint!("load ... ");
    let src = Db::open(bench_options(&base.path().join("src")))?;
    let start = Instant::now();
    for lo in (0..keys).step_by(BATCH_LEN) {
        let mut wb = src.write_batch();
        for i in lo..(lo + BATCH_LEN as u64).min(keys) {
            wb.set(key(i).to_vec(), pool.value(i, VALUE_LEN).to_vec())?;
        }
        wb.flush()?;
    }
    src.flush()?;
    src.wait_for_compactions()?;
    let load_secs = start.elapsed().as_secs_f64();
    eprintln!("{load_secs:.1}s");

    // 1. Export to a null sink.
    let mut best = [0f64; 2];
    for run in 0..EXPORT_RUNS {
        for (slot, workers) in [1usize, 2].into_iter().enumerate() {
            let cpu0 = process_cpu_secs()?;
            let start = Instant::now();
            let summary = src
                .stream(StreamOptions {
                    workers,
                    ..StreamOptions::default()
                })
                .run(|b| {
                    std::hint::black_box(&b);
                    Ok(())
                })?;
            let secs = start.elapsed().as_secs_f64();
            let cores = (process_cpu_secs()? - cpu0) / secs;
            ensure!(
                summary.entries == keys,
                "export saw {} keys",
                summary.entries
            );
            let rate = mb_per_sec(summary.bytes, secs);
            eprintln!(
                "export run {run}: {workers} worker(s) {rate:>7.0} MB/s ({secs:.2}s, {} ranges, \
                 {cores:.2} cores busy, load average {:.1})",
                summary.ranges,
                load_average()
            );
            best[slot] = best[slot].max(rate);
        }
    }
    let rss_after_export = Rss::read()?;

    // 2. Ingest: the same entries through the stream writer and through
    //    write batches.
    let mut batches: Vec<KvBatch> = Vec::new();
    src.stream(StreamOptions {
        workers: 2,
        ..StreamOptions::default()
    })
    .run(|b| {
        batches.push(b);
        Ok(())
    })?;

    eprint!("ingest with write batches ... ");
    let wb_dir = base.path().join("write-batch");
    let dst = Db::open(bench_options(&wb_dir))?;
    let start = Instant::now();
    let mut wb = dst.write_batch();
    let mut pending = 0usize;
    for e in batches.iter().flat_map(|b| &b.entries) {
        let mut entry = Entry::new(e.key.clone(), e.value.clone());
        entry.user_meta = e.user_meta;
        entry.expires_at = e.expires_at;
        wb.set_entry(entry)?;
        pending += 1;
        if pending == BATCH_LEN {
            std::mem::replace(&mut wb, dst.write_batch()).flush()?;
            pending = 0;
        }
    }
    wb.flush()?;
    let ingest_write_batch_secs = start.elapsed().as_secs_f64();
    dst.flush()?;
    dst.wait_for_compactions()?;
    let ingest_write_batch_settled_secs = start.elapsed().as_secs_f64();
    eprintln!("{ingest_write_batch_secs:.1}s, settled {ingest_write_batch_settled_secs:.1}s");
    spot_check(&dst, &pool, keys, "write-batch copy")?;
    dst.close()?;
    drop(dst);
    std::fs::remove_dir_all(&wb_dir)?;

    // The same data through ordinary transactions (1000 keys each) with the
    // engine's default durability (each commit waits for its fsync).
    eprint!("ingest with transactions ... ");
    let tx_dir = base.path().join("transactions");
    let mut tx_opts = bench_options(&tx_dir);
    tx_opts.sync_writes = true;
    let dst = Db::open(tx_opts)?;
    let start = Instant::now();
    for chunk in batches
        .iter()
        .flat_map(|b| &b.entries)
        .collect::<Vec<_>>()
        .chunks(BATCH_LEN)
    {
        dst.update(|txn| {
            for e in chunk {
                let mut entry = Entry::new(e.key.clone(), e.value.clone());
                entry.user_meta = e.user_meta;
                entry.expires_at = e.expires_at;
                txn.set_entry(entry)?;
            }
            Ok(())
        })?;
    }
    dst.flush()?;
    dst.wait_for_compactions()?;
    let ingest_txn_settled_secs = start.elapsed().as_secs_f64();
    eprintln!("settled {ingest_txn_settled_secs:.1}s");
    spot_check(&dst, &pool, keys, "transaction copy")?;
    dst.close()?;
    drop(dst);
    std::fs::remove_dir_all(&tx_dir)?;

    eprint!("ingest with the stream writer ... ");
    let sw_dir = base.path().join("stream-writer");
    let dst = Db::open(bench_options(&sw_dir))?;
    let start = Instant::now();
    let mut w = dst.stream_writer()?;
    for b in batches.drain(..) {
        w.write(b)?;
    }
    let ingested = w.finish()?;
    let ingest_stream_writer_secs = start.elapsed().as_secs_f64();
    eprintln!("{ingest_stream_writer_secs:.1}s");
    ensure!(ingested == keys, "stream writer ingested {ingested}");
    drop(batches);
    spot_check(&dst, &pool, keys, "stream-writer copy")?;
    dst.close()?;
    drop(dst);
    std::fs::remove_dir_all(&sw_dir)?;

    // 3. Export piped into a stream writer.
    eprint!("copy (export → stream writer) ... ");
    let cp_dir = base.path().join("copy");
    let dst = Db::open(bench_options(&cp_dir))?;
    let start = Instant::now();
    let mut w = dst.stream_writer()?;
    let summary = src
        .stream(StreamOptions {
            workers: 2,
            ..StreamOptions::default()
        })
        .run(|b| w.write(b))?;
    w.finish()?;
    let copy_secs = start.elapsed().as_secs_f64();
    eprintln!("{copy_secs:.1}s");
    spot_check(&dst, &pool, keys, "copy")?;
    dst.close()?;
    src.close()?;

    let rec = StreamRecord {
        keys,
        value_len: VALUE_LEN,
        user_bytes,
        load_secs,
        export_1_worker_mb_per_sec: best[0],
        export_2_workers_mb_per_sec: best[1],
        export_speedup: best[1] / best[0].max(1e-9),
        ingest_stream_writer_secs,
        ingest_write_batch_secs,
        ingest_write_batch_settled_secs,
        ingest_speedup: ingest_write_batch_settled_secs / ingest_stream_writer_secs.max(1e-9),
        ingest_txn_settled_secs,
        ingest_txn_speedup: ingest_txn_settled_secs / ingest_stream_writer_secs.max(1e-9),
        copy_mb_per_sec: mb_per_sec(summary.bytes, copy_secs),
        rss_after_export,
    };
    let table = format!(
        "\nexport, 1 worker     {:>8.0} MB/s   (target >= 300)\n\
         export, 2 workers    {:>8.0} MB/s   speed-up {:.2}x (target >= 1.5x)\n\
         ingest, stream writer {:>7.1} s      {:>8.0} MB/s\n\
         ingest, write batches {:>7.1} s      {:>8.0} MB/s ({:.1} s before flush + compaction)\n\
         stream writer speed-up {:>6.1}x vs write batches\n\
         ingest, transactions  {:>7.1} s      {:>8.0} MB/s (1000 keys each, fsync per commit)\n\
         stream writer speed-up {:>6.1}x vs transactions (target >= 5x)\n\
         copy, export -> stream writer     {:>8.0} MB/s\n\
         rss after export: {}\n",
        rec.export_1_worker_mb_per_sec,
        rec.export_2_workers_mb_per_sec,
        rec.export_speedup,
        rec.ingest_stream_writer_secs,
        mb_per_sec(user_bytes, rec.ingest_stream_writer_secs),
        rec.ingest_write_batch_settled_secs,
        mb_per_sec(user_bytes, rec.ingest_write_batch_settled_secs),
        rec.ingest_write_batch_secs,
        rec.ingest_speedup,
        rec.ingest_txn_settled_secs,
        mb_per_sec(user_bytes, rec.ingest_txn_settled_secs),
        rec.ingest_txn_speedup,
        rec.copy_mb_per_sec,
        rec.rss_after_export.describe(),
    );
    if args.json {
        println!("{}", serde_json::to_string(&rec)?);
        eprint!("{table}");
    } else {
        print!("{table}");
    }
    Ok(())
}
