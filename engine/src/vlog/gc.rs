//! The value log's side of garbage collection: reading a sealed file entry
//! by entry, the state shared between a running GC and the commit thread,
//! and retiring collected files. The policy (which file, which entries are
//! live) lives in `db/gc.rs`.
//!
//! Retiring a file: its name is unlinked at once (the space returns when
//! the last handle closes), but its open handle stays in `ValueLog.files`
//! until no reader that was active when the file's live entries had been
//! rewritten is still active — such a reader may hold a pointer into it.
//! Readers that start later never reach the file: every pointer into it
//! that a new snapshot can see was rewritten (see `db/gc.rs`).
//!
//! Thread-safety: one GC at a time (`GcState::running`); the commit thread
//! reads the target and records declined rewrites concurrently.

use super::entry::{decode_entry, DecodedEntry};
use super::log::{vlog_name, ValueLog, HEADER_LEN, RECORD_HEADER_LEN, RECORD_MAGIC};
use crate::format::{checksum, get_u32, ValuePointer};
use crate::{Error, Result};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Most bytes one record may claim (a commit is far smaller); guards the
/// allocation when reading a damaged length.
const MAX_RECORD_BYTES: u64 = 1 << 31;

/// A collected file whose handle waits for old readers.
#[derive(Debug)]
struct Retired {
    fid: u32,
    /// Read timestamps active when the file's live entries were rewritten.
    readers: Vec<u64>,
}

/// State of value-log GC shared across threads.
#[derive(Debug, Default)]
pub(crate) struct GcState {
    /// Held by the one running GC, and by close to wait for it.
    pub(crate) running: Mutex<()>,
    /// File whose live entries are being rewritten; 0 = none.
    target: AtomicU32,
    /// Rewrites the commit thread declined (key, version), for a re-check.
    declined: Mutex<Vec<(Vec<u8>, u64)>>,
    /// The commit thread could not check a rewrite (lookup failed).
    check_failed: std::sync::atomic::AtomicBool,
    retired: Mutex<Vec<Retired>>,
    /// Completed GC calls (whatever their outcome).
    pub(crate) runs: AtomicU64,
    /// Files collected.
    pub(crate) files_collected: AtomicU64,
    /// Bytes of collected files.
    pub(crate) bytes_reclaimed: AtomicU64,
    /// Entries rewritten into the head of the log.
    pub(crate) entries_rewritten: AtomicU64,
}

impl GcState {
    /// The file being collected, if any.
    pub(crate) fn target(&self) -> Option<u32> {
        match self.target.load(Ordering::Acquire) {
            0 => None,
            fid => Some(fid),
        }
    }

    /// Starts rewriting `fid`'s live entries.
    pub(crate) fn begin(&self, fid: u32) {
        debug_assert!(fid > 0);
        self.declined.lock().clear();
        self.check_failed.store(false, Ordering::Release);
        self.target.store(fid, Ordering::Release);
    }

    /// Stops rewriting; returns the declined rewrites and whether every
    /// rewrite could be checked.
    pub(crate) fn end(&self) -> (Vec<(Vec<u8>, u64)>, bool) {
        self.target.store(0, Ordering::Release);
        let declined = std::mem::take(&mut *self.declined.lock());
        (declined, !self.check_failed.load(Ordering::Acquire))
    }

    /// The commit thread did not apply the rewrite of `key@version`.
    pub(crate) fn decline(&self, key: &[u8], version: u64) {
        self.declined.lock().push((key.to_vec(), version));
    }

    /// The commit thread could not check a rewrite.
    pub(crate) fn check_failed(&self) {
        self.check_failed.store(true, Ordering::Release);
    }

    /// Number of retired files whose handles are still open.
    pub(crate) fn retired_count(&self) -> usize {
        self.retired.lock().len()
    }
}

impl ValueLog {
    /// Sealed files (every file before the append target) and their
    /// lengths, oldest first; retired files excluded.
    pub(crate) fn sealed_files(&self) -> Vec<(u32, u64)> {
        let writer = self.position().0;
        let retired: Vec<u32> = self.gc.retired.lock().iter().map(|r| r.fid).collect();
        self.files
            .read()
            .iter()
            .filter(|(fid, _)| **fid < writer && !retired.contains(fid))
            .filter_map(|(fid, f)| f.len().ok().map(|len| (*fid, len)))
            .collect()
    }

    /// Calls `f` for every entry of sealed file `fid`, in order, reading one
    /// record at a time; stops early when `f` returns `Ok(false)`. Any bad
    /// record is corruption (a sealed file was synced whole).
    pub(crate) fn scan_file(
        &self,
        fid: u32,
        mut f: impl FnMut(DecodedEntry, ValuePointer) -> Result<bool>,
    ) -> Result<()> {
        debug_assert!(fid < self.position().0, "only sealed files are scanned");
        let file = self
            .files
            .read()
            .get(&fid)
            .cloned()
            .ok_or(Error::ValueCollected { fid })?;
        let path = file.path().to_path_buf();
        let len = file.len()?;
        let mut off = HEADER_LEN;
        let mut header = [0u8; RECORD_HEADER_LEN];
        let mut payload = Vec::new();
        // Every pass consumes at least a record header.
        while off < len {
            if off + RECORD_HEADER_LEN as u64 > len {
                return Err(Error::corruption(&path, off, "record header truncated"));
            }
            file.read_exact_at(&mut header, off)?;
            if get_u32(&header, 0) != Some(RECORD_MAGIC) {
                return Err(Error::corruption(&path, off, "bad record magic"));
            }
            let plen = u64::from(get_u32(&header, 4).unwrap_or(0));
            let crc = get_u32(&header, 8).unwrap_or(0);
            let start = off + RECORD_HEADER_LEN as u64;
            if plen > MAX_RECORD_BYTES || start + plen > len {
                return Err(Error::corruption(&path, off, "record truncated"));
            }
            payload.resize(plen as usize, 0);
            file.read_exact_at(&mut payload, start)?;
            if checksum(&payload) != crc {
                return Err(Error::corruption(&path, off, "record checksum mismatch"));
            }
            let mut p = 0usize;
            while p < payload.len() {
                let (e, n) = decode_entry(&payload[p..])
                    .map_err(|r| Error::corruption(&path, start + p as u64, r))?;
                let vp = ValuePointer {
                    fid,
                    len: n as u32,
                    offset: start + p as u64,
                };
                if !f(e, vp)? {
                    return Ok(());
                }
                p += n;
            }
            off = start + plen;
        }
        Ok(())
    }

    /// Compaction dropped versions pointing at `bytes` of file `fid`.
    /// Files already collected are ignored.
    pub(crate) fn note_discarded(&self, fid: u32, bytes: u64) {
        let exists = self.files.read().contains_key(&fid);
        let retired = self.gc.retired.lock().iter().any(|r| r.fid == fid);
        if exists && !retired {
            self.discard.add(fid, bytes);
        }
    }

    /// Deletes collected file `fid`: unlinks it (durably) and forgets its
    /// statistics; the handle is dropped now if `readers` is empty, else
    /// once none of those read timestamps is active (see
    /// [`ValueLog::release_retired`]).
    pub(crate) fn retire(&self, fid: u32, readers: Vec<u64>) -> Result<()> {
        debug_assert!(
            fid < self.position().0,
            "the append target is never retired"
        );
        let path = self.dir.join(vlog_name(fid));
        match self.fs.remove(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::Io(e)),
        }
        crate::crash_point::hit("vlog_gc.file_removed");
        self.fs.sync_dir(&self.dir)?;
        self.discard.retain(|f| f != fid);
        if readers.is_empty() {
            self.files.write().remove(&fid);
        } else {
            self.gc.retired.lock().push(Retired { fid, readers });
        }
        Ok(())
    }

    /// Drops the handles of retired files none of whose readers is still
    /// active (`active`: the read timestamps in use now).
    pub(crate) fn release_retired(&self, active: &[u64]) {
        let mut retired = self.gc.retired.lock();
        retired.retain(|r| {
            if r.readers.iter().any(|ts| active.contains(ts)) {
                return true;
            }
            self.files.write().remove(&r.fid);
            false
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{Fs, MemFs};
    use crate::vlog::{begin_record, encode_entry, finish_record, WriteEntry};
    use std::path::Path;
    use std::sync::Arc;

    fn append(log: &ValueLog, keys: &[&[u8]]) {
        log.append_with(keys.len() * 30_100, |_| {
            let mut buf = Vec::new();
            let start = begin_record(&mut buf);
            for (i, k) in keys.iter().enumerate() {
                encode_entry(
                    &mut buf,
                    &WriteEntry {
                        key: k.to_vec(),
                        value: vec![7; 30_000],
                        meta: 0,
                        user_meta: 0,
                        expires_at: 0,
                        version: i as u64 + 1,
                    },
                );
            }
            finish_record(&mut buf, start);
            buf
        })
        .unwrap();
    }

    #[test]
    fn scan_retire_and_release() {
        let fs: Arc<dyn Fs> = Arc::new(MemFs::new());
        let dir = Path::new("/db");
        fs.create_dir_all(dir).unwrap();
        let log = ValueLog::open(fs.clone(), dir, 1 << 16, false).unwrap();
        append(&log, &[b"a", b"b"]);
        append(&log, &[b"c"]); // rotates: file 1 is sealed
        assert_eq!(log.position().0, 2);
        let sealed = log.sealed_files();
        assert_eq!(sealed.len(), 1);
        assert_eq!(sealed[0].0, 1);

        let mut seen = Vec::new();
        log.scan_file(1, |e, vp| {
            assert_eq!(log.read_value(vp).unwrap(), e.value);
            seen.push(e.key);
            Ok(true)
        })
        .unwrap();
        assert_eq!(seen, vec![b"a".to_vec(), b"b".to_vec()]);
        // Stops early on request.
        let mut n = 0;
        log.scan_file(1, |_, _| {
            n += 1;
            Ok(false)
        })
        .unwrap();
        assert_eq!(n, 1);

        let mut vp = None;
        log.scan_file(1, |_, p| {
            vp = Some(p);
            Ok(false)
        })
        .unwrap();
        let vp = vp.unwrap();
        log.retire(1, vec![5]).unwrap();
        assert!(!fs.exists(&dir.join(vlog_name(1))), "unlinked at once");
        assert!(log.sealed_files().is_empty());
        assert_eq!(log.gc.retired_count(), 1);
        // A reader at ts 5 may still resolve pointers into it.
        log.release_retired(&[3, 5]);
        assert!(log.read_value(vp).is_ok());
        log.release_retired(&[6]);
        assert_eq!(log.gc.retired_count(), 0);
        assert!(matches!(
            log.read_value(vp),
            Err(Error::ValueCollected { fid: 1 })
        ));
        assert!(matches!(
            log.scan_file(1, |_, _| Ok(true)),
            Err(Error::ValueCollected { fid: 1 })
        ));
    }

    #[test]
    fn damaged_sealed_file_is_corruption() {
        let fs: Arc<dyn Fs> = Arc::new(MemFs::new());
        let dir = Path::new("/db");
        fs.create_dir_all(dir).unwrap();
        let log = ValueLog::open(fs.clone(), dir, 1 << 16, false).unwrap();
        append(&log, &[b"a", b"b"]);
        append(&log, &[b"c"]);
        drop(log);
        let path = dir.join(vlog_name(1));
        let mut bytes = (*fs.read_all(&path).unwrap()).as_ref().to_vec();
        let n = bytes.len();
        bytes[n - 100] ^= 1;
        fs.create(&path).unwrap().append(&bytes).unwrap();
        let log = ValueLog::open(fs, dir, 1 << 16, false).unwrap();
        let err = log.scan_file(1, |_, _| Ok(true)).unwrap_err();
        assert!(err.is_corruption(), "{err}");
    }
}
