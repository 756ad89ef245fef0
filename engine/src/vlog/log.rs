//! Value-log files: append-only, one record per committed write batch.
//!
//! File: `header (16 B) | record*`. Header: magic u64 LE, format version
//! u32 LE, reserved u32. Record: `RECORD_MAGIC u32 | payload_len u32 |
//! crc32(payload) u32 | payload`, payload = entries (see `entry.rs`).
//!
//! Thread-safety: one appender (the commit thread) at a time, behind the
//! writer mutex; reads of any file may run concurrently with it.

use super::discard::DiscardStats;
use super::entry::{decode_entry, into_value, DecodedEntry};
use super::gc::GcState;
use crate::format::{checksum, get_u32, get_u64, ValuePointer};
use crate::fs::{Fs, FsFile};
use crate::{Error, Result};
use parking_lot::{Mutex, RwLock};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const FILE_MAGIC: u64 = 0x5345_5454_564c_4f47; // "SETTVLOG"
const FILE_VERSION: u32 = 1;
/// Bytes before the first record.
pub(crate) const HEADER_LEN: u64 = 16;
pub(crate) const RECORD_MAGIC: u32 = 0x7e57_10c5;
/// Bytes of a record header.
pub(crate) const RECORD_HEADER_LEN: usize = 12;

/// File name of value-log file `fid`.
pub(crate) fn vlog_name(fid: u32) -> String {
    format!("{fid:06}.vlog")
}

fn parse_vlog_name(name: &str) -> Option<u32> {
    name.strip_suffix(".vlog")?.parse().ok()
}

/// Disk space reserved ahead of the write position at a time, so that a
/// synced append does not also have to allocate blocks.
const PREALLOCATE_BYTES: u64 = 8 << 20;

#[derive(Debug)]
struct Writer {
    fid: u32,
    file: Arc<dyn FsFile>,
    offset: u64,
    /// Bytes of the file reserved so far.
    reserved: u64,
}

/// The set of value-log files.
#[derive(Debug)]
pub(crate) struct ValueLog {
    pub(super) fs: Arc<dyn Fs>,
    pub(super) dir: PathBuf,
    /// Open files by fid. A file collected by GC leaves this map only once
    /// no reader can still hold a pointer into it (see `gc.rs`).
    pub(super) files: RwLock<BTreeMap<u32, Arc<dyn FsFile>>>,
    writer: Mutex<Writer>,
    max_file_bytes: u64,
    /// Value reads served from the log (observability and tests).
    reads: AtomicU64,
    /// Opened read-only: replay never repairs anything on disk.
    read_only: bool,
    /// Garbage per file, steering GC (`discard.rs`).
    pub(crate) discard: DiscardStats,
    /// Value-log GC state (`gc.rs`).
    pub(crate) gc: GcState,
}

/// Start of a record header (for building records in place).
pub(crate) fn begin_record(buf: &mut Vec<u8>) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; RECORD_HEADER_LEN]);
    start
}

/// Fills in the header of the record that began at `start`.
pub(crate) fn finish_record(buf: &mut [u8], start: usize) {
    let payload = &buf[start + RECORD_HEADER_LEN..];
    let len = u32::try_from(payload.len()).expect("record payload below 4 GiB");
    let crc = checksum(payload);
    buf[start..start + 4].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&len.to_le_bytes());
    buf[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
}

impl ValueLog {
    /// Opens the log in `dir`. Existing files are opened for reading; the
    /// newest becomes the append target after [`ValueLog::replay`] has cut
    /// any torn tail. With no files, file 1 is created.
    pub(crate) fn open(
        fs: Arc<dyn Fs>,
        dir: &Path,
        max_file_bytes: u64,
        read_only: bool,
    ) -> Result<ValueLog> {
        let mut files = BTreeMap::new();
        for name in fs.list(dir)? {
            if let Some(fid) = parse_vlog_name(&name) {
                files.insert(fid, fs.open(&dir.join(&name))?);
            }
        }
        let (fid, file) = match files.iter().next_back() {
            Some((fid, f)) => (*fid, f.clone()),
            None if read_only => {
                // Nothing to read and nothing may be written: the append
                // target is a scratch file that never reaches the disk.
                let scratch = crate::fs::MemFs::new().create(&dir.join(vlog_name(1)))?;
                (1, scratch)
            }
            None => {
                let f = create_file(&*fs, dir, 1)?;
                files.insert(1, f.clone());
                (1, f)
            }
        };
        let offset = file.len()?;
        let discard = DiscardStats::load(&*fs, dir);
        discard.retain(|fid| files.contains_key(&fid));
        Ok(ValueLog {
            fs,
            dir: dir.to_path_buf(),
            files: RwLock::new(files),
            writer: Mutex::new(Writer {
                fid,
                file,
                offset,
                reserved: 0,
            }),
            max_file_bytes,
            reads: AtomicU64::new(0),
            read_only,
            discard,
            gc: GcState::default(),
        })
    }

    /// Replays every record from `from` to the end of the log, calling `f`
    /// for each entry with its pointer. A torn record at the very end of
    /// the newest file is cut off; a bad record anywhere else is corruption.
    /// Returns the position just past the last good record.
    pub(crate) fn replay(
        &self,
        from: (u32, u64),
        mut f: impl FnMut(DecodedEntry, ValuePointer),
    ) -> Result<(u32, u64)> {
        let files: Vec<(u32, Arc<dyn FsFile>)> = self
            .files
            .read()
            .range(from.0..)
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        let newest = files.last().map(|(fid, _)| *fid);
        // GC deletes only files before the replay head, and files are
        // numbered without gaps: a missing one from the head on held
        // writes that no table has (say, a damaged last manifest record
        // moved the head back past collected files).
        let first = if from.0 == 0 {
            files.first().map_or(0, |f| f.0)
        } else {
            from.0
        };
        for (i, (fid, _)) in files.iter().enumerate() {
            let want = first + i as u32;
            if *fid != want {
                return Err(Error::corruption(
                    self.dir.join(vlog_name(want)),
                    0,
                    "value log file missing after the replay head",
                ));
            }
        }
        let mut end = from;
        for (fid, file) in files {
            let path = file.path().to_path_buf();
            let len = file.len()?;
            let mut data = vec![
                0u8;
                usize::try_from(len).map_err(|_| Error::corruption(
                    &path,
                    0,
                    "file too large"
                ))?
            ];
            file.read_exact_at(&mut data, 0)?;
            check_header(&data, &path, Some(fid) == newest)?;
            let mut off = if fid == from.0 {
                from.1.max(HEADER_LEN)
            } else {
                HEADER_LEN
            } as usize;
            if off > HEADER_LEN as usize && off > data.len() {
                // The replay point was recorded only after these bytes were
                // synced; a shorter file lost data that tables point into.
                return Err(Error::corruption(
                    &path,
                    len,
                    "value log ends before the recorded replay point",
                ));
            }
            if data.len() < HEADER_LEN as usize && self.read_only {
                end = (fid, HEADER_LEN);
                continue;
            }
            if data.len() < HEADER_LEN as usize {
                // A new file whose header never reached the disk.
                file.truncate(0)?;
                write_header(&*file)?;
                off = HEADER_LEN as usize;
                data = header_bytes().to_vec();
            }
            loop {
                if off == data.len() {
                    break;
                }
                match parse_record(&data, off) {
                    Ok(rec_len) => {
                        let mut p = off + RECORD_HEADER_LEN;
                        while p < off + rec_len {
                            let (e, n) = decode_entry(&data[p..off + rec_len])
                                .map_err(|r| Error::corruption(&path, p as u64, r))?;
                            let vp = ValuePointer {
                                fid,
                                len: n as u32,
                                offset: p as u64,
                            };
                            f(e, vp);
                            p += n;
                        }
                        off += rec_len;
                    }
                    Err(reason) => {
                        if Some(fid) != newest || any_record_after(&data, off + 1) {
                            return Err(Error::corruption(&path, off as u64, reason));
                        }
                        if !looks_torn(&data, off) {
                            return Err(Error::corruption(
                                &path,
                                off as u64,
                                format!("{reason} in the last record, which is whole: damage, not a torn write"),
                            ));
                        }
                        if self.read_only {
                            tracing::warn!(file = %path.display(), offset = off, reason, "ignoring torn tail of value log (read-only)");
                            break;
                        }
                        tracing::warn!(file = %path.display(), offset = off, reason, "cutting torn tail of value log");
                        file.truncate(off as u64)?;
                        file.sync()?;
                        break;
                    }
                }
            }
            end = (fid, off as u64);
        }
        let mut w = self.writer.lock();
        if w.fid == end.0 {
            w.offset = end.1;
        }
        Ok(end)
    }

    /// Position where the next record will start.
    pub(crate) fn position(&self) -> (u32, u64) {
        let w = self.writer.lock();
        (w.fid, w.offset)
    }

    /// Appends `buf` (whole records) as one write, first starting a new
    /// file if the current one would grow past its limit. `build` gets the
    /// position at which the records will start and must fill `buf`.
    /// Returns the position after the write.
    pub(crate) fn append_with(
        &self,
        size_hint: usize,
        build: impl FnOnce((u32, u64)) -> Vec<u8>,
    ) -> Result<(u32, u64)> {
        let mut w = self.writer.lock();
        if w.offset > HEADER_LEN && w.offset + size_hint as u64 > self.max_file_bytes {
            self.rotate(&mut w)?;
        }
        let buf = build((w.fid, w.offset));
        let needed = w.offset + buf.len() as u64;
        if needed > w.reserved {
            let target = (needed + PREALLOCATE_BYTES).min(self.max_file_bytes.max(needed));
            w.file.preallocate(target)?;
            w.reserved = target;
        }
        w.file.append(&buf)?;
        w.offset += buf.len() as u64;
        Ok((w.fid, w.offset))
    }

    fn rotate(&self, w: &mut Writer) -> Result<()> {
        // The old file is synced first, so only the newest file can ever
        // hold a torn tail.
        w.file.sync()?;
        let fid = w.fid + 1;
        let file = create_file(&*self.fs, &self.dir, fid)?;
        self.files.write().insert(fid, file.clone());
        *w = Writer {
            fid,
            file,
            offset: HEADER_LEN,
            reserved: 0,
        };
        Ok(())
    }

    /// Makes everything appended so far durable.
    pub(crate) fn sync(&self) -> Result<()> {
        let file = self.writer.lock().file.clone();
        file.sync()?;
        Ok(())
    }

    /// Reads the entry `vp` points at and returns its value.
    pub(crate) fn read_value(&self, vp: ValuePointer) -> Result<Vec<u8>> {
        let (buf, file) = self.read_raw(vp)?;
        let value = into_value(buf).map_err(|r| Error::corruption(file.path(), vp.offset, r))?;
        self.reads.fetch_add(1, Ordering::Relaxed);
        Ok(value)
    }

    /// Reads and checks the whole entry `vp` points at.
    pub(crate) fn read_entry(&self, vp: ValuePointer) -> Result<DecodedEntry> {
        let (buf, file) = self.read_raw(vp)?;
        let corrupt = |r: &str| Error::corruption(file.path(), vp.offset, r);
        let (e, n) = decode_entry(&buf).map_err(corrupt)?;
        if n != buf.len() {
            return Err(corrupt("value pointer length mismatch"));
        }
        Ok(e)
    }

    /// The bytes `vp` points at, and the file they came from (for errors).
    fn read_raw(&self, vp: ValuePointer) -> Result<(Vec<u8>, Arc<dyn FsFile>)> {
        let file = self.files.read().get(&vp.fid).cloned();
        let Some(file) = file else {
            // Only GC deletes log files, and never the append target.
            if vp.fid < self.position().0 {
                return Err(Error::ValueCollected { fid: vp.fid });
            }
            return Err(Error::corruption(
                self.dir.join(vlog_name(vp.fid)),
                vp.offset,
                "value log file missing",
            ));
        };
        let mut buf = vec![0u8; vp.len as usize];
        file.read_exact_at(&mut buf, vp.offset)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => {
                    Error::corruption(file.path(), vp.offset, "value pointer past end of file")
                }
                _ => Error::Io(e),
            })?;
        Ok((buf, file))
    }

    /// Number of value reads served so far.
    pub(crate) fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Writes the discard statistics if they changed (never when opened
    /// read-only). Failures are logged: losing statistics only makes GC
    /// choose worse.
    pub(crate) fn persist_discard(&self) {
        if self.read_only {
            return;
        }
        if let Err(e) = self.discard.persist(&*self.fs, &self.dir) {
            tracing::warn!(error = %e, "could not write value-log discard statistics");
        }
    }

    /// Total bytes in all log files.
    pub(crate) fn size_bytes(&self) -> u64 {
        self.files
            .read()
            .values()
            .filter_map(|f| f.len().ok())
            .sum()
    }
}

fn header_bytes() -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(&FILE_MAGIC.to_le_bytes());
    h[8..12].copy_from_slice(&FILE_VERSION.to_le_bytes());
    h
}

fn write_header(file: &dyn FsFile) -> Result<()> {
    file.append(&header_bytes())?;
    file.sync()?;
    Ok(())
}

fn create_file(fs: &dyn Fs, dir: &Path, fid: u32) -> Result<Arc<dyn FsFile>> {
    let file = fs.create(&dir.join(vlog_name(fid)))?;
    write_header(&*file)?;
    fs.sync_dir(dir)?;
    Ok(file)
}

fn check_header(data: &[u8], path: &Path, newest: bool) -> Result<()> {
    if data.len() < HEADER_LEN as usize {
        if newest {
            return Ok(()); // torn creation; the caller rewrites the header
        }
        return Err(Error::corruption(path, 0, "value log header truncated"));
    }
    if get_u64(data, 0) != Some(FILE_MAGIC) {
        return Err(Error::corruption(path, 0, "bad value log magic"));
    }
    let v = get_u32(data, 8).unwrap_or(0);
    if v != FILE_VERSION {
        return Err(Error::corruption(
            path,
            8,
            format!("unsupported value log version {v}"),
        ));
    }
    Ok(())
}

/// Checks the record at `off`; returns its total length.
fn parse_record(data: &[u8], off: usize) -> Result<usize, &'static str> {
    if get_u32(data, off) != Some(RECORD_MAGIC) {
        return Err("bad record magic");
    }
    let len = get_u32(data, off + 4).ok_or("record header truncated")? as usize;
    let crc = get_u32(data, off + 8).ok_or("record header truncated")?;
    let start = off + RECORD_HEADER_LEN;
    let payload = data.get(start..start + len).ok_or("record truncated")?;
    if checksum(payload) != crc {
        return Err("record checksum mismatch");
    }
    Ok(RECORD_HEADER_LEN + len)
}

/// Trailing zero bytes that mark a torn tail (see [`looks_torn`]); the
/// last four bytes of a whole record are an entry checksum.
const TORN_ZEROS_MIN: usize = 4;

/// Whether the bad last record at `off` (no good record after it) can be a
/// torn append rather than damage to synced bytes. An interrupted append
/// leaves a prefix of the record — cut inside its header or its payload —
/// or, after a power cut, blocks that never reached the disk and read as
/// zeros at the end of the file. A record that is whole and ends in
/// anything else was written completely, so a bad checksum there is a
/// flipped bit: corruption, never cut (it may have been acknowledged).
/// A cut whose length field is one flipped bit away from a whole, valid
/// record is damage too.
fn looks_torn(data: &[u8], off: usize) -> bool {
    let rest = &data[off..];
    if rest.len() < RECORD_HEADER_LEN {
        return true;
    }
    let zeros = rest.iter().rev().take_while(|&&b| b == 0).count();
    if zeros == rest.len() || zeros >= TORN_ZEROS_MIN {
        return true;
    }
    let (Some(magic), Some(len), Some(crc)) = (
        get_u32(data, off),
        get_u32(data, off + 4),
        get_u32(data, off + 8),
    ) else {
        return true;
    };
    let start = off + RECORD_HEADER_LEN;
    if magic != RECORD_MAGIC || start + len as usize <= data.len() {
        return false; // whole, or its header is damaged
    }
    // Cut inside the payload, unless one flipped length bit explains it.
    !(0..32).any(|b| {
        let l = (len ^ (1 << b)) as usize;
        data.get(start..start + l)
            .is_some_and(|payload| checksum(payload) == crc)
    })
}

/// True if a whole valid record starts anywhere at or after `from`: then a
/// bad record before it is damage, not a torn tail.
fn any_record_after(data: &[u8], from: usize) -> bool {
    let magic = RECORD_MAGIC.to_le_bytes();
    let mut p = from;
    while p + RECORD_HEADER_LEN <= data.len() {
        if data[p..p + 4] == magic && parse_record(data, p).is_ok() {
            return true;
        }
        p += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::MemFs;
    use crate::vlog::{encode_entry, WriteEntry};

    fn entry(k: &[u8], v: &[u8], version: u64) -> WriteEntry {
        WriteEntry {
            key: k.to_vec(),
            value: v.to_vec(),
            meta: 0,
            user_meta: 0,
            expires_at: 0,
            version,
        }
    }

    fn write(log: &ValueLog, entries: &[WriteEntry]) -> Vec<ValuePointer> {
        let mut ptrs = Vec::new();
        let hint: usize = entries
            .iter()
            .map(|e| e.key.len() + e.value.len() + 32)
            .sum();
        log.append_with(hint, |(fid, off)| {
            let mut buf = Vec::new();
            let start = begin_record(&mut buf);
            for e in entries {
                let at = buf.len();
                let n = encode_entry(&mut buf, e);
                ptrs.push(ValuePointer {
                    fid,
                    len: n as u32,
                    offset: off + at as u64,
                });
            }
            finish_record(&mut buf, start);
            buf
        })
        .unwrap();
        ptrs
    }

    #[test]
    fn append_read_replay_and_torn_tail() {
        let fs: Arc<dyn Fs> = Arc::new(MemFs::new());
        let dir = Path::new("/db");
        fs.create_dir_all(dir).unwrap();
        let log = ValueLog::open(fs.clone(), dir, 1 << 20, false).unwrap();
        let p1 = write(&log, &[entry(b"a", b"1", 1), entry(b"b", b"2", 1)]);
        let p2 = write(&log, &[entry(b"c", b"3", 2)]);
        assert_eq!(log.read_value(p1[1]).unwrap(), b"2");
        assert_eq!(log.read_value(p2[0]).unwrap(), b"3");
        let end = log.position();

        // Tear the last record in half.
        let f = fs.open(&dir.join(vlog_name(1))).unwrap();
        f.truncate(end.1 - 3).unwrap();
        drop(log);
        let log = ValueLog::open(fs.clone(), dir, 1 << 20, false).unwrap();
        let mut seen = Vec::new();
        let got_end = log.replay((1, 0), |e, _| seen.push(e.key)).unwrap();
        assert_eq!(seen, vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(got_end, (1, p2[0].offset - RECORD_HEADER_LEN as u64));
        // Appends continue cleanly after the cut.
        let p3 = write(&log, &[entry(b"d", b"4", 3)]);
        assert_eq!(log.read_value(p3[0]).unwrap(), b"4");
    }

    #[test]
    fn damage_before_a_good_record_is_corruption() {
        let fs: Arc<dyn Fs> = Arc::new(MemFs::new());
        let dir = Path::new("/db");
        fs.create_dir_all(dir).unwrap();
        let log = ValueLog::open(fs.clone(), dir, 1 << 20, false).unwrap();
        let p1 = write(&log, &[entry(b"a", b"1", 1)]);
        write(&log, &[entry(b"b", b"2", 2)]);
        drop(log);
        let path = dir.join(vlog_name(1));
        let data = fs.read_all(&path).unwrap();
        let mut bytes = (*data).as_ref().to_vec();
        bytes[p1[0].offset as usize + 3] ^= 1;
        let f = fs.create(&path).unwrap();
        f.append(&bytes).unwrap();
        let log = ValueLog::open(fs, dir, 1 << 20, false).unwrap();
        let err = log.replay((1, 0), |_, _| {}).unwrap_err();
        assert!(err.is_corruption(), "{err}");
    }

    /// Regression: a flipped bit in the last record of the newest file was
    /// cut as a torn tail, losing an acknowledged (synced) commit silently.
    #[test]
    fn damage_in_the_last_whole_record_is_corruption_not_a_torn_tail() {
        let fs: Arc<dyn Fs> = Arc::new(MemFs::new());
        let dir = Path::new("/db");
        fs.create_dir_all(dir).unwrap();
        let log = ValueLog::open(fs.clone(), dir, 1 << 20, false).unwrap();
        write(&log, &[entry(b"a", b"1", 1)]);
        let last = write(&log, &[entry(b"b", &[7u8; 300], 2)]);
        let end = log.position().1 as usize;
        drop(log);
        let path = dir.join(vlog_name(1));
        let good = (*fs.read_all(&path).unwrap()).as_ref().to_vec();
        let rec = last[0].offset as usize - RECORD_HEADER_LEN;
        let replay = |bytes: &[u8]| {
            fs.create(&path).unwrap().append(bytes).unwrap();
            let log = ValueLog::open(fs.clone(), dir, 1 << 20, false).unwrap();
            let mut n = 0;
            log.replay((1, 0), |_, _| n += 1).map(|_| n)
        };
        // Every single flipped bit of the last record: header or payload.
        for bit in rec * 8..end * 8 {
            let mut bytes = good.clone();
            bytes[bit / 8] ^= 1 << (bit % 8);
            let err = replay(&bytes).expect_err("a flipped bit must not be cut");
            assert!(err.is_corruption(), "bit {bit}: {err}");
        }
        // Torn appends are still cut: any prefix, or zeros at the end.
        for cut in rec..end {
            assert_eq!(replay(&good[..cut]).unwrap(), 1, "cut at {cut}");
        }
        let mut zeroed = good.clone();
        zeroed[end - 100..].fill(0);
        assert_eq!(replay(&zeroed).unwrap(), 1);
        assert_eq!(replay(&good).unwrap(), 2);
    }

    #[test]
    fn a_missing_file_after_the_replay_head_is_corruption() {
        let fs: Arc<dyn Fs> = Arc::new(MemFs::new());
        let dir = Path::new("/db");
        fs.create_dir_all(dir).unwrap();
        let log = ValueLog::open(fs.clone(), dir, 1 << 16, false).unwrap();
        let big = vec![1u8; 40_000];
        for v in 1..=3 {
            write(&log, &[entry(b"a", &big, v)]);
        }
        assert_eq!(log.position().0, 3);
        drop(log);
        fs.remove(&dir.join(vlog_name(2))).unwrap();
        let log = ValueLog::open(fs.clone(), dir, 1 << 16, false).unwrap();
        for head in [(0, 0), (1, 0), (2, 0)] {
            let err = log.replay(head, |_, _| {}).unwrap_err();
            assert!(err.is_corruption(), "{err}");
        }
        // From file 3 on nothing is missing.
        let mut n = 0;
        log.replay((3, 0), |_, _| n += 1).unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn rotates_files() {
        let fs: Arc<dyn Fs> = Arc::new(MemFs::new());
        let dir = Path::new("/db");
        fs.create_dir_all(dir).unwrap();
        let log = ValueLog::open(fs.clone(), dir, 1 << 16, false).unwrap();
        let big = vec![1u8; 40_000];
        let a = write(&log, &[entry(b"a", &big, 1)]);
        let b = write(&log, &[entry(b"b", &big, 2)]);
        assert_ne!(a[0].fid, b[0].fid);
        assert_eq!(log.read_value(a[0]).unwrap(), big);
        let mut n = 0;
        log.replay((1, 0), |_, _| n += 1).unwrap();
        assert_eq!(n, 2);
    }
}
