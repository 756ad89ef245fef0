//! The backup byte layout: header, frames, trailer (see "Backup format" in
//! `docs/engine-format.md`).
//!
//! Every integer has an explicit byte order (little-endian fixed width, or
//! LEB128). Decoders never panic on bad bytes: they return a reason, which
//! the reader turns into `Error::Corruption` with the byte offset.

use super::fingerprint::Fingerprint;
use crate::format::{get_u32, get_u64, get_uvarint, put_uvarint};
use crate::stream::{KvBatch, KvEntry};

/// First bytes of every backup.
pub(crate) const MAGIC: [u8; 8] = *b"SETTBKUP";
/// The format this build writes and reads.
pub(crate) const FORMAT_VERSION: u32 = 1;
/// Bytes in the header.
pub(crate) const HEADER_LEN: usize = 48;
/// Header flag: an incremental backup (`since_ts > 0`).
pub(crate) const FLAG_INCREMENTAL: u32 = 1;
/// A frame length of this value starts the trailer instead of a frame.
pub(crate) const TRAILER_MARKER: u32 = u32::MAX;
/// Bytes in the trailer, marker included.
pub(crate) const TRAILER_LEN: usize = 44;
/// Bytes in a frame's `len | crc` prefix.
pub(crate) const FRAME_PREFIX_LEN: usize = 8;
/// Largest frame payload accepted (a frame holds at least one whole
/// value, and values are below 2 GiB).
pub(crate) const FRAME_LEN_MAX: u32 = 1 << 31;
/// Fewest bytes one encoded entry can take: flags, user_meta, three
/// one-byte varints, the version and a one-byte key.
const ENTRY_LEN_MIN: usize = 2 + 3 + 8 + 1;
/// Entry flag: a deletion marker.
const ENTRY_DELETED: u8 = 1;

/// What the header says about a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// Versions newer than this are in the backup; 0 for a full backup.
    pub(crate) since_ts: u64,
    /// The snapshot the backup was read at: no version is newer.
    pub(crate) read_ts: u64,
    /// When the backup was started, Unix seconds (informational).
    pub(crate) created_at_secs: u64,
}

impl Header {
    /// True for an incremental backup.
    pub(crate) fn is_incremental(&self) -> bool {
        self.since_ts > 0
    }

    /// The 48 header bytes.
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        assert!(self.since_ts <= self.read_ts, "since_ts after read_ts");
        let flags = if self.is_incremental() {
            FLAG_INCREMENTAL
        } else {
            0
        };
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&flags.to_le_bytes());
        b[16..24].copy_from_slice(&self.since_ts.to_le_bytes());
        b[24..32].copy_from_slice(&self.read_ts.to_le_bytes());
        b[32..40].copy_from_slice(&self.created_at_secs.to_le_bytes());
        // 40..44 reserved, zero.
        let crc = crc32fast::hash(&b[..44]);
        b[44..48].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses and validates the header; `Err` holds the reason and the
    /// offset of the bad field.
    pub(crate) fn decode(b: &[u8; HEADER_LEN]) -> Result<Header, (u64, String)> {
        let u32_at = |off: usize| get_u32(b, off).unwrap_or_default();
        let u64_at = |off: usize| get_u64(b, off).unwrap_or_default();
        if b[0..8] != MAGIC {
            return Err((0, "not a sett backup (bad magic)".into()));
        }
        let version = u32_at(8);
        if version != FORMAT_VERSION {
            return Err((
                8,
                format!(
                    "unsupported backup format version {version} (this build reads version {FORMAT_VERSION})"
                ),
            ));
        }
        let crc = u32_at(44);
        let want = crc32fast::hash(&b[..44]);
        if crc != want {
            return Err((
                44,
                format!("header checksum mismatch (stored {crc:#010x}, computed {want:#010x})"),
            ));
        }
        let flags = u32_at(12);
        let h = Header {
            since_ts: u64_at(16),
            read_ts: u64_at(24),
            created_at_secs: u64_at(32),
        };
        if flags & !FLAG_INCREMENTAL != 0 {
            return Err((12, format!("unknown header flags {flags:#x}")));
        }
        if (flags & FLAG_INCREMENTAL != 0) != h.is_incremental() {
            return Err((12, "incremental flag disagrees with since_ts".into()));
        }
        if h.since_ts > h.read_ts {
            return Err((
                16,
                format!("since_ts {} is after read_ts {}", h.since_ts, h.read_ts),
            ));
        }
        if u32_at(40) != 0 {
            return Err((40, "reserved header bytes are not zero".into()));
        }
        Ok(h)
    }
}

/// Appends one frame (`len | crc | payload`) holding `batch` to `out`.
pub(crate) fn encode_frame(batch: &KvBatch, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_PREFIX_LEN]);
    out.extend_from_slice(&batch.stream_id.to_le_bytes());
    put_uvarint(out, batch.entries.len() as u64);
    for e in &batch.entries {
        debug_assert!(!e.deleted || e.value.is_empty(), "deletion with a value");
        out.push(if e.deleted { ENTRY_DELETED } else { 0 });
        out.push(e.user_meta);
        put_uvarint(out, e.key.len() as u64);
        put_uvarint(out, e.value.len() as u64);
        put_uvarint(out, e.expires_at);
        out.extend_from_slice(&e.version.to_le_bytes());
        out.extend_from_slice(&e.key);
        out.extend_from_slice(&e.value);
    }
    let payload_len = out.len() - start - FRAME_PREFIX_LEN;
    let len = u32::try_from(payload_len)
        .ok()
        .filter(|l| *l <= FRAME_LEN_MAX)
        .expect("frame payload below 2 GiB: values are below 2 GiB");
    let crc = crc32fast::hash(&out[start + FRAME_PREFIX_LEN..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes a frame payload whose checksum already matched. `Err` holds the
/// reason and the offset inside the payload.
pub(crate) fn decode_frame(p: &[u8]) -> Result<KvBatch, (usize, String)> {
    let stream_id = get_u32(p, 0).ok_or((0, "frame shorter than its stream id".to_string()))?;
    let (count, n) = get_uvarint(&p[4..]).ok_or((4, "bad entry count".to_string()))?;
    let mut off = 4 + n;
    if count > (p.len() / ENTRY_LEN_MIN) as u64 {
        return Err((4, format!("entry count {count} cannot fit in the frame")));
    }
    let mut entries = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let (e, used) = decode_entry(&p[off..]).map_err(|(o, r)| (off + o, r))?;
        entries.push(e);
        off += used;
    }
    if off != p.len() {
        return Err((off, "bytes after the last entry of a frame".into()));
    }
    Ok(KvBatch { stream_id, entries })
}

fn decode_entry(p: &[u8]) -> Result<(KvEntry, usize), (usize, String)> {
    let short = |off: usize| (off, "entry runs past the end of its frame".to_string());
    let flags = *p.first().ok_or(short(0))?;
    if flags & !ENTRY_DELETED != 0 {
        return Err((0, format!("unknown entry flags {flags:#x}")));
    }
    let user_meta = *p.get(1).ok_or(short(1))?;
    let mut off = 2;
    let varint = |off: &mut usize| -> Result<u64, (usize, String)> {
        let (v, n) = get_uvarint(p.get(*off..).unwrap_or_default()).ok_or(short(*off))?;
        *off += n;
        Ok(v)
    };
    let key_len = varint(&mut off)?;
    let value_len = varint(&mut off)?;
    let expires_at = varint(&mut off)?;
    let version = get_u64(p, off).ok_or(short(off))?;
    off += 8;
    let rest = (p.len() - off) as u64;
    if key_len == 0 {
        return Err((off, "entry with an empty key".into()));
    }
    if key_len.saturating_add(value_len) > rest {
        return Err(short(off));
    }
    let deleted = flags & ENTRY_DELETED != 0;
    if deleted && value_len != 0 {
        return Err((off, "deletion marker with a value".into()));
    }
    let (key_len, value_len) = (key_len as usize, value_len as usize);
    let key = p[off..off + key_len].to_vec();
    let value = p[off + key_len..off + key_len + value_len].to_vec();
    Ok((
        KvEntry {
            key,
            value,
            version,
            user_meta,
            expires_at,
            deleted,
        },
        off + key_len + value_len,
    ))
}

/// What the trailer records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Trailer {
    /// Frames before the trailer.
    pub(crate) frames: u64,
    /// Entries in those frames.
    pub(crate) entries: u64,
    /// The source snapshot's live-key fingerprint (`fingerprint.rs`).
    pub(crate) live: Fingerprint,
    /// crc32 of every byte before the trailer, header included.
    pub(crate) body_crc: u32,
}

impl Trailer {
    /// The 44 trailer bytes, marker first.
    pub(crate) fn encode(&self) -> [u8; TRAILER_LEN] {
        let mut b = [0u8; TRAILER_LEN];
        b[0..4].copy_from_slice(&TRAILER_MARKER.to_le_bytes());
        b[4..12].copy_from_slice(&self.frames.to_le_bytes());
        b[12..20].copy_from_slice(&self.entries.to_le_bytes());
        b[20..28].copy_from_slice(&self.live.keys.to_le_bytes());
        b[28..36].copy_from_slice(&self.live.hash.to_le_bytes());
        b[36..40].copy_from_slice(&self.body_crc.to_le_bytes());
        let crc = crc32fast::hash(&b[..40]);
        b[40..44].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses the trailer (marker included) and checks its own checksum.
    pub(crate) fn decode(b: &[u8; TRAILER_LEN]) -> Result<Trailer, (u64, String)> {
        debug_assert_eq!(get_u32(b, 0), Some(TRAILER_MARKER));
        let crc = get_u32(b, 40).unwrap_or_default();
        let want = crc32fast::hash(&b[..40]);
        if crc != want {
            return Err((
                40,
                format!("trailer checksum mismatch (stored {crc:#010x}, computed {want:#010x})"),
            ));
        }
        Ok(Trailer {
            frames: get_u64(b, 4).unwrap_or_default(),
            entries: get_u64(b, 12).unwrap_or_default(),
            live: Fingerprint {
                keys: get_u64(b, 20).unwrap_or_default(),
                hash: get_u64(b, 28).unwrap_or_default(),
            },
            body_crc: get_u32(b, 36).unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> KvBatch {
        KvBatch {
            stream_id: 7,
            entries: vec![
                KvEntry {
                    key: b"a".to_vec(),
                    value: vec![9; 300],
                    version: 12,
                    user_meta: 3,
                    expires_at: 1_900_000_000,
                    deleted: false,
                },
                KvEntry {
                    key: b"b".to_vec(),
                    value: Vec::new(),
                    version: u64::MAX,
                    user_meta: 0,
                    expires_at: 0,
                    deleted: true,
                },
            ],
        }
    }

    #[test]
    fn header_round_trip_and_checks() {
        let h = Header {
            since_ts: 5,
            read_ts: 9,
            created_at_secs: 77,
        };
        let b = h.encode();
        assert_eq!(Header::decode(&b), Ok(h));
        for i in 0..HEADER_LEN {
            let mut bad = b;
            bad[i] ^= 0x40;
            assert!(Header::decode(&bad).is_err(), "flip at byte {i} not seen");
        }
    }

    #[test]
    fn frame_round_trip_and_bad_payloads() {
        let mut out = Vec::new();
        encode_frame(&batch(), &mut out);
        let len = get_u32(&out, 0).unwrap() as usize;
        assert_eq!(len + FRAME_PREFIX_LEN, out.len());
        let payload = &out[FRAME_PREFIX_LEN..];
        assert_eq!(get_u32(&out, 4).unwrap(), crc32fast::hash(payload));
        assert_eq!(decode_frame(payload).unwrap(), batch());
        // Every truncation fails cleanly.
        for cut in 0..payload.len() {
            assert!(decode_frame(&payload[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = payload.to_vec();
        extra.push(0);
        assert!(decode_frame(&extra).is_err());
        // An end-of-range marker is a frame with no entries.
        let mut out = Vec::new();
        let end = KvBatch {
            stream_id: 3,
            entries: Vec::new(),
        };
        encode_frame(&end, &mut out);
        assert_eq!(decode_frame(&out[FRAME_PREFIX_LEN..]).unwrap(), end);
    }

    #[test]
    fn trailer_round_trip() {
        let t = Trailer {
            frames: 3,
            entries: 1000,
            live: Fingerprint { keys: 5, hash: 77 },
            body_crc: 0xdead_beef,
        };
        let b = t.encode();
        assert_eq!(Trailer::decode(&b), Ok(t));
        let mut bad = b;
        bad[10] ^= 1;
        assert!(Trailer::decode(&bad).is_err());
    }
}
