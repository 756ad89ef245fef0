//! Bucket statistics (bbolt's `Bucket.Stats`, in the terms of this
//! encoding rather than of pages).

use super::path::{decode_component, TAG_BUCKET, TAG_KEY};
use crate::iter::IterOptions;
use crate::txn::Txn;
use crate::Result;

/// Counts and sizes of a bucket's subtree, from [`super::Bucket::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BucketStats {
    /// Key/value pairs in the bucket and in all buckets nested in it.
    pub key_count: u64,
    /// Key/value pairs directly in the bucket.
    pub own_key_count: u64,
    /// Buckets nested in the bucket at any depth (itself not counted).
    pub bucket_count: u64,
    /// Levels of buckets in the subtree: 1 for a bucket without
    /// sub-buckets, 2 if it has sub-buckets without sub-buckets, and so on.
    pub depth: u32,
    /// Bytes of all key names (as given by the caller) in the subtree.
    pub key_bytes: u64,
    /// Bytes of all values in the subtree.
    pub value_bytes: u64,
}

impl BucketStats {
    /// Walks every key under `prefix`.
    pub(crate) fn collect(txn: &Txn, prefix: &[u8]) -> Result<BucketStats> {
        let mut s = BucketStats {
            depth: 1,
            ..BucketStats::default()
        };
        let mut it = txn.iter(IterOptions {
            prefix: prefix.to_vec(),
            ..IterOptions::default()
        });
        it.rewind()?;
        while it.valid() {
            let raw = it.item().key();
            let mut rest = &raw[prefix.len()..];
            // Buckets passed on the way down from `prefix`.
            let mut level = 0u32;
            while let Some((name, tag, used)) = decode_component(rest) {
                rest = &rest[used..];
                match tag {
                    TAG_BUCKET if rest.is_empty() => {
                        s.bucket_count += 1;
                        s.depth = s.depth.max(level + 2);
                    }
                    TAG_BUCKET => {
                        level += 1;
                        continue;
                    }
                    TAG_KEY if rest.is_empty() => {
                        s.key_count += 1;
                        s.own_key_count += u64::from(level == 0);
                        s.key_bytes += name.len() as u64;
                        s.value_bytes += it.item().value()?.len() as u64;
                    }
                    // The sequence key, or bytes that do not parse.
                    _ => {}
                }
                break;
            }
            it.next()?;
        }
        Ok(s)
    }
}
