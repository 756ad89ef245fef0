//! The bucket handle.

use super::path::{entry_key, root_prefix, sequence_key, TAG_BUCKET, TAG_KEY};
use super::{BucketStats, Cursor};
use crate::iter::IterOptions;
use crate::txn::Txn;
use crate::{Error, Result};

/// A bucket, in the manner of bbolt: a named namespace of keys that may
/// hold nested buckets. Start from [`Bucket::root`], which holds only
/// buckets:
///
/// ```no_run
/// # fn main() -> sett_engine::Result<()> {
/// # let db = sett_engine::Db::open(sett_engine::Options::in_memory())?;
/// use sett_engine::Bucket;
/// db.update(|txn| {
///     let users = Bucket::root().create_bucket_if_not_exists(txn, b"users")?;
///     let id = users.next_sequence(txn)?;
///     users.put(txn, id.to_be_bytes(), b"alice".to_vec())
/// })?;
/// # Ok(()) }
/// ```
///
/// A handle is a plain value naming a bucket; every call takes the
/// transaction to work in, so a handle may be reused across transactions.
/// Writes check that the bucket still exists (one point read, which also
/// makes them conflict with a concurrent `delete_bucket`); reads do not.
/// A bucket may not hold a key and a sub-bucket of the same name
/// ([`Error::IncompatibleValue`]). Keys and names must not be empty.
///
/// Cost: a write is two point reads plus the write; `delete_bucket`
/// deletes every key of the subtree in the one transaction, so it is
/// bounded by the transaction size limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// The bucket's key prefix (its marker key, except for the root).
    prefix: Vec<u8>,
    name: Vec<u8>,
    /// 0 for the root.
    depth: usize,
}

fn shown(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

impl Bucket {
    /// The root bucket: it always exists and holds only buckets.
    pub fn root() -> Bucket {
        Bucket {
            prefix: root_prefix(),
            name: Vec::new(),
            depth: 0,
        }
    }

    /// The bucket's name (empty for the root).
    pub fn name(&self) -> &[u8] {
        &self.name
    }

    /// True for [`Bucket::root`].
    pub fn is_root(&self) -> bool {
        self.depth == 0
    }

    /// Nesting depth: 0 for the root, 1 for a top-level bucket.
    pub fn depth(&self) -> usize {
        self.depth
    }

    fn child(&self, name: &[u8]) -> Bucket {
        Bucket {
            prefix: entry_key(&self.prefix, name, TAG_BUCKET),
            name: name.to_vec(),
            depth: self.depth + 1,
        }
    }

    fn check_name(name: &[u8]) -> Result<()> {
        if name.is_empty() {
            return Err(Error::InvalidArgument(
                "bucket names must not be empty".into(),
            ));
        }
        Ok(())
    }

    /// Fails unless this bucket exists in `txn`'s view.
    fn check_exists(&self, txn: &Txn) -> Result<()> {
        if self.is_root() || txn.get(&self.prefix)?.is_some() {
            Ok(())
        } else {
            Err(Error::BucketNotFound(shown(&self.name)))
        }
    }

    fn has_key(&self, txn: &Txn, name: &[u8]) -> Result<bool> {
        Ok(txn.get(&entry_key(&self.prefix, name, TAG_KEY))?.is_some())
    }

    fn has_bucket(&self, txn: &Txn, name: &[u8]) -> Result<bool> {
        Ok(txn
            .get(&entry_key(&self.prefix, name, TAG_BUCKET))?
            .is_some())
    }

    /// Every key stored under `prefix` (in `txn`'s view).
    fn keys_under(txn: &Txn, prefix: &[u8]) -> Result<Vec<Vec<u8>>> {
        let mut it = txn.iter(IterOptions {
            prefix: prefix.to_vec(),
            keys_only: true,
            ..IterOptions::default()
        });
        let mut keys = Vec::new();
        it.rewind()?;
        while it.valid() {
            keys.push(it.item().key().to_vec());
            it.next()?;
        }
        Ok(keys)
    }

    /// Sub-bucket `name`, or `None` if there is none (also when `name`
    /// is a key).
    pub fn bucket(&self, txn: &Txn, name: &[u8]) -> Result<Option<Bucket>> {
        Self::check_name(name)?;
        Ok(self.has_bucket(txn, name)?.then(|| self.child(name)))
    }

    /// Creates sub-bucket `name`. [`Error::BucketExists`] if it exists,
    /// [`Error::IncompatibleValue`] if `name` is a key.
    pub fn create_bucket(&self, txn: &mut Txn, name: &[u8]) -> Result<Bucket> {
        Self::check_name(name)?;
        self.check_exists(txn)?;
        if self.has_bucket(txn, name)? {
            return Err(Error::BucketExists(shown(name)));
        }
        if self.has_key(txn, name)? {
            return Err(Error::IncompatibleValue(format!(
                "{} is a key, cannot create a bucket of that name",
                shown(name)
            )));
        }
        let child = self.child(name);
        // Nothing should be there; clear it anyway so that a stale handle's
        // writes can never resurface in a new bucket of the same name.
        for k in Self::keys_under(txn, &child.prefix)? {
            txn.delete(k)?;
        }
        txn.set(child.prefix.clone(), Vec::new())?;
        Ok(child)
    }

    /// Sub-bucket `name`, created if needed. [`Error::IncompatibleValue`]
    /// if `name` is a key.
    pub fn create_bucket_if_not_exists(&self, txn: &mut Txn, name: &[u8]) -> Result<Bucket> {
        match self.bucket(txn, name)? {
            Some(b) => Ok(b),
            None => self.create_bucket(txn, name),
        }
    }

    /// Deletes sub-bucket `name` with everything in it, nested buckets
    /// included. [`Error::BucketNotFound`] if absent,
    /// [`Error::IncompatibleValue`] if `name` is a key.
    pub fn delete_bucket(&self, txn: &mut Txn, name: &[u8]) -> Result<()> {
        Self::check_name(name)?;
        self.check_exists(txn)?;
        if !self.has_bucket(txn, name)? {
            if self.has_key(txn, name)? {
                return Err(Error::IncompatibleValue(format!(
                    "{} is a key, not a bucket",
                    shown(name)
                )));
            }
            return Err(Error::BucketNotFound(shown(name)));
        }
        let child = self.child(name);
        for k in Self::keys_under(txn, &child.prefix)? {
            txn.delete(k)?;
        }
        debug_assert!(!self.has_bucket(txn, name)?);
        Ok(())
    }

    /// The value of `key`; `None` if absent or if `key` names a bucket.
    pub fn get(&self, txn: &Txn, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if key.is_empty() {
            return Err(Error::EmptyKey);
        }
        match txn.get(&entry_key(&self.prefix, key, TAG_KEY))? {
            Some(item) => Ok(Some(item.value()?)),
            None => Ok(None),
        }
    }

    /// Writes `value` under `key`. [`Error::IncompatibleValue`] if `key`
    /// names a sub-bucket; [`Error::InvalidArgument`] on the root.
    pub fn put(
        &self,
        txn: &mut Txn,
        key: impl AsRef<[u8]>,
        value: impl Into<Vec<u8>>,
    ) -> Result<()> {
        let key = key.as_ref();
        if key.is_empty() {
            return Err(Error::EmptyKey);
        }
        if self.is_root() {
            return Err(Error::InvalidArgument(
                "the root bucket holds only buckets".into(),
            ));
        }
        self.check_exists(txn)?;
        if self.has_bucket(txn, key)? {
            return Err(Error::IncompatibleValue(format!(
                "{} is a bucket, cannot put a value under that name",
                shown(key)
            )));
        }
        txn.set(entry_key(&self.prefix, key, TAG_KEY), value)
    }

    /// Deletes `key` (no error if absent). [`Error::IncompatibleValue`] if
    /// `key` names a sub-bucket.
    pub fn delete(&self, txn: &mut Txn, key: &[u8]) -> Result<()> {
        if key.is_empty() {
            return Err(Error::EmptyKey);
        }
        self.check_exists(txn)?;
        if self.has_bucket(txn, key)? {
            return Err(Error::IncompatibleValue(format!(
                "{} is a bucket; use delete_bucket",
                shown(key)
            )));
        }
        txn.delete(entry_key(&self.prefix, key, TAG_KEY))
    }

    /// A cursor over this bucket's entries (keys and sub-buckets, by name).
    pub fn cursor<'a>(&self, txn: &'a Txn) -> Cursor<'a> {
        Cursor::new(txn, self.prefix.clone())
    }

    /// Calls `f(name, value)` for every entry in name order; `value` is
    /// `None` for a sub-bucket. Stops at the first error.
    pub fn for_each(
        &self,
        txn: &Txn,
        mut f: impl FnMut(&[u8], Option<&[u8]>) -> Result<()>,
    ) -> Result<()> {
        let mut c = self.cursor(txn);
        let mut entry = c.first()?;
        while let Some((k, v)) = entry {
            f(&k, v.as_deref())?;
            entry = c.next()?;
        }
        Ok(())
    }

    /// The bucket's sequence (0 until first set).
    pub fn sequence(&self, txn: &Txn) -> Result<u64> {
        match txn.get(&sequence_key(&self.prefix))? {
            None => Ok(0),
            Some(item) => {
                let v = item.value()?;
                let bytes: [u8; 8] = v.as_slice().try_into().map_err(|_| {
                    Error::InvalidArgument(format!(
                        "bucket sequence of {} bytes, expected 8",
                        v.len()
                    ))
                })?;
                Ok(u64::from_be_bytes(bytes))
            }
        }
    }

    /// Sets the bucket's sequence.
    pub fn set_sequence(&self, txn: &mut Txn, value: u64) -> Result<()> {
        self.check_exists(txn)?;
        txn.set(sequence_key(&self.prefix), value.to_be_bytes().to_vec())
    }

    /// Increments the bucket's sequence and returns the new value (1 the
    /// first time). Persisted with the transaction; concurrent callers
    /// conflict, so two committed transactions never get the same number.
    pub fn next_sequence(&self, txn: &mut Txn) -> Result<u64> {
        let next = self
            .sequence(txn)?
            .checked_add(1)
            .ok_or_else(|| Error::InvalidArgument("bucket sequence overflow".into()))?;
        self.set_sequence(txn, next)?;
        Ok(next)
    }

    /// Counts and sizes of this bucket and everything nested in it. Walks
    /// the whole subtree and reads every value.
    pub fn stats(&self, txn: &Txn) -> Result<BucketStats> {
        BucketStats::collect(txn, &self.prefix)
    }
}
