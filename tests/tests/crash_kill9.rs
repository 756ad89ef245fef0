//! kill -9 crash test: a child process commits from several threads with
//! `sync_writes` and reports each commit; the test SIGKILLs it at a random
//! moment, reopens the directory, and checks that for every writer the
//! database holds exactly the state after some prefix of its transactions
//! that includes every acknowledged one (so: acknowledged writes present
//! with their newest value, later ones all-or-nothing, no value that was
//! never written), and that `Db::check` passes. Every trial continues on
//! the same directory, so recovery of recovered databases is tested too.
//!
//! The second test runs the same with value-log GC collecting files in
//! the child all the while.
//!
//! `SETT_CRASH_TRIALS=N` sets the number of trials (default 50, 20 with
//! GC); `SETT_CRASH_SEED=S` replays a run.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sett_engine::Db;
use sett_tests::crash::{
    dump, matching_prefixes, options, parse_line, read_lines, value, writer_of, Line, WRITERS,
};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

type State = BTreeMap<Vec<u8>, Vec<u8>>;

/// A transaction as the child announced it: (key, value) writes, `None` =
/// delete.
type Txn = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// What one writer did in one trial.
#[derive(Debug, Default)]
struct History {
    /// Announced transactions, in commit order.
    tried: Vec<Txn>,
    /// How many of them were acknowledged (always a prefix).
    acked: usize,
}

/// What a killed child reported.
struct ChildRun {
    /// Per-writer histories.
    histories: Vec<History>,
    /// It got the database open.
    opened: bool,
    /// Value-log files it collected.
    collected: usize,
}

/// Runs the child on `dir` until it is killed after `delay`.
fn run_child(dir: &Path, trial: u64, seed: u64, delay: Duration, gc: bool) -> ChildRun {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crash_child"));
    cmd.arg(dir).arg(trial.to_string()).arg(seed.to_string());
    if gc {
        cmd.arg("gc");
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn crash_child");
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || read_lines(stdout));
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    std::thread::sleep(delay);
    if let Some(status) = child.try_wait().unwrap() {
        panic!(
            "trial {trial}: child exited by itself ({status}):\n{}",
            err.join().unwrap()
        );
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success(), "trial {trial}: child was not killed");
    let lines = out.join().unwrap();
    drop(err.join());

    let mut histories: Vec<History> = (0..WRITERS).map(|_| History::default()).collect();
    let mut opened = false;
    let mut collected = 0;
    for line in &lines {
        match parse_line(line).unwrap_or_else(|| panic!("trial {trial}: bad line {line:?}")) {
            Line::Open => opened = true,
            Line::Gc(_) => collected += 1,
            Line::Try(w, seq, writes) => {
                let h = &mut histories[w];
                assert_eq!(
                    seq as usize,
                    h.tried.len(),
                    "trial {trial}: writer {w} skipped a seq"
                );
                let txn = writes
                    .into_iter()
                    .map(|(k, len)| {
                        let v = len.map(|len| value(trial, seq, &k, len));
                        (k, v)
                    })
                    .collect();
                h.tried.push(txn);
            }
            Line::Ack(w, seq) => {
                let h = &mut histories[w];
                assert_eq!(
                    seq as usize, h.acked,
                    "trial {trial}: writer {w} acked out of order"
                );
                assert!(h.acked < h.tried.len(), "trial {trial}: ack before try");
                h.acked += 1;
            }
        }
    }
    ChildRun {
        histories,
        opened,
        collected,
    }
}

#[test]
fn acknowledged_commits_survive_kill_9() {
    run_trials(false, 50);
}

#[test]
fn acknowledged_commits_survive_kill_9_during_value_log_gc() {
    run_trials(true, 20);
}

fn run_trials(gc: bool, default_trials: u64) {
    let trials: u64 = std::env::var("SETT_CRASH_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_trials);
    let seed: u64 = std::env::var("SETT_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen());
    eprintln!("SETT_CRASH_SEED={seed} SETT_CRASH_TRIALS={trials}");
    let mut rng = StdRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let started = Instant::now();

    // What the database held after the last recovery, per writer.
    let mut base: Vec<State> = vec![State::new(); WRITERS];
    let (mut acked_total, mut unacked_present, mut early_kills) = (0usize, 0usize, 0usize);
    let mut collected = 0usize;
    for trial in 0..trials {
        let delay = match rng.gen_range(0..10) {
            0 => Duration::from_millis(rng.gen_range(0..15)), // often before or during open
            1..=3 => Duration::from_millis(rng.gen_range(15..80)),
            _ => Duration::from_millis(rng.gen_range(80..400)),
        };
        let run = run_child(&dir, trial, rng.gen(), delay, gc);
        let histories = run.histories;
        early_kills += usize::from(!run.opened);
        collected += run.collected;

        let db =
            Db::open(options(&dir)).unwrap_or_else(|e| panic!("trial {trial}: reopen failed: {e}"));
        db.check()
            .unwrap_or_else(|e| panic!("trial {trial}: check failed: {e}"));
        let all = dump(&db, &[]).expect("read the reopened database");
        let mut observed: Vec<State> = vec![State::new(); WRITERS];
        for (k, v) in all {
            let w = writer_of(&k).unwrap_or_else(|| panic!("trial {trial}: unknown key {k:?}"));
            observed[w].insert(k, v);
        }
        for (w, h) in histories.iter().enumerate() {
            let found =
                matching_prefixes(&base[w], &h.tried, &observed[w], (h.acked, h.tried.len()));
            assert!(
                !found.is_empty(),
                "trial {trial} (seed {seed}), writer {w}: the recovered state is no prefix of the \
                 transactions with all {} acknowledged ones ({} tried)",
                h.acked,
                h.tried.len()
            );
            acked_total += h.acked;
            unacked_present += found[0] - h.acked;
        }
        base = observed;
        db.close().unwrap();
    }
    println!(
        "crash_kill9{}: {trials} trials, {acked_total} acknowledged transactions checked, \
         {unacked_present} unacknowledged ones found applied, {early_kills} kills before open \
         completed, {collected} value-log files collected, {:.1}s",
        if gc { " (value-log GC)" } else { "" },
        started.elapsed().as_secs_f64()
    );
    if gc && trials >= 10 {
        assert!(collected > 0, "value-log GC never collected a file");
    }
}
