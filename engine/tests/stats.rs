//! `Db::stats` counts what happened.

use sett_engine::{Db, Options};

#[test]
fn counters_follow_the_work_done() {
    let mut o = Options::in_memory();
    o.block_cache_size = 1 << 20;
    // The block cache holds decompressed blocks only.
    o.compression = sett_engine::Compression::Zstd(1);
    let db = Db::open(o).unwrap();
    let s0 = db.stats();
    assert_eq!((s0.commits, s0.gets, s0.flushes), (0, 0, 0));

    for i in 0..10u32 {
        db.update(|t| t.set(i.to_be_bytes().to_vec(), b"value".to_vec()))
            .unwrap();
    }
    let s1 = db.stats();
    assert_eq!(s1.commits, 10);
    assert_eq!(s1.entries_written, 10);
    assert_eq!(s1.bytes_written, 10 * (4 + 5));
    assert!(s1.commit_groups >= 1 && s1.commit_groups <= 10);

    db.flush().unwrap();
    let s2 = db.stats();
    assert_eq!(s2.flushes, 1);
    assert_eq!(s2.tables_per_level[0], 1);

    // Reads from the table go through the block cache: a miss, then hits.
    for _ in 0..3 {
        assert_eq!(
            db.get(&3u32.to_be_bytes()).unwrap(),
            Some(b"value".to_vec())
        );
    }
    let s3 = db.stats();
    assert_eq!(s3.gets, 3);
    assert!(s3.cache_misses >= 1, "{s3:?}");
    assert!(s3.cache_hits >= 2, "{s3:?}");
    assert!(s3.cache_bytes > 0);

    db.compact().unwrap();
    assert!(db.stats().compactions >= 1);
}

#[test]
fn table_indexes_stay_within_their_cache_budget() {
    let budget = 16 << 10;
    let mut o = Options::in_memory();
    o.memtable_size = 64 << 10;
    o.table_size = 32 << 10;
    o.block_size = 256;
    o.index_cache_size = budget;
    let db = Db::open(o).unwrap();
    let mut wb = db.write_batch();
    for i in 0..20_000u32 {
        wb.set(format!("key{i:08}").into_bytes(), vec![b'v'; 40])
            .unwrap();
    }
    wb.flush().unwrap();
    db.compact().unwrap();
    let tables: usize = db.stats().tables_per_level.iter().sum();
    assert!(tables > 10, "want many tables, got {tables}");
    // Every key is still found although most indexes are evicted.
    for i in (0..20_000u32).step_by(7) {
        assert_eq!(
            db.get(format!("key{i:08}").as_bytes()).unwrap(),
            Some(vec![b'v'; 40])
        );
    }
    let s = db.stats();
    assert!(s.index_cache_bytes > 0);
    assert!(
        s.index_cache_bytes <= budget as u64,
        "{} > {budget}",
        s.index_cache_bytes
    );
    db.check().unwrap();
}
