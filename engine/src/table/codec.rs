//! Stored blocks: optional zstd compression plus the checksummed trailer.
//!
//! A stored block is `payload | type: u8 | crc32: u32 (LE)`, the CRC taken
//! over `payload | type`. For type [`COMPRESSION_NONE`] the payload is the
//! block contents; for [`COMPRESSION_ZSTD`] it is `raw_len: u32 (LE) | one
//! zstd frame` decompressing to exactly `raw_len` bytes.

use super::block::BlockBytes;
use super::footer::{BlockHandle, BLOCK_TRAILER_LEN};
use crate::format::{checksum, get_u32};
use crate::fs::FileBytes;
use crate::{Error, Result};
use std::cell::RefCell;
use std::fmt;
use std::path::Path;

/// Payload stored as is.
pub(crate) const COMPRESSION_NONE: u8 = 0;
/// Payload is a length-prefixed zstd frame.
pub(crate) const COMPRESSION_ZSTD: u8 = 1;

/// Compresses blocks with zstd, reusing one context and buffer.
pub(crate) struct BlockCompressor {
    /// The zstd context.
    zstd: zstd::bulk::Compressor<'static>,
    /// The zstd frame of the last block.
    frame: Vec<u8>,
    /// The payload of the last block: length prefix and frame.
    payload: Vec<u8>,
}

impl fmt::Debug for BlockCompressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockCompressor").finish_non_exhaustive()
    }
}

impl BlockCompressor {
    /// A compressor at zstd `level`; `None` if zstd refuses the level.
    pub(crate) fn new(level: i32) -> Option<Self> {
        match zstd::bulk::Compressor::new(level) {
            Ok(zstd) => Some(BlockCompressor {
                zstd,
                frame: Vec::new(),
                payload: Vec::new(),
            }),
            Err(e) => {
                tracing::warn!(level, error = %e, "zstd unavailable; table blocks stored uncompressed");
                None
            }
        }
    }

    /// The compressed payload for `raw`, or `None` if compression does not
    /// save at least 1/8 of the bytes (or fails).
    fn compress(&mut self, raw: &[u8]) -> Option<&[u8]> {
        let raw_len = u32::try_from(raw.len()).ok()?;
        self.frame.clear();
        self.frame
            .reserve(zstd::zstd_safe::compress_bound(raw.len()));
        self.zstd.compress_to_buffer(raw, &mut self.frame).ok()?;
        if self.frame.len() + 4 > raw.len() - raw.len() / 8 {
            return None;
        }
        self.payload.clear();
        self.payload.extend_from_slice(&raw_len.to_le_bytes());
        self.payload.extend_from_slice(&self.frame);
        Some(&self.payload)
    }
}

/// Appends `raw` as a stored block to `out`, compressed when `compressor`
/// is given and it pays off. Returns where the block went.
pub(crate) fn write_block(
    out: &mut Vec<u8>,
    raw: &[u8],
    compressor: Option<&mut BlockCompressor>,
) -> BlockHandle {
    let offset = out.len();
    let (payload, kind) = match compressor.and_then(|c| c.compress(raw)) {
        Some(p) => (p, COMPRESSION_ZSTD),
        None => (raw, COMPRESSION_NONE),
    };
    out.extend_from_slice(payload);
    out.push(kind);
    let crc = checksum(&out[offset..]);
    out.extend_from_slice(&crc.to_le_bytes());
    let handle = BlockHandle {
        offset: offset as u64,
        len: payload.len() as u64,
    };
    debug_assert_eq!(handle.end(), Some(out.len() as u64));
    handle
}

/// Size of the stored form of a payload of `len` bytes.
pub(crate) fn stored_len(len: usize) -> usize {
    len + BLOCK_TRAILER_LEN
}

thread_local! {
    /// One zstd decompression context per thread, created on first use.
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Reads the stored block at `handle` from `file`, verifying its checksum
/// and decompressing it. Uncompressed blocks borrow the file unless
/// `owned`. `what` names the block kind for error messages.
pub(crate) fn read_block(
    path: &Path,
    file: &FileBytes,
    handle: BlockHandle,
    what: &str,
    owned: bool,
) -> Result<BlockBytes> {
    let corrupt = |reason: String| Error::corruption(path, handle.offset, reason);
    let bytes = (**file).as_ref();
    let range = usize::try_from(handle.offset)
        .ok()
        .zip(usize::try_from(handle.len).ok())
        .and_then(|(o, l)| Some((o, o.checked_add(l)?)))
        .filter(|&(_, end)| {
            end.checked_add(BLOCK_TRAILER_LEN)
                .is_some_and(|e| e <= bytes.len())
        });
    let Some((start, end)) = range else {
        return Err(corrupt(format!("{what} block lies outside the file")));
    };
    let kind = bytes[end];
    let stored_crc = get_u32(bytes, end + 1).unwrap_or(0);
    if checksum(&bytes[start..=end]) != stored_crc {
        return Err(corrupt(format!("{what} block checksum mismatch")));
    }
    match kind {
        COMPRESSION_NONE if owned => Ok(BlockBytes::Owned(bytes[start..end].to_vec())),
        COMPRESSION_NONE => Ok(BlockBytes::Mapped {
            file: file.clone(),
            start,
            end,
        }),
        COMPRESSION_ZSTD => decompress(&bytes[start..end])
            .map(BlockBytes::Owned)
            .map_err(|e| corrupt(format!("{what} block: {e}"))),
        k => Err(corrupt(format!(
            "{what} block has unknown compression type {k}"
        ))),
    }
}

/// Decodes a [`COMPRESSION_ZSTD`] payload.
fn decompress(payload: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let raw_len = get_u32(payload, 0).ok_or("compressed payload too short")? as usize;
    let frame = &payload[4..];
    let mut out = Vec::with_capacity(raw_len);
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new().map_err(|e| format!("zstd init: {e}"))?);
        }
        let Some(d) = slot.as_mut() else {
            return Err("zstd context missing".to_string());
        };
        d.decompress_to_buffer(frame, &mut out)
            .map_err(|e| format!("zstd: {e}"))
    })?;
    if out.len() != raw_len {
        return Err(format!(
            "decompressed to {} bytes, expected {raw_len}",
            out.len()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn file(b: Vec<u8>) -> FileBytes {
        Arc::new(b)
    }

    #[test]
    fn round_trip_plain_and_zstd() {
        let compressible: Vec<u8> = (0..4000u32).flat_map(|i| (i % 7).to_le_bytes()).collect();
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let random: Vec<u8> = (0..4000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let mut c = BlockCompressor::new(3).unwrap();
        let mut out = vec![9u8; 3];
        let h1 = write_block(&mut out, &compressible, Some(&mut c));
        let h2 = write_block(&mut out, &random, Some(&mut c));
        let h3 = write_block(&mut out, b"plain", None);
        assert!(
            h1.len < compressible.len() as u64 / 2,
            "compressible block stored raw"
        );
        assert_eq!(
            h2.len,
            random.len() as u64,
            "incompressible block compressed"
        );
        assert_eq!(out[(h2.offset + h2.len) as usize], COMPRESSION_NONE);
        let f = file(out.clone());
        let p = Path::new("t");
        for owned in [false, true] {
            assert_eq!(
                read_block(p, &f, h1, "data", owned).unwrap().as_slice(),
                &compressible[..]
            );
            assert_eq!(
                read_block(p, &f, h2, "data", owned).unwrap().as_slice(),
                &random[..]
            );
            assert_eq!(
                read_block(p, &f, h3, "data", owned).unwrap().as_slice(),
                b"plain"
            );
        }
        for i in 3..out.len() {
            let mut bad = out.clone();
            bad[i] ^= 4;
            let f = file(bad);
            let ok = [h1, h2, h3]
                .iter()
                .filter(|&&h| read_block(p, &f, h, "data", false).is_ok())
                .count();
            assert_eq!(ok, 2, "flip at {i} went unnoticed");
        }
        let outside = BlockHandle {
            offset: h3.offset,
            len: h3.len + 1,
        };
        assert!(read_block(p, &f, outside, "data", false)
            .unwrap_err()
            .is_corruption());
        let huge = BlockHandle {
            offset: u64::MAX - 2,
            len: 5,
        };
        assert!(read_block(p, &f, huge, "data", false)
            .unwrap_err()
            .is_corruption());
    }
}
