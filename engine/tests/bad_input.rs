//! Bad input and bad bytes: invalid keys and values, misuse of
//! transactions and handles, size limits, the directory lock, key-only
//! iteration staying out of the value log, and damaged files, which must
//! give `Error::Corruption` (or, for a torn tail of the newest value-log
//! file, recovery of a prefix) and never a panic.

use sett_engine::fs::{FaultFs, Fs};
use sett_engine::{Db, Entry, Error, IterOptions, Options};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Counts panics on the engine's background threads (named `sett-*`); a
/// panic on a test thread fails its test anyway.
fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("sett-"))
            {
                PANICS.fetch_add(1, Ordering::SeqCst);
            }
            default(info);
        }));
    });
}

fn assert_no_panics() {
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "the engine panicked");
}

fn small(opts: Options) -> Options {
    Options {
        sync_writes: false,
        memtable_size: 16 << 10,
        value_threshold: 64,
        vlog_file_size: 64 << 10,
        block_size: 512,
        table_size: 16 << 10,
        base_level_size: 64 << 10,
        max_levels: 4,
        ..opts
    }
}

fn mem_db() -> Db {
    Db::open(small(Options::in_memory())).unwrap()
}

#[test]
fn empty_key_is_rejected() {
    let db = mem_db();
    let mut txn = db.begin_write();
    assert!(matches!(
        txn.set(Vec::new(), b"v".to_vec()),
        Err(Error::EmptyKey)
    ));
    assert!(matches!(txn.delete(Vec::new()), Err(Error::EmptyKey)));
    assert!(matches!(
        txn.set_entry(Entry::new(Vec::new(), Vec::new())),
        Err(Error::EmptyKey)
    ));
    assert!(matches!(txn.get(b""), Err(Error::EmptyKey)));
    assert_eq!(txn.pending_len(), 0);
    txn.commit().unwrap();
    let mut batch = db.write_batch();
    assert!(matches!(
        batch.set(Vec::new(), b"v".to_vec()),
        Err(Error::EmptyKey)
    ));
    batch.flush().unwrap();
    assert!(matches!(db.get(b""), Err(Error::EmptyKey)));
}

#[test]
fn oversize_key_and_value_are_rejected() {
    let db = Db::open(Options {
        max_key_size: 100,
        max_value_size: 1000,
        ..small(Options::in_memory())
    })
    .unwrap();
    let mut txn = db.begin_write();
    let err = txn.set(vec![b'k'; 101], b"v".to_vec()).unwrap_err();
    assert!(
        matches!(err, Error::KeyTooLarge { len: 101, max: 100 }),
        "{err}"
    );
    let err = txn.delete(vec![b'k'; 101]).unwrap_err();
    assert!(
        matches!(err, Error::KeyTooLarge { len: 101, max: 100 }),
        "{err}"
    );
    let err = txn.set(b"k".to_vec(), vec![0; 1001]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ValueTooLarge {
                len: 1001,
                max: 1000
            }
        ),
        "{err}"
    );
    // Exactly at the limits is fine.
    txn.set(vec![b'k'; 100], vec![1; 1000]).unwrap();
    txn.commit().unwrap();
    assert_eq!(db.get(&[b'k'; 100]).unwrap(), Some(vec![1; 1000]));
}

#[test]
fn writes_in_a_read_only_txn_are_rejected() {
    let db = mem_db();
    let mut txn = db.begin_read();
    assert!(matches!(
        txn.set(b"k".to_vec(), b"v".to_vec()),
        Err(Error::ReadOnlyTxn)
    ));
    assert!(matches!(txn.delete(b"k".to_vec()), Err(Error::ReadOnlyTxn)));
    assert!(matches!(
        txn.set_entry(Entry::new(b"k".to_vec(), b"v".to_vec())),
        Err(Error::ReadOnlyTxn)
    ));
    // Committing a read-only transaction is a no-op.
    txn.commit().unwrap();
    assert!(db.get(b"k").unwrap().is_none());
}

#[test]
fn use_after_close_fails_with_closed() {
    let db = mem_db();
    db.update(|t| t.set(b"k".to_vec(), b"v".to_vec())).unwrap();
    let mut early = db.begin_write();
    early.set(b"e".to_vec(), b"v".to_vec()).unwrap();
    let clone = db.clone();
    db.close().unwrap();
    db.close().unwrap(); // idempotent
    assert!(matches!(db.get(b"k"), Err(Error::Closed)));
    assert!(matches!(clone.get(b"k"), Err(Error::Closed)));
    assert!(matches!(db.flush(), Err(Error::Closed)));
    assert!(matches!(db.compact(), Err(Error::Closed)));
    assert!(matches!(db.wait_for_compactions(), Err(Error::Closed)));
    assert!(matches!(db.check(), Err(Error::Closed)));
    assert!(matches!(
        db.update(|t| t.set(b"x".to_vec(), b"v".to_vec())),
        Err(Error::Closed)
    ));
    assert!(matches!(db.view(|t| t.get(b"k")), Err(Error::Closed)));
    let mut batch = db.write_batch();
    let r = batch
        .set(b"x".to_vec(), b"v".to_vec())
        .and_then(|()| batch.flush());
    assert!(matches!(r, Err(Error::Closed)), "{r:?}");
    // A transaction begun before the close cannot commit after it.
    assert!(matches!(early.commit(), Err(Error::Closed)));
    // Iterating a snapshot of a closed database must not panic.
    let txn = db.begin_read();
    let mut it = txn.iter(IterOptions::default());
    let _ = it.rewind();
    while it.valid() {
        if it.next().is_err() {
            break;
        }
    }
}

/// `commit` and `discard` take the transaction by value, so "use after
/// commit" cannot be written; what remains is a transaction dropped while
/// its writes are pending: they vanish.
#[test]
fn dropped_and_discarded_txns_leave_nothing() {
    let db = mem_db();
    let mut t = db.begin_write();
    t.set(b"a".to_vec(), b"1".to_vec()).unwrap();
    drop(t);
    let mut t = db.begin_write();
    t.set(b"b".to_vec(), b"1".to_vec()).unwrap();
    t.discard();
    assert!(db.get(b"a").unwrap().is_none());
    assert!(db.get(b"b").unwrap().is_none());
}

#[test]
fn second_open_of_a_directory_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small(Options::new(dir.path()));
    let db = Db::open(opts.clone()).unwrap();
    db.update(|t| t.set(b"k".to_vec(), b"v".to_vec())).unwrap();
    match Db::open(opts.clone()) {
        Err(Error::Locked(p)) => assert_eq!(p, dir.path()),
        other => panic!("second open: {other:?}"),
    }
    // Dropping the last handle releases the lock...
    let clone = db.clone();
    drop(db);
    assert!(matches!(Db::open(opts.clone()), Err(Error::Locked(_))));
    drop(clone);
    let db = Db::open(opts.clone()).unwrap();
    assert_eq!(db.get(b"k").unwrap(), Some(b"v".to_vec()));
    // ...and so does `close`, even while a clone still lives.
    let clone = db.clone();
    db.close().unwrap();
    let db = Db::open(opts.clone()).unwrap();
    assert!(matches!(clone.get(b"k"), Err(Error::Closed)));
    assert_eq!(db.get(b"k").unwrap(), Some(b"v".to_vec()));
    drop(clone);
    db.close().unwrap();
}

#[test]
fn too_big_transactions_are_rejected() {
    let db = Db::open(Options {
        max_txn_entries: 10,
        max_txn_bytes: 4096,
        ..small(Options::in_memory())
    })
    .unwrap();
    let mut txn = db.begin_write();
    for i in 0..10 {
        txn.set(format!("k{i}").into_bytes(), b"v".to_vec())
            .unwrap();
    }
    let err = txn.set(b"k10".to_vec(), b"v".to_vec()).unwrap_err();
    assert!(matches!(err, Error::TxnTooBig { entries: 11, .. }), "{err}");
    // Overwriting a pending key does not add an entry.
    txn.set(b"k3".to_vec(), b"w".to_vec()).unwrap();
    // The transaction is still usable and commits what it holds.
    txn.commit().unwrap();
    assert_eq!(db.get(b"k3").unwrap(), Some(b"w".to_vec()));
    assert!(db.get(b"k10").unwrap().is_none());

    let mut txn = db.begin_write();
    txn.set(b"a".to_vec(), vec![0; 3000]).unwrap();
    let err = txn.set(b"b".to_vec(), vec![0; 2000]).unwrap_err();
    assert!(matches!(err, Error::TxnTooBig { entries: 2, .. }), "{err}");
    txn.commit().unwrap();
    assert!(db.get(b"b").unwrap().is_none());

    // A write batch splits its writes into transactions that fit.
    let mut batch = db.write_batch();
    for i in 0..100 {
        batch
            .set(format!("batch{i:03}").into_bytes(), vec![7; 100])
            .unwrap();
    }
    batch.flush().unwrap();
    for i in 0..100 {
        assert_eq!(
            db.get(format!("batch{i:03}").as_bytes()).unwrap(),
            Some(vec![7; 100])
        );
    }
}

#[test]
fn keys_only_iteration_does_not_read_the_value_log() {
    let db = mem_db();
    let n = 200;
    for chunk in 0..4 {
        db.update(|t| {
            for i in (chunk * n / 4)..((chunk + 1) * n / 4) {
                t.set(format!("k{i:04}").into_bytes(), vec![i as u8; 500])?;
            }
            Ok(())
        })
        .unwrap();
        if chunk < 3 {
            db.flush().unwrap(); // in tables and in the memtable
        }
    }
    let txn = db.begin_read();
    for reverse in [false, true] {
        let before = db.stats().vlog_reads;
        let mut it = txn.iter(IterOptions {
            keys_only: true,
            reverse,
            ..IterOptions::default()
        });
        it.rewind().unwrap();
        let mut count = 0;
        while it.valid() {
            count += 1;
            it.next().unwrap();
        }
        assert_eq!(count, n);
        assert_eq!(
            db.stats().vlog_reads,
            before,
            "keys-only iteration read values"
        );
        // Asking for a value anyway reads it.
        it.seek(b"k0100").unwrap();
        assert_eq!(it.item().value().unwrap(), vec![100u8; 500]);
        assert_eq!(db.stats().vlog_reads, before + 1);
    }
    let before = db.stats().vlog_reads;
    assert_eq!(db.get(b"k0007").unwrap(), Some(vec![7u8; 500]));
    assert_eq!(db.stats().vlog_reads, before + 1);
}

// ---- damaged files -------------------------------------------------------

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn files_with_suffix(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    v.sort();
    v
}

fn flip_byte(path: &Path, offset: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

fn test_value(i: usize) -> Vec<u8> {
    let len = if i.is_multiple_of(3) { 300 } else { 20 };
    format!("value-{i:05}|").bytes().cycle().take(len).collect()
}

/// A closed on-disk database of `n` keys, all in tables.
fn build_closed_db(dir: &Path, n: usize) -> Options {
    let opts = small(Options::new(dir));
    let db = Db::open(opts.clone()).unwrap();
    for chunk in 0..n / 50 {
        db.update(|t| {
            for i in chunk * 50..(chunk + 1) * 50 {
                t.set(format!("key{i:05}").into_bytes(), test_value(i))?;
            }
            Ok(())
        })
        .unwrap();
    }
    db.compact().unwrap();
    db.close().unwrap();
    opts
}

/// Opens a damaged database and reads everything; every outcome must be
/// right data or `Corruption`. Returns whether corruption was reported.
fn probe_damaged(opts: &Options, n: usize) -> bool {
    let db = match Db::open(opts.clone()) {
        Ok(db) => db,
        Err(e) => {
            assert!(
                e.is_corruption(),
                "open failed with a non-corruption error: {e}"
            );
            return true;
        }
    };
    let mut reported = false;
    for i in 0..n {
        match db.get(format!("key{i:05}").as_bytes()) {
            Ok(v) => assert_eq!(
                v,
                Some(test_value(i)),
                "key{i:05}: wrong data instead of an error"
            ),
            Err(e) => {
                assert!(
                    e.is_corruption(),
                    "read failed with a non-corruption error: {e}"
                );
                reported = true;
            }
        }
    }
    match db.check() {
        Ok(_) => {}
        Err(e) => {
            assert!(
                e.is_corruption(),
                "check failed with a non-corruption error: {e}"
            );
            reported = true;
        }
    }
    let _ = db.close();
    reported
}

#[test]
fn damaged_tables_are_reported_as_corruption() {
    count_panics();
    let n = 600;
    let clean = tempfile::tempdir().unwrap();
    build_closed_db(clean.path(), n);
    let tables = files_with_suffix(clean.path(), ".sst");
    assert!(!tables.is_empty());
    let biggest = tables
        .iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let name = biggest.file_name().unwrap();
    let len = std::fs::metadata(biggest).unwrap().len() as usize;
    let mut offsets: Vec<usize> = (0..10).map(|i| i * len / 10 + 3).collect();
    offsets.extend([len - 1, len - 9, len - 40, len - 70]);
    for off in offsets {
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("db");
        copy_dir(clean.path(), &dir);
        flip_byte(&dir.join(name), off);
        let opts = small(Options::new(&dir));
        assert!(
            probe_damaged(&opts, n),
            "flipped byte {off} of {len} in a table went unnoticed"
        );
    }
    assert_no_panics();
}

#[test]
fn damaged_value_log_values_are_reported_as_corruption() {
    count_panics();
    let n = 300;
    let clean = tempfile::tempdir().unwrap();
    build_closed_db(clean.path(), n);
    let logs = files_with_suffix(clean.path(), ".vlog");
    // Damage the value of key 150 (a large one) wherever it lives.
    let needle = format!("value-{:05}|value", 150).into_bytes();
    let (log, at) = logs
        .iter()
        .find_map(|p| {
            let bytes = std::fs::read(p).unwrap();
            let at = bytes
                .windows(needle.len())
                .position(|w| w == needle.as_slice())?;
            Some((p.file_name().unwrap().to_owned(), at))
        })
        .expect("value of key150 in some value-log file");
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("db");
    copy_dir(clean.path(), &dir);
    flip_byte(&dir.join(&log), at + 40);
    let db = Db::open(small(Options::new(&dir))).unwrap();
    let err = db.get(b"key00150").unwrap_err();
    assert!(err.is_corruption(), "{err}");
    assert!(db.check().unwrap_err().is_corruption());
    // Everything else is still readable.
    for i in (0..n).filter(|&i| i != 150) {
        assert_eq!(
            db.get(format!("key{i:05}").as_bytes()).unwrap(),
            Some(test_value(i))
        );
    }
    db.close().unwrap();

    // A value-log file cut short: pointers past its end are corruption.
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("db");
    copy_dir(clean.path(), &dir);
    let path = dir.join(&log);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..at]).unwrap();
    match Db::open(small(Options::new(&dir))) {
        Err(e) => assert!(e.is_corruption(), "{e}"),
        Ok(_) => panic!("a value-log file shorter than the replay point opened"),
    }
    assert_no_panics();
}

// ---- the unflushed tail of the value log, after a power cut -------------

const FDIR: &str = "/db";

fn fault_opts(fs: &FaultFs) -> Options {
    Options {
        fs: Some(Arc::new(fs.clone())),
        sync_writes: true,
        memtable_size: 1 << 20,
        value_threshold: 64,
        ..Options::new(FDIR)
    }
}

/// A power-cut image holding `n` synced, unflushed commits of one key each.
fn unflushed_image(n: usize) -> FaultFs {
    let fs = FaultFs::new();
    let db = Db::open(fault_opts(&fs)).unwrap();
    for i in 0..n {
        db.update(|t| t.set(format!("key{i:05}").into_bytes(), test_value(i)))
            .unwrap();
    }
    let img = fs.crash();
    drop(db);
    img
}

fn newest_vlog(fs: &FaultFs) -> PathBuf {
    let mut logs: Vec<String> = fs
        .list(Path::new(FDIR))
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".vlog"))
        .collect();
    logs.sort();
    Path::new(FDIR).join(logs.last().expect("a value-log file"))
}

fn rewrite(fs: &FaultFs, path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = (*fs.read_all(path).unwrap()).as_ref().to_vec();
    f(&mut bytes);
    let file = fs.create(path).unwrap();
    file.append(&bytes).unwrap();
    file.sync().unwrap();
    fs.sync_dir(path.parent().unwrap()).unwrap();
}

/// Keys present, in order.
fn present(db: &Db, n: usize) -> Vec<usize> {
    (0..n)
        .filter(
            |&i| match db.get(format!("key{i:05}").as_bytes()).unwrap() {
                Some(v) => {
                    assert_eq!(v, test_value(i));
                    true
                }
                None => false,
            },
        )
        .collect()
}

#[test]
fn torn_value_log_tail_recovers_a_prefix() {
    count_panics();
    // The last commit (key 21) holds a 300-byte value.
    let n = 22;
    // Cut off 1..100 bytes (the last record is longer), or zeros where
    // its end never reached the disk: a torn append, so the last commit
    // is lost, no other. (A flipped bit or garbage in a whole last record
    // is corruption: `damaged_last_value_log_record_is_corruption`.)
    type Damage = Box<dyn Fn(&mut Vec<u8>)>;
    let damages: Vec<(&str, Damage)> = vec![
        ("cut 1", Box::new(|b: &mut Vec<u8>| b.truncate(b.len() - 1))),
        ("cut 7", Box::new(|b: &mut Vec<u8>| b.truncate(b.len() - 7))),
        (
            "cut 30",
            Box::new(|b: &mut Vec<u8>| b.truncate(b.len() - 30)),
        ),
        (
            "cut 100",
            Box::new(|b: &mut Vec<u8>| b.truncate(b.len() - 100)),
        ),
        (
            "zeros after",
            Box::new(|b: &mut Vec<u8>| {
                b.truncate(b.len() - 10);
                b.extend_from_slice(&[0; 25]);
            }),
        ),
    ];
    for (what, damage) in &damages {
        let img = unflushed_image(n);
        let log = newest_vlog(&img);
        rewrite(&img, &log, damage);
        let db = Db::open(fault_opts(&img)).unwrap_or_else(|e| panic!("{what}: open failed: {e}"));
        let want: Vec<usize> = (0..n - 1).collect();
        assert_eq!(present(&db, n), want, "{what}");
        db.check().unwrap();
        // The recovered log takes new writes and recovers again.
        db.update(|t| t.set(b"after".to_vec(), b"a".to_vec()))
            .unwrap();
        let again = img.crash();
        drop(db);
        let db = Db::open(fault_opts(&again)).unwrap();
        assert_eq!(present(&db, n), want, "{what}: second recovery");
        assert_eq!(db.get(b"after").unwrap(), Some(b"a".to_vec()));
        db.check().unwrap();
    }
    // Undamaged, everything is there.
    let img = unflushed_image(n);
    let db = Db::open(fault_opts(&img)).unwrap();
    assert_eq!(present(&db, n), (0..n).collect::<Vec<_>>());
    drop(db);
    assert_no_panics();
}

/// The last record of the newest log file was written whole and synced
/// (the commit was acknowledged): a flipped bit or garbage in it is
/// corruption, not a torn tail to cut.
#[test]
fn damaged_last_value_log_record_is_corruption() {
    count_panics();
    let n = 22;
    type Damage = Box<dyn Fn(&mut Vec<u8>)>;
    let damages: Vec<(&str, Damage)> = vec![
        (
            "flip last-5",
            Box::new(|b: &mut Vec<u8>| {
                let i = b.len() - 5;
                b[i] ^= 1;
            }),
        ),
        (
            "garbage after",
            Box::new(|b: &mut Vec<u8>| {
                b.truncate(b.len() - 10);
                b.extend_from_slice(&[0xab; 25]);
            }),
        ),
    ];
    for (what, damage) in &damages {
        let img = unflushed_image(n);
        let log = newest_vlog(&img);
        rewrite(&img, &log, damage);
        match Db::open(fault_opts(&img)) {
            Err(e) => assert!(e.is_corruption(), "{what}: {e}"),
            Ok(_) => panic!("{what}: open cut an acknowledged commit"),
        }
    }
}

#[test]
fn damage_before_the_value_log_tail_is_corruption() {
    count_panics();
    let n = 20;
    let img = unflushed_image(n);
    let log = newest_vlog(&img);
    // Damage the value of key 5: later records are intact, so this is not a
    // torn tail and must not be cut away silently.
    let needle = format!("value-{:05}|", 5).into_bytes();
    rewrite(&img, &log, |b| {
        let at = b
            .windows(needle.len())
            .position(|w| w == needle.as_slice())
            .unwrap();
        b[at + 3] ^= 1;
    });
    match Db::open(fault_opts(&img)) {
        Err(e) => assert!(e.is_corruption(), "{e}"),
        Ok(_) => panic!("damage in the middle of the value log was not reported"),
    }
    assert_no_panics();
}
