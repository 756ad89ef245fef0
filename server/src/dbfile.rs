//! The point-in-time copy of a member's store that `Maintenance.Snapshot`
//! streams and `etcdctl snapshot save` writes to a file.
//!
//! Layout: the framed MVCC snapshot ([`MvccStore::write_snapshot`]: every
//! version of every key, the event log, leases and the Raft meta), zero
//! bytes up to a multiple of 512, then the SHA-256 of everything before
//! it. etcdctl 3.4 accepts a saved file only if its size is 32 bytes past a
//! multiple of 512 (the shape of etcd's own files, a bbolt database plus
//! its SHA-256), which this layout gives.
//!
//! `settctl snapshot restore` checks the hash and builds a member's data
//! directory from the file ([`restore`]).

use crate::config::MemberConfig;
use crate::mvcc::MvccStore;
use crate::raft::state_machine::Applier;
use crate::raft::MvccApplier;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// The data part is padded to a multiple of this.
pub const ALIGN: u64 = 512;
/// Length of the trailing hash.
pub const HASH_LEN: u64 = 32;

/// Why a snapshot file cannot be written or restored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbFileError {
    /// Reading or writing the file failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The file is not a sett snapshot, or it was damaged.
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error("{0}")]
    Store(String),
}

/// Hashes what passes through to the inner writer.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    len: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes `store`'s snapshot file to `file`; returns its size.
pub fn write(store: &MvccStore, file: &File) -> Result<u64, DbFileError> {
    let mut w = Hashing {
        inner: BufWriter::new(file),
        hash: Sha256::new(),
        len: 0,
    };
    store
        .write_snapshot(&mut w)
        .map_err(|e| DbFileError::Store(e.to_string()))?;
    let pad = (ALIGN - w.len % ALIGN) % ALIGN;
    w.write_all(&vec![0; pad as usize])?;
    let Hashing {
        mut inner,
        hash,
        len,
    } = w;
    inner.write_all(&hash.finalize())?;
    inner.flush()?;
    drop(inner);
    file.sync_all()?;
    Ok(len + HASH_LEN)
}

/// Checks the shape and the hash of the snapshot file `file`; leaves it
/// positioned at the start.
pub fn verify(file: &mut File) -> Result<(), DbFileError> {
    let size = file.metadata()?.len();
    if size < HASH_LEN || !(size - HASH_LEN).is_multiple_of(ALIGN) {
        return Err(DbFileError::Invalid(format!(
            "{size} bytes is not a snapshot file's size (a multiple of {ALIGN} plus a {HASH_LEN}-byte hash)"
        )));
    }
    file.seek(SeekFrom::Start(0))?;
    let mut hash = Sha256::new();
    let mut data = (&mut *file).take(size - HASH_LEN);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = data.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
    }
    let mut stored = [0u8; HASH_LEN as usize];
    file.read_exact(&mut stored)?;
    if hash.finalize().as_slice() != stored {
        return Err(DbFileError::Invalid(
            "the SHA-256 at the end of the file does not match its content".into(),
        ));
    }
    file.seek(SeekFrom::Start(0))?;
    Ok(())
}

/// Builds the data directory of member `cfg` (which must not hold a
/// member yet) from the snapshot file at `path`: the store holds every
/// key, revision and lease of the file; the Raft state starts empty, so
/// the restored members form a new cluster from `cfg`'s initial cluster.
pub fn restore(path: &Path, cfg: &MemberConfig) -> Result<(), DbFileError> {
    let mut file = File::open(path)?;
    verify(&mut file)?;
    if MemberConfig::load(&cfg.data_dir)
        .map_err(|e| DbFileError::Store(e.to_string()))?
        .is_some()
    {
        return Err(DbFileError::Invalid(format!(
            "{} already holds a member",
            cfg.data_dir.display()
        )));
    }
    let applier = MvccApplier::open(cfg.data_dir.join("sm"))
        .map_err(|e| DbFileError::Store(e.to_string()))?;
    let mut input = std::io::BufReader::new(file);
    applier
        .install(&mut input)
        .map_err(|e| DbFileError::Invalid(format!("snapshot content: {e}")))?;
    applier
        .forget_raft_state()
        .map_err(|e| DbFileError::Store(e.to_string()))?;
    applier
        .close()
        .map_err(|e| DbFileError::Store(e.to_string()))?;
    cfg.save().map_err(|e| DbFileError::Store(e.to_string()))?;
    Ok(())
}
