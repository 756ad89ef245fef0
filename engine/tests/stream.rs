//! Stream export and the stream writer: exact round trips, incremental
//! exports, prefixes, bad input, and crashes during an ingest.

mod common;

use common::dump;
use sett_engine::fs::FaultFs;
use sett_engine::{Db, Entry, Error, IterOptions, KvBatch, KvEntry, Options, StreamOptions};
use std::sync::Arc;
use std::time::Duration;

fn small_tables() -> Options {
    let mut o = Options::in_memory();
    o.memtable_size = 4 << 20;
    o.table_size = 1 << 20;
    o.base_level_size = 4 << 20;
    o
}

fn copy_all(src: &Db, dst: &Db, opts: StreamOptions) -> u64 {
    let mut w = dst.stream_writer().unwrap();
    src.stream(opts).run(|b| w.write(b)).unwrap();
    w.finish().unwrap()
}

#[test]
fn million_keys_round_trip_exactly() {
    let src = Db::open(small_tables()).unwrap();
    let n = 1_000_000u32;
    let mut wb = src.write_batch();
    for i in 0..n {
        let key = format!("key{:08}", (u64::from(i) * 7919) % u64::from(n)).into_bytes();
        let mut e = Entry::new(key, i.to_le_bytes().to_vec()).with_user_meta((i % 7) as u8);
        if i % 10 == 0 {
            e = e.with_ttl(Duration::from_secs(3600));
        }
        if i % 1000 == 0 {
            e.value = vec![i as u8; 2000]; // some values live in the value log
        }
        wb.set_entry(e).unwrap();
    }
    wb.flush().unwrap();
    // Second versions and deletions on top.
    src.update(|t| {
        for i in 0..500u32 {
            t.set(format!("key{:08}", i).into_bytes(), b"second".to_vec())?;
            t.delete(format!("key{:08}", 500 + i).into_bytes())?;
        }
        Ok(())
    })
    .unwrap();
    src.flush().unwrap();
    src.wait_for_compactions().unwrap();
    let want = dump(&src);
    assert!(want.len() > 1_000_000);

    let dst = Db::open(Options::in_memory()).unwrap();
    let copied = copy_all(
        &src,
        &dst,
        StreamOptions {
            all_versions: true,
            workers: 3,
            ..StreamOptions::default()
        },
    );
    assert_eq!(copied as usize, want.len());
    assert_eq!(dump(&dst), want);
    dst.check().unwrap();
    // The copy takes new writes above the ingested versions.
    dst.update(|t| t.set(b"key00000000".to_vec(), b"third".to_vec()))
        .unwrap();
    assert_eq!(dst.get(b"key00000000").unwrap(), Some(b"third".to_vec()));
}

#[test]
fn incremental_export_applied_on_a_full_copy_equals_the_source() {
    let src = Db::open(small_tables()).unwrap();
    for i in 0..2000u32 {
        src.update(|t| t.set(format!("k{i:05}").into_bytes(), vec![1u8; 50]))
            .unwrap();
    }
    let dst = Db::open(Options::in_memory()).unwrap();
    let full = src.stream(StreamOptions::default());
    let mut w = dst.stream_writer().unwrap();
    let summary = full.run(|b| w.write(b)).unwrap();
    w.finish().unwrap();

    for i in 0..300u32 {
        src.update(|t| {
            t.set(format!("k{:05}", i * 3).into_bytes(), vec![2u8; 50])?;
            t.delete(format!("k{:05}", i * 3 + 1).into_bytes())
        })
        .unwrap();
    }
    copy_all(
        &src,
        &dst,
        StreamOptions {
            since_ts: summary.read_ts,
            ..StreamOptions::default()
        },
    );
    let latest = |db: &Db| {
        let txn = db.begin_read();
        let mut it = txn.iter(IterOptions::default());
        it.rewind().unwrap();
        let mut out = Vec::new();
        while it.valid() {
            out.push((it.item().key().to_vec(), it.item().value().unwrap()));
            it.next().unwrap();
        }
        out
    };
    assert_eq!(latest(&dst), latest(&src));
    assert_eq!(latest(&dst).len(), 2000 - 300);
}

#[test]
fn prefix_and_choose_filter_the_export() {
    let src = Db::open(Options::in_memory()).unwrap();
    src.update(|t| {
        for p in ["a/", "b/", "c/"] {
            for i in 0..100u32 {
                t.set(format!("{p}{i:03}").into_bytes(), b"v".to_vec())?;
            }
        }
        Ok(())
    })
    .unwrap();
    let mut keys = Vec::new();
    src.stream(StreamOptions {
        prefix: b"b/".to_vec(),
        ..StreamOptions::default()
    })
    .choose(|k, _| k.ends_with(b"7"))
    .run(|b| {
        keys.extend(b.entries.into_iter().map(|e| e.key));
        Ok(())
    })
    .unwrap();
    keys.sort();
    assert_eq!(keys.len(), 10);
    assert!(keys
        .iter()
        .all(|k| k.starts_with(b"b/") && k.ends_with(b"7")));
}

#[test]
fn writer_rejects_unsorted_and_overlapping_streams() {
    let db = Db::open(Options::in_memory()).unwrap();
    let e = |k: &str, v: u64| KvEntry {
        key: k.as_bytes().to_vec(),
        value: b"x".to_vec(),
        version: v,
        ..KvEntry::default()
    };
    let mut w = db.stream_writer().unwrap();
    let bad = KvBatch {
        stream_id: 0,
        entries: vec![e("b", 1), e("a", 1)],
    };
    assert!(matches!(w.write(bad), Err(Error::InvalidArgument(_))));

    let mut w = db.stream_writer().unwrap();
    w.write(KvBatch {
        stream_id: 0,
        entries: vec![e("a", 1), e("m", 1)],
    })
    .unwrap();
    w.write(KvBatch {
        stream_id: 1,
        entries: vec![e("c", 1), e("z", 1)],
    })
    .unwrap();
    assert!(matches!(w.finish(), Err(Error::InvalidArgument(_))));
    assert_eq!(
        db.get(b"a").unwrap(),
        None,
        "a refused ingest left data behind"
    );
    db.check().unwrap();
}

#[test]
fn crash_during_ingest_leaves_the_previous_state() {
    let fs = FaultFs::new();
    let opts = || {
        let mut o = Options::new("/db");
        o.fs = Some(Arc::new(fs.clone()));
        o.table_size = 64 << 10;
        o
    };
    // The source commits at timestamp 100, above anything the target holds.
    let mut so = Options::in_memory();
    so.managed = true;
    let src = Db::open(so).unwrap();
    let mut wb = src.write_batch_at(100).unwrap();
    for i in 0..20_000u32 {
        wb.set(format!("k{i:06}").into_bytes(), vec![3u8; 40])
            .unwrap();
    }
    wb.flush().unwrap();

    let db = Db::open(opts()).unwrap();
    db.update(|t| t.set(b"before".to_vec(), b"1".to_vec()))
        .unwrap();
    let mut w = db.stream_writer().unwrap();
    let mut batches = 0;
    let mut images = Vec::new();
    src.stream(StreamOptions {
        workers: 1,
        batch_bytes: 64 << 10,
        read_ts: Some(100),
        ..StreamOptions::default()
    })
    .run(|b| {
        w.write(b)?;
        batches += 1;
        if batches % 3 == 0 {
            images.push(fs.crash());
        }
        Ok(())
    })
    .unwrap();
    assert!(!images.is_empty());
    for img in images {
        let mut o = Options::new("/db");
        o.fs = Some(Arc::new(img));
        let crashed = Db::open(o).unwrap();
        assert_eq!(crashed.get(b"before").unwrap(), Some(b"1".to_vec()));
        assert_eq!(crashed.get(b"k000000").unwrap(), None);
        crashed.check().unwrap();
    }
    w.finish().unwrap();
    assert_eq!(db.get(b"k019999").unwrap(), Some(vec![3u8; 40]));
    db.close().unwrap();
    let img = fs.crash();
    let mut o = Options::new("/db");
    o.fs = Some(Arc::new(img));
    let reopened = Db::open(o).unwrap();
    assert_eq!(reopened.get(b"k019999").unwrap(), Some(vec![3u8; 40]));
    assert_eq!(reopened.get(b"before").unwrap(), Some(b"1".to_vec()));
}
