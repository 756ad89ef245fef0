//! The report of `sett-bench cluster`: the machine, the versions, the
//! side-by-side table and the comparison JSON object.

use super::{ClusterArgs, Outcome, Run, System, Workload, MEMBERS};
use serde::Serialize;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

/// The machine the run happened on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPUs this process may use.
    pub nproc: usize,
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// Kernel release.
    pub kernel: String,
    /// `MemTotal` from /proc/meminfo, bytes.
    pub mem_total_bytes: Option<u64>,
    /// The run's directory.
    pub dir: String,
    /// Its file system type (from /proc/self/mounts).
    pub dir_fs: String,
}

impl Machine {
    /// Reads what Linux tells about the machine and about `dir`.
    pub fn read(dir: &Path) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == "model name").then(|| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned());
        let mem_total_bytes = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
            let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        });
        Machine {
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model,
            kernel,
            mem_total_bytes,
            dir: dir.display().to_string(),
            dir_fs: fs_type(dir),
        }
    }
}

/// The type of the file system holding `dir`: the mount with the longest
/// mount point that is a prefix of its canonical path.
fn fs_type(dir: &Path) -> String {
    let Ok(path) = dir.canonicalize() else {
        return "unknown".to_owned();
    };
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let _device = f.next()?;
            let point = f.next()?.replace("\\040", " ");
            let fs = f.next()?;
            path.starts_with(&point)
                .then(|| (point.len(), fs.to_owned()))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "unknown".to_owned(), |(_, fs)| fs)
}

/// `--version` of the binaries used.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Versions {
    /// etcd's.
    pub etcd: Option<String>,
    /// sett's.
    pub sett: Option<String>,
    /// settctl's.
    pub settctl: Option<String>,
}

/// The first line `binary --version` prints, or why there is none.
pub fn version_of(binary: &Path) -> String {
    match Command::new(binary).arg("--version").output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("unknown")
            .to_owned(),
        Ok(out) => format!("unknown (--version: {})", out.status),
        Err(e) => format!("unknown ({e})"),
    }
}

/// A latency in microseconds, in the unit that suits it.
pub fn fmt_us(us: Option<f64>) -> String {
    match us {
        None => "-".to_owned(),
        Some(us) if us < 1_000.0 => format!("{us:.0}µs"),
        Some(us) if us < 10_000.0 => format!("{:.2}ms", us / 1e3),
        Some(us) if us < 1_000_000.0 => format!("{:.1}ms", us / 1e3),
        Some(us) => format!("{:.2}s", us / 1e6),
    }
}

/// Figures of one cell of the table.
struct Figures {
    ops_per_sec: Option<f64>,
    p50: Option<f64>,
    p99: Option<f64>,
}

fn figures(run: Option<&Run>) -> Option<Figures> {
    match run.map(|r| &r.outcome) {
        Some(Outcome::Done(out, _)) => Some(Figures {
            ops_per_sec: out.ops_per_sec,
            p50: out.latency_us.as_ref().and_then(|l| l.p50),
            p99: out.latency_us.as_ref().and_then(|l| l.p99),
        }),
        _ => None,
    }
}

fn find(runs: &[Run], system: System, w: Workload) -> Option<&Run> {
    runs.iter().find(|r| r.system == system && r.workload == w)
}

fn ratio(num: Option<f64>, den: Option<f64>) -> Option<f64> {
    match (num, den) {
        (Some(n), Some(d)) if d > 0.0 && n.is_finite() => Some(n / d),
        _ => None,
    }
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// The whole text report: machine, versions, settings, the table, its
/// legend and the errors.
pub fn render(
    runs: &[Run],
    systems: &[System],
    workloads: &[Workload],
    args: &ClusterArgs,
    machine: &Machine,
    versions: &Versions,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "machine: {} CPUs, {}, Linux {}{}",
        machine.nproc,
        machine.cpu_model,
        machine.kernel,
        machine
            .mem_total_bytes
            .map_or(String::new(), |b| format!(", {} RAM", gib(b)))
    );
    let _ = writeln!(s, "data:    {} ({})", machine.dir, machine.dir_fs);
    for (name, v) in [
        ("etcd", &versions.etcd),
        ("sett", &versions.sett),
        ("settctl", &versions.settctl),
    ] {
        if let Some(v) = v {
            let _ = writeln!(s, "{:<8} {v}", format!("{name}:"));
        }
    }
    let _ = writeln!(
        s,
        "cluster: {MEMBERS} members each on 127.0.0.1, heartbeat {} ms, election {} ms, quota {}; \
         systems run one at a time: {}",
        args.heartbeat_interval,
        args.election_timeout,
        gib(args.quota_backend_bytes),
        systems
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(" then ")
    );
    let _ = writeln!(
        s,
        "load:    settctl bench, scale {}, {} clients on {} connections, {KEY_SIZE}-byte keys, \
         {VAL_SIZE}-byte values, {KEY_SPACE} keys",
        args.scale,
        args.clients,
        args.conns,
        KEY_SIZE = super::KEY_SIZE,
        VAL_SIZE = super::VAL_SIZE,
        KEY_SPACE = super::KEY_SPACE,
    );
    s.push('\n');

    let mut notes: Vec<String> = Vec::new();
    let mut cell = |run: Option<&Run>, text: &dyn Fn(&Figures) -> String| -> String {
        match run {
            None => "-".to_owned(),
            Some(r) => match &r.outcome {
                Outcome::NotApplicable => "n/a".to_owned(),
                Outcome::Failed(e) => {
                    let first = e.lines().next().unwrap_or("").to_owned();
                    let note = format!("{} {}: {first}", r.system.name(), r.workload.name());
                    let n = match notes.iter().position(|x| *x == note) {
                        Some(i) => i + 1,
                        None => {
                            notes.push(note);
                            notes.len()
                        }
                    };
                    format!("error[{n}]")
                }
                Outcome::Done(out, _) => {
                    let f = figures(run).expect("a done run has figures");
                    match out.errors {
                        Some(n) if n > 0 => format!("{} ({n} err)", text(&f)),
                        _ => text(&f),
                    }
                }
            },
        }
    };
    let header = [
        "workload",
        "etcd ops/s",
        "sett ops/s",
        "sett/etcd",
        "etcd p50 / p99",
        "sett p50 / p99",
        "p99 sett/etcd",
    ];
    let mut rows: Vec<Vec<String>> = Vec::new();
    for &w in workloads {
        let e = find(runs, System::Etcd, w);
        let t = find(runs, System::Sett, w);
        let ops = |f: &Figures| f.ops_per_sec.map_or("-".to_owned(), |v| format!("{v:.0}"));
        let lat = |f: &Figures| format!("{} / {}", fmt_us(f.p50), fmt_us(f.p99));
        let (fe, ft) = (figures(e), figures(t));
        let ops_ratio = ratio(
            ft.as_ref().and_then(|f| f.ops_per_sec),
            fe.as_ref().and_then(|f| f.ops_per_sec),
        );
        let p99_ratio = ratio(
            ft.as_ref().and_then(|f| f.p99),
            fe.as_ref().and_then(|f| f.p99),
        );
        let x = |r: Option<f64>| r.map_or("-".to_owned(), |r| format!("{r:.2}x"));
        rows.push(vec![
            w.name().to_owned(),
            cell(e, &ops),
            cell(t, &ops),
            x(ops_ratio),
            cell(e, &lat),
            cell(t, &lat),
            x(p99_ratio),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cols: &[String]| -> String {
        let mut l = String::new();
        for (i, c) in cols.iter().enumerate() {
            let pad = widths[i].saturating_sub(c.chars().count());
            if i == 0 {
                l.push_str(c);
                l.push_str(&" ".repeat(pad));
            } else {
                l.push_str("  ");
                l.push_str(&" ".repeat(pad));
                l.push_str(c);
            }
        }
        l.trim_end().to_owned()
    };
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    let _ = writeln!(s, "{}", line(&header));
    let _ = writeln!(
        s,
        "{}",
        "-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1))
    );
    for r in &rows {
        let _ = writeln!(s, "{}", line(r));
    }
    s.push('\n');
    for &w in workloads {
        let d = w
            .describe()
            .replace("CLIENTS", &args.clients.to_string())
            .replace("CONNS", &args.conns.to_string());
        let _ = writeln!(s, "  {:<13} {d}", w.name());
    }
    let _ = writeln!(
        s,
        "  ops/s and latencies as settctl reports them (client-side, per request); \
         ratios > 1 mean sett is faster (ops/s) or slower (p99)"
    );
    if !notes.is_empty() {
        s.push('\n');
        for (i, n) in notes.iter().enumerate() {
            let _ = writeln!(s, "[{}] {n}", i + 1);
        }
    }
    s
}

/// One system's figures for the comparison object.
fn side(run: Option<&Run>) -> Value {
    match run.map(|r| &r.outcome) {
        None => json!({ "status": "not run" }),
        Some(Outcome::NotApplicable) => json!({ "status": "n/a" }),
        Some(Outcome::Failed(e)) => json!({ "status": "error", "error": e }),
        Some(Outcome::Done(out, _)) => json!({
            "status": "ok",
            "ops_per_sec": out.ops_per_sec,
            "p50_us": out.latency_us.as_ref().and_then(|l| l.p50),
            "p99_us": out.latency_us.as_ref().and_then(|l| l.p99),
            "ops": out.ops,
            "errors": out.errors,
            "retries": out.retries,
            "seconds": out.seconds,
        }),
    }
}

/// The final `--json` object: machine, versions, settings and one row
/// per workload with both systems and the ratios.
pub fn comparison_json(
    runs: &[Run],
    workloads: &[Workload],
    args: &ClusterArgs,
    machine: &Machine,
    versions: &Versions,
) -> Value {
    let rows: Vec<Value> = workloads
        .iter()
        .map(|&w| {
            let e = find(runs, System::Etcd, w);
            let t = find(runs, System::Sett, w);
            let (fe, ft) = (figures(e), figures(t));
            json!({
                "workload": w.name(),
                "etcd": side(e),
                "sett": side(t),
                "ops_ratio_sett_over_etcd": ratio(
                    ft.as_ref().and_then(|f| f.ops_per_sec),
                    fe.as_ref().and_then(|f| f.ops_per_sec),
                ),
                "p99_ratio_sett_over_etcd": ratio(
                    ft.as_ref().and_then(|f| f.p99),
                    fe.as_ref().and_then(|f| f.p99),
                ),
            })
        })
        .collect();
    json!({
        "kind": "comparison",
        "machine": machine,
        "versions": versions,
        "settings": {
            "members": MEMBERS,
            "heartbeat_interval_ms": args.heartbeat_interval,
            "election_timeout_ms": args.election_timeout,
            "quota_backend_bytes": args.quota_backend_bytes,
            "scale": args.scale,
            "clients": args.clients,
            "conns": args.conns,
        },
        "rows": rows,
    })
}
