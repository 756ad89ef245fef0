//! `Db::compact` leaves only what some snapshot can still see.

use sett_engine::{Db, IterOptions, Options};

fn all_versions(db: &Db) -> Vec<(Vec<u8>, u64, bool)> {
    let txn = db.begin_read();
    let mut it = txn.iter(IterOptions {
        all_versions: true,
        ..IterOptions::default()
    });
    it.rewind().unwrap();
    let mut out = Vec::new();
    while it.valid() {
        let i = it.item();
        out.push((i.key().to_vec(), i.version(), i.is_deleted_or_expired()));
        it.next().unwrap();
    }
    out
}

#[test]
fn compact_drops_shadowed_versions_and_tombstones() {
    let db = Db::open(Options::in_memory()).unwrap();
    db.update(|t| t.set(b"k".to_vec(), b"1".to_vec())).unwrap();
    db.update(|t| t.set(b"k".to_vec(), b"2".to_vec())).unwrap();
    db.update(|t| t.set(b"gone".to_vec(), b"x".to_vec()))
        .unwrap();
    db.update(|t| t.delete(b"gone".to_vec())).unwrap();
    assert_eq!(all_versions(&db).len(), 4);

    db.compact().unwrap();
    let left = all_versions(&db);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].0, b"k");
    assert_eq!(db.get(b"k").unwrap(), Some(b"2".to_vec()));
    assert_eq!(db.get(b"gone").unwrap(), None);
    db.check().unwrap();
}

#[test]
fn compact_keeps_versions_an_open_snapshot_needs() {
    let db = Db::open(Options::in_memory()).unwrap();
    db.update(|t| t.set(b"k".to_vec(), b"1".to_vec())).unwrap();
    let snap = db.begin_read();
    db.update(|t| t.set(b"k".to_vec(), b"2".to_vec())).unwrap();
    db.compact().unwrap();
    assert_eq!(snap.get(b"k").unwrap().unwrap().value().unwrap(), b"1");
    drop(snap);
    db.compact().unwrap();
    assert_eq!(all_versions(&db).len(), 1);
}
