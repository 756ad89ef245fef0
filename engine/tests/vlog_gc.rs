//! Value-log garbage collection: space comes back, data stays, old
//! snapshots keep reading, concurrent writers, readers and compactions are
//! unaffected, and power cuts at any moment leave a consistent database
//! with every acknowledged write.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sett_engine::fs::{FaultFs, MemFs};
use sett_engine::{Db, Entry, Error, GcOutcome, IterOptions, Options};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const DIR: &str = "/db";

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn seed() -> u64 {
    let seed = std::env::var("SETT_GC_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen());
    eprintln!("SETT_GC_SEED={seed}");
    seed
}

/// Small everything, so that rotations, flushes and compactions happen
/// within a few hundred writes.
fn small(fs: Arc<dyn sett_engine::fs::Fs>, sync_writes: bool) -> Options {
    Options {
        fs: Some(fs),
        sync_writes,
        memtable_size: 32 << 10,
        value_threshold: 64,
        vlog_file_size: 64 << 10,
        block_size: 512,
        table_size: 16 << 10,
        base_level_size: 64 << 10,
        max_levels: 4,
        l0_compaction_trigger: 2,
        l0_slowdown_trigger: 6,
        l0_stall_trigger: 10,
        block_cache_size: 64 << 10,
        ..Options::new(DIR)
    }
}

fn key(i: usize) -> Vec<u8> {
    format!("key{i:05}").into_bytes()
}

/// A value that names its key and sequence number, so a wrong value is
/// always detected.
fn value(k: &[u8], seq: u64, len: usize) -> Vec<u8> {
    let mut head = k.to_vec();
    head.extend_from_slice(format!("#{seq}|").as_bytes());
    head.iter()
        .copied()
        .cycle()
        .take(len.max(head.len()))
        .collect()
}

/// The key a value was written for (inverse of [`value`]).
fn value_names(v: &[u8], k: &[u8]) -> bool {
    v.starts_with(k) && v.get(k.len()) == Some(&b'#')
}

fn dump(db: &Db) -> Model {
    let txn = db.begin_read();
    let mut it = txn.iter(IterOptions::default());
    it.rewind().unwrap();
    let mut out = Model::new();
    while it.valid() {
        out.insert(it.item().key().to_vec(), it.item().value().unwrap());
        it.next().unwrap();
    }
    out
}

fn assert_matches(db: &Db, model: &Model, what: &str) {
    let got = dump(db);
    assert_eq!(got.len(), model.len(), "{what}: key count");
    for (k, v) in model {
        assert_eq!(
            got.get(k),
            Some(v),
            "{what}: {}",
            String::from_utf8_lossy(k)
        );
        assert_eq!(db.get(k).unwrap().as_ref(), Some(v), "{what}: get");
    }
}

/// Runs GC until it has nothing to do; returns the files collected.
fn gc_until_done(db: &Db, ratio: f64) -> usize {
    let mut collected = 0;
    for _ in 0..10_000 {
        match db.run_value_log_gc(ratio).unwrap() {
            GcOutcome::Collected(_) => collected += 1,
            GcOutcome::NothingToDo => return collected,
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    panic!("GC does not converge");
}

fn vlog_files(fs: &dyn sett_engine::fs::Fs) -> Vec<String> {
    let mut v: Vec<String> = fs
        .list(Path::new(DIR))
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".vlog"))
        .collect();
    v.sort();
    v
}

#[test]
fn overwritten_data_is_collected_and_intact() {
    let fs = Arc::new(MemFs::new());
    let opts = small(fs.clone(), false);
    let db = Db::open(opts.clone()).unwrap();
    let mut model = Model::new();
    let mut rng = StdRng::seed_from_u64(seed());
    let n = 400;
    // Everything once, then three rounds overwriting a random 60%: live
    // values end up spread over every file.
    for round in 0..4u64 {
        for chunk in (0..n).collect::<Vec<_>>().chunks(20) {
            let mut txn = db.begin_write();
            for &i in chunk {
                if round > 0 && rng.gen_bool(0.4) {
                    continue;
                }
                let k = key(i);
                let v = value(&k, round, 500);
                txn.set(k.clone(), v.clone()).unwrap();
                model.insert(k, v);
            }
            txn.commit().unwrap();
        }
    }
    // Compaction drops the three older versions and counts their garbage.
    db.compact().unwrap();
    let live_bytes: u64 = model.values().map(|v| v.len() as u64).sum();
    let before = db.stats().vlog_bytes;
    let files_before = vlog_files(&*fs).len();
    assert!(before > 2 * live_bytes, "{before} vs {live_bytes}");

    let collected = gc_until_done(&db, 0.5);
    assert!(collected > 0);
    let after = db.stats().vlog_bytes;
    let files_after = vlog_files(&*fs).len();
    eprintln!(
        "vlog {before} -> {after} bytes ({files_before} -> {files_after} files), live {live_bytes}"
    );
    assert!(files_after < files_before);
    assert!(
        (after as f64) < 1.6 * live_bytes as f64,
        "{after} bytes of log for {live_bytes} live"
    );
    let st = db.value_log_gc_stats();
    assert_eq!(st.files_collected, collected as u64);
    assert!(st.bytes_reclaimed > 0 && st.entries_rewritten > 0);
    assert_eq!(st.files_awaiting_readers, 0);
    assert_matches(&db, &model, "after GC");
    db.check().unwrap();

    // Flushing and compacting the rewrites changes nothing; neither does a
    // reopen.
    db.compact().unwrap();
    assert_matches(&db, &model, "after compact");
    db.close().unwrap();
    let db = Db::open(opts).unwrap();
    assert_matches(&db, &model, "after reopen");
    db.check().unwrap();
    assert_eq!(gc_until_done(&db, 0.9), 0, "nothing left at 90% garbage");
}

#[test]
fn rewrites_keep_ttl_user_meta_and_versions() {
    let fs = Arc::new(MemFs::new());
    let db = Db::open(small(fs.clone(), false)).unwrap();
    let ttl = Duration::from_secs(3600);
    let mut versions = BTreeMap::new();
    for i in 0..50 {
        let k = key(i);
        let e = Entry::new(k.clone(), value(&k, 1, 300))
            .with_user_meta(i as u8)
            .with_ttl(ttl);
        db.update(|t| t.set_entry(e)).unwrap();
        let item = db.view(|t| t.get(&k)).unwrap().unwrap();
        versions.insert(k, (item.version(), item.expires_at()));
    }
    // Deleted keys: their markers must stay deleted.
    for i in 50..60 {
        db.update(|t| t.set(key(i), value(&key(i), 1, 300)))
            .unwrap();
        db.update(|t| t.delete(key(i))).unwrap();
    }
    // Garbage around them: small values (inline in the tree) fill files.
    for j in 0..3000u64 {
        let k = format!("filler{:03}", j % 100).into_bytes();
        db.update(|t| t.set(k.clone(), value(&k, j, 40))).unwrap();
    }
    db.compact().unwrap();
    assert!(gc_until_done(&db, 0.5) > 0);
    let check = |db: &Db| {
        for i in 0..50 {
            let k = key(i);
            let item = db.view(|t| t.get(&k)).unwrap().unwrap();
            assert_eq!(item.value().unwrap(), value(&k, 1, 300));
            assert_eq!(item.user_meta(), i as u8);
            assert_eq!((item.version(), item.expires_at()), versions[&k]);
        }
        for i in 50..60 {
            assert_eq!(db.get(&key(i)).unwrap(), None);
        }
    };
    check(&db);
    db.check().unwrap();
    db.close().unwrap();
    let db = Db::open(small(fs, false)).unwrap();
    check(&db);
}

#[test]
fn snapshot_older_than_gc_keeps_reading_old_values() {
    let fs = Arc::new(MemFs::new());
    let db = Db::open(Options {
        value_threshold: 512,
        // Keeps the old version in the tree until the explicit compaction.
        background_compaction: false,
        ..small(fs.clone(), false)
    })
    .unwrap();
    let old = value(b"snap", 1, 2000);
    db.update(|t| t.set(b"snap".to_vec(), old.clone())).unwrap();
    // Fill the rest of file 1 and more with small (inline) values.
    let mut j = 0u64;
    while vlog_files(&*fs).len() < 2 {
        let k = format!("small{:03}", j % 200).into_bytes();
        db.update(|t| t.set(k.clone(), value(&k, j, 400))).unwrap();
        j += 1;
    }
    let snap = db.begin_read();
    let old_item = snap.get(b"snap").unwrap().unwrap();
    let mut it = snap.iter(IterOptions {
        prefix: b"snap".to_vec(),
        ..IterOptions::default()
    });
    it.rewind().unwrap();
    let new = value(b"snap", 2, 2000);
    db.update(|t| t.set(b"snap".to_vec(), new.clone())).unwrap();
    db.flush().unwrap();

    let first = vlog_files(&*fs)[0].clone();
    let report = match db.run_value_log_gc(0.5).unwrap() {
        GcOutcome::Collected(r) => r,
        other => panic!("expected a collection, got {other:?}"),
    };
    assert_eq!(report.fid, 1);
    assert!(report.deferred, "a snapshot was open");
    assert!(!vlog_files(&*fs).contains(&first), "file 1 is unlinked");
    assert_eq!(db.value_log_gc_stats().files_awaiting_readers, 1);

    // The old snapshot still reads the old value through every path.
    assert_eq!(old_item.value().unwrap(), old);
    assert_eq!(snap.get(b"snap").unwrap().unwrap().value().unwrap(), old);
    assert!(it.valid());
    assert_eq!(it.item().value().unwrap(), old);
    drop(it);
    assert_eq!(db.get(b"snap").unwrap(), Some(new.clone()));
    db.check().unwrap();

    drop(snap);
    assert_eq!(db.value_log_gc_stats().files_awaiting_readers, 0);
    // An item that outlived its transaction gets a clean error.
    match old_item.value() {
        Err(Error::ValueCollected { fid: 1 }) => {}
        other => panic!("expected ValueCollected, got {other:?}"),
    }
    // The invisible old version is still listed by all-versions iteration
    // until compaction drops it; its value is gone, and check skips it.
    let txn = db.begin_read();
    let mut it = txn.iter(IterOptions {
        prefix: b"snap".to_vec(),
        all_versions: true,
        ..IterOptions::default()
    });
    it.rewind().unwrap();
    let mut seen = Vec::new();
    while it.valid() {
        seen.push((it.item().version(), it.item().value().ok()));
        it.next().unwrap();
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].1.as_ref(), Some(&new));
    assert_eq!(seen[1].1, None);
    drop(it);
    drop(txn);
    db.check().unwrap();
    db.compact().unwrap();
    db.check().unwrap();
    assert_eq!(db.get(b"snap").unwrap(), Some(new));
}

#[test]
fn managed_mode_keeps_versions_above_the_discard_watermark() {
    let fs = Arc::new(MemFs::new());
    let db = Db::open(Options {
        managed: true,
        value_threshold: 512,
        ..small(fs.clone(), false)
    })
    .unwrap();
    let put = |k: &[u8], v: Vec<u8>, ts: u64| {
        let mut t = db.begin_write_at(ts - 1).unwrap();
        t.set(k.to_vec(), v).unwrap();
        t.commit_at(ts).unwrap();
    };
    let old = value(b"k", 1, 2000);
    put(b"k", old.clone(), 10);
    let mut ts = 11;
    while vlog_files(&*fs).len() < 2 {
        let k = format!("small{:03}", ts % 200).into_bytes();
        put(&k, value(&k, ts, 400), ts);
        ts += 1;
    }
    let new = value(b"k", 2, 2000);
    put(b"k", new.clone(), ts);
    db.flush().unwrap();
    // Discard watermark 0: a snapshot at 10 may still come, so the file
    // holding k@10 must stay.
    assert_eq!(gc_until_done(&db, 0.5), 0);
    let r = db.begin_read_at(10).unwrap();
    assert_eq!(r.get(b"k").unwrap().unwrap().value().unwrap(), old);
    drop(r);
    // Past the watermark only the newest version is readable: collectable.
    db.set_discard_ts(ts).unwrap();
    assert!(gc_until_done(&db, 0.5) > 0);
    let r = db.begin_read_at(ts).unwrap();
    assert_eq!(r.get(b"k").unwrap().unwrap().value().unwrap(), new);
    drop(r);
    db.check().unwrap();
}

#[test]
fn bad_ratio_and_read_only() {
    let db = Db::open(Options::in_memory()).unwrap();
    for r in [0.0, -1.0, 1.5, f64::NAN] {
        assert!(matches!(
            db.run_value_log_gc(r),
            Err(Error::InvalidArgument(_))
        ));
    }
    assert_eq!(db.run_value_log_gc(0.5).unwrap(), GcOutcome::NothingToDo);
}

/// Writers, snapshot readers, compactions and GC all at once; contents
/// checked against a model before and after.
#[test]
fn gc_under_concurrent_writes_readers_and_compactions() {
    let seed = seed();
    let fs = Arc::new(MemFs::new());
    let opts = small(fs.clone(), false);
    let db = Db::open(opts.clone()).unwrap();
    const WRITERS: usize = 3;
    const KEYS: usize = 120;
    const TXNS: usize = 1500;
    let models: Vec<Mutex<Model>> = (0..WRITERS).map(|_| Mutex::new(Model::new())).collect();
    // Initial load, checked before GC starts.
    {
        let mut b = db.write_batch();
        for (w, model) in models.iter().enumerate() {
            let mut m = model.lock().unwrap();
            for i in 0..KEYS {
                let k = format!("w{w}/{i:04}").into_bytes();
                let v = value(&k, 0, 300);
                b.set(k.clone(), v.clone()).unwrap();
                m.insert(k, v);
            }
        }
        b.flush().unwrap();
    }
    let all = |models: &[Mutex<Model>]| {
        let mut m = Model::new();
        for x in models {
            m.extend(x.lock().unwrap().clone());
        }
        m
    };
    assert_matches(&db, &all(&models), "before");

    let stop = AtomicBool::new(false);
    let collected = AtomicUsize::new(0);
    let reads = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let mut writers = Vec::new();
        for w in 0..WRITERS {
            let (db, models) = (&db, &models);
            writers.push(s.spawn(move || {
                let mut rng = StdRng::seed_from_u64(seed ^ w as u64);
                for seq in 1..=TXNS as u64 {
                    let i = rng.gen_range(0..KEYS);
                    let k = format!("w{w}/{i:04}").into_bytes();
                    if rng.gen_bool(0.1) {
                        db.update(|t| t.delete(k.clone())).unwrap();
                        models[w].lock().unwrap().remove(&k);
                    } else {
                        let len = if rng.gen_bool(0.3) {
                            30
                        } else {
                            200 + rng.gen_range(0..1500)
                        };
                        let v = value(&k, seq, len);
                        db.update(|t| t.set(k.clone(), v.clone())).unwrap();
                        models[w].lock().unwrap().insert(k, v);
                    }
                }
            }));
        }
        // GC with flushes so that the replay head keeps moving.
        s.spawn(|| {
            let mut n = 0u64;
            while !stop.load(Ordering::Acquire) {
                match db.run_value_log_gc(0.3).unwrap() {
                    GcOutcome::Collected(_) => {
                        collected.fetch_add(1, Ordering::Relaxed);
                    }
                    GcOutcome::NothingToDo | GcOutcome::AlreadyRunning => {
                        std::thread::sleep(Duration::from_millis(2))
                    }
                    other => panic!("{other:?}"),
                }
                n += 1;
                if n.is_multiple_of(5) {
                    db.flush().unwrap();
                }
            }
        });
        // A second GC caller: must either run or be told one is running.
        s.spawn(|| {
            while !stop.load(Ordering::Acquire) {
                match db.run_value_log_gc(0.5).unwrap() {
                    GcOutcome::Collected(_) => {
                        collected.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => std::thread::sleep(Duration::from_millis(7)),
                }
            }
        });
        // Snapshot readers: every value names its key, and within one
        // snapshot point reads agree with the iterator; long-lived
        // iterators keep reading while GC runs.
        for r in 0..2 {
            let (db, stop, reads) = (&db, &stop, &reads);
            s.spawn(move || {
                let mut rng = StdRng::seed_from_u64(seed ^ (100 + r));
                while !stop.load(Ordering::Acquire) {
                    let txn = db.begin_read();
                    let mut it = txn.iter(IterOptions::default());
                    it.rewind().unwrap();
                    let mut n = 0;
                    while it.valid() {
                        let item = it.item();
                        let v = item.value().unwrap();
                        assert!(
                            value_names(&v, item.key()),
                            "wrong value for {:?}",
                            item.key()
                        );
                        if rng.gen_bool(0.05) {
                            let again = txn.get(item.key()).unwrap().unwrap().value().unwrap();
                            assert_eq!(again, v, "snapshot changed under GC");
                        }
                        if rng.gen_bool(0.01) {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        n += 1;
                        it.next().unwrap();
                    }
                    assert!(n > 0);
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        for w in writers {
            w.join().unwrap();
        }
        stop.store(true, Ordering::Release);
    });
    let model = all(&models);
    assert_matches(&db, &model, "after concurrent run");
    db.check().unwrap();
    db.compact().unwrap();
    let more = gc_until_done(&db, 0.3);
    let total = collected.load(Ordering::Relaxed) + more;
    eprintln!(
        "collected {total} files ({more} after the run), {} snapshot scans",
        reads.load(Ordering::Relaxed)
    );
    assert!(total > 0, "GC never collected anything");
    assert_matches(&db, &model, "after final GC");
    db.check().unwrap();
    db.close().unwrap();
    let db = Db::open(opts).unwrap();
    assert_matches(&db, &model, "after reopen");
    db.check().unwrap();
}

/// A power cut right after a collection, before the memtable holding the
/// rewrites is flushed: replay restores them.
#[test]
fn crash_right_after_gc_replays_the_rewrites() {
    let fs = FaultFs::new();
    let opts = small(Arc::new(fs.clone()), true);
    let db = Db::open(opts).unwrap();
    let mut model = Model::new();
    for round in 0..4u64 {
        for i in 0..150 {
            let k = key(i);
            let v = value(&k, round, 400);
            db.update(|t| t.set(k.clone(), v.clone())).unwrap();
            model.insert(k, v);
        }
    }
    db.compact().unwrap();
    let mut images = Vec::new();
    loop {
        match db.run_value_log_gc(0.5).unwrap() {
            GcOutcome::Collected(_) => images.push(fs.crash()),
            GcOutcome::NothingToDo => break,
            other => panic!("{other:?}"),
        }
    }
    assert!(!images.is_empty());
    for (n, img) in images.into_iter().enumerate() {
        let db = Db::open(small(Arc::new(img), true))
            .unwrap_or_else(|e| panic!("image {n}: reopen failed: {e}"));
        db.check()
            .unwrap_or_else(|e| panic!("image {n}: check failed: {e}"));
        assert_matches(&db, &model, &format!("image {n}"));
        // GC continues on the recovered database.
        gc_until_done(&db, 0.5);
        assert_matches(&db, &model, &format!("image {n} after more GC"));
        db.check().unwrap();
    }
}

/// One writer commits synced transactions; GC and flushes run beside it;
/// power-cut images taken at random moments must each open, pass `check`,
/// and hold the state after some prefix of the transactions that includes
/// every acknowledged one.
#[test]
fn crash_images_during_gc_hold_every_acknowledged_write() {
    let seed = seed();
    let fs = FaultFs::new();
    let opts = small(Arc::new(fs.clone()), true);
    let db = Db::open(opts).unwrap();
    const KEYS: usize = 40;
    const TXNS: u64 = 8000;
    /// Transaction `seq` writes key `seq % KEYS`: deletes every 7th.
    fn op(seq: u64) -> (Vec<u8>, Option<Vec<u8>>) {
        let k = key((seq % KEYS as u64) as usize);
        let v =
            (seq % 7 != 3).then(|| value(&k, seq, if seq.is_multiple_of(3) { 20 } else { 700 }));
        (k, v)
    }
    let acked = std::sync::atomic::AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let images: Mutex<Vec<(FaultFs, u64)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        s.spawn(|| {
            for seq in 0..TXNS {
                let (k, v) = op(seq);
                db.update(|t| match v {
                    Some(v) => t.set(k, v),
                    None => t.delete(k),
                })
                .unwrap();
                acked.store(seq + 1, Ordering::Release);
            }
            stop.store(true, Ordering::Release);
        });
        s.spawn(|| {
            let mut n = 0u64;
            while !stop.load(Ordering::Acquire) {
                let _ = db.run_value_log_gc(0.3).unwrap();
                n += 1;
                if n.is_multiple_of(3) {
                    db.flush().unwrap();
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        s.spawn(|| {
            let mut rng = StdRng::seed_from_u64(seed);
            while !stop.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(rng.gen_range(2..12)));
                let floor = acked.load(Ordering::Acquire);
                let img = fs.crash();
                images.lock().unwrap().push((img, floor));
            }
        });
    });
    let collected = db.value_log_gc_stats().files_collected;
    let images = images.into_inner().unwrap();
    eprintln!("{} images, {collected} files collected", images.len());
    assert!(collected > 0, "GC never collected anything");
    assert!(!images.is_empty());
    for (n, (img, floor)) in images.into_iter().enumerate() {
        let db = Db::open(small(Arc::new(img), true))
            .unwrap_or_else(|e| panic!("image {n}: reopen failed: {e}"));
        db.check()
            .unwrap_or_else(|e| panic!("image {n}: check failed: {e}"));
        let got = dump(&db);
        // The newest transaction the image reflects: the largest seq whose
        // value is present, or, for a deleted key, inferred from the rest.
        let newest_value = got
            .iter()
            .map(|(k, v)| {
                let tail = &v[k.len() + 1..];
                let end = tail.iter().position(|&b| b == b'|').unwrap();
                std::str::from_utf8(&tail[..end])
                    .unwrap()
                    .parse::<u64>()
                    .unwrap()
            })
            .max();
        // Find a prefix length `p >= floor` reproducing `got` exactly.
        let lo = floor.max(newest_value.map_or(0, |s| s + 1));
        let mut state = Model::new();
        for seq in 0..lo {
            let (k, v) = op(seq);
            match v {
                Some(v) => state.insert(k, v),
                None => state.remove(&k),
            };
        }
        let mut p = lo;
        while state != got && p < TXNS {
            let (k, v) = op(p);
            match v {
                Some(v) => state.insert(k, v),
                None => state.remove(&k),
            };
            p += 1;
        }
        assert_eq!(
            state, got,
            "image {n}: no prefix of at least {floor} transactions matches"
        );
    }
}

/// Close while GC runs: close waits for it (GC stops early with
/// `Error::Closed` or finishes), and the reopened database is intact.
#[test]
fn close_during_gc() {
    let fs = Arc::new(MemFs::new());
    let opts = small(fs.clone(), false);
    let db = Db::open(opts.clone()).unwrap();
    let mut model = Model::new();
    for round in 0..4u64 {
        for chunk in (0..600).collect::<Vec<_>>().chunks(50) {
            let mut txn = db.begin_write();
            for &i in chunk {
                if round > 0 && i % 3 == round as usize % 3 {
                    continue;
                }
                let k = key(i);
                let v = value(&k, round, 300);
                txn.set(k.clone(), v.clone()).unwrap();
                model.insert(k, v);
            }
            txn.commit().unwrap();
        }
    }
    db.compact().unwrap();
    std::thread::scope(|s| {
        let gc = s.spawn(|| loop {
            match db.run_value_log_gc(0.3) {
                Ok(GcOutcome::NothingToDo) => return,
                Ok(_) => {}
                Err(Error::Closed) => return,
                Err(e) => panic!("{e}"),
            }
        });
        std::thread::sleep(Duration::from_millis(1));
        db.close().unwrap();
        gc.join().unwrap();
    });
    drop(db);
    let db = Db::open(opts).unwrap();
    assert_matches(&db, &model, "after close during GC");
    db.check().unwrap();
}
