//! A file system for crash tests: an in-memory file system whose
//! [`FaultFs::crash`] returns what a power cut would leave — unsynced file
//! data and unsynced directory changes are gone.

use super::{FileBytes, Fs, FsFile, MemFs};
use std::any::Any;
use std::io;
use std::path::Path;
use std::sync::Arc;

/// An in-memory file system that can simulate a power cut.
#[derive(Debug, Default, Clone)]
pub struct FaultFs {
    inner: MemFs,
}

impl FaultFs {
    /// An empty file system.
    pub fn new() -> FaultFs {
        FaultFs::default()
    }

    /// A new file system holding only what had been made durable: file
    /// bytes up to each file's last sync, directory entries as of each
    /// directory's last sync.
    pub fn crash(&self) -> FaultFs {
        FaultFs {
            inner: self.inner.crash_image(),
        }
    }
}

impl Fs for FaultFs {
    fn create(&self, path: &Path) -> io::Result<Arc<dyn FsFile>> {
        self.inner.create(path)
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn FsFile>> {
        self.inner.open(path)
    }
    fn read_all(&self, path: &Path) -> io::Result<FileBytes> {
        self.inner.read_all(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.inner.remove(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list(dir)
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
