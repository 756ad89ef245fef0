//! `LiveKeys`: the live user keys at one revision, in memory, in order,
//! answering "how many keys in this range" without reading them.
//!
//! etcd's Range reports `count`, the number of keys in the whole range,
//! even when `limit` asks for a few of them; etcd counts by walking its
//! in-memory key index. Counting by iterating the engine costs a step per
//! key, so a `limit 100` read of a range of a million keys would read a
//! million keys. This index makes it two rank queries.
//!
//! Shape: a sorted list cut into chunks of at most [`CHUNK_MAX`] keys (the
//! chunks in key order, none empty), plus a Fenwick tree over the chunk
//! lengths. `rank(k)` (keys below `k`) is a binary search for the chunk,
//! a prefix sum over the Fenwick tree and a binary search inside the
//! chunk: O(log n). An insert or remove shifts at most `CHUNK_MAX` keys;
//! a split or an emptied chunk rebuilds the tree (O(n / CHUNK_MAX)).
//!
//! Invariants: every chunk is sorted, non-empty and holds keys strictly
//! between its neighbours' keys; `fenwick` sums to `len`.
//!
//! Thread-safety: none inside; [`super::MvccStore`] keeps it behind a
//! lock, with the revision it describes (`rev`), and uses it only for
//! reads at exactly that revision.

use super::keys::KeyRange;

/// Most keys in one chunk; a chunk past this splits in two.
const CHUNK_MAX: usize = 512;

/// The live user keys at revision `rev`.
#[derive(Debug, Default)]
pub(crate) struct LiveKeys {
    /// The revision these keys are live at.
    pub(crate) rev: i64,
    chunks: Vec<Vec<Box<[u8]>>>,
    /// Fenwick tree over `chunks[i].len()` (1-based internally).
    fenwick: Vec<usize>,
    len: usize,
}

impl LiveKeys {
    /// The set of `keys` (strictly increasing) at `rev`.
    pub(crate) fn from_sorted(rev: i64, keys: impl IntoIterator<Item = Box<[u8]>>) -> LiveKeys {
        let mut chunks: Vec<Vec<Box<[u8]>>> = Vec::new();
        let mut len = 0;
        for k in keys {
            if let Some(last) = chunks.last().and_then(|c| c.last()) {
                assert!(*last < k, "keys must be strictly increasing");
            }
            match chunks.last_mut() {
                Some(c) if c.len() < CHUNK_MAX / 2 => c.push(k),
                _ => chunks.push(vec![k]),
            }
            len += 1;
        }
        let mut s = LiveKeys {
            rev,
            chunks,
            fenwick: Vec::new(),
            len,
        };
        s.rebuild();
        s
    }

    /// Number of keys.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Adds `key` (no-op if present).
    pub(crate) fn insert(&mut self, key: &[u8]) {
        if self.chunks.is_empty() {
            self.chunks.push(vec![key.into()]);
            self.len = 1;
            self.rebuild();
            return;
        }
        // The first chunk whose last key is >= key, or the last chunk.
        let c = self
            .chunks
            .partition_point(|ch| ch.last().expect("chunks are non-empty").as_ref() < key)
            .min(self.chunks.len() - 1);
        let chunk = &mut self.chunks[c];
        let Err(at) = chunk.binary_search_by(|k| k.as_ref().cmp(key)) else {
            return;
        };
        chunk.insert(at, key.into());
        self.len += 1;
        if chunk.len() > CHUNK_MAX {
            let upper = chunk.split_off(chunk.len() / 2);
            self.chunks.insert(c + 1, upper);
            self.rebuild();
        } else {
            self.add(c, 1);
        }
    }

    /// Removes `key` (no-op if absent).
    pub(crate) fn remove(&mut self, key: &[u8]) {
        let c = self
            .chunks
            .partition_point(|ch| ch.last().expect("chunks are non-empty").as_ref() < key);
        let Some(chunk) = self.chunks.get_mut(c) else {
            return;
        };
        let Ok(at) = chunk.binary_search_by(|k| k.as_ref().cmp(key)) else {
            return;
        };
        chunk.remove(at);
        self.len -= 1;
        if chunk.is_empty() {
            self.chunks.remove(c);
            self.rebuild();
        } else {
            self.sub(c, 1);
        }
    }

    /// Number of keys `< key`.
    pub(crate) fn rank(&self, key: &[u8]) -> usize {
        let c = self
            .chunks
            .partition_point(|ch| ch.last().expect("chunks are non-empty").as_ref() < key);
        if c == self.chunks.len() {
            return self.len;
        }
        let inside = self.chunks[c].partition_point(|k| k.as_ref() < key);
        self.prefix(c) + inside
    }

    /// Number of keys in `range`.
    pub(crate) fn count(&self, range: &KeyRange) -> i64 {
        let n = match range {
            KeyRange::Single(k) => self.rank_after(k) - self.rank(k),
            KeyRange::Span(start, None) => self.len - self.rank(start),
            KeyRange::Span(start, Some(end)) => {
                if end <= start {
                    0
                } else {
                    self.rank(end) - self.rank(start)
                }
            }
        };
        i64::try_from(n).expect("key count fits i64")
    }

    /// Number of keys `<= key`.
    fn rank_after(&self, key: &[u8]) -> usize {
        let r = self.rank(key);
        let c = self
            .chunks
            .partition_point(|ch| ch.last().expect("chunks are non-empty").as_ref() < key);
        let present = self
            .chunks
            .get(c)
            .is_some_and(|ch| ch.binary_search_by(|k| k.as_ref().cmp(key)).is_ok());
        r + usize::from(present)
    }

    /// Sum of the lengths of chunks `0..c`.
    fn prefix(&self, c: usize) -> usize {
        let mut i = c;
        let mut sum = 0;
        while i > 0 {
            sum += self.fenwick[i];
            i &= i - 1;
        }
        sum
    }

    fn add(&mut self, c: usize, n: usize) {
        let mut i = c + 1;
        while i < self.fenwick.len() {
            self.fenwick[i] += n;
            i += i & i.wrapping_neg();
        }
    }

    fn sub(&mut self, c: usize, n: usize) {
        let mut i = c + 1;
        while i < self.fenwick.len() {
            self.fenwick[i] -= n;
            i += i & i.wrapping_neg();
        }
    }

    /// Rebuilds the Fenwick tree from the chunk lengths, in O(chunks).
    fn rebuild(&mut self) {
        let n = self.chunks.len();
        self.fenwick.clear();
        self.fenwick.resize(n + 1, 0);
        for (c, chunk) in self.chunks.iter().enumerate() {
            self.fenwick[c + 1] += chunk.len();
            let parent = (c + 1) + ((c + 1) & (c + 1).wrapping_neg());
            if parent <= n {
                let v = self.fenwick[c + 1];
                self.fenwick[parent] += v;
            }
        }
        debug_assert_eq!(self.prefix(n), self.len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn key(n: u16) -> Vec<u8> {
        format!("{n:05}").into_bytes()
    }

    fn model_count(model: &BTreeSet<Vec<u8>>, range: &KeyRange) -> i64 {
        model.iter().filter(|k| range.contains(k)).count() as i64
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Random inserts and removes over a small key space, with chunk
        /// splits and emptied chunks, agree with a `BTreeSet` on every
        /// count.
        #[test]
        fn counts_match_a_sorted_set(
            initial in proptest::collection::btree_set(0u16..3000, 0..2000),
            ops in proptest::collection::vec((any::<bool>(), 0u16..3000), 0..3000),
            probes in proptest::collection::vec((0u16..3100, 0u16..3100), 1..40),
        ) {
            let mut model: BTreeSet<Vec<u8>> = initial.iter().map(|&n| key(n)).collect();
            let mut live = LiveKeys::from_sorted(1, model.iter().map(|k| k.clone().into_boxed_slice()));
            for (add, n) in ops {
                if add {
                    live.insert(&key(n));
                    model.insert(key(n));
                } else {
                    live.remove(&key(n));
                    model.remove(&key(n));
                }
            }
            prop_assert_eq!(live.len(), model.len());
            for (a, b) in probes {
                for range in [
                    KeyRange::Single(key(a)),
                    KeyRange::Span(key(a), None),
                    KeyRange::Span(key(a), Some(key(b))),
                ] {
                    prop_assert_eq!(live.count(&range), model_count(&model, &range), "{:?}", range);
                }
            }
        }
    }

    #[test]
    fn empty_set_counts_zero() {
        let mut live = LiveKeys::from_sorted(1, std::iter::empty());
        assert_eq!(live.count(&KeyRange::Span(b"a".to_vec(), None)), 0);
        live.remove(b"a");
        live.insert(b"a");
        live.remove(b"a");
        assert_eq!(live.len(), 0);
        assert_eq!(live.count(&KeyRange::Span(Vec::new(), None)), 0);
    }
}
