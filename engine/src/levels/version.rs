//! The set of live tables, per level, as one immutable snapshot.
//!
//! Invariants:
//! - L0 tables may overlap and are kept newest first (highest id first);
//! - tables of L1 and deeper never overlap and are sorted by key; a user
//!   key's versions never straddle two tables of one level;
//! - for any user key, every version in a shallower level (or a newer L0
//!   table) is newer than every version in a deeper level, so the first
//!   match found top-down is the newest.
//!
//! Readers clone the current `Arc<Version>`; compaction installs a new one.
//! Tables that a compaction replaced stay on disk until no snapshot holds
//! them any more.

use crate::format::{compare_keys, key_with_version, user_key};
use crate::fs::Fs;
use crate::table::Table;
use crate::Result;
use parking_lot::{Mutex, RwLock};
use std::collections::HashSet;
use std::sync::Arc;

/// One immutable view of the tree's tables.
#[derive(Debug, Clone, Default)]
pub(crate) struct Version {
    /// `levels[0]` newest first; deeper levels sorted by smallest key.
    pub(crate) levels: Vec<Vec<Arc<Table>>>,
}

impl Version {
    /// Total file bytes of level `l`.
    pub(crate) fn level_bytes(&self, l: usize) -> u64 {
        self.levels[l].iter().map(|t| t.size()).sum()
    }

    /// Tables of level `l >= 1` whose user-key range meets `[lo, hi]`.
    pub(crate) fn overlapping(&self, l: usize, lo: &[u8], hi: &[u8]) -> Vec<Arc<Table>> {
        self.levels[l]
            .iter()
            .filter(|t| user_key(t.smallest()) <= hi && user_key(t.largest()) >= lo)
            .cloned()
            .collect()
    }

    /// The newest version of `key` at or below `read_ts` in the tables:
    /// `(version, encoded value)`.
    pub(crate) fn get(
        &self,
        key: &[u8],
        hash: u64,
        read_ts: u64,
    ) -> Result<Option<(u64, Vec<u8>)>> {
        let seek = key_with_version(key, read_ts);
        let probe = |t: &Table| -> Result<Option<(u64, Vec<u8>)>> {
            if !t.may_contain(hash) {
                return Ok(None);
            }
            match t.seek_first(&seek)? {
                Some((k, v)) if user_key(&k) == key => {
                    Ok(Some((crate::format::key_version(&k), v)))
                }
                _ => Ok(None),
            }
        };
        for t in &self.levels[0] {
            if user_key(t.smallest()) <= key && key <= user_key(t.largest()) {
                if let Some(hit) = probe(t)? {
                    return Ok(Some(hit));
                }
            }
        }
        for level in &self.levels[1..] {
            let i = level.partition_point(|t| user_key(t.largest()) < key);
            if let Some(t) = level.get(i) {
                if user_key(t.smallest()) <= key {
                    if let Some(hit) = probe(t)? {
                        return Ok(Some(hit));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Checks the level invariants; returns a description of the first
    /// violation.
    pub(crate) fn check_invariants(&self) -> Option<String> {
        for w in self.levels[0].windows(2) {
            if w[0].id() <= w[1].id() {
                return Some(format!(
                    "L0 not newest first: {} before {}",
                    w[0].id(),
                    w[1].id()
                ));
            }
        }
        for (l, level) in self.levels.iter().enumerate().skip(1) {
            for t in level {
                if compare_keys(t.smallest(), t.largest()).is_gt() {
                    return Some(format!("table {} has smallest > largest", t.id()));
                }
            }
            for w in level.windows(2) {
                if user_key(w[0].largest()) >= user_key(w[1].smallest()) {
                    return Some(format!(
                        "L{l} tables {} and {} overlap",
                        w[0].id(),
                        w[1].id()
                    ));
                }
            }
        }
        None
    }
}

/// Where a running compaction writes: output level, smallest and largest
/// user key.
pub(crate) type OutputRange = (usize, Vec<u8>, Vec<u8>);

/// The live tree: the current version plus compaction bookkeeping.
#[derive(Debug)]
pub(crate) struct Levels {
    current: RwLock<Arc<Version>>,
    /// Tables that a running compaction is reading. Pickers read the
    /// current version and compactions install theirs while holding this
    /// lock, so the marks always agree with the version a picker sees.
    pub(crate) busy: Mutex<HashSet<u64>>,
    /// Output level and user-key range of every running compaction; locked
    /// only while `busy` is held. A new compaction whose output range meets
    /// one of these at the same level would overlap tables not yet installed.
    pub(crate) running: Mutex<Vec<OutputRange>>,
    /// Tables no longer in the tree, waiting for their last reader.
    obsolete: Mutex<Vec<Arc<Table>>>,
    /// Per level, the largest key of the last table compacted out of it,
    /// so successive compactions walk the key space round-robin.
    pub(crate) cursor: Mutex<Vec<Vec<u8>>>,
}

impl Levels {
    /// A tree holding `version`.
    pub(crate) fn new(version: Version) -> Levels {
        let n = version.levels.len();
        Levels {
            current: RwLock::new(Arc::new(version)),
            busy: Mutex::new(HashSet::new()),
            running: Mutex::new(Vec::new()),
            obsolete: Mutex::new(Vec::new()),
            cursor: Mutex::new(vec![Vec::new(); n]),
        }
    }

    /// The current version.
    pub(crate) fn current(&self) -> Arc<Version> {
        self.current.read().clone()
    }

    /// Adds a freshly flushed table to L0.
    pub(crate) fn add_l0(&self, table: Arc<Table>) {
        let mut cur = self.current.write();
        let mut v = (**cur).clone();
        v.levels[0].insert(0, table);
        *cur = Arc::new(v);
    }

    /// Adds ingested tables to `level` (L0: newer than all its tables;
    /// deeper: not overlapping any table there).
    pub(crate) fn install_ingested(&self, level: usize, mut tables: Vec<Arc<Table>>) {
        let _busy = self.busy.lock();
        let mut cur = self.current.write();
        let mut v = (**cur).clone();
        if level == 0 {
            tables.sort_by_key(|t| std::cmp::Reverse(t.id()));
            tables.append(&mut v.levels[0]);
            v.levels[0] = tables;
        } else {
            v.levels[level].extend(tables);
            v.levels[level].sort_by(|a, b| compare_keys(a.smallest(), b.smallest()));
        }
        debug_assert_eq!(v.check_invariants(), None);
        *cur = Arc::new(v);
    }

    /// Replaces `removed` tables by `added` ones (at `level`) atomically.
    pub(crate) fn replace(&self, removed: &HashSet<u64>, level: usize, added: Vec<Arc<Table>>) {
        let mut cur = self.current.write();
        let mut v = (**cur).clone();
        let mut gone = Vec::new();
        let readded: HashSet<u64> = added.iter().map(|t| t.id()).collect();
        for lvl in &mut v.levels {
            lvl.retain(|t| {
                let keep = !removed.contains(&t.id());
                if !keep && !readded.contains(&t.id()) {
                    gone.push(t.clone());
                }
                keep
            });
        }
        v.levels[level].extend(added);
        if level == 0 {
            v.levels[0].sort_by_key(|t| std::cmp::Reverse(t.id()));
        } else {
            v.levels[level].sort_by(|a, b| compare_keys(a.smallest(), b.smallest()));
        }
        debug_assert_eq!(v.check_invariants(), None);
        *cur = Arc::new(v);
        drop(cur);
        self.obsolete.lock().extend(gone);
    }

    /// Deletes the files of replaced tables that no reader holds any more.
    pub(crate) fn collect_garbage(&self, fs: &dyn Fs) {
        let mut obsolete = self.obsolete.lock();
        obsolete.retain(|t| {
            if Arc::strong_count(t) > 1 {
                return true;
            }
            if let Err(e) = fs.remove(t.path()) {
                tracing::warn!(path = %t.path().display(), error = %e, "could not delete obsolete table");
            }
            false
        });
    }
}
