//! A cursor over one level of non-overlapping tables (L1 and deeper),
//! opening each table's cursor only when the iteration reaches it.

use crate::format::compare_keys;
use crate::table::{Table, TableIter};
use crate::Result;
use std::sync::Arc;

/// Concatenates the sorted, non-overlapping tables of a level.
#[derive(Debug)]
pub(crate) struct LevelIter {
    tables: Vec<Arc<Table>>,
    reverse: bool,
    idx: usize,
    cur: Option<TableIter>,
}

impl LevelIter {
    /// `tables` sorted by key range, non-overlapping.
    pub(crate) fn new(tables: Vec<Arc<Table>>, reverse: bool) -> LevelIter {
        LevelIter {
            tables,
            reverse,
            idx: 0,
            cur: None,
        }
    }

    fn open(&mut self, idx: usize) -> &mut TableIter {
        self.idx = idx;
        self.cur
            .insert(TableIter::new(self.tables[idx].clone(), self.reverse))
    }

    /// Moves to neighbouring tables while the current one is exhausted.
    fn settle(&mut self) -> Result<()> {
        while let Some(it) = &self.cur {
            if it.valid() {
                return Ok(());
            }
            let next = if self.reverse {
                self.idx.checked_sub(1)
            } else {
                Some(self.idx + 1)
            };
            match next.filter(|&i| i < self.tables.len()) {
                Some(i) => self.open(i).rewind()?,
                None => {
                    self.cur = None;
                }
            }
        }
        Ok(())
    }

    pub(crate) fn rewind(&mut self) -> Result<()> {
        if self.tables.is_empty() {
            self.cur = None;
            return Ok(());
        }
        let i = if self.reverse {
            self.tables.len() - 1
        } else {
            0
        };
        self.open(i).rewind()?;
        self.settle()
    }

    pub(crate) fn seek(&mut self, ikey: &[u8]) -> Result<()> {
        // First table whose largest key >= ikey.
        let i = self
            .tables
            .partition_point(|t| compare_keys(t.largest(), ikey).is_lt());
        if self.reverse {
            // Last table whose smallest key <= ikey.
            let j = self
                .tables
                .partition_point(|t| compare_keys(t.smallest(), ikey).is_le());
            match j.checked_sub(1) {
                Some(j) => self.open(j).seek(ikey)?,
                None => self.cur = None,
            }
        } else if i < self.tables.len() {
            self.open(i).seek(ikey)?;
        } else {
            self.cur = None;
        }
        self.settle()
    }

    pub(crate) fn next(&mut self) -> Result<()> {
        if let Some(it) = &mut self.cur {
            it.next()?;
        }
        self.settle()
    }

    pub(crate) fn valid(&self) -> bool {
        self.cur.as_ref().is_some_and(|c| c.valid())
    }

    pub(crate) fn key(&self) -> &[u8] {
        self.cur.as_ref().expect("valid").key()
    }

    pub(crate) fn value(&self) -> &[u8] {
        self.cur.as_ref().expect("valid").value()
    }
}
