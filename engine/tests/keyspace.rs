//! Named keyspaces: isolation from each other and from the root, atomic
//! commits across keyspaces (a conflict aborts the writes in all of them),
//! iteration inside one keyspace, the registry across reopen, and drops.

use sett_engine::fs::MemFs;
use sett_engine::{Db, Error, IterOptions, Options, RESERVED_PREFIX};
use std::sync::Arc;

fn mem_opts() -> Options {
    Options {
        fs: Some(Arc::new(MemFs::new())),
        memtable_size: 16 << 10,
        ..Options::in_memory()
    }
}

fn scan(db: &Db, ks: &sett_engine::Keyspace, opts: IterOptions) -> Vec<(Vec<u8>, Vec<u8>)> {
    let txn = db.begin_read();
    let mut it = ks.iter(&txn, opts);
    let mut out = Vec::new();
    it.rewind().unwrap();
    while it.valid() {
        out.push((it.item().key().to_vec(), it.item().value().unwrap()));
        it.next().unwrap();
    }
    out
}

fn kv(k: &str, v: &str) -> (Vec<u8>, Vec<u8>) {
    (k.as_bytes().to_vec(), v.as_bytes().to_vec())
}

#[test]
fn keyspaces_are_isolated() {
    let db = Db::open(mem_opts()).unwrap();
    let a = db.keyspace("a").unwrap();
    let b = db.keyspace("b").unwrap();
    assert_ne!(a.id(), b.id());
    assert_eq!(db.keyspace("a").unwrap(), a);
    db.update(|txn| {
        a.set(txn, b"k".to_vec(), b"in-a".to_vec())?;
        b.set(txn, b"k".to_vec(), b"in-b".to_vec())?;
        txn.set(b"k".to_vec(), b"in-root".to_vec())
    })
    .unwrap();
    let txn = db.begin_read();
    assert_eq!(
        a.get(&txn, b"k").unwrap().unwrap().value().unwrap(),
        b"in-a"
    );
    assert_eq!(a.get(&txn, b"k").unwrap().unwrap().key(), b"k");
    assert_eq!(
        b.get(&txn, b"k").unwrap().unwrap().value().unwrap(),
        b"in-b"
    );
    assert_eq!(db.get(b"k").unwrap().unwrap(), b"in-root");
    assert!(a.get(&txn, b"other").unwrap().is_none());
    drop(txn);

    // Deleting in one keyspace leaves the others alone.
    db.update(|txn| a.delete(txn, b"k")).unwrap();
    let txn = db.begin_read();
    assert!(a.get(&txn, b"k").unwrap().is_none());
    assert!(b.get(&txn, b"k").unwrap().is_some());
    drop(txn);
    assert_eq!(scan(&db, &b, IterOptions::default()), vec![kv("k", "in-b")]);
    assert!(scan(&db, &a, IterOptions::default()).is_empty());

    // A root scan bounded below the reserved prefix sees only root keys.
    let txn = db.begin_read();
    let mut it = txn.iter(IterOptions {
        upper_bound: Some(RESERVED_PREFIX.to_vec()),
        ..IterOptions::default()
    });
    it.rewind().unwrap();
    let mut root = Vec::new();
    while it.valid() {
        root.push(it.item().key().to_vec());
        it.next().unwrap();
    }
    assert_eq!(root, vec![b"k".to_vec()]);
    assert!(matches!(a.get(&txn, b""), Err(Error::EmptyKey)));
}

#[test]
fn conflict_aborts_writes_in_every_keyspace() {
    let db = Db::open(mem_opts()).unwrap();
    let a = db.keyspace("a").unwrap();
    let b = db.keyspace("b").unwrap();
    db.update(|txn| a.set(txn, b"x".to_vec(), b"0".to_vec()))
        .unwrap();

    let mut t1 = db.begin_write();
    assert!(a.get(&t1, b"x").unwrap().is_some());
    a.set(&mut t1, b"y".to_vec(), b"t1".to_vec()).unwrap();
    b.set(&mut t1, b"z".to_vec(), b"t1".to_vec()).unwrap();

    // t2 changes what t1 read.
    db.update(|txn| a.set(txn, b"x".to_vec(), b"1".to_vec()))
        .unwrap();
    assert!(matches!(t1.commit(), Err(Error::Conflict)));

    let txn = db.begin_read();
    assert!(a.get(&txn, b"y").unwrap().is_none());
    assert!(b.get(&txn, b"z").unwrap().is_none());
    drop(txn);

    // Without the conflict, both land together.
    let mut t3 = db.begin_write();
    assert!(a.get(&t3, b"x").unwrap().is_some());
    a.set(&mut t3, b"y".to_vec(), b"t3".to_vec()).unwrap();
    b.set(&mut t3, b"z".to_vec(), b"t3".to_vec()).unwrap();
    t3.commit().unwrap();
    let txn = db.begin_read();
    assert_eq!(a.get(&txn, b"y").unwrap().unwrap().value().unwrap(), b"t3");
    assert_eq!(b.get(&txn, b"z").unwrap().unwrap().value().unwrap(), b"t3");
}

#[test]
fn iteration_stays_inside_the_keyspace() {
    let db = Db::open(mem_opts()).unwrap();
    let a = db.keyspace("a").unwrap();
    let b = db.keyspace("b").unwrap();
    db.update(|txn| {
        for k in ["a1", "a2", "b1", "b2", "c1"] {
            a.set(txn, k.as_bytes().to_vec(), format!("A{k}").into_bytes())?;
            b.set(txn, k.as_bytes().to_vec(), format!("B{k}").into_bytes())?;
        }
        txn.set(b"a0".to_vec(), b"root".to_vec())
    })
    .unwrap();
    let keys = |opts| -> Vec<String> {
        scan(&db, &a, opts)
            .into_iter()
            .map(|(k, v)| {
                assert_eq!(v, [b"A".as_slice(), &k].concat());
                String::from_utf8(k).unwrap()
            })
            .collect()
    };
    assert_eq!(keys(IterOptions::default()), ["a1", "a2", "b1", "b2", "c1"]);
    assert_eq!(
        keys(IterOptions {
            reverse: true,
            ..IterOptions::default()
        }),
        ["c1", "b2", "b1", "a2", "a1"]
    );
    assert_eq!(
        keys(IterOptions {
            prefix: b"b".to_vec(),
            ..IterOptions::default()
        }),
        ["b1", "b2"]
    );
    assert_eq!(
        keys(IterOptions {
            lower_bound: Some(b"a2".to_vec()),
            upper_bound: Some(b"c".to_vec()),
            ..IterOptions::default()
        }),
        ["a2", "b1", "b2"]
    );

    // Seek in both directions, and pending writes are seen.
    let mut txn = db.begin_write();
    a.set(&mut txn, b"b15".to_vec(), b"Ab15".to_vec()).unwrap();
    let mut it = a.iter(&txn, IterOptions::default());
    it.seek(b"b1").unwrap();
    assert_eq!(it.item().key(), b"b1");
    it.next().unwrap();
    assert_eq!(it.item().key(), b"b15");
    drop(it);
    let mut it = a.iter(
        &txn,
        IterOptions {
            reverse: true,
            ..IterOptions::default()
        },
    );
    it.seek(b"b0").unwrap();
    assert_eq!(it.item().key(), b"a2");
    it.seek(b"zzz").unwrap();
    assert_eq!(it.item().key(), b"c1");
}

#[test]
fn registry_survives_reopen_and_drops_remove_everything() {
    let opts = mem_opts();
    let db = Db::open(opts.clone()).unwrap();
    let a = db.keyspace("alpha").unwrap();
    let b = db.keyspace("beta").unwrap();
    db.update(|txn| {
        for i in 0..500u32 {
            a.set(txn, i.to_be_bytes(), vec![1u8; 40])?;
            b.set(txn, i.to_be_bytes(), vec![2u8; 40])?;
        }
        Ok(())
    })
    .unwrap();
    db.close().unwrap();
    drop(db);

    let db = Db::open(opts.clone()).unwrap();
    assert_eq!(db.list_keyspaces().unwrap(), ["alpha", "beta"]);
    let a2 = db.keyspace("alpha").unwrap();
    assert_eq!(a2, a);
    assert_eq!(scan(&db, &a2, IterOptions::default()).len(), 500);

    assert!(db.drop_keyspace("alpha").unwrap());
    assert!(!db.drop_keyspace("alpha").unwrap());
    assert_eq!(db.list_keyspaces().unwrap(), ["beta"]);
    // The old id's data is gone; a new keyspace of the name gets a new id.
    assert!(scan(&db, &a, IterOptions::default()).is_empty());
    let a3 = db.keyspace("alpha").unwrap();
    assert!(a3.id() > b.id());
    assert!(scan(&db, &a3, IterOptions::default()).is_empty());
    assert_eq!(scan(&db, &b, IterOptions::default()).len(), 500);
    db.close().unwrap();
    drop(db);

    let db = Db::open(opts).unwrap();
    assert_eq!(db.list_keyspaces().unwrap(), ["alpha", "beta"]);
    assert_eq!(db.keyspace("alpha").unwrap().id(), a3.id());
    assert!(matches!(db.keyspace(""), Err(Error::InvalidArgument(_))));
}

#[test]
fn concurrent_creation_agrees_on_one_id() {
    let db = Db::open(mem_opts()).unwrap();
    let ids: Vec<Vec<u32>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    (0..20)
                        .map(|i| db.keyspace(&format!("ks{i}")).unwrap().id())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for other in &ids[1..] {
        assert_eq!(other, &ids[0]);
    }
    let mut distinct = ids[0].clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 20);
    assert_eq!(db.list_keyspaces().unwrap().len(), 20);
}
