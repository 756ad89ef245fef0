//! Power-cut images: writers commit while another thread takes
//! `FaultFs::crash()` images of the running database (whatever was not
//! synced is gone). Each image must open, pass `Db::check`, and hold, for
//! every writer, exactly the state after some prefix of that writer's
//! transactions: at least every acknowledged one (with `sync_writes`) or
//! everything before the last completed `flush` (without), and nothing
//! that was never written. A transaction is all-or-nothing.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sett_engine::fs::FaultFs;
use sett_engine::{Db, IterOptions, Options};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const DIR: &str = "/db";
const KEYS_PER_WRITER: usize = 48;
const MAX_IMAGES: usize = 60;

type State = BTreeMap<Vec<u8>, Vec<u8>>;

/// One transaction: its writes (`None` = delete), in order.
#[derive(Debug, Clone)]
struct TxnRec {
    writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// A writer's history. `log` gets each transaction before its commit
/// starts; `acked` counts those whose commit returned `Ok`; `floor` counts
/// those known durable because a `flush` completed after they were acked.
#[derive(Debug, Default)]
struct Writer {
    log: Mutex<Vec<TxnRec>>,
    acked: AtomicUsize,
    floor: AtomicUsize,
}

/// A crash image and, per writer, the range of transaction counts it may
/// reflect.
struct Image {
    fs: FaultFs,
    bounds: Vec<(usize, usize)>,
}

fn seed() -> u64 {
    let seed = std::env::var("SETT_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen());
    eprintln!("SETT_FAULT_SEED={seed}");
    seed
}

fn opts(fs: &FaultFs, sync_writes: bool) -> Options {
    Options {
        fs: Some(Arc::new(fs.clone())),
        sync_writes,
        memtable_size: 8 << 10,
        value_threshold: 64,
        vlog_file_size: 64 << 10,
        block_size: 512,
        table_size: 8 << 10,
        base_level_size: 32 << 10,
        max_levels: 4,
        l0_compaction_trigger: 2,
        l0_slowdown_trigger: 6,
        l0_stall_trigger: 10,
        ..Options::new(DIR)
    }
}

fn writer_key(w: usize, i: usize) -> Vec<u8> {
    format!("w{w}/{i:03}").into_bytes()
}

fn gen_value(rng: &mut StdRng, w: usize, n: usize, i: usize) -> Vec<u8> {
    let len = match rng.gen_range(0..10) {
        0..=4 => rng.gen_range(1..40),
        5..=7 => rng.gen_range(60..70),
        _ => rng.gen_range(200..2000),
    };
    format!("w{w}t{n}k{i}|").bytes().cycle().take(len).collect()
}

/// Commits `txns` transactions for writer `w`; writer 0 also flushes and
/// compacts now and then.
fn run_writer(db: &Db, writers: &[Writer], w: usize, txns: usize, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed ^ (w as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let me = &writers[w];
    for n in 0..txns {
        let count = rng.gen_range(1..=4);
        let picked: BTreeSet<usize> = (0..count)
            .map(|_| rng.gen_range(0..KEYS_PER_WRITER))
            .collect();
        let writes: Vec<_> = picked
            .into_iter()
            .map(|i| {
                let v = (rng.gen_range(0..100) >= 15).then(|| gen_value(&mut rng, w, n, i));
                (writer_key(w, i), v)
            })
            .collect();
        let mut txn = db.begin_write();
        // A read on the way: only this writer touches these keys, so it
        // cannot cause a conflict.
        txn.get(&writes[0].0).unwrap();
        for (k, v) in &writes {
            match v {
                Some(v) => txn.set(k.clone(), v.clone()).unwrap(),
                None => txn.delete(k.clone()).unwrap(),
            }
        }
        me.log.lock().unwrap().push(TxnRec { writes });
        txn.commit().unwrap();
        me.acked.fetch_add(1, Ordering::SeqCst);

        if w == 0 && rng.gen_range(0..40) == 0 {
            let acked: Vec<usize> = writers
                .iter()
                .map(|x| x.acked.load(Ordering::SeqCst))
                .collect();
            if rng.gen_range(0..4) == 0 {
                db.compact().unwrap();
            } else {
                db.flush().unwrap();
            }
            for (x, a) in writers.iter().zip(acked) {
                x.floor.fetch_max(a, Ordering::SeqCst);
            }
        }
    }
}

/// Runs `n_writers` writers for `txns` transactions each while taking
/// crash images; returns the images and the writers' full histories.
fn workload(
    sync_writes: bool,
    n_writers: usize,
    txns: usize,
    seed: u64,
) -> (Vec<Image>, Vec<Vec<TxnRec>>) {
    let fs = FaultFs::new();
    let db = Db::open(opts(&fs, sync_writes)).unwrap();
    let writers: Vec<Writer> = (0..n_writers).map(|_| Writer::default()).collect();
    let running = AtomicUsize::new(n_writers);
    let mut images = Vec::new();
    std::thread::scope(|s| {
        for w in 0..n_writers {
            let (db, writers, running) = (&db, &writers, &running);
            s.spawn(move || {
                run_writer(db, writers, w, txns, seed);
                running.fetch_sub(1, Ordering::SeqCst);
            });
        }
        // Image points spread over the whole run: when writer 0 passes each
        // of a set of random transaction counts.
        let mut rng = StdRng::seed_from_u64(seed.wrapping_add(1));
        let mut targets: Vec<usize> = (0..MAX_IMAGES).map(|_| rng.gen_range(0..txns)).collect();
        targets.sort_unstable();
        let mut targets = targets.into_iter().peekable();
        while running.load(Ordering::SeqCst) > 0 {
            std::thread::sleep(Duration::from_micros(rng.gen_range(50..500)));
            let Some(&next) = targets.peek() else { break };
            if writers[0].log.lock().unwrap().len() < next {
                continue;
            }
            targets.next();
            let lower: Vec<usize> = writers
                .iter()
                .map(|x| {
                    if sync_writes {
                        x.acked.load(Ordering::SeqCst)
                    } else {
                        x.floor.load(Ordering::SeqCst)
                    }
                })
                .collect();
            let img = fs.crash();
            let upper: Vec<usize> = writers
                .iter()
                .map(|x| x.log.lock().unwrap().len())
                .collect();
            images.push(Image {
                fs: img,
                bounds: lower.into_iter().zip(upper).collect(),
            });
        }
    });
    // One more image of the quiet database, before and after close.
    let all: Vec<(usize, usize)> = writers
        .iter()
        .map(|x| (x.floor.load(Ordering::SeqCst), x.log.lock().unwrap().len()))
        .collect();
    let quiet: Vec<(usize, usize)> = if sync_writes {
        all.iter().map(|&(_, n)| (n, n)).collect()
    } else {
        all.clone()
    };
    images.push(Image {
        fs: fs.crash(),
        bounds: quiet,
    });
    db.close().unwrap();
    drop(db);
    images.push(Image {
        fs: fs.crash(),
        bounds: all.iter().map(|&(_, n)| (n, n)).collect(),
    });
    let logs = writers
        .into_iter()
        .map(|w| w.log.into_inner().unwrap())
        .collect();
    (images, logs)
}

/// Every key and value in the database.
fn dump(db: &Db) -> State {
    let txn = db.begin_read();
    let mut it = txn.iter(IterOptions::default());
    it.rewind().unwrap();
    let mut out = State::new();
    while it.valid() {
        out.insert(it.item().key().to_vec(), it.item().value().unwrap());
        it.next().unwrap();
    }
    out
}

/// The transaction counts `n` in `lo..=hi` such that applying the first `n`
/// transactions of `log` gives exactly `observed`.
fn matching_prefixes(log: &[TxnRec], observed: &State, (lo, hi): (usize, usize)) -> Vec<usize> {
    let mut state = State::new();
    // Keys where `state` and `observed` differ.
    let mut differ = observed.len();
    let mut out = Vec::new();
    if lo == 0 && differ == 0 {
        out.push(0);
    }
    for (i, t) in log[..hi].iter().enumerate() {
        for (k, v) in &t.writes {
            let before = state.get(k) == observed.get(k);
            match v {
                Some(v) => state.insert(k.clone(), v.clone()),
                None => state.remove(k),
            };
            let after = state.get(k) == observed.get(k);
            match (before, after) {
                (true, false) => differ += 1,
                (false, true) => differ -= 1,
                _ => {}
            }
        }
        if i + 1 >= lo && differ == 0 {
            out.push(i + 1);
        }
    }
    out
}

/// Opens `img`, checks it, and compares it with the writers' histories.
/// Returns the database's contents.
fn verify(img: &Image, logs: &[Vec<TxnRec>], sync_writes: bool, which: usize) -> State {
    let db = Db::open(opts(&img.fs, sync_writes))
        .unwrap_or_else(|e| panic!("image {which}: open failed: {e}"));
    db.check()
        .unwrap_or_else(|e| panic!("image {which}: check failed: {e}"));
    let all = dump(&db);
    let mut seen = 0;
    for (w, log) in logs.iter().enumerate() {
        let prefix = format!("w{w}/").into_bytes();
        let observed: State = all
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        seen += observed.len();
        let bounds = img.bounds[w];
        let found = matching_prefixes(log, &observed, bounds);
        assert!(
            !found.is_empty(),
            "image {which}, writer {w}: state is no prefix of its transactions in {bounds:?}; \
             observed {} keys",
            observed.len()
        );
    }
    assert_eq!(seen, all.len(), "image {which}: keys no writer wrote");
    drop(db);
    all
}

/// A recovered image is itself recovered after another power cut: a write
/// made after recovery survives, and nothing else changes.
fn verify_recovery_of_recovered(img: &Image, before: &State, which: usize) {
    let db = Db::open(opts(&img.fs, true)).unwrap();
    let marker = format!("marker/{which}").into_bytes();
    db.update(|t| t.set(marker.clone(), b"m".to_vec())).unwrap();
    let again = img.fs.crash();
    drop(db);
    let db = Db::open(opts(&again, true)).unwrap();
    db.check().unwrap();
    let mut want = before.clone();
    want.insert(marker, b"m".to_vec());
    assert_eq!(
        dump(&db),
        want,
        "image {which}: second recovery changed the data"
    );
}

fn run(sync_writes: bool, n_writers: usize, txns: usize) {
    let seed = seed();
    let (images, logs) = workload(sync_writes, n_writers, txns, seed);
    assert!(images.len() >= 3);
    let total: usize = logs.iter().map(Vec::len).sum();
    for (i, img) in images.iter().enumerate() {
        let state = verify(img, &logs, sync_writes, i);
        if i % 4 == 0 {
            verify_recovery_of_recovered(img, &state, i);
        }
    }
    let windows: Vec<String> = images
        .iter()
        .map(|i| format!("{:?}", i.bounds[0]))
        .collect();
    eprintln!(
        "{} crash images checked over {total} transactions; writer 0 windows: {}",
        images.len(),
        windows.join(" ")
    );
}

#[test]
fn synced_commits_survive_power_cuts() {
    run(true, 3, 1500);
}

#[test]
fn unsynced_commits_leave_a_consistent_prefix() {
    run(false, 1, 3000);
}

#[test]
fn prefix_checker_rejects_torn_and_lost_transactions() {
    let put = |k: &str, v: &str| (k.as_bytes().to_vec(), Some(v.as_bytes().to_vec()));
    let log = vec![
        TxnRec {
            writes: vec![put("a", "1"), put("b", "1")],
        },
        TxnRec {
            writes: vec![put("a", "2"), (b"b".to_vec(), None)],
        },
    ];
    let state = |kv: &[(&str, &str)]| -> State {
        kv.iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    };
    assert_eq!(matching_prefixes(&log, &state(&[]), (0, 2)), vec![0]);
    assert_eq!(
        matching_prefixes(&log, &state(&[("a", "1"), ("b", "1")]), (0, 2)),
        vec![1]
    );
    assert_eq!(
        matching_prefixes(&log, &state(&[("a", "2")]), (0, 2)),
        vec![2]
    );
    // Lost acknowledged transaction, torn transaction, garbage value.
    assert!(matching_prefixes(&log, &state(&[("a", "1"), ("b", "1")]), (2, 2)).is_empty());
    assert!(matching_prefixes(&log, &state(&[("a", "2"), ("b", "1")]), (0, 2)).is_empty());
    assert!(matching_prefixes(&log, &state(&[("a", "3")]), (0, 2)).is_empty());
    // Not yet attempted.
    assert!(matching_prefixes(&log, &state(&[("a", "2")]), (0, 1)).is_empty());
}
