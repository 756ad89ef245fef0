//! Resident memory of this process, from `/proc/self/status`.
//!
//! `VmHWM` is the peak resident set since the process started, or since the
//! last [`reset_peak`]; `VmRSS` is the current one, split into anonymous
//! memory (`RssAnon`: heap, caches, memtables) and file pages (`RssFile`:
//! mmapped tables and the binary itself, which the kernel can drop).

use anyhow::{Context, Result};
use serde::Serialize;

/// One reading of the process's resident memory, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Rss {
    /// Peak resident set (`VmHWM`).
    pub peak_bytes: u64,
    /// Current resident set (`VmRSS`).
    pub rss_bytes: u64,
    /// Current anonymous resident memory (`RssAnon`).
    pub anon_bytes: u64,
    /// Current file-backed resident memory (`RssFile`).
    pub file_bytes: u64,
}

impl Rss {
    /// Reads `/proc/self/status` now.
    pub fn read() -> Result<Rss> {
        let text =
            std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
        Rss::parse(&text)
    }

    fn parse(text: &str) -> Result<Rss> {
        let field = |name: &str| -> Result<u64> {
            let line = text
                .lines()
                .find(|l| l.starts_with(name) && l[name.len()..].starts_with(':'))
                .with_context(|| format!("no {name} in /proc/self/status"))?;
            let kib: u64 = line[name.len() + 1..]
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .with_context(|| format!("bad {name} line {line:?}"))?;
            Ok(kib * 1024)
        };
        Ok(Rss {
            peak_bytes: field("VmHWM")?,
            rss_bytes: field("VmRSS")?,
            anon_bytes: field("RssAnon")?,
            file_bytes: field("RssFile")?,
        })
    }

    /// `peak 412.3 MiB, now 398.0 MiB (anon 300.1 + file 97.9)`.
    pub fn describe(&self) -> String {
        let m = |b: u64| b as f64 / (1u64 << 20) as f64;
        format!(
            "peak {:.1} MiB, now {:.1} MiB (anon {:.1} + file {:.1})",
            m(self.peak_bytes),
            m(self.rss_bytes),
            m(self.anon_bytes),
            m(self.file_bytes)
        )
    }
}

/// Resets `VmHWM` to the current resident set (Linux 4.0+: writing `5` to
/// `/proc/self/clear_refs`), so that the next peak covers only what follows.
/// Returns false if the kernel refused; the peak then covers the whole
/// process lifetime.
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", b"5").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_reads_itself() {
        let text = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nRssAnon:\t 1000 kB\nRssFile:\t 24 kB\n";
        let r = Rss::parse(text).unwrap();
        assert_eq!(r.peak_bytes, 2048 * 1024);
        assert_eq!(r.rss_bytes, 1024 * 1024);
        assert_eq!(r.anon_bytes + r.file_bytes, r.rss_bytes);
        let now = Rss::read().unwrap();
        assert!(now.peak_bytes >= now.rss_bytes && now.rss_bytes > 0);
    }
}
