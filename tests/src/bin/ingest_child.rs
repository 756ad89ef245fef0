//! Child process of the kill -9 stream-writer test: ingests rounds of
//! sorted entries with the stream writer into the database in `<dir>`,
//! until it is killed. Before a round it prints `START <round>`, after its
//! `finish` returned `DONE <round>`. Round `r` writes the keys
//! `ingest/<trial>/<r>/<i>` for `i < ROUND_KEYS`, split over two streams.
//!
//! Usage: `ingest_child <dir> <trial>`

use sett_engine::{Db, KvBatch, KvEntry};
use sett_tests::crash::{emit, ingest_key, options, INGEST_ROUND_KEYS};
use std::path::PathBuf;
use std::process::exit;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: ingest_child <dir> <trial>");
        exit(2);
    }
    let dir = PathBuf::from(&args[1]);
    let trial: u64 = args[2].parse().expect("trial number");
    let db = Db::open(options(&dir)).expect("open");
    emit("OPEN\n");
    for round in 0u64.. {
        let version = db.stats().visible_ts + 1;
        emit(&format!("START {round}\n"));
        let mut w = db.stream_writer().expect("stream writer");
        let half = INGEST_ROUND_KEYS / 2;
        for (stream_id, range) in [(0u32, 0..half), (1, half..INGEST_ROUND_KEYS)] {
            let entries = range
                .map(|i| KvEntry {
                    key: ingest_key(trial, round, i),
                    value: format!("v{trial}/{round}/{i}").into_bytes(),
                    version,
                    ..KvEntry::default()
                })
                .collect();
            w.write(KvBatch { stream_id, entries }).expect("write");
        }
        w.finish().expect("finish");
        emit(&format!("DONE {round}\n"));
    }
}
