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
use sett_tests::crash::{
    entry_hash, key, matrix_ingest_prefix, options, try_line, value, Write as KeyWrite,
    KEYS_PER_WRITER, WRITERS,
};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::exit;
use std::time::Duration;

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Writes one whole line; a closed pipe means the test is gone.
fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    if out
        .write_all(line.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        exit(0);
    }
}

fn writer(db: &Db, trial: u64, w: usize, seed: u64) {
    let mut rng = Rng(seed ^ (w as u64 + 1).wrapping_mul(0xd6e8_feb8_6659_fd93));
    for seq in 0u64.. {
        let count = 1 + rng.below(3);
        let picked: BTreeSet<usize> = (0..count)
            .map(|_| rng.below(KEYS_PER_WRITER as u64) as usize)
            .collect();
        let writes: Vec<KeyWrite> = picked
            .into_iter()
            .map(|i| {
                let len = match rng.below(10) {
                    0 => None,
                    1..=5 => Some(1 + rng.below(60) as usize),
                    _ => Some(100 + rng.below(3000) as usize),
                };
                (i, len)
            })
            .collect();
        let mut txn = db.begin_write();
        for &(i, len) in &writes {
            let k = key(w, i);
            match len {
                Some(len) => txn.set(k.clone(), value(trial, seq, &k, len)),
                None => txn.delete(k),
            }
            .expect("buffer a write");
        }
        emit(&try_line(w, seq, &writes));
        txn.commit().expect("commit");
        emit(&format!("ACK {w} {seq}\n"));
    }
}

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
            s.spawn(move || writer(db, trial, w, seed));
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
