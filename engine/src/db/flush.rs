//! Flushing frozen memtables into L0 tables, and the compaction workers.

use super::DbInner;
use crate::levels::{compact_once, pick_bottom_rewrite, pick_compaction, table_meta};
use crate::manifest::ManifestEdit;
use crate::memtable::Memtable;
use crate::table::TableBuilder;
use crate::Result;
use crossbeam_channel::Receiver;
use std::sync::Arc;
use std::time::Duration;

/// Body of the flush thread: flushes memtables in the order they froze.
pub(crate) fn flush_loop(db: Arc<DbInner>, rx: Receiver<Arc<Memtable>>) {
    while let Ok(m) = rx.recv() {
        if let Err(e) = db.flush_memtable(&m) {
            db.set_bg_error(format!("flush failed: {e}"));
        }
    }
}

/// Body of a compaction thread.
pub(crate) fn compaction_loop(db: Arc<DbInner>) {
    while !db.is_closing() {
        if db.check_bg_error().is_err() {
            db.wait_state_change(Duration::from_millis(200));
            continue;
        }
        match pick_compaction(&db, false) {
            Some(c) => {
                super::metrics::Metrics::add(&db.metrics.compactions, 1);
                if let Err(e) = compact_once(&db, c) {
                    db.set_bg_error(format!("compaction failed: {e}"));
                }
            }
            None => {
                db.levels.collect_garbage(&*db.fs);
                db.release_collected_vlog_files();
                db.wait_state_change(Duration::from_millis(100));
            }
        }
    }
}

impl DbInner {
    /// Writes the oldest frozen memtable `m` to an L0 table and records it,
    /// with the new value-log replay point, in the manifest.
    pub(crate) fn flush_memtable(&self, m: &Arc<Memtable>) -> Result<()> {
        {
            let mem = self.mem.read();
            debug_assert!(mem.immutables.front().is_some_and(|f| Arc::ptr_eq(f, m)));
        }
        let mut edits = Vec::new();
        let mut table = None;
        if !m.is_empty() {
            let mut b = TableBuilder::new(self.table_options());
            m.for_each(|k, v| b.add(k, v));
            let t = self.write_table(b)?;
            self.fs.sync_dir(&self.dir)?;
            crate::crash_point::hit("flush.table_written");
            edits.push(ManifestEdit::AddTable(table_meta(&t, 0)));
            table = Some(t);
        }
        // Values the table points at must be durable before the manifest
        // makes the table (and the later replay start) official.
        self.sync_vlog()?;
        let (fid, offset) = m.vlog_end();
        edits.push(ManifestEdit::VlogHead { fid, offset });
        edits.push(ManifestEdit::NextFileId(self.next_file_id()));
        edits.push(ManifestEdit::MaxVersion(m.max_version()));
        self.apply_edits(&edits)?;
        crate::crash_point::hit("flush.manifest_applied");
        if let Some(t) = table {
            self.levels.add_l0(t);
        }
        super::metrics::Metrics::add(&self.metrics.flushes, 1);
        let popped = self.mem.write().immutables.pop_front();
        debug_assert!(popped.is_some_and(|p| Arc::ptr_eq(&p, m)));
        // The flushed values' log copies now count as garbage on disk too.
        self.vlog.persist_discard();
        self.notify_state_change();
        Ok(())
    }

    /// Pushes every table down to the last level, then rewrites each
    /// last-level table once so that nothing invisible to every snapshot
    /// survives. Used by `Db::compact`.
    pub(crate) fn compact_fully(&self) -> Result<()> {
        self.compact_all(true)?;
        let v = self.levels.current();
        let ids: Vec<u64> = v.levels[v.levels.len() - 1]
            .iter()
            .map(|t| t.id())
            .collect();
        drop(v);
        for id in ids {
            loop {
                self.check_bg_error()?;
                if let Some(c) = pick_bottom_rewrite(self, id) {
                    compact_once(self, c)?;
                    break;
                }
                let v = self.levels.current();
                if !v.levels[v.levels.len() - 1].iter().any(|t| t.id() == id) {
                    break; // a background compaction already replaced it
                }
                self.wait_state_change(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// Runs compactions until no level needs one; with `force`, pushes
    /// every table down to the last level.
    pub(crate) fn compact_all(&self, force: bool) -> Result<()> {
        let mut rounds = 0u64;
        loop {
            self.check_bg_error()?;
            match pick_compaction(self, force) {
                Some(c) => {
                    super::metrics::Metrics::add(&self.metrics.compactions, 1);
                    compact_once(self, c)?
                }
                None => {
                    if self.levels.busy.lock().is_empty() {
                        return Ok(());
                    }
                    // A background compaction holds tables we need.
                    self.wait_state_change(Duration::from_millis(20));
                }
            }
            rounds += 1;
            debug_assert!(rounds < 1_000_000, "compaction does not converge");
        }
    }
}
