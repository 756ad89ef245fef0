//! Child process of the crash matrix (`tests/crash_matrix.rs`): commits
//! synced transactions to `<dir>/db` from several writer threads (the
//! protocol of `sett_tests::crash`) while one driver thread pushes the
//! operation named by `<mode>` — the part of the crash point before the
//! dot — until the armed crash point (`SETT_ENGINE_CRASH_AT`, set by the
//! test) kills the process, or the test does.
//!
//! Drivers: `flush`, `compaction` and `manifest` flush every few
//! milliseconds (small memtables and levels do the rest; the test sets
//! `SETT_ENGINE_MANIFEST_REWRITE_EAGER` for `manifest`); `vlog_gc` runs
//! value-log GC with flushes and full compactions in between; `ingest`
//! exports snapshots of `<dir>/db` and ingests each, under the prefix
//! `crash::matrix_ingest_prefix(trial, round)`, into `<dir>/ingest` with the
//! stream writer, printing the `INGEST_*` lines.
//!
//! Usage: `crash_matrix_child <dir> <trial> <seed> <mode>`

use sett_engine::{Db, GcOutcome, KvBatch, StreamOptions};
use sett_tests::crash::{emit, entry_hash, matrix_ingest_prefix, options, run_writer, WRITERS};
use std::path::{Path, PathBuf};
use std::process::exit;
use std::time::Duration;

/// Flushes every few milliseconds.
fn flusher(db: &Db) {
    loop {
        std::thread::sleep(Duration::from_millis(5));
        db.flush().expect("flush");
    }
}

/// Value-log GC in a loop; flushes move the replay head past sealed
/// files, full compactions turn overwritten values into garbage.
fn collector(db: &Db) {
    for round in 0u64.. {
        match db.run_value_log_gc(0.2).expect("value-log GC") {
            GcOutcome::Collected(r) => emit(&format!("GC {}\n", r.fid)),
            _ => std::thread::sleep(Duration::from_millis(2)),
        }
        db.flush().expect("flush");
        if round % 8 == 7 {
            db.compact().expect("compact");
        }
    }
}

/// Copies snapshots of `db` into `target` with the stream writer, one
/// round at a time.
fn ingester(db: &Db, target: &Db, trial: u64) {
    for round in 0u64.. {
        std::thread::sleep(Duration::from_millis(20));
        emit(&format!("INGEST_START {round}\n"));
        let prefix = matrix_ingest_prefix(trial, round);
        // Versions must be newer than anything the target holds.
        let version = target.stats().visible_ts + 1;
        let mut w = target.stream_writer().expect("stream writer");
        let (mut entries, mut hash) = (0u64, 0u64);
        let summary = db
            .stream(StreamOptions {
                workers: 2,
                batch_bytes: 8 << 10,
                ..StreamOptions::default()
            })
            .convert(|mut e| {
                let mut k = prefix.clone();
                k.extend_from_slice(&e.key);
                e.key = k;
                e.version = version;
                Some(e)
            })
            .run(|batch: KvBatch| {
                for e in &batch.entries {
                    entries += 1;
                    hash = hash.wrapping_add(entry_hash(&e.key, &e.value));
                }
                w.write(batch)
            })
            .expect("export");
        assert_eq!(summary.entries, entries);
        emit(&format!("INGEST_READY {round} {entries} {hash}\n"));
        w.finish().expect("finish ingest");
        emit(&format!("INGEST_DONE {round}\n"));
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: crash_matrix_child <dir> <trial> <seed> flush|compaction|vlog_gc|ingest|manifest"
    );
    exit(2);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        usage();
    }
    let dir = PathBuf::from(&args[1]);
    let trial: u64 = args[2].parse().unwrap_or_else(|_| usage());
    let seed: u64 = args[3].parse().unwrap_or_else(|_| usage());
    let mode = args[4].as_str();
    if !["flush", "compaction", "vlog_gc", "ingest", "manifest"].contains(&mode) {
        usage();
    }
    let db = Db::open(options(&dir.join("db"))).expect("open");
    let target = (mode == "ingest").then(|| Db::open(ingest_options(&dir)).expect("open target"));
    emit("OPEN\n");
    std::thread::scope(|s| {
        for w in 0..WRITERS {
            let db = &db;
            s.spawn(move || run_writer(db, trial, w, seed, None));
        }
        match (mode, &target) {
            ("vlog_gc", _) => s.spawn(|| collector(&db)),
            ("ingest", Some(t)) => s.spawn(|| ingester(&db, t, trial)),
            _ => s.spawn(|| flusher(&db)),
        };
    });
}

/// Options of the ingest target, `<dir>/ingest`.
fn ingest_options(dir: &Path) -> sett_engine::Options {
    sett_tests::crash::options(&dir.join("ingest"))
}
