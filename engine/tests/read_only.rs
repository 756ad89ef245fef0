//! Read-only opens: shared lock, no writes, no repairs on disk.

use sett_engine::{Db, Error, Options};
use std::time::Duration;

fn ro(dir: &std::path::Path) -> Options {
    let mut o = Options::new(dir);
    o.read_only = true;
    o
}

#[test]
fn readers_share_and_writers_are_kept_out() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(Options::new(dir.path())).unwrap();
    db.update(|t| t.set(b"a".to_vec(), b"1".to_vec())).unwrap();
    db.update(|t| t.set(b"big".to_vec(), vec![7u8; 4096]))
        .unwrap();
    // A reader cannot join a writer.
    assert!(matches!(Db::open(ro(dir.path())), Err(Error::Locked(_))));
    db.close().unwrap();
    drop(db);

    let r1 = Db::open(ro(dir.path())).unwrap();
    let r2 = Db::open(ro(dir.path())).unwrap();
    assert_eq!(r1.get(b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(r2.get(b"big").unwrap(), Some(vec![7u8; 4096]));
    r1.check().unwrap();
    // No writer while readers hold the directory.
    assert!(matches!(
        Db::open(Options::new(dir.path())),
        Err(Error::Locked(_))
    ));
    // Writes are refused.
    let mut t = r1.begin_write();
    assert!(matches!(
        t.set(b"x".to_vec(), b"y".to_vec()),
        Err(Error::ReadOnly)
    ));
    assert!(matches!(r1.flush(), Err(Error::ReadOnly)));
    r1.close().unwrap();
    r2.close().unwrap();
    drop((r1, r2, t));
    Db::open(Options::new(dir.path())).unwrap().close().unwrap();
}

#[test]
fn read_only_open_of_unflushed_data_replays_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut o = Options::new(dir.path());
        o.memtable_size = 1 << 20;
        let db = Db::open(o).unwrap();
        for i in 0..100u32 {
            db.update(|t| t.set(i.to_be_bytes().to_vec(), vec![1u8; 100]))
                .unwrap();
        }
        // Simulate a crash: no close, so the memtable is only in the log.
        std::mem::forget(db);
    }
    // The forgotten handle still holds the lock in this process; release
    // it the way a dead process would.
    let lock = dir.path().join("LOCK");
    std::fs::remove_file(&lock).unwrap();
    let before: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name(), e.metadata().unwrap().len())
        })
        .filter(|(n, _)| n != "LOCK")
        .collect();
    let r = Db::open(ro(dir.path())).unwrap();
    for i in 0..100u32 {
        assert_eq!(r.get(&i.to_be_bytes()).unwrap(), Some(vec![1u8; 100]));
    }
    r.close().unwrap();
    let after: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name(), e.metadata().unwrap().len())
        })
        .filter(|(n, _)| n != "LOCK")
        .collect();
    assert_eq!(before, after, "a read-only open changed files");
}

#[test]
fn lock_timeout_waits_for_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(Options::new(dir.path())).unwrap();
    let path = dir.path().to_path_buf();
    let waiter = std::thread::spawn(move || {
        let mut o = Options::new(&path);
        o.lock_timeout = Some(Duration::from_secs(30));
        Db::open(o).map(|d| d.close())
    });
    std::thread::sleep(Duration::from_millis(100));
    db.close().unwrap();
    waiter.join().unwrap().unwrap().unwrap();
}
