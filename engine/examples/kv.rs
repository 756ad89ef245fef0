//! A small tour of the engine: open a database, write in a transaction,
//! bulk-load, read, iterate, and print the tree's shape.
//!
//! `cargo run --release -p sett-engine --example kv -- [DIR]`

use sett_engine::{Db, Entry, IterOptions, Options};
use std::time::{Duration, Instant};

fn main() -> sett_engine::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "sett-example-data".to_string());
    let db = Db::open(Options::new(&dir))?;
    println!("opened {dir}");

    db.update(|txn| {
        txn.set(b"greeting".to_vec(), b"hello".to_vec())?;
        txn.set_entry(
            Entry::new(b"session".to_vec(), b"short-lived".to_vec())
                .with_ttl(Duration::from_secs(60)),
        )
    })?;

    let n = 200_000u32;
    let start = Instant::now();
    let mut batch = db.write_batch();
    for i in 0..n {
        batch.set(format!("user/{i:08}").into_bytes(), vec![b'x'; 100])?;
    }
    batch.flush()?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "loaded {n} keys in {secs:.2}s ({:.0} keys/s)",
        f64::from(n) / secs
    );

    println!(
        "greeting = {:?}",
        db.get(b"greeting")?.map(String::from_utf8)
    );
    let txn = db.begin_read();
    let mut it = txn.iter(IterOptions {
        prefix: b"user/".to_vec(),
        ..IterOptions::default()
    });
    it.seek(b"user/00100000")?;
    let mut shown = 0;
    while it.valid() && shown < 3 {
        println!("  {}", String::from_utf8_lossy(it.item().key()));
        shown += 1;
        it.next()?;
    }
    drop(it);
    drop(txn);

    db.flush()?;
    let s = db.stats();
    println!(
        "tables per level: {:?}, value log bytes: {}",
        s.tables_per_level, s.vlog_bytes
    );
    let report = db.check()?;
    println!(
        "integrity check: {} tables, {} entries, all checksums good",
        report.tables, report.entries
    );
    db.close()
}
