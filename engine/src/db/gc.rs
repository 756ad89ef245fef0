//! Value-log garbage collection: picks a sealed log file with enough
//! garbage, rewrites its live entries at the head of the log, and deletes
//! it once no reader can reach it.
//!
//! Definitions:
//! - An entry `key@v` of file F at offset `o` is *referenced* if the tree's
//!   entry for exactly that internal key points at `(F, o)`.
//! - It is *live* if it is referenced, not expired, and `v` is the newest
//!   version of `key` in the whole tree. Only live entries are rewritten.
//! - A referenced entry shadowed by a newer version is needed only by
//!   snapshots older than that version. Without managed mode every such
//!   snapshot is already open, and the file outlives them (below). In
//!   managed mode a caller may open one later (at or above the discard
//!   watermark), so a file holding such an entry is not collected.
//!
//! Why only the newest version is rewritten: point reads take the first
//! match going from memtables down the levels, which relies on newer
//! versions of a key always sitting above older ones. A rewrite lands in
//! the memtable with its old version; were a newer version of the key
//! already in a table, that read would find the rewrite first. The commit
//! thread re-checks every rewrite right before applying it
//! ([`DbInner::rewrite_filter`]), so a commit racing with GC can never be
//! hidden. A rewrite keeps its internal key, so it shadows the table entry
//! it replaces: reads find the memtable first, and merging cursors keep the
//! newest source's copy of identical internal keys.
//!
//! Invariants:
//! - only files before both the append target and the manifest's replay
//!   head are collected: replay never needs them, and no memtable holds a
//!   pointer into them;
//! - a file is unlinked only after its rewrites are synced, so a crash
//!   at any point replays them (they lie after the replay head);
//! - the file's handle stays open until every reader that was active when
//!   the rewrites were applied has finished; later readers cannot see any
//!   pointer into it;
//! - one GC runs at a time (`GcState::running`), and close waits for it.
//!
//! Old versions that no snapshot can see may still point into a deleted
//! file until compaction drops them: all-versions iteration returns them,
//! and their `Item::value` fails with [`Error::ValueCollected`]. `Db::check`
//! only verifies values a snapshot can see.

use super::{Db, DbInner, WriteRequest};
use crate::format::{now_secs, ValuePointer, META_DELETE};
use crate::vlog::{DecodedEntry, WriteEntry};
use crate::{Error, Result};
use crossbeam_channel::{Receiver, Sender};
use std::sync::atomic::Ordering;

/// Most entries in one rewrite request.
const BATCH_ENTRIES_MAX: usize = 1024;
/// Most value bytes in one rewrite request.
const BATCH_BYTES_MAX: usize = 4 << 20;
/// Rewrite requests queued at once.
const IN_FLIGHT_MAX: usize = 4;
/// Candidate files measured per call at most.
const CANDIDATES_MAX: usize = 16;

/// What one call of [`Db::run_value_log_gc`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GcOutcome {
    /// One value-log file was collected.
    Collected(GcReport),
    /// No value-log file has enough garbage (or none may be collected yet).
    NothingToDo,
    /// Another value-log GC is running on this database.
    AlreadyRunning,
}

/// The file one GC call collected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GcReport {
    /// The collected value-log file number.
    pub fid: u32,
    /// Its size in bytes (the space reclaimed).
    pub file_bytes: u64,
    /// Live entries copied to the head of the log.
    pub rewritten_entries: u64,
    /// Their size in bytes.
    pub rewritten_bytes: u64,
    /// The file is unlinked but its handle stays open until the snapshots
    /// that were open during the rewrite finish.
    pub deferred: bool,
}

/// Value-log GC counters since open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcStats {
    /// Calls of [`Db::run_value_log_gc`] that ran (any outcome but
    /// [`GcOutcome::AlreadyRunning`]).
    pub runs: u64,
    /// Files collected.
    pub files_collected: u64,
    /// Bytes of the collected files.
    pub bytes_reclaimed: u64,
    /// Live entries rewritten.
    pub entries_rewritten: u64,
    /// Collected files whose handles still wait for old snapshots.
    pub files_awaiting_readers: usize,
}

/// A file's entry as GC sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Liveness {
    /// Nothing a present or future snapshot can reach.
    Dead,
    /// To be rewritten.
    Live,
    /// Reachable by a future snapshot but cannot be rewritten: the file
    /// must stay.
    Pinned,
}

/// Result of surveying a candidate file.
enum Survey {
    /// At least `ratio` of the file is garbage; these entries are live.
    Qualifies(Vec<ValuePointer>),
    /// At least this many bytes are live: too many.
    TooLive(u64),
    /// Holds a pinned entry.
    Pinned,
}

/// Clears the GC target however the rewrite ends.
struct TargetGuard<'a>(&'a DbInner, bool);

impl TargetGuard<'_> {
    fn finish(mut self) -> (Vec<(Vec<u8>, u64)>, bool) {
        self.1 = true;
        self.0.vlog.gc.end()
    }
}

impl Drop for TargetGuard<'_> {
    fn drop(&mut self) {
        if !self.1 {
            self.0.vlog.gc.end();
        }
    }
}

impl Db {
    /// Collects at most one value-log file: the sealed file with the most
    /// garbage, if at least `discard_ratio` (in `(0, 1]`) of it is garbage.
    /// Its live values are rewritten at the head of the log (keeping their
    /// versions, TTLs and user bytes) and the file is deleted. Call it
    /// repeatedly until it returns [`GcOutcome::NothingToDo`].
    ///
    /// Garbage is counted by compaction (dropped versions) and at write
    /// time (values stored inline in the tree): flush and compact first to
    /// give GC something to find. Safe to call while reading, writing,
    /// iterating and compacting; a second concurrent call returns
    /// [`GcOutcome::AlreadyRunning`].
    pub fn run_value_log_gc(&self, discard_ratio: f64) -> Result<GcOutcome> {
        if !(discard_ratio > 0.0 && discard_ratio <= 1.0) {
            return Err(Error::InvalidArgument(format!(
                "discard ratio {discard_ratio} is not in (0, 1]"
            )));
        }
        let db = self.inner();
        let Some(_running) = db.vlog.gc.running.try_lock() else {
            return Ok(GcOutcome::AlreadyRunning);
        };
        if db.opts.read_only {
            return Err(Error::ReadOnly);
        }
        if db.is_closing() {
            return Err(Error::Closed);
        }
        db.check_bg_error()?;
        db.release_collected_vlog_files();
        let out = db.collect_one(discard_ratio);
        db.vlog.gc.runs.fetch_add(1, Ordering::Relaxed);
        db.vlog.persist_discard();
        db.release_collected_vlog_files();
        out
    }

    /// Value-log GC counters since open.
    pub fn value_log_gc_stats(&self) -> GcStats {
        let db = self.inner();
        db.release_collected_vlog_files();
        let gc = &db.vlog.gc;
        GcStats {
            runs: gc.runs.load(Ordering::Relaxed),
            files_collected: gc.files_collected.load(Ordering::Relaxed),
            bytes_reclaimed: gc.bytes_reclaimed.load(Ordering::Relaxed),
            entries_rewritten: gc.entries_rewritten.load(Ordering::Relaxed),
            files_awaiting_readers: gc.retired_count(),
        }
    }
}

impl DbInner {
    /// Tries the best candidates until one file is collected.
    fn collect_one(&self, ratio: f64) -> Result<GcOutcome> {
        let Some(head) = self.replay_head() else {
            return Err(Error::ReadOnly);
        };
        let mut candidates: Vec<(u32, u64, f64)> = self
            .vlog
            .sealed_files()
            .into_iter()
            .filter(|(fid, _)| *fid < head.0)
            .map(|(fid, len)| {
                let garbage = self.vlog.discard.get(fid).min(len);
                let frac = if len <= crate::vlog::HEADER_LEN {
                    1.0
                } else {
                    garbage as f64 / len as f64
                };
                (fid, len, frac)
            })
            .filter(|c| c.2 >= ratio)
            .collect();
        candidates.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
        candidates.truncate(CANDIDATES_MAX);
        for (fid, len, _) in candidates {
            let live = match self.survey(fid, len, ratio)? {
                Survey::Qualifies(live) => live,
                Survey::TooLive(live_bytes) => {
                    // Measured: no longer a candidate at this ratio.
                    self.vlog.discard.set(fid, len.saturating_sub(live_bytes));
                    continue;
                }
                Survey::Pinned => continue,
            };
            if let Some(report) = self.rewrite_and_retire(fid, len, &live)? {
                return Ok(GcOutcome::Collected(report));
            }
        }
        Ok(GcOutcome::NothingToDo)
    }

    /// Closes the handles of collected value-log files that no reader can
    /// need any more (called when idle; GC calls do it too).
    pub(crate) fn release_collected_vlog_files(&self) {
        if self.vlog.gc.retired_count() > 0 {
            self.vlog.release_retired(&self.oracle.active_reads());
        }
    }

    /// The timestamp at or above which future snapshots may read.
    fn snapshot_horizon(&self) -> u64 {
        if self.opts.managed {
            self.oracle.discard_ts()
        } else {
            self.oracle.visible_ts()
        }
    }

    /// True if a snapshot at or above `horizon` can read `key@version`.
    fn needed_by_future_snapshots(&self, key: &[u8], version: u64, horizon: u64) -> Result<bool> {
        if version > horizon {
            return Ok(true);
        }
        Ok(self
            .get_at(key, horizon)?
            .is_some_and(|(v, _)| v == version))
    }

    /// Classifies entry `e` stored at `vp` (see the module docs).
    fn liveness(&self, e: &DecodedEntry, vp: ValuePointer, now: u64) -> Result<Liveness> {
        if e.meta & META_DELETE != 0 {
            return Ok(Liveness::Dead); // markers live in the tree itself
        }
        match self.get_at(&e.key, e.version)? {
            Some((v, vs)) if v == e.version && vs.pointer() == Some(vp) => {
                if vs.is_expired(now) {
                    return Ok(Liveness::Dead);
                }
            }
            _ => return Ok(Liveness::Dead),
        }
        let newest = self.get_at(&e.key, u64::MAX)?.map(|(v, _)| v);
        if newest == Some(e.version) {
            return Ok(Liveness::Live);
        }
        debug_assert!(newest > Some(e.version));
        // Shadowed. Without managed mode only snapshots open now can need
        // it, and the file outlives them.
        if self.opts.managed
            && self.needed_by_future_snapshots(&e.key, e.version, self.snapshot_horizon())?
        {
            return Ok(Liveness::Pinned);
        }
        Ok(Liveness::Dead)
    }

    /// Reads all of `fid` and lists its live entries, stopping early once
    /// too many bytes are live or an entry is pinned. An entry found dead
    /// stays dead: nothing ever points into a sealed file anew, a shadowing
    /// version outlives the versions it shadows, and expiry is final.
    fn survey(&self, fid: u32, len: u64, ratio: f64) -> Result<Survey> {
        let live_max = ((1.0 - ratio) * len as f64) as u64;
        let now = now_secs();
        let mut live = Vec::new();
        let mut live_bytes = 0u64;
        let mut pinned = false;
        self.vlog.scan_file(fid, |e, vp| {
            if self.is_closing() {
                return Err(Error::Closed);
            }
            match self.liveness(&e, vp, now)? {
                Liveness::Live => {
                    live.push(vp);
                    live_bytes += u64::from(vp.len);
                }
                Liveness::Dead => {}
                Liveness::Pinned => pinned = true,
            }
            Ok(!pinned && live_bytes <= live_max)
        })?;
        Ok(if pinned {
            Survey::Pinned
        } else if live_bytes > live_max {
            Survey::TooLive(live_bytes)
        } else {
            Survey::Qualifies(live)
        })
    }

    /// Rewrites the `live` entries of `fid` still live now, then deletes
    /// the file. `None` if it turned out that the file must stay (a pinned
    /// entry).
    fn rewrite_and_retire(
        &self,
        fid: u32,
        len: u64,
        live: &[ValuePointer],
    ) -> Result<Option<GcReport>> {
        let sender = self.write_tx.lock().clone().ok_or(Error::Closed)?;
        let (done_tx, done_rx) = crossbeam_channel::unbounded::<Result<()>>();
        self.vlog.gc.begin(fid);
        let guard = TargetGuard(self, false);
        let now = now_secs();
        let mut batch: Vec<WriteEntry> = Vec::new();
        let mut batch_bytes = 0usize;
        let mut in_flight = 0usize;
        let (mut entries, mut bytes) = (0u64, 0u64);
        let mut pinned = false;
        let mut sent = || -> Result<()> {
            for &vp in live {
                let e = self.vlog.read_entry(vp)?;
                match self.liveness(&e, vp, now)? {
                    Liveness::Dead => continue,
                    Liveness::Pinned => {
                        pinned = true;
                        return Ok(());
                    }
                    Liveness::Live => {}
                }
                entries += 1;
                bytes += u64::from(vp.len);
                batch_bytes += e.key.len() + e.value.len();
                batch.push(WriteEntry {
                    key: e.key,
                    value: e.value,
                    meta: e.meta,
                    user_meta: e.user_meta,
                    expires_at: e.expires_at,
                    version: e.version,
                });
                if batch.len() >= BATCH_ENTRIES_MAX || batch_bytes >= BATCH_BYTES_MAX {
                    if self.is_closing() {
                        return Err(Error::Closed);
                    }
                    send_rewrite(&sender, std::mem::take(&mut batch), &done_tx)?;
                    crate::crash_point::hit("vlog_gc.rewrite_queued");
                    batch_bytes = 0;
                    in_flight += 1;
                    if in_flight >= IN_FLIGHT_MAX {
                        in_flight -= 1;
                        wait_one(&done_rx)?;
                    }
                }
            }
            if !batch.is_empty() {
                send_rewrite(&sender, std::mem::take(&mut batch), &done_tx)?;
                crate::crash_point::hit("vlog_gc.rewrite_queued");
                in_flight += 1;
            }
            Ok(())
        };
        let sent_result = sent();
        // Requests already queued hold the target: let them all finish.
        let mut first_err = sent_result.err();
        for _ in 0..in_flight {
            if let Err(e) = wait_one(&done_rx) {
                first_err.get_or_insert(e);
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        // Durable before the original goes: a crash now replays the
        // rewrites, which lie after the replay head.
        self.sync_vlog()?;
        crate::crash_point::hit("vlog_gc.rewrites_synced");
        let (declined, all_checked) = guard.finish();
        if pinned || !all_checked {
            return Ok(None);
        }
        if self.opts.managed {
            let horizon = self.snapshot_horizon();
            for (key, version) in &declined {
                let referenced = self.get_at(key, *version)?.is_some_and(|(v, vs)| {
                    v == *version && vs.pointer().is_some_and(|p| p.fid == fid)
                });
                if referenced && self.needed_by_future_snapshots(key, *version, horizon)? {
                    return Ok(None);
                }
            }
        }
        // Readers active now may hold pointers into the file; later ones
        // see only the rewrites.
        let readers = self.oracle.active_reads();
        let deferred = !readers.is_empty();
        self.vlog.retire(fid, readers)?;
        let rewritten = entries - declined.len() as u64;
        let gc = &self.vlog.gc;
        gc.files_collected.fetch_add(1, Ordering::Relaxed);
        gc.bytes_reclaimed.fetch_add(len, Ordering::Relaxed);
        gc.entries_rewritten.fetch_add(rewritten, Ordering::Relaxed);
        tracing::info!(
            fid,
            file_bytes = len,
            rewritten,
            declined = declined.len(),
            deferred,
            "value-log file collected"
        );
        Ok(Some(GcReport {
            fid,
            file_bytes: len,
            rewritten_entries: rewritten,
            rewritten_bytes: bytes,
            deferred,
        }))
    }

    /// Called by the commit thread before it writes `group`: for every
    /// value-log GC rewrite request, which of its entries are still live
    /// (newest version of their key, still pointing into the file being
    /// collected). Empty when the group holds no rewrite; `None` for a
    /// request that is kept whole.
    pub(crate) fn rewrite_filter(&self, group: &[WriteRequest]) -> Vec<Option<Vec<bool>>> {
        if !group.iter().any(|r| r.rewrite) {
            return Vec::new();
        }
        let Some(fid) = self.vlog.gc.target() else {
            return Vec::new();
        };
        group
            .iter()
            .map(|r| {
                if !r.rewrite {
                    return None;
                }
                let keep = r
                    .entries
                    .iter()
                    .map(|e| {
                        let keep = match self.get_at(&e.key, u64::MAX) {
                            Ok(Some((v, vs))) => {
                                v == e.version && vs.pointer().is_some_and(|p| p.fid == fid)
                            }
                            Ok(None) => false,
                            Err(err) => {
                                tracing::warn!(error = %err, "value-log GC: could not check a rewrite");
                                self.vlog.gc.check_failed();
                                false
                            }
                        };
                        if !keep {
                            self.vlog.gc.decline(&e.key, e.version);
                        }
                        keep
                    })
                    .collect();
                Some(keep)
            })
            .collect()
    }
}

fn send_rewrite(
    sender: &Sender<WriteRequest>,
    entries: Vec<WriteEntry>,
    done_tx: &Sender<Result<()>>,
) -> Result<()> {
    let done_tx = done_tx.clone();
    let commit_ts = entries.iter().map(|e| e.version).max().unwrap_or(0);
    sender
        .send(WriteRequest {
            entries,
            commit_ts,
            sync: false,
            rewrite: true,
            done: Box::new(move |r| {
                let _ = done_tx.send(r);
            }),
        })
        .map_err(|_| Error::Closed)
}

fn wait_one(done_rx: &Receiver<Result<()>>) -> Result<()> {
    done_rx.recv().unwrap_or(Err(Error::Closed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Options;

    fn rewrite_of(db: &DbInner, key: &[u8], version: u64) -> WriteRequest {
        let (v, vs) = db.get_at(key, version).unwrap().unwrap();
        assert_eq!(v, version);
        let value = db.resolve_value(&vs).unwrap();
        WriteRequest {
            entries: vec![WriteEntry {
                key: key.to_vec(),
                value,
                meta: 0,
                user_meta: vs.user_meta,
                expires_at: vs.expires_at,
                version,
            }],
            commit_ts: version,
            sync: false,
            rewrite: true,
            done: Box::new(|_| {}),
        }
    }

    /// The commit thread's last-moment check: a rewrite of a version that
    /// a newer commit shadows (a commit racing with GC) is declined.
    #[test]
    fn filter_declines_shadowed_and_moved_rewrites() {
        let db = Db::open(Options {
            value_threshold: 16,
            ..Options::in_memory()
        })
        .unwrap();
        let inner = db.inner();
        db.update(|t| t.set(b"k".to_vec(), vec![1; 100])).unwrap();
        db.update(|t| t.set(b"j".to_vec(), vec![2; 100])).unwrap();
        db.flush().unwrap();
        let v1 = inner.get_at(b"k", u64::MAX).unwrap().unwrap().0;
        let vj = inner.get_at(b"j", u64::MAX).unwrap().unwrap().0;
        let fid = inner
            .get_at(b"k", v1)
            .unwrap()
            .unwrap()
            .1
            .pointer()
            .unwrap()
            .fid;
        let group = vec![rewrite_of(inner, b"k", v1), rewrite_of(inner, b"j", vj)];
        // No GC running: rewrites pass as they are.
        assert!(inner.rewrite_filter(&group).is_empty());

        inner.vlog.gc.begin(fid);
        assert_eq!(
            inner.rewrite_filter(&group),
            vec![Some(vec![true]), Some(vec![true])]
        );
        db.update(|t| t.set(b"k".to_vec(), vec![3; 100])).unwrap();
        assert_eq!(
            inner.rewrite_filter(&group),
            vec![Some(vec![false]), Some(vec![true])]
        );
        let (declined, all_checked) = inner.vlog.gc.end();
        assert!(all_checked);
        assert_eq!(declined, vec![(b"k".to_vec(), v1)]);
        // Pointing into another file than the target: declined too.
        inner.vlog.gc.begin(fid + 1);
        assert_eq!(inner.rewrite_filter(&group[1..]), vec![Some(vec![false])]);
        inner.vlog.gc.end();
    }
}
