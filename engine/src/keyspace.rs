//! Named keyspaces, and the layout of the reserved key namespace that the
//! engine's extras (keyspaces, buckets, merge operators) keep their data in.
//!
//! # Reserved namespace
//! Every key those features write starts with [`RESERVED_PREFIX`]
//! (`0xff "!sett!"`), followed by a tag:
//!
//! | key | holds |
//! |---|---|
//! | `R "kn/" name` | keyspace registry: name → `be32(id)` |
//! | `R "kx"` | next keyspace id, `be32`; never reset, so ids are never reused |
//! | `R "kd/" be32(id)` | a keyspace whose drop is under way (finished by the next drop) |
//! | `R "ks/" be32(id) key` | `key` of keyspace `id` |
//! | `R "bk/" …` | buckets (see `bucket/path.rs`) |
//! | `R "mo/o/" be32(len) key be64(n)` | merge-operator operand `n` of `key` |
//! | `R "mo/s/" key` | the sequence numbering those operands |
//!
//! The plain [`Txn`] API (the "root" keyspace) does not stop a caller from
//! writing keys under the reserved prefix — doing so corrupts the features
//! above. Keys starting with byte `0xff "!sett!"` are reserved; a full scan
//! of the root that should not see them can use
//! `upper_bound = Some(RESERVED_PREFIX.to_vec())`.
//!
//! # Keyspaces
//! A [`Keyspace`] is a name bound to a 32-bit id; its keys live under
//! `R "ks/" be32(id)`. All reads and writes go through a caller's [`Txn`],
//! so one transaction reads and commits atomically across any number of
//! keyspaces (and the root), with the usual conflict detection.
//!
//! Thread-safety: a `Keyspace` is a plain value (`Send + Sync`, cheap to
//! clone). Handles do not check that their keyspace still exists: after
//! [`Db::drop_keyspace`] or [`Db::drop_all`], writes through an old handle
//! land under the dropped id, are invisible to new handles of the name and
//! only waste space.

use crate::db::{Db, Item};
use crate::iter::{Iter, IterOptions};
use crate::txn::{Entry, Txn};
use crate::{Error, Result};

/// First bytes of every key the engine's extras (keyspaces, buckets, merge
/// operators) reserve for themselves. Root keys must not start with it.
pub const RESERVED_PREFIX: &[u8] = b"\xff!sett!";

pub(crate) const TAG_KS_NAME: &[u8] = b"kn/";
pub(crate) const TAG_KS_NEXT: &[u8] = b"kx";
pub(crate) const TAG_KS_DROPPING: &[u8] = b"kd/";
pub(crate) const TAG_KS_DATA: &[u8] = b"ks/";
pub(crate) const TAG_BUCKETS: &[u8] = b"bk/";
pub(crate) const TAG_MERGE_OPERAND: &[u8] = b"mo/o/";
pub(crate) const TAG_MERGE_SEQ: &[u8] = b"mo/s/";

/// Longest keyspace name, in bytes.
pub const MAX_KEYSPACE_NAME_BYTES: usize = 1024;

/// `RESERVED_PREFIX ‖ tag ‖ rest`.
pub(crate) fn sys_key(tag: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(RESERVED_PREFIX.len() + tag.len() + rest.len());
    k.extend_from_slice(RESERVED_PREFIX);
    k.extend_from_slice(tag);
    k.extend_from_slice(rest);
    k
}

fn data_prefix(id: u32) -> Vec<u8> {
    sys_key(TAG_KS_DATA, &id.to_be_bytes())
}

fn decode_id(db: &Db, raw: &[u8]) -> Result<u32> {
    let bytes: [u8; 4] = raw.try_into().map_err(|_| {
        Error::corruption(
            &db.inner().dir,
            0,
            format!("keyspace registry entry of {} bytes, expected 4", raw.len()),
        )
    })?;
    Ok(u32::from_be_bytes(bytes))
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_KEYSPACE_NAME_BYTES {
        return Err(Error::InvalidArgument(format!(
            "keyspace names must have 1..={MAX_KEYSPACE_NAME_BYTES} bytes"
        )));
    }
    Ok(())
}

/// A named, isolated key space inside one database. Get one with
/// [`Db::keyspace`]; read and write through a transaction:
///
/// ```no_run
/// # fn main() -> sett_engine::Result<()> {
/// # let db = sett_engine::Db::open(sett_engine::Options::in_memory())?;
/// let users = db.keyspace("users")?;
/// let orders = db.keyspace("orders")?;
/// db.update(|txn| {
///     users.set(txn, b"u1".to_vec(), b"alice".to_vec())?;
///     orders.set(txn, b"o1".to_vec(), b"u1".to_vec()) // both or neither
/// })?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyspace {
    name: String,
    id: u32,
    prefix: Vec<u8>,
}

impl Keyspace {
    fn new(name: &str, id: u32) -> Keyspace {
        Keyspace {
            name: name.to_string(),
            id,
            prefix: data_prefix(id),
        }
    }

    /// The keyspace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The keyspace's id (unique for the life of the database).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The prefix every key of this keyspace carries in the root key space
    /// (what [`Db::subscribe`] and [`Db::drop_prefix`] see).
    pub fn raw_prefix(&self) -> &[u8] {
        &self.prefix
    }

    fn raw_key(&self, key: &[u8]) -> Result<Vec<u8>> {
        if key.is_empty() {
            return Err(Error::EmptyKey);
        }
        let mut k = Vec::with_capacity(self.prefix.len() + key.len());
        k.extend_from_slice(&self.prefix);
        k.extend_from_slice(key);
        Ok(k)
    }

    fn strip(&self, item: &Item) -> Item {
        debug_assert!(item.key.starts_with(&self.prefix));
        Item {
            key: item.key[self.prefix.len()..].to_vec(),
            version: item.version,
            vs: item.vs.clone(),
            db: item.db.clone(),
        }
    }

    /// Reads `key` in `txn`'s snapshot (seeing its pending writes).
    pub fn get(&self, txn: &Txn, key: &[u8]) -> Result<Option<Item>> {
        let raw = self.raw_key(key)?;
        Ok(txn.get(&raw)?.map(|it| self.strip(&it)))
    }

    /// Writes `value` under `key` in `txn`. The key counts against
    /// `max_key_size` with the keyspace prefix (14 bytes) added.
    pub fn set(
        &self,
        txn: &mut Txn,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<()> {
        self.set_entry(txn, Entry::new(key, value))
    }

    /// Writes a full entry (TTL, user meta) in `txn`.
    pub fn set_entry(&self, txn: &mut Txn, mut entry: Entry) -> Result<()> {
        entry.key = self.raw_key(&entry.key)?;
        txn.set_entry(entry)
    }

    /// Deletes `key` in `txn`.
    pub fn delete(&self, txn: &mut Txn, key: &[u8]) -> Result<()> {
        txn.delete(self.raw_key(key)?)
    }

    /// Iterates over this keyspace in `txn`'s snapshot. Prefix, bounds and
    /// seek keys are keyspace keys; items carry keyspace keys.
    pub fn iter<'a>(&self, txn: &'a Txn, opts: IterOptions) -> KeyspaceIter<'a> {
        let with_prefix = |k: Vec<u8>| {
            let mut raw = self.prefix.clone();
            raw.extend_from_slice(&k);
            raw
        };
        let inner = IterOptions {
            prefix: with_prefix(opts.prefix),
            lower_bound: opts.lower_bound.map(with_prefix),
            upper_bound: opts.upper_bound.map(with_prefix),
            ..opts
        };
        KeyspaceIter {
            inner: txn.iter(inner),
            ks: self.clone(),
            item: None,
        }
    }
}

/// An [`Iter`] confined to one keyspace; same protocol (`rewind`/`seek`,
/// then `item`/`next` while `valid`).
#[derive(Debug)]
pub struct KeyspaceIter<'a> {
    inner: Iter<'a>,
    ks: Keyspace,
    item: Option<Item>,
}

impl KeyspaceIter<'_> {
    fn settle(&mut self) {
        self.item = self.inner.valid().then(|| self.ks.strip(self.inner.item()));
    }

    /// Positions at the first key (last, in reverse).
    pub fn rewind(&mut self) -> Result<()> {
        self.inner.rewind()?;
        self.settle();
        Ok(())
    }

    /// Forward: the first key `>= key`; reverse: the last key `<= key`.
    pub fn seek(&mut self, key: &[u8]) -> Result<()> {
        let mut raw = self.ks.prefix.clone();
        raw.extend_from_slice(key);
        self.inner.seek(&raw)?;
        self.settle();
        Ok(())
    }

    /// Moves to the next key (or version).
    #[allow(clippy::should_implement_trait)] // a fallible cursor step
    pub fn next(&mut self) -> Result<()> {
        self.inner.next()?;
        self.settle();
        Ok(())
    }

    /// True while positioned on an item.
    pub fn valid(&self) -> bool {
        self.item.is_some()
    }

    /// The current item, with its keyspace key. Panics if not valid.
    pub fn item(&self) -> &Item {
        self.item
            .as_ref()
            .expect("KeyspaceIter::item called on an invalid iterator")
    }
}

impl Db {
    /// The keyspace called `name`, created (with a fresh id) on first use.
    /// Keep the handle: each call reads the registry.
    pub fn keyspace(&self, name: &str) -> Result<Keyspace> {
        check_name(name)?;
        let name_key = sys_key(TAG_KS_NAME, name.as_bytes());
        if let Some(raw) = self.get(&name_key)? {
            return Ok(Keyspace::new(name, decode_id(self, &raw)?));
        }
        let next_key = sys_key(TAG_KS_NEXT, b"");
        let id = self.update_retrying(|txn| {
            if let Some(item) = txn.get(&name_key)? {
                return decode_id(self, &item.value()?);
            }
            let id = match txn.get(&next_key)? {
                Some(item) => decode_id(self, &item.value()?)?,
                None => 1,
            };
            let next = id.checked_add(1).ok_or_else(|| {
                Error::InvalidArgument("keyspace ids exhausted (2^32 created)".into())
            })?;
            txn.set(name_key.clone(), id.to_be_bytes().to_vec())?;
            txn.set(next_key.clone(), next.to_be_bytes().to_vec())?;
            Ok(id)
        })?;
        Ok(Keyspace::new(name, id))
    }

    /// Names of all keyspaces, sorted.
    pub fn list_keyspaces(&self) -> Result<Vec<String>> {
        let txn = self.begin_read();
        let prefix = sys_key(TAG_KS_NAME, b"");
        let mut it = txn.iter(IterOptions {
            prefix: prefix.clone(),
            keys_only: true,
            ..IterOptions::default()
        });
        let mut names = Vec::new();
        it.rewind()?;
        while it.valid() {
            let name = &it.item().key()[prefix.len()..];
            names.push(String::from_utf8_lossy(name).into_owned());
            it.next()?;
        }
        Ok(names)
    }

    /// Removes keyspace `name` and deletes all its keys; false if it did
    /// not exist. The name disappears atomically; the keys are then
    /// deleted with [`Db::drop_prefix`] (a crash in between leaves them
    /// to the next `drop_keyspace` call, which finishes earlier drops).
    /// Writers must stop using the keyspace first: writes committed through
    /// old handles during or after the drop stay behind as garbage.
    pub fn drop_keyspace(&self, name: &str) -> Result<bool> {
        check_name(name)?;
        let name_key = sys_key(TAG_KS_NAME, name.as_bytes());
        let found = self.update_retrying(|txn| {
            let Some(item) = txn.get(&name_key)? else {
                return Ok(false);
            };
            let id = decode_id(self, &item.value()?)?;
            txn.delete(name_key.clone())?;
            txn.set(sys_key(TAG_KS_DROPPING, &id.to_be_bytes()), Vec::new())?;
            Ok(true)
        })?;
        self.finish_keyspace_drops()?;
        Ok(found)
    }

    /// Deletes the keys of every keyspace whose drop was started.
    fn finish_keyspace_drops(&self) -> Result<()> {
        let prefix = sys_key(TAG_KS_DROPPING, b"");
        let ids: Vec<u32> = {
            let txn = self.begin_read();
            let mut it = txn.iter(IterOptions {
                prefix: prefix.clone(),
                keys_only: true,
                ..IterOptions::default()
            });
            let mut ids = Vec::new();
            it.rewind()?;
            while it.valid() {
                ids.push(decode_id(self, &it.item().key()[prefix.len()..])?);
                it.next()?;
            }
            ids
        };
        for id in ids {
            self.drop_prefix(&[data_prefix(id)])?;
            let marker = sys_key(TAG_KS_DROPPING, &id.to_be_bytes());
            self.update_retrying(|txn| txn.delete(marker.clone()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_tags_are_prefix_free() {
        let tags = [
            TAG_KS_NAME,
            TAG_KS_NEXT,
            TAG_KS_DROPPING,
            TAG_KS_DATA,
            TAG_BUCKETS,
            TAG_MERGE_OPERAND,
            TAG_MERGE_SEQ,
        ];
        for (i, a) in tags.iter().enumerate() {
            for (j, b) in tags.iter().enumerate() {
                assert!(i == j || !b.starts_with(a), "{a:?} is a prefix of {b:?}");
            }
        }
    }
}
