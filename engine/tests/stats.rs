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
