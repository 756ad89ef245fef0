//! An in-memory file system. It also tracks what has been synced — file
//! contents up to the last `sync`, directory entries as of the last
//! `sync_dir` — so that [`super::FaultFs`] can produce the image a power cut
//! would leave.

use super::{FileBytes, Fs, FsFile};
use parking_lot::{Mutex, RwLock};
use std::any::Any;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Default)]
struct Node {
    data: RwLock<Vec<u8>>,
    synced_len: Mutex<usize>,
}

#[derive(Debug, Default)]
struct State {
    /// Entries as the running program sees them.
    live: BTreeMap<PathBuf, Arc<Node>>,
    /// Entries as of the last directory sync: what survives a crash.
    durable: BTreeMap<PathBuf, Arc<Node>>,
    dirs: HashSet<PathBuf>,
}

/// A file system held in memory. Cloning shares the same files.
#[derive(Debug, Default, Clone)]
pub struct MemFs {
    state: Arc<Mutex<State>>,
    /// Held locks: `None` = exclusive, `Some(n)` = n shared holders.
    locks: Arc<Mutex<HashMap<PathBuf, Option<usize>>>>,
}

#[derive(Debug)]
struct MemFile {
    node: Arc<Node>,
    path: PathBuf,
}

struct LockGuard {
    locks: Arc<Mutex<HashMap<PathBuf, Option<usize>>>>,
    path: PathBuf,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let mut locks = self.locks.lock();
        match locks.get_mut(&self.path) {
            Some(Some(n)) if *n > 1 => *n -= 1,
            _ => {
                locks.remove(&self.path);
            }
        }
    }
}

fn not_found(p: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", p.display()),
    )
}

impl MemFs {
    /// An empty file system.
    pub fn new() -> MemFs {
        MemFs::default()
    }

    /// The image a power cut would leave now: only directory entries made
    /// durable by `sync_dir`, each file cut to its last synced length. The
    /// result shares nothing with `self`.
    pub fn crash_image(&self) -> MemFs {
        self.crash_image_with(|_, _| 0)
    }

    /// [`MemFs::crash_image`], except that each file also keeps the first
    /// `torn(path, unsynced_len)` bytes (capped) of what it had not synced:
    /// a write torn by the power cut.
    pub(crate) fn crash_image_with(&self, mut torn: impl FnMut(&Path, usize) -> usize) -> MemFs {
        let st = self.state.lock();
        let mut durable = BTreeMap::new();
        for (p, node) in &st.durable {
            let data = node.data.read();
            let synced = (*node.synced_len.lock()).min(data.len());
            let unsynced = data.len() - synced;
            let kept = synced + torn(p, unsynced).min(unsynced);
            let keep = data[..kept].to_vec();
            durable.insert(
                p.clone(),
                Arc::new(Node {
                    data: RwLock::new(keep),
                    synced_len: Mutex::new(kept),
                }),
            );
        }
        MemFs {
            state: Arc::new(Mutex::new(State {
                live: durable.clone(),
                durable,
                dirs: st.dirs.clone(),
            })),
            locks: Arc::default(),
        }
    }
}

impl MemFs {
    /// Applies `f` to the bytes of the live file `path` (damage for tests).
    pub(crate) fn modify(&self, path: &Path, f: impl FnOnce(&mut Vec<u8>)) -> io::Result<()> {
        let node = self
            .state
            .lock()
            .live
            .get(path)
            .cloned()
            .ok_or_else(|| not_found(path))?;
        f(&mut node.data.write());
        Ok(())
    }

    /// Bytes of `path` made durable by its last sync, if it exists.
    pub(crate) fn synced_len(&self, path: &Path) -> Option<u64> {
        let node = self.state.lock().live.get(path).cloned()?;
        let len = node.data.read().len();
        let synced = (*node.synced_len.lock()).min(len);
        Some(synced as u64)
    }
}

impl Fs for MemFs {
    fn create(&self, path: &Path) -> io::Result<Arc<dyn FsFile>> {
        let node = Arc::new(Node::default());
        self.state
            .lock()
            .live
            .insert(path.to_path_buf(), node.clone());
        Ok(Arc::new(MemFile {
            node,
            path: path.to_path_buf(),
        }))
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn FsFile>> {
        let node = self
            .state
            .lock()
            .live
            .get(path)
            .cloned()
            .ok_or_else(|| not_found(path))?;
        Ok(Arc::new(MemFile {
            node,
            path: path.to_path_buf(),
        }))
    }

    fn read_all(&self, path: &Path) -> io::Result<FileBytes> {
        let node = self
            .state
            .lock()
            .live
            .get(path)
            .cloned()
            .ok_or_else(|| not_found(path))?;
        let data = node.data.read().clone();
        Ok(Arc::new(data))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        let node = st.live.remove(from).ok_or_else(|| not_found(from))?;
        st.live.insert(to.to_path_buf(), node);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.state
            .lock()
            .live
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let st = self.state.lock();
        Ok(st
            .live
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_string))
            .collect())
    }

    fn exists(&self, path: &Path) -> bool {
        let st = self.state.lock();
        st.live.contains_key(path) || st.dirs.contains(path)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        for a in dir.ancestors() {
            st.dirs.insert(a.to_path_buf());
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        let State { live, durable, .. } = &mut *st;
        durable.retain(|p, _| p.parent() != Some(dir));
        for (p, n) in live.iter().filter(|(p, _)| p.parent() == Some(dir)) {
            durable.insert(p.clone(), n.clone());
        }
        Ok(())
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>> {
        let mut locks = self.locks.lock();
        if locks.contains_key(path) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "lock held elsewhere",
            ));
        }
        locks.insert(path.to_path_buf(), None);
        Ok(Box::new(LockGuard {
            locks: self.locks.clone(),
            path: path.to_path_buf(),
        }))
    }

    fn lock_shared(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>> {
        let mut locks = self.locks.lock();
        match locks.entry(path.to_path_buf()).or_insert(Some(0)) {
            Some(n) => *n += 1,
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "lock held elsewhere",
                ))
            }
        }
        Ok(Box::new(LockGuard {
            locks: self.locks.clone(),
            path: path.to_path_buf(),
        }))
    }
}

impl FsFile for MemFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let data = self.node.data.read();
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let end = start
            .checked_add(buf.len())
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        let src = data.get(start..end).ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn append(&self, data: &[u8]) -> io::Result<()> {
        self.node.data.write().extend_from_slice(data);
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        let len = self.node.data.read().len();
        *self.node.synced_len.lock() = len;
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.node.data.read().len() as u64)
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
        self.node.data.write().truncate(len);
        let mut s = self.node.synced_len.lock();
        *s = (*s).min(len);
        Ok(())
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_image_drops_unsynced() {
        let fs = MemFs::new();
        let d = Path::new("/d");
        fs.create_dir_all(d).unwrap();
        let a = fs.create(&d.join("a")).unwrap();
        a.append(b"hello").unwrap();
        a.sync().unwrap();
        a.append(b" world").unwrap();
        fs.sync_dir(d).unwrap();
        let b = fs.create(&d.join("b")).unwrap();
        b.append(b"x").unwrap();
        b.sync().unwrap();

        let img = fs.crash_image();
        assert_eq!(img.list(d).unwrap(), vec!["a".to_string()]);
        let bytes = img.read_all(&d.join("a")).unwrap();
        assert_eq!((*bytes).as_ref(), b"hello");
    }

    #[test]
    fn lock_is_exclusive() {
        let fs = MemFs::new();
        let g = fs.lock(Path::new("/LOCK")).unwrap();
        assert_eq!(
            fs.lock(Path::new("/LOCK")).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        drop(g);
        fs.lock(Path::new("/LOCK")).unwrap();
    }
}
