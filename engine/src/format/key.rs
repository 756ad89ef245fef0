//! Internal keys: a user key followed by an 8-byte version suffix.
//!
//! The suffix is `u64::MAX - version` in big-endian, so that for one user key
//! newer versions sort first. Internal keys are ordered by [`compare_keys`]:
//! user key bytewise, then suffix bytewise. (Plain bytewise order on the
//! whole internal key would be wrong: `"a"+suffix` vs `"ab"+suffix`.)

use std::cmp::Ordering;

/// Length of the version suffix.
pub(crate) const VERSION_LEN: usize = 8;

/// Builds the internal key for `key` at `version`.
pub(crate) fn key_with_version(key: &[u8], version: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + VERSION_LEN);
    out.extend_from_slice(key);
    out.extend_from_slice(&(u64::MAX - version).to_be_bytes());
    out
}

/// The user-key part of an internal key.
///
/// Precondition: `ikey.len() >= VERSION_LEN` (checked by callers that parse
/// bytes from disk; a short key here is a bug).
pub(crate) fn user_key(ikey: &[u8]) -> &[u8] {
    debug_assert!(ikey.len() >= VERSION_LEN);
    &ikey[..ikey.len().saturating_sub(VERSION_LEN)]
}

/// The version stored in an internal key.
pub(crate) fn key_version(ikey: &[u8]) -> u64 {
    debug_assert!(ikey.len() >= VERSION_LEN);
    let n = ikey.len();
    if n < VERSION_LEN {
        return 0;
    }
    let mut b = [0u8; VERSION_LEN];
    b.copy_from_slice(&ikey[n - VERSION_LEN..]);
    u64::MAX - u64::from_be_bytes(b)
}

/// Orders internal keys: user key ascending, then version descending.
pub(crate) fn compare_keys(a: &[u8], b: &[u8]) -> Ordering {
    let (ua, ub) = (user_key(a), user_key(b));
    match ua.cmp(ub) {
        Ordering::Equal => a[ua.len()..].cmp(&b[ub.len()..]),
        o => o,
    }
}

/// An owned internal key ordered by [`compare_keys`]; the memtable's key
/// type. It carries the first 8 bytes of the user key (zero-padded,
/// big-endian) inline, so that most comparisons in a skiplist search settle
/// on that number without touching the heap bytes.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct InternalKey(pub(crate) Vec<u8>, u64);

impl InternalKey {
    /// Wraps an encoded internal key.
    pub(crate) fn new(ikey: Vec<u8>) -> InternalKey {
        let prefix = key_prefix(user_key(&ikey));
        InternalKey(ikey, prefix)
    }
}

/// The first 8 bytes of `key` as a big-endian number, zero-padded. Two keys
/// whose prefixes differ compare like their prefixes; equal prefixes decide
/// nothing (`"a"` and `"a\0"` share one).
fn key_prefix(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = key.len().min(8);
    b[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(b)
}

impl Ord for InternalKey {
    fn cmp(&self, other: &Self) -> Ordering {
        match self.1.cmp(&other.1) {
            Ordering::Equal => compare_keys(&self.0, &other.0),
            o => o,
        }
    }
}

impl PartialOrd for InternalKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Hash of a user key, used by bloom filters and conflict detection.
pub(crate) fn key_hash(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordering_user_key_then_newest_first() {
        let a1 = key_with_version(b"a", 1);
        let a2 = key_with_version(b"a", 2);
        let ab = key_with_version(b"ab", 1);
        assert_eq!(compare_keys(&a2, &a1), Ordering::Less);
        assert_eq!(compare_keys(&a1, &ab), Ordering::Less);
        assert_eq!(compare_keys(&a2, &ab), Ordering::Less);
        assert_eq!(key_version(&a2), 2);
        assert_eq!(user_key(&ab), b"ab");
    }

    #[test]
    fn inline_prefix_agrees_with_full_comparison() {
        let keys: [&[u8]; 9] = [
            b"",
            b"a",
            b"a\0",
            b"a\0\x01",
            b"ab",
            b"abcdefgh",
            b"abcdefgh\0",
            b"abcdefghi",
            b"\xff",
        ];
        for a in keys {
            for b in keys {
                for (va, vb) in [(1, 1), (1, 2), (2, 1)] {
                    let (ka, kb) = (key_with_version(a, va), key_with_version(b, vb));
                    let want = compare_keys(&ka, &kb);
                    assert_eq!(
                        InternalKey::new(ka).cmp(&InternalKey::new(kb)),
                        want,
                        "{a:?}@{va} vs {b:?}@{vb}"
                    );
                }
            }
        }
    }
}
