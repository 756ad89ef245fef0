//! Key permissions as intervals of the key space, with etcd's range
//! conventions: an empty `range_end` names the single key `key`, a
//! `range_end` of `"\0"` means every key from `key` on, anything else is
//! the half-open interval `[key, range_end)`.
//!
//! A request over a range is permitted when the union of the user's
//! granted intervals (of the needed kind) covers the whole requested
//! interval, as etcd's permission cache decides.

use serde::{Deserialize, Serialize};

/// What a permission allows (etcd's `authpb.Permission.Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PermKind {
    /// Range, watch, the compares of a txn.
    Read,
    /// Put, delete.
    Write,
    /// Both.
    ReadWrite,
}

impl PermKind {
    /// From the wire value (`READ = 0, WRITE = 1, READWRITE = 2`).
    pub fn from_wire(v: i32) -> Option<PermKind> {
        match v {
            0 => Some(PermKind::Read),
            1 => Some(PermKind::Write),
            2 => Some(PermKind::ReadWrite),
            _ => None,
        }
    }

    /// The wire value.
    pub fn to_wire(self) -> i32 {
        match self {
            PermKind::Read => 0,
            PermKind::Write => 1,
            PermKind::ReadWrite => 2,
        }
    }

    /// Whether a permission of this kind grants access `need`
    /// ([`PermKind::Read`] or [`PermKind::Write`]).
    pub fn grants(self, need: PermKind) -> bool {
        self == PermKind::ReadWrite || self == need
    }
}

/// One granted permission of a role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Perm {
    /// Read, write or both.
    pub kind: PermKind,
    /// First key.
    pub key: Vec<u8>,
    /// End as etcd spells it (empty: single key; `"\0"`: open-ended).
    pub range_end: Vec<u8>,
}

/// A half-open interval of keys; `end == None` means unbounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interval {
    /// Inclusive start.
    pub start: Vec<u8>,
    /// Exclusive end, `None` for no end.
    pub end: Option<Vec<u8>>,
}

impl Interval {
    /// The interval etcd means by `key` and `range_end`. A range whose
    /// end is at or before its start (which matches nothing) is taken as
    /// the single key `key`, the stricter reading.
    pub fn of(key: &[u8], range_end: &[u8]) -> Interval {
        let single = || {
            let mut end = key.to_vec();
            end.push(0);
            Interval {
                start: key.to_vec(),
                end: Some(end),
            }
        };
        match range_end {
            [] => single(),
            [0] => Interval {
                start: key.to_vec(),
                end: None,
            },
            end if end <= key => single(),
            end => Interval {
                start: key.to_vec(),
                end: Some(end.to_vec()),
            },
        }
    }

    /// Whether `self` ends at or after `point` (`point` inside or past it).
    fn reaches_past(&self, point: &[u8]) -> bool {
        match &self.end {
            None => true,
            Some(e) => e.as_slice() > point,
        }
    }
}

/// Whether the union of `granted` covers `want` entirely.
pub fn covers(granted: &[Interval], want: &Interval) -> bool {
    let mut sorted: Vec<&Interval> = granted.iter().collect();
    sorted.sort_by(|a, b| a.start.cmp(&b.start));
    // Sweep: `reached` is the first key not yet known to be covered.
    let mut reached = want.start.clone();
    for iv in sorted {
        if iv.start > reached {
            break;
        }
        if !iv.reaches_past(&reached) {
            continue;
        }
        match &iv.end {
            None => return true,
            Some(e) => reached = e.clone(),
        }
        if let Some(w) = &want.end {
            if reached >= *w {
                return true;
            }
        }
    }
    match &want.end {
        Some(w) => reached >= *w,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn iv(k: &[u8], e: &[u8]) -> Interval {
        Interval::of(k, e)
    }

    #[test]
    fn single_key_prefix_and_open_end() {
        let prefix = [iv(b"/a/", b"/a0")];
        assert!(covers(&prefix, &iv(b"/a/x", b"")));
        assert!(covers(&prefix, &iv(b"/a/", b"/a0")));
        assert!(covers(&prefix, &iv(b"/a/b", b"/a/c")));
        assert!(!covers(&prefix, &iv(b"/a", b"")));
        assert!(!covers(&prefix, &iv(b"/a/", b"\0")));
        assert!(!covers(&prefix, &iv(b"/a/", b"/b")));

        let one = [iv(b"/k", b"")];
        assert!(covers(&one, &iv(b"/k", b"")));
        assert!(!covers(&one, &iv(b"/k0", b"")));
        assert!(!covers(&one, &iv(b"/k", b"/l")));
        // [/k, /k\0) is exactly the key /k.
        assert!(covers(&one, &iv(b"/k", b"/k\0")));

        let open = [iv(b"/f", b"\0")];
        assert!(covers(&open, &iv(b"/zzz", b"")));
        assert!(covers(&open, &iv(b"/f", b"\0")));
        assert!(!covers(&open, &iv(b"/e", b"")));
        assert!(!covers(&[], &iv(b"x", b"")));
    }

    #[test]
    fn adjacent_and_overlapping_grants_join() {
        let g = [iv(b"c", b"e"), iv(b"a", b"c"), iv(b"d", b"g")];
        assert!(covers(&g, &iv(b"a", b"g")));
        assert!(!covers(&g, &iv(b"a", b"h")));
        let gap = [iv(b"a", b"c"), iv(b"d", b"g")];
        assert!(!covers(&gap, &iv(b"a", b"e")));
        assert!(covers(&gap, &iv(b"d", b"e")));
    }

    #[test]
    fn empty_or_reversed_request_is_its_first_key() {
        let g = [iv(b"m", b"")];
        assert!(covers(&g, &iv(b"m", b"a")));
        assert!(!covers(&g, &iv(b"n", b"a")));
    }

    // The model: a key is in an interval by direct comparison; a request
    // is covered iff every key it contains (over a small alphabet, short
    // keys) is in some grant.
    fn contains(i: &Interval, k: &[u8]) -> bool {
        k >= i.start.as_slice() && i.end.as_ref().is_none_or(|e| k < e.as_slice())
    }

    fn key() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(0u8..4, 1..4)
    }

    fn end() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(Vec::new()),
            Just(vec![0u8]),
            proptest::collection::vec(0u8..4, 1..4),
        ]
    }

    proptest! {
        #[test]
        fn covers_agrees_with_a_pointwise_model(
            grants in proptest::collection::vec((key(), end()), 0..5),
            want in (key(), end()),
        ) {
            let granted: Vec<Interval> = grants.iter().map(|(k, e)| iv(k, e)).collect();
            let w = iv(&want.0, &want.1);
            // Every key of length <= 4 over {0..4} that the request
            // contains must be granted.
            let mut keys: Vec<Vec<u8>> = Vec::new();
            fn all(prefix: &mut Vec<u8>, out: &mut Vec<Vec<u8>>) {
                if !prefix.is_empty() {
                    out.push(prefix.clone());
                }
                if prefix.len() == 4 {
                    return;
                }
                for b in 0u8..4 {
                    prefix.push(b);
                    all(prefix, out);
                    prefix.pop();
                }
            }
            all(&mut Vec::new(), &mut keys);
            let model = keys
                .iter()
                .filter(|k| contains(&w, k))
                .all(|k| granted.iter().any(|g| contains(g, k)));
            // The first key of a request left uncovered is its start or
            // the end of a grant, both among the sampled keys: the model
            // is exact.
            prop_assert_eq!(covers(&granted, &w), model);
        }
    }
}
