//! Latency histograms and the report a bench run prints.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::time::Duration;

/// Highest latency recorded exactly (longer ones are clamped): 60 s.
const LATENCY_US_MAX: u64 = 60_000_000;

/// A latency histogram in microseconds, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds")
}

/// Records `d` in `h`, clamped to the histogram's range.
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    h.saturating_record(us.clamp(1, LATENCY_US_MAX));
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        Latency {
            mean: h.mean(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// What one bench run measured; `--json` prints it as one line.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub workload: String,
    pub clients: usize,
    pub conns: usize,
    /// Operations that succeeded (for watch-latency: events delivered).
    pub ops: u64,
    /// Operations that failed (they are not in the histogram).
    pub errors: u64,
    /// Extra attempts (native-txn: commits that lost a conflict).
    pub retries: u64,
    pub seconds: f64,
    pub ops_per_sec: f64,
    pub latency_us: Latency,
    /// The first error seen, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

impl Report {
    /// The report as text, in the shape of etcd's benchmark summary.
    pub fn text(&self) -> String {
        let ms = |us: u64| us as f64 / 1000.0;
        let l = &self.latency_us;
        let mut s = format!(
            "Summary ({}; {} clients over {} connections):\n  \
             Total:      {:.4} secs.\n  \
             Requests:   {} ok, {} failed, {} retried\n  \
             Requests/sec: {:.1}\n  \
             Latency (ms): mean {:.3}  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}\n",
            self.workload,
            self.clients,
            self.conns,
            self.seconds,
            self.ops,
            self.errors,
            self.retries,
            self.ops_per_sec,
            l.mean / 1000.0,
            ms(l.p50),
            ms(l.p90),
            ms(l.p99),
            ms(l.p999),
            ms(l.max),
        );
        if let Some(e) = &self.first_error {
            s.push_str(&format!("  First error: {e}\n"));
        }
        s
    }
}
