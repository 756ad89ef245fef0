//! Child process of the kill -9 crash test: opens the database in the
//! given directory and commits random transactions from several threads
//! until it is killed, reporting each commit before and after (see
//! `sett_tests::crash` for the protocol).
//!
//! Usage: `crash_child <dir> <trial> <seed> [gc]`

use sett_engine::{Db, GcOutcome};
use sett_tests::crash::{emit, options, run_writer, WRITERS};
use std::path::PathBuf;
use std::process::exit;

/// Value-log GC in a loop, with flushes so that the replay head moves.
fn collector(db: &Db) {
    for round in 0u64.. {
        match db.run_value_log_gc(0.3).expect("value-log GC") {
            GcOutcome::Collected(r) => emit(&format!("GC {}\n", r.fid)),
            _ => std::thread::sleep(std::time::Duration::from_millis(2)),
        }
        if round % 4 == 3 {
            db.flush().expect("flush");
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let gc = match args.get(4).map(String::as_str) {
        None => false,
        Some("gc") => true,
        Some(_) => {
            eprintln!("usage: crash_child <dir> <trial> <seed> [gc]");
            exit(2);
        }
    };
    if !(4..=5).contains(&args.len()) {
        eprintln!("usage: crash_child <dir> <trial> <seed> [gc]");
        exit(2);
    }
    let dir = PathBuf::from(&args[1]);
    let trial: u64 = args[2].parse().expect("trial number");
    let seed: u64 = args[3].parse().expect("seed");
    let db = Db::open(options(&dir)).expect("open");
    emit("OPEN\n");
    std::thread::scope(|s| {
        for w in 0..WRITERS {
            let db = &db;
            s.spawn(move || run_writer(db, trial, w, seed, Some(97)));
        }
        if gc {
            s.spawn(|| collector(&db));
        }
    });
}
