//! Deleting whole key ranges through the public write path.
//!
//! Cost: one keys-only scan of the range (the value log is not read) and
//! one tombstone per live key, committed in transaction-sized batches
//! without conflict checks. The space comes back only when compaction
//! pushes the tombstones down to the last level; call [`Db::compact`] to
//! force that. The deletion is not atomic: a crash may leave part of the
//! range, and keys written concurrently after the scan passed them survive.

use super::Db;
use crate::iter::IterOptions;
use crate::keyspace::{sys_key, TAG_KS_NEXT};
use crate::{Error, Result};

impl Db {
    /// Deletes every key starting with any of `prefixes`; returns how many
    /// keys it deleted. Empty prefixes are refused (see [`Db::drop_all`]).
    /// Not available in managed mode. See the module docs for cost.
    pub fn drop_prefix<P: AsRef<[u8]>>(&self, prefixes: &[P]) -> Result<u64> {
        let mut list: Vec<&[u8]> = prefixes.iter().map(AsRef::as_ref).collect();
        if list.iter().any(|p| p.is_empty()) {
            return Err(Error::InvalidArgument(
                "drop_prefix with an empty prefix; use drop_all".into(),
            ));
        }
        // A prefix covered by a shorter one is dropped with it.
        list.sort_unstable();
        list.dedup_by(|later, earlier| later.starts_with(earlier));
        let mut deleted = 0;
        for p in list {
            deleted += self.delete_where(p, |_| false)?;
        }
        Ok(deleted)
    }

    /// Deletes every key: the root, every keyspace (the registry too),
    /// buckets, sequences and merge operands. Only the keyspace id counter
    /// stays, so that ids are never reused. Handles obtained before
    /// ([`crate::Keyspace`], [`crate::Sequence`], …) must not be used
    /// afterwards. Returns how many keys it deleted. Not available in
    /// managed mode. See the module docs for cost.
    pub fn drop_all(&self) -> Result<u64> {
        let keep = sys_key(TAG_KS_NEXT, b"");
        self.delete_where(b"", |k| k == keep.as_slice())
    }

    /// Writes a tombstone for every live key with `prefix` unless `keep`.
    fn delete_where(&self, prefix: &[u8], keep: impl Fn(&[u8]) -> bool) -> Result<u64> {
        let txn = self.begin_read();
        let mut it = txn.iter(IterOptions {
            prefix: prefix.to_vec(),
            keys_only: true,
            ..IterOptions::default()
        });
        let mut batch = self.write_batch();
        let mut deleted = 0u64;
        it.rewind()?;
        while it.valid() {
            let k = it.item().key();
            debug_assert!(k.starts_with(prefix));
            if !keep(k) {
                batch.delete(k.to_vec())?;
                deleted += 1;
            }
            it.next()?;
        }
        batch.flush()?;
        Ok(deleted)
    }
}
