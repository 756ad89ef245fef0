//! The on-disk layout of an encrypted file: a plaintext header naming the
//! data key, then one or more AES-256-GCM *frames* per append.
//!
//! ```text
//! file         := file_header frame*
//! file_header  := magic "SETTENC1" | version u32 (1) | key_id u64 | salt [16] | crc32(bytes 0..36) u32   40 bytes
//! frame        := frame_header | ciphertext [plain_len] | tag [16]
//! frame_header := plain_len u32 | flags u16 | reserved u16 (0) | nonce [12] | crc32(bytes 0..20) u32  24 bytes
//! ```
//!
//! Integers are little-endian. `flags` bit 0 (`END_OF_APPEND`) marks the
//! last frame of one `append`; an append longer than [`FRAME_MAX_BYTES`] is
//! split into several frames. The frame key is derived from the data key
//! and the file's salt ([`FileCipher::derive`]); the associated data is the
//! frame's logical (plaintext) offset, `plain_len` and `flags`, so a frame
//! cannot be moved within a file, to another file, or re-flagged.
//!
//! Invariants of a [`FrameIndex`]: frames tile the logical file from 0 in
//! order; the physical offset of frame `i` is
//! `FILE_HEADER_LEN + start(i) + i × FRAME_OVERHEAD`.

use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aes::cipher::{BlockEncrypt, KeyInit};
use aes_gcm::aes::Aes256;
use aes_gcm::{AeadInPlace, Aes256Gcm};
use std::io;

/// File magic, ASCII `SETTENC1`.
pub(crate) const FILE_MAGIC: [u8; 8] = *b"SETTENC1";
/// File format version.
pub(crate) const FILE_VERSION: u32 = 1;
/// Bytes of the file header.
pub(crate) const FILE_HEADER_LEN: u64 = 40;
/// Bytes of a frame header.
pub(crate) const FRAME_HEADER_LEN: usize = 24;
/// Bytes of a GCM tag.
pub(crate) const TAG_LEN: usize = 16;
/// Bytes a frame adds to its plaintext.
pub(crate) const FRAME_OVERHEAD: u64 = (FRAME_HEADER_LEN + TAG_LEN) as u64;
/// Largest plaintext of one frame: a random read decrypts at most this
/// much (twice when it straddles two frames).
pub(crate) const FRAME_MAX_BYTES: usize = 4 << 10;
/// `flags` bit: last frame of an append.
pub(crate) const FLAG_END_OF_APPEND: u16 = 1;
/// Bytes of the random per-file salt.
pub(crate) const SALT_LEN: usize = 16;
/// Bytes of a GCM nonce.
pub(crate) const NONCE_LEN: usize = 12;

/// The file header: which data key, and the salt the file key is derived
/// with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileHeader {
    pub(crate) key_id: u64,
    pub(crate) salt: [u8; SALT_LEN],
}

impl FileHeader {
    /// The header's 40 bytes.
    pub(crate) fn encode(&self) -> [u8; FILE_HEADER_LEN as usize] {
        let mut h = [0u8; FILE_HEADER_LEN as usize];
        h[0..8].copy_from_slice(&FILE_MAGIC);
        h[8..12].copy_from_slice(&FILE_VERSION.to_le_bytes());
        h[12..20].copy_from_slice(&self.key_id.to_le_bytes());
        h[20..36].copy_from_slice(&self.salt);
        let crc = crc32fast::hash(&h[..36]);
        h[36..40].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Parses a header; the reason when it is not one.
    pub(crate) fn decode(h: &[u8]) -> Result<FileHeader, &'static str> {
        if h.len() < FILE_HEADER_LEN as usize {
            return Err("encrypted file header truncated");
        }
        if h[0..8] != FILE_MAGIC {
            return Err(
                "not an encrypted file (bad magic): was the database created without encryption?",
            );
        }
        if crc32fast::hash(&h[..36]) != le_u32(&h[36..40]) {
            return Err("encrypted file header checksum mismatch");
        }
        if le_u32(&h[8..12]) != FILE_VERSION {
            return Err("unknown encrypted file version");
        }
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&h[20..36]);
        Ok(FileHeader {
            key_id: le_u64(&h[12..20]),
            salt,
        })
    }
}

/// A frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    pub(crate) plain_len: u32,
    pub(crate) flags: u16,
    pub(crate) nonce: [u8; NONCE_LEN],
}

impl FrameHeader {
    /// The header's 24 bytes.
    pub(crate) fn encode(&self) -> [u8; FRAME_HEADER_LEN] {
        debug_assert!(self.plain_len >= 1 && self.plain_len as usize <= FRAME_MAX_BYTES);
        let mut h = [0u8; FRAME_HEADER_LEN];
        h[0..4].copy_from_slice(&self.plain_len.to_le_bytes());
        h[4..6].copy_from_slice(&self.flags.to_le_bytes());
        h[8..20].copy_from_slice(&self.nonce);
        let crc = crc32fast::hash(&h[..20]);
        h[20..24].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Parses a header: `None` unless its checksum matches and every field
    /// is in range.
    pub(crate) fn decode(h: &[u8]) -> Option<FrameHeader> {
        if h.len() < FRAME_HEADER_LEN {
            return None;
        }
        let plain_len = le_u32(&h[0..4]);
        let flags = u16::from_le_bytes([h[4], h[5]]);
        let reserved = u16::from_le_bytes([h[6], h[7]]);
        // Cheap field checks first: the torn-tail search calls this at
        // every byte offset.
        if plain_len == 0
            || plain_len as usize > FRAME_MAX_BYTES
            || flags & !FLAG_END_OF_APPEND != 0
            || reserved != 0
            || crc32fast::hash(&h[..20]) != le_u32(&h[20..24])
        {
            return None;
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&h[8..20]);
        Some(FrameHeader {
            plain_len,
            flags,
            nonce,
        })
    }

    /// True on the last frame of an append.
    pub(crate) fn is_end(&self) -> bool {
        self.flags & FLAG_END_OF_APPEND != 0
    }

    /// Bytes of the whole frame on disk.
    pub(crate) fn frame_len(&self) -> u64 {
        u64::from(self.plain_len) + FRAME_OVERHEAD
    }
}

/// AES-256-GCM under one file's key.
pub(crate) struct FileCipher(Aes256Gcm);

impl std::fmt::Debug for FileCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileCipher(<redacted>)")
    }
}

impl FileCipher {
    /// The file key: `AES-256(data_key, salt) ‖ AES-256(data_key, !salt)`,
    /// AES used as a PRF on two distinct blocks. Every file gets its own
    /// key, so random 96-bit nonces stay far below the GCM collision bound
    /// however many frames all files under one data key hold.
    pub(crate) fn derive(data_key: &[u8; 32], salt: &[u8; SALT_LEN]) -> FileCipher {
        let aes = Aes256::new(GenericArray::from_slice(data_key));
        let mut lo = *GenericArray::from_slice(salt);
        let mut hi = *GenericArray::from_slice(salt);
        for b in hi.iter_mut() {
            *b = !*b;
        }
        aes.encrypt_block(&mut lo);
        aes.encrypt_block(&mut hi);
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(&lo);
        key[16..].copy_from_slice(&hi);
        FileCipher(Aes256Gcm::new(GenericArray::from_slice(&key)))
    }

    /// Encrypts `buf` in place as the frame at logical offset `offset`;
    /// returns the tag.
    pub(crate) fn seal(&self, h: &FrameHeader, offset: u64, buf: &mut [u8]) -> [u8; TAG_LEN] {
        debug_assert_eq!(buf.len(), h.plain_len as usize);
        let tag = self
            .0
            .encrypt_in_place_detached(
                GenericArray::from_slice(&h.nonce),
                &associated_data(h, offset),
                buf,
            )
            .expect("frame below the GCM plaintext limit");
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(&tag);
        out
    }

    /// Decrypts `buf` in place; `false` (and `buf` unspecified) if the
    /// frame does not authenticate.
    #[must_use]
    pub(crate) fn open(&self, h: &FrameHeader, offset: u64, buf: &mut [u8], tag: &[u8]) -> bool {
        buf.len() == h.plain_len as usize
            && tag.len() == TAG_LEN
            && self
                .0
                .decrypt_in_place_detached(
                    GenericArray::from_slice(&h.nonce),
                    &associated_data(h, offset),
                    buf,
                    GenericArray::from_slice(tag),
                )
                .is_ok()
    }
}

fn associated_data(h: &FrameHeader, offset: u64) -> [u8; 14] {
    let mut ad = [0u8; 14];
    ad[0..8].copy_from_slice(&offset.to_le_bytes());
    ad[8..12].copy_from_slice(&h.plain_len.to_le_bytes());
    ad[12..14].copy_from_slice(&h.flags.to_le_bytes());
    ad
}

/// Bit of a [`FrameIndex`] entry set on the last frame of an append.
const END_BIT: u64 = 1 << 63;

/// Where each frame of a file starts, in logical (plaintext) bytes.
#[derive(Debug, Default)]
pub(crate) struct FrameIndex {
    /// Logical start of frame `i`, with [`END_BIT`] set on the last frame
    /// of an append. 8 bytes per frame.
    frames: Vec<u64>,
    logical_len: u64,
}

impl FrameIndex {
    /// Plaintext length of the file.
    pub(crate) fn logical_len(&self) -> u64 {
        self.logical_len
    }

    /// Number of frames.
    pub(crate) fn frames(&self) -> usize {
        self.frames.len()
    }

    /// Logical start of frame `i`.
    pub(crate) fn start(&self, i: usize) -> u64 {
        self.frames[i] & !END_BIT
    }

    /// Logical end of frame `i`.
    pub(crate) fn end(&self, i: usize) -> u64 {
        match self.frames.get(i + 1) {
            Some(next) => next & !END_BIT,
            None => self.logical_len,
        }
    }

    /// True if frame `i` ends an append.
    pub(crate) fn is_end(&self, i: usize) -> bool {
        self.frames[i] & END_BIT != 0
    }

    /// Physical offset of frame `i` (`i == frames()` gives the end).
    pub(crate) fn phys_off(&self, i: usize) -> u64 {
        let start = if i == self.frames.len() {
            self.logical_len
        } else {
            self.start(i)
        };
        FILE_HEADER_LEN + start + i as u64 * FRAME_OVERHEAD
    }

    /// Physical length of the file's valid bytes.
    pub(crate) fn phys_len(&self) -> u64 {
        self.phys_off(self.frames.len())
    }

    /// The frame holding logical byte `offset` (`offset < logical_len`).
    pub(crate) fn find(&self, offset: u64) -> usize {
        debug_assert!(offset < self.logical_len);
        self.frames.partition_point(|&f| f & !END_BIT <= offset) - 1
    }

    /// Appends a frame of `len` plaintext bytes.
    pub(crate) fn push(&mut self, len: u32, end: bool) {
        debug_assert!(len >= 1);
        debug_assert!(self.logical_len < END_BIT);
        let bit = if end { END_BIT } else { 0 };
        self.frames.push(self.logical_len | bit);
        self.logical_len += u64::from(len);
    }

    /// Keeps the first `n` frames.
    pub(crate) fn truncate(&mut self, n: usize) {
        if n < self.frames.len() {
            self.logical_len = self.start(n);
            self.frames.truncate(n);
        }
    }

    /// Frames in the last complete append: the index of its first frame.
    pub(crate) fn last_append_start(&self) -> usize {
        let n = self.frames.len();
        debug_assert!(n > 0 && self.is_end(n - 1));
        let mut i = n - 1;
        while i > 0 && !self.is_end(i - 1) {
            i -= 1;
        }
        i
    }
}

/// What [`scan`] found.
#[derive(Debug)]
pub(crate) struct Scan {
    pub(crate) index: FrameIndex,
    /// Why bytes after the index's end were ignored (a torn last append),
    /// if any were.
    pub(crate) torn: Option<&'static str>,
}

/// Builds the frame index of a file of `phys_len` bytes whose header has
/// been read, given positional reads of its bytes.
///
/// Frame headers are read and checked; only the last frame's tag is
/// checked (others when read). The file ends at the last good append: a
/// trailing partial append, a frame running past the end, a bad frame
/// header with no good one after it, or a last append that fails
/// authentication are a torn tail and are ignored. A bad frame header
/// followed by a good one is corruption: `Err((physical offset, reason))`.
pub(crate) fn scan(
    read_at: &mut dyn FnMut(&mut [u8], u64) -> io::Result<()>,
    phys_len: u64,
    cipher: &FileCipher,
) -> io::Result<Result<Scan, (u64, &'static str)>> {
    /// Read-ahead for runs of small frames (one pread covers many headers).
    const WINDOW_BYTES: usize = 4096;
    let mut index = FrameIndex::default();
    let mut torn = None;
    let mut pos = FILE_HEADER_LEN;
    let mut window = Vec::with_capacity(WINDOW_BYTES);
    let mut window_at = 0u64;
    let mut small = true;
    // Every frame is at least FRAME_OVERHEAD + 1 bytes: a bound on the loop.
    let max_frames = phys_len / (FRAME_OVERHEAD + 1) + 1;
    for _ in 0..=max_frames {
        if pos == phys_len {
            break;
        }
        if phys_len - pos < FRAME_HEADER_LEN as u64 {
            torn = Some("partial frame header at the end");
            break;
        }
        let in_window =
            pos >= window_at && pos + FRAME_HEADER_LEN as u64 <= window_at + window.len() as u64;
        if !in_window {
            let want = if small {
                WINDOW_BYTES
            } else {
                FRAME_HEADER_LEN
            };
            let n = (phys_len - pos).min(want as u64) as usize;
            window.resize(n, 0);
            read_at(&mut window, pos)?;
            window_at = pos;
        }
        let at = (pos - window_at) as usize;
        let Some(h) = FrameHeader::decode(&window[at..at + FRAME_HEADER_LEN]) else {
            if frame_after(read_at, pos + 1, phys_len)? {
                return Ok(Err((pos, "bad frame header before later good frames")));
            }
            torn = Some("bad frame header at the end");
            break;
        };
        if pos + h.frame_len() > phys_len {
            torn = Some("last frame runs past the end of the file");
            break;
        }
        index.push(h.plain_len, h.is_end());
        pos += h.frame_len();
        small = (h.plain_len as usize) < WINDOW_BYTES / 2;
    }
    debug_assert!(torn.is_some() || index.phys_len() == phys_len);
    // A trailing append that never wrote its last frame.
    let mut complete = index.frames();
    while complete > 0 && !index.is_end(complete - 1) {
        complete -= 1;
    }
    if complete < index.frames() {
        torn = Some("last append incomplete");
        index.truncate(complete);
    }
    // The last append's last frame must authenticate, or the append is torn
    // (a crash can leave a full-length frame of garbage or zeros).
    if index.frames() > 0 {
        let i = index.frames() - 1;
        let mut buf = vec![0u8; (index.end(i) - index.start(i)) as usize + FRAME_OVERHEAD as usize];
        read_at(&mut buf, index.phys_off(i))?;
        let ok = FrameHeader::decode(&buf).is_some_and(|h| {
            let (body, tag) = buf[FRAME_HEADER_LEN..].split_at_mut(h.plain_len as usize);
            cipher.open(&h, index.start(i), body, tag)
        });
        if !ok {
            torn = Some("last append fails authentication");
            let first = index.last_append_start();
            index.truncate(first);
        }
    }
    Ok(Ok(Scan { index, torn }))
}

/// True if a well-formed frame header whose frame fits in the file starts
/// at any byte offset in `from..phys_len`.
fn frame_after(
    read_at: &mut dyn FnMut(&mut [u8], u64) -> io::Result<()>,
    from: u64,
    phys_len: u64,
) -> io::Result<bool> {
    if from >= phys_len {
        return Ok(false);
    }
    let mut rest = vec![0u8; usize::try_from(phys_len - from).map_err(io::Error::other)?];
    read_at(&mut rest, from)?;
    for p in 0..rest.len().saturating_sub(FRAME_HEADER_LEN - 1) {
        if let Some(h) = FrameHeader::decode(&rest[p..]) {
            if (p as u64) + h.frame_len() <= rest.len() as u64 {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher() -> FileCipher {
        FileCipher::derive(&[7u8; 32], &[9u8; SALT_LEN])
    }

    /// Builds a file of `appends` (each split into frames of `frame` bytes).
    fn build(c: &FileCipher, appends: &[&[u8]], frame: usize) -> Vec<u8> {
        let mut out = FileHeader {
            key_id: 1,
            salt: [9; SALT_LEN],
        }
        .encode()
        .to_vec();
        let mut logical = 0u64;
        for a in appends {
            let chunks: Vec<&[u8]> = a.chunks(frame).collect();
            for (k, chunk) in chunks.iter().enumerate() {
                let h = FrameHeader {
                    plain_len: chunk.len() as u32,
                    flags: if k + 1 == chunks.len() {
                        FLAG_END_OF_APPEND
                    } else {
                        0
                    },
                    nonce: [k as u8; NONCE_LEN],
                };
                let mut body = chunk.to_vec();
                let tag = c.seal(&h, logical, &mut body);
                out.extend_from_slice(&h.encode());
                out.extend_from_slice(&body);
                out.extend_from_slice(&tag);
                logical += chunk.len() as u64;
            }
        }
        out
    }

    fn scan_bytes(c: &FileCipher, data: &[u8]) -> Result<Scan, (u64, &'static str)> {
        let mut read = |buf: &mut [u8], off: u64| -> io::Result<()> {
            let off = off as usize;
            buf.copy_from_slice(&data[off..off + buf.len()]);
            Ok(())
        };
        scan(&mut read, data.len() as u64, c).unwrap()
    }

    #[test]
    fn headers_round_trip_and_reject_damage() {
        let fh = FileHeader {
            key_id: 42,
            salt: [3; SALT_LEN],
        };
        let bytes = fh.encode();
        assert_eq!(FileHeader::decode(&bytes), Ok(fh));
        for i in 0..bytes.len() {
            let mut b = bytes;
            b[i] ^= 0x10;
            assert!(FileHeader::decode(&b).is_err(), "byte {i}");
        }
        let h = FrameHeader {
            plain_len: 100,
            flags: FLAG_END_OF_APPEND,
            nonce: [5; NONCE_LEN],
        };
        let bytes = h.encode();
        assert_eq!(FrameHeader::decode(&bytes), Some(h));
        for i in 0..bytes.len() {
            let mut b = bytes;
            b[i] ^= 0x01;
            assert_eq!(FrameHeader::decode(&b), None, "byte {i}");
        }
        assert_eq!(FrameHeader::decode(&[0u8; FRAME_HEADER_LEN]), None);
    }

    #[test]
    fn seal_open_binds_offset_and_key() {
        let c = cipher();
        let h = FrameHeader {
            plain_len: 5,
            flags: 0,
            nonce: [1; NONCE_LEN],
        };
        let mut buf = *b"hello";
        let tag = c.seal(&h, 10, &mut buf);
        assert_ne!(&buf, b"hello");
        let mut b = buf;
        assert!(c.open(&h, 10, &mut b, &tag));
        assert_eq!(&b, b"hello");
        let mut b = buf;
        assert!(!c.open(&h, 11, &mut b, &tag), "moved frame");
        let other = FileCipher::derive(&[7u8; 32], &[8u8; SALT_LEN]);
        let mut b = buf;
        assert!(!other.open(&h, 10, &mut b, &tag), "other file's key");
        let flagged = FrameHeader {
            flags: FLAG_END_OF_APPEND,
            ..h
        };
        let mut b = buf;
        assert!(!c.open(&flagged, 10, &mut b, &tag), "re-flagged");
    }

    #[test]
    fn scan_indexes_frames() {
        let c = cipher();
        let data = build(&c, &[b"abcdefghij", b"xy", b"0123456"], 4);
        let s = scan_bytes(&c, &data).unwrap();
        assert!(s.torn.is_none());
        let idx = &s.index;
        assert_eq!(idx.logical_len(), 19);
        assert_eq!(idx.frames(), 3 + 1 + 2);
        assert_eq!(idx.phys_len(), data.len() as u64);
        assert_eq!((idx.start(1), idx.end(1)), (4, 8));
        assert!(!idx.is_end(1) && idx.is_end(2) && idx.is_end(3));
        assert_eq!(idx.find(0), 0);
        assert_eq!(idx.find(9), 2);
        assert_eq!(idx.find(10), 3);
        assert_eq!(idx.find(18), 5);
        assert_eq!(idx.last_append_start(), 4);
    }

    #[test]
    fn torn_tails_cut_back_to_the_last_whole_append() {
        let c = cipher();
        let whole = build(&c, &[b"first append", b"second append!"], 5);
        let first_len = build(&c, &[b"first append"], 5).len();
        // Every cut inside the second append reads as the first alone.
        for cut in first_len..whole.len() {
            let s = scan_bytes(&c, &whole[..cut]).unwrap();
            assert_eq!(s.index.logical_len(), 12, "cut {cut}");
            assert_eq!(s.torn.is_some(), cut > first_len, "cut {cut}");
        }
        // Zeros or garbage in place of the last frame's bytes.
        let mut zeroed = whole.clone();
        let n = zeroed.len();
        zeroed[n - 20..].fill(0);
        assert_eq!(scan_bytes(&c, &zeroed).unwrap().index.logical_len(), 12);
        let mut tail = whole.clone();
        tail.extend_from_slice(&[0u8; 100]);
        assert_eq!(scan_bytes(&c, &tail).unwrap().index.logical_len(), 26);
    }

    #[test]
    fn damaged_middle_header_is_corruption() {
        let c = cipher();
        let data = build(&c, &[b"aaaa", b"bbbb", b"cccc"], 16);
        let mut bad = data.clone();
        bad[FILE_HEADER_LEN as usize + 2] ^= 0xff;
        let err = scan_bytes(&c, &bad).unwrap_err();
        assert_eq!(err.0, FILE_HEADER_LEN);
    }
}

#[cfg(test)]
mod bench {
    use super::*;

    #[test]
    #[ignore = "prints timings"]
    fn gcm_throughput() {
        let c = FileCipher::derive(&[1; 32], &[2; SALT_LEN]);
        let mut buf = vec![0u8; FRAME_MAX_BYTES];
        let h = FrameHeader {
            plain_len: buf.len() as u32,
            flags: 0,
            nonce: [0; NONCE_LEN],
        };
        let t = std::time::Instant::now();
        let n = 20_000;
        for i in 0..n {
            let _ = c.seal(&h, i, &mut buf);
        }
        let secs = t.elapsed().as_secs_f64();
        eprintln!(
            "seal: {:.0} MB/s, {:.1} us per frame",
            (n as f64 * buf.len() as f64) / secs / 1e6,
            secs / n as f64 * 1e6
        );
    }
}
