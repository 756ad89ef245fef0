//! Buckets against a model: random nested bucket operations, puts,
//! deletes, sequences and cursor walks (with direction switches) run on
//! the engine and on an in-memory tree, compared after every step and
//! across reopens; plus the error cases and stats.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sett_engine::fs::MemFs;
use sett_engine::{Bucket, BucketStats, Db, Error, Options, Txn};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Names that stress the escaping: zero bytes, 0xff, prefixes of others.
const NAMES: [&[u8]; 8] = [
    b"a", b"ab", b"a\0", b"\0", b"\0\xff", b"b", b"b\xff", b"\x01",
];

#[derive(Debug, Clone, Default, PartialEq)]
struct Node {
    keys: BTreeMap<Vec<u8>, Vec<u8>>,
    subs: BTreeMap<Vec<u8>, Node>,
    seq: u64,
}

impl Node {
    fn at(&self, path: &[Vec<u8>]) -> &Node {
        path.iter().fold(self, |n, p| &n.subs[p])
    }

    fn at_mut(&mut self, path: &[Vec<u8>]) -> &mut Node {
        path.iter().fold(self, |n, p| n.subs.get_mut(p).unwrap())
    }

    /// Entries in name order; `None` marks a bucket.
    fn entries(&self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let mut all: BTreeMap<Vec<u8>, Option<Vec<u8>>> = self
            .keys
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect();
        for k in self.subs.keys() {
            assert!(all.insert(k.clone(), None).is_none(), "model clash");
        }
        all.into_iter().collect()
    }

    /// Every bucket path below (and including) this node.
    fn paths(&self, here: Vec<Vec<u8>>, out: &mut Vec<Vec<Vec<u8>>>) {
        out.push(here.clone());
        for (name, sub) in &self.subs {
            let mut p = here.clone();
            p.push(name.clone());
            sub.paths(p, out);
        }
    }

    fn stats(&self) -> BucketStats {
        let mut s = BucketStats {
            key_count: self.keys.len() as u64,
            own_key_count: self.keys.len() as u64,
            bucket_count: self.subs.len() as u64,
            depth: 1,
            key_bytes: self.keys.keys().map(|k| k.len() as u64).sum(),
            value_bytes: self.keys.values().map(|v| v.len() as u64).sum(),
        };
        for sub in self.subs.values() {
            let c = sub.stats();
            s.key_count += c.key_count;
            s.bucket_count += c.bucket_count;
            s.depth = s.depth.max(c.depth + 1);
            s.key_bytes += c.key_bytes;
            s.value_bytes += c.value_bytes;
        }
        s
    }
}

fn open_path(txn: &Txn, path: &[Vec<u8>]) -> Bucket {
    let mut b = Bucket::root();
    for p in path {
        b = b
            .bucket(txn, p)
            .unwrap()
            .expect("bucket on the model's path");
    }
    b
}

fn opts(fs: &MemFs) -> Options {
    Options {
        fs: Some(Arc::new(fs.clone())),
        memtable_size: 8 << 10,
        value_threshold: 32,
        vlog_file_size: 64 << 10,
        table_size: 8 << 10,
        base_level_size: 32 << 10,
        ..Options::in_memory()
    }
}

/// Walks a cursor with random moves and checks each against the model.
fn check_cursor(rng: &mut StdRng, txn: &Txn, b: &Bucket, model: &Node) {
    let want = model.entries();
    let mut c = b.cursor(txn);
    let mut pos: Option<usize> = None;
    for _ in 0..40 {
        let (got, expect) = match rng.gen_range(0..6) {
            0 => {
                pos = (!want.is_empty()).then_some(0);
                (c.first().unwrap(), pos)
            }
            1 => {
                pos = want.len().checked_sub(1);
                (c.last().unwrap(), pos)
            }
            2 => {
                let name = NAMES[rng.gen_range(0..NAMES.len())];
                pos = want.iter().position(|(k, _)| k.as_slice() >= name);
                (c.seek(name).unwrap(), pos)
            }
            3 | 4 => {
                pos = pos.and_then(|p| (p + 1 < want.len()).then_some(p + 1));
                (c.next().unwrap(), pos)
            }
            _ => {
                pos = pos.and_then(|p| p.checked_sub(1));
                (c.prev().unwrap(), pos)
            }
        };
        assert_eq!(got, expect.map(|p| want[p].clone()));
    }
    // Whole walks both ways, and for_each.
    let mut fwd = Vec::new();
    let mut e = c.first().unwrap();
    while let Some(x) = e {
        fwd.push(x);
        e = c.next().unwrap();
    }
    assert_eq!(fwd, want);
    let mut back = Vec::new();
    let mut e = c.last().unwrap();
    while let Some(x) = e {
        back.push(x);
        e = c.prev().unwrap();
    }
    back.reverse();
    assert_eq!(back, want);
    let mut each = Vec::new();
    b.for_each(txn, |k, v| {
        each.push((k.to_vec(), v.map(<[u8]>::to_vec)));
        Ok(())
    })
    .unwrap();
    assert_eq!(each, want);
}

fn run(seed: u64, steps: usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let fs = MemFs::new();
    let mut db = Db::open(opts(&fs)).unwrap();
    let mut model = Node::default();
    let mut serial = 0u64;
    for step in 0..steps {
        if rng.gen_ratio(1, 40) {
            db.close().unwrap();
            drop(db);
            db = Db::open(opts(&fs)).unwrap();
        }
        let before = model.clone();
        let mut txn = db.begin_write();
        for _ in 0..rng.gen_range(1..6) {
            let mut paths = Vec::new();
            model.paths(Vec::new(), &mut paths);
            let path = paths[rng.gen_range(0..paths.len())].clone();
            let b = open_path(&txn, &path);
            let node = model.at_mut(&path);
            let name = NAMES[rng.gen_range(0..NAMES.len())].to_vec();
            let is_key = node.keys.contains_key(&name);
            let is_bucket = node.subs.contains_key(&name);
            match rng.gen_range(0..10) {
                0 | 1 => match b.create_bucket(&mut txn, &name) {
                    Ok(_) => {
                        assert!(!is_key && !is_bucket);
                        node.subs.insert(name, Node::default());
                    }
                    Err(Error::BucketExists(_)) => assert!(is_bucket),
                    Err(Error::IncompatibleValue(_)) => assert!(is_key),
                    Err(e) => panic!("create_bucket: {e}"),
                },
                2..=4 => {
                    serial += 1;
                    let value = format!("v{serial}-")
                        .repeat(rng.gen_range(0..12))
                        .into_bytes();
                    match b.put(&mut txn, &name, value.clone()) {
                        Ok(()) => {
                            assert!(!path.is_empty() && !is_bucket);
                            node.keys.insert(name, value);
                        }
                        Err(Error::InvalidArgument(_)) => assert!(path.is_empty()),
                        Err(Error::IncompatibleValue(_)) => assert!(is_bucket),
                        Err(e) => panic!("put: {e}"),
                    }
                }
                5 => match b.delete(&mut txn, &name) {
                    Ok(()) => {
                        assert!(!is_bucket);
                        node.keys.remove(&name);
                    }
                    Err(Error::IncompatibleValue(_)) => assert!(is_bucket),
                    Err(e) => panic!("delete: {e}"),
                },
                6 if rng.gen_ratio(1, 2) => match b.delete_bucket(&mut txn, &name) {
                    Ok(()) => {
                        assert!(is_bucket);
                        node.subs.remove(&name);
                    }
                    Err(Error::BucketNotFound(_)) => assert!(!is_bucket && !is_key),
                    Err(Error::IncompatibleValue(_)) => assert!(is_key),
                    Err(e) => panic!("delete_bucket: {e}"),
                },
                7 => {
                    node.seq += 1;
                    assert_eq!(b.next_sequence(&mut txn).unwrap(), node.seq);
                }
                8 => {
                    assert_eq!(b.get(&txn, &name).unwrap(), node.keys.get(&name).cloned());
                    assert_eq!(
                        b.bucket(&txn, &name).unwrap().is_some(),
                        is_bucket,
                        "bucket({name:?})"
                    );
                }
                _ => {
                    check_cursor(&mut rng, &txn, &b, node);
                    assert_eq!(b.stats(&txn).unwrap(), node.stats());
                }
            }
        }
        if rng.gen_ratio(1, 8) {
            txn.discard();
            model = before;
        } else {
            txn.commit().unwrap();
        }
        if step % 16 == 0 {
            // Every bucket, from a fresh snapshot.
            let txn = db.begin_read();
            let mut paths = Vec::new();
            model.paths(Vec::new(), &mut paths);
            for p in paths {
                let b = open_path(&txn, &p);
                let node = model.at(&p);
                check_cursor(&mut rng, &txn, &b, node);
                assert_eq!(b.sequence(&txn).unwrap(), node.seq);
            }
            assert_eq!(Bucket::root().stats(&txn).unwrap(), model.stats());
        }
    }
    db.check().unwrap();
}

#[test]
fn buckets_match_the_model() {
    for seed in 0..6 {
        run(seed, 300);
    }
}

#[test]
fn names_clash_and_stale_handles_fail_clearly() {
    let db = Db::open(Options::in_memory()).unwrap();
    let root = Bucket::root();
    db.update(|txn| {
        let b = root.create_bucket(txn, b"b")?;
        b.put(txn, b"k", b"v".to_vec())?;
        b.create_bucket(txn, b"sub")?;
        assert!(matches!(
            b.create_bucket(txn, b"k"),
            Err(Error::IncompatibleValue(_))
        ));
        assert!(matches!(
            b.create_bucket_if_not_exists(txn, b"k"),
            Err(Error::IncompatibleValue(_))
        ));
        assert!(matches!(
            b.put(txn, b"sub", b"x".to_vec()),
            Err(Error::IncompatibleValue(_))
        ));
        assert!(matches!(
            b.delete(txn, b"sub"),
            Err(Error::IncompatibleValue(_))
        ));
        assert!(matches!(
            b.delete_bucket(txn, b"k"),
            Err(Error::IncompatibleValue(_))
        ));
        assert!(matches!(
            b.delete_bucket(txn, b"nope"),
            Err(Error::BucketNotFound(_))
        ));
        assert!(matches!(
            b.create_bucket(txn, b"sub"),
            Err(Error::BucketExists(_))
        ));
        assert_eq!(b.create_bucket_if_not_exists(txn, b"sub")?.name(), b"sub");
        assert!(matches!(
            root.put(txn, b"top", b"x".to_vec()),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            b.put(txn, b"", b"x".to_vec()),
            Err(Error::EmptyKey)
        ));
        assert!(matches!(
            b.create_bucket(txn, b""),
            Err(Error::InvalidArgument(_))
        ));
        assert_eq!(b.get(txn, b"sub")?, None);
        Ok(())
    })
    .unwrap();

    // A handle to a deleted bucket refuses writes; a recreated bucket of
    // the same name starts empty.
    let (b, sub) = db
        .view(|txn| {
            let b = root.bucket(txn, b"b")?.unwrap();
            let sub = b.bucket(txn, b"sub")?.unwrap();
            Ok((b, sub))
        })
        .unwrap();
    db.update(|txn| {
        sub.put(txn, b"deep", b"1".to_vec())?;
        root.delete_bucket(txn, b"b")
    })
    .unwrap();
    db.update(|txn| {
        assert!(matches!(
            b.put(txn, b"k", b"v".to_vec()),
            Err(Error::BucketNotFound(_))
        ));
        assert!(matches!(
            sub.put(txn, b"k", b"v".to_vec()),
            Err(Error::BucketNotFound(_))
        ));
        assert!(root.bucket(txn, b"b")?.is_none());
        let b2 = root.create_bucket(txn, b"b")?;
        assert_eq!(b2.get(txn, b"k")?, None);
        assert!(b2.bucket(txn, b"sub")?.is_none());
        assert_eq!(b2.stats(txn)?.key_count, 0);
        Ok(())
    })
    .unwrap();
}

#[test]
fn delete_bucket_conflicts_with_a_concurrent_writer() {
    let db = Db::open(Options::in_memory()).unwrap();
    let b = db
        .update(|txn| Bucket::root().create_bucket(txn, b"b"))
        .unwrap();
    let mut writer = db.begin_write();
    b.put(&mut writer, b"k", b"v".to_vec()).unwrap();
    db.update(|txn| Bucket::root().delete_bucket(txn, b"b"))
        .unwrap();
    assert!(matches!(writer.commit(), Err(Error::Conflict)));
    let txn = db.begin_read();
    assert_eq!(Bucket::root().stats(&txn).unwrap().key_count, 0);
}

#[test]
fn sequence_and_contents_persist_across_reopen() {
    let fs = MemFs::new();
    let db = Db::open(opts(&fs)).unwrap();
    db.update(|txn| {
        let users = Bucket::root().create_bucket(txn, b"users")?;
        let admins = users.create_bucket(txn, b"admins")?;
        for _ in 0..5 {
            let id = users.next_sequence(txn)?;
            users.put(txn, id.to_be_bytes(), format!("user{id}").into_bytes())?;
        }
        admins.put(txn, b"root", b"1".to_vec())?;
        assert_eq!(admins.next_sequence(txn)?, 1);
        Ok(())
    })
    .unwrap();
    db.close().unwrap();
    drop(db);

    let db = Db::open(opts(&fs)).unwrap();
    db.update(|txn| {
        let users = Bucket::root().bucket(txn, b"users")?.unwrap();
        assert_eq!(users.sequence(txn)?, 5);
        assert_eq!(users.next_sequence(txn)?, 6);
        let admins = users.bucket(txn, b"admins")?.unwrap();
        assert_eq!(admins.depth(), 2);
        assert_eq!(admins.next_sequence(txn)?, 2);
        assert_eq!(
            users.stats(txn)?,
            BucketStats {
                key_count: 6,
                own_key_count: 5,
                bucket_count: 1,
                depth: 2,
                key_bytes: 5 * 8 + 4,
                value_bytes: 5 * 5 + 1,
            }
        );
        let mut c = users.cursor(txn);
        assert_eq!(c.first()?.unwrap().0, 1u64.to_be_bytes());
        assert_eq!(c.last()?.unwrap(), (b"admins".to_vec(), None));
        assert_eq!(c.prev()?.unwrap().0, 5u64.to_be_bytes());
        assert_eq!(c.next()?.unwrap().0, b"admins");
        assert_eq!(c.next()?, None);
        Ok(())
    })
    .unwrap();
}
