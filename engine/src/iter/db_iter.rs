//! The user-facing iterator: walks the merged sources of one snapshot and
//! shows, per user key, the newest version at or below the read timestamp
//! (skipping deletions and expired entries), or every version.

use super::{LevelIter, MergeIter, Source, VecIter};
use crate::db::Item;
use crate::format::{key_version, key_with_version, now_secs, user_key, ValueStruct};
use crate::memtable::MemtableIter;
use crate::table::TableIter;
use crate::txn::Txn;
use crate::{Error, Result};

/// What an iterator walks and how.
#[derive(Debug, Clone, Default)]
pub struct IterOptions {
    /// Walk from the largest key down.
    pub reverse: bool,
    /// Only keys starting with this prefix.
    pub prefix: Vec<u8>,
    /// Only keys `>=` this.
    pub lower_bound: Option<Vec<u8>>,
    /// Only keys `<` this.
    pub upper_bound: Option<Vec<u8>>,
    /// Promise not to read values; the value log is never touched unless
    /// [`Item::value`] is called anyway.
    pub keys_only: bool,
    /// Return every version at or below the read timestamp, deletion
    /// markers and expired entries included (newest first per key when
    /// walking forward).
    pub all_versions: bool,
}

/// A cursor over a transaction's snapshot. Call [`Iter::rewind`] or
/// [`Iter::seek`] first, then [`Iter::item`] / [`Iter::next`] while
/// [`Iter::valid`].
#[derive(Debug)]
pub struct Iter<'a> {
    txn: &'a Txn,
    merge: MergeIter,
    opts: IterOptions,
    lower: Option<Vec<u8>>,
    upper: Option<Vec<u8>>,
    read_ts: u64,
    now: u64,
    item: Option<Item>,
    /// The merge cursor still sits on the current item's entry (forward,
    /// or reverse all-versions); otherwise it is already past it.
    on_item: bool,
    last_key: Option<Vec<u8>>,
}

/// The smallest key greater than every key starting with `prefix`, if any.
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl<'a> Iter<'a> {
    pub(crate) fn new(txn: &'a Txn, opts: IterOptions) -> Iter<'a> {
        let db = txn.inner();
        let reverse = opts.reverse;
        let mut sources = Vec::new();
        let pending = txn.pending_entries();
        if !pending.is_empty() {
            sources.push(Source::Vec(VecIter::new(pending, reverse)));
        }
        let mems = db.mem.read().newest_first();
        for m in mems {
            sources.push(Source::Mem(MemtableIter::new(m, reverse)));
        }
        let version = db.levels.current();
        for t in &version.levels[0] {
            sources.push(Source::Table(TableIter::new(t.clone(), reverse)));
        }
        for level in &version.levels[1..] {
            if !level.is_empty() {
                sources.push(Source::Level(LevelIter::new(level.clone(), reverse)));
            }
        }
        // Bounds: the tighter of the prefix and the explicit bounds.
        let mut lower = opts.lower_bound.clone();
        let mut upper = opts.upper_bound.clone();
        if !opts.prefix.is_empty() {
            if lower.as_deref().is_none_or(|l| l < opts.prefix.as_slice()) {
                lower = Some(opts.prefix.clone());
            }
            if let Some(pe) = prefix_end(&opts.prefix) {
                if upper.as_deref().is_none_or(|u| u > pe.as_slice()) {
                    upper = Some(pe);
                }
            }
        }
        Iter {
            txn,
            merge: MergeIter::new(sources, reverse),
            read_ts: txn.read_ts(),
            now: now_secs(),
            opts,
            lower,
            upper,
            item: None,
            on_item: false,
            last_key: None,
        }
    }

    /// Positions at the first key (last, in reverse) within the bounds.
    pub fn rewind(&mut self) -> Result<()> {
        self.last_key = None;
        if self.opts.reverse {
            match self.upper.clone() {
                Some(u) => self.merge.seek(&key_with_version(&u, u64::MAX))?,
                None => self.merge.rewind()?,
            }
        } else {
            match self.lower.clone() {
                Some(l) => self.merge.seek(&key_with_version(&l, self.read_ts))?,
                None => self.merge.rewind()?,
            }
        }
        self.settle()
    }

    /// Forward: positions at the first key `>= key`; reverse: at the last
    /// key `<= key`. Bounds still apply.
    pub fn seek(&mut self, key: &[u8]) -> Result<()> {
        self.last_key = None;
        if self.opts.reverse {
            let target = match &self.upper {
                Some(u) if u.as_slice() <= key => key_with_version(u, u64::MAX),
                _ => key_with_version(key, 0),
            };
            self.merge.seek(&target)?;
        } else {
            let start = match &self.lower {
                Some(l) if l.as_slice() > key => l.clone(),
                _ => key.to_vec(),
            };
            self.merge.seek(&key_with_version(&start, self.read_ts))?;
        }
        self.settle()
    }

    /// Moves to the next key (or version, with `all_versions`).
    #[allow(clippy::should_implement_trait)] // a fallible cursor step, not `Iterator::next`
    pub fn next(&mut self) -> Result<()> {
        if self.item.is_none() {
            return Ok(());
        }
        if self.on_item {
            self.merge.next()?;
        }
        self.settle()
    }

    /// True while positioned on an item.
    pub fn valid(&self) -> bool {
        self.item.is_some()
    }

    /// The current item. Panics if not [`Iter::valid`].
    pub fn item(&self) -> &Item {
        self.item
            .as_ref()
            .expect("Iter::item called on an invalid iterator")
    }

    fn below_lower(&self, uk: &[u8]) -> bool {
        self.lower.as_deref().is_some_and(|l| uk < l)
    }

    fn at_or_above_upper(&self, uk: &[u8]) -> bool {
        self.upper.as_deref().is_some_and(|u| uk >= u)
    }

    fn make_item(&self, key: Vec<u8>, version: u64, raw: &[u8]) -> Result<Item> {
        let vs = ValueStruct::decode(raw).ok_or_else(|| {
            Error::corruption(&self.txn.inner().dir, 0, "undecodable value in the tree")
        })?;
        Ok(Item {
            key,
            version,
            vs,
            db: self.txn.inner().clone(),
        })
    }

    /// Finds the next item from the merge cursor's position.
    fn settle(&mut self) -> Result<()> {
        self.item = None;
        self.on_item = false;
        let item = if self.opts.reverse {
            self.settle_reverse()?
        } else {
            self.settle_forward()?
        };
        if let Some(it) = &item {
            self.txn.record_read(it.key());
        }
        self.item = item;
        Ok(())
    }

    fn settle_forward(&mut self) -> Result<Option<Item>> {
        while self.merge.valid() {
            let ik = self.merge.key();
            let uk = user_key(ik);
            if self.at_or_above_upper(uk) {
                return Ok(None);
            }
            let ver = key_version(ik);
            let skip = ver > self.read_ts
                || self.below_lower(uk)
                || (!self.opts.all_versions && self.last_key.as_deref() == Some(uk));
            if skip {
                self.merge.next()?;
                continue;
            }
            let item = self.make_item(uk.to_vec(), ver, self.merge.value())?;
            if !self.opts.all_versions {
                self.last_key = Some(item.key.clone());
                if item.vs.is_deleted_or_expired(self.now) {
                    self.merge.next()?;
                    continue;
                }
            }
            self.on_item = true;
            return Ok(Some(item));
        }
        Ok(None)
    }

    fn settle_reverse(&mut self) -> Result<Option<Item>> {
        while self.merge.valid() {
            let ik = self.merge.key();
            let uk = user_key(ik);
            if self.below_lower(uk) {
                return Ok(None);
            }
            if self.at_or_above_upper(uk)
                || (self.opts.all_versions && key_version(ik) > self.read_ts)
            {
                self.merge.next()?;
                continue;
            }
            if self.opts.all_versions {
                let item = self.make_item(uk.to_vec(), key_version(ik), self.merge.value())?;
                self.on_item = true;
                return Ok(Some(item));
            }
            // Versions arrive oldest first; the last one at or below the
            // read timestamp is the visible one.
            let key = uk.to_vec();
            let mut best: Option<(u64, Vec<u8>)> = None;
            while self.merge.valid() && user_key(self.merge.key()) == key.as_slice() {
                let ver = key_version(self.merge.key());
                if ver <= self.read_ts {
                    best = Some((ver, self.merge.value().to_vec()));
                }
                self.merge.next()?;
            }
            if let Some((ver, raw)) = best {
                let item = self.make_item(key, ver, &raw)?;
                if !item.vs.is_deleted_or_expired(self.now) {
                    return Ok(Some(item));
                }
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_handles_ff() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
    }
}
