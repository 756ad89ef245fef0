//! A file system for crash tests: an in-memory file system whose
//! [`FaultFs::crash`] returns what a power cut would leave — unsynced file
//! data and unsynced directory changes are gone. [`FaultFs::crash_torn`]
//! also keeps a seeded random prefix of each file's unsynced bytes (a torn
//! write), and [`FaultFs::flip_bit`] / [`FaultFs::truncate_to`] damage
//! stored bytes the way failing media would.

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

    /// [`FaultFs::crash`] with torn writes: each file keeps its synced
    /// bytes plus a prefix, of a length drawn from `seed`, of the bytes it
    /// had not synced (all, none, or anything between).
    pub fn crash_torn(&self, seed: u64) -> FaultFs {
        let mut state = seed;
        FaultFs {
            inner: self.inner.crash_image_with(|_, unsynced| {
                let r = splitmix64(&mut state);
                match r % 4 {
                    0 => 0,
                    1 => unsynced,
                    _ => (r >> 8) as usize % (unsynced + 1),
                }
            }),
        }
    }

    /// Flips bit `bit` (counting from the first byte's lowest bit) of the
    /// stored bytes of `path`; `InvalidInput` past its end.
    pub fn flip_bit(&self, path: &Path, bit: u64) -> io::Result<()> {
        let mut res = Ok(());
        self.inner.modify(path, |data| {
            match usize::try_from(bit / 8).ok().and_then(|i| data.get_mut(i)) {
                Some(b) => *b ^= 1 << (bit % 8),
                None => res = Err(io::Error::from(io::ErrorKind::InvalidInput)),
            }
        })?;
        res
    }

    /// Cuts the stored bytes of `path` to `len` (no-op if shorter).
    pub fn truncate_to(&self, path: &Path, len: u64) -> io::Result<()> {
        self.inner.modify(path, |data| {
            data.truncate(usize::try_from(len).unwrap_or(usize::MAX))
        })
    }

    /// How many bytes of `path` its last sync made durable.
    pub fn synced_len(&self, path: &Path) -> Option<u64> {
        self.inner.synced_len(path)
    }
}

/// splitmix64 step: seeded choices without a dependency.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_image_keeps_synced_bytes_and_a_prefix_of_the_rest() {
        let fs = FaultFs::new();
        let d = Path::new("/d");
        fs.create_dir_all(d).unwrap();
        let f = fs.create(&d.join("a")).unwrap();
        f.append(b"synced").unwrap();
        f.sync().unwrap();
        f.append(b"-unsynced").unwrap();
        fs.sync_dir(d).unwrap();
        let mut lens = std::collections::BTreeSet::new();
        for seed in 0..64 {
            let img = fs.crash_torn(seed);
            let bytes = img.read_all(&d.join("a")).unwrap();
            let bytes = (*bytes).as_ref();
            assert!(b"synced-unsynced".starts_with(bytes) && bytes.len() >= 6);
            lens.insert(bytes.len());
        }
        assert!(lens.contains(&6) && lens.contains(&15) && lens.len() > 3);
    }

    #[test]
    fn flip_and_truncate_damage_stored_bytes() {
        let fs = FaultFs::new();
        let p = Path::new("/f");
        fs.create(p).unwrap().append(&[0u8; 4]).unwrap();
        fs.flip_bit(p, 9).unwrap();
        assert_eq!((*fs.read_all(p).unwrap()).as_ref(), &[0, 2, 0, 0]);
        assert!(fs.flip_bit(p, 32).is_err());
        fs.truncate_to(p, 1).unwrap();
        assert_eq!((*fs.read_all(p).unwrap()).as_ref(), &[0]);
        assert_eq!(fs.synced_len(p), Some(0));
    }
}
