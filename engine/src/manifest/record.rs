//! The manifest file's byte layout: a file header, then records.
//!
//! ```text
//! file   := header record*
//! header := magic [8]"SETTMFST" | version u32 | header_crc u32   (16 bytes)
//! record := len u32 | crc u32 | payload[len]                      (8 + len bytes)
//! ```
//!
//! All integers little-endian; `header_crc` is [`checksum`] of the first 12
//! header bytes, `crc` is [`checksum`] of the payload. The payload is a batch
//! of edits (see [`super::edit`]); `len` is in `1..=MAX_RECORD_BYTES`.
//!
//! Replay ([`replay`]) stops at the first record that does not frame (short
//! header, bad length, short payload, bad crc). If no well-framed record
//! starts anywhere after it, the damage is a torn tail and replay reports
//! the length of the good prefix; otherwise it is
//! [`crate::Error::Corruption`]. A well-framed record whose payload does not
//! decode, or whose edits do not apply, is always corruption: those bytes
//! were written whole.

use super::edit::{decode_edits, encode_edits, ManifestEdit};
use super::state::ManifestState;
use crate::format::{checksum, get_u32};
use crate::{Error, Result};
use std::path::Path;

/// First eight bytes of every manifest file.
pub(crate) const MAGIC: [u8; 8] = *b"SETTMFST";
/// Format version written in the header; the only one this code reads.
pub(crate) const FORMAT_VERSION: u32 = 1;
/// Size of the file header in bytes.
pub(crate) const FILE_HEADER_LEN: usize = 16;
/// Size of a record header (`len u32 | crc u32`) in bytes.
pub(crate) const RECORD_HEADER_LEN: usize = 8;
/// Largest payload a record may carry (1 GiB).
pub(crate) const MAX_RECORD_BYTES: usize = 1 << 30;

/// The 16-byte file header.
pub(crate) fn file_header() -> [u8; FILE_HEADER_LEN] {
    let mut h = [0u8; FILE_HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    let crc = checksum(&h[..12]);
    h[12..16].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks the file header at the front of `bytes`.
pub(crate) fn check_file_header(path: &Path, bytes: &[u8]) -> Result<()> {
    let Some(h) = bytes.get(..FILE_HEADER_LEN) else {
        return Err(Error::corruption(
            path,
            0,
            format!(
                "file of {} bytes is shorter than the {FILE_HEADER_LEN}-byte header",
                bytes.len()
            ),
        ));
    };
    if h[..8] != MAGIC {
        return Err(Error::corruption(path, 0, "bad magic: not a manifest file"));
    }
    let stored = get_u32(h, 12).unwrap_or_default();
    let actual = checksum(&h[..12]);
    if stored != actual {
        return Err(Error::corruption(
            path,
            0,
            format!("header checksum mismatch: stored {stored:#010x}, computed {actual:#010x}"),
        ));
    }
    let version = get_u32(h, 8).unwrap_or_default();
    if version != FORMAT_VERSION {
        return Err(Error::corruption(
            path,
            8,
            format!(
                "unsupported manifest format version {version} (this build reads {FORMAT_VERSION})"
            ),
        ));
    }
    Ok(())
}

/// Appends one framed record holding `edits` to `out` and returns the
/// payload length.
///
/// Precondition: `edits` is not empty.
pub(crate) fn encode_record(edits: &[ManifestEdit], out: &mut Vec<u8>) -> usize {
    assert!(
        !edits.is_empty(),
        "a manifest record holds at least one edit"
    );
    let start = out.len();
    out.extend_from_slice(&[0u8; RECORD_HEADER_LEN]);
    encode_edits(edits, out);
    let payload_len = out.len() - start - RECORD_HEADER_LEN;
    let crc = checksum(&out[start + RECORD_HEADER_LEN..]);
    // Lengths above u32 are rejected by callers against MAX_RECORD_BYTES;
    // saturate so a too-large record never frames as a small valid one.
    let len = u32::try_from(payload_len).unwrap_or(u32::MAX);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    payload_len
}

/// Why the record at some offset could not be read.
#[derive(Debug)]
pub(crate) enum RecordFault {
    /// The record does not frame: it may be a torn write.
    Damaged(String),
    /// The record frames (length and crc are right) but its payload is
    /// malformed: never a torn write.
    Invalid(String),
}

/// Reads the record starting at `off`, returning its edits and the offset
/// just past it.
pub(crate) fn read_record(
    bytes: &[u8],
    off: usize,
) -> Result<(Vec<ManifestEdit>, usize), RecordFault> {
    let rest = bytes.len().saturating_sub(off);
    let (Some(len), Some(crc)) = (get_u32(bytes, off), get_u32(bytes, off.saturating_add(4)))
    else {
        return Err(RecordFault::Damaged(format!(
            "record header needs {RECORD_HEADER_LEN} bytes, {rest} left"
        )));
    };
    let len = len as usize;
    if len == 0 || len > MAX_RECORD_BYTES {
        return Err(RecordFault::Damaged(format!(
            "record length {len} out of range"
        )));
    }
    let start = off + RECORD_HEADER_LEN;
    let end = start
        .checked_add(len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| {
            RecordFault::Damaged(format!(
                "record payload of {len} bytes overruns the file ({} left)",
                rest - RECORD_HEADER_LEN
            ))
        })?;
    let payload = &bytes[start..end];
    let actual = checksum(payload);
    if actual != crc {
        return Err(RecordFault::Damaged(format!(
            "record checksum mismatch: stored {crc:#010x}, computed {actual:#010x}"
        )));
    }
    let edits = decode_edits(payload).map_err(RecordFault::Invalid)?;
    Ok((edits, end))
}

/// What replaying a manifest file found.
#[derive(Debug)]
pub(crate) struct Replayed {
    /// The state after every good record.
    pub(crate) state: ManifestState,
    /// Bytes of header and good records; the file should be cut here.
    pub(crate) good_len: u64,
    /// Number of good records.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) records: u64,
    /// Why the tail after `good_len` was dropped, if it was.
    pub(crate) torn: Option<String>,
}

/// Replays the whole manifest file `bytes` (read from `path`, named in
/// errors). Never panics on any input.
pub(crate) fn replay(path: &Path, bytes: &[u8]) -> Result<Replayed> {
    check_file_header(path, bytes)?;
    let mut state = ManifestState::default();
    let mut off = FILE_HEADER_LEN;
    let mut records = 0u64;
    // Bounded: every iteration either returns or moves `off` forward by at
    // least one record header.
    while off < bytes.len() {
        match read_record(bytes, off) {
            Ok((edits, end)) => {
                assert!(end > off + RECORD_HEADER_LEN && end <= bytes.len());
                for (i, edit) in edits.iter().enumerate() {
                    state.apply_edit(edit).map_err(|reason| {
                        Error::corruption(
                            path,
                            off as u64,
                            format!("record {records}, edit {i}: {reason}"),
                        )
                    })?;
                }
                records += 1;
                off = end;
            }
            Err(RecordFault::Invalid(reason)) => {
                return Err(Error::corruption(
                    path,
                    off as u64,
                    format!("record {records}: {reason}"),
                ));
            }
            Err(RecordFault::Damaged(reason)) => {
                if let Some(next) = next_framed_record(bytes, off + 1) {
                    return Err(Error::corruption(
                        path,
                        off as u64,
                        format!(
                            "record {records}: {reason}; a valid record follows at offset {next}"
                        ),
                    ));
                }
                return Ok(Replayed {
                    state,
                    good_len: off as u64,
                    records,
                    torn: Some(format!("record {records} at offset {off}: {reason}")),
                });
            }
        }
    }
    assert_eq!(off, bytes.len());
    Ok(Replayed {
        state,
        good_len: off as u64,
        records,
        torn: None,
    })
}

/// The first offset at or after `from` where a well-framed record (length
/// in range, payload inside the file, crc right) starts.
///
/// Cost: one checksum per candidate offset whose length fits; in practice
/// the scan covers one torn record, or stops at the next real record.
fn next_framed_record(bytes: &[u8], from: usize) -> Option<usize> {
    let last = bytes.len().checked_sub(RECORD_HEADER_LEN)?;
    (from..=last).find(|&p| !matches!(read_record(bytes, p), Err(RecordFault::Damaged(_))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(batches: &[Vec<ManifestEdit>]) -> (Vec<u8>, Vec<usize>) {
        let mut bytes = file_header().to_vec();
        let mut starts = Vec::new();
        for b in batches {
            starts.push(bytes.len());
            encode_record(b, &mut bytes);
        }
        (bytes, starts)
    }

    fn batches() -> Vec<Vec<ManifestEdit>> {
        vec![
            vec![ManifestEdit::NextFileId(1)],
            vec![ManifestEdit::MaxVersion(5), ManifestEdit::NextFileId(3)],
            vec![ManifestEdit::VlogHead { fid: 1, offset: 9 }],
        ]
    }

    #[test]
    fn replays_all_records() {
        let (bytes, _) = file(&batches());
        let r = replay(Path::new("M"), &bytes).unwrap();
        assert_eq!(r.records, 3);
        assert_eq!(r.good_len, bytes.len() as u64);
        assert!(r.torn.is_none());
        assert_eq!(
            (r.state.next_file_id, r.state.max_version, r.state.vlog_head),
            (3, 5, (1, 9))
        );
    }

    #[test]
    fn header_only_file_is_the_empty_state() {
        let r = replay(Path::new("M"), &file_header()).unwrap();
        assert_eq!(
            (r.records, r.good_len, r.state),
            (0, FILE_HEADER_LEN as u64, ManifestState::default())
        );
    }

    #[test]
    fn header_problems_are_corruption() {
        let (bytes, _) = file(&batches());
        for cut in 0..FILE_HEADER_LEN {
            assert!(replay(Path::new("M"), &bytes[..cut])
                .unwrap_err()
                .is_corruption());
        }
        let mut bad = bytes.clone();
        bad[0] ^= 1;
        assert!(replay(Path::new("M"), &bad)
            .unwrap_err()
            .to_string()
            .contains("magic"));
        let mut v2 = bytes.clone();
        v2[8..12].copy_from_slice(&2u32.to_le_bytes());
        let crc = checksum(&v2[..12]);
        v2[12..16].copy_from_slice(&crc.to_le_bytes());
        assert!(replay(Path::new("M"), &v2)
            .unwrap_err()
            .to_string()
            .contains("version 2"));
    }

    #[test]
    fn zero_filled_tail_is_torn() {
        let (mut bytes, _) = file(&batches());
        let good = bytes.len();
        bytes.extend_from_slice(&[0u8; 100]);
        let r = replay(Path::new("M"), &bytes).unwrap();
        assert_eq!(r.good_len, good as u64);
        assert_eq!(r.records, 3);
    }

    #[test]
    fn framed_but_malformed_record_is_corruption_even_last() {
        let (mut bytes, _) = file(&batches());
        let off = bytes.len();
        let payload = [1u8, 77, 0];
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&checksum(&payload).to_le_bytes());
        bytes.extend_from_slice(&payload);
        match replay(Path::new("M"), &bytes).unwrap_err() {
            Error::Corruption { offset, reason, .. } => {
                assert_eq!(offset, off as u64);
                assert!(reason.contains("unknown edit tag"), "{reason}");
            }
            e => panic!("unexpected {e}"),
        }
    }

    #[test]
    fn damaged_middle_record_names_its_offset() {
        let (mut bytes, starts) = file(&batches());
        bytes[starts[1] + RECORD_HEADER_LEN] ^= 0x40;
        match replay(Path::new("M"), &bytes).unwrap_err() {
            Error::Corruption {
                file,
                offset,
                reason,
            } => {
                assert_eq!(file, Path::new("M"));
                assert_eq!(offset, starts[1] as u64);
                assert!(
                    reason.contains(&format!("follows at offset {}", starts[2])),
                    "{reason}"
                );
            }
            e => panic!("unexpected {e}"),
        }
    }
}
