//! The extras: coalescing batches, sequences, merge operators,
//! drop_prefix / drop_all and change subscriptions.

use sett_engine::fs::{FaultFs, MemFs};
use sett_engine::{Bucket, Change, Db, Entry, Error, IterOptions, Options};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn mem_opts() -> Options {
    Options {
        fs: Some(Arc::new(MemFs::new())),
        memtable_size: 32 << 10,
        value_threshold: 64,
        vlog_file_size: 256 << 10,
        ..Options::in_memory()
    }
}

fn all_keys(db: &Db) -> Vec<Vec<u8>> {
    let txn = db.begin_read();
    let mut it = txn.iter(IterOptions {
        keys_only: true,
        ..IterOptions::default()
    });
    let mut keys = Vec::new();
    it.rewind().unwrap();
    while it.valid() {
        keys.push(it.item().key().to_vec());
        it.next().unwrap();
    }
    keys
}

// ---- coalescing batch ----

#[test]
fn batch_commits_every_callers_writes_together() {
    let db = Db::open(mem_opts()).unwrap();
    let before = db.stats().visible_ts;
    let threads = 8;
    let per_thread = 50;
    std::thread::scope(|s| {
        for t in 0..threads {
            let db = &db;
            s.spawn(move || {
                for i in 0..per_thread {
                    db.batch(|txn| {
                        txn.set(format!("t{t}/{i:03}").into_bytes(), vec![t as u8; 10])?;
                        // A read-modify-write on a shared key: conflicts
                        // between groups are retried alone.
                        let n = match txn.get(b"count")? {
                            Some(it) => u64::from_be_bytes(it.value()?.try_into().unwrap()),
                            None => 0,
                        };
                        txn.set(b"count".to_vec(), (n + 1).to_be_bytes().to_vec())
                    })
                    .unwrap();
                }
            });
        }
    });
    let total = threads * per_thread;
    let txn = db.begin_read();
    for t in 0..threads {
        for i in 0..per_thread {
            let k = format!("t{t}/{i:03}");
            assert!(txn.get(k.as_bytes()).unwrap().is_some(), "{k} missing");
        }
    }
    let count = txn.get(b"count").unwrap().unwrap().value().unwrap();
    assert_eq!(u64::from_be_bytes(count.try_into().unwrap()), total as u64);
    let commits = db.stats().visible_ts - before;
    eprintln!("{total} batch calls in {commits} commits");
    assert!(commits < total as u64, "no call was coalesced");
}

#[test]
fn a_failing_closure_does_not_fail_the_others() {
    let db = Db::open(mem_opts()).unwrap();
    let callers = 12;
    let rounds = 5;
    let runs = AtomicUsize::new(0);
    for round in 0..rounds {
        let start = std::sync::Barrier::new(callers);
        let results: Vec<(usize, bool)> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..callers)
                .map(|t| {
                    let (db, runs, start) = (&db, &runs, &start);
                    s.spawn(move || {
                        start.wait();
                        let r = db.batch(|txn| {
                            runs.fetch_add(1, Ordering::Relaxed);
                            txn.set(format!("r{round}/k{t}").into_bytes(), b"v".to_vec())?;
                            if t % 4 == 0 {
                                return Err(Error::InvalidArgument(format!("caller {t} fails")));
                            }
                            Ok(())
                        });
                        (t, r.is_ok())
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (t, ok) in results {
            assert_eq!(ok, t % 4 != 0, "caller {t}");
            let present = db
                .get(format!("r{round}/k{t}").as_bytes())
                .unwrap()
                .is_some();
            assert_eq!(present, t % 4 != 0, "caller {t}'s write");
        }
    }
    // Callers that shared a group with a failing one ran again alone.
    let runs = runs.load(Ordering::Relaxed);
    eprintln!("{runs} closure runs for {} calls", callers * rounds);
    assert!(runs > callers * rounds, "no failing closure shared a group");
}

// ---- sequences ----

#[test]
fn sequences_never_repeat_across_threads_handles_and_reopen() {
    let fs = MemFs::new();
    let opts = Options {
        fs: Some(Arc::new(fs.clone())),
        ..mem_opts()
    };
    let mut seen = BTreeSet::new();
    for round in 0..3 {
        let db = Db::open(opts.clone()).unwrap();
        let shared = db.get_sequence(b"seq".to_vec(), 7).unwrap();
        let got: Vec<Vec<u64>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..6)
                .map(|t| {
                    let (db, shared) = (&db, &shared);
                    s.spawn(move || {
                        // Half the threads share one handle, half have their own.
                        let own =
                            (t % 2 == 1).then(|| db.get_sequence(b"seq".to_vec(), 5).unwrap());
                        let seq = own.as_ref().unwrap_or(shared);
                        let mut v = Vec::new();
                        let mut last = None;
                        for i in 0..300 {
                            let n = seq.next().unwrap();
                            if own.is_some() {
                                assert!(last.is_none_or(|l| n > l), "a handle's numbers grow");
                            }
                            last = Some(n);
                            v.push(n);
                            if i % 97 == 0 {
                                seq.release().unwrap();
                            }
                        }
                        v
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for n in got.into_iter().flatten() {
            assert!(seen.insert(n), "round {round}: {n} handed out twice");
        }
        if round == 1 {
            // No release: the rest of the leases is skipped.
            std::mem::forget(shared);
        } else {
            drop(shared);
        }
        db.close().unwrap();
    }
    assert_eq!(seen.len(), 3 * 6 * 300);
    assert!(matches!(
        Db::open(opts).unwrap().get_sequence(b"s".to_vec(), 0),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn sequences_survive_a_power_cut() {
    let fs = FaultFs::new();
    let opts = Options {
        fs: Some(Arc::new(fs.clone())),
        sync_writes: false,
        ..Options::new("/db")
    };
    let db = Db::open(opts).unwrap();
    let seq = db.get_sequence(b"seq".to_vec(), 10).unwrap();
    let mut handed = Vec::new();
    for _ in 0..95 {
        handed.push(seq.next().unwrap());
    }
    // Unrelated unsynced writes after the last lease.
    db.update(|txn| txn.set(b"x".to_vec(), b"y".to_vec()))
        .unwrap();
    let image = fs.crash();
    let max = *handed.iter().max().unwrap();
    std::mem::forget(seq);
    drop(db);

    let db = Db::open(Options {
        fs: Some(Arc::new(image)),
        sync_writes: false,
        ..Options::new("/db")
    })
    .unwrap();
    let seq = db.get_sequence(b"seq".to_vec(), 10).unwrap();
    let n = seq.next().unwrap();
    assert!(n > max, "after a crash: {n} <= {max}");
}

// ---- merge operator ----

fn add_u64(a: &[u8], b: &[u8]) -> Vec<u8> {
    let x = u64::from_be_bytes(a.try_into().unwrap());
    let y = u64::from_be_bytes(b.try_into().unwrap());
    (x + y).to_be_bytes().to_vec()
}

fn as_u64(v: Option<Vec<u8>>) -> u64 {
    v.map_or(0, |v| u64::from_be_bytes(v.try_into().unwrap()))
}

#[test]
fn merge_result_is_the_fold_of_every_add() {
    let opts = mem_opts();
    let db = Db::open(opts.clone()).unwrap();
    let op = Arc::new(
        db.merge_operator(b"counter".to_vec(), add_u64, Duration::from_millis(1))
            .unwrap(),
    );
    let second = db
        .merge_operator(b"counter".to_vec(), add_u64, Duration::from_millis(3))
        .unwrap();
    assert_eq!(op.get().unwrap(), None);
    let expected: u64 = std::thread::scope(|s| {
        let readers_done = Arc::new(AtomicUsize::new(0));
        {
            let op = op.clone();
            let done = readers_done.clone();
            s.spawn(move || {
                // Every snapshot's fold only grows (all adds are positive).
                let mut last = 0;
                while done.load(Ordering::Acquire) < 4 {
                    let now = as_u64(op.get().unwrap());
                    assert!(now >= last, "fold went back: {now} < {last}");
                    last = now;
                }
            });
        }
        let hs: Vec<_> = (0..4u64)
            .map(|t| {
                let (op, second, done) = (op.clone(), &second, readers_done.clone());
                s.spawn(move || {
                    let mut sum = 0;
                    for i in 1..=250u64 {
                        let v = t * 1000 + i;
                        if i % 2 == 0 {
                            op.add(v.to_be_bytes()).unwrap();
                        } else {
                            second.add(v.to_be_bytes()).unwrap();
                        }
                        sum += v;
                    }
                    done.fetch_add(1, Ordering::Release);
                    sum
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(as_u64(op.get().unwrap()), expected);
    second.stop().unwrap();
    Arc::into_inner(op).unwrap().stop().unwrap();
    // Everything is folded into the key itself, which survives a reopen.
    assert_eq!(as_u64(db.get(b"counter").unwrap()), expected);
    let operands = all_keys(&db)
        .into_iter()
        .filter(|k| k.starts_with(b"\xff!sett!mo/o/"))
        .count();
    assert_eq!(operands, 0);
    db.close().unwrap();
    drop(db);
    let db = Db::open(opts).unwrap();
    let op = db
        .merge_operator(b"counter".to_vec(), add_u64, Duration::from_secs(60))
        .unwrap();
    op.add(5u64.to_be_bytes()).unwrap();
    assert_eq!(as_u64(op.get().unwrap()), expected + 5);
    assert_eq!(op.merge_now().unwrap(), 1);
    assert_eq!(as_u64(db.get(b"counter").unwrap()), expected + 5);
}

#[test]
fn merge_of_unmerged_operands_survives_reopen() {
    let opts = mem_opts();
    let concat = |a: &[u8], b: &[u8]| [a, b].concat();
    let db = Db::open(opts.clone()).unwrap();
    let op = db
        .merge_operator(b"log".to_vec(), concat, Duration::from_secs(3600))
        .unwrap();
    for c in [b"a", b"b", b"c"] {
        op.add(c.to_vec()).unwrap();
    }
    assert_eq!(op.get().unwrap().unwrap(), b"abc");
    std::mem::forget(op); // no final merge: operands stay as keys
    db.flush().unwrap();
    db.compact().unwrap();
    db.close().unwrap();
    drop(db);
    let db = Db::open(opts).unwrap();
    let op = db
        .merge_operator(b"log".to_vec(), concat, Duration::from_secs(3600))
        .unwrap();
    op.add(b"d".to_vec()).unwrap();
    assert_eq!(op.get().unwrap().unwrap(), b"abcd");
    op.stop().unwrap();
    assert_eq!(db.get(b"log").unwrap().unwrap(), b"abcd");
}

// ---- drop_prefix / drop_all ----

#[test]
fn drop_prefix_and_drop_all_leave_exactly_the_right_keys() {
    let db = Db::open(mem_opts()).unwrap();
    let mut model = BTreeMap::new();
    let mut batch = db.write_batch();
    for p in ["a", "ab", "abc", "b", "c"] {
        for i in 0..300 {
            let k = format!("{p}/{i:04}").into_bytes();
            // Some values in the log, some inline.
            let v = vec![b'v'; if i % 3 == 0 { 200 } else { 8 }];
            batch.set(k.clone(), v.clone()).unwrap();
            model.insert(k, v);
        }
    }
    batch.flush().unwrap();
    db.flush().unwrap();
    let ks = db.keyspace("ks").unwrap();
    db.update(|txn| ks.set(txn, b"a/1".to_vec(), b"x".to_vec()))
        .unwrap();

    let reads_before = db.stats().vlog_reads;
    let deleted = db
        .drop_prefix(&[b"ab".as_slice(), b"abc/", b"c/00"])
        .unwrap();
    assert_eq!(deleted, 600 + 100);
    assert_eq!(db.stats().vlog_reads, reads_before, "values were read");
    model.retain(|k, _| !k.starts_with(b"ab") && !k.starts_with(b"c/00"));
    let root: Vec<_> = all_keys(&db)
        .into_iter()
        .filter(|k| !k.starts_with(sett_engine::RESERVED_PREFIX))
        .collect();
    assert_eq!(root, model.keys().cloned().collect::<Vec<_>>());
    assert!(db.view(|txn| ks.get(txn, b"a/1")).unwrap().is_some());
    assert!(matches!(
        db.drop_prefix(&[b"".as_slice()]),
        Err(Error::InvalidArgument(_))
    ));

    db.update(|txn| {
        let b = Bucket::root().create_bucket(txn, b"bk")?;
        b.put(txn, b"k", b"v".to_vec())
    })
    .unwrap();
    let deleted = db.drop_all().unwrap();
    assert!(deleted as usize >= model.len() + 3);
    // Only the keyspace id counter stays, so ids are never reused.
    assert_eq!(all_keys(&db).len(), 1);
    assert!(db.list_keyspaces().unwrap().is_empty());
    assert!(db.keyspace("other").unwrap().id() > ks.id());
    db.compact().unwrap();
    let st = db.stats();
    // The id counter and the registry entry of "other": no tombstone or
    // old version survives.
    assert_eq!(st.table_entries, 2, "left after compaction: {st:?}");
    db.check().unwrap();
}

// ---- subscriptions ----

#[test]
fn subscription_sees_exactly_the_committed_writes_in_order() {
    let db = Db::open(mem_opts()).unwrap();
    let sub = db.subscribe(vec![b"a/".to_vec(), b"c/".to_vec()]).unwrap();
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let db = &db;
            s.spawn(move || {
                for i in 0..100u32 {
                    let mut txn = db.begin_write();
                    let ka = format!("a/{t}/{i}").into_bytes();
                    let kb = format!("b/{t}/{i}").into_bytes();
                    let kc = format!("c/{t}").into_bytes();
                    txn.set_entry(Entry::new(ka, vec![t; 100]).with_user_meta(t))
                        .unwrap();
                    txn.set(kb, b"ignored".to_vec()).unwrap();
                    if i % 10 == 9 {
                        txn.delete(kc).unwrap();
                    } else {
                        txn.set(kc, i.to_be_bytes().to_vec()).unwrap();
                    }
                    txn.commit().unwrap();
                }
            });
        }
    });
    // A failed commit is never delivered.
    let mut t1 = db.begin_write();
    t1.get(b"a/0/0").unwrap();
    t1.set(b"a/failed".to_vec(), b"x".to_vec()).unwrap();
    db.update(|txn| txn.set(b"a/0/0".to_vec(), b"new".to_vec()))
        .unwrap();
    assert!(matches!(t1.commit(), Err(Error::Conflict)));

    // Rebuild the expected history from the database's versions: every
    // commit under the prefixes, ascending.
    let txn = db.begin_read();
    let mut it = txn.iter(IterOptions {
        all_versions: true,
        ..IterOptions::default()
    });
    let mut history: BTreeMap<u64, Vec<Change>> = BTreeMap::new();
    it.rewind().unwrap();
    while it.valid() {
        let item = it.item();
        if item.key().starts_with(b"a/") || item.key().starts_with(b"c/") {
            let deleted = item.is_deleted_or_expired();
            history.entry(item.version()).or_default().push(Change {
                key: item.key().to_vec(),
                value: if deleted {
                    Vec::new()
                } else {
                    item.value().unwrap()
                },
                version: item.version(),
                user_meta: item.user_meta(),
                expires_at: item.expires_at(),
                deleted,
            });
        }
        it.next().unwrap();
    }
    drop(it);
    drop(txn);
    let mut got = Vec::new();
    while let Some(c) = sub.recv_timeout(Duration::from_millis(200)).unwrap() {
        assert!(!c.changes.is_empty());
        assert!(c.changes.iter().all(|ch| ch.version == c.version));
        got.push(c);
    }
    let versions: Vec<u64> = got.iter().map(|c| c.version).collect();
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "out of order");
    let got: BTreeMap<u64, Vec<Change>> = got.into_iter().map(|c| (c.version, c.changes)).collect();
    assert_eq!(got.len(), 401);
    assert_eq!(got, history);
}

#[test]
fn a_slow_subscriber_is_cancelled_not_waited_for() {
    let db = Db::open(mem_opts()).unwrap();
    let slow = db.subscribe_with_capacity(vec![b"k".to_vec()], 4).unwrap();
    let other = db.subscribe(vec![b"k".to_vec()]).unwrap();
    for i in 0..10u32 {
        db.update(|txn| txn.set(format!("k{i}").into_bytes(), b"v".to_vec()))
            .unwrap();
    }
    for i in 0..4u32 {
        let c = slow.recv().unwrap();
        assert_eq!(c.changes[0].key, format!("k{i}").into_bytes());
    }
    assert!(matches!(slow.recv(), Err(Error::SubscriptionLagged)));
    for i in 0..10u32 {
        assert_eq!(
            other.recv().unwrap().changes[0].key,
            format!("k{i}").into_bytes()
        );
    }
    // Unsubscribed on drop; after close, recv ends.
    drop(slow);
    db.update(|txn| txn.set(b"k-last".to_vec(), b"v".to_vec()))
        .unwrap();
    assert_eq!(other.recv().unwrap().changes[0].key, b"k-last");
    db.close().unwrap();
    assert!(matches!(other.recv(), Err(Error::Closed)));
}
