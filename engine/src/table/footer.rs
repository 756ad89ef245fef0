//! The fixed-size footer that ends every table file, and block handles.
//!
//! Footer layout ([`FOOTER_LEN`] bytes, little-endian):
//!
//! ```text
//!  0  index_offset  u64     8  index_len  u64
//! 16  filter_offset u64    24  filter_len u64   (both 0: no filter)
//! 32  meta_offset   u64    40  meta_len   u64
//! 48  format_version u32   52  crc32 of bytes 0..52 u32
//! 56  magic u64 (ASCII "SETTTBL1")
//! ```

use crate::format::{checksum, get_u32, get_u64};

/// Identifies a sett table file: the ASCII bytes `SETTTBL1` on disk, read
/// as a little-endian u64.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"SETTTBL1");

/// The only table format version this code reads and writes.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// Size of the footer.
pub(crate) const FOOTER_LEN: usize = 64;

/// Bytes after each stored block: compression type u8, crc32 u32.
pub(crate) const BLOCK_TRAILER_LEN: usize = 5;

/// Location of a stored block; `len` excludes the trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct BlockHandle {
    /// File offset of the block's first byte.
    pub(crate) offset: u64,
    /// Stored (possibly compressed) length, trailer excluded.
    pub(crate) len: u64,
}

impl BlockHandle {
    /// Offset one past the block's trailer, `None` on overflow.
    pub(crate) fn end(&self) -> Option<u64> {
        self.offset
            .checked_add(self.len)?
            .checked_add(BLOCK_TRAILER_LEN as u64)
    }
}

/// The decoded footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Footer {
    /// The index block.
    pub(crate) index: BlockHandle,
    /// The bloom filter block, if the table has one.
    pub(crate) filter: Option<BlockHandle>,
    /// The meta block.
    pub(crate) meta: BlockHandle,
}

impl Footer {
    /// Appends the encoded footer to `out`.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let filter = self.filter.unwrap_or_default();
        for v in [
            self.index.offset,
            self.index.len,
            filter.offset,
            filter.len,
            self.meta.offset,
            self.meta.len,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        let crc = checksum(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&MAGIC.to_le_bytes());
        debug_assert_eq!(out.len() - start, FOOTER_LEN);
        debug_assert_eq!(Footer::decode(&out[start..]), Ok(*self));
    }

    /// Decodes a footer from exactly [`FOOTER_LEN`] bytes; `Err` names the
    /// problem.
    pub(crate) fn decode(b: &[u8]) -> Result<Footer, String> {
        if b.len() != FOOTER_LEN {
            return Err(format!(
                "footer is {} bytes, expected {FOOTER_LEN}",
                b.len()
            ));
        }
        let u64_at = |off| get_u64(b, off).unwrap_or(0);
        let magic = u64_at(56);
        if magic != MAGIC {
            return Err(format!("bad table magic {magic:#018x}"));
        }
        let version = get_u32(b, 48).unwrap_or(0);
        if version != FORMAT_VERSION {
            return Err(format!("unsupported table format version {version}"));
        }
        let crc = get_u32(b, 52).unwrap_or(0);
        if crc != checksum(&b[..52]) {
            return Err("footer checksum mismatch".to_string());
        }
        let handle = |off| BlockHandle {
            offset: u64_at(off),
            len: u64_at(off + 8),
        };
        let filter = handle(16);
        Ok(Footer {
            index: handle(0),
            filter: (filter != BlockHandle::default()).then_some(filter),
            meta: handle(32),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_reject_any_flip() {
        let f = Footer {
            index: BlockHandle {
                offset: 100,
                len: 20,
            },
            filter: Some(BlockHandle {
                offset: 125,
                len: 9,
            }),
            meta: BlockHandle {
                offset: 139,
                len: 40,
            },
        };
        let mut b = Vec::new();
        f.encode_into(&mut b);
        assert_eq!(Footer::decode(&b), Ok(f));
        for i in 0..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 0x10;
            assert!(Footer::decode(&bad).is_err(), "flip at {i} accepted");
        }
        assert!(Footer::decode(&b[1..]).is_err());
        assert_eq!(&b[56..], b"SETTTBL1");
        let none = Footer { filter: None, ..f };
        let mut b = Vec::new();
        none.encode_into(&mut b);
        assert_eq!(Footer::decode(&b), Ok(none));
    }
}
