//! Whole-table tests: build, open, look up, iterate, corrupt.

use super::*;
use crate::format::{key_hash, key_version, key_with_version, user_key, InternalKey};
use crate::fs::FileBytes;
use crate::options::Compression;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

type Model = BTreeMap<InternalKey, Vec<u8>>;

fn opts(block_size: usize, compression: Compression) -> TableOptions {
    TableOptions {
        block_size,
        bloom_bits_per_key: 10,
        compression,
    }
}

fn build(model: &Model, o: TableOptions) -> Vec<u8> {
    let mut b = TableBuilder::new(o);
    for (k, v) in model {
        b.add(&k.0, v);
    }
    b.finish()
}

fn open(bytes: Vec<u8>, cache: Option<Arc<BlockCache>>) -> crate::Result<Arc<Table>> {
    let file: FileBytes = Arc::new(bytes);
    Table::open(7, PathBuf::from("test.sst"), file, cache).map(Arc::new)
}

/// `users` user keys with 1..=3 versions each; values vary in size.
fn model(users: usize) -> Model {
    let mut m = Model::new();
    for u in 0..users {
        let user = format!("user{:06}", u * 7);
        for v in 0..(u % 3 + 1) as u64 {
            let version = 100 + v * 10 + (u as u64 % 5);
            let value = format!("value-{u}-{version}-")
                .repeat(u % 4 + 1)
                .into_bytes();
            m.insert(
                InternalKey::new(key_with_version(user.as_bytes(), version)),
                value,
            );
        }
    }
    m
}

/// Reads the whole table through a fresh iterator.
fn collect(t: &Arc<Table>, reverse: bool) -> crate::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut it = TableIter::new(t.clone(), reverse);
    it.rewind()?;
    let mut out = Vec::new();
    while it.valid() {
        out.push((it.key().to_vec(), it.value().to_vec()));
        it.next()?;
    }
    Ok(out)
}

fn expect_forward(m: &Model, target: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    m.range(InternalKey::new(target.to_vec())..)
        .next()
        .map(|(k, v)| (k.0.clone(), v.clone()))
}

fn expect_reverse(m: &Model, target: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    m.range(..=InternalKey::new(target.to_vec()))
        .next_back()
        .map(|(k, v)| (k.0.clone(), v.clone()))
}

fn iter_at(t: &Arc<Table>, reverse: bool, target: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut it = TableIter::new(t.clone(), reverse);
    it.seek(target).unwrap();
    it.valid().then(|| (it.key().to_vec(), it.value().to_vec()))
}

/// Seek targets: every key, a newer and an older version of every user key,
/// keys between user keys, before the first and after the last.
fn targets(m: &Model) -> Vec<Vec<u8>> {
    let mut ts = vec![
        key_with_version(b"", u64::MAX),
        key_with_version(b"a", 0),
        key_with_version(b"zzz", 5),
    ];
    for k in m.keys() {
        let (u, v) = (user_key(&k.0), key_version(&k.0));
        ts.push(k.0.clone());
        ts.push(key_with_version(u, v + 1));
        ts.push(key_with_version(u, v.saturating_sub(1)));
        ts.push(key_with_version(u, 0));
        ts.push(key_with_version(u, u64::MAX));
        let mut longer = u.to_vec();
        longer.push(0);
        ts.push(key_with_version(&longer, 50));
    }
    ts
}

#[test]
fn thread_safety_markers() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Table>();
    send_sync::<BlockCache>();
    send::<TableIter>();
    send::<TableBuilder>();
}

#[test]
fn round_trip_all_configurations() {
    let m = model(400);
    let all: Vec<_> = m.iter().map(|(k, v)| (k.0.clone(), v.clone())).collect();
    for compression in [Compression::None, Compression::Zstd(3)] {
        for block_size in [256, 4096] {
            let bytes = build(&m, opts(block_size, compression));
            for cache in [None, Some(Arc::new(BlockCache::new(1 << 20)))] {
                let t = open(bytes.clone(), cache.clone()).unwrap();
                assert_eq!(t.size(), bytes.len() as u64);
                assert_eq!(t.key_count(), m.len() as u64);
                assert_eq!(t.smallest(), &m.keys().next().unwrap().0[..]);
                assert_eq!(t.largest(), &m.keys().next_back().unwrap().0[..]);
                assert_eq!(
                    t.max_version(),
                    m.keys().map(|k| key_version(&k.0)).max().unwrap()
                );
                assert_eq!((t.id(), t.path()), (7, std::path::Path::new("test.sst")));
                assert!(t.block_count() > 1);
                t.verify().unwrap();
                assert_eq!(collect(&t, false).unwrap(), all);
                let mut rev = collect(&t, true).unwrap();
                rev.reverse();
                assert_eq!(rev, all);
                for k in m.keys() {
                    assert!(t.may_contain(key_hash(user_key(&k.0))));
                }
                for target in targets(&m) {
                    let fwd = expect_forward(&m, &target);
                    assert_eq!(t.seek_first(&target).unwrap(), fwd);
                    assert_eq!(iter_at(&t, false, &target), fwd);
                    assert_eq!(iter_at(&t, true, &target), expect_reverse(&m, &target));
                }
                if let Some(c) = cache {
                    assert!(c.used_bytes() > 0);
                }
            }
        }
    }
}

#[test]
fn zstd_shrinks_compressible_tables() {
    let m = model(2000);
    let plain = build(&m, opts(4096, Compression::None));
    let packed = build(&m, opts(4096, Compression::Zstd(3)));
    assert!(
        packed.len() < plain.len() * 2 / 3,
        "{} vs {}",
        packed.len(),
        plain.len()
    );
}

#[test]
fn seek_then_step_both_directions() {
    let m = model(300);
    let keys: Vec<_> = m.keys().map(|k| k.0.clone()).collect();
    let t = open(build(&m, opts(256, Compression::None)), None).unwrap();
    for (i, k) in keys.iter().enumerate().step_by(7) {
        let mut fwd = TableIter::new(t.clone(), false);
        fwd.seek(k).unwrap();
        for expected in &keys[i..(i + 40).min(keys.len())] {
            assert_eq!(fwd.key(), &expected[..]);
            fwd.next().unwrap();
        }
        let mut rev = TableIter::new(t.clone(), true);
        rev.seek(k).unwrap();
        for expected in keys[i.saturating_sub(40)..=i].iter().rev() {
            assert_eq!(rev.key(), &expected[..]);
            rev.next().unwrap();
        }
        // Re-seeking a used iterator works.
        rev.seek(&keys[0]).unwrap();
        assert_eq!(rev.key(), &keys[0][..]);
        rev.next().unwrap();
        assert!(!rev.valid());
    }
    let mut it = TableIter::new(t.clone(), false);
    it.seek(keys.last().unwrap()).unwrap();
    it.next().unwrap();
    assert!(!it.valid());
}

#[test]
fn empty_table() {
    let bytes = TableBuilder::new(opts(4096, Compression::None)).finish();
    let t = open(bytes, None).unwrap();
    assert_eq!((t.key_count(), t.max_version(), t.block_count()), (0, 0, 0));
    assert!(t.smallest().is_empty() && t.largest().is_empty());
    assert_eq!(t.seek_first(&key_with_version(b"a", 1)).unwrap(), None);
    assert!(t.may_contain(key_hash(b"a")));
    t.verify().unwrap();
    for reverse in [false, true] {
        assert!(collect(&t, reverse).unwrap().is_empty());
        assert_eq!(iter_at(&t, reverse, &key_with_version(b"a", 1)), None);
    }
}

#[test]
fn large_values_and_keys() {
    let mut m = Model::new();
    for i in 0..20u32 {
        let user = vec![b'k'; 300 + i as usize];
        m.insert(
            InternalKey::new(key_with_version(&user, 1)),
            vec![i as u8; 100_000 * (i as usize % 3)],
        );
    }
    for compression in [Compression::None, Compression::Zstd(1)] {
        let t = open(build(&m, opts(4096, compression)), None).unwrap();
        t.verify().unwrap();
        let all: Vec<_> = m.iter().map(|(k, v)| (k.0.clone(), v.clone())).collect();
        assert_eq!(collect(&t, false).unwrap(), all);
    }
}

#[test]
fn bloom_false_positive_rate() {
    let m = model(5000);
    let t = open(build(&m, opts(4096, Compression::None)), None).unwrap();
    let probes = 50_000;
    let fp = (0..probes)
        .filter(|i| t.may_contain(key_hash(format!("absent{i}").as_bytes())))
        .count();
    let rate = fp as f64 / probes as f64;
    assert!(rate < 0.02, "false-positive rate {rate} at 10 bits/key");
    let no_filter = TableOptions {
        bloom_bits_per_key: 0,
        ..opts(4096, Compression::None)
    };
    let t = open(build(&m, no_filter), None).unwrap();
    assert!(t.may_contain(key_hash(b"absent")));
    t.verify().unwrap();
}

/// Everything a reader may do with a table, failing on the first error.
fn read_everything(t: &Arc<Table>, m: &Model) -> crate::Result<()> {
    t.verify()?;
    collect(t, false)?;
    collect(t, true)?;
    for k in m.keys() {
        t.seek_first(&k.0)?;
    }
    Ok(())
}

#[test]
fn every_byte_flip_is_detected() {
    let m = model(24);
    for compression in [Compression::None, Compression::Zstd(3)] {
        let good = build(&m, opts(200, compression));
        assert!(open(good.clone(), None).unwrap().block_count() >= 3);
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x41;
            let cache = (i % 2 == 0).then(|| Arc::new(BlockCache::new(1 << 20)));
            match open(bad, cache) {
                Err(e) => assert!(e.is_corruption(), "flip at {i}: {e}"),
                Ok(t) => {
                    // Only data blocks are read lazily: verify and full
                    // scans in both directions must all notice.
                    let v = t.verify().unwrap_err();
                    assert!(v.is_corruption(), "flip at {i}: {v}");
                    assert!(
                        collect(&t, false).unwrap_err().is_corruption(),
                        "flip at {i}"
                    );
                    assert!(
                        collect(&t, true).unwrap_err().is_corruption(),
                        "flip at {i}"
                    );
                    for k in m.keys().step_by(3) {
                        // Must not panic; may or may not touch the bad block.
                        let _ = t.seek_first(&k.0);
                        let _ = iter_at_checked(&t, &k.0);
                    }
                }
            }
        }
    }
}

fn iter_at_checked(t: &Arc<Table>, target: &[u8]) -> crate::Result<()> {
    for reverse in [false, true] {
        let mut it = TableIter::new(t.clone(), reverse);
        it.seek(target)?;
        for _ in 0..20 {
            if !it.valid() {
                break;
            }
            it.next()?;
        }
    }
    Ok(())
}

#[test]
fn truncated_and_garbage_files_are_errors() {
    let m = model(30);
    let good = build(&m, opts(200, Compression::None));
    for len in 0..good.len() {
        let e = open(good[..len].to_vec(), None).unwrap_err();
        assert!(e.is_corruption(), "truncated to {len}: {e}");
    }
    for seed in 0..200u64 {
        let len = (seed * 37 % 300) as usize;
        let junk: Vec<u8> = (0..len as u64)
            .map(|i| (i.wrapping_mul(seed | 1).wrapping_mul(0x9E37_79B9) >> 7) as u8)
            .collect();
        let mut with_footer = junk.clone();
        with_footer.extend_from_slice(&good[good.len() - 64..]);
        for bytes in [junk, with_footer] {
            if let Ok(t) = open(bytes, None) {
                let _ = read_everything(&t, &m);
            }
        }
    }
}

#[test]
fn real_file_through_mmap() {
    use crate::fs::{Fs, PosixFs};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("000001.sst");
    let m = model(500);
    std::fs::write(&path, build(&m, opts(1024, Compression::None))).unwrap();
    let file = PosixFs.read_all(&path).unwrap();
    let t = Arc::new(Table::open(1, path.clone(), file, None).unwrap());
    read_everything(&t, &m).unwrap();
    assert_eq!(t.path(), path);
}

#[test]
fn shared_across_threads() {
    let m = model(2000);
    let cache = Arc::new(BlockCache::new(64 << 10));
    let t = open(build(&m, opts(1024, Compression::Zstd(3))), Some(cache)).unwrap();
    let keys: Vec<_> = m.keys().map(|k| k.0.clone()).collect();
    std::thread::scope(|s| {
        for n in 0..2 {
            let (t, keys) = (t.clone(), &keys);
            s.spawn(move || {
                for k in keys.iter().skip(n).step_by(3) {
                    assert_eq!(t.seek_first(k).unwrap().unwrap().0, *k);
                }
                let all = collect(&t, n == 1).unwrap();
                assert_eq!(all.len(), keys.len());
            });
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn matches_btreemap(
        entries in prop::collection::btree_map(
            (prop::collection::vec(0u8..4, 0..5), 0u64..6),
            prop::collection::vec(any::<u8>(), 0..40),
            0..200,
        ),
        seeks in prop::collection::vec((prop::collection::vec(0u8..4, 0..6), 0u64..7, any::<bool>(), 0usize..8), 0..40),
        block_size in 64usize..600,
        zstd in any::<bool>(),
    ) {
        let m: Model = entries
            .into_iter()
            .map(|((u, v), val)| (InternalKey::new(key_with_version(&u, v)), val))
            .collect();
        let compression = if zstd { Compression::Zstd(1) } else { Compression::None };
        let t = open(build(&m, opts(block_size, compression)), None).unwrap();
        t.verify().unwrap();
        let all: Vec<_> = m.iter().map(|(k, v)| (k.0.clone(), v.clone())).collect();
        prop_assert_eq!(&collect(&t, false).unwrap(), &all);
        for (u, v, reverse, steps) in seeks {
            let target = key_with_version(&u, v);
            prop_assert_eq!(t.seek_first(&target).unwrap(), expect_forward(&m, &target));
            let mut it = TableIter::new(t.clone(), reverse);
            it.seek(&target).unwrap();
            let expected: Vec<_> = if reverse {
                m.range(..=InternalKey::new(target.clone())).rev().take(steps).map(|(k, _)| k.0.clone()).collect()
            } else {
                m.range(InternalKey::new(target.clone())..).take(steps).map(|(k, _)| k.0.clone()).collect()
            };
            for k in &expected {
                prop_assert!(it.valid());
                prop_assert_eq!(it.key(), &k[..]);
                prop_assert_eq!(it.value(), &m[&InternalKey::new(k.clone())][..]);
                it.next().unwrap();
            }
            if expected.len() < steps {
                prop_assert!(!it.valid());
            }
        }
    }
}
