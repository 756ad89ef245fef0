//! kill -9 during stream-writer ingest: a child ingests rounds of keys with
//! the stream writer and is SIGKILLed at a random moment. After reopening,
//! every round the child finished is present in full, the round it was in
//! is present in full or not at all, and `Db::check` passes. Trials share
//! one directory.
//!
//! `SETT_CRASH_TRIALS=N` sets the number of trials (default 20);
//! `SETT_CRASH_SEED=S` replays a run.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sett_engine::{Db, IterOptions};
use sett_tests::crash::{ingest_key, options, INGEST_ROUND_KEYS};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Keys present under the prefix of `round` in `trial`.
fn round_keys(db: &Db, trial: u64, round: u64) -> u64 {
    let txn = db.begin_read();
    let prefix = format!("ingest/{trial:04}/{round:06}/").into_bytes();
    let mut it = txn.iter(IterOptions {
        prefix,
        keys_only: true,
        ..IterOptions::default()
    });
    it.rewind().unwrap();
    let mut n = 0;
    while it.valid() {
        n += 1;
        it.next().unwrap();
    }
    n
}

#[test]
fn ingest_is_all_or_nothing_under_kill_9() {
    let trials = env_u64("SETT_CRASH_TRIALS").unwrap_or(20);
    let seed = env_u64("SETT_CRASH_SEED").unwrap_or_else(rand::random);
    println!("seed {seed} (SETT_CRASH_SEED to replay), {trials} trials");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let (mut finished_total, mut torn_checked) = (0u64, 0u64);
    for trial in 0..trials {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ingest_child"))
            .arg(dir.path())
            .arg(trial.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ingest_child");
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<String>>()
        });
        let delay = Duration::from_millis(rng.gen_range(5..400));
        std::thread::sleep(delay);
        child.kill().unwrap();
        child.wait().unwrap();
        let lines = reader.join().unwrap();
        let done = lines.iter().filter(|l| l.starts_with("DONE ")).count() as u64;
        let started = lines.iter().filter(|l| l.starts_with("START ")).count() as u64;

        let db = Db::open(options(dir.path())).expect("reopen after kill -9");
        for round in 0..done {
            assert_eq!(
                round_keys(&db, trial, round),
                INGEST_ROUND_KEYS,
                "trial {trial}: finished round {round} is incomplete"
            );
        }
        if started > done {
            let n = round_keys(&db, trial, done);
            assert!(
                n == 0 || n == INGEST_ROUND_KEYS,
                "trial {trial}: interrupted round {done} is torn: {n} of {INGEST_ROUND_KEYS} keys"
            );
            torn_checked += 1;
        }
        // Values are the ones ingested.
        if done > 0 {
            let k = ingest_key(trial, done - 1, 7);
            let want = format!("v{trial}/{}/7", done - 1).into_bytes();
            assert_eq!(db.get(&k).unwrap(), Some(want));
        }
        db.check().expect("integrity check after kill -9");
        db.close().unwrap();
        finished_total += done;
    }
    println!("{trials} trials: {finished_total} finished rounds verified, {torn_checked} interrupted rounds all-or-nothing");
}
