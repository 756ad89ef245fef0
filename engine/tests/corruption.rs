//! Damaged bytes are detected, never returned as data.
//!
//! What "detected" means per file kind (every byte below was synced and
//! acknowledged before the damage, unless said otherwise):
//! - **table** (`*.sst`): footer, index, filter and meta blocks are checked
//!   at open, data blocks when read. Any flipped bit or cut gives
//!   `Error::Corruption` naming the file and offset — at open, on the read
//!   that touches the block, or from `Db::check` — never a wrong value or a
//!   silently missing key. (A background compaction that meets a bad
//!   block stops the database; its later errors are `Error::Poisoned`
//!   carrying the corruption's text, which counts as detected.)
//! - **value log** (`*.vlog`): every entry carries a checksum, checked on
//!   every value read and on replay. Before the manifest's replay head the
//!   log is read only through pointers: damage there is corruption when a
//!   live value is read (damage in garbage nobody points at is harmless).
//!   After the head, replay reads it: a bad record followed by a good one
//!   is corruption; a bad record at the very end of the newest file is cut
//!   as a torn write only when it looks like one — it runs past the end of
//!   the file (a cut) or the file ends in zeros (blocks that never reached
//!   the disk). A complete record with a flipped bit is corruption.
//! - **manifest**: records are checksummed; a bad record followed by a
//!   good one is corruption; a damaged *last* record is indistinguishable
//!   from a torn append and is cut. That loses no data: the edit's table
//!   file is then unrecorded and removed, and the value-log replay head
//!   falls back to the previous edit's, so replay restores the same
//!   writes; an edit that had deleted tables leaves the manifest naming
//!   files that are gone, and a head before log files GC has collected
//!   leaves a gap in the log: open reports both as corruption.
//!
//! A *torn* write (a power cut during an append) may keep any prefix of
//! the unsynced bytes: that may lose only unacknowledged writes.
//!
//! `SETT_CORRUPTION_TRIALS=N` (default 60), `SETT_CORRUPTION_SEED=S`.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sett_engine::fs::{FaultFs, Fs};
use sett_engine::{Db, Error, IterOptions, Options};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

type State = BTreeMap<Vec<u8>, Vec<u8>>;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn seed() -> u64 {
    let s = env_u64("SETT_CORRUPTION_SEED").unwrap_or_else(rand::random);
    println!("SETT_CORRUPTION_SEED={s}");
    s
}

fn small(opts: Options) -> Options {
    Options {
        memtable_size: 32 << 10,
        value_threshold: 64,
        vlog_file_size: 64 << 10,
        block_size: 512,
        table_size: 16 << 10,
        base_level_size: 64 << 10,
        max_levels: 4,
        l0_compaction_trigger: 2,
        ..opts
    }
}

fn value(rng: &mut StdRng, i: usize, round: usize) -> Vec<u8> {
    let len = if rng.gen_bool(0.5) {
        rng.gen_range(1..60)
    } else {
        rng.gen_range(100..2000)
    };
    let pattern = format!("v{i}.{round}|");
    pattern.bytes().cycle().take(len).collect()
}

/// Writes rounds of overwrites and deletions (with flushes and a full
/// compaction, so that tables sit in several levels and values in several
/// log files); returns what the database must hold.
fn populate(db: &Db, rng: &mut StdRng, keys: usize, rounds: usize) -> State {
    let mut model = State::new();
    for round in 0..rounds {
        for chunk in (0..keys).collect::<Vec<_>>().chunks(16) {
            let mut txn = db.begin_write();
            for &i in chunk {
                let k = format!("key{i:05}").into_bytes();
                if rng.gen_ratio(1, 8) {
                    txn.delete(k.clone()).unwrap();
                    model.remove(&k);
                } else {
                    let v = value(rng, i, round);
                    txn.set(k.clone(), v.clone()).unwrap();
                    model.insert(k, v);
                }
            }
            txn.commit().unwrap();
        }
        if round == rounds / 2 {
            db.compact().unwrap();
        }
    }
    model
}

/// Outcome of reading a damaged database.
#[derive(Debug, Default)]
struct Outcome {
    /// A corruption error was reported (at open, on a read, or by check).
    detected: bool,
    /// Model keys a read said were absent.
    missing: Vec<Vec<u8>>,
}

/// `Error::Corruption` (its message names file and offset), or the
/// failed state a background compaction that met corruption leaves,
/// whose message carries that error's text.
fn names_corruption(e: &Error) -> bool {
    match e {
        Error::Poisoned(reason) => {
            reason.contains("corruption in ") && reason.contains(" at offset ")
        }
        e => e.is_corruption() && e.to_string().contains(" at offset "),
    }
}

/// Reads everything; panics on a wrong value, an unknown key or an error
/// that is not corruption.
fn read_all(db: &Db, model: &State, ctx: &str) -> Outcome {
    let mut out = Outcome::default();
    let mut note = |e: Error, what: &str| {
        assert!(
            names_corruption(&e),
            "{ctx}: {what} failed with an error that is not corruption: {e}"
        );
        out.detected = true;
    };
    for (k, want) in model {
        match db.get(k) {
            Ok(Some(v)) => assert_eq!(&v, want, "{ctx}: get returned a wrong value"),
            Ok(None) => out.missing.push(k.clone()),
            Err(e) => note(e, "get"),
        }
    }
    let txn = db.begin_read();
    let mut it = txn.iter(IterOptions::default());
    let mut step = it.rewind();
    let mut bound = model.len() + 1;
    while step.is_ok() && it.valid() {
        let item = it.item();
        let k = item.key().to_vec();
        let want = model.get(&k);
        assert!(
            want.is_some(),
            "{ctx}: iteration returned unknown key {k:?}"
        );
        match item.value() {
            Ok(v) => assert_eq!(Some(&v), want, "{ctx}: iteration returned a wrong value"),
            Err(e) => note(e, "iterated value"),
        }
        bound -= 1;
        assert!(bound > 0, "{ctx}: iteration does not end");
        step = it.next();
    }
    if let Err(e) = step {
        note(e, "iteration");
    }
    drop(it);
    drop(txn);
    if let Err(e) = db.check() {
        note(e, "check");
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn files_of(dir: &Path, kind: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            match kind {
                "manifest" => name == "MANIFEST",
                ext => name.ends_with(&format!(".{ext}")),
            }
        })
        .collect();
    v.sort();
    v
}

/// Real files: a database is written and closed; each trial copies it,
/// flips one random bit or cuts one file of a kind at a random offset,
/// reopens and reads everything.
#[test]
fn damaged_real_files_give_corruption_or_exact_data() {
    let seed = seed();
    let trials = env_u64("SETT_CORRUPTION_TRIALS").unwrap_or(60);
    let mut rng = StdRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().unwrap();
    let template = tmp.path().join("template");
    let db = Db::open(small(Options::new(&template))).unwrap();
    let model = populate(&db, &mut rng, 400, 4);
    db.close().unwrap();
    drop(db);

    let mut tally: BTreeMap<(&str, &str), [u64; 3]> = BTreeMap::new();
    for trial in 0..trials {
        let kind = ["sst", "vlog", "manifest"][trial as usize % 3];
        let files = files_of(&template, kind);
        assert!(!files.is_empty(), "no {kind} file in the template");
        let dir = tmp.path().join(format!("t{trial}"));
        copy_dir(&template, &dir);
        let file = dir.join(files[rng.gen_range(0..files.len())].file_name().unwrap());
        let mut bytes = std::fs::read(&file).unwrap();
        let flip = rng.gen_bool(0.6);
        let damage = if flip {
            let bit = rng.gen_range(0..bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            format!("bit {bit} flipped")
        } else {
            let len = rng.gen_range(0..bytes.len());
            bytes.truncate(len);
            format!("cut to {len} bytes")
        };
        std::fs::write(&file, &bytes).unwrap();
        let ctx = format!(
            "trial {trial} (seed {seed}): {} {damage}",
            file.file_name().unwrap().to_string_lossy()
        );
        let how = if flip { "flip" } else { "cut" };
        let t = tally.entry((kind, how)).or_default();
        match Db::open(small(Options::new(&dir))) {
            Err(e) => {
                assert!(names_corruption(&e), "{ctx}: open failed with {e}");
                t[0] += 1;
            }
            Ok(db) => {
                let out = read_all(&db, &model, &ctx);
                assert!(
                    out.missing.is_empty() || out.detected,
                    "{ctx}: {} keys silently missing, e.g. {:?}",
                    out.missing.len(),
                    String::from_utf8_lossy(&out.missing[0])
                );
                t[if out.detected { 1 } else { 2 }] += 1;
                db.close().ok();
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
    println!("kind     damage  refused-at-open  detected-later  all-data-exact");
    for ((kind, how), [a, b, c]) in &tally {
        println!("{kind:<8} {how:<7} {a:>15} {b:>15} {c:>15}");
    }
}

const DIR: &str = "/db";

fn fault_opts(fs: &FaultFs) -> Options {
    Options {
        fs: Some(Arc::new(fs.clone()) as Arc<dyn Fs>),
        sync_writes: true,
        ..small(Options::new(DIR))
    }
}

/// Power cuts with torn writes: images keep a random prefix of every
/// file's unsynced bytes. Every acknowledged (synced) write survives,
/// nothing else appears, and the image passes `Db::check`.
#[test]
fn torn_writes_lose_only_unacknowledged_data() {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let fs = FaultFs::new();
    let db = Db::open(fault_opts(&fs)).unwrap();
    let mut model = State::new();
    let mut images = 0;
    for n in 0..1500usize {
        let i = rng.gen_range(0..200);
        let k = format!("key{i:05}").into_bytes();
        let v = value(&mut rng, i, n);
        db.update(|t| t.set(k.clone(), v.clone())).unwrap();
        model.insert(k, v);
        if n % 50 == 49 {
            // Background flushes and compactions may be mid-way.
            let img = fs.crash_torn(rng.gen());
            let ctx = format!("image {images} after {n} commits (seed {seed})");
            let recovered =
                Db::open(fault_opts(&img)).unwrap_or_else(|e| panic!("{ctx}: open failed: {e}"));
            let out = read_all(&recovered, &model, &ctx);
            assert!(!out.detected && out.missing.is_empty(), "{ctx}: {out:?}");
            recovered.close().unwrap();
            images += 1;
        }
    }
    db.close().unwrap();
}

/// A flipped bit in the synced part of the value log that recovery
/// replays (after the manifest's replay head) is corruption, wherever it
/// is — also in the very last record, which a torn-tail cut would drop.
#[test]
fn flipped_bit_in_replayed_value_log_is_detected() {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut detected, mut harmless) = (0, 0);
    for trial in 0..40 {
        let fs = FaultFs::new();
        let db = Db::open(Options {
            memtable_size: 8 << 20, // nothing flushes: all of it is replayed
            ..fault_opts(&fs)
        })
        .unwrap();
        let mut model = State::new();
        for n in 0..rng.gen_range(1..40usize) {
            let i = rng.gen_range(0..30);
            let k = format!("key{i:05}").into_bytes();
            let v = value(&mut rng, i, n);
            db.update(|t| t.set(k.clone(), v.clone())).unwrap();
            model.insert(k, v);
        }
        let img = fs.crash();
        drop(db);
        let vlogs: Vec<String> = img
            .list(Path::new(DIR))
            .unwrap()
            .into_iter()
            .filter(|n| n.ends_with(".vlog"))
            .collect();
        let newest = Path::new(DIR).join(vlogs.iter().max().unwrap());
        let synced = img.synced_len(&newest).unwrap();
        assert!(synced > 16, "the log holds synced records");
        // Past the 16-byte file header, within the synced records.
        let bit = rng.gen_range(16 * 8..synced * 8);
        img.flip_bit(&newest, bit).unwrap();
        let ctx = format!("trial {trial} (seed {seed}): bit {bit} of {synced} bytes");
        match Db::open(Options {
            memtable_size: 8 << 20,
            ..fault_opts(&img)
        }) {
            Err(e) => {
                assert!(names_corruption(&e), "{ctx}: open failed with {e}");
                detected += 1;
            }
            Ok(db) => {
                let out = read_all(&db, &model, &ctx);
                assert!(
                    out.missing.is_empty() || out.detected,
                    "{ctx}: {} acknowledged keys silently lost",
                    out.missing.len()
                );
                if out.detected {
                    detected += 1;
                } else {
                    harmless += 1;
                }
            }
        }
    }
    println!("flipped bits in the replayed log: {detected} detected, {harmless} harmless");
    assert_eq!(harmless, 0, "every replayed byte is under a checksum");
}
