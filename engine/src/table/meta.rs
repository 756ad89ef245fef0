//! The meta block: facts about the whole table.
//!
//! Layout (little-endian): `key_count u64 | max_version u64 |
//! data_blocks u64 | smallest_len u32 | smallest | largest_len u32 |
//! largest`. For an empty table both keys are empty; otherwise both are
//! internal keys of at least [`VERSION_LEN`] bytes with `smallest <=
//! largest`.

use crate::format::{compare_keys, get_u32, get_u64, VERSION_LEN};
use std::cmp::Ordering;

/// Decoded meta block.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Meta {
    /// Entries (internal keys) in the table.
    pub(crate) key_count: u64,
    /// Largest version of any key; 0 for an empty table.
    pub(crate) max_version: u64,
    /// Number of data blocks.
    pub(crate) data_blocks: u64,
    /// First internal key.
    pub(crate) smallest: Vec<u8>,
    /// Last internal key.
    pub(crate) largest: Vec<u8>,
}

impl Meta {
    /// Appends the encoding to `out`.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&self.key_count.to_le_bytes());
        out.extend_from_slice(&self.max_version.to_le_bytes());
        out.extend_from_slice(&self.data_blocks.to_le_bytes());
        for k in [&self.smallest, &self.largest] {
            let len = u32::try_from(k.len()).expect("table key exceeds 4 GiB");
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(k);
        }
        debug_assert_eq!(Meta::decode(&out[start..]).as_ref(), Ok(self));
    }

    /// Decodes and checks a meta block; `Err` names the problem.
    pub(crate) fn decode(b: &[u8]) -> Result<Meta, &'static str> {
        let short = "meta block truncated";
        let key_count = get_u64(b, 0).ok_or(short)?;
        let max_version = get_u64(b, 8).ok_or(short)?;
        let data_blocks = get_u64(b, 16).ok_or(short)?;
        let mut off = 24;
        let mut key = || -> Result<Vec<u8>, &'static str> {
            let len = get_u32(b, off).ok_or(short)? as usize;
            let k = b.get(off + 4..off + 4 + len).ok_or(short)?;
            off += 4 + len;
            Ok(k.to_vec())
        };
        let smallest = key()?;
        let largest = key()?;
        if off != b.len() {
            return Err("meta block has trailing bytes");
        }
        let meta = Meta {
            key_count,
            max_version,
            data_blocks,
            smallest,
            largest,
        };
        meta.check()?;
        Ok(meta)
    }

    /// Internal consistency of the fields.
    fn check(&self) -> Result<(), &'static str> {
        let empty = self.key_count == 0;
        if empty != (self.data_blocks == 0) || self.data_blocks > self.key_count {
            return Err("meta block key and block counts disagree");
        }
        if empty {
            if !self.smallest.is_empty() || !self.largest.is_empty() || self.max_version != 0 {
                return Err("meta block of an empty table names keys");
            }
            return Ok(());
        }
        if self.smallest.len() < VERSION_LEN || self.largest.len() < VERSION_LEN {
            return Err("meta block key shorter than its version suffix");
        }
        if compare_keys(&self.smallest, &self.largest) == Ordering::Greater {
            return Err("meta block smallest key above largest");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::key_with_version;

    #[test]
    fn round_trip_and_checks() {
        let m = Meta {
            key_count: 3,
            max_version: 9,
            data_blocks: 1,
            smallest: key_with_version(b"a", 9),
            largest: key_with_version(b"b", 1),
        };
        let mut b = Vec::new();
        m.encode_into(&mut b);
        assert_eq!(Meta::decode(&b), Ok(m.clone()));
        for cut in 0..b.len() {
            assert!(Meta::decode(&b[..cut]).is_err());
        }
        let mut long = b.clone();
        long.push(0);
        assert!(Meta::decode(&long).is_err());
        let swapped = Meta {
            smallest: m.largest.clone(),
            largest: m.smallest.clone(),
            ..m.clone()
        };
        assert!(swapped.check().is_err());
        assert!(Meta {
            data_blocks: 0,
            ..m.clone()
        }
        .check()
        .is_err());
        let empty = Meta::default();
        let mut b = Vec::new();
        empty.encode_into(&mut b);
        assert_eq!(Meta::decode(&b), Ok(empty));
    }
}
