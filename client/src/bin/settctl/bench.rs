//! `settctl bench`: a load generator for etcd v3 API clusters, in the
//! manner of etcd's `benchmark` tool.
//!
//! ```text
//! settctl --endpoints A,B,C bench put --conns 8 --clients 64 --total 100000
//! settctl bench range --prefill 100000 --consistency s --clients 64
//! settctl bench range --prefill 100000 --limit 100 --clients 64
//! settctl bench txn-put | txn-mixed | watch-latency | native-txn [...]
//! ```
//!
//! `clients` tasks share `conns` HTTP/2 connections (each balanced over
//! all endpoints) and draw operations from one counter until `total` are
//! done, optionally paced to `rate` per second. Every workload but
//! `native-txn` speaks only the etcd v3 API, so the same run can target
//! etcd. Latencies go into an HDR histogram (microseconds, 3 significant
//! digits); `--json` prints the report as one JSON object on stdout.
//! Keys are the decimal operation or key number, zero-padded to
//! `--key-size` bytes; values are `--val-size` random bytes.

mod ops;
mod stats;

use crate::Global;
use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use ops::{Op, Outcome};
use stats::Report;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// The operation a run repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// Put one key.
    Put,
    /// Range one key, or `--limit` keys from a random start.
    Range,
    /// Txn with `--txn-ops` puts and no compares.
    TxnPut,
    /// Txn holding one range or one put, `--rw-ratio` reads per write.
    TxnMixed,
    /// Latency from a put to each watcher's event for it.
    WatchLatency,
    /// Native interactive transaction (sett only): read one key, write
    /// another, commit; retried on conflict.
    NativeTxn,
}

/// `settctl bench` options.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// What to run.
    #[arg(value_enum)]
    pub workload: Workload,
    /// HTTP/2 connections (each balanced over all endpoints).
    #[arg(long, default_value_t = 1)]
    pub conns: usize,
    /// Concurrent clients sharing the connections.
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// Operations to run (watch-latency: puts).
    #[arg(long, default_value_t = 10_000)]
    pub total: u64,
    /// Operations per second across all clients; 0 = as fast as possible
    /// (watch-latency: puts per second, 0 = 100).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Key length in bytes.
    #[arg(long, default_value_t = 8)]
    pub key_size: usize,
    /// Value length in bytes.
    #[arg(long, default_value_t = 256)]
    pub val_size: usize,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 100_000)]
    pub key_space: u64,
    /// Keys in order (operation number modulo the key space) instead of
    /// uniformly random.
    #[arg(long)]
    pub sequential_keys: bool,
    /// Read consistency: l (linearizable) or s (serializable).
    #[arg(long, default_value = "l", value_parser = ["l", "s"])]
    pub consistency: String,
    /// range: read up to this many keys from a random start key to the
    /// end of the key space (0 = a single key).
    #[arg(long, default_value_t = 0)]
    pub limit: i64,
    /// Write keys 0..N first (not measured).
    #[arg(long, default_value_t = 0)]
    pub prefill: u64,
    /// txn-put: puts per transaction.
    #[arg(long, default_value_t = 1)]
    pub txn_ops: usize,
    /// txn-mixed: reads per write.
    #[arg(long, default_value_t = 1.0)]
    pub rw_ratio: f64,
    /// watch-latency: watch streams.
    #[arg(long, default_value_t = 10)]
    pub streams: usize,
    /// watch-latency: watchers on each stream.
    #[arg(long, default_value_t = 10)]
    pub watchers_per_stream: usize,
    /// Print the report as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

impl BenchArgs {
    fn check(&self) -> Result<()> {
        ensure!(self.conns >= 1, "--conns must be at least 1");
        ensure!(self.clients >= 1, "--clients must be at least 1");
        ensure!(self.total >= 1, "--total must be at least 1");
        ensure!(self.key_space >= 1, "--key-space must be at least 1");
        ensure!(self.key_size >= 1, "--key-size must be at least 1");
        ensure!(
            digits(self.key_space.max(self.prefill)) <= self.key_size,
            "--key-size {} is too short for {} distinct keys",
            self.key_size,
            self.key_space.max(self.prefill)
        );
        ensure!(self.limit >= 0, "--limit must not be negative");
        ensure!(self.txn_ops >= 1, "--txn-ops must be at least 1");
        ensure!(
            self.rw_ratio.is_finite() && self.rw_ratio >= 0.0,
            "--rw-ratio must be a non-negative number"
        );
        ensure!(
            self.streams >= 1 && self.watchers_per_stream >= 1,
            "--streams and --watchers-per-stream must be at least 1"
        );
        Ok(())
    }

    /// Key number `n` as bytes.
    pub fn key(&self, n: u64) -> Bytes {
        Bytes::from(format!("{n:0width$}", width = self.key_size))
    }
}

fn digits(n: u64) -> usize {
    n.saturating_sub(1).max(1).to_string().len()
}

pub fn run(global: &Global, args: BenchArgs) -> Result<()> {
    args.check()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(run_async(global, args.into()))
}

async fn run_async(global: &Global, args: Arc<BenchArgs>) -> Result<()> {
    let mut conns = Vec::with_capacity(args.conns);
    for _ in 0..args.conns {
        conns.push(crate::conn::Conn::open(global).await?.into_channel());
    }
    let value = ops::random_value(args.val_size);
    if args.prefill > 0 {
        prefill(&args, &conns, &value, global.command_timeout).await?;
    }
    let report = if args.workload == Workload::WatchLatency {
        ops::watch_latency(&args, &conns, global.command_timeout).await?
    } else {
        load(&args, &conns, &value, global.command_timeout).await?
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.text());
    }
    if report.ops == 0 && report.errors > 0 {
        bail!(
            "every operation failed; first error: {}",
            report.first_error.as_deref().unwrap_or("?")
        );
    }
    Ok(())
}

/// Writes keys `0..prefill` with all clients.
async fn prefill(
    args: &Arc<BenchArgs>,
    conns: &[Channel],
    value: &Bytes,
    timeout: Duration,
) -> Result<()> {
    let pb = crate::progress::count(args.prefill, "prefill");
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let (args, value, next, pb) = (args.clone(), value.clone(), next.clone(), pb.clone());
        let op = Op::new(Workload::Put, &args, conns[c % conns.len()].clone(), c);
        tasks.push(tokio::spawn(async move {
            let mut op = op;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= args.prefill {
                    return Ok::<(), anyhow::Error>(());
                }
                let key = args.key(n);
                tokio::time::timeout(timeout, op.put(key, value.clone()))
                    .await
                    .map_err(|_| anyhow::anyhow!("prefill put timed out"))?
                    .context("prefill put")?;
                pb.inc(1);
            }
        }));
    }
    for t in tasks {
        t.await.context("prefill task")??;
    }
    pb.finish_and_clear();
    Ok(())
}

/// Per-client results, merged at the end.
struct Tally {
    hist: hdrhistogram::Histogram<u64>,
    ops: u64,
    errors: u64,
    retries: u64,
    first_error: Option<String>,
}

/// The request/response workloads: clients draw operation numbers from
/// one counter until `total`.
async fn load(
    args: &Arc<BenchArgs>,
    conns: &[Channel],
    value: &Bytes,
    timeout: Duration,
) -> Result<Report> {
    let pb = crate::progress::count(args.total, &format!("{:?}", args.workload));
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let (args, value, next, pb) = (args.clone(), value.clone(), next.clone(), pb.clone());
        let mut op = Op::new(args.workload, &args, conns[c % conns.len()].clone(), c);
        tasks.push(tokio::spawn(async move {
            let mut t = Tally {
                hist: stats::histogram(),
                ops: 0,
                errors: 0,
                retries: 0,
                first_error: None,
            };
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= args.total {
                    return t;
                }
                if args.rate > 0 {
                    let due = start + Duration::from_secs_f64(n as f64 / args.rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let began = Instant::now();
                let outcome = tokio::time::timeout(timeout, op.run(n, value.clone())).await;
                match outcome {
                    Ok(Ok(Outcome { retries })) => {
                        stats::record(&mut t.hist, began.elapsed());
                        t.ops += 1;
                        t.retries += retries;
                    }
                    Ok(Err(e)) => {
                        t.errors += 1;
                        t.first_error.get_or_insert_with(|| format!("{e:#}"));
                    }
                    Err(_) => {
                        t.errors += 1;
                        t.first_error
                            .get_or_insert_with(|| format!("timed out after {timeout:?}"));
                    }
                }
                pb.inc(1);
            }
        }));
    }
    let mut hist = stats::histogram();
    let (mut ops, mut errors, mut retries, mut first_error) = (0, 0, 0, None);
    for task in tasks {
        let t = task.await.context("bench client task")?;
        hist.add(&t.hist).expect("same histogram bounds");
        ops += t.ops;
        errors += t.errors;
        retries += t.retries;
        if first_error.is_none() {
            first_error = t.first_error;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    pb.finish_and_clear();
    Ok(Report {
        workload: workload_name(args),
        clients: args.clients,
        conns: args.conns,
        ops,
        errors,
        retries,
        seconds,
        ops_per_sec: ops as f64 / seconds,
        latency_us: stats::Latency::of(&hist),
        first_error,
    })
}

/// The workload's name as given on the command line.
pub fn workload_name(args: &BenchArgs) -> String {
    args.workload.to_possible_value().map_or_else(
        || format!("{:?}", args.workload),
        |v| v.get_name().to_string(),
    )
}
