//! Forward or reverse iteration over one table.
//!
//! Forward iteration decodes one entry per step, rebuilding the key in a
//! reused buffer. Reverse iteration decodes a whole block on entering it
//! (keys materialised into a reused [`DecodedBlock`]) and steps backwards
//! through it. Neither allocates per entry once warmed up.
//!
//! Any error (corruption) leaves the iterator invalid.

use super::block::{Block, DecodedBlock, EntryPos};
use super::reader::Table;
use crate::Result;
use std::fmt;
use std::sync::Arc;

/// Iterator over one table's entries in internal-key order
/// ([`crate::format::compare_keys`]) or its reverse.
///
/// Thread-safety: `Send`; use from one thread at a time.
pub(crate) struct TableIter {
    /// The table iterated.
    table: Arc<Table>,
    /// Direction: true steps from largest to smallest.
    reverse: bool,
    /// True when positioned on an entry.
    valid: bool,
    /// Index of the current block.
    block_idx: usize,
    /// The current block.
    block: Option<Arc<Block>>,
    /// Forward: the current key.
    key: Vec<u8>,
    /// Forward: the current entry's position in `block`.
    pos: EntryPos,
    /// Reverse: the current block's entries.
    decoded: DecodedBlock,
    /// Reverse: the current entry in `decoded`.
    rpos: usize,
}

impl fmt::Debug for TableIter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TableIter")
            .field("table", &self.table.id())
            .field("reverse", &self.reverse)
            .field("valid", &self.valid)
            .field("block_idx", &self.block_idx)
            .finish()
    }
}

impl TableIter {
    /// An unpositioned iterator; call [`Self::rewind`] or [`Self::seek`].
    pub(crate) fn new(table: Arc<Table>, reverse: bool) -> TableIter {
        TableIter {
            table,
            reverse,
            valid: false,
            block_idx: 0,
            block: None,
            key: Vec::new(),
            pos: EntryPos {
                value_start: 0,
                value_end: 0,
                next: 0,
            },
            decoded: DecodedBlock::default(),
            rpos: 0,
        }
    }

    /// Moves to the first entry (forward) or the last entry (reverse).
    pub(crate) fn rewind(&mut self) -> Result<()> {
        self.valid = false;
        let n = self.table.block_count();
        let res = if n == 0 {
            Ok(())
        } else if self.reverse {
            self.enter_reverse_at_end(n - 1)
        } else {
            self.enter_forward(0)
        };
        self.check(res)
    }

    /// Forward: moves to the first entry `>= ikey`. Reverse: moves to the
    /// last entry `<= ikey`. Invalid if there is none.
    pub(crate) fn seek(&mut self, ikey: &[u8]) -> Result<()> {
        self.valid = false;
        let res = if self.reverse {
            self.seek_reverse(ikey)
        } else {
            self.seek_forward(ikey)
        };
        self.check(res)
    }

    /// Moves one entry in the iterator's direction. Precondition: valid
    /// (an invalid iterator stays invalid).
    pub(crate) fn next(&mut self) -> Result<()> {
        debug_assert!(self.valid, "next on an invalid TableIter");
        if !self.valid {
            return Ok(());
        }
        let res = if self.reverse {
            self.step_back()
        } else {
            self.step_forward()
        };
        self.check(res)
    }

    /// True when positioned on an entry.
    #[inline]
    pub(crate) fn valid(&self) -> bool {
        self.valid
    }

    /// The current internal key. Precondition: valid.
    #[inline]
    pub(crate) fn key(&self) -> &[u8] {
        debug_assert!(self.valid);
        if self.reverse {
            if self.rpos < self.decoded.len() {
                return self.decoded.key(self.rpos);
            }
            return &[];
        }
        &self.key
    }

    /// The current value. Precondition: valid.
    #[inline]
    pub(crate) fn value(&self) -> &[u8] {
        debug_assert!(self.valid);
        let Some(block) = &self.block else {
            return &[];
        };
        if self.reverse {
            if self.rpos >= self.decoded.len() {
                return &[];
            }
            let (start, end) = self.decoded.value_range(self.rpos);
            return block.data().get(start..end).unwrap_or(&[]);
        }
        block.value(&self.pos)
    }

    /// Invalidates the iterator if `res` is an error.
    fn check(&mut self, res: Result<()>) -> Result<()> {
        if res.is_err() {
            self.valid = false;
        }
        res
    }

    /// Positions on the first entry of block `i`, or invalid past the end.
    fn enter_forward(&mut self, i: usize) -> Result<()> {
        self.valid = false;
        if i >= self.table.block_count() {
            return Ok(());
        }
        let block = self.table.data_block(i)?;
        self.key.clear();
        self.pos = block
            .decode_entry(0, &mut self.key)
            .map_err(|r| self.table.corrupt_block(i, r))?;
        self.block = Some(block);
        self.block_idx = i;
        self.valid = true;
        Ok(())
    }

    /// Decodes block `i` for reverse stepping and positions on its last
    /// entry.
    fn enter_reverse_at_end(&mut self, i: usize) -> Result<()> {
        self.enter_reverse(i)?;
        self.rpos = self.decoded.len() - 1;
        self.valid = true;
        Ok(())
    }

    /// Decodes block `i` for reverse stepping (not positioned).
    fn enter_reverse(&mut self, i: usize) -> Result<()> {
        self.valid = false;
        let block = self.table.data_block(i)?;
        block
            .decode_all(&mut self.decoded)
            .map_err(|r| self.table.corrupt_block(i, r))?;
        if self.decoded.len() == 0 {
            return Err(self.table.corrupt_block(i, "empty data block"));
        }
        self.block = Some(block);
        self.block_idx = i;
        Ok(())
    }

    /// Forward seek: the index names the only block that can hold the
    /// answer, else the answer is the next block's first entry.
    fn seek_forward(&mut self, ikey: &[u8]) -> Result<()> {
        let i = self.table.index()?.find(ikey);
        if i >= self.table.block_count() {
            return Ok(());
        }
        let block = self.table.data_block(i)?;
        match block
            .seek(ikey, &mut self.key)
            .map_err(|r| self.table.corrupt_block(i, r))?
        {
            Some(pos) => {
                self.pos = pos;
                self.block = Some(block);
                self.block_idx = i;
                self.valid = true;
                Ok(())
            }
            None => self.enter_forward(i + 1),
        }
    }

    /// Reverse seek: the last entry `<= ikey` is in the block the index
    /// names (or the last block if `ikey` is past every separator), or it
    /// is the previous block's last entry.
    fn seek_reverse(&mut self, ikey: &[u8]) -> Result<()> {
        let n = self.table.block_count();
        if n == 0 {
            return Ok(());
        }
        let i = self.table.index()?.find(ikey).min(n - 1);
        self.enter_reverse(i)?;
        match self.decoded.count_le(ikey) {
            0 if i == 0 => Ok(()),
            0 => self.enter_reverse_at_end(i - 1),
            c => {
                self.rpos = c - 1;
                self.valid = true;
                Ok(())
            }
        }
    }

    /// One entry forward.
    fn step_forward(&mut self) -> Result<()> {
        let Some(block) = &self.block else {
            self.valid = false;
            return Ok(());
        };
        if self.pos.next < block.entries_end() {
            let i = self.block_idx;
            self.pos = block
                .decode_entry(self.pos.next, &mut self.key)
                .map_err(|r| self.table.corrupt_block(i, r))?;
            Ok(())
        } else {
            self.enter_forward(self.block_idx + 1)
        }
    }

    /// One entry backward.
    fn step_back(&mut self) -> Result<()> {
        if self.rpos > 0 {
            self.rpos -= 1;
            Ok(())
        } else if self.block_idx > 0 {
            self.enter_reverse_at_end(self.block_idx - 1)
        } else {
            self.valid = false;
            Ok(())
        }
    }
}
