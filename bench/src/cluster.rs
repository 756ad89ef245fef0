//! `sett-bench cluster`: etcd 3.4 against sett, three members each on
//! this machine, driven by the same load generator (`settctl bench`) with
//! the same arguments.
//!
//! One system runs at a time on a fresh cluster: its members start in a
//! new directory, every selected workload runs against it in a fixed
//! order, then it is stopped and its directory removed before the next
//! system starts. A workload that fails is recorded as failed and the run
//! goes on with the next one. The result is a side-by-side table (and,
//! with `--json`, one JSON object per system and workload plus a final
//! comparison object).

mod procs;
mod table;

use anyhow::{bail, ensure, Context, Result};
use clap::{Args, ValueEnum};
use procs::{ClusterSpec, Servers};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Members per cluster.
const MEMBERS: usize = 3;
/// Keys written before the first range workload (and the key space of
/// every workload).
const KEY_SPACE: u64 = 100_000;
/// Key length, bytes.
const KEY_SIZE: u32 = 8;
/// Value length, bytes.
const VAL_SIZE: u32 = 256;
/// How often a running load checks that every member is still up.
const LIVENESS_INTERVAL: Duration = Duration::from_secs(1);
/// Bytes of settctl's stderr kept for error messages.
const STDERR_TAIL_BYTES: usize = 4096;

/// A server under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    /// etcd 3.4 (`/usr/bin/etcd`).
    Etcd,
    /// sett (`sett` of crate sett-server).
    Sett,
}

impl System {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            System::Etcd => "etcd",
            System::Sett => "sett",
        }
    }
}

/// One measured load. The order of the variants is the order of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Workload {
    /// Puts from 64 clients.
    Put,
    /// Puts from one client on one connection: latency-bound.
    #[value(name = "put-1")]
    Put1,
    /// Single-key linearizable ranges.
    #[value(name = "range-l")]
    RangeL,
    /// Single-key serializable ranges.
    #[value(name = "range-s")]
    RangeS,
    /// Ranges of 100 keys from a random start key.
    #[value(name = "range-limit")]
    RangeLimit,
    /// Txns of one put.
    TxnPut,
    /// Txns mixing compares, reads and writes.
    TxnMixed,
    /// Put-to-watch-event latency.
    WatchLatency,
    /// sett's native transactions (sett only).
    NativeTxn,
}

impl Workload {
    /// Every workload, in run order.
    const ALL: [Workload; 9] = [
        Workload::Put,
        Workload::Put1,
        Workload::RangeL,
        Workload::RangeS,
        Workload::RangeLimit,
        Workload::TxnPut,
        Workload::TxnMixed,
        Workload::WatchLatency,
        Workload::NativeTxn,
    ];

    /// The name on the command line and in the results.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::Put1 => "put-1",
            Workload::RangeL => "range-l",
            Workload::RangeS => "range-s",
            Workload::RangeLimit => "range-limit",
            Workload::TxnPut => "txn-put",
            Workload::TxnMixed => "txn-mixed",
            Workload::WatchLatency => "watch-latency",
            Workload::NativeTxn => "native-txn",
        }
    }

    /// One line for the legend below the table.
    fn describe(self) -> &'static str {
        match self {
            Workload::Put => "put, random keys, CLIENTS clients on CONNS connections",
            Workload::Put1 => "put, random keys, 1 client on 1 connection (latency-bound)",
            Workload::RangeL => "get one existing key, linearizable",
            Workload::RangeS => "get one existing key, serializable",
            Workload::RangeLimit => "range from a random existing key, limit 100, linearizable",
            Workload::TxnPut => "txn with one put",
            Workload::TxnMixed => "txn mixing compares, gets and puts",
            Workload::WatchLatency => {
                "put to watch event (settctl defaults; ops/s is the paced put rate)"
            }
            Workload::NativeTxn => "sett.v1 native transaction (sett only)",
        }
    }

    /// The `settctl bench` workload.
    fn settctl_workload(self) -> &'static str {
        match self {
            Workload::Put | Workload::Put1 => "put",
            Workload::RangeL | Workload::RangeS | Workload::RangeLimit => "range",
            Workload::TxnPut => "txn-put",
            Workload::TxnMixed => "txn-mixed",
            Workload::WatchLatency => "watch-latency",
            Workload::NativeTxn => "native-txn",
        }
    }

    /// Whether it reads the prefilled keys.
    fn reads_keys(self) -> bool {
        matches!(
            self,
            Workload::RangeL | Workload::RangeS | Workload::RangeLimit
        )
    }

    /// Whether `system` can run it.
    fn supported_by(self, system: System) -> bool {
        self != Workload::NativeTxn || system == System::Sett
    }

    /// Operations at scale 1 (`None`: settctl's default). Slow workloads
    /// get fewer, so that a scale-1 run stays near ten minutes: etcd
    /// serves about 50 `limit 100` ranges a second here, and watch-latency
    /// puts at a fixed 100 a second (etcd's benchmark default, 1000 puts).
    fn base_total(self) -> Option<u64> {
        match self {
            Workload::Put1 => Some(5_000),
            Workload::RangeLimit => Some(2_000),
            Workload::WatchLatency => Some(1_000),
            Workload::NativeTxn => Some(20_000),
            _ => Some(100_000),
        }
    }

    /// The arguments after `settctl bench` (without `--prefill`).
    fn bench_args(self, opts: &ClusterArgs) -> Vec<String> {
        let mut args = vec![self.settctl_workload().to_owned(), "--json".to_owned()];
        args.extend(self.load_args(opts));
        args
    }

    /// The arguments after `settctl bench <workload> --json` (without
    /// `--prefill`).
    fn load_args(self, opts: &ClusterArgs) -> Vec<String> {
        let Some(base) = self.base_total() else {
            return Vec::new();
        };
        let total = ((base as f64 * opts.scale).round() as u64).max(1);
        let (clients, conns) = match self {
            Workload::Put1 => (1, 1),
            _ => (opts.clients, opts.conns),
        };
        let mut args = vec![
            format!("--clients={clients}"),
            format!("--conns={conns}"),
            format!("--total={total}"),
            format!("--key-size={KEY_SIZE}"),
            format!("--val-size={VAL_SIZE}"),
            format!("--key-space={KEY_SPACE}"),
        ];
        match self {
            Workload::RangeL => args.push("--consistency=l".to_owned()),
            Workload::RangeS => args.push("--consistency=s".to_owned()),
            Workload::RangeLimit => {
                args.push("--consistency=l".to_owned());
                args.push("--limit=100".to_owned());
            }
            _ => {}
        }
        args
    }
}

/// Options of `sett-bench cluster`.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Systems to run, comma-separated, one after the other.
    #[arg(long, value_delimiter = ',', default_value = "etcd,sett")]
    systems: Vec<System>,
    /// Workloads to run, comma-separated [default: all, in the order
    /// put,put-1,range-l,range-s,range-limit,txn-put,txn-mixed,watch-latency,native-txn].
    #[arg(long, value_delimiter = ',')]
    workloads: Option<Vec<Workload>>,
    /// Multiplies every operation count (0.01 for a quick run).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Print one JSON object per system and workload on stdout, then a
    /// comparison object; the table goes to stderr.
    #[arg(long)]
    json: bool,
    /// Parent of the temporary data directories [default: the system temp
    /// dir]. etcd and sett fsync their logs: use the disk to measure, not
    /// tmpfs (where fsync is free).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the data directories and member logs after the run.
    #[arg(long)]
    keep: bool,
    /// The load generator [default: `settctl` next to this executable].
    #[arg(long)]
    settctl: Option<PathBuf>,
    /// The sett server binary [default: `sett` next to this executable].
    #[arg(long)]
    sett: Option<PathBuf>,
    /// The etcd 3.4 server binary.
    #[arg(long, default_value = "/usr/bin/etcd")]
    etcd: PathBuf,
    /// etcdctl 3.4, used to wait until a cluster is healthy.
    #[arg(long, default_value = "/usr/bin/etcdctl")]
    etcdctl: PathBuf,
    /// Concurrent clients of the multi-client workloads.
    #[arg(long, default_value_t = 64)]
    clients: u32,
    /// gRPC connections those clients share.
    #[arg(long, default_value_t = 8)]
    conns: u32,
    /// `--heartbeat-interval` of every member, milliseconds.
    #[arg(long, default_value_t = 100)]
    heartbeat_interval: u64,
    /// `--election-timeout` of every member, milliseconds.
    #[arg(long, default_value_t = 1000)]
    election_timeout: u64,
    /// `--quota-backend-bytes` of every member (8 GiB: no benchmark
    /// reaches the NOSPACE alarm).
    #[arg(long, default_value_t = 8 << 30)]
    quota_backend_bytes: u64,
    /// Bound on one settctl run, seconds; a run over it is killed and
    /// recorded as failed.
    #[arg(long, default_value_t = 3600)]
    timeout: u64,
}

/// What `settctl bench --json` prints (fields it may omit are optional).
#[derive(Debug, Clone, Default, Deserialize)]
struct BenchOutput {
    #[serde(default)]
    ops: Option<u64>,
    #[serde(default)]
    errors: Option<u64>,
    /// Operations retried (native-txn conflicts), when settctl counts them.
    #[serde(default)]
    retries: Option<u64>,
    #[serde(default)]
    seconds: Option<f64>,
    #[serde(default)]
    ops_per_sec: Option<f64>,
    #[serde(default)]
    latency_us: Option<Latency>,
}

/// Latency percentiles, microseconds.
#[derive(Debug, Clone, Default, Deserialize)]
struct Latency {
    #[serde(default)]
    p50: Option<f64>,
    #[serde(default)]
    p99: Option<f64>,
}

/// How one system did on one workload.
#[derive(Debug, Clone)]
enum Outcome {
    /// settctl's figures and its whole JSON object.
    Done(BenchOutput, Value),
    /// Why there are no figures.
    Failed(String),
    /// The system cannot run the workload.
    NotApplicable,
}

/// One system on one workload.
#[derive(Debug, Clone)]
struct Run {
    system: System,
    workload: Workload,
    /// The settctl arguments after `bench`.
    args: Vec<String>,
    outcome: Outcome,
}

impl Run {
    /// The JSON line for `--json`.
    fn json(&self) -> Value {
        let (status, error, result) = match &self.outcome {
            Outcome::Done(_, v) => ("ok", Value::Null, v.clone()),
            Outcome::Failed(e) => ("error", Value::String(e.clone()), Value::Null),
            Outcome::NotApplicable => ("n/a", Value::Null, Value::Null),
        };
        serde_json::json!({
            "kind": "run",
            "system": self.system,
            "workload": self.workload.name(),
            "settctl_args": self.args,
            "status": status,
            "error": error,
            "result": result,
        })
    }
}

/// Runs `sett-bench cluster`.
pub fn run(args: ClusterArgs) -> Result<()> {
    ensure!(
        args.scale.is_finite() && args.scale > 0.0,
        "--scale must be positive"
    );
    ensure!(
        args.clients > 0 && args.conns > 0,
        "--clients and --conns must be positive"
    );
    let mut systems = Vec::new();
    for s in &args.systems {
        if !systems.contains(s) {
            systems.push(*s);
        }
    }
    ensure!(!systems.is_empty(), "--systems is empty");
    let mut workloads = args
        .workloads
        .clone()
        .unwrap_or_else(|| Workload::ALL.to_vec());
    workloads.sort();
    workloads.dedup();
    ensure!(!workloads.is_empty(), "--workloads is empty");

    let settctl = args
        .settctl
        .clone()
        .map_or_else(|| sibling("settctl"), Ok)?;
    require(
        &settctl,
        "the load generator settctl",
        "build it with `cargo build --release -p sett-client --bin settctl`, or name one with --settctl",
    )?;
    let mut binaries = Vec::new();
    for &system in &systems {
        let binary = match system {
            System::Etcd => {
                require(
                    &args.etcd,
                    "etcd",
                    "install etcd 3.4 with `bench/setup.sh` (Debian package etcd-server), or name one with --etcd",
                )?;
                args.etcd.clone()
            }
            System::Sett => {
                let sett = args.sett.clone().map_or_else(|| sibling("sett"), Ok)?;
                require(
                    &sett,
                    "the sett server",
                    "build it with `cargo build --release -p sett-server --bin sett`, or name one with --sett",
                )?;
                sett
            }
        };
        binaries.push(binary);
    }
    require(
        &args.etcdctl,
        "etcdctl",
        "install etcdctl 3.4 with `bench/setup.sh` (Debian package etcd-client), or name one with --etcdctl",
    )?;

    procs::install_signal_handlers();
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let base = tempfile::Builder::new()
        .prefix("sett-bench-cluster-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a temp dir in {}", parent.display()))?;

    let machine = table::Machine::read(base.path());
    let mut versions = table::Versions::default();
    for (&system, binary) in systems.iter().zip(&binaries) {
        let v = table::version_of(binary);
        match system {
            System::Etcd => versions.etcd = Some(v),
            System::Sett => versions.sett = Some(v),
        }
    }
    versions.settctl = Some(table::version_of(&settctl));
    eprintln!(
        "sett-bench cluster: systems {:?}, workloads {:?}, scale {}, dir {} ({})",
        systems.iter().map(|s| s.name()).collect::<Vec<_>>(),
        workloads.iter().map(|w| w.name()).collect::<Vec<_>>(),
        args.scale,
        base.path().display(),
        machine.dir_fs
    );
    if machine.dir_fs == "tmpfs" {
        eprintln!(
            "warning: {} is on tmpfs, where fsync costs nothing; pass --dir on a disk to \
             measure durable writes",
            base.path().display()
        );
    }

    let mut runs = Vec::new();
    let mut result = Ok(());
    for (&system, binary) in systems.iter().zip(&binaries) {
        let spec = ClusterSpec {
            system,
            binary: binary.clone(),
            etcdctl: args.etcdctl.clone(),
            members: MEMBERS,
            heartbeat_ms: args.heartbeat_interval,
            election_ms: args.election_timeout,
            quota_bytes: args.quota_backend_bytes,
        };
        let dir = base.path().join(system.name());
        if let Err(e) = run_system(&spec, &dir, &settctl, &args, &workloads, &mut runs) {
            if procs::interrupted() {
                result = Err(e);
                break;
            }
            eprintln!("error: {}: {e:#}", system.name());
        }
        if !args.keep {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    eprintln!("warning: removing {}: {e}", dir.display());
                }
            }
        }
    }
    if args.keep {
        eprintln!("kept data and logs in {}", base.keep().display());
    } else {
        drop(base);
    }
    result?;

    let report = table::render(&runs, &systems, &workloads, &args, &machine, &versions);
    if args.json {
        let comparison = table::comparison_json(&runs, &workloads, &args, &machine, &versions);
        println!("{}", serde_json::to_string(&comparison)?);
        eprint!("\n{report}");
    } else {
        print!("\n{report}");
    }
    let failed = runs
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Failed(_)))
        .count();
    ensure!(failed == 0, "{failed} run(s) failed; see the table");
    Ok(())
}

/// `name` next to the running executable.
fn sibling(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the running executable")?;
    let dir = exe
        .parent()
        .context("the running executable has no directory")?;
    Ok(dir.join(name))
}

/// An error with `hint` if `path` is not an executable file.
fn require(path: &Path, what: &str, hint: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(()),
        Ok(_) => bail!(
            "{what} at {} is not an executable file: {hint}",
            path.display()
        ),
        Err(e) => bail!("{what} not found at {} ({e}): {hint}", path.display()),
    }
}

/// Starts one system's cluster in `dir`, runs every workload on it and
/// stops it. A cluster that does not start fails every workload; a member
/// that dies fails the workloads after it. Returns an error only when
/// interrupted or when the cluster cannot start.
fn run_system(
    spec: &ClusterSpec,
    dir: &Path,
    settctl: &Path,
    args: &ClusterArgs,
    workloads: &[Workload],
    runs: &mut Vec<Run>,
) -> Result<()> {
    let system = spec.system;
    let record_with_args =
        |runs: &mut Vec<Run>, w: Workload, run_args: Vec<String>, outcome: Outcome| {
            let run = Run {
                system,
                workload: w,
                args: run_args,
                outcome,
            };
            if args.json {
                println!("{}", run.json());
            }
            runs.push(run);
        };
    let record = |runs: &mut Vec<Run>, w: Workload, outcome: Outcome| {
        record_with_args(runs, w, w.bench_args(args), outcome)
    };
    if workloads.iter().all(|w| !w.supported_by(system)) {
        for &w in workloads {
            record(runs, w, Outcome::NotApplicable);
        }
        return Ok(());
    }

    std::fs::create_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
    eprintln!(
        "{}: starting {MEMBERS} members ({})",
        system.name(),
        spec.binary.display()
    );
    let started = Instant::now();
    let mut servers = match Servers::start(spec, dir) {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("cluster did not start: {e:#}");
            for &w in workloads {
                let outcome = if w.supported_by(system) {
                    Outcome::Failed(msg.clone())
                } else {
                    Outcome::NotApplicable
                };
                record(runs, w, outcome);
            }
            return Err(e);
        }
    };
    eprintln!(
        "{}: healthy after {:.1}s at {}",
        system.name(),
        started.elapsed().as_secs_f64(),
        servers.endpoints().join(",")
    );

    let mut prefilled = false;
    for &w in workloads {
        procs::check_interrupted()?;
        if !w.supported_by(system) {
            eprintln!("{} {}: n/a", system.name(), w.name());
            record(runs, w, Outcome::NotApplicable);
            continue;
        }
        if let Err(e) = servers.check_alive() {
            record(runs, w, Outcome::Failed(format!("{e:#}")));
            continue;
        }
        let mut bench_args = w.bench_args(args);
        let prefill = w.reads_keys() && !prefilled;
        if prefill {
            bench_args.push(format!("--prefill={KEY_SPACE}"));
        }
        eprintln!(
            "{} {}: settctl bench {}",
            system.name(),
            w.name(),
            bench_args.join(" ")
        );
        let timeout = Duration::from_secs(args.timeout);
        let outcome = match run_settctl(settctl, &mut servers, &bench_args, timeout) {
            Ok((out, raw)) => {
                prefilled |= prefill;
                eprintln!(
                    "{} {}: {} ops/s, p50 {}, p99 {}{}",
                    system.name(),
                    w.name(),
                    out.ops_per_sec
                        .map_or("-".to_owned(), |v| format!("{v:.0}")),
                    table::fmt_us(out.latency_us.as_ref().and_then(|l| l.p50)),
                    table::fmt_us(out.latency_us.as_ref().and_then(|l| l.p99)),
                    match out.errors {
                        Some(n) if n > 0 => format!(", {n} errors"),
                        _ => String::new(),
                    }
                );
                Outcome::Done(out, raw)
            }
            Err(e) => {
                procs::check_interrupted()?;
                eprintln!("{} {}: failed: {e:#}", system.name(), w.name());
                Outcome::Failed(format!("{e:#}"))
            }
        };
        record_with_args(runs, w, bench_args, outcome);
    }
    eprintln!("{}: stopping", system.name());
    servers.stop();
    Ok(())
}

/// Runs `settctl --endpoints ... <bench_args>` against `servers`, passing
/// its stderr through, and parses the JSON object it prints. Fails when
/// settctl fails, runs over `timeout`, prints no JSON object, or a member
/// exits meanwhile.
fn run_settctl(
    settctl: &Path,
    servers: &mut Servers,
    bench_args: &[String],
    timeout: Duration,
) -> Result<(BenchOutput, Value)> {
    let mut cmd = Command::new(settctl);
    cmd.env_remove("SETT_ENDPOINTS")
        .arg(format!("--endpoints={}", servers.endpoints().join(",")))
        .arg("bench")
        .args(bench_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = procs::spawn_guarded(&mut cmd)
        .with_context(|| format!("starting {}", settctl.display()))?;

    let mut stdout = child.stdout.take().context("settctl stdout")?;
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
        s
    });
    let mut stderr = child.stderr.take().context("settctl stderr")?;
    let tail = Arc::new(Mutex::new(Vec::<u8>::new()));
    let err_reader = {
        let tail = Arc::clone(&tail);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut sink = std::io::stderr();
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let _ = sink.write_all(&buf[..n]);
                let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                t.extend_from_slice(&buf[..n]);
                if t.len() > 2 * STDERR_TAIL_BYTES {
                    let cut = t.len() - STDERR_TAIL_BYTES;
                    t.drain(..cut);
                }
            }
        })
    };

    let start = Instant::now();
    let mut last_check = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if procs::interrupted() {
            procs::kill_and_reap(&mut child);
            bail!("interrupted");
        }
        if start.elapsed() > timeout {
            procs::kill_and_reap(&mut child);
            bail!(
                "settctl ran over --timeout {}s and was killed",
                timeout.as_secs()
            );
        }
        if last_check.elapsed() >= LIVENESS_INTERVAL {
            last_check = Instant::now();
            if let Err(e) = servers.check_alive() {
                procs::kill_and_reap(&mut child);
                return Err(e.context("a member exited during the load"));
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = out_reader.join().unwrap_or_default();
    let _ = err_reader.join();
    let stderr_tail = {
        let t = tail.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&t).into_owned()
    };
    let last_line = stderr_tail
        .split(['\n', '\r'])
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("")
        .to_owned();
    if !status.success() {
        bail!("settctl failed ({status}): {last_line}");
    }
    let out = String::from_utf8_lossy(&out);
    let line = out
        .lines()
        .map(str::trim)
        .rfind(|l| l.starts_with('{'))
        .with_context(|| format!("settctl printed no JSON object on stdout: {:?}", out.trim()))?;
    let raw: Value = serde_json::from_str(line)
        .with_context(|| format!("settctl printed invalid JSON: {line}"))?;
    let parsed: BenchOutput = serde_json::from_value(raw.clone())
        .with_context(|| format!("unexpected settctl JSON: {line}"))?;
    Ok((parsed, raw))
}
