//! The engine key layout of the MVCC store and the codecs of its values.
//! Every integer is big-endian (sorts like the number). See the module
//! docs of [`crate::mvcc`] for the table.

use super::error::{MvccError, Result};
use bytes::Bytes;
use sett_proto::mvccpb::KeyValue;

/// Data area: `'k' ‖ user key`.
pub(crate) const DATA: u8 = b'k';
/// Event log: `'e' ‖ be64(revision) ‖ be32(index)`.
pub(crate) const EVENTS: u8 = b'e';
/// Meta area: `'m' ‖ name`.
pub(crate) const META: u8 = b'm';
/// Lease records: `'l' ‖ be64(lease id)`.
pub(crate) const LEASES: u8 = b'l';
/// Lease attachments: `'a' ‖ be64(lease id) ‖ user key`.
pub(crate) const ATTACH: u8 = b'a';

/// Meta key of the current revision (`be64`).
pub(crate) const META_REVISION: &[u8] = b"mrev";
/// Meta key of the compacted revision (`be64`).
pub(crate) const META_COMPACTED: &[u8] = b"mcompact";
/// Meta keys of the caller (the Raft state machine): `'m' 'r' ‖ name`.
pub(crate) const META_USER: &[u8] = b"mr";
const _: () =
    assert!(META_REVISION[0] == META && META_COMPACTED[0] == META && META_USER[0] == META);

/// Format tag of a data value.
const RECORD_V1: u8 = 1;
/// Bytes before the user value in a data value.
pub(crate) const RECORD_HEADER_BYTES: usize = 1 + 8 * 3;

pub(crate) fn data_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(DATA);
    k.extend_from_slice(key);
    k
}

pub(crate) fn event_key(rev: i64, index: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(13);
    k.push(EVENTS);
    k.extend_from_slice(&(rev as u64).to_be_bytes());
    k.extend_from_slice(&index.to_be_bytes());
    k
}

pub(crate) fn decode_event_key(k: &[u8]) -> Result<(i64, u32)> {
    if k.len() != 13 || k[0] != EVENTS {
        return Err(MvccError::Corrupt(format!("bad event key {k:?}")));
    }
    let rev = u64::from_be_bytes(k[1..9].try_into().expect("8 bytes")) as i64;
    let idx = u32::from_be_bytes(k[9..13].try_into().expect("4 bytes"));
    Ok((rev, idx))
}

pub(crate) fn meta_user_key(name: &[u8]) -> Vec<u8> {
    let mut k = META_USER.to_vec();
    k.extend_from_slice(name);
    k
}

pub(crate) fn lease_key(id: i64) -> Vec<u8> {
    let mut k = vec![LEASES];
    k.extend_from_slice(&(id as u64).to_be_bytes());
    k
}

pub(crate) fn attach_prefix(id: i64) -> Vec<u8> {
    let mut k = vec![ATTACH];
    k.extend_from_slice(&(id as u64).to_be_bytes());
    k
}

pub(crate) fn attach_key(id: i64, key: &[u8]) -> Vec<u8> {
    let mut k = attach_prefix(id);
    k.extend_from_slice(key);
    k
}

pub(crate) fn encode_i64(v: i64) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

pub(crate) fn decode_i64(b: &[u8]) -> Result<i64> {
    let arr: [u8; 8] = b
        .try_into()
        .map_err(|_| MvccError::Corrupt(format!("expected 8 bytes, got {}", b.len())))?;
    Ok(i64::from_be_bytes(arr))
}

/// What a data value holds besides `mod_revision` (the engine version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub create_revision: i64,
    pub version: i64,
    pub lease: i64,
    pub value: Bytes,
}

impl Record {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(RECORD_HEADER_BYTES + self.value.len());
        b.push(RECORD_V1);
        b.extend_from_slice(&self.create_revision.to_be_bytes());
        b.extend_from_slice(&self.version.to_be_bytes());
        b.extend_from_slice(&self.lease.to_be_bytes());
        b.extend_from_slice(&self.value);
        b
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Record> {
        if b.len() < RECORD_HEADER_BYTES || b[0] != RECORD_V1 {
            return Err(MvccError::Corrupt(format!(
                "data value of {} bytes with tag {:?}",
                b.len(),
                b.first()
            )));
        }
        let int = |at: usize| i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        let rec = Record {
            create_revision: int(1),
            version: int(9),
            lease: int(17),
            value: Bytes::copy_from_slice(&b[RECORD_HEADER_BYTES..]),
        };
        if rec.create_revision <= 0 || rec.version <= 0 {
            return Err(MvccError::Corrupt(format!(
                "data value with create_revision {} version {}",
                rec.create_revision, rec.version
            )));
        }
        Ok(rec)
    }

    pub(crate) fn to_kv(&self, key: &[u8], mod_revision: i64) -> KeyValue {
        KeyValue {
            key: Bytes::copy_from_slice(key),
            create_revision: self.create_revision,
            mod_revision,
            version: self.version,
            value: self.value.clone(),
            lease: self.lease,
        }
    }
}

/// Event value: `type (0 PUT, 1 DELETE) ‖ user key`.
pub(crate) fn encode_event(kind: i32, key: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(1 + key.len());
    b.push(kind as u8);
    b.extend_from_slice(key);
    b
}

pub(crate) fn decode_event(b: &[u8]) -> Result<(i32, &[u8])> {
    match b.split_first() {
        Some((&t, key)) if t <= 1 && !key.is_empty() => Ok((i32::from(t), key)),
        _ => Err(MvccError::Corrupt(format!("bad event value {b:?}"))),
    }
}

/// The key range of a request: etcd's `key` / `range_end` rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyRange {
    /// `range_end` empty: exactly `key`.
    Single(Vec<u8>),
    /// `[start, end)`, `end = None` when `range_end` is `"\0"` (no bound).
    Span(Vec<u8>, Option<Vec<u8>>),
}

impl KeyRange {
    pub(crate) fn new(key: &[u8], range_end: &[u8]) -> KeyRange {
        if range_end.is_empty() {
            KeyRange::Single(key.to_vec())
        } else if range_end == [0] {
            KeyRange::Span(key.to_vec(), None)
        } else {
            KeyRange::Span(key.to_vec(), Some(range_end.to_vec()))
        }
    }

    /// etcd's `checkIntervals` view of a delete range: `range_end` taken
    /// literally (so `"\0"` makes an empty interval, as in etcd's
    /// interval tree, where only the empty string is unbounded).
    pub(crate) fn literal(key: &[u8], range_end: &[u8]) -> KeyRange {
        if range_end.is_empty() {
            KeyRange::Single(key.to_vec())
        } else {
            KeyRange::Span(key.to_vec(), Some(range_end.to_vec()))
        }
    }

    /// The `key` / `range_end` pair that [`KeyRange::new`] maps to this
    /// range.
    pub(crate) fn as_request(&self) -> (Vec<u8>, Vec<u8>) {
        match self {
            KeyRange::Single(k) => (k.clone(), Vec::new()),
            KeyRange::Span(s, None) => (s.clone(), vec![0]),
            KeyRange::Span(s, Some(e)) => (s.clone(), e.clone()),
        }
    }

    pub(crate) fn contains(&self, k: &[u8]) -> bool {
        match self {
            KeyRange::Single(s) => s.as_slice() == k,
            KeyRange::Span(s, e) => k >= s.as_slice() && e.as_deref().is_none_or(|e| k < e),
        }
    }

    /// Engine bounds `[lower, upper)` over the data area.
    pub(crate) fn engine_bounds(&self) -> (Vec<u8>, Vec<u8>) {
        match self {
            KeyRange::Single(s) => {
                let lower = data_key(s);
                let mut upper = lower.clone();
                upper.push(0);
                (lower, upper)
            }
            KeyRange::Span(s, e) => (
                data_key(s),
                match e {
                    Some(e) => data_key(e),
                    None => vec![DATA + 1],
                },
            ),
        }
    }

    /// True when the range cannot hold any key.
    pub(crate) fn is_empty(&self) -> bool {
        matches!(self, KeyRange::Span(s, Some(e)) if e <= s)
    }

    /// True when the two ranges share a key (used by the txn duplicate
    /// check).
    pub(crate) fn intersects_point(&self, k: &[u8]) -> bool {
        self.contains(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_roundtrip_and_rejects_garbage() {
        let r = Record {
            create_revision: 2,
            version: 3,
            lease: 7,
            value: Bytes::from_static(b"v"),
        };
        let b = r.encode();
        assert_eq!(Record::decode(&b).unwrap(), r);
        assert!(Record::decode(&b[..10]).is_err());
        assert!(Record::decode(&[9; 30]).is_err());
    }

    #[test]
    fn event_keys_sort_by_revision() {
        assert!(event_key(2, 9) < event_key(3, 0));
        assert!(event_key(255, 0) < event_key(256, 0));
        assert_eq!(decode_event_key(&event_key(300, 4)).unwrap(), (300, 4));
    }

    #[test]
    fn key_ranges() {
        let all = KeyRange::new(b"\0", b"\0");
        assert!(all.contains(b"a") && all.contains(b"\xff\xff"));
        let one = KeyRange::new(b"a", b"");
        assert!(one.contains(b"a") && !one.contains(b"ab"));
        let span = KeyRange::new(b"a", b"c");
        assert!(span.contains(b"b") && !span.contains(b"c"));
        assert!(KeyRange::new(b"c", b"a").is_empty());
        let (lo, hi) = one.engine_bounds();
        assert!(lo < hi);
    }
}
