//! A bidirectional cursor over one bucket's entries.
//!
//! The engine's [`Iter`] walks one way only, so the cursor keeps one
//! iterator for the direction it last moved in and builds a new one,
//! positioned at the current entry, when the direction changes. Entries
//! nested in sub-buckets lie inside the bucket's key range; the cursor
//! jumps over each sub-bucket's subtree with one seek.

use super::path::{classify, entries_lower, entry_key, name_key, subtree_end, Child, TAG_BUCKET};
use crate::iter::{Iter, IterOptions};
use crate::txn::Txn;
use crate::Result;

/// One cursor position: the entry's name and its value (`None` for a
/// sub-bucket).
pub type CursorEntry = (Vec<u8>, Option<Vec<u8>>);

/// A cursor over a bucket's keys and sub-buckets in name order, like
/// bbolt's `Cursor`: position with [`Cursor::first`], [`Cursor::last`] or
/// [`Cursor::seek`], then step with [`Cursor::next`] / [`Cursor::prev`]
/// in any mix. Each call returns the entry it lands on, or `None` when it
/// runs off either end; the cursor is then unpositioned and `next`/`prev`
/// keep returning `None` until repositioned.
///
/// Reads the snapshot of the transaction it borrows (its pending writes
/// included). A change of direction costs one iterator setup and a seek.
#[derive(Debug)]
pub struct Cursor<'a> {
    txn: &'a Txn,
    /// The bucket's prefix.
    prefix: Vec<u8>,
    iter: Option<Iter<'a>>,
    reverse: bool,
    /// Raw key of the current entry.
    pos: Option<Vec<u8>>,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(txn: &'a Txn, prefix: Vec<u8>) -> Cursor<'a> {
        Cursor {
            txn,
            prefix,
            iter: None,
            reverse: false,
            pos: None,
        }
    }

    /// The iterator for `reverse`, built if the direction changed.
    fn iter(&mut self, reverse: bool) -> &mut Iter<'a> {
        if self.iter.is_none() || self.reverse != reverse {
            self.reverse = reverse;
            self.iter = Some(self.txn.iter(IterOptions {
                lower_bound: Some(entries_lower(&self.prefix)),
                upper_bound: Some(subtree_end(&self.prefix)),
                reverse,
                ..IterOptions::default()
            }));
        }
        self.iter.as_mut().expect("just set")
    }

    /// Moves to the first entry.
    pub fn first(&mut self) -> Result<Option<CursorEntry>> {
        self.iter(false).rewind()?;
        self.settle(false)
    }

    /// Moves to the last entry.
    pub fn last(&mut self) -> Result<Option<CursorEntry>> {
        self.iter(true).rewind()?;
        self.settle(true)
    }

    /// Moves to the first entry whose name is `>= name`.
    pub fn seek(&mut self, name: &[u8]) -> Result<Option<CursorEntry>> {
        let target = name_key(&self.prefix, name);
        self.iter(false).seek(&target)?;
        self.settle(false)
    }

    /// Moves to the next entry.
    #[allow(clippy::should_implement_trait)] // a fallible cursor step
    pub fn next(&mut self) -> Result<Option<CursorEntry>> {
        self.step(false)
    }

    /// Moves to the previous entry.
    pub fn prev(&mut self) -> Result<Option<CursorEntry>> {
        self.step(true)
    }

    fn step(&mut self, reverse: bool) -> Result<Option<CursorEntry>> {
        let Some(pos) = self.pos.clone() else {
            return Ok(None);
        };
        let switched = self.reverse != reverse || self.iter.is_none();
        let it = self.iter(reverse);
        if switched {
            // Forward lands on the first key >= pos, reverse on the last
            // key <= pos: the current entry itself.
            it.seek(&pos)?;
        }
        if it.valid() && it.item().key() == pos.as_slice() {
            let is_bucket = pos.ends_with(&[0, TAG_BUCKET]);
            if is_bucket && !reverse {
                it.seek(&subtree_end(&pos))?;
            } else {
                it.next()?;
            }
        }
        self.settle(reverse)
    }

    /// From the iterator's position, finds the next entry of this bucket
    /// in the walking direction, jumping over sub-bucket subtrees.
    fn settle(&mut self, reverse: bool) -> Result<Option<CursorEntry>> {
        self.pos = None;
        let prefix = self.prefix.clone();
        let it = self.iter(reverse);
        // Every turn moves the iterator strictly in the walking direction,
        // so the loop ends.
        while it.valid() {
            let raw = it.item().key().to_vec();
            match classify(&prefix, &raw) {
                Child::Key(name) => {
                    let value = it.item().value()?;
                    self.pos = Some(raw);
                    return Ok(Some((name, Some(value))));
                }
                Child::Bucket(name) => {
                    self.pos = Some(raw);
                    return Ok(Some((name, None)));
                }
                Child::Nested(name) => {
                    let marker = entry_key(&prefix, &name, TAG_BUCKET);
                    if reverse {
                        // The last key <= the marker: the marker itself.
                        it.seek(&marker)?;
                    } else {
                        it.seek(&subtree_end(&marker))?;
                    }
                }
                Child::Other => it.next()?,
            }
        }
        Ok(None)
    }
}
