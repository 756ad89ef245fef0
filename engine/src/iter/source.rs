//! One sorted input of a merge: a memtable, a table, a level of tables or a
//! transaction's pending writes. An enum rather than a trait object keeps
//! the per-step dispatch cheap.

use super::LevelIter;
use crate::format::compare_keys;
use crate::memtable::MemtableIter;
use crate::table::TableIter;
use crate::Result;

/// A sorted cursor over internal keys.
#[derive(Debug)]
pub(crate) enum Source {
    Mem(MemtableIter),
    Table(TableIter),
    Level(LevelIter),
    Vec(VecIter),
}

impl Source {
    pub(crate) fn rewind(&mut self) -> Result<()> {
        match self {
            Source::Mem(i) => {
                i.rewind();
                Ok(())
            }
            Source::Table(i) => i.rewind(),
            Source::Level(i) => i.rewind(),
            Source::Vec(i) => {
                i.rewind();
                Ok(())
            }
        }
    }

    pub(crate) fn seek(&mut self, ikey: &[u8]) -> Result<()> {
        match self {
            Source::Mem(i) => {
                i.seek(ikey);
                Ok(())
            }
            Source::Table(i) => i.seek(ikey),
            Source::Level(i) => i.seek(ikey),
            Source::Vec(i) => {
                i.seek(ikey);
                Ok(())
            }
        }
    }

    pub(crate) fn next(&mut self) -> Result<()> {
        match self {
            Source::Mem(i) => {
                i.next();
                Ok(())
            }
            Source::Table(i) => i.next(),
            Source::Level(i) => i.next(),
            Source::Vec(i) => {
                i.next();
                Ok(())
            }
        }
    }

    pub(crate) fn valid(&self) -> bool {
        match self {
            Source::Mem(i) => i.valid(),
            Source::Table(i) => i.valid(),
            Source::Level(i) => i.valid(),
            Source::Vec(i) => i.valid(),
        }
    }

    pub(crate) fn key(&self) -> &[u8] {
        match self {
            Source::Mem(i) => i.key(),
            Source::Table(i) => i.key(),
            Source::Level(i) => i.key(),
            Source::Vec(i) => i.key(),
        }
    }

    pub(crate) fn value(&self) -> &[u8] {
        match self {
            Source::Mem(i) => i.value(),
            Source::Table(i) => i.value(),
            Source::Level(i) => i.value(),
            Source::Vec(i) => i.value(),
        }
    }
}

/// A cursor over an owned, sorted vector of entries (a transaction's
/// pending writes).
#[derive(Debug)]
pub(crate) struct VecIter {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    reverse: bool,
    /// Index of the current entry; `entries.len()` when invalid.
    pos: usize,
}

impl VecIter {
    /// `entries` must be sorted by [`compare_keys`].
    pub(crate) fn new(entries: Vec<(Vec<u8>, Vec<u8>)>, reverse: bool) -> VecIter {
        debug_assert!(entries
            .windows(2)
            .all(|w| compare_keys(&w[0].0, &w[1].0).is_lt()));
        let pos = entries.len();
        VecIter {
            entries,
            reverse,
            pos,
        }
    }

    fn rewind(&mut self) {
        self.pos = if self.reverse {
            self.entries
                .len()
                .checked_sub(1)
                .unwrap_or(self.entries.len())
        } else {
            0
        };
    }

    fn seek(&mut self, ikey: &[u8]) {
        let first_ge = self
            .entries
            .partition_point(|(k, _)| compare_keys(k, ikey).is_lt());
        self.pos = if self.reverse {
            let first_gt = self
                .entries
                .partition_point(|(k, _)| compare_keys(k, ikey).is_le());
            first_gt.checked_sub(1).unwrap_or(self.entries.len())
        } else {
            first_ge
        };
    }

    fn next(&mut self) {
        self.pos = if self.reverse {
            self.pos.checked_sub(1).unwrap_or(self.entries.len())
        } else {
            self.pos + 1
        };
    }

    fn valid(&self) -> bool {
        self.pos < self.entries.len()
    }

    fn key(&self) -> &[u8] {
        &self.entries[self.pos].0
    }

    fn value(&self) -> &[u8] {
        &self.entries[self.pos].1
    }
}
