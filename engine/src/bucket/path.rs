//! How bucket paths become keys.
//!
//! A bucket is identified by its *prefix* `P`; the root bucket's prefix is
//! `RESERVED_PREFIX "bk/"`. Inside the bucket with prefix `P`, the entry
//! named `n` is stored at
//!
//! ```text
//! P ‖ esc(n) ‖ 0x00 ‖ tag        tag 0x01: a key/value pair
//!                                tag 0x02: a sub-bucket marker; the marker
//!                                          key is the sub-bucket's prefix
//! P ‖ 0x00 0x03                  the bucket's sequence (be64)
//! ```
//!
//! where `esc` doubles every `0x00` byte as `0x00 0xff`.
//!
//! Invariants the cursor, `delete_bucket` and `stats` rely on:
//! - `esc(n) ‖ 0x00 ‖ tag` is order-preserving in `n` and prefix-free, so
//!   entries sort by name and no name's encoding is a prefix of another's;
//! - everything a bucket holds, nested buckets included, has prefix `P`,
//!   and a sub-bucket's whole subtree is the keys with its marker as prefix;
//! - a key and a sub-bucket of the same name differ only in the tag, so a
//!   clash is found with one point read;
//! - a bucket's own entries lie in `[P ‖ 0x00 0x04, subtree_end(P))`, the
//!   sequence key and the marker `P` itself below that range.

use crate::keyspace::{sys_key, TAG_BUCKETS};

/// Tag of a key/value pair.
pub(crate) const TAG_KEY: u8 = 0x01;
/// Tag of a sub-bucket marker.
pub(crate) const TAG_BUCKET: u8 = 0x02;
/// Tag of a bucket's sequence key (with an empty name).
pub(crate) const TAG_SEQUENCE: u8 = 0x03;
const ESCAPE: u8 = 0xff;

/// Prefix of the root bucket.
pub(crate) fn root_prefix() -> Vec<u8> {
    sys_key(TAG_BUCKETS, b"")
}

/// `prefix ‖ esc(name)`: sorts at or before every entry named `>= name`
/// and after every smaller name's entry and subtree.
pub(crate) fn name_key(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    let zeros = name.iter().filter(|&&b| b == 0).count();
    let mut k = Vec::with_capacity(prefix.len() + name.len() + zeros + 2);
    k.extend_from_slice(prefix);
    for &b in name {
        k.push(b);
        if b == 0 {
            k.push(ESCAPE);
        }
    }
    k
}

/// `prefix ‖ esc(name) ‖ 0x00 ‖ tag`.
pub(crate) fn entry_key(prefix: &[u8], name: &[u8], tag: u8) -> Vec<u8> {
    let mut k = name_key(prefix, name);
    k.push(0);
    k.push(tag);
    k
}

/// Where bucket `prefix` keeps its sequence.
pub(crate) fn sequence_key(prefix: &[u8]) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&[0, TAG_SEQUENCE]);
    k
}

/// Lower bound of a bucket's own entries.
pub(crate) fn entries_lower(prefix: &[u8]) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&[0, TAG_SEQUENCE + 1]);
    k
}

/// The smallest key above every key with prefix `prefix`. Bucket prefixes
/// end in `/` (root) or in a tag byte, never in `0xff`.
pub(crate) fn subtree_end(prefix: &[u8]) -> Vec<u8> {
    let mut k = prefix.to_vec();
    let last = k.last_mut().expect("bucket prefixes are never empty");
    assert!(*last < 0xff, "bucket prefix ends in 0xff");
    *last += 1;
    k
}

/// Decodes the first `esc(name) ‖ 0x00 ‖ tag` of `rest`: the name, the tag
/// and the bytes consumed. `None` if malformed.
pub(crate) fn decode_component(rest: &[u8]) -> Option<(Vec<u8>, u8, usize)> {
    let mut name = Vec::new();
    let mut i = 0;
    while i < rest.len() {
        let b = rest[i];
        if b != 0 {
            name.push(b);
            i += 1;
            continue;
        }
        match *rest.get(i + 1)? {
            ESCAPE => {
                name.push(0);
                i += 2;
            }
            tag @ (TAG_KEY | TAG_BUCKET | TAG_SEQUENCE) => return Some((name, tag, i + 2)),
            _ => return None,
        }
    }
    None
}

/// What a key inside a bucket's range is, seen from that bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Child {
    /// A key/value pair of the bucket.
    Key(Vec<u8>),
    /// The marker of sub-bucket `name`.
    Bucket(Vec<u8>),
    /// Something inside sub-bucket `name`.
    Nested(Vec<u8>),
    /// The bucket's sequence, or bytes that do not parse.
    Other,
}

/// Classifies `raw`, a key with prefix `prefix`.
pub(crate) fn classify(prefix: &[u8], raw: &[u8]) -> Child {
    debug_assert!(raw.starts_with(prefix));
    let Some((name, tag, used)) = decode_component(&raw[prefix.len()..]) else {
        return Child::Other;
    };
    let whole = prefix.len() + used == raw.len();
    match tag {
        _ if name.is_empty() => Child::Other,
        TAG_KEY if whole => Child::Key(name),
        TAG_BUCKET if whole => Child::Bucket(name),
        TAG_BUCKET => Child::Nested(name),
        _ => Child::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn name() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![Just(0u8), Just(1), Just(2), Just(0xff), any::<u8>()],
            1..6,
        )
    }

    proptest! {
        #[test]
        fn encoding_preserves_order_and_round_trips(a in name(), b in name(), ta in 1u8..3, tb in 1u8..3) {
            let p = root_prefix();
            let ka = entry_key(&p, &a, ta);
            let kb = entry_key(&p, &b, tb);
            if a != b {
                prop_assert_eq!(a.cmp(&b), ka.cmp(&kb));
                prop_assert!(!kb.starts_with(&ka) && !ka.starts_with(&kb));
            }
            let (n, t, used) = decode_component(&ka[p.len()..]).unwrap();
            prop_assert_eq!((n, t, used), (a.clone(), ta, ka.len() - p.len()));
            // A sub-bucket's subtree sits between its marker and the next name.
            let sub = entry_key(&p, &a, TAG_BUCKET);
            let nested = entry_key(&sub, &b, tb);
            prop_assert_eq!(classify(&p, &nested), Child::Nested(a.clone()));
            prop_assert!(nested < subtree_end(&sub));
            if a < b {
                prop_assert!(subtree_end(&sub) <= entry_key(&p, &b, TAG_KEY));
            }
        }
    }

    #[test]
    fn sequence_key_is_outside_the_entries() {
        let p = root_prefix();
        assert!(sequence_key(&p) < entries_lower(&p));
        assert!(entries_lower(&p) <= entry_key(&p, b"\0", TAG_KEY));
        assert!(entries_lower(&p) <= entry_key(&p, b"\x01", TAG_KEY));
        assert_eq!(classify(&p, &sequence_key(&p)), Child::Other);
        assert_eq!(
            classify(&p, &entry_key(&p, b"k", TAG_KEY)),
            Child::Key(b"k".to_vec())
        );
    }
}
