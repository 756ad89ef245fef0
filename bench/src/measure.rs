//! What is measured around a workload: latency histograms, the process's
//! write counters and the size of a database directory.

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

/// Latencies in nanoseconds, from 1 ns to one hour, 3 significant digits.
#[derive(Debug, Clone)]
pub struct Latency {
    hist: Histogram<u64>,
}

impl Latency {
    /// An empty histogram.
    pub fn new() -> Latency {
        let hour_ns = 3_600 * 1_000_000_000;
        let hist = Histogram::new_with_bounds(1, hour_ns, 3).expect("valid histogram bounds");
        Latency { hist }
    }

    /// Records one sample (values past one hour are clamped).
    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1);
        self.hist.saturating_record(ns);
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Latency) {
        self.hist.add(&other.hist).expect("histograms share bounds");
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// The latency at quantile `q` (0..=1) in microseconds.
    pub fn quantile_us(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1_000.0
    }
}

/// The process's I/O counters from `/proc/self/io`. They cover every
/// thread of the process, background compaction included, and count bytes
/// when pages are dirtied, not when the device writes them.
#[derive(Debug, Clone, Copy, Default)]
pub struct IoCounters {
    /// Bytes this process caused to be sent to the storage layer.
    pub write_bytes: u64,
    /// Dirty bytes that were truncated or deleted before writeback.
    pub cancelled_write_bytes: u64,
}

impl IoCounters {
    /// Reads the counters now.
    pub fn read() -> Result<IoCounters> {
        let text = std::fs::read_to_string("/proc/self/io").context("reading /proc/self/io")?;
        let mut io = IoCounters::default();
        for line in text.lines() {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value: u64 = value
                .trim()
                .parse()
                .with_context(|| format!("bad line {line:?}"))?;
            match name {
                "write_bytes" => io.write_bytes = value,
                "cancelled_write_bytes" => io.cancelled_write_bytes = value,
                _ => {}
            }
        }
        Ok(io)
    }

    /// Counters accumulated since `earlier`.
    pub fn since(&self, earlier: &IoCounters) -> IoCounters {
        IoCounters {
            write_bytes: self.write_bytes.saturating_sub(earlier.write_bytes),
            cancelled_write_bytes: self
                .cancelled_write_bytes
                .saturating_sub(earlier.cancelled_write_bytes),
        }
    }
}

/// Size of everything under a directory.
#[derive(Debug, Clone, Copy, Default)]
pub struct DirSize {
    /// Blocks allocated on disk, as `du` reports them.
    pub allocated_bytes: u64,
    /// Sum of file lengths, as `du --apparent-size` reports them.
    pub apparent_bytes: u64,
}

/// Walks `dir` (depth at most 16) and sums its files.
pub fn dir_size(dir: &Path) -> Result<DirSize> {
    fn walk(dir: &Path, depth: u32, size: &mut DirSize) -> Result<()> {
        anyhow::ensure!(
            depth <= 16,
            "directory tree deeper than 16 at {}",
            dir.display()
        );
        for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            let entry = entry?;
            let meta = match entry.metadata() {
                Ok(m) => m,
                // A file deleted by a background thread while we walk.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            if meta.is_dir() {
                walk(&entry.path(), depth + 1, size)?;
            } else {
                size.allocated_bytes += meta.blocks() * 512;
                size.apparent_bytes += meta.len();
            }
        }
        Ok(())
    }
    let mut size = DirSize::default();
    walk(dir, 0, &mut size)?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_in_microseconds() {
        let mut l = Latency::new();
        for us in 1..=100 {
            l.record(Duration::from_micros(us));
        }
        assert_eq!(l.count(), 100);
        let p50 = l.quantile_us(0.5);
        assert!((49.0..=51.0).contains(&p50), "{p50}");
    }

    #[test]
    fn io_counters_are_readable() {
        let io = IoCounters::read().unwrap();
        assert!(io.since(&io).write_bytes == 0);
    }

    #[test]
    fn dir_size_sums_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a"), vec![1u8; 10_000]).unwrap();
        std::fs::write(dir.path().join("b"), vec![1u8; 5]).unwrap();
        let size = dir_size(dir.path()).unwrap();
        assert_eq!(size.apparent_bytes, 10_005);
        assert!(size.allocated_bytes >= 10_005);
    }
}
