//! The commit path: one thread takes commits off a queue in timestamp
//! order, writes each group of them to the value log with one append and
//! at most one fsync (group commit), then applies them to the memtable and
//! makes them visible.

use super::metrics::Metrics;
use super::DbInner;
use crate::format::{key_with_version, ValuePointer, ValueStruct};
use crate::memtable::Memtable;
use crate::vlog::{begin_record, encode_entry, finish_record, WriteEntry};
use crate::{Error, Result};
use crossbeam_channel::Receiver;
use std::sync::Arc;
use std::time::Duration;

/// Most commits written as one group.
const MAX_GROUP_COMMITS: usize = 1024;
/// Most bytes written as one group (a single larger commit still goes alone).
const MAX_GROUP_BYTES: usize = 16 << 20;
/// How long a writer waits per check when the tree is stalled.
const STALL_WAIT: Duration = Duration::from_millis(50);

/// One commit on its way to the log.
pub(crate) struct WriteRequest {
    /// The commit's writes, all at `commit_ts` (a rewrite's entries keep
    /// their own versions).
    pub(crate) entries: Vec<WriteEntry>,
    /// Commit timestamp.
    pub(crate) commit_ts: u64,
    /// Wait for fsync even if `sync_writes` is off.
    pub(crate) sync: bool,
    /// The entries rewrite existing versions (value-log GC): they neither
    /// follow commit order nor change what is visible.
    pub(crate) rewrite: bool,
    /// Called once with the outcome.
    pub(crate) done: Box<dyn FnOnce(Result<()>) + Send>,
}

impl std::fmt::Debug for WriteRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteRequest")
            .field("entries", &self.entries.len())
            .field("commit_ts", &self.commit_ts)
            .finish()
    }
}

fn encoded_size(r: &WriteRequest) -> usize {
    r.entries
        .iter()
        .map(|e| e.key.len() + e.value.len() + 32)
        .sum::<usize>()
        + 16
}

/// Body of the commit thread; returns when every sender is gone.
pub(crate) fn writer_loop(db: Arc<DbInner>, rx: Receiver<WriteRequest>) {
    while let Ok(first) = rx.recv() {
        let mut bytes = encoded_size(&first);
        let mut group = vec![first];
        while group.len() < MAX_GROUP_COMMITS && bytes < MAX_GROUP_BYTES {
            match rx.try_recv() {
                Ok(r) => {
                    bytes += encoded_size(&r);
                    group.push(r);
                }
                Err(_) => break,
            }
        }
        match db.write_group(&group, bytes) {
            Ok(()) => {
                for r in group {
                    (r.done)(Ok(()));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                db.set_bg_error(msg.clone());
                let mut first = Some(e);
                for r in group {
                    (r.done)(Err(first
                        .take()
                        .unwrap_or_else(|| Error::Poisoned(msg.clone()))));
                }
            }
        }
    }
}

impl DbInner {
    fn write_group(&self, group: &[WriteRequest], size_hint: usize) -> Result<()> {
        self.check_bg_error()?;
        self.make_room()?;
        // Requests without entries are control markers (see `Db::flush`).
        let commits = || group.iter().filter(|r| !r.entries.is_empty());
        let ordered = || commits().filter(|r| !r.rewrite);
        debug_assert!(
            self.opts.managed
                || ordered()
                    .zip(ordered().skip(1))
                    .all(|(a, b)| a.commit_ts < b.commit_ts)
        );
        if commits().next().is_none() {
            return Ok(());
        }
        let last_ts = ordered().map(|r| r.commit_ts).max();
        let threshold = self.opts.value_threshold;
        let n_entries: usize = group.iter().map(|r| r.entries.len()).sum();
        let mut applied: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(n_entries);
        // Value-log GC rewrites that are no longer current are left out
        // (`db/gc.rs`); `None` keeps every entry of a request.
        let keep = self.rewrite_filter(group);
        let kept = |i: usize| keep.get(i).and_then(Option::as_ref);
        // Bytes of this group the tree will not point at (discard stats).
        let mut unreferenced = (0u32, 0u64);
        let end = self.vlog.append_with(size_hint, |(fid, base)| {
            let mut buf = Vec::with_capacity(size_hint);
            let mut pointer_bytes = 0usize;
            for (i, req) in group.iter().enumerate() {
                if req.entries.is_empty() || kept(i).is_some_and(|k| !k.contains(&true)) {
                    continue;
                }
                let start = begin_record(&mut buf);
                for (j, e) in req.entries.iter().enumerate() {
                    if kept(i).is_some_and(|k| !k[j]) {
                        continue;
                    }
                    debug_assert!(req.rewrite || e.version == req.commit_ts);
                    let at = buf.len();
                    let n = encode_entry(&mut buf, e);
                    let vp = ValuePointer {
                        fid,
                        len: n as u32,
                        offset: base + at as u64,
                    };
                    let vs = ValueStruct::for_log_entry(
                        e.meta,
                        e.user_meta,
                        e.expires_at,
                        &e.value,
                        threshold,
                        vp,
                    );
                    if vs.pointer().is_some() {
                        pointer_bytes += n;
                    }
                    applied.push((key_with_version(&e.key, e.version), vs.encode()));
                }
                finish_record(&mut buf, start);
            }
            unreferenced = (fid, (buf.len() - pointer_bytes) as u64);
            buf
        })?;
        self.vlog
            .discard
            .add_written(unreferenced.0, unreferenced.1, end);
        if self.opts.sync_writes || group.iter().any(|r| r.sync) {
            self.sync_vlog()?;
            Metrics::add(&self.metrics.syncs, 1);
        }
        let m = &self.metrics;
        Metrics::add(&m.commit_groups, 1);
        for r in commits().filter(|r| !r.rewrite) {
            Metrics::add(&m.commits, 1);
            Metrics::add(&m.entries_written, r.entries.len() as u64);
            let bytes: usize = r.entries.iter().map(|e| e.key.len() + e.value.len()).sum();
            Metrics::add(&m.bytes_written, bytes as u64);
        }
        let mem = self.mem.read().active.clone();
        for (k, v) in applied {
            mem.insert(k, v);
        }
        mem.set_vlog_end(end);
        if let Some(ts) = last_ts {
            self.oracle.set_visible(ts);
        }
        self.publish(group);
        Ok(())
    }

    /// Before a group is written: slows or stops writers while L0 is too
    /// deep, and freezes a full memtable, waiting while too many frozen
    /// ones are queued for flush.
    fn make_room(&self) -> Result<()> {
        if self.opts.background_compaction {
            loop {
                let l0 = self.levels.current().levels[0].len();
                if l0 < self.opts.l0_stall_trigger {
                    if l0 >= self.opts.l0_slowdown_trigger {
                        Metrics::add(&self.metrics.write_slowdowns, 1);
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    break;
                }
                self.check_bg_error()?;
                tracing::debug!(l0, "writes stalled until L0 compaction catches up");
                Metrics::add(&self.metrics.write_stalls, 1);
                self.wait_state_change(STALL_WAIT);
            }
        }
        if self.mem.read().active.size_bytes() < self.opts.memtable_size {
            return Ok(());
        }
        while self.mem.read().immutables.len() >= self.opts.max_immutable_memtables {
            self.check_bg_error()?;
            self.wait_state_change(STALL_WAIT);
        }
        self.rotate_memtable();
        Ok(())
    }

    /// Freezes the active memtable and queues it for flush. Called only by
    /// the commit thread, or at close once that thread has stopped.
    pub(crate) fn rotate_memtable(&self) {
        let fresh = Arc::new(Memtable::new(self.vlog.position()));
        let old = {
            let mut m = self.mem.write();
            let old = std::mem::replace(&mut m.active, fresh);
            m.immutables.push_back(old.clone());
            old
        };
        if let Some(tx) = &*self.flush_tx.lock() {
            // The flush thread only stops after this sender is dropped.
            let _ = tx.send(old);
        }
    }
}
