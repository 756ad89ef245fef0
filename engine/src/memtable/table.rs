//! A memtable: a concurrent skiplist from internal key to encoded
//! [`crate::format::ValueStruct`].
//!
//! Thread-safety: one writer (the commit thread) inserts while any number of
//! readers look up and iterate. Readers never see a half-applied commit
//! because they read at a timestamp below any commit still being applied.

use crate::format::{key_with_version, user_key, InternalKey};
use crossbeam_skiplist::SkipMap;
use parking_lot::Mutex;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Per-entry bookkeeping overhead counted against the memtable size.
const ENTRY_OVERHEAD_BYTES: usize = 48;

/// An in-memory sorted buffer of recent writes.
#[derive(Debug)]
pub(crate) struct Memtable {
    map: SkipMap<InternalKey, Vec<u8>>,
    size_bytes: AtomicUsize,
    max_version: AtomicU64,
    /// Value-log position just past the last record applied here: once this
    /// memtable is in a table, replay may start from here.
    vlog_end: Mutex<(u32, u64)>,
}

impl Memtable {
    /// An empty memtable whose data starts at vlog position `vlog_start`.
    pub(crate) fn new(vlog_start: (u32, u64)) -> Memtable {
        Memtable {
            map: SkipMap::new(),
            size_bytes: AtomicUsize::new(0),
            max_version: AtomicU64::new(0),
            vlog_end: Mutex::new(vlog_start),
        }
    }

    /// Inserts one entry. Single writer only.
    pub(crate) fn insert(&self, ikey: Vec<u8>, value: Vec<u8>) {
        let version = crate::format::key_version(&ikey);
        self.size_bytes.fetch_add(
            ikey.len() + value.len() + ENTRY_OVERHEAD_BYTES,
            Ordering::Relaxed,
        );
        self.max_version.fetch_max(version, Ordering::Relaxed);
        self.map.insert(InternalKey::new(ikey), value);
    }

    /// Records the vlog position after the last applied record.
    pub(crate) fn set_vlog_end(&self, pos: (u32, u64)) {
        let mut end = self.vlog_end.lock();
        debug_assert!(pos >= *end, "vlog position went backwards");
        *end = pos;
    }

    /// Vlog position after the last applied record.
    pub(crate) fn vlog_end(&self) -> (u32, u64) {
        *self.vlog_end.lock()
    }

    /// Approximate bytes held.
    pub(crate) fn size_bytes(&self) -> usize {
        self.size_bytes.load(Ordering::Relaxed)
    }

    /// True if empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Largest version inserted.
    pub(crate) fn max_version(&self) -> u64 {
        self.max_version.load(Ordering::Relaxed)
    }

    /// The newest version of `key` at or below `read_ts`: `(version, value)`.
    pub(crate) fn get(&self, key: &[u8], read_ts: u64) -> Option<(u64, Vec<u8>)> {
        let seek = InternalKey::new(key_with_version(key, read_ts));
        let e = self.map.lower_bound(Bound::Included(&seek))?;
        let ik = &e.key().0;
        if user_key(ik) != key {
            return None;
        }
        Some((crate::format::key_version(ik), e.value().clone()))
    }

    /// All entries in order, for flushing.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&[u8], &[u8])) {
        for e in self.map.iter() {
            f(&e.key().0, e.value());
        }
    }
}

/// Number of entries an iterator copies out of the skiplist at a time.
const ITER_BATCH: usize = 32;

/// A cursor over a memtable. It copies entries out in small batches, so it
/// holds no borrow of the skiplist between calls.
#[derive(Debug)]
pub(crate) struct MemtableIter {
    mem: Arc<Memtable>,
    reverse: bool,
    buf: Vec<(Vec<u8>, Vec<u8>)>,
    pos: usize,
    /// The skiplist has nothing past the end of `buf`.
    exhausted: bool,
}

impl MemtableIter {
    /// A cursor over `mem`, moving backwards if `reverse`.
    pub(crate) fn new(mem: Arc<Memtable>, reverse: bool) -> MemtableIter {
        MemtableIter {
            mem,
            reverse,
            buf: Vec::new(),
            pos: 0,
            exhausted: true,
        }
    }

    fn fill(&mut self, from: Bound<&InternalKey>) {
        self.buf.clear();
        self.pos = 0;
        if self.reverse {
            let range = self.mem.map.range((Bound::Unbounded, from));
            for e in range.rev().take(ITER_BATCH) {
                self.buf.push((e.key().0.clone(), e.value().clone()));
            }
        } else {
            let range = self.mem.map.range((from, Bound::Unbounded));
            for e in range.take(ITER_BATCH) {
                self.buf.push((e.key().0.clone(), e.value().clone()));
            }
        }
        self.exhausted = self.buf.len() < ITER_BATCH;
    }

    /// Positions at the first entry in the iteration direction.
    pub(crate) fn rewind(&mut self) {
        self.fill(Bound::Unbounded);
    }

    /// Forward: first entry >= `ikey`; reverse: last entry <= `ikey`.
    pub(crate) fn seek(&mut self, ikey: &[u8]) {
        let k = InternalKey::new(ikey.to_vec());
        self.fill(Bound::Included(&k));
    }

    /// Steps once in the iteration direction.
    pub(crate) fn next(&mut self) {
        debug_assert!(self.valid());
        self.pos += 1;
        if self.pos >= self.buf.len() && !self.exhausted {
            let last = InternalKey::new(std::mem::take(&mut self.buf[self.pos - 1].0));
            self.fill(Bound::Excluded(&last));
        }
    }

    /// True while positioned on an entry.
    pub(crate) fn valid(&self) -> bool {
        self.pos < self.buf.len()
    }

    /// Current internal key.
    pub(crate) fn key(&self) -> &[u8] {
        &self.buf[self.pos].0
    }

    /// Current encoded value.
    pub(crate) fn value(&self) -> &[u8] {
        &self.buf[self.pos].1
    }
}

/// Checks the memtable's order invariant.
#[cfg(test)]
fn check_sorted(mem: &Memtable) -> bool {
    use crate::format::compare_keys;
    let mut prev: Option<Vec<u8>> = None;
    let mut ok = true;
    mem.for_each(|k, _| {
        if let Some(p) = &prev {
            ok &= compare_keys(p, k).is_lt();
        }
        prev = Some(k.to_vec());
    });
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_picks_newest_visible_version() {
        let m = Memtable::new((1, 0));
        m.insert(key_with_version(b"k", 1), b"v1".to_vec());
        m.insert(key_with_version(b"k", 3), b"v3".to_vec());
        m.insert(key_with_version(b"kk", 2), b"x".to_vec());
        assert_eq!(m.get(b"k", 0), None);
        assert_eq!(m.get(b"k", 2), Some((1, b"v1".to_vec())));
        assert_eq!(m.get(b"k", 9), Some((3, b"v3".to_vec())));
        assert_eq!(m.get(b"j", 9), None);
        assert!(check_sorted(&m));
    }

    #[test]
    fn iterates_both_ways_across_batches() {
        let m = Arc::new(Memtable::new((1, 0)));
        for i in 0..100u32 {
            m.insert(key_with_version(&i.to_be_bytes(), 1), vec![]);
        }
        let mut it = MemtableIter::new(m.clone(), false);
        it.rewind();
        let mut n = 0;
        while it.valid() {
            assert_eq!(user_key(it.key()), &(n as u32).to_be_bytes());
            n += 1;
            it.next();
        }
        assert_eq!(n, 100);
        let mut it = MemtableIter::new(m, true);
        it.seek(&key_with_version(&50u32.to_be_bytes(), 0));
        let mut n = 50i64;
        while it.valid() {
            assert_eq!(user_key(it.key()), &(n as u32).to_be_bytes());
            n -= 1;
            it.next();
        }
        assert_eq!(n, -1);
    }
}
