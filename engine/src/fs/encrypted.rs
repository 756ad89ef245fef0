//! Encryption at rest: [`EncryptedFs`] wraps the file layer so that every
//! file the engine writes through it is AES-256-GCM encrypted, and the
//! engine above sees plaintext and plaintext offsets.
//!
//! Each `append` becomes one or more frames (layout in [`super::frame`]);
//! a per-file [`FrameIndex`], built at open from the frame headers, maps
//! logical offsets to frames. Files are encrypted with per-file keys
//! derived from data keys kept in the [`KeyRegistry`], itself encrypted
//! under the user's master key. The `LOCK` and `KEYREGISTRY` files live on
//! the raw file system.
//!
//! Guarantees:
//! - A torn last append (crash mid-append, garbage or zeros at the end)
//!   reads as if that append never happened; the bytes are cut before the
//!   next append.
//! - A frame that fails authentication anywhere else is an error
//!   (`Error::Encryption`, carried inside the `io::Error` the `Fs` traits
//!   return), never wrong data.
//! - `truncate` may only cut at the end of an earlier append.
//!
//! Thread-safety: as [`FsFile`]: reads run concurrently with one appender;
//! a reader holds the index's read lock while it decrypts, appends publish
//! new frames under its write lock after writing them, and a one-frame
//! cache of the last partly read frame serves repeated small reads.

use super::frame::{
    self, FileCipher, FileHeader, FrameHeader, FrameIndex, FILE_HEADER_LEN, FILE_MAGIC,
    FLAG_END_OF_APPEND, FRAME_HEADER_LEN, FRAME_MAX_BYTES, FRAME_OVERHEAD, NONCE_LEN, SALT_LEN,
    TAG_LEN,
};
use super::keyregistry::{fill_random, KeyRegistry, REGISTRY_NAME, REGISTRY_TMP_NAME};
use super::{FileBytes, Fs, FsFile};
use crate::options::Options;
use crate::{Error, Result};
use parking_lot::{Mutex, RwLock};
use std::any::Any;
use std::io;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// Wraps `fs` so that every file is encrypted when `opts.encryption_key`
/// is set; returns `fs` unchanged otherwise. Fails with
/// [`Error::Encryption`] on a wrong master key, on an encrypted database
/// opened without a key, and on a plain database opened with one.
pub(crate) fn wrap(fs: Arc<dyn Fs>, opts: &Options) -> Result<Arc<dyn Fs>> {
    let dir = &opts.dir;
    let has_registry = fs.exists(&dir.join(REGISTRY_NAME));
    let Some(key) = &opts.encryption_key else {
        if has_registry || manifest_is_encrypted(&*fs, dir) {
            return Err(Error::Encryption(format!(
                "database in {} is encrypted: open it with Options::encryption_key",
                dir.display()
            )));
        }
        return Ok(fs);
    };
    if !has_registry {
        if manifest_is_encrypted(&*fs, dir) {
            return Err(Error::Encryption(format!(
                "database in {} is encrypted but its {REGISTRY_NAME} is missing: its data keys are lost",
                dir.display()
            )));
        }
        if holds_plain_db(&*fs, dir) {
            return Err(Error::Encryption(format!(
                "database in {} was created without encryption: open it without Options::encryption_key",
                dir.display()
            )));
        }
    }
    let registry = KeyRegistry::open(
        fs.clone(),
        dir,
        key,
        opts.encryption_key_rotation,
        opts.read_only,
    )?;
    Ok(Arc::new(EncryptedFs {
        inner: fs,
        registry: Arc::new(registry),
    }))
}

/// True if `dir/MANIFEST` starts with the encrypted-file magic.
fn manifest_is_encrypted(fs: &dyn Fs, dir: &Path) -> bool {
    let mut magic = [0u8; 8];
    fs.open(&dir.join("MANIFEST"))
        .and_then(|f| f.read_exact_at(&mut magic, 0))
        .is_ok_and(|()| magic == FILE_MAGIC)
}

/// True if `dir` holds engine files (a database exists there).
fn holds_plain_db(fs: &dyn Fs, dir: &Path) -> bool {
    fs.exists(&dir.join("MANIFEST"))
        || fs.list(dir).is_ok_and(|names| {
            names
                .iter()
                .any(|n| n.ends_with(".vlog") || n.ends_with(".sst"))
        })
}

/// An `io::Error` carrying the engine error `e` (unwrapped again by
/// `From<io::Error> for Error`).
fn failure(e: Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> io::Error {
    failure(Error::corruption(path, offset, reason))
}

fn auth_failure(path: &Path, phys: u64) -> io::Error {
    failure(Error::Encryption(format!(
        "frame at byte {phys} of {} fails authentication: the file is corrupted or was tampered with",
        path.display()
    )))
}

fn random_salt() -> io::Result<[u8; SALT_LEN]> {
    let mut salt = [0u8; SALT_LEN];
    fill_random(&mut salt).map_err(failure)?;
    Ok(salt)
}

/// A file system that encrypts every file of an inner one.
#[derive(Debug)]
pub(crate) struct EncryptedFs {
    inner: Arc<dyn Fs>,
    registry: Arc<KeyRegistry>,
}

impl EncryptedFs {
    /// The cipher of the file whose 40 header bytes are `header`.
    fn file_cipher(&self, path: &Path, header: &[u8]) -> io::Result<FileCipher> {
        if header[..8] != FILE_MAGIC {
            return Err(failure(Error::Encryption(format!(
                "{} is not encrypted: was the database created without encryption?",
                path.display()
            ))));
        }
        let h = FileHeader::decode(header).map_err(|r| corrupt(path, 0, r))?;
        let key = self.registry.get(h.key_id).ok_or_else(|| {
            failure(Error::Encryption(format!(
                "{} uses data key {}, which is not in {REGISTRY_NAME}",
                path.display(),
                h.key_id
            )))
        })?;
        Ok(FileCipher::derive(&key.key, &h.salt))
    }
}

/// Fails unless `bytes`, shorter than a file header, can be the start of
/// one (a creation a crash cut short).
fn check_partial_header(path: &Path, bytes: &[u8]) -> io::Result<()> {
    debug_assert!(bytes.len() < FILE_HEADER_LEN as usize);
    let n = bytes.len().min(FILE_MAGIC.len());
    if bytes[..n] == FILE_MAGIC[..n] || bytes.iter().all(|&b| b == 0) {
        Ok(())
    } else {
        Err(failure(Error::Encryption(format!(
            "{} is not encrypted: was the database created without encryption?",
            path.display()
        ))))
    }
}

impl Fs for EncryptedFs {
    fn create(&self, path: &Path) -> io::Result<Arc<dyn FsFile>> {
        let key = self.registry.current().map_err(failure)?;
        let salt = random_salt()?;
        let header = FileHeader {
            key_id: key.id,
            salt,
        };
        let inner = self.inner.create(path)?;
        inner.append(&header.encode())?;
        let cipher = OnceLock::new();
        let _ = cipher.set(FileCipher::derive(&key.key, &salt));
        Ok(Arc::new(EncryptedFile::new(
            inner,
            self.registry.clone(),
            cipher,
            FrameIndex::default(),
            Writer::new(FILE_HEADER_LEN, true, false),
        )))
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn FsFile>> {
        let inner = self.inner.open(path)?;
        let phys_len = inner.len()?;
        if phys_len < FILE_HEADER_LEN {
            // A creation a crash cut short: empty until the first append
            // writes a fresh header.
            let mut partial = vec![0u8; phys_len as usize];
            inner.read_exact_at(&mut partial, 0)?;
            check_partial_header(path, &partial)?;
            return Ok(Arc::new(EncryptedFile::new(
                inner,
                self.registry.clone(),
                OnceLock::new(),
                FrameIndex::default(),
                Writer::new(0, false, phys_len > 0),
            )));
        }
        let mut header = [0u8; FILE_HEADER_LEN as usize];
        inner.read_exact_at(&mut header, 0)?;
        let cipher = self.file_cipher(path, &header)?;
        let mut read = |buf: &mut [u8], off: u64| inner.read_exact_at(buf, off);
        let scan =
            frame::scan(&mut read, phys_len, &cipher)?.map_err(|(off, r)| corrupt(path, off, r))?;
        if let Some(reason) = scan.torn {
            tracing::warn!(file = %path.display(), reason, "ignoring torn tail of encrypted file");
        }
        let valid = scan.index.phys_len();
        let once = OnceLock::new();
        let _ = once.set(cipher);
        Ok(Arc::new(EncryptedFile::new(
            inner,
            self.registry.clone(),
            once,
            scan.index,
            Writer::new(valid, true, valid < phys_len),
        )))
    }

    fn read_all(&self, path: &Path) -> io::Result<FileBytes> {
        let bytes = self.inner.read_all(path)?;
        let data: &[u8] = (*bytes).as_ref();
        if data.len() < FILE_HEADER_LEN as usize {
            check_partial_header(path, data)?;
            return Ok(Arc::new(Vec::<u8>::new()));
        }
        let cipher = self.file_cipher(path, &data[..FILE_HEADER_LEN as usize])?;
        let mut read = |buf: &mut [u8], off: u64| -> io::Result<()> {
            let off = off as usize;
            buf.copy_from_slice(&data[off..off + buf.len()]);
            Ok(())
        };
        let scan = frame::scan(&mut read, data.len() as u64, &cipher)?
            .map_err(|(off, r)| corrupt(path, off, r))?;
        if let Some(reason) = scan.torn {
            tracing::warn!(file = %path.display(), reason, "ignoring torn tail of encrypted file");
        }
        let idx = scan.index;
        let mut out = vec![0u8; usize::try_from(idx.logical_len()).map_err(io::Error::other)?];
        for i in 0..idx.frames() {
            let phys = idx.phys_off(i) as usize;
            let (start, end) = (idx.start(i) as usize, idx.end(i) as usize);
            let h = FrameHeader::decode(&data[phys..])
                .ok_or_else(|| corrupt(path, phys as u64, "bad frame header"))?;
            let body = &mut out[start..end];
            let ct = phys + FRAME_HEADER_LEN;
            body.copy_from_slice(&data[ct..ct + body.len()]);
            let tag = &data[ct + body.len()..ct + body.len() + TAG_LEN];
            if !cipher.open(&h, start as u64, body, tag) {
                return Err(auth_failure(path, phys as u64));
            }
        }
        Ok(Arc::new(out))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.inner.remove(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = self.inner.list(dir)?;
        names.retain(|n| n != REGISTRY_NAME && n != REGISTRY_TMP_NAME);
        Ok(names)
    }

    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.sync_dir(dir)
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>> {
        self.inner.lock(path)
    }

    fn lock_shared(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>> {
        self.inner.lock_shared(path)
    }
}

/// Random nonces drawn from the OS in batches.
struct NoncePool {
    buf: [u8; NONCE_LEN * 64],
    used: usize,
}

impl NoncePool {
    fn new() -> NoncePool {
        NoncePool {
            buf: [0; NONCE_LEN * 64],
            used: NONCE_LEN * 64,
        }
    }

    fn next(&mut self) -> io::Result<[u8; NONCE_LEN]> {
        if self.used == self.buf.len() {
            fill_random(&mut self.buf).map_err(failure)?;
            self.used = 0;
        }
        let mut n = [0u8; NONCE_LEN];
        n.copy_from_slice(&self.buf[self.used..self.used + NONCE_LEN]);
        self.used += NONCE_LEN;
        Ok(n)
    }
}

/// The appender's state.
struct Writer {
    /// Physical end of the valid frames (the inner file may be longer).
    phys_len: u64,
    /// False while the file has no complete header (a cut-short creation).
    header_written: bool,
    /// The inner file holds bytes past `phys_len` (a torn tail): cut
    /// before the next append.
    dirty_tail: bool,
    /// An append failed and could not be undone.
    broken: bool,
    /// Frames being encrypted; reused across appends.
    scratch: Vec<u8>,
    nonces: NoncePool,
}

impl Writer {
    fn new(phys_len: u64, header_written: bool, dirty_tail: bool) -> Writer {
        Writer {
            phys_len,
            header_written,
            dirty_tail,
            broken: false,
            scratch: Vec::new(),
            nonces: NoncePool::new(),
        }
    }
}

/// The last frame decrypted for a partial read: header, plaintext, tag.
#[derive(Default)]
struct FrameCache {
    /// Logical start of the cached frame.
    start: Option<u64>,
    buf: Vec<u8>,
}

/// Bytes of frames written to the inner file per `append` call.
const APPEND_BATCH_BYTES: usize = 1 << 20;

/// An open encrypted file.
struct EncryptedFile {
    inner: Arc<dyn FsFile>,
    registry: Arc<KeyRegistry>,
    /// Set once the file has a header.
    cipher: OnceLock<FileCipher>,
    index: RwLock<FrameIndex>,
    writer: Mutex<Writer>,
    cache: Mutex<FrameCache>,
}

impl std::fmt::Debug for EncryptedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let idx = self.index.read();
        f.debug_struct("EncryptedFile")
            .field("path", &self.inner.path())
            .field("logical_len", &idx.logical_len())
            .field("frames", &idx.frames())
            .finish_non_exhaustive()
    }
}

impl EncryptedFile {
    fn new(
        inner: Arc<dyn FsFile>,
        registry: Arc<KeyRegistry>,
        cipher: OnceLock<FileCipher>,
        index: FrameIndex,
        writer: Writer,
    ) -> EncryptedFile {
        debug_assert!(!writer.header_written || index.phys_len() == writer.phys_len);
        EncryptedFile {
            inner,
            registry,
            cipher,
            index: RwLock::new(index),
            writer: Mutex::new(writer),
            cache: Mutex::new(FrameCache::default()),
        }
    }

    fn cipher(&self) -> io::Result<&FileCipher> {
        self.cipher
            .get()
            .ok_or_else(|| corrupt(self.inner.path(), 0, "encrypted file has no header"))
    }

    /// Checks frame `i`'s header as read now against the index.
    fn check_header(&self, idx: &FrameIndex, i: usize, bytes: &[u8]) -> io::Result<FrameHeader> {
        FrameHeader::decode(bytes)
            .filter(|h| {
                u64::from(h.plain_len) == idx.end(i) - idx.start(i) && h.is_end() == idx.is_end(i)
            })
            .ok_or_else(|| {
                corrupt(
                    self.inner.path(),
                    idx.phys_off(i),
                    "frame header changed since the file was opened",
                )
            })
    }

    /// Decrypts all of frame `i` into `out` (exactly its length).
    fn decrypt_into(&self, idx: &FrameIndex, i: usize, out: &mut [u8]) -> io::Result<()> {
        let phys = idx.phys_off(i);
        let mut hb = [0u8; FRAME_HEADER_LEN];
        self.inner.read_exact_at(&mut hb, phys)?;
        let h = self.check_header(idx, i, &hb)?;
        let ct = phys + FRAME_HEADER_LEN as u64;
        self.inner.read_exact_at(out, ct)?;
        let mut tag = [0u8; TAG_LEN];
        self.inner.read_exact_at(&mut tag, ct + out.len() as u64)?;
        if !self.cipher()?.open(&h, idx.start(i), out, &tag) {
            out.fill(0);
            return Err(auth_failure(self.inner.path(), phys));
        }
        Ok(())
    }

    /// Copies `out.len()` bytes from `within` frame `i` through the cache.
    fn read_cached(
        &self,
        idx: &FrameIndex,
        i: usize,
        within: usize,
        out: &mut [u8],
    ) -> io::Result<()> {
        let start = idx.start(i);
        let mut guard = self.cache.try_lock();
        let mut local = FrameCache::default();
        // Another reader is using the cache: decrypt into a buffer of our own.
        let cache = match guard.as_mut() {
            Some(g) => &mut **g,
            None => &mut local,
        };
        if cache.start != Some(start) {
            cache.start = None;
            let len = (idx.end(i) - start) as usize;
            cache.buf.resize(len + FRAME_OVERHEAD as usize, 0);
            self.inner.read_exact_at(&mut cache.buf, idx.phys_off(i))?;
            let h = self.check_header(idx, i, &cache.buf[..FRAME_HEADER_LEN])?;
            let (body, tag) = cache.buf[FRAME_HEADER_LEN..].split_at_mut(len);
            if !self.cipher()?.open(&h, start, body, tag) {
                return Err(auth_failure(self.inner.path(), idx.phys_off(i)));
            }
            cache.start = Some(start);
        }
        let from = FRAME_HEADER_LEN + within;
        out.copy_from_slice(&cache.buf[from..from + out.len()]);
        Ok(())
    }

    /// Encrypts `data` as frames from logical offset `logical` and writes
    /// them; returns the physical bytes written.
    fn write_frames(&self, w: &mut Writer, data: &[u8], mut logical: u64) -> io::Result<u64> {
        let cipher = self.cipher()?;
        let frames = data.len().div_ceil(FRAME_MAX_BYTES);
        let mut written = 0u64;
        let mut scratch = std::mem::take(&mut w.scratch);
        scratch.clear();
        for (k, chunk) in data.chunks(FRAME_MAX_BYTES).enumerate() {
            let h = FrameHeader {
                plain_len: chunk.len() as u32,
                flags: if k + 1 == frames {
                    FLAG_END_OF_APPEND
                } else {
                    0
                },
                nonce: w.nonces.next()?,
            };
            scratch.extend_from_slice(&h.encode());
            let at = scratch.len();
            scratch.extend_from_slice(chunk);
            let tag = cipher.seal(&h, logical, &mut scratch[at..]);
            scratch.extend_from_slice(&tag);
            logical += chunk.len() as u64;
            if scratch.len() >= APPEND_BATCH_BYTES || k + 1 == frames {
                self.inner.append(&scratch)?;
                written += scratch.len() as u64;
                scratch.clear();
            }
        }
        w.scratch = scratch;
        Ok(written)
    }
}

impl FsFile for EncryptedFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let idx = self.index.read();
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= idx.logical_len())
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        let mut i = idx.find(offset);
        let mut pos = offset;
        let mut done = 0usize;
        while pos < end {
            debug_assert!(i < idx.frames());
            let (start, frame_end) = (idx.start(i), idx.end(i));
            let take = (frame_end.min(end) - pos) as usize;
            let out = &mut buf[done..done + take];
            if pos == start && pos + take as u64 == frame_end {
                self.decrypt_into(&idx, i, out)?;
            } else {
                self.read_cached(&idx, i, (pos - start) as usize, out)?;
            }
            pos += take as u64;
            done += take;
            i += 1;
        }
        Ok(())
    }

    fn append(&self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let mut w = self.writer.lock();
        if w.broken {
            return Err(io::Error::other(format!(
                "{}: unusable after a failed append",
                self.inner.path().display()
            )));
        }
        if !w.header_written {
            let key = self.registry.current().map_err(failure)?;
            let salt = random_salt()?;
            self.inner.truncate(0)?;
            self.inner.append(
                &FileHeader {
                    key_id: key.id,
                    salt,
                }
                .encode(),
            )?;
            let _ = self.cipher.set(FileCipher::derive(&key.key, &salt));
            w.header_written = true;
            w.dirty_tail = false;
            w.phys_len = FILE_HEADER_LEN;
        }
        if w.dirty_tail {
            self.inner.truncate(w.phys_len)?;
            w.dirty_tail = false;
        }
        let logical = self.index.read().logical_len();
        match self.write_frames(&mut w, data, logical) {
            Ok(written) => {
                w.phys_len += written;
                let mut idx = self.index.write();
                let frames = data.len().div_ceil(FRAME_MAX_BYTES);
                for (k, chunk) in data.chunks(FRAME_MAX_BYTES).enumerate() {
                    idx.push(chunk.len() as u32, k + 1 == frames);
                }
                debug_assert_eq!(idx.phys_len(), w.phys_len);
                Ok(())
            }
            Err(e) => {
                // Take back whatever part reached the file.
                if self.inner.truncate(w.phys_len).is_err() {
                    w.broken = true;
                }
                Err(e)
            }
        }
    }

    fn sync(&self) -> io::Result<()> {
        self.inner.sync()
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.index.read().logical_len())
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        let mut w = self.writer.lock();
        let mut idx = self.index.write();
        if len > idx.logical_len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an encrypted file cannot be extended by truncate",
            ));
        }
        if !w.header_written {
            debug_assert_eq!(idx.logical_len(), 0);
            self.inner.truncate(0)?;
            w.dirty_tail = false;
            return Ok(());
        }
        let keep = if len == idx.logical_len() {
            idx.frames()
        } else {
            let i = idx.find(len);
            if idx.start(i) != len || (i > 0 && !idx.is_end(i - 1)) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{}: an encrypted file can only be cut where an append ended",
                        self.inner.path().display()
                    ),
                ));
            }
            i
        };
        let phys = idx.phys_off(keep);
        self.inner.truncate(phys)?;
        idx.truncate(keep);
        w.phys_len = phys;
        w.dirty_tail = false;
        *self.cache.lock() = FrameCache::default();
        Ok(())
    }

    fn preallocate(&self, len: u64) -> io::Result<()> {
        let frames = len.div_ceil(FRAME_MAX_BYTES as u64);
        self.inner
            .preallocate(FILE_HEADER_LEN + len + frames * FRAME_OVERHEAD)
    }

    fn path(&self) -> &Path {
        self.inner.path()
    }
}

#[cfg(test)]
mod tests;
