//! Child process of the kill -9 crash test: opens the database in the
//! given directory and commits random transactions from several threads
//! until it is killed, reporting each commit before and after (see
//! `sett_tests::crash` for the protocol).
//!
//! Usage: `crash_child <dir> <trial> <seed> [gc]`

use sett_engine::{Db, GcOutcome};
use sett_tests::crash::{
    key, options, try_line, value, Write as KeyWrite, KEYS_PER_WRITER, WRITERS,
};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::exit;

/// splitmix64: enough randomness for a workload, no dependency.
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
                    1..=6 => Some(1 + rng.below(60) as usize),
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
        if w == 0 && seq % 97 == 96 {
            db.flush().expect("flush");
        }
    }
}

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
            s.spawn(move || writer(db, trial, w, seed));
        }
        if gc {
            s.spawn(|| collector(&db));
        }
    });
}
