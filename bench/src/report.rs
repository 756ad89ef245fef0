//! Results: one [`Record`] per engine and workload, printed as a table,
//! as JSON lines, and as ratios against RocksDB.

use serde::Serialize;
use std::fmt::Write as _;

/// One engine's figures for one workload.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// Engine name.
    pub engine: String,
    /// Workload name.
    pub workload: String,
    /// Operations per second (keys for loads, reads, scans, commits).
    pub ops_per_sec: f64,
    /// Median latency of one sample (see `latency_unit`), microseconds.
    pub p50_us: f64,
    /// 99th-percentile latency, microseconds.
    pub p99_us: f64,
    /// Blocks allocated under the engine's directory after the workload
    /// and its settle (`du`), bytes.
    pub disk_bytes: u64,
    /// Bytes the whole process wrote (`/proc/self/io` `write_bytes`) during
    /// the workload and its settle.
    pub bytes_written: u64,
    /// `bytes_written` over the user bytes written (keys + values); only
    /// for workloads that write.
    pub write_amp: Option<f64>,
    /// Operations done.
    pub ops: u64,
    /// Threads issuing operations.
    pub threads: usize,
    /// What one latency sample covers: "batch" (1000 keys), "read",
    /// "scan" or "commit".
    pub latency_unit: String,
    /// Seconds the throughput is computed from.
    pub elapsed_secs: f64,
    /// Seconds spent after the workload flushing and waiting for
    /// background work (not part of `ops_per_sec`).
    pub settle_secs: f64,
    /// Sum of file lengths under the engine's directory, bytes.
    pub apparent_bytes: u64,
    /// `cancelled_write_bytes` delta: dirty bytes dropped before writeback
    /// (deleted files).
    pub cancelled_write_bytes: u64,
    /// Keys + values written by the workload, bytes.
    pub user_bytes: u64,
    /// Resident memory of the process over the workload (`read-random`
    /// only): peak since just before it, and at its end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss: Option<crate::rss::Rss>,
}

/// Explains the columns below the tables.
pub const NOTES: &str = "\
notes: latency per 1000-key batch for loads, per operation otherwise.
       bytes written = /proc/self/io write_bytes over workload + settle, whole process
       (background threads included; counted when pages are dirtied; dirty pages of files deleted before
       writeback are not subtracted: see cancelled_write_bytes in --json); write amp = that / (keys + values).
       disk = blocks allocated under the engine's directory after the workload and its settle.
       rss (read-random) = /proc/self/status VmHWM since just before the reads (peak) and VmRSS at their
       end, whole process; file = mmapped file pages (reclaimable), anon = heap incl. caches.";

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1 << 20) as f64)
}

/// The human-readable table of all records.
pub fn table(records: &[Record]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<8} {:<12} {:>9} {:>11} {:>6} {:>10} {:>10} {:>10} {:>11} {:>6} {:>7}",
        "engine",
        "workload",
        "ops",
        "ops/s",
        "unit",
        "p50 µs",
        "p99 µs",
        "disk MiB",
        "written MiB",
        "w-amp",
        "settle"
    );
    for r in records {
        let amp = r.write_amp.map_or("-".to_string(), |a| format!("{a:.2}"));
        let _ = writeln!(
            out,
            "{:<8} {:<12} {:>9} {:>11.0} {:>6} {:>10.1} {:>10.1} {:>10} {:>11} {:>6} {:>6.1}s",
            r.engine,
            r.workload,
            r.ops,
            r.ops_per_sec,
            r.latency_unit,
            r.p50_us,
            r.p99_us,
            mib(r.disk_bytes),
            mib(r.bytes_written),
            amp,
            r.settle_secs,
        );
    }
    for r in records {
        if let Some(m) = &r.rss {
            let _ = writeln!(
                out,
                "rss      {:<8} {:<12} {}",
                r.engine,
                r.workload,
                m.describe()
            );
        }
    }
    out.push_str(NOTES);
    out.push('\n');
    out
}

/// One JSON object per line.
pub fn json_lines(records: &[Record]) -> String {
    records
        .iter()
        .map(|r| serde_json::to_string(r).expect("records serialize") + "\n")
        .collect()
}

/// Ratios of every other engine against RocksDB per workload (sett
/// first). Empty if RocksDB or every other engine is missing.
pub fn ratios_vs_rocksdb(records: &[Record]) -> String {
    let mut engines: Vec<&str> = Vec::new();
    for r in records {
        if r.engine != "rocksdb" && !engines.contains(&r.engine.as_str()) {
            engines.push(&r.engine);
        }
    }
    engines.sort_by_key(|e| (*e != "sett", *e));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "ratio vs rocksdb   {:<8} {:<12} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "engine", "workload", "ops/s", "p50", "p99", "disk", "written"
    );
    let ratio = |a: f64, b: f64| {
        if b > 0.0 {
            format!("{:.2}x", a / b)
        } else {
            "-".to_string()
        }
    };
    let mut rows = 0;
    for engine in engines {
        for r in records.iter().filter(|r| r.engine == engine) {
            let Some(base) = records
                .iter()
                .find(|b| b.engine == "rocksdb" && b.workload == r.workload)
            else {
                continue;
            };
            rows += 1;
            let _ = writeln!(
                out,
                "                   {:<8} {:<12} {:>8} {:>8} {:>8} {:>8} {:>8}",
                r.engine,
                r.workload,
                ratio(r.ops_per_sec, base.ops_per_sec),
                ratio(r.p50_us, base.p50_us),
                ratio(r.p99_us, base.p99_us),
                ratio(r.disk_bytes as f64, base.disk_bytes as f64),
                // Reads write only stray log bytes; a ratio of those is noise.
                if r.write_amp.is_some() {
                    ratio(r.bytes_written as f64, base.bytes_written as f64)
                } else {
                    "-".to_string()
                },
            );
        }
    }
    if rows == 0 {
        return String::new();
    }
    out.push_str(
        "(engine / rocksdb: ops/s above 1x is faster; latency, disk, written below 1x is better)\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(engine: &str, ops_per_sec: f64) -> Record {
        Record {
            engine: engine.into(),
            workload: "load-128".into(),
            ops_per_sec,
            p50_us: 10.0,
            p99_us: 20.0,
            disk_bytes: 100,
            bytes_written: 200,
            write_amp: Some(2.0),
            ops: 1,
            threads: 1,
            latency_unit: "batch".into(),
            elapsed_secs: 1.0,
            settle_secs: 0.0,
            apparent_bytes: 100,
            cancelled_write_bytes: 0,
            user_bytes: 100,
            rss: None,
        }
    }

    #[test]
    fn json_has_the_required_fields() {
        let line = json_lines(&[rec("sett", 5.0)]);
        let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        for f in [
            "engine",
            "workload",
            "ops_per_sec",
            "p50_us",
            "p99_us",
            "disk_bytes",
            "bytes_written",
        ] {
            assert!(v.get(f).is_some(), "missing {f}");
        }
    }

    #[test]
    fn ratio_against_rocksdb() {
        let t = ratios_vs_rocksdb(&[rec("rocksdb", 4.0), rec("sett", 6.0)]);
        assert!(t.contains("1.50x"), "{t}");
        assert!(ratios_vs_rocksdb(&[rec("sett", 6.0)]).is_empty());
    }
}
