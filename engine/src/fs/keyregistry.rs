//! The key registry: the data keys files are encrypted with, stored in
//! `KEYREGISTRY` encrypted under the user's master key.
//!
//! ```text
//! file  := magic "SETTKREG" | version u32 (1) | nonce [12] | body_len u32
//!          | ciphertext [body_len] | tag [16] | crc32(all bytes before it) u32
//! body  := count u32 | entry × count                  (AES-256-GCM under the master key,
//! entry := id u64 | created_at_ms u64 | key [32]        associated data = the 28 header bytes)
//! ```
//!
//! Integers are little-endian; ids strictly ascend. The crc tells a damaged
//! file (`Error::Corruption`) from a wrong master key (the crc matches but
//! the tag does not: `Error::Encryption`).
//!
//! The file is replaced whole, atomically: written to `KEYREGISTRY.tmp`,
//! synced, renamed over `KEYREGISTRY`, directory synced — through the raw
//! file system. A new key is durable before any file uses it.
//!
//! Thread-safety: all methods may be called concurrently; rotations are
//! serialized.

use super::Fs;
use crate::options::EncryptionKey;
use crate::{Error, Result};
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::{AeadInPlace, Aes256Gcm, KeyInit};
use parking_lot::{Mutex, RwLock};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Name of the registry file.
pub(crate) const REGISTRY_NAME: &str = "KEYREGISTRY";
/// Name of a registry rewrite being staged.
pub(crate) const REGISTRY_TMP_NAME: &str = "KEYREGISTRY.tmp";

const MAGIC: [u8; 8] = *b"SETTKREG";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 28;
const TAG_LEN: usize = 16;
const CRC_LEN: usize = 4;
const ENTRY_LEN: usize = 48;
/// Most keys a registry may hold (one a second for 12 days).
const KEYS_MAX: usize = 1 << 20;

/// A data key. Its `Debug` output never shows the key bytes.
pub(crate) struct DataKey {
    pub(crate) id: u64,
    pub(crate) created_at_ms: u64,
    pub(crate) key: [u8; 32],
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("id", &self.id)
            .field("created_at_ms", &self.created_at_ms)
            .finish_non_exhaustive()
    }
}

/// The data keys of one database.
pub(crate) struct KeyRegistry {
    /// The raw (unencrypted) file system.
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    master: Aes256Gcm,
    rotation: Duration,
    read_only: bool,
    /// Ascending by id; the last is the one new files use.
    keys: RwLock<Vec<Arc<DataKey>>>,
    rotating: Mutex<()>,
}

impl std::fmt::Debug for KeyRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRegistry")
            .field("dir", &self.dir)
            .field("keys", &self.keys.read().len())
            .field("rotation", &self.rotation)
            .finish_non_exhaustive()
    }
}

impl KeyRegistry {
    /// Loads the registry of `dir` (none yet: empty). Unless read-only,
    /// removes a staged rewrite a crash left and makes sure a current data
    /// key exists, writing the registry if it starts one.
    pub(crate) fn open(
        fs: Arc<dyn Fs>,
        dir: &Path,
        master: &EncryptionKey,
        rotation: Duration,
        read_only: bool,
    ) -> Result<KeyRegistry> {
        let master = Aes256Gcm::new(GenericArray::from_slice(&master.0));
        let path = dir.join(REGISTRY_NAME);
        let keys = if fs.exists(&path) {
            let bytes = fs.read_all(&path)?;
            decode(&master, &path, (*bytes).as_ref())?
        } else {
            Vec::new()
        };
        if !read_only {
            let tmp = dir.join(REGISTRY_TMP_NAME);
            if fs.exists(&tmp) {
                fs.remove(&tmp)?;
            }
        }
        let registry = KeyRegistry {
            fs,
            dir: dir.to_path_buf(),
            master,
            rotation,
            read_only,
            keys: RwLock::new(keys),
            rotating: Mutex::new(()),
        };
        if !read_only {
            registry.current()?;
        }
        Ok(registry)
    }

    /// The key new files use: the newest, or a new one (made durable
    /// first) when the newest is `rotation` old. Read-only registries
    /// never start a key.
    pub(crate) fn current(&self) -> Result<Arc<DataKey>> {
        if let Some(k) = self.fresh_newest() {
            return Ok(k);
        }
        if self.read_only {
            return self.keys.read().last().cloned().ok_or_else(|| {
                Error::Encryption("read-only database has no data key".to_string())
            });
        }
        let _g = self.rotating.lock();
        if let Some(k) = self.fresh_newest() {
            return Ok(k); // another thread rotated meanwhile
        }
        let mut keys = self.keys.read().clone();
        let id = keys.last().map_or(1, |k| k.id + 1);
        let mut key = [0u8; 32];
        fill_random(&mut key)?;
        let new = Arc::new(DataKey {
            id,
            created_at_ms: now_ms(),
            key,
        });
        keys.push(new.clone());
        if keys.len() > KEYS_MAX {
            return Err(Error::Encryption(format!(
                "key registry full ({KEYS_MAX} keys): raise encryption_key_rotation"
            )));
        }
        self.persist(&keys)?;
        *self.keys.write() = keys;
        tracing::info!(id, dir = %self.dir.display(), "started a new data key");
        Ok(new)
    }

    /// The key with `id`, if the registry holds it.
    pub(crate) fn get(&self, id: u64) -> Option<Arc<DataKey>> {
        let keys = self.keys.read();
        keys.binary_search_by_key(&id, |k| k.id)
            .ok()
            .map(|i| keys[i].clone())
    }

    /// Number of keys held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.keys.read().len()
    }

    fn fresh_newest(&self) -> Option<Arc<DataKey>> {
        let keys = self.keys.read();
        let k = keys.last()?;
        let age = Duration::from_millis(now_ms().saturating_sub(k.created_at_ms));
        (age < self.rotation).then(|| k.clone())
    }

    /// Writes `keys` as the registry: tmp, sync, rename, dir sync.
    fn persist(&self, keys: &[Arc<DataKey>]) -> Result<()> {
        let bytes = encode(&self.master, keys)?;
        // Pair assertion: what is written must read back as `keys`.
        debug_assert!(
            decode(&self.master, Path::new(REGISTRY_NAME), &bytes).is_ok_and(|back| back.len()
                == keys.len()
                && back
                    .iter()
                    .zip(keys)
                    .all(|(a, b)| a.id == b.id && a.key == b.key))
        );
        let tmp = self.dir.join(REGISTRY_TMP_NAME);
        let file = self.fs.create(&tmp)?;
        file.append(&bytes)?;
        file.sync()?;
        drop(file);
        self.fs.rename(&tmp, &self.dir.join(REGISTRY_NAME))?;
        self.fs.sync_dir(&self.dir)?;
        Ok(())
    }
}

/// Fills `buf` from the operating system's random source.
pub(crate) fn fill_random(buf: &mut [u8]) -> Result<()> {
    getrandom::getrandom(buf)
        .map_err(|e| Error::Encryption(format!("no random numbers from the OS: {e}")))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn encode(master: &Aes256Gcm, keys: &[Arc<DataKey>]) -> Result<Vec<u8>> {
    let body_len = 4 + keys.len() * ENTRY_LEN;
    let mut out = Vec::with_capacity(HEADER_LEN + body_len + TAG_LEN + CRC_LEN);
    let mut nonce = [0u8; 12];
    fill_random(&mut nonce)?;
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&(keys.len() as u32).to_le_bytes());
    for k in keys {
        out.extend_from_slice(&k.id.to_le_bytes());
        out.extend_from_slice(&k.created_at_ms.to_le_bytes());
        out.extend_from_slice(&k.key);
    }
    let (header, body) = out.split_at_mut(HEADER_LEN);
    let tag = master
        .encrypt_in_place_detached(GenericArray::from_slice(&nonce), header, body)
        .map_err(|_| Error::Encryption("cannot encrypt the key registry".to_string()))?;
    out.extend_from_slice(&tag);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

fn decode(master: &Aes256Gcm, path: &Path, bytes: &[u8]) -> Result<Vec<Arc<DataKey>>> {
    let corrupt = |reason: &str| Error::corruption(path, 0, reason);
    if bytes.len() < HEADER_LEN + 4 + TAG_LEN + CRC_LEN {
        return Err(corrupt("key registry truncated"));
    }
    let (data, crc) = bytes.split_at(bytes.len() - CRC_LEN);
    if crc32fast::hash(data) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
        return Err(corrupt("key registry checksum mismatch"));
    }
    if data[..8] != MAGIC {
        return Err(corrupt("bad key registry magic"));
    }
    if le_u32(&data[8..12]) != VERSION {
        return Err(corrupt("unknown key registry version"));
    }
    let body_len = le_u32(&data[24..28]) as usize;
    if HEADER_LEN + body_len + TAG_LEN != data.len() {
        return Err(corrupt("key registry length mismatch"));
    }
    let (header, rest) = data.split_at(HEADER_LEN);
    let (sealed, tag) = rest.split_at(body_len);
    let mut body = sealed.to_vec();
    master
        .decrypt_in_place_detached(
            GenericArray::from_slice(&header[12..24]),
            header,
            &mut body,
            GenericArray::from_slice(tag),
        )
        .map_err(|_| {
            Error::Encryption(format!(
                "wrong encryption key: {} does not decrypt with the given master key",
                path.display()
            ))
        })?;
    let count = le_u32(&body[..4]) as usize;
    if count > KEYS_MAX || 4 + count * ENTRY_LEN != body.len() {
        return Err(corrupt("key registry count mismatch"));
    }
    let mut keys: Vec<Arc<DataKey>> = Vec::with_capacity(count);
    for e in body[4..].chunks_exact(ENTRY_LEN) {
        let mut key = [0u8; 32];
        key.copy_from_slice(&e[16..48]);
        let k = DataKey {
            id: le_u64(&e[0..8]),
            created_at_ms: le_u64(&e[8..16]),
            key,
        };
        if keys.last().is_some_and(|prev| prev.id >= k.id) {
            return Err(corrupt("key registry ids not ascending"));
        }
        keys.push(Arc::new(k));
    }
    Ok(keys)
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
    use crate::fs::{FaultFs, MemFs};

    fn dir() -> &'static Path {
        Path::new("/db")
    }

    fn open(fs: &Arc<dyn Fs>, key: u8, rotation: Duration) -> Result<KeyRegistry> {
        KeyRegistry::open(
            fs.clone(),
            dir(),
            &EncryptionKey([key; 32]),
            rotation,
            false,
        )
    }

    #[test]
    fn keys_survive_reopen_and_rotate() {
        let fs: Arc<dyn Fs> = Arc::new(MemFs::new());
        fs.create_dir_all(dir()).unwrap();
        let r = open(&fs, 1, Duration::from_secs(3600)).unwrap();
        assert_eq!(r.len(), 1);
        let k1 = r.current().unwrap();
        assert_eq!(k1.id, 1);
        assert_eq!(r.current().unwrap().id, 1, "fresh key is reused");
        drop(r);
        let r = open(&fs, 1, Duration::from_secs(3600)).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r.get(1).unwrap().key, k1.key);
        drop(r);
        let r = open(&fs, 1, Duration::ZERO).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r.current().unwrap().id, 3);
        assert_eq!(r.get(1).unwrap().key, k1.key);
        assert!(r.get(4).is_none());
        assert!(!fs.exists(&dir().join(REGISTRY_TMP_NAME)));
    }

    #[test]
    fn wrong_key_and_damage_are_told_apart() {
        let fs: Arc<dyn Fs> = Arc::new(MemFs::new());
        fs.create_dir_all(dir()).unwrap();
        drop(open(&fs, 1, Duration::from_secs(3600)).unwrap());
        let err = open(&fs, 2, Duration::from_secs(3600)).unwrap_err();
        assert!(matches!(&err, Error::Encryption(m) if m.contains("wrong encryption key")));
        let path = dir().join(REGISTRY_NAME);
        let good = (*fs.read_all(&path).unwrap()).as_ref().to_vec();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            let f = fs.create(&path).unwrap();
            f.append(&bad).unwrap();
            assert!(open(&fs, 1, Duration::from_secs(3600))
                .unwrap_err()
                .is_corruption());
        }
    }

    #[test]
    fn a_rotation_is_durable_before_use() {
        let fs = FaultFs::new();
        let raw: Arc<dyn Fs> = Arc::new(fs.clone());
        raw.create_dir_all(dir()).unwrap();
        let r = open(&raw, 1, Duration::ZERO).unwrap();
        let k = r.current().unwrap();
        let crashed: Arc<dyn Fs> = Arc::new(fs.crash());
        let r2 = KeyRegistry::open(
            crashed,
            dir(),
            &EncryptionKey([1; 32]),
            Duration::from_secs(3600),
            true,
        )
        .unwrap();
        assert_eq!(r2.get(k.id).unwrap().key, k.key);
    }
}
