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
        Ok(index)
    }

    /// Number of data blocks.
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
