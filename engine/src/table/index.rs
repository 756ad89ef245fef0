//! The block index: for each data block, a separator key and the block's
//! handle.
//!
//! Stored as an ordinary block (see [`super::block`]) whose values are
//! `offset: u64 | len: u64` (little-endian). The key of block `i` is an
//! internal key `sep` with `last_key(i) <= sep < first_key(i + 1)`; for the
//! last block it is the table's largest key. So the first block whose
//! separator is `>= target` is the only block that can hold the first entry
//! `>= target`, and if it does not, that entry is the first of the next
//! block.
//!
//! Invariants of a decoded [`Index`]: separators strictly ascend by
//! [`compare_keys`] and are at least [`VERSION_LEN`] long; handles tile the
//! data area `0..data_end` with no gap or overlap, in order.
//!
//! Lookup speed: all separators' user keys share a prefix of
//! `prefix.len()` bytes; each entry also keeps the next 8 user-key bytes as
//! a big-endian `u64` "window" (zero-padded). Windows are non-decreasing
//! and a strict difference decides the order, so [`Index::find`] binary-
//! searches a dense `Vec<u64>` and compares whole keys only among equal
//! windows.

use super::block::Block;
use super::footer::BlockHandle;
use crate::format::{compare_keys, get_u64, user_key, VERSION_LEN};
use std::cmp::Ordering;

/// Length of an encoded index value.
pub(crate) const INDEX_VALUE_LEN: usize = 16;

/// Encodes a data block's handle as an index value.
pub(crate) fn encode_value(h: BlockHandle) -> [u8; INDEX_VALUE_LEN] {
    let mut v = [0u8; INDEX_VALUE_LEN];
    v[..8].copy_from_slice(&h.offset.to_le_bytes());
    v[8..].copy_from_slice(&h.len.to_le_bytes());
    v
}

/// Writes into `out` a short internal key `sep` with `a <= sep < b`
/// (by [`compare_keys`]). Precondition: `a < b`.
pub(crate) fn separator(a: &[u8], b: &[u8], out: &mut Vec<u8>) {
    debug_assert_eq!(compare_keys(a, b), Ordering::Less);
    out.clear();
    let (ua, ub) = (user_key(a), user_key(b));
    let p = ua.iter().zip(ub).take_while(|(x, y)| x == y).count();
    // Bump the first differing byte of `ua` if that stays below `ub`; the
    // result sorts after every version of `ua` and before every version of
    // `ub`. Use it with the newest possible version (an all-zero suffix).
    if p + 1 < ua.len() && p < ub.len() && ua[p] < 0xff && ua[p] + 1 < ub[p] {
        out.extend_from_slice(&ua[..p]);
        out.push(ua[p] + 1);
        out.extend_from_slice(&[0u8; VERSION_LEN]);
    } else {
        out.extend_from_slice(a);
    }
    debug_assert_ne!(compare_keys(a, out), Ordering::Greater);
    debug_assert_eq!(compare_keys(out, b), Ordering::Less);
}

/// One data block as the index describes it.
#[derive(Debug, Clone, Copy)]
struct IndexEntry {
    /// Separator key range in [`Index::keys`].
    key_start: u32,
    /// End of the separator key.
    key_end: u32,
    /// Where the block is stored.
    handle: BlockHandle,
}

/// The decoded block index, kept in memory for the table's lifetime.
#[derive(Debug, Default)]
pub(crate) struct Index {
    /// All separator keys, concatenated.
    keys: Vec<u8>,
    /// One entry per data block, in file order.
    entries: Vec<IndexEntry>,
    /// User-key prefix shared by every separator.
    prefix: Vec<u8>,
    /// Per entry, the 8 user-key bytes after `prefix` (see module docs).
    windows: Vec<u64>,
}

/// The 8 bytes of `user` from `from` on, zero-padded, as a big-endian u64.
#[inline]
fn window(user: &[u8], from: usize) -> u64 {
    let tail = user.get(from..).unwrap_or(&[]);
    let n = tail.len().min(8);
    let mut b = [0u8; 8];
    b[..n].copy_from_slice(&tail[..n]);
    u64::from_be_bytes(b)
}

impl Index {
    /// Decodes and validates the index block. `data_end` is where the data
    /// area ends (the index block's offset).
    pub(crate) fn decode(block: &Block, data_end: u64) -> Result<Index, &'static str> {
        let mut index = Index::default();
        let mut key = Vec::new();
        let mut off = 0;
        let mut next_offset = 0u64;
        while off < block.entries_end() {
            let pos = block.decode_entry(off, &mut key)?;
            let v = block.value(&pos);
            if v.len() != INDEX_VALUE_LEN {
                return Err("index value has the wrong length");
            }
            let handle = BlockHandle {
                offset: get_u64(v, 0).unwrap_or(u64::MAX),
                len: get_u64(v, 8).unwrap_or(u64::MAX),
            };
            if handle.offset != next_offset {
                return Err("index handles leave a gap or overlap");
            }
            next_offset = handle
                .end()
                .filter(|&e| e <= data_end)
                .ok_or("index handle past the data area")?;
            if let Some(last) = index.entries.len().checked_sub(1) {
                if compare_keys(index.key(last), &key) != Ordering::Less {
                    return Err("index keys out of order");
                }
            }
            let key_start = u32::try_from(index.keys.len()).map_err(|_| "index too large")?;
            index.keys.extend_from_slice(&key);
            let key_end = u32::try_from(index.keys.len()).map_err(|_| "index too large")?;
            index.entries.push(IndexEntry {
                key_start,
                key_end,
                handle,
            });
            off = pos.next;
        }
        if next_offset != data_end {
            return Err("index does not cover the data area");
        }
        // Keys ascend, so the prefix shared by the first and last user keys
        // is shared by all.
        if let Some(last) = index.entries.len().checked_sub(1) {
            let (first, last) = (user_key(index.key(0)), user_key(index.key(last)));
            let p = first.iter().zip(last).take_while(|(a, b)| a == b).count();
            index.prefix = first[..p].to_vec();
            index.windows = (0..index.len())
                .map(|i| window(user_key(index.key(i)), p))
                .collect();
            debug_assert!(index.windows.windows(2).all(|w| w[0] <= w[1]));
        }
        Ok(index)
    }

    /// Number of data blocks.
    /// Approximate heap bytes this index holds.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.keys.capacity()
            + self.entries.capacity() * std::mem::size_of::<IndexEntry>()
            + self.prefix.capacity()
            + self.windows.capacity() * 8
            + std::mem::size_of::<Index>()
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Separator key of block `i`. Precondition: `i < len()`.
    pub(crate) fn key(&self, i: usize) -> &[u8] {
        let e = &self.entries[i];
        &self.keys[e.key_start as usize..e.key_end as usize]
    }

    /// Handle of block `i`. Precondition: `i < len()`.
    pub(crate) fn handle(&self, i: usize) -> BlockHandle {
        self.entries[i].handle
    }

    /// The first block whose separator is `>= target`; `len()` if none.
    #[inline]
    pub(crate) fn find(&self, target: &[u8]) -> usize {
        let found = self.find_fast(target);
        debug_assert_eq!(found, self.find_slow(target));
        found
    }

    /// [`Self::find`] through the prefix and windows.
    #[inline]
    fn find_fast(&self, target: &[u8]) -> usize {
        let n = self.entries.len();
        if n == 0 {
            return 0;
        }
        let user = user_key(target);
        let m = user.len().min(self.prefix.len());
        match user[..m].cmp(&self.prefix[..m]) {
            Ordering::Less => return 0,
            Ordering::Greater => return n,
            // A proper prefix of every separator's user key sorts first.
            Ordering::Equal if user.len() < self.prefix.len() => return 0,
            Ordering::Equal => {}
        }
        let w = window(user, self.prefix.len());
        let lo = self.windows.partition_point(|&x| x < w);
        let hi = lo + self.windows[lo..].partition_point(|&x| x == w);
        lo + self.entries[lo..hi].partition_point(|e| {
            let k = &self.keys[e.key_start as usize..e.key_end as usize];
            compare_keys(k, target) == Ordering::Less
        })
    }

    /// [`Self::find`] by plain binary search (checks the fast path).
    fn find_slow(&self, target: &[u8]) -> usize {
        self.entries.partition_point(|e| {
            let k = &self.keys[e.key_start as usize..e.key_end as usize];
            compare_keys(k, target) == Ordering::Less
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::key_with_version;
    use crate::table::block::{BlockBuilder, BlockBytes, RESTART_INTERVAL};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn find_matches_plain_binary_search(
            users in prop::collection::btree_set(prop::collection::vec(prop::sample::select(vec![0u8, 1, b'p', 0xff]), 0..12), 1..60),
            prefix in prop::collection::vec(any::<u8>(), 0..4),
            targets in prop::collection::vec((prop::collection::vec(prop::sample::select(vec![0u8, 1, b'p', 0xff]), 0..14), any::<u64>()), 1..50),
        ) {
            let mut b = BlockBuilder::new(RESTART_INTERVAL);
            let mut end = 0;
            for u in &users {
                let mut user = prefix.clone();
                user.extend_from_slice(u);
                let handle = BlockHandle { offset: end, len: 10 };
                end = handle.end().unwrap();
                b.add(&key_with_version(&user, 1), &encode_value(handle));
            }
            let block = Block::new(BlockBytes::Owned(b.finish().to_vec())).unwrap();
            let index = Index::decode(&block, end).unwrap();
            prop_assert_eq!(index.len(), users.len());
            for (t, v) in targets {
                let mut user = prefix.clone();
                user.extend_from_slice(&t);
                for target in [key_with_version(&user, v), key_with_version(&t, v)] {
                    prop_assert_eq!(index.find_fast(&target), index.find_slow(&target));
                }
            }
        }
    }

    #[test]
    fn separator_is_between_and_short() {
        let cases: &[(&[u8], u64, &[u8], u64)] = &[
            (b"apple", 5, b"banana", 9),
            (b"abcdef", 1, b"abzz", 1),
            (b"abc", 5, b"abc", 4),
            (b"abc", 5, b"abcd", 9),
            (b"ab\xff\xff", 5, b"ac", 9),
            (b"abc", 5, b"abd", 9),
            (b"", 3, b"\x00", 3),
        ];
        let mut out = Vec::new();
        for &(ua, va, ub, vb) in cases {
            let (a, b) = (key_with_version(ua, va), key_with_version(ub, vb));
            separator(&a, &b, &mut out);
            assert_ne!(compare_keys(&a, &out), Ordering::Greater);
            assert_eq!(compare_keys(&out, &b), Ordering::Less);
            assert!(out.len() <= a.len());
        }
        separator(
            &key_with_version(b"apple", 5),
            &key_with_version(b"cherry", 9),
            &mut out,
        );
        assert_eq!(out, key_with_version(b"b", u64::MAX));
    }
}
