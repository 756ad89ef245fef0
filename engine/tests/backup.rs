//! Backups and restores: exact round trips, hot backups, incremental
//! chains, chain gaps, corrupt and truncated backups, and restore targets
//! that are not empty.

mod common;

use common::dump;
use sett_engine::{BackupSummary, Db, Entry, Error, IterOptions, Options};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The newest live value of every key.
fn latest(db: &Db) -> Vec<(Vec<u8>, Vec<u8>)> {
    let txn = db.begin_read();
    let mut it = txn.iter(IterOptions::default());
    it.rewind().unwrap();
    let mut out = Vec::new();
    while it.valid() {
        out.push((it.item().key().to_vec(), it.item().value().unwrap()));
        it.next().unwrap();
    }
    out
}

fn opts(dir: &Path) -> Options {
    let mut o = Options::new(dir);
    o.sync_writes = false;
    o.memtable_size = 1 << 20;
    o.table_size = 256 << 10;
    o.base_level_size = 1 << 20;
    o
}

/// Compares two dumps without printing megabytes on a mismatch.
fn assert_same<T: PartialEq + std::fmt::Debug>(got: &[T], want: &[T], what: &str) {
    if let Some(i) = (0..got.len().min(want.len())).find(|&i| got[i] != want[i]) {
        let short = |v: &T| format!("{v:?}").chars().take(200).collect::<String>();
        panic!(
            "{what}: first difference at {i}: got {} want {}",
            short(&got[i]),
            short(&want[i])
        );
    }
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
}

/// Writes into `t` one key of a mix of everything a backup must carry:
/// several versions, TTLs (live and already expired), user meta,
/// deletions, and values big enough for the value log. `round` changes
/// the values.
fn mix_one(t: &mut sett_engine::Txn, round: u32, i: u32) -> sett_engine::Result<()> {
    let key = format!("key{i:06}").into_bytes();
    match (i + round) % 11 {
        0 => t.delete(key),
        1 => t.set_entry(Entry::new(key, vec![(i + round) as u8; 5000]).with_user_meta(7)),
        2 => t.set_entry(
            Entry::new(key, format!("ttl {round}").into_bytes())
                .with_ttl(Duration::from_secs(3600)),
        ),
        3 => {
            let mut e = Entry::new(key, b"expired".to_vec());
            e.expires_at = 1_000;
            t.set_entry(e)
        }
        _ => t.set_entry(
            Entry::new(key, format!("value {i} round {round}").into_bytes())
                .with_user_meta((i % 5) as u8),
        ),
    }
}

fn write_mix(db: &Db, round: u32, keys: u32) {
    for chunk in (0..keys).collect::<Vec<_>>().chunks(500) {
        db.update(|t| chunk.iter().try_for_each(|&i| mix_one(t, round, i)))
            .unwrap();
    }
}

/// [`write_mix`] for a managed-mode database: one commit per chunk at
/// timestamps from `*ts` up.
fn write_mix_managed(db: &Db, round: u32, keys: u32, ts: &mut u64) {
    for chunk in (0..keys).collect::<Vec<_>>().chunks(500) {
        let mut t = db.begin_write_at(*ts).unwrap();
        chunk
            .iter()
            .try_for_each(|&i| mix_one(&mut t, round, i))
            .unwrap();
        *ts += 1;
        t.commit_at(*ts).unwrap();
    }
}

fn backup(db: &Db, since: u64) -> (Vec<u8>, BackupSummary) {
    let mut out = Vec::new();
    let s = db.backup(&mut out, since).unwrap();
    assert_eq!(s.bytes as usize, out.len());
    (out, s)
}

#[test]
fn full_round_trip_keeps_every_version() {
    let tmp = tempfile::tempdir().unwrap();
    let src = Db::open(opts(&tmp.path().join("src"))).unwrap();
    for round in 0..3 {
        write_mix(&src, round, 3000);
    }
    src.flush().unwrap();
    write_mix(&src, 3, 1000); // some still in the memtable
    let want = dump(&src);
    assert!(want.iter().any(|v| v.5), "no deletions");
    assert!(
        want.iter().any(|v| v.2.len() == 5000),
        "no value-log values"
    );
    assert!(want.iter().any(|v| v.4 == 1_000), "no expired entries");

    let (bytes, summary) = backup(&src, 0);
    assert_eq!(summary.since_ts, 0);
    assert_eq!(summary.entries as usize, want.len());
    assert_eq!(summary.read_ts, src.stats().visible_ts);

    let dst_dir = tmp.path().join("dst");
    let (dst, restored) = Db::restore_into(opts(&dst_dir), bytes.as_slice()).unwrap();
    assert_eq!(restored.read_ts, summary.read_ts);
    assert_eq!(restored.entries, summary.entries);
    assert_same(&dump(&dst), &want, "all versions");
    assert_eq!(dst.stats().visible_ts, summary.read_ts);
    dst.check().unwrap();
    dst.close().unwrap();
    drop(dst);

    // Durable: the same after a reopen, and new writes go above the backup.
    let dst = Db::open(opts(&dst_dir)).unwrap();
    assert_same(&dump(&dst), &want, "all versions");
    assert_eq!(dst.stats().visible_ts, summary.read_ts);
    dst.update(|t| t.set(b"key000000".to_vec(), b"new".to_vec()))
        .unwrap();
    assert_eq!(dst.get(b"key000000").unwrap(), Some(b"new".to_vec()));
    assert!(dst.stats().visible_ts > summary.read_ts);
}

#[test]
fn hot_backup_equals_the_snapshot_at_its_timestamp() {
    let tmp = tempfile::tempdir().unwrap();
    let mut o = opts(&tmp.path().join("src"));
    // No compaction: every version stays, so the source can be compared
    // version by version afterwards. Flushes still run during the backup.
    o.background_compaction = false;
    o.l0_slowdown_trigger = 1000;
    o.l0_stall_trigger = 2000;
    let src = Db::open(o).unwrap();
    write_mix(&src, 0, 5000);

    let stop = Arc::new(AtomicBool::new(false));
    let commits = Arc::new(AtomicU64::new(0));
    let writer = {
        let (src, stop, commits) = (src.clone(), stop.clone(), commits.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                src.update(|t| {
                    let key = format!("key{:06}", (i * 7919) % 6000).into_bytes();
                    if i.is_multiple_of(13) {
                        t.delete(key)
                    } else {
                        t.set(key, vec![(i % 251) as u8; 100 + (i % 3000) as usize])
                    }
                })
                .unwrap();
                i += 1;
                commits.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    while commits.load(Ordering::Relaxed) < 200 {
        std::thread::yield_now();
    }
    let (bytes, summary) = backup(&src, 0);
    // Let the writer commit more after the backup, so the source surely
    // holds versions the backup must not.
    let after = commits.load(Ordering::Relaxed) + 100;
    while commits.load(Ordering::Relaxed) < after {
        std::thread::yield_now();
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();

    let all = dump(&src);
    let want: Vec<_> = all
        .iter()
        .filter(|v| v.1 <= summary.read_ts)
        .cloned()
        .collect();
    assert!(all.len() > want.len(), "no writes after the snapshot");
    let (dst, _) = Db::restore_into(opts(&tmp.path().join("dst")), bytes.as_slice()).unwrap();
    assert_same(&dump(&dst), &want, "all versions");
    dst.check().unwrap();
}

#[test]
fn incremental_backups_applied_on_a_full_backup_equal_the_source() {
    let tmp = tempfile::tempdir().unwrap();
    let mut o = opts(&tmp.path().join("src"));
    o.background_compaction = false; // compare every version
    let src = Db::open(o).unwrap();
    write_mix(&src, 0, 4000);
    let (full, s0) = backup(&src, 0);
    write_mix(&src, 1, 2500);
    src.flush().unwrap();
    let (inc1, s1) = backup(&src, s0.read_ts);
    assert_eq!(s1.since_ts, s0.read_ts);
    assert!(s1.entries > 0 && s1.entries < s0.entries + 2500);
    write_mix(&src, 2, 1500);
    let (inc2, s2) = backup(&src, s1.read_ts);
    // An incremental with nothing new still moves the chain along.
    let (inc3, s3) = backup(&src, s2.read_ts);
    assert_eq!(
        (s3.entries, s3.since_ts, s3.read_ts),
        (0, s2.read_ts, s2.read_ts)
    );

    let dst_dir = tmp.path().join("dst");
    // No background compaction on the copy either: with no reader open, it
    // may drop versions that a newer ingested version hides (e.g. inc1's
    // once inc2's land in L0 and meet them in L1), and the all-versions
    // comparison below would depend on whether it ran before the dump.
    let dst_opts = || {
        let mut o = opts(&dst_dir);
        o.background_compaction = false;
        o
    };
    let (dst, _) = Db::restore_into(dst_opts(), full.as_slice()).unwrap();
    assert_eq!(
        dst.load_backup(inc1.as_slice()).unwrap().read_ts,
        s1.read_ts
    );
    dst.close().unwrap();
    drop(dst);
    // The chain survives a reopen.
    let dst = Db::open(dst_opts()).unwrap();
    let r2 = dst.load_backup(inc2.as_slice()).unwrap();
    assert_eq!(
        (r2.since_ts, r2.read_ts, r2.entries),
        (s1.read_ts, s2.read_ts, s2.entries)
    );
    dst.load_backup(inc3.as_slice()).unwrap();
    assert_same(&dump(&dst), &dump(&src), "all versions");
    assert_same(&latest(&dst), &latest(&src), "latest view");
    dst.check().unwrap();
    // Compaction of the restored copy keeps the same view.
    dst.compact().unwrap();
    assert_same(&latest(&dst), &latest(&src), "latest view");
    dst.check().unwrap();
}

#[test]
fn incremental_after_source_compaction_is_exact_when_history_is_kept() {
    // Managed mode: the discard watermark stays at the last backup, so
    // compaction keeps every deletion and expiry the next incremental needs.
    let mut o = Options::in_memory();
    o.managed = true;
    let src = Db::open(o).unwrap();
    let mut ts = 1;
    write_mix_managed(&src, 0, 3000, &mut ts);
    let mut out = Vec::new();
    let s0 = src
        .backup_with(
            &mut out,
            sett_engine::BackupOptions {
                read_ts: Some(ts),
                ..sett_engine::BackupOptions::default()
            },
        )
        .unwrap();
    let full = out;
    src.set_discard_ts(s0.read_ts).unwrap();
    write_mix_managed(&src, 1, 3000, &mut ts);
    src.compact().unwrap(); // drops versions at or below the watermark
    let mut inc = Vec::new();
    src.backup_with(
        &mut inc,
        sett_engine::BackupOptions {
            since_ts: s0.read_ts,
            read_ts: Some(ts),
            ..sett_engine::BackupOptions::default()
        },
    )
    .unwrap();
    let (dst, _) = Db::restore_into(Options::in_memory(), full.as_slice()).unwrap();
    dst.load_backup(inc.as_slice()).unwrap();
    assert_same(&latest(&dst), &latest(&src), "latest view");
    dst.check().unwrap();
}

#[test]
fn incremental_that_cannot_reproduce_the_source_is_refused() {
    // Not managed: once no reader needs them, compaction drops deletions
    // newer than the full backup, so the incremental cannot carry them.
    let src = Db::open(Options::in_memory()).unwrap();
    write_mix(&src, 0, 3000);
    let (full, s0) = backup(&src, 0);
    write_mix(&src, 1, 3000);
    src.compact().unwrap();
    let (inc, _) = backup(&src, s0.read_ts);
    let (dst, _) = Db::restore_into(Options::in_memory(), full.as_slice()).unwrap();
    let before = dump(&dst);
    let e = dst.load_backup(inc.as_slice()).unwrap_err();
    assert!(chain_error(e).contains("cannot reproduce the source"));
    assert_same(
        &dump(&dst),
        &before,
        "a refused incremental changed the database",
    );
    // A new full backup is the way out.
    let (full2, _) = backup(&src, 0);
    let (dst2, _) = Db::restore_into(Options::in_memory(), full2.as_slice()).unwrap();
    assert_same(&latest(&dst2), &latest(&src), "latest view");
}

fn chain_error(e: Error) -> String {
    match e {
        Error::InvalidArgument(m) => m,
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

#[test]
fn a_gap_in_the_chain_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let src = Db::open(Options::in_memory()).unwrap();
    write_mix(&src, 0, 500);
    let (full, s0) = backup(&src, 0);
    write_mix(&src, 1, 500);
    let (inc1, s1) = backup(&src, s0.read_ts);
    write_mix(&src, 2, 500);
    let (inc2, _) = backup(&src, s1.read_ts);

    // An incremental backup alone is not a restore.
    let lone = tmp.path().join("lone");
    let e = Db::restore_into(opts(&lone), inc1.as_slice()).unwrap_err();
    assert!(chain_error(e).contains("full backup"));
    assert!(!lone.exists(), "a refused restore left its directory");

    let (dst, _) = Db::restore_into(Options::in_memory(), full.as_slice()).unwrap();
    let before = dump(&dst);
    let e = dst.load_backup(inc2.as_slice()).unwrap_err();
    assert!(chain_error(e).contains("chain gap"));
    assert_same(
        &dump(&dst),
        &before,
        "a refused backup changed the database",
    );
    // A full backup on top of data is refused too.
    let e = dst.load_backup(full.as_slice()).unwrap_err();
    assert!(chain_error(e).contains("empty database"));
    dst.load_backup(inc1.as_slice()).unwrap();
    // Applying the same incremental twice is a gap as well.
    let e = dst.load_backup(inc1.as_slice()).unwrap_err();
    assert!(chain_error(e).contains("chain gap"));
    dst.load_backup(inc2.as_slice()).unwrap();
    assert_same(&latest(&dst), &latest(&src), "latest view");

    // A write to the restored copy breaks the chain.
    let (dst, _) = Db::restore_into(Options::in_memory(), full.as_slice()).unwrap();
    dst.update(|t| t.set(b"local".to_vec(), b"write".to_vec()))
        .unwrap();
    let e = dst.load_backup(inc1.as_slice()).unwrap_err();
    assert!(chain_error(e).contains("chain gap"));
}

#[test]
fn corrupt_and_truncated_backups_are_refused() {
    let src = Db::open(Options::in_memory()).unwrap();
    write_mix(&src, 0, 300);
    let mut out = Vec::new();
    let s = src
        .backup_with(
            &mut out,
            sett_engine::BackupOptions {
                frame_bytes: 4096, // many frames
                ..sett_engine::BackupOptions::default()
            },
        )
        .unwrap();
    assert!(s.frames > 10);
    let good = out;
    let refused = |bytes: &[u8], what: &str| match Db::restore_into(Options::in_memory(), bytes) {
        Err(e) => assert!(e.is_corruption(), "{what}: {e}"),
        Ok(_) => panic!("{what}: accepted"),
    };
    // Truncations: inside the header, the first frames, the trailer, and
    // a stride through the rest.
    let len = good.len();
    let cuts = (0..200).chain((200..len).step_by(997)).chain(len - 40..len);
    for cut in cuts {
        refused(&good[..cut], &format!("cut at {cut} of {len}"));
    }
    // Single flipped bits anywhere.
    for pos in (0..64).chain((64..len).step_by(1499)).chain(len - 28..len) {
        let mut bad = good.clone();
        bad[pos] ^= 0x10;
        refused(&bad, &format!("flip at {pos} of {len}"));
    }
    // Garbage after the trailer.
    let mut extra = good.clone();
    extra.push(0);
    refused(&extra, "trailing byte");
    // A dropped frame: the frame checksums pass, the trailer does not.
    let first_frame_len = u32::from_le_bytes(good[48..52].try_into().unwrap()) as usize;
    let mut dropped = good[..48].to_vec();
    dropped.extend_from_slice(&good[48 + 8 + first_frame_len..]);
    refused(&dropped, "dropped frame");
    // Not a backup at all.
    refused(
        b"hello, world, this is not a backup at all; not even close!",
        "text",
    );
    // The good one still restores.
    let (dst, _) = Db::restore_into(Options::in_memory(), good.as_slice()).unwrap();
    assert_same(&latest(&dst), &latest(&src), "latest view");
}

#[test]
fn a_failed_restore_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let src = Db::open(Options::in_memory()).unwrap();
    write_mix(&src, 0, 2000);
    let (full, s0) = backup(&src, 0);
    write_mix(&src, 1, 2000);
    let (inc, _) = backup(&src, s0.read_ts);

    // Into a new directory: a backup cut short of its trailer restores
    // nothing and removes the directory it created.
    let dir = tmp.path().join("new");
    let e = Db::restore_into(opts(&dir), &full[..full.len() - 10]).unwrap_err();
    assert!(e.is_corruption(), "{e}");
    assert!(!dir.exists());
    // Into an existing empty directory: the directory stays, empty.
    let dir = tmp.path().join("empty");
    std::fs::create_dir(&dir).unwrap();
    let mut bad = full.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 1;
    assert!(Db::restore_into(opts(&dir), bad.as_slice())
        .unwrap_err()
        .is_corruption());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);

    // A bad incremental leaves the restored database as it was, on disk too.
    let dir = tmp.path().join("dst");
    let (dst, _) = Db::restore_into(opts(&dir), full.as_slice()).unwrap();
    let before = dump(&dst);
    let e = dst.load_backup(&inc[..inc.len() - 1]).unwrap_err();
    assert!(e.is_corruption(), "{e}");
    assert_same(&dump(&dst), &before, "unchanged");
    dst.close().unwrap();
    drop(dst);
    let dst = Db::open(opts(&dir)).unwrap();
    assert_same(&dump(&dst), &before, "unchanged");
    assert_eq!(dst.stats().visible_ts, s0.read_ts);
    dst.check().unwrap();
    dst.load_backup(inc.as_slice()).unwrap();
    assert_same(&latest(&dst), &latest(&src), "latest view");
}

#[test]
fn restore_into_a_non_empty_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let src = Db::open(Options::in_memory()).unwrap();
    write_mix(&src, 0, 100);
    let (full, _) = backup(&src, 0);

    let dir = tmp.path().join("busy");
    let existing = Db::open(opts(&dir)).unwrap();
    existing
        .update(|t| t.set(b"mine".to_vec(), b"keep".to_vec()))
        .unwrap();
    existing.close().unwrap();
    drop(existing);
    let e = Db::restore_into(opts(&dir), full.as_slice()).unwrap_err();
    assert!(chain_error(e).contains("not empty"));
    // A stray file is enough to refuse.
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), b"x").unwrap();
    assert!(Db::restore_into(opts(&other), full.as_slice()).is_err());
    assert!(other.join("notes.txt").exists());

    let db = Db::open(opts(&dir)).unwrap();
    assert_eq!(db.get(b"mine").unwrap(), Some(b"keep".to_vec()));
    assert_eq!(db.get(b"key000005").unwrap(), None);
}

#[test]
fn backup_of_a_read_only_handle() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("src");
    let src = Db::open(opts(&dir)).unwrap();
    write_mix(&src, 0, 1000);
    let want = latest(&src);
    src.close().unwrap();
    drop(src);
    let mut ro = opts(&dir);
    ro.read_only = true;
    let src = Db::open(ro).unwrap();
    let (full, _) = backup(&src, 0);
    let (dst, _) = Db::restore_into(Options::in_memory(), full.as_slice()).unwrap();
    assert_same(&latest(&dst), &want, "latest view");
    // A read-only database cannot take a restore.
    assert!(matches!(
        src.load_backup(full.as_slice()),
        Err(Error::ReadOnly)
    ));
}
