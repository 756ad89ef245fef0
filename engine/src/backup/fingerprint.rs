//! The live-key fingerprint that proves a restore reproduces the source.
//!
//! Over one snapshot, it counts the keys whose newest version is a
//! permanent value (not a deletion marker, no expiry) and sums
//! `xxh3_64_with_seed(key, version)` over them (wrapping). The sum does
//! not depend on order, so the restore can update it key by key.
//!
//! Entries with an expiry are left out on purpose: whether an expired
//! entry is still stored depends on when compaction ran, and leaving them
//! out makes the fingerprint independent of time. What it catches is an
//! incremental backup that cannot reproduce the source because the source
//! compacted away a deletion or expiry newer than `since_ts`: the restored
//! copy would still show the older value, the source shows nothing.

use crate::format::ValueStruct;
use crate::iter::IterOptions;
use crate::txn::Txn;
use crate::Result;

/// Count and hash-sum of the keys whose newest version is a permanent value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    /// Keys counted.
    pub(crate) keys: u64,
    /// Wrapping sum of their `(key, version)` hashes.
    pub(crate) hash: u64,
}

/// True if a newest version `vs` counts: a value that never expires.
pub(crate) fn counts(vs: &ValueStruct) -> bool {
    !vs.is_delete() && vs.expires_at == 0
}

/// As [`counts`], for the parts of a stream entry.
pub(crate) fn entry_counts(deleted: bool, expires_at: u64) -> bool {
    !deleted && expires_at == 0
}

impl Fingerprint {
    fn hash_of(key: &[u8], version: u64) -> u64 {
        xxhash_rust::xxh3::xxh3_64_with_seed(key, version)
    }

    /// Counts `key` at `version`.
    pub(crate) fn add(&mut self, key: &[u8], version: u64) {
        self.keys += 1;
        self.hash = self.hash.wrapping_add(Self::hash_of(key, version));
    }

    /// Uncounts `key` at `version` (counted before).
    pub(crate) fn remove(&mut self, key: &[u8], version: u64) {
        self.keys = self.keys.wrapping_sub(1);
        self.hash = self.hash.wrapping_sub(Self::hash_of(key, version));
    }

    /// The fingerprint of `txn`'s snapshot: one walk over every key,
    /// never reading the value log.
    pub(crate) fn of_snapshot(txn: &Txn) -> Result<Fingerprint> {
        let mut fp = Fingerprint::default();
        let mut it = txn.iter(IterOptions {
            all_versions: true,
            keys_only: true,
            ..IterOptions::default()
        });
        it.rewind()?;
        let mut last: Vec<u8> = Vec::new();
        let mut first = true;
        while it.valid() {
            let item = it.item();
            if first || item.key() != last.as_slice() {
                first = false;
                last.clear();
                last.extend_from_slice(item.key());
                if counts(&item.vs) {
                    fp.add(item.key(), item.version());
                }
            }
            it.next()?;
        }
        Ok(fp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_independent_and_reversible() {
        let mut a = Fingerprint::default();
        a.add(b"x", 1);
        a.add(b"y", 2);
        let mut b = Fingerprint::default();
        b.add(b"y", 2);
        b.add(b"z", 9);
        b.add(b"x", 1);
        b.remove(b"z", 9);
        assert_eq!(a, b);
        let mut c = a;
        c.remove(b"x", 1);
        c.add(b"x", 2);
        assert_ne!(a, c);
    }
}
