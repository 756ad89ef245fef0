//! Leveled compaction: choosing what to compact and merging it.
//!
//! L0 is compacted into L1 when it holds `l0_compaction_trigger` tables
//! (all L0 tables at once, since they overlap). A deeper level Ln is
//! compacted when its size passes its target (`base_level_size ×
//! multiplier^(n-1)`): one table, chosen round-robin over the key space,
//! merged with the tables of Ln+1 it overlaps. A table with nothing to
//! merge with is moved down without rewriting it.
//!
//! While merging, for each user key every version newer than the discard
//! timestamp is kept; of the versions at or below it only the newest is
//! kept, and that one too is dropped if it is a tombstone or has expired
//! and no deeper level holds the key range.

use super::Version;
use crate::db::DbInner;
use crate::format::{key_version, now_secs, user_key, ValueStruct};
use crate::iter::{LevelIter, MergeIter, Source};
use crate::manifest::{ManifestEdit, TableMeta};
use crate::table::{Table, TableBuilder, TableIter};
use crate::Result;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// One chosen compaction; its input tables are marked busy.
#[derive(Debug)]
pub(crate) struct Compaction {
    /// Level the `top` tables come from.
    pub(crate) level: usize,
    /// Tables from `level` (L0: newest first).
    pub(crate) top: Vec<Arc<Table>>,
    /// Level the result goes to: `level + 1`, or `level` itself when a
    /// last-level table is rewritten to drop what no snapshot can see.
    pub(crate) out_level: usize,
    /// Overlapping tables from `out_level`, sorted.
    pub(crate) bottom: Vec<Arc<Table>>,
}

impl Compaction {
    fn ids(&self) -> HashSet<u64> {
        self.top
            .iter()
            .chain(&self.bottom)
            .map(|t| t.id())
            .collect()
    }

    fn key_range(&self) -> (Vec<u8>, Vec<u8>) {
        let all = || self.top.iter().chain(&self.bottom);
        let lo = all()
            .map(|t| user_key(t.smallest()))
            .min()
            .unwrap_or_default()
            .to_vec();
        let hi = all()
            .map(|t| user_key(t.largest()))
            .max()
            .unwrap_or_default()
            .to_vec();
        (lo, hi)
    }
}

/// Target size of level `l >= 1`.
fn level_target(db: &DbInner, l: usize) -> u64 {
    let o = &db.opts;
    let mut t = o.base_level_size;
    for _ in 1..l {
        t = t.saturating_mul(o.level_size_multiplier);
    }
    t
}

/// Chooses the most urgent compaction and marks its tables busy. With
/// `force`, any level that is not the last and holds tables qualifies
/// (shallowest first): used to push all data down.
pub(crate) fn pick_compaction(db: &DbInner, force: bool) -> Option<Compaction> {
    // Read the version under the busy lock: a finishing compaction installs
    // its result and clears its marks under it, so a stale version can never
    // offer tables that are already gone.
    let mut busy = db.levels.busy.lock();
    let v = db.levels.current();
    let last = v.levels.len() - 1;
    let mut scores: Vec<(f64, usize)> = Vec::new();
    scores.push((
        v.levels[0].len() as f64 / db.opts.l0_compaction_trigger as f64,
        0,
    ));
    for l in 1..last {
        scores.push((v.level_bytes(l) as f64 / level_target(db, l) as f64, l));
    }
    if force {
        scores = (0..last)
            .filter(|&l| !v.levels[l].is_empty())
            .map(|l| (1.0, l))
            .collect();
    } else {
        scores.retain(|(s, _)| *s >= 1.0);
        scores.sort_by(|a, b| b.0.total_cmp(&a.0));
    }
    let mut running = db.levels.running.lock();
    for (_, l) in scores {
        let c = if l == 0 {
            pick_l0(&v, &busy)
        } else {
            pick_level(db, &v, l, &busy)
        };
        if let Some(c) = c {
            let (lo, hi) = c.key_range();
            let out = c.out_level;
            let clash = running.iter().any(|(ol, rlo, rhi)| {
                *ol == out && rlo.as_slice() <= hi.as_slice() && lo.as_slice() <= rhi.as_slice()
            });
            if clash {
                continue;
            }
            busy.extend(c.ids());
            running.push((out, lo, hi));
            return Some(c);
        }
    }
    None
}

/// Clears the busy marks and output range of `c`, first installing its
/// result (`added` at the output level) if it succeeded. One step under
/// the busy lock, so pickers see either both or neither.
fn finish(db: &DbInner, c: &Compaction, added: Option<Vec<Arc<Table>>>) {
    let ids = c.ids();
    let mut busy = db.levels.busy.lock();
    if let Some(added) = added {
        db.levels.replace(&ids, c.out_level, added);
    }
    busy.retain(|id| !ids.contains(id));
    let range = c.key_range();
    let mut running = db.levels.running.lock();
    if let Some(i) = running
        .iter()
        .position(|(ol, lo, hi)| *ol == c.out_level && (lo, hi) == (&range.0, &range.1))
    {
        running.swap_remove(i);
    }
}

/// Marks last-level table `id` busy and returns a compaction that rewrites
/// it in place, dropping the versions no snapshot can see, tombstones and
/// expired entries. `None` if the table is gone or busy.
pub(crate) fn pick_bottom_rewrite(db: &DbInner, id: u64) -> Option<Compaction> {
    let mut busy = db.levels.busy.lock();
    let v = db.levels.current();
    let last = v.levels.len() - 1;
    let t = v.levels[last].iter().find(|t| t.id() == id)?.clone();
    if busy.contains(&id) {
        return None;
    }
    busy.insert(id);
    let (lo, hi) = (
        user_key(t.smallest()).to_vec(),
        user_key(t.largest()).to_vec(),
    );
    db.levels.running.lock().push((last, lo, hi));
    Some(Compaction {
        level: last,
        out_level: last,
        top: vec![t],
        bottom: Vec::new(),
    })
}

fn pick_l0(v: &Version, busy: &HashSet<u64>) -> Option<Compaction> {
    let top = v.levels[0].clone();
    if top.is_empty() || top.iter().any(|t| busy.contains(&t.id())) {
        return None;
    }
    let lo = top.iter().map(|t| user_key(t.smallest())).min()?;
    let hi = top.iter().map(|t| user_key(t.largest())).max()?;
    let bottom = v.overlapping(1, lo, hi);
    if bottom.iter().any(|t| busy.contains(&t.id())) {
        return None;
    }
    Some(Compaction {
        level: 0,
        out_level: 1,
        top,
        bottom,
    })
}

fn pick_level(db: &DbInner, v: &Version, l: usize, busy: &HashSet<u64>) -> Option<Compaction> {
    let tables = &v.levels[l];
    if tables.is_empty() {
        return None;
    }
    let cursor = db.levels.cursor.lock()[l].clone();
    let start = tables.partition_point(|t| user_key(t.smallest()) <= cursor.as_slice());
    for i in (start..tables.len()).chain(0..start) {
        let t = &tables[i];
        if busy.contains(&t.id()) {
            continue;
        }
        let bottom = v.overlapping(l + 1, user_key(t.smallest()), user_key(t.largest()));
        if bottom.iter().any(|b| busy.contains(&b.id())) {
            continue;
        }
        db.levels.cursor.lock()[l] = user_key(t.largest()).to_vec();
        return Some(Compaction {
            level: l,
            out_level: l + 1,
            top: vec![t.clone()],
            bottom,
        });
    }
    None
}

/// Runs `c` to completion and installs the result. The busy marks are
/// cleared whether it succeeds or not.
pub(crate) fn compact_once(db: &DbInner, c: Compaction) -> Result<()> {
    let res = run(db, &c);
    if res.is_err() {
        finish(db, &c, None);
    }
    db.levels.collect_garbage(&*db.fs);
    db.notify_state_change();
    res
}

fn run(db: &DbInner, c: &Compaction) -> Result<()> {
    let out_level = c.out_level;
    let removed = c.ids();
    if c.bottom.is_empty() && c.top.len() == 1 && out_level != c.level {
        // Nothing to merge with: move the table down as it is.
        let t = c.top[0].clone();
        let meta = table_meta(&t, out_level);
        db.apply_edits(&[
            ManifestEdit::DeleteTable { id: t.id() },
            ManifestEdit::AddTable(meta),
        ])?;
        finish(db, c, Some(vec![t]));
        tracing::debug!(level = c.level, "moved one table down");
        return Ok(());
    }

    let discard_ts = db.oracle.discard_ts();
    let (lo, hi) = c.key_range();
    let v = db.levels.current();
    let bottommost = (out_level + 1..v.levels.len()).all(|l| v.overlapping(l, &lo, &hi).is_empty());

    let mut sources: Vec<Source> = c
        .top
        .iter()
        .map(|t| Source::Table(TableIter::new(t.clone(), false)))
        .collect();
    if !c.bottom.is_empty() {
        sources.push(Source::Level(LevelIter::new(c.bottom.clone(), false)));
    }
    let mut it = MergeIter::new(sources, false);
    it.rewind()?;

    let now = now_secs();
    let mut outputs: Vec<TableBuilder> = Vec::new();
    let mut builder = TableBuilder::new(db.table_options());
    let mut cur_key: Option<Vec<u8>> = None;
    // Per user key: versions at or below the discard timestamp seen so far,
    // and whether the rest of them is hidden behind a deletion.
    let mut old_seen = 0usize;
    let mut old_hidden = false;
    let keep_old = db.opts.num_versions_to_keep;
    let mut dropped = 0u64;
    // Value-log bytes that dropped versions pointed at, per file: garbage
    // for value-log GC (`vlog/discard.rs`).
    let mut discarded: HashMap<u32, u64> = HashMap::new();
    while it.valid() {
        let ik = it.key();
        let uk = user_key(ik);
        if cur_key.as_deref() != Some(uk) {
            if builder.estimated_size() >= db.opts.table_size {
                let full = std::mem::replace(&mut builder, TableBuilder::new(db.table_options()));
                outputs.push(full);
            }
            cur_key = Some(uk.to_vec());
            old_seen = 0;
            old_hidden = false;
        }
        let keep = if key_version(ik) > discard_ts {
            true
        } else if old_hidden || old_seen >= keep_old {
            false
        } else {
            // Versions older than a deletion (or an expired entry) are
            // invisible to every reader at or above the discard timestamp.
            let gone =
                ValueStruct::decode(it.value()).is_some_and(|v| v.is_deleted_or_expired(now));
            old_seen += 1;
            old_hidden = gone;
            // A deletion stays as a marker while a deeper level may still
            // hold older versions of the key.
            !(gone && bottommost)
        };
        if keep {
            builder.add(ik, it.value());
        } else {
            dropped += 1;
            if let Some(vp) = ValueStruct::decode(it.value()).and_then(|v| v.pointer()) {
                *discarded.entry(vp.fid).or_insert(0) += u64::from(vp.len);
            }
        }
        it.next()?;
    }
    if !builder.is_empty() {
        outputs.push(builder);
    }

    let mut added = Vec::with_capacity(outputs.len());
    for b in outputs {
        added.push(db.write_table(b)?);
    }
    db.fs.sync_dir(&db.dir)?;
    crate::crash_point::hit("compaction.tables_written");
    let mut edits: Vec<ManifestEdit> = removed
        .iter()
        .map(|&id| ManifestEdit::DeleteTable { id })
        .collect();
    edits.extend(
        added
            .iter()
            .map(|t| ManifestEdit::AddTable(table_meta(t, out_level))),
    );
    edits.push(ManifestEdit::NextFileId(db.next_file_id()));
    db.apply_edits(&edits)?;
    crate::crash_point::hit("compaction.manifest_applied");
    tracing::debug!(
        level = c.level,
        inputs = removed.len(),
        outputs = added.len(),
        dropped,
        "compaction done"
    );
    finish(db, c, Some(added));
    if !discarded.is_empty() {
        for (fid, bytes) in discarded {
            db.vlog.note_discarded(fid, bytes);
        }
        db.vlog.persist_discard();
    }
    Ok(())
}

/// The manifest record of table `t` at `level`.
pub(crate) fn table_meta(t: &Table, level: usize) -> TableMeta {
    TableMeta {
        id: t.id(),
        level: level as u32,
        size: t.size(),
        smallest: t.smallest().to_vec(),
        largest: t.largest().to_vec(),
        max_version: t.max_version(),
    }
}
