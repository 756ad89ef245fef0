//! `sett-bench`: side-by-side benchmarks of sett's engine against RocksDB,
//! fjall and redb, all in one run on the same machine and the same data.
//!
//! ```text
//! sett-bench engine [--engines sett,rocksdb,fjall,redb]
//!                   [--workloads load-1k,load-128,read-random,scan,durable,gc]
//!                   [--scale F] [--json] [--dir PATH]
//! sett-bench cluster [--systems etcd,sett] [--workloads put,put-1,...]
//!                    [--scale F] [--json] [--dir PATH]
//! ```
//!
//! Without `--json` the tables go to stdout; with it, stdout carries one
//! JSON object per line and the tables go to stderr. Progress always goes
//! to stderr.

mod cluster;
mod data;
mod engine;
mod engines;
mod measure;
mod report;
mod rss;
mod stream_bench;
mod threshold;
mod workloads;

use anyhow::{ensure, Context, Result};
use clap::{Args, Parser, Subcommand};
use engine::{Engine, EngineKind, WriteMode};
use measure::{dir_size, IoCounters};
use report::Record;
use std::path::{Path, PathBuf};
use std::time::Instant;
use workloads::{Phase, Workload, WorkloadArg};

#[derive(Debug, Parser)]
#[command(name = "sett-bench", about = "Benchmarks sett against peer engines")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Embedded engines: sett vs RocksDB, fjall and redb.
    Engine(EngineArgs),
    /// sett alone: values inline vs in the value log, per value size, to
    /// choose the default `value_threshold`.
    Threshold(ThresholdArgs),
    /// sett alone: parallel snapshot export and stream-writer ingest on a
    /// ~1 GiB database.
    Stream(stream_bench::StreamBenchArgs),
    /// Three-member clusters: etcd 3.4 vs sett under the same
    /// `settctl bench` loads, one system at a time.
    Cluster(cluster::ClusterArgs),
}

#[derive(Debug, Args)]
struct ThresholdArgs {
    /// Multiplies every operation count.
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Print one JSON object per configuration on stdout.
    #[arg(long)]
    json: bool,
    /// Parent of the temporary directories [default: the system temp dir].
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn run_threshold(args: ThresholdArgs) -> Result<()> {
    let dir = args.dir.unwrap_or_else(std::env::temp_dir);
    for len in threshold::VALUE_LENS {
        for inline in [true, false] {
            let r = threshold::run_one(&dir, len, inline, args.scale)?;
            if args.json {
                println!("{}", serde_json::to_string(&r)?);
            }
            eprintln!(
                "value {:>5} B  {:<6}  load {:>9.0}/s  w-amp {:>5.2}  read {:>9.0}/s  scan {:>8.0}/s",
                r.value_len, r.placement, r.load_ops_per_sec, r.write_amp, r.read_ops_per_sec, r.scan_ops_per_sec
            );
        }
    }
    Ok(())
}

#[derive(Debug, Args)]
struct EngineArgs {
    /// Engines to run, comma-separated [default: every engine built in].
    #[arg(long, value_delimiter = ',')]
    engines: Option<Vec<EngineKind>>,
    /// Workloads to run, comma-separated; `durable` means durable-1 and
    /// durable-32.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "load-1k,load-128,read-random,scan,durable"
    )]
    workloads: Vec<WorkloadArg>,
    /// Multiplies every operation count (0.01 for a quick run).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Print one JSON object per engine and workload on stdout.
    #[arg(long)]
    json: bool,
    /// Parent of the temporary engine directories [default: the system
    /// temp dir]. Must be on the disk to measure, not tmpfs.
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Engine(args) => run_engines(args),
        Command::Threshold(args) => run_threshold(args),
        Command::Stream(args) => stream_bench::run(args),
        Command::Cluster(args) => cluster::run(args),
    }
}

fn run_engines(args: EngineArgs) -> Result<()> {
    ensure!(
        args.scale.is_finite() && args.scale > 0.0,
        "--scale must be positive"
    );
    let mut engines = match args.engines {
        Some(list) => {
            for e in &list {
                ensure!(
                    e.available(),
                    "engine {} is not built in (build with `--features {}`)",
                    e.name(),
                    e.name()
                );
            }
            list
        }
        None => {
            let all = [
                EngineKind::Sett,
                EngineKind::Rocksdb,
                EngineKind::Fjall,
                EngineKind::Redb,
            ];
            if !EngineKind::Sett.available() {
                eprintln!("note: built without the `sett` feature; running the peers only");
            }
            all.into_iter().filter(|e| e.available()).collect()
        }
    };
    engines.dedup();
    let workloads = Workload::from_args(&args.workloads);

    let parent = args.dir.unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let base = tempfile::Builder::new()
        .prefix("sett-bench-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a temp dir in {}", parent.display()))?;
    eprintln!(
        "sett-bench engine: engines {:?}, workloads {:?}, scale {}, dir {}",
        engines.iter().map(|e| e.name()).collect::<Vec<_>>(),
        workloads.iter().map(|w| w.name()).collect::<Vec<_>>(),
        args.scale,
        base.path().display()
    );

    let pool = data::ValuePool::new();
    let mut records = Vec::new();
    let mut failed = Vec::new();
    for &kind in &engines {
        let dir = base.path().join(kind.name());
        std::fs::create_dir(&dir)?;
        let runner = Runner {
            kind,
            dir: &dir,
            scale: args.scale,
            pool: &pool,
        };
        if let Err(e) = runner.run(&workloads, &mut records) {
            eprintln!("error: {}: {e:#}", kind.name());
            failed.push(kind.name());
        }
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    drop(base);

    let tables = format!(
        "{}\n{}",
        report::table(&records),
        report::ratios_vs_rocksdb(&records)
    );
    if args.json {
        print!("{}", report::json_lines(&records));
        eprint!("\n{tables}");
    } else {
        print!("\n{tables}");
    }
    ensure!(failed.is_empty(), "engines failed: {}", failed.join(", "));
    Ok(())
}

/// Runs the selected workloads on one engine, each group on a fresh
/// database in its own subdirectory of `dir`.
struct Runner<'a> {
    kind: EngineKind,
    dir: &'a Path,
    scale: f64,
    pool: &'a data::ValuePool,
}

impl Runner<'_> {
    fn run(&self, workloads: &[Workload], records: &mut Vec<Record>) -> Result<()> {
        let has = |w: Workload| workloads.contains(&w);
        let pool = self.pool;

        if has(Workload::Load1k) {
            let w = Workload::Load1k;
            let (db, dir) = self.open(w.name(), WriteMode::Bulk)?;
            let ops = w.ops(self.scale);
            let value_len = w.value_len().expect("load writes");
            records.push(self.measure(w, db.as_ref(), &dir, || {
                workloads::load(db.as_ref(), pool, ops, value_len)
            })?);
            self.close(db, &dir)?;
        }

        if has(Workload::Load128) || has(Workload::ReadRandom) || has(Workload::Scan) {
            let w = Workload::Load128;
            let (db, dir) = self.open(w.name(), WriteMode::Bulk)?;
            let loaded = w.ops(self.scale);
            let value_len = w.value_len().expect("load writes");
            let rec = self.measure(w, db.as_ref(), &dir, || {
                workloads::load(db.as_ref(), pool, loaded, value_len)
            })?;
            if has(w) {
                records.push(rec);
            }
            if has(Workload::ReadRandom) {
                let r = Workload::ReadRandom;
                let ops = r.ops(self.scale);
                // Resident memory over the reads alone (the peak restarts
                // from the current resident set).
                let peak_reset = rss::reset_peak();
                let mut rec = self.measure(r, db.as_ref(), &dir, || {
                    workloads::read_random(db.as_ref(), pool, loaded, value_len, ops)
                })?;
                let mem = rss::Rss::read()?;
                eprintln!(
                    "{:<8} {:<12} rss {}{}",
                    self.kind.name(),
                    r.name(),
                    mem.describe(),
                    if peak_reset {
                        ""
                    } else {
                        " (peak since process start)"
                    }
                );
                rec.rss = Some(mem);
                records.push(rec);
            }
            if has(Workload::Scan) {
                let s = Workload::Scan;
                let ops = s.ops(self.scale);
                records.push(self.measure(s, db.as_ref(), &dir, || {
                    workloads::scan(db.as_ref(), loaded, ops)
                })?);
            }
            self.close(db, &dir)?;
        }

        for w in [Workload::Durable1, Workload::Durable32] {
            if !has(w) {
                continue;
            }
            let (db, dir) = self.open(w.name(), WriteMode::Durable)?;
            let ops = w.ops(self.scale);
            let threads = w.threads();
            records.push(self.measure(w, db.as_ref(), &dir, || {
                workloads::durable(db.as_ref(), pool, ops, threads)
            })?);
            workloads::verify_durable(db.as_ref(), pool, ops, threads)?;
            self.close(db, &dir)?;
        }

        if has(Workload::Gc) {
            self.run_gc(records)?;
        }
        Ok(())
    }

    /// The `gc` workload: writes the `load-1k` data [`workloads::GC_ROUNDS`]
    /// times, compacts fully, then runs value-log GC until it finds
    /// nothing; reports the disk size against the live data. Engines
    /// without a value log are skipped.
    fn run_gc(&self, records: &mut Vec<Record>) -> Result<()> {
        let w = Workload::Gc;
        let dir = self.dir.join(w.name());
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        // sett's default 1 GiB value-log files at scale 1, scaled down with it.
        let vlog_file_bytes =
            ((workloads::GC_VLOG_FILE_BYTES as f64 * self.scale) as u64).max(64 << 20);
        let db = self
            .kind
            .open_gc(&dir, WriteMode::Bulk, vlog_file_bytes)
            .with_context(|| format!("opening {}", self.kind.name()))?;
        if !db.has_value_log_gc() {
            eprintln!(
                "{:<8} {:<12} ... n/a (no value-log GC)",
                self.kind.name(),
                w.name()
            );
            return self.close(db, &dir);
        }
        let ops = w.ops(self.scale);
        let value_len = w.value_len().expect("gc writes");
        eprint!("{:<8} {:<12} ... ", self.kind.name(), w.name());
        let t = Instant::now();
        for round in 0..workloads::GC_ROUNDS {
            workloads::load_round(db.as_ref(), self.pool, ops, value_len, round)
                .with_context(|| format!("gc: write round {round}"))?;
        }
        db.settle().context("gc: settling after the writes")?;
        let write_secs = t.elapsed().as_secs_f64();
        let t = Instant::now();
        db.compact_all().context("gc: full compaction")?;
        let compact_secs = t.elapsed().as_secs_f64();
        let before = dir_size(&dir)?;
        let io_before = IoCounters::read()?;
        let phase = workloads::value_log_gc(db.as_ref(), workloads::GC_DISCARD_RATIO)?;
        let io = IoCounters::read()?.since(&io_before);
        let after = dir_size(&dir)?;
        let last = workloads::GC_ROUNDS - 1;
        workloads::verify_round(db.as_ref(), self.pool, ops, value_len, last, 10)
            .context("gc: reading back")?;
        let live = workloads::user_bytes(ops, value_len);
        let elapsed_secs = phase.elapsed.as_secs_f64();
        let rec = Record {
            engine: self.kind.name().to_string(),
            workload: w.name().to_string(),
            ops_per_sec: phase.ops as f64 / elapsed_secs.max(1e-9),
            p50_us: phase.latency.quantile_us(0.50),
            p99_us: phase.latency.quantile_us(0.99),
            disk_bytes: after.allocated_bytes,
            bytes_written: io.write_bytes,
            write_amp: Some(io.write_bytes as f64 / live as f64),
            ops: phase.ops,
            threads: 1,
            latency_unit: w.latency_unit().to_string(),
            elapsed_secs,
            settle_secs: compact_secs,
            apparent_bytes: after.apparent_bytes,
            cancelled_write_bytes: io.cancelled_write_bytes,
            user_bytes: live,
            rss: None,
        };
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        eprintln!(
            "{} files collected in {elapsed_secs:.1}s (writes {write_secs:.1}s, compaction \
             {compact_secs:.1}s); disk {:.0} -> {:.0} MiB for {:.0} MiB live: {:.2}x",
            phase.ops,
            mib(before.allocated_bytes),
            mib(after.allocated_bytes),
            mib(live),
            after.allocated_bytes as f64 / live as f64
        );
        records.push(rec);
        self.close(db, &dir)
    }

    fn open(&self, name: &str, mode: WriteMode) -> Result<(Box<dyn Engine>, PathBuf)> {
        let dir = self.dir.join(name);
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let db = self
            .kind
            .open(&dir, mode)
            .with_context(|| format!("opening {}", self.kind.name()))?;
        Ok((db, dir))
    }

    fn close(&self, db: Box<dyn Engine>, dir: &Path) -> Result<()> {
        db.close()?;
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))
    }

    /// Runs one workload and turns it into a record: throughput and latency
    /// from `run`, then (for writes) a settle, then bytes written over both
    /// and the directory's size.
    fn measure(
        &self,
        w: Workload,
        db: &dyn Engine,
        dir: &Path,
        run: impl FnOnce() -> Result<Phase>,
    ) -> Result<Record> {
        eprint!("{:<8} {:<12} ... ", self.kind.name(), w.name());
        let io_before = IoCounters::read()?;
        let phase = run().with_context(|| format!("workload {}", w.name()))?;
        let settle_start = Instant::now();
        if w.value_len().is_some() {
            db.settle()
                .with_context(|| format!("settling after {}", w.name()))?;
        }
        let settle_secs = settle_start.elapsed().as_secs_f64();
        let io = IoCounters::read()?.since(&io_before);
        let size = dir_size(dir)?;

        let elapsed_secs = phase.elapsed.as_secs_f64();
        let user_bytes = w
            .value_len()
            .map_or(0, |len| workloads::user_bytes(phase.ops, len));
        let rec = Record {
            engine: self.kind.name().to_string(),
            workload: w.name().to_string(),
            ops_per_sec: phase.ops as f64 / elapsed_secs.max(1e-9),
            p50_us: phase.latency.quantile_us(0.50),
            p99_us: phase.latency.quantile_us(0.99),
            disk_bytes: size.allocated_bytes,
            bytes_written: io.write_bytes,
            write_amp: (user_bytes > 0).then(|| io.write_bytes as f64 / user_bytes as f64),
            ops: phase.ops,
            threads: w.threads(),
            latency_unit: w.latency_unit().to_string(),
            elapsed_secs,
            settle_secs,
            apparent_bytes: size.apparent_bytes,
            cancelled_write_bytes: io.cancelled_write_bytes,
            user_bytes,
            rss: None,
        };
        eprintln!(
            "{:>10.0} ops/s  p50 {:>8.1} µs  p99 {:>8.1} µs  ({:.1}s + settle {:.1}s)",
            rec.ops_per_sec, rec.p50_us, rec.p99_us, elapsed_secs, settle_secs
        );
        Ok(rec)
    }
}
