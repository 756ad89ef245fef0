//! Model-based test: random operation sequences run against the engine and
//! against a `BTreeMap`, compared after every read and after every flush,
//! compaction and reopen. Small memtables, tables and value-log files make
//! flushes, compactions and log rotations happen within a few hundred
//! operations. Also: conflicts, snapshot isolation, version history and TTL.

use proptest::prelude::*;
use proptest::test_runner::Config;
use sett_engine::fs::MemFs;
use sett_engine::{Compression, Db, Entry, Error, GcOutcome, IterOptions, Options, Txn};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Keys `a000`..`a039`, `b000`.., `c000`.., `d000`..`d039`.
const KEY_SPACE: u16 = 160;
const KEYS_PER_PREFIX: u16 = 40;
const PREFIXES: [&str; 4] = ["a", "b", "c", "d"];
/// Prefixes scans may use: whole groups, sub-ranges, one key, nothing.
const SCAN_PREFIXES: [&str; 7] = ["", "a", "b", "b00", "c02", "d039", "e"];
const VALUE_THRESHOLD: usize = 64;
/// Long enough never to expire during a test.
const LONG_TTL: Duration = Duration::from_secs(3600);

fn key(i: u16) -> Vec<u8> {
    let i = i % KEY_SPACE;
    format!(
        "{}{:03}",
        PREFIXES[usize::from(i / KEYS_PER_PREFIX)],
        i % KEYS_PER_PREFIX
    )
    .into_bytes()
}

/// A value of `len` bytes that is unique per `seq` (for `len >= 9`).
fn value(seq: u64, len: usize) -> Vec<u8> {
    format!("{seq:08x}|").bytes().cycle().take(len).collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    value: Vec<u8>,
    user_meta: u8,
    has_ttl: bool,
}

type Model = BTreeMap<Vec<u8>, Stored>;

#[derive(Debug, Clone)]
struct Scan {
    reverse: bool,
    prefix: &'static str,
    lower: Option<u16>,
    upper: Option<u16>,
    seek: Option<u16>,
    keys_only: bool,
}

#[derive(Debug, Clone)]
enum Op {
    Put {
        key: u16,
        len: usize,
        user_meta: u8,
        ttl: bool,
    },
    Delete {
        key: u16,
    },
    /// One transaction of several writes (`None` = delete), committed or
    /// discarded.
    Txn {
        writes: Vec<(u16, Option<usize>)>,
        commit: bool,
    },
    /// `count` consecutive keys through a write batch.
    Batch {
        start: u16,
        count: u16,
        len: usize,
    },
    Get {
        key: u16,
    },
    Scan(Scan),
    Flush,
    Compact,
    Reopen,
    /// Value-log GC until it finds nothing to do.
    Gc,
}

/// Value lengths well below, around, and well above the threshold.
fn value_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        2 => 0..12usize,
        2 => (VALUE_THRESHOLD - 4)..(VALUE_THRESHOLD + 4),
        1 => 100..1500usize,
    ]
}

fn scan() -> impl Strategy<Value = Scan> {
    let k = || prop::option::weighted(0.3, 0..KEY_SPACE);
    (
        any::<bool>(),
        0..SCAN_PREFIXES.len(),
        k(),
        k(),
        k(),
        prop::bool::weighted(0.3),
    )
        .prop_map(|(reverse, p, lower, upper, seek, keys_only)| Scan {
            reverse,
            prefix: SCAN_PREFIXES[p],
            lower,
            upper,
            seek,
            keys_only,
        })
}

fn op() -> impl Strategy<Value = Op> {
    let k = || 0..KEY_SPACE;
    prop_oneof![
        10 => (k(), value_len(), any::<u8>(), prop::bool::weighted(0.15))
            .prop_map(|(key, len, user_meta, ttl)| Op::Put { key, len, user_meta, ttl }),
        3 => k().prop_map(|key| Op::Delete { key }),
        3 => (
            prop::collection::vec((k(), prop::option::weighted(0.8, value_len())), 1..12),
            prop::bool::weighted(0.75),
        )
            .prop_map(|(writes, commit)| Op::Txn { writes, commit }),
        1 => (k(), 20..KEY_SPACE, value_len()).prop_map(|(start, count, len)| Op::Batch { start, count, len }),
        4 => k().prop_map(|key| Op::Get { key }),
        3 => scan().prop_map(Op::Scan),
        1 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
        1 => Just(Op::Gc),
    ]
}

/// Options small enough that every mechanism runs in a short test.
fn small(opts: Options) -> Options {
    Options {
        sync_writes: false,
        memtable_size: 16 << 10,
        value_threshold: VALUE_THRESHOLD,
        vlog_file_size: 64 << 10,
        block_size: 512,
        table_size: 8 << 10,
        base_level_size: 32 << 10,
        max_levels: 4,
        l0_compaction_trigger: 2,
        l0_slowdown_trigger: 6,
        l0_stall_trigger: 10,
        block_cache_size: 64 << 10,
        ..opts
    }
}

/// What the model says a scan returns: keys in order.
fn expected_scan(model: &Model, s: &Scan) -> Vec<Vec<u8>> {
    let lower = s.lower.map(key);
    let upper = s.upper.map(key);
    let seek = s.seek.map(key);
    let mut keys: Vec<Vec<u8>> = model
        .keys()
        .filter(|k| k.starts_with(s.prefix.as_bytes()))
        .filter(|k| lower.as_ref().is_none_or(|l| *k >= l))
        .filter(|k| upper.as_ref().is_none_or(|u| *k < u))
        .filter(|k| match &seek {
            None => true,
            Some(sk) if s.reverse => *k <= sk,
            Some(sk) => *k >= sk,
        })
        .cloned()
        .collect();
    if s.reverse {
        keys.reverse();
    }
    keys
}

/// Runs `s` in `txn` and checks it against `model`.
fn check_scan(db: &Db, txn: &Txn, model: &Model, s: &Scan) {
    let reads_before = db.stats().vlog_reads;
    let mut it = txn.iter(IterOptions {
        reverse: s.reverse,
        prefix: s.prefix.as_bytes().to_vec(),
        lower_bound: s.lower.map(key),
        upper_bound: s.upper.map(key),
        keys_only: s.keys_only,
        all_versions: false,
    });
    match s.seek {
        Some(k) => it.seek(&key(k)).unwrap(),
        None => it.rewind().unwrap(),
    }
    let mut got = Vec::new();
    while it.valid() {
        let item = it.item();
        let stored = model.get(item.key()).unwrap_or_else(|| {
            panic!(
                "scan {s:?} returned {:?}, absent from the model",
                String::from_utf8_lossy(item.key())
            )
        });
        assert!(!item.is_deleted_or_expired());
        assert_eq!(
            item.user_meta(),
            stored.user_meta,
            "user_meta of {:?}",
            item.key()
        );
        assert_eq!(
            item.expires_at() != 0,
            stored.has_ttl,
            "ttl of {:?}",
            item.key()
        );
        if !s.keys_only {
            assert_eq!(
                item.value().unwrap(),
                stored.value,
                "value of {:?}",
                item.key()
            );
        }
        got.push(item.key().to_vec());
        it.next().unwrap();
        assert!(got.len() <= model.len(), "scan does not end");
    }
    let show = |v: &[Vec<u8>]| {
        v.iter()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(show(&got), show(&expected_scan(model, s)), "scan {s:?}");
    if s.keys_only {
        assert_eq!(
            db.stats().vlog_reads,
            reads_before,
            "keys-only scan read the value log"
        );
    }
}

fn full_scan(reverse: bool) -> Scan {
    Scan {
        reverse,
        prefix: "",
        lower: None,
        upper: None,
        seek: None,
        keys_only: false,
    }
}

/// Every key, by point reads and by full scans both ways.
fn check_all(db: &Db, model: &Model) {
    let txn = db.begin_read();
    for i in 0..KEY_SPACE {
        let k = key(i);
        let got = txn.get(&k).unwrap();
        match (got, model.get(&k)) {
            (None, None) => {}
            (Some(item), Some(s)) => {
                assert_eq!(
                    item.value().unwrap(),
                    s.value,
                    "get {:?}",
                    String::from_utf8_lossy(&k)
                );
                assert_eq!(item.user_meta(), s.user_meta);
            }
            (got, want) => panic!(
                "get {:?}: engine has {:?}, model has {want:?}",
                String::from_utf8_lossy(&k),
                got.map(|i| i.value())
            ),
        }
    }
    check_scan(db, &txn, model, &full_scan(false));
    check_scan(db, &txn, model, &full_scan(true));
}

struct Harness {
    opts: Options,
    db: Option<Db>,
    model: Model,
    seq: u64,
}

impl Harness {
    fn new(opts: Options) -> Harness {
        let db = Db::open(opts.clone()).unwrap();
        Harness {
            opts,
            db: Some(db),
            model: Model::new(),
            seq: 0,
        }
    }

    fn db(&self) -> &Db {
        self.db.as_ref().expect("database open")
    }

    fn next_value(&mut self, len: usize) -> Vec<u8> {
        self.seq += 1;
        value(self.seq, len)
    }

    fn reopen(&mut self) {
        let db = self.db.take().expect("database open");
        db.close().unwrap();
        drop(db);
        self.db = Some(Db::open(self.opts.clone()).unwrap());
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Put {
                key: k,
                len,
                user_meta,
                ttl,
            } => {
                let v = self.next_value(*len);
                let mut e = Entry::new(key(*k), v.clone()).with_user_meta(*user_meta);
                if *ttl {
                    e = e.with_ttl(LONG_TTL);
                }
                self.db().update(|t| t.set_entry(e)).unwrap();
                let stored = Stored {
                    value: v,
                    user_meta: *user_meta,
                    has_ttl: *ttl,
                };
                self.model.insert(key(*k), stored);
            }
            Op::Delete { key: k } => {
                self.db().update(|t| t.delete(key(*k))).unwrap();
                self.model.remove(&key(*k));
            }
            Op::Txn { writes, commit } => self.apply_txn(writes, *commit),
            Op::Batch { start, count, len } => {
                let mut batch = self.db().write_batch();
                for i in 0..*count {
                    let k = key(start + i);
                    let v = self.next_value(*len);
                    batch.set(k.clone(), v.clone()).unwrap();
                    let stored = Stored {
                        value: v,
                        user_meta: 0,
                        has_ttl: false,
                    };
                    self.model.insert(k, stored);
                }
                batch.flush().unwrap();
            }
            Op::Get { key: k } => {
                let k = key(*k);
                let want = self.model.get(&k);
                assert_eq!(self.db().get(&k).unwrap().as_ref(), want.map(|s| &s.value));
                let item = self.db().view(|t| t.get(&k)).unwrap();
                assert_eq!(item.is_some(), want.is_some());
                if let (Some(item), Some(s)) = (item, want) {
                    assert_eq!(item.key(), k.as_slice());
                    assert_eq!(item.user_meta(), s.user_meta);
                    assert_eq!(item.expires_at() != 0, s.has_ttl);
                    assert!(item.version() > 0);
                    assert!(item.version() <= self.db().stats().visible_ts);
                }
            }
            Op::Scan(s) => {
                let txn = self.db().begin_read();
                check_scan(self.db(), &txn, &self.model, s);
            }
            Op::Flush => {
                self.db().flush().unwrap();
                assert_eq!(self.db().stats().immutable_memtables, 0);
                check_all(self.db(), &self.model);
            }
            Op::Compact => {
                self.db().compact().unwrap();
                let per_level = self.db().stats().tables_per_level;
                let (_last, upper) = per_level.split_last().unwrap();
                assert!(
                    upper.iter().all(|&n| n == 0),
                    "compact left tables above the last level: {per_level:?}"
                );
                check_all(self.db(), &self.model);
            }
            Op::Reopen => {
                self.reopen();
                check_all(self.db(), &self.model);
            }
            Op::Gc => {
                for _ in 0..64 {
                    match self.db().run_value_log_gc(0.2).unwrap() {
                        GcOutcome::Collected(_) => {}
                        GcOutcome::NothingToDo => break,
                        other => panic!("unexpected GC outcome {other:?}"),
                    }
                }
                check_all(self.db(), &self.model);
                self.db().check().unwrap();
            }
        }
    }

    fn apply_txn(&mut self, writes: &[(u16, Option<usize>)], commit: bool) {
        let mut overlay = self.model.clone();
        let mut txn = self.db().begin_write();
        for &(k, len) in writes {
            let k = key(k);
            match len {
                Some(len) => {
                    let v = self.next_value(len);
                    txn.set(k.clone(), v.clone()).unwrap();
                    let stored = Stored {
                        value: v,
                        user_meta: 0,
                        has_ttl: false,
                    };
                    overlay.insert(k, stored);
                }
                None => {
                    txn.delete(k.clone()).unwrap();
                    overlay.remove(&k);
                }
            }
        }
        // Reads inside the transaction see its own writes over the snapshot.
        for &(k, _) in writes {
            let k = key(k);
            let got = txn.get(&k).unwrap().map(|i| i.value().unwrap());
            assert_eq!(
                got.as_ref(),
                overlay.get(&k).map(|s| &s.value),
                "read-your-writes"
            );
        }
        check_scan(self.db(), &txn, &overlay, &full_scan(false));
        check_scan(self.db(), &txn, &overlay, &full_scan(true));
        // Nothing is visible outside before the commit.
        check_scan(
            self.db(),
            &self.db().begin_read(),
            &self.model,
            &full_scan(false),
        );
        if commit {
            txn.commit().unwrap();
            self.model = overlay;
        } else {
            txn.discard();
        }
    }

    fn finish(mut self) {
        check_all(self.db(), &self.model);
        self.db().check().unwrap();
        self.reopen();
        check_all(self.db(), &self.model);
        self.db().check().unwrap();
        self.db.take().unwrap().close().unwrap();
    }
}

fn run(opts: Options, ops: &[Op]) {
    let mut h = Harness::new(opts);
    for op in ops {
        h.apply(op);
    }
    h.finish();
}

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// In memory, background compaction on.
    #[test]
    fn model_in_memory(ops in prop::collection::vec(op(), 1..250)) {
        let opts = Options {
            fs: Some(Arc::new(MemFs::new())),
            ..small(Options::in_memory())
        };
        run(opts, &ops);
    }
}

proptest! {
    #![proptest_config(config(24))]

    /// Real files, compressed blocks, compaction only when asked for.
    #[test]
    fn model_on_disk(ops in prop::collection::vec(op(), 1..250)) {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options {
            compression: Compression::Zstd(1),
            background_compaction: false,
            ..small(Options::new(dir.path().join("db")))
        };
        run(opts, &ops);
    }
}

fn mem_db() -> Db {
    Db::open(small(Options::in_memory())).unwrap()
}

#[test]
fn read_write_overlap_conflicts() {
    let db = mem_db();
    db.update(|t| t.set(b"k".to_vec(), b"0".to_vec())).unwrap();
    let mut t1 = db.begin_write();
    let mut t2 = db.begin_write();
    assert_eq!(t1.get(b"k").unwrap().unwrap().value().unwrap(), b"0");
    assert_eq!(t2.get(b"k").unwrap().unwrap().value().unwrap(), b"0");
    t1.set(b"k".to_vec(), b"1".to_vec()).unwrap();
    t2.set(b"k".to_vec(), b"2".to_vec()).unwrap();
    t1.commit().unwrap();
    assert!(matches!(t2.commit(), Err(Error::Conflict)));
    assert_eq!(db.get(b"k").unwrap().unwrap(), b"1");

    // A read by iteration conflicts too.
    let mut t3 = db.begin_write();
    let mut it = t3.iter(IterOptions::default());
    it.rewind().unwrap();
    assert_eq!(it.item().key(), b"k");
    drop(it);
    t3.set(b"other".to_vec(), b"x".to_vec()).unwrap();
    db.update(|t| t.set(b"k".to_vec(), b"3".to_vec())).unwrap();
    assert!(matches!(t3.commit(), Err(Error::Conflict)));
    assert_eq!(db.get(b"other").unwrap(), None);
}

#[test]
fn blind_writes_and_disjoint_reads_do_not_conflict() {
    let db = mem_db();
    db.update(|t| {
        t.set(b"a".to_vec(), b"0".to_vec())?;
        t.set(b"b".to_vec(), b"0".to_vec())
    })
    .unwrap();
    let mut t1 = db.begin_write();
    let mut t2 = db.begin_write();
    t1.get(b"a").unwrap();
    t1.set(b"a".to_vec(), b"1".to_vec()).unwrap();
    t2.get(b"b").unwrap();
    t2.set(b"a".to_vec(), b"2".to_vec()).unwrap();
    t2.set(b"b".to_vec(), b"2".to_vec()).unwrap();
    t1.commit().unwrap();
    // t2 never read `a`, so the later writer simply wins.
    t2.commit().unwrap();
    assert_eq!(db.get(b"a").unwrap().unwrap(), b"2");
}

#[test]
fn read_snapshot_does_not_see_later_commits() {
    let db = mem_db();
    let big = vec![7u8; 300];
    db.update(|t| {
        t.set(b"k".to_vec(), b"old".to_vec())?;
        t.set(b"big".to_vec(), big.clone())
    })
    .unwrap();
    let snap = db.begin_read();
    db.update(|t| {
        t.set(b"k".to_vec(), b"new".to_vec())?;
        t.delete(b"big".to_vec())?;
        t.set(b"fresh".to_vec(), b"f".to_vec())
    })
    .unwrap();
    let check_snap = || {
        assert_eq!(snap.get(b"k").unwrap().unwrap().value().unwrap(), b"old");
        assert_eq!(snap.get(b"big").unwrap().unwrap().value().unwrap(), big);
        assert!(snap.get(b"fresh").unwrap().is_none());
        let mut it = snap.iter(IterOptions::default());
        it.rewind().unwrap();
        let mut keys = Vec::new();
        while it.valid() {
            keys.push(it.item().key().to_vec());
            it.next().unwrap();
        }
        assert_eq!(keys, vec![b"big".to_vec(), b"k".to_vec()]);
    };
    check_snap();
    db.flush().unwrap();
    check_snap();
    db.compact().unwrap();
    check_snap();
    let now = db.begin_read();
    assert!(now.read_ts() > snap.read_ts());
    assert_eq!(now.get(b"k").unwrap().unwrap().value().unwrap(), b"new");
    assert!(now.get(b"big").unwrap().is_none());
    assert!(now.get(b"fresh").unwrap().is_some());
}

/// All versions of `key` visible to `txn`, newest first:
/// (version, value, deleted or expired).
fn versions(txn: &Txn, key: &[u8]) -> Vec<(u64, Vec<u8>, bool)> {
    let mut upper = key.to_vec();
    upper.push(0);
    let mut it = txn.iter(IterOptions {
        all_versions: true,
        lower_bound: Some(key.to_vec()),
        upper_bound: Some(upper),
        ..IterOptions::default()
    });
    it.rewind().unwrap();
    let mut out = Vec::new();
    while it.valid() {
        let item = it.item();
        assert_eq!(item.key(), key);
        let deleted = item.is_deleted_or_expired();
        let v = if deleted {
            Vec::new()
        } else {
            item.value().unwrap()
        };
        out.push((item.version(), v, deleted));
        it.next().unwrap();
    }
    out
}

fn values_of(history: &[(u64, Vec<u8>, bool)]) -> Vec<(Vec<u8>, bool)> {
    history.iter().map(|(_, v, d)| (v.clone(), *d)).collect()
}

#[test]
fn all_versions_kept_while_a_snapshot_holds_them() {
    let db = mem_db();
    let big = vec![9u8; 200];
    db.update(|t| t.set(b"k".to_vec(), b"v1".to_vec())).unwrap();
    // The oldest snapshot pins v1 and everything newer.
    let old = db.begin_read();
    for step in 0..3 {
        match step {
            0 => db.update(|t| t.set(b"k".to_vec(), big.clone())).unwrap(),
            1 => db.update(|t| t.set(b"k".to_vec(), b"v3".to_vec())).unwrap(),
            _ => db.update(|t| t.delete(b"k".to_vec())).unwrap(),
        }
        // Separate tables, so that compaction really merges versions.
        db.flush().unwrap();
    }
    let expect = vec![
        (Vec::new(), true),
        (b"v3".to_vec(), false),
        (big.clone(), false),
        (b"v1".to_vec(), false),
    ];
    let history = versions(&db.begin_read(), b"k");
    assert_eq!(values_of(&history), expect);
    assert!(
        history.windows(2).all(|w| w[0].0 > w[1].0),
        "versions newest first"
    );

    // Reverse all-versions walks the same versions the other way round.
    let txn = db.begin_read();
    let mut it = txn.iter(IterOptions {
        all_versions: true,
        reverse: true,
        ..IterOptions::default()
    });
    it.rewind().unwrap();
    let mut rev = Vec::new();
    while it.valid() {
        rev.push(it.item().version());
        it.next().unwrap();
    }
    drop(it);
    drop(txn);
    let mut fwd: Vec<u64> = history.iter().map(|h| h.0).collect();
    fwd.reverse();
    assert_eq!(rev, fwd);

    db.compact().unwrap();
    assert_eq!(
        versions(&db.begin_read(), b"k"),
        history,
        "compaction dropped versions a snapshot needs"
    );
    assert_eq!(old.get(b"k").unwrap().unwrap().value().unwrap(), b"v1");
    assert_eq!(
        values_of(&versions(&old, b"k")),
        vec![(b"v1".to_vec(), false)]
    );

    // Without the snapshot, a compaction that merges the key keeps only
    // the newest version.
    drop(old);
    db.update(|t| t.set(b"k".to_vec(), b"v5".to_vec())).unwrap();
    db.flush().unwrap();
    db.compact().unwrap();
    let after = versions(&db.begin_read(), b"k");
    assert_eq!(
        values_of(&after),
        vec![(b"v5".to_vec(), false)],
        "old versions survive compaction"
    );
    db.check().unwrap();
}

#[test]
fn ttl_entries_expire() {
    let db = mem_db();
    let big = vec![1u8; 500];
    db.update(|t| {
        t.set_entry(Entry::new(b"short".to_vec(), b"s".to_vec()).with_ttl(Duration::from_secs(1)))?;
        t.set_entry(
            Entry::new(b"short-big".to_vec(), big.clone()).with_ttl(Duration::from_secs(1)),
        )?;
        t.set_entry(Entry::new(b"long".to_vec(), b"l".to_vec()).with_ttl(LONG_TTL))?;
        t.set(b"plain".to_vec(), b"p".to_vec())
    })
    .unwrap();
    let item = db.view(|t| t.get(b"short")).unwrap().unwrap();
    assert!(item.expires_at() > 0);
    assert_eq!(db.get(b"short-big").unwrap(), Some(big));
    std::thread::sleep(Duration::from_millis(2100));

    let live = |db: &Db| {
        let txn = db.begin_read();
        let mut it = txn.iter(IterOptions::default());
        it.rewind().unwrap();
        let mut keys = Vec::new();
        while it.valid() {
            keys.push(it.item().key().to_vec());
            it.next().unwrap();
        }
        keys
    };
    let want = vec![b"long".to_vec(), b"plain".to_vec()];
    assert_eq!(db.get(b"short").unwrap(), None);
    assert_eq!(db.get(b"short-big").unwrap(), None);
    assert_eq!(live(&db), want);
    let all = versions(&db.begin_read(), b"short");
    assert_eq!(all.len(), 1);
    assert!(
        all[0].2,
        "an expired version is reported as deleted or expired"
    );
    // Two overlapping tables, so that compaction merges rather than moves.
    db.flush().unwrap();
    db.update(|t| {
        t.set(b"s".to_vec(), b"1".to_vec())?;
        t.set(b"t".to_vec(), b"1".to_vec())
    })
    .unwrap();
    db.flush().unwrap();
    db.compact().unwrap();
    let want = vec![
        b"long".to_vec(),
        b"plain".to_vec(),
        b"s".to_vec(),
        b"t".to_vec(),
    ];
    assert_eq!(db.get(b"short").unwrap(), None);
    assert_eq!(live(&db), want);
    assert!(
        versions(&db.begin_read(), b"short").is_empty(),
        "compaction drops expired entries"
    );
    db.check().unwrap();
}
