//! The file layer. Every byte the engine persists goes through [`Fs`], so
//! the same engine runs on real files ([`PosixFs`]), purely in memory
//! ([`MemFs`], the in-memory mode) or on a layer that can simulate a power
//! cut by dropping whatever was not synced ([`FaultFs`], for tests).
//! With `Options::encryption_key` set, an encrypting layer (`encrypted.rs`,
//! frame layout in `frame.rs`, data keys in `keyregistry.rs`) wraps
//! whichever of them is in use.

pub(crate) mod encrypted;
mod fault;
mod frame;
mod keyregistry;
mod mem;
mod posix;

pub use fault::FaultFs;
pub use mem::MemFs;
pub use posix::PosixFs;

use std::any::Any;
use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Read-only bytes of an immutable file (a table): a memory map on real
/// files, a shared buffer in memory.
pub type FileBytes = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// A file system the engine can run on.
///
/// Thread-safety: all methods may be called from any thread concurrently.
pub trait Fs: Send + Sync + Debug + 'static {
    /// Creates (or truncates) a file for appending.
    fn create(&self, path: &Path) -> io::Result<Arc<dyn FsFile>>;
    /// Opens an existing file for reading and appending at its end.
    fn open(&self, path: &Path) -> io::Result<Arc<dyn FsFile>>;
    /// Maps a whole immutable file for reading.
    fn read_all(&self, path: &Path) -> io::Result<FileBytes>;
    /// Atomically renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Names (not paths) of the entries in `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// True if `path` exists.
    fn exists(&self, path: &Path) -> bool;
    /// Creates `dir` and its parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive lock on `path` (creating it), failing at once with
    /// `WouldBlock` if someone else holds it. The lock lasts as long as the
    /// returned guard.
    fn lock(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>>;
    /// Takes a shared lock on `path` (creating it): any number of shared
    /// holders, but never together with an exclusive one. Fails at once
    /// with `WouldBlock` if an exclusive lock is held.
    fn lock_shared(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>>;
}

/// An open file: positional reads, appends at the end, sync.
///
/// Thread-safety: reads may run concurrently with one appender.
#[allow(clippy::len_without_is_empty)]
pub trait FsFile: Send + Sync + Debug {
    /// Fills `buf` from `offset`; `UnexpectedEof` if the file is shorter.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Appends `data` at the end of the file.
    fn append(&self, data: &[u8]) -> io::Result<()>;
    /// Makes all appended data durable (fdatasync).
    fn sync(&self) -> io::Result<()>;
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Cuts the file to `len` bytes.
    fn truncate(&self, len: u64) -> io::Result<()>;
    /// Reserves disk blocks for the first `len` bytes without changing the
    /// file's length, so that later appends and syncs need not allocate.
    /// A hint: file systems that cannot do it ignore it.
    fn preallocate(&self, _len: u64) -> io::Result<()> {
        Ok(())
    }
    /// The path the file was opened with (for error messages).
    fn path(&self) -> &Path;
}

/// Joins `dir` and a file name.
pub(crate) fn join(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}
