//! Discard statistics: per value-log file, how many of its bytes are
//! known to be garbage. They only steer value-log GC towards good
//! candidates; GC measures a file's live bytes itself before rewriting it,
//! so stale, lost or wrong statistics cost a worse choice, never data.
//!
//! What is counted:
//! - at write time, every byte of a file that the tree does not point at:
//!   record headers, deletion markers and values stored inline in the
//!   tree (their log copy is only the write-ahead log, garbage once the
//!   memtable holding them is flushed — GC only considers files entirely
//!   behind the replay head);
//! - at compaction, the entry bytes of every dropped version whose value
//!   lives in the log.
//!
//! Persisted in `DISCARD`, rewritten whole (tmp + sync + rename + directory
//! sync) after flushes, compactions and GC runs:
//!
//! ```text
//! file  := magic u64 ("SETTDSCD") | version u32 (1) | count u32
//!          | counted_fid u32 | counted_offset u64 | entry × count | crc32 u32
//! entry := fid u32 | discard_bytes u64
//! ```
//!
//! Little-endian; the crc covers every byte before it; fids strictly
//! ascend. `counted` is the log position up to which write-time counting
//! is included, so that replay after a crash counts only later entries.
//! A missing or damaged file is treated as empty (logged).
//!
//! Thread-safety: all methods take `&self`; counters sit behind one mutex,
//! persisting is serialised by a second one.

use crate::format::{checksum, get_u32, get_u64};
use crate::fs::Fs;
use crate::Result;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::path::Path;

/// File name of the statistics.
const DISCARD_NAME: &str = "DISCARD";
const DISCARD_TMP: &str = "DISCARD.tmp";
const MAGIC: u64 = 0x4443_5344_5454_4553; // "SETTDSCD" read as little-endian
const VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 4 + 4 + 8;
const ENTRY_LEN: usize = 4 + 8;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct State {
    /// Discardable bytes per file.
    bytes: BTreeMap<u32, u64>,
    /// Write-time counting covers the log up to here.
    counted: (u32, u64),
    /// Changed since the last persist.
    dirty: bool,
}

/// Per-file discardable byte counts; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct DiscardStats {
    state: Mutex<State>,
    persist_lock: Mutex<()>,
}

impl DiscardStats {
    /// Loads `DISCARD` from `dir`; empty if absent or damaged.
    pub(crate) fn load(fs: &dyn Fs, dir: &Path) -> DiscardStats {
        let path = dir.join(DISCARD_NAME);
        let state = match fs.read_all(&path) {
            Ok(bytes) => match decode((*bytes).as_ref()) {
                Ok(s) => s,
                Err(reason) => {
                    tracing::warn!(file = %path.display(), reason, "ignoring damaged discard statistics");
                    State::default()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "ignoring unreadable discard statistics");
                State::default()
            }
        };
        DiscardStats {
            state: Mutex::new(state),
            persist_lock: Mutex::new(()),
        }
    }

    /// Adds `bytes` of garbage to file `fid`.
    pub(crate) fn add(&self, fid: u32, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let mut s = self.state.lock();
        let b = s.bytes.entry(fid).or_insert(0);
        *b = b.saturating_add(bytes);
        s.dirty = true;
    }

    /// The commit thread wrote a group ending at `end` into `fid`, of which
    /// `bytes` are not pointed at by the tree.
    pub(crate) fn add_written(&self, fid: u32, bytes: u64, end: (u32, u64)) {
        let mut s = self.state.lock();
        if bytes > 0 {
            let b = s.bytes.entry(fid).or_insert(0);
            *b = b.saturating_add(bytes);
        }
        s.counted = end;
        s.dirty = true;
    }

    /// Replay found an entry at `(fid, offset)` of `len` bytes that the
    /// tree does not point at: counts it unless the persisted counts
    /// already include it.
    pub(crate) fn add_replayed(&self, fid: u32, offset: u64, len: u64) {
        let mut s = self.state.lock();
        if (fid, offset) < s.counted {
            return;
        }
        let b = s.bytes.entry(fid).or_insert(0);
        *b = b.saturating_add(len);
        s.dirty = true;
    }

    /// After replay: write-time counting continues from `end`.
    pub(crate) fn set_counted(&self, end: (u32, u64)) {
        let mut s = self.state.lock();
        s.counted = end;
        s.dirty = true;
    }

    /// Replaces the count of `fid` by a measured value.
    pub(crate) fn set(&self, fid: u32, bytes: u64) {
        let mut s = self.state.lock();
        s.bytes.insert(fid, bytes);
        s.dirty = true;
    }

    /// Discardable bytes of `fid`.
    pub(crate) fn get(&self, fid: u32) -> u64 {
        self.state.lock().bytes.get(&fid).copied().unwrap_or(0)
    }

    /// Forgets every file for which `keep` is false.
    pub(crate) fn retain(&self, keep: impl Fn(u32) -> bool) {
        let mut s = self.state.lock();
        let before = s.bytes.len();
        s.bytes.retain(|fid, _| keep(*fid));
        if s.bytes.len() != before {
            s.dirty = true;
        }
    }

    /// All counts, by fid.
    #[cfg(test)]
    pub(crate) fn snapshot(&self) -> Vec<(u32, u64)> {
        self.state
            .lock()
            .bytes
            .iter()
            .map(|(f, b)| (*f, *b))
            .collect()
    }

    /// Writes the statistics to `dir/DISCARD` if they changed: a temporary
    /// file, synced, renamed over the old one, directory synced.
    pub(crate) fn persist(&self, fs: &dyn Fs, dir: &Path) -> Result<()> {
        let _g = self.persist_lock.lock();
        let bytes = {
            let mut s = self.state.lock();
            if !s.dirty {
                return Ok(());
            }
            s.dirty = false;
            encode(&s)
        };
        let res = write_atomically(fs, dir, &bytes);
        if res.is_err() {
            self.state.lock().dirty = true;
        }
        res
    }
}

fn write_atomically(fs: &dyn Fs, dir: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(DISCARD_TMP);
    let f = fs.create(&tmp)?;
    f.append(bytes)?;
    f.sync()?;
    drop(f);
    // Pair assertion: what is renamed into place decodes.
    debug_assert!(fs
        .read_all(&tmp)
        .is_ok_and(|b| decode((*b).as_ref()).is_ok()));
    fs.rename(&tmp, &dir.join(DISCARD_NAME))?;
    fs.sync_dir(dir)?;
    Ok(())
}

fn encode(s: &State) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER_LEN + s.bytes.len() * ENTRY_LEN + 4);
    b.extend_from_slice(&MAGIC.to_le_bytes());
    b.extend_from_slice(&VERSION.to_le_bytes());
    let count = u32::try_from(s.bytes.len()).expect("fewer than 2^32 value-log files");
    b.extend_from_slice(&count.to_le_bytes());
    b.extend_from_slice(&s.counted.0.to_le_bytes());
    b.extend_from_slice(&s.counted.1.to_le_bytes());
    for (fid, bytes) in &s.bytes {
        b.extend_from_slice(&fid.to_le_bytes());
        b.extend_from_slice(&bytes.to_le_bytes());
    }
    let crc = checksum(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

fn decode(data: &[u8]) -> Result<State, &'static str> {
    if data.len() < HEADER_LEN + 4 {
        return Err("file too short");
    }
    let body = &data[..data.len() - 4];
    let crc = get_u32(data, data.len() - 4).ok_or("file too short")?;
    if checksum(body) != crc {
        return Err("checksum mismatch");
    }
    if get_u64(body, 0) != Some(MAGIC) {
        return Err("bad magic");
    }
    if get_u32(body, 8) != Some(VERSION) {
        return Err("unsupported version");
    }
    let count = get_u32(body, 12).ok_or("short header")? as usize;
    if body.len() != HEADER_LEN + count * ENTRY_LEN {
        return Err("length does not match the entry count");
    }
    let counted = (
        get_u32(body, 16).ok_or("short header")?,
        get_u64(body, 20).ok_or("short header")?,
    );
    let mut bytes = BTreeMap::new();
    let mut prev: Option<u32> = None;
    for i in 0..count {
        let at = HEADER_LEN + i * ENTRY_LEN;
        let fid = get_u32(body, at).ok_or("entry truncated")?;
        let n = get_u64(body, at + 4).ok_or("entry truncated")?;
        if prev.is_some_and(|p| p >= fid) {
            return Err("file ids not ascending");
        }
        prev = Some(fid);
        bytes.insert(fid, n);
    }
    Ok(State {
        bytes,
        counted,
        dirty: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{FaultFs, MemFs};

    #[test]
    fn round_trip_and_every_flip_detected() {
        let mut s = State {
            counted: (7, 12345),
            ..State::default()
        };
        s.bytes.insert(1, 100);
        s.bytes.insert(4, u64::MAX);
        let enc = encode(&s);
        assert_eq!(decode(&enc), Ok(s));
        for i in 0..enc.len() {
            let mut bad = enc.clone();
            bad[i] ^= 0x08;
            assert!(decode(&bad).is_err(), "flip at {i} undetected");
        }
        for cut in 0..enc.len() {
            assert!(decode(&enc[..cut]).is_err());
        }
    }

    #[test]
    fn persist_load_and_replay_counting() {
        let fs = MemFs::new();
        let dir = Path::new("/d");
        fs.create_dir_all(dir).unwrap();
        let d = DiscardStats::load(&fs, dir);
        assert!(d.snapshot().is_empty());
        d.add(3, 10);
        d.add_written(5, 7, (5, 100));
        d.persist(&fs, dir).unwrap();
        let d = DiscardStats::load(&fs, dir);
        assert_eq!(d.snapshot(), vec![(3, 10), (5, 7)]);
        // Entries before the counted position were already counted.
        d.add_replayed(5, 50, 1000);
        d.add_replayed(5, 100, 3);
        assert_eq!(d.get(5), 10);
        d.retain(|fid| fid != 3);
        d.set(5, 1);
        assert_eq!(d.snapshot(), vec![(5, 1)]);
    }

    #[test]
    fn damaged_or_unsynced_file_means_empty() {
        let fs = FaultFs::new();
        let dir = Path::new("/d");
        fs.create_dir_all(dir).unwrap();
        fs.sync_dir(dir).unwrap();
        let d = DiscardStats::load(&fs, dir);
        d.add(2, 5);
        d.persist(&fs, dir).unwrap();
        // Durable: survives a power cut.
        let img = fs.crash();
        assert_eq!(DiscardStats::load(&img, dir).snapshot(), vec![(2, 5)]);
        // A damaged file loads as empty.
        let f = img.create(&dir.join(DISCARD_NAME)).unwrap();
        f.append(b"garbage").unwrap();
        assert!(DiscardStats::load(&img, dir).snapshot().is_empty());
    }
}
