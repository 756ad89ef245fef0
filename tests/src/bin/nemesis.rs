//! `nemesis`: runs a real `sett` cluster under client load and injected
//! faults, then checks the history (see `sett_tests::nemesis`).
//!
//! ```text
//! cargo build -p sett-server --bin sett
//! cargo run -p sett-tests --bin nemesis -- --seed 1 --duration 60s --nodes 3
//! cargo run -p sett-tests --bin nemesis -- --seed 1 --seeds 20 --nodes 5
//! ```
//!
//! Exit status: 0 when every run passed, 1 when a checker found a
//! violation, 2 when the harness itself could not do its job.

use clap::Parser;
use sett_tests::nemesis::faults::FaultKind;
use sett_tests::nemesis::run::{run, Config, Report};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(about = "Fault injection against a real sett cluster, with checked histories")]
struct Args {
    /// Seed of the first run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Number of consecutive seeds to run, from --seed.
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// Length of the load under faults of each run (e.g. 60s, 2m).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Members in the cluster.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Fault kinds, comma-separated (default: all): kill-leader,
    /// kill-random, kill-all, pause, partition, isolate-leader, bridge,
    /// replace; `none` for no faults.
    #[arg(long, value_delimiter = ',')]
    faults: Vec<String>,
    /// Deliberate server bugs to switch on (debug builds of sett only):
    /// ack-uncommitted, local-read, drop-watch-event, skip-txn-compare.
    #[arg(long = "debug-fault")]
    debug_faults: Vec<String>,
    /// The member binary (default: target/<profile>/sett beside this one).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Keep each run's directory (member logs and data).
    #[arg(long)]
    keep: bool,
    /// `--election-timeout` of the members, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    election_timeout: u64,
    /// `--heartbeat-interval` of the members, in milliseconds.
    #[arg(long, default_value_t = 100)]
    heartbeat_interval: u64,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    match unit {
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(60 * n)),
        "ms" => Ok(Duration::from_millis(n)),
        _ => Err(format!("bad duration unit in {s:?} (s, m or ms)")),
    }
}

fn default_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("path of this executable");
    exe.parent()
        .map(|d| d.join(format!("sett{}", std::env::consts::EXE_SUFFIX)))
        .expect("directory of this executable")
}

fn print_report(r: &Report) {
    println!(
        "seed {}: {} | register ops {} ({} unknown, {} keys inconclusive) | bank reads {} | \
         watch: {} acked writes, {} reference events, {} delivered, {} resumes | failover ms {:?}",
        r.seed,
        if r.passed() { "PASS" } else { "FAIL" },
        r.register_ops,
        r.register_unknown,
        r.inconclusive_keys.len(),
        r.bank_reads,
        r.watch_acked,
        r.watch_events,
        r.watcher_events,
        r.watcher_resumes,
        r.failover_ms
    );
    // The first few per checker: one broken invariant usually shows up
    // many times.
    let mut shown: std::collections::HashMap<&str, usize> = Default::default();
    for (checker, text) in &r.violations {
        let n = shown.entry(checker.as_str()).or_default();
        *n += 1;
        if *n <= 3 {
            println!("  VIOLATION ({checker}): {text}");
        }
    }
    for (checker, n) in shown {
        if n > 3 {
            println!("  ... {} more {checker} violations", n - 3);
        }
    }
    for e in &r.harness_errors {
        println!("  HARNESS: {e}");
    }
    if let Some(d) = &r.dir {
        println!("  logs kept in {}", d.display());
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut faults = Vec::new();
    for name in &args.faults {
        if name == "none" {
            continue;
        }
        match FaultKind::parse(name) {
            Some(k) => faults.push(k),
            None => {
                eprintln!("nemesis: unknown fault kind {name:?}");
                return ExitCode::from(2);
            }
        }
    }
    let binary = args.binary.clone().unwrap_or_else(default_binary);
    if !binary.is_file() {
        eprintln!(
            "nemesis: {} is missing: build it with `cargo build -p sett-server --bin sett`",
            binary.display()
        );
        return ExitCode::from(2);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("Tokio runtime");
    let mut worst = 0u8;
    let mut failovers = Vec::new();
    for seed in args.seed..args.seed + args.seeds {
        let mut cfg = Config::new(binary.clone(), seed, args.duration, args.nodes);
        if !args.faults.is_empty() {
            cfg.faults = faults.clone();
        }
        cfg.debug_faults = args.debug_faults.clone();
        cfg.keep_dir = args.keep;
        cfg.election_ms = args.election_timeout;
        cfg.heartbeat_ms = args.heartbeat_interval;
        let report = rt.block_on(run(&cfg));
        print_report(&report);
        failovers.extend(report.failover_ms.iter().copied());
        if !report.violations.is_empty() {
            worst = 1;
        } else if !report.harness_errors.is_empty() && worst == 0 {
            worst = 2;
        }
    }
    if !failovers.is_empty() {
        failovers.sort_unstable();
        let limit = 3 * args.election_timeout;
        let over = failovers.iter().filter(|ms| **ms > limit).count();
        println!(
            "writes resumed after a leader SIGKILL: {} kills, median {} ms, max {} ms, \
             {over} over 3 election timeouts ({limit} ms)",
            failovers.len(),
            failovers[failovers.len() / 2],
            failovers[failovers.len() - 1]
        );
    }
    ExitCode::from(worst)
}
