//! The engine crash matrix: each trial arms one crash point
//! (`sett_engine::crash_point::POINTS`, seeded choice of point and of its
//! nth hit) in a child (`crash_matrix_child`) that commits synced writes
//! while driving the point's operation — flush, compaction, value-log GC,
//! stream-writer ingest or manifest rewrite. The child SIGKILLs itself at
//! the point; if it has not got there within the bound, the test kills it.
//! Then the test reopens the database and checks, as `crash_kill9.rs`
//! does, that each writer's keys hold exactly the state after a prefix of
//! its transactions that includes every acknowledged one; that every
//! finished ingest round is in the ingest target whole, an interrupted one
//! whole or not at all; and that `Db::check` passes on both. Trials
//! continue on the same directories.
//!
//! `SETT_CRASH_MATRIX_TRIALS=N` (default 52: four per point; 260 for the
//! long mode), `SETT_CRASH_SEED=S` replays a run,
//! `SETT_CRASH_MATRIX_BOUND_MS` (default 2000) bounds a child's run.
//! Crash points fire only in debug builds; in a release build every trial
//! ends with the test's own kill, and the test says so.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sett_engine::crash_point::{CRASH_AT_ENV, MANIFEST_REWRITE_EAGER_ENV, POINTS};
use sett_engine::Db;
use sett_tests::crash::{
    dump, entry_hash, matching_prefixes, matrix_ingest_prefix, options, parse_ingest_line,
    parse_line, read_lines, writer_of, History, IngestLine, Line, State, WRITERS,
};
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// How a child run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The crash point fired.
    Fired,
    /// The bound passed first; the test killed it.
    KilledByTest,
}

/// What a child reported.
struct ChildRun {
    end: End,
    histories: Vec<History>,
    /// Ingest rounds: (entries, hash) once exported, and whether `finish`
    /// returned.
    rounds: BTreeMap<u64, (Option<(u64, u64)>, bool)>,
    collected: usize,
}

fn run_child(dir: &Path, trial: u64, seed: u64, spec: &str, bound: Duration) -> ChildRun {
    let mode = spec.split('.').next().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crash_matrix_child"));
    cmd.arg(dir)
        .arg(trial.to_string())
        .arg(seed.to_string())
        .arg(mode)
        .env(CRASH_AT_ENV, spec)
        .env_remove(MANIFEST_REWRITE_EAGER_ENV);
    if mode == "manifest" {
        cmd.env(MANIFEST_REWRITE_EAGER_ENV, "1");
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn crash_matrix_child");
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || read_lines(stdout));
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + bound;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let end = match status {
        Some(status) => {
            let err = err.join().unwrap();
            assert!(
                status.signal() == Some(libc::SIGKILL) && err.contains("sett-engine: crash point"),
                "trial {trial} ({spec}): child ended by itself ({status}) without a crash point:\n{err}"
            );
            End::Fired
        }
        None => {
            child.kill().unwrap(); // SIGKILL
            let status = child.wait().unwrap();
            let err = err.join().unwrap();
            // It may have reached the point in the meantime.
            if err.contains("sett-engine: crash point") {
                End::Fired
            } else {
                assert_eq!(status.signal(), Some(libc::SIGKILL), "trial {trial}: {err}");
                End::KilledByTest
            }
        }
    };
    let lines = out.join().unwrap();

    let mut run = ChildRun {
        end,
        histories: vec![History::default(); WRITERS],
        rounds: BTreeMap::new(),
        collected: 0,
    };
    for line in &lines {
        if let Some(l) = parse_ingest_line(line) {
            match l {
                IngestLine::Start(r) => {
                    run.rounds.insert(r, (None, false));
                }
                IngestLine::Ready(r, n, h) => run.rounds.get_mut(&r).unwrap().0 = Some((n, h)),
                IngestLine::Done(r) => run.rounds.get_mut(&r).unwrap().1 = true,
            }
            continue;
        }
        match parse_line(line).unwrap_or_else(|| panic!("trial {trial}: bad line {line:?}")) {
            Line::Open => {}
            Line::Gc(_) => run.collected += 1,
            Line::Try(w, seq, writes) => run.histories[w].tried(trial, seq, writes),
            Line::Ack(w, seq) => run.histories[w].acked(trial, seq),
        }
    }
    run
}

/// Number of entries and their fingerprint under `prefix`.
fn fingerprint(db: &Db, prefix: &[u8]) -> (u64, u64) {
    let all = dump(db, prefix).expect("read the ingest target");
    let hash = all
        .iter()
        .fold(0u64, |h, (k, v)| h.wrapping_add(entry_hash(k, v)));
    (all.len() as u64, hash)
}

#[test]
fn crash_matrix() {
    let trials = env_u64("SETT_CRASH_MATRIX_TRIALS").unwrap_or(4 * POINTS.len() as u64);
    let seed = env_u64("SETT_CRASH_SEED").unwrap_or_else(rand::random);
    let bound = Duration::from_millis(env_u64("SETT_CRASH_MATRIX_BOUND_MS").unwrap_or(2000));
    println!("crash_matrix: SETT_CRASH_SEED={seed} SETT_CRASH_MATRIX_TRIALS={trials}");
    let mut rng = StdRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let started = Instant::now();

    // What the database held after the last recovery, per writer.
    let mut base: Vec<State> = vec![State::new(); WRITERS];
    // Everything the ingest target must hold: (entries, hash) in total.
    let mut ingested = (0u64, 0u64);
    let mut counts: BTreeMap<&str, (u64, u64)> = POINTS.iter().map(|p| (*p, (0, 0))).collect();
    let (mut acked_total, mut rounds_done, mut rounds_cut) = (0usize, 0u64, 0u64);
    let mut collected = 0usize;
    let mut order: Vec<&str> = Vec::new();
    for trial in 0..trials {
        // Every point equally often: a fresh seeded order per pass.
        if order.is_empty() {
            order = POINTS.to_vec();
            order.shuffle(&mut rng);
        }
        let point = order.pop().unwrap();
        let nth = rng.gen_range(1..=6u32);
        let spec = format!("{point}:{nth}");
        let run = run_child(dir, trial, rng.gen(), &spec, bound);
        let c = counts.get_mut(point).unwrap();
        match run.end {
            End::Fired => c.0 += 1,
            End::KilledByTest => c.1 += 1,
        }
        collected += run.collected;

        let ctx = format!("trial {trial} ({spec}, seed {seed})");
        let db = Db::open(options(&dir.join("db")))
            .unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
        db.check()
            .unwrap_or_else(|e| panic!("{ctx}: check failed: {e}"));
        let mut observed: Vec<State> = vec![State::new(); WRITERS];
        for (k, v) in dump(&db, b"").unwrap_or_else(|e| panic!("{ctx}: read failed: {e}")) {
            let w = writer_of(&k).unwrap_or_else(|| panic!("{ctx}: unknown key {k:?}"));
            observed[w].insert(k, v);
        }
        for (w, h) in run.histories.iter().enumerate() {
            let found =
                matching_prefixes(&base[w], &h.tried, &observed[w], (h.acked, h.tried.len()));
            assert!(
                !found.is_empty(),
                "{ctx}, writer {w}: the recovered state is no prefix of the transactions with \
                 all {} acknowledged ones ({} tried)",
                h.acked,
                h.tried.len()
            );
            acked_total += h.acked;
        }
        base = observed;
        db.close().unwrap();

        if point.starts_with("ingest.") {
            let target = Db::open(options(&dir.join("ingest")))
                .unwrap_or_else(|e| panic!("{ctx}: reopening the ingest target failed: {e}"));
            target
                .check()
                .unwrap_or_else(|e| panic!("{ctx}: check of the ingest target failed: {e}"));
            for (&round, &(exported, done)) in &run.rounds {
                let got = fingerprint(&target, &matrix_ingest_prefix(trial, round));
                let whole = exported == Some(got);
                match (done, whole) {
                    (true, true) => rounds_done += 1,
                    (true, false) => panic!(
                        "{ctx}: finished ingest round {round} holds {got:?}, exported {exported:?}"
                    ),
                    (false, _) if got.0 == 0 => rounds_cut += 1,
                    // `finish` was durable but had not returned yet.
                    (false, true) => rounds_done += 1,
                    (false, false) => panic!(
                        "{ctx}: interrupted ingest round {round} is torn: {got:?} of {exported:?}"
                    ),
                }
                ingested.0 += got.0;
                ingested.1 = ingested.1.wrapping_add(got.1);
            }
            // Nothing ingested earlier went missing.
            assert_eq!(
                fingerprint(&target, b""),
                ingested,
                "{ctx}: ingest target lost data"
            );
            target.close().unwrap();
        }
    }

    println!(
        "crash_matrix: {trials} trials in {:.1}s, {acked_total} acknowledged transactions checked, \
         {rounds_done} ingest rounds whole, {rounds_cut} interrupted rounds absent, \
         {collected} value-log files collected",
        started.elapsed().as_secs_f64()
    );
    println!("{:<30} {:>6} {:>15}", "point", "fired", "killed by test");
    for (p, (fired, killed)) in &counts {
        println!("{p:<30} {fired:>6} {killed:>15}");
    }
    let fired: u64 = counts.values().map(|c| c.0).sum();
    if cfg!(debug_assertions) {
        assert!(
            trials < 2 * POINTS.len() as u64 || fired > 0,
            "no crash point fired in {trials} trials"
        );
    } else {
        println!("crash_matrix: release build, crash points are compiled out ({fired} fired)");
    }
}
