//! Named crash points for kill -9 tests (`tests/tests/crash_matrix.rs`).
//!
//! A point is a call `crash_point::hit("flush.table_written")` at a moment
//! where a crash is interesting: between a durable step and the step that
//! publishes it. It fires only in a process started with
//!
//! ```text
//! SETT_ENGINE_CRASH_AT=<point>[:<nth>]     (nth counts from 1; default 1)
//! ```
//!
//! and only in builds with `debug_assertions`; in release builds `hit` is
//! empty and inlined away, so a release binary cannot crash on purpose.
//! Firing writes one line `sett-engine: crash point <point> (hit <nth>)`
//! to stderr and sends the process a real `SIGKILL`: no destructor, no
//! flush, no clean-up runs. When the variable is unset a hit costs one
//! `OnceLock` read.
//!
//! `SETT_ENGINE_MANIFEST_REWRITE_EAGER=1` (debug builds only) makes the
//! manifest rewrite itself whenever it has doubled since its last rewrite
//! instead of after 4 MiB, so tests reach the rewrite points quickly.
//!
//! Thread-safety: hits may come from any thread; exactly one hit is the
//! `nth`.

/// The environment variable naming the point to fire at.
pub const CRASH_AT_ENV: &str = "SETT_ENGINE_CRASH_AT";
/// The environment variable that makes manifest rewrites eager.
pub const MANIFEST_REWRITE_EAGER_ENV: &str = "SETT_ENGINE_MANIFEST_REWRITE_EAGER";

/// Every crash point, grouped by operation (the part before the dot).
pub const POINTS: &[&str] = &[
    // Memtable flush (`db/flush.rs`).
    "flush.table_written", // L0 table synced, dir synced; no manifest edit yet
    "flush.manifest_applied", // edit durable; table not published, memtable not retired
    // Compaction (`levels/compact.rs`).
    "compaction.tables_written",   // outputs synced; no manifest edit yet
    "compaction.manifest_applied", // edit durable; inputs not yet deleted
    // Value-log GC (`db/gc.rs`, `vlog/gc.rs`).
    "vlog_gc.rewrite_queued",  // a batch of live entries queued for rewrite
    "vlog_gc.rewrites_synced", // rewrites synced; old file not yet deleted
    "vlog_gc.file_removed",    // old file unlinked; dir not synced, stats not updated
    // Stream-writer ingest (`stream/writer.rs`).
    "ingest.table_written",    // one ingested table synced
    "ingest.tables_written",   // all tables synced; no manifest edit yet
    "ingest.manifest_applied", // edit durable; tables not yet installed
    // Manifest rewrite (`manifest/manifest.rs`).
    "manifest.tmp_written", // MANIFEST.tmp synced; not renamed
    "manifest.renamed",     // renamed over MANIFEST; dir not synced
    "manifest.installed",   // dir synced; new file not yet reopened
];

/// Fires if `point` is the armed point and this is its `nth` hit.
#[cfg(debug_assertions)]
#[inline]
pub fn hit(point: &'static str) {
    if let Some(armed) = armed::get() {
        armed.hit(point);
    }
}

/// Release builds: nothing.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn hit(_point: &'static str) {}

/// True when manifest rewrites should happen early (see the module docs).
pub fn manifest_rewrite_eager() -> bool {
    cfg!(debug_assertions) && std::env::var_os(MANIFEST_REWRITE_EAGER_ENV).is_some_and(|v| v == "1")
}

/// Parses `<point>[:<nth>]`.
pub fn parse(spec: &str) -> Result<(&'static str, u64), String> {
    let (name, nth) = match spec.split_once(':') {
        Some((name, nth)) => (
            name,
            nth.parse::<u64>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("bad occurrence {nth:?} in {spec:?}"))?,
        ),
        None => (spec, 1),
    };
    let point = POINTS
        .iter()
        .find(|p| **p == name)
        .ok_or_else(|| format!("unknown crash point {name:?}; known: {}", POINTS.join(", ")))?;
    Ok((point, nth))
}

#[cfg(debug_assertions)]
mod armed {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    #[derive(Debug)]
    pub(super) struct Armed {
        point: &'static str,
        nth: u64,
        hits: AtomicU64,
    }

    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();

    pub(super) fn get() -> Option<&'static Armed> {
        ARMED
            .get_or_init(|| {
                let spec = std::env::var(super::CRASH_AT_ENV).ok()?;
                let (point, nth) =
                    super::parse(&spec).unwrap_or_else(|e| panic!("{}: {e}", super::CRASH_AT_ENV));
                Some(Armed {
                    point,
                    nth,
                    hits: AtomicU64::new(0),
                })
            })
            .as_ref()
    }

    impl Armed {
        pub(super) fn hit(&self, point: &'static str) {
            if point != self.point {
                return;
            }
            let n = self.hits.fetch_add(1, Ordering::Relaxed) + 1;
            if n != self.nth {
                return;
            }
            eprintln!("sett-engine: crash point {point} (hit {n})");
            // SAFETY: getpid and kill have no memory-safety preconditions.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
            // SIGKILL to oneself is delivered before kill returns; never
            // carry on past a crash point.
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_point_and_occurrence() {
        assert_eq!(parse("flush.table_written"), Ok(("flush.table_written", 1)));
        assert_eq!(parse("manifest.renamed:7"), Ok(("manifest.renamed", 7)));
        assert!(parse("manifest.renamed:0").is_err());
        assert!(parse("flush.nowhere").is_err());
        assert!(parse("flush.table_written:x").is_err());
    }

    #[test]
    fn point_names_are_unique_and_grouped() {
        for (i, p) in POINTS.iter().enumerate() {
            assert!(!POINTS[..i].contains(p), "{p} listed twice");
            assert!(p.split_once('.').is_some(), "{p} has no operation prefix");
        }
    }
}
