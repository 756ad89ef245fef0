//! The value stored beside a key in the LSM (memtable and tables).
//!
//! Layout: `meta u8 | user_meta u8 | expires_at uvarint | payload`. The
//! payload is the user value itself, or, when `meta & META_VALUE_POINTER`, a
//! 16-byte [`ValuePointer`] into the value log.

use super::{get_u32, get_u64, get_uvarint, put_uvarint};

/// The entry is a deletion marker (tombstone).
pub(crate) const META_DELETE: u8 = 1;
/// The payload is a [`ValuePointer`], not the value.
pub(crate) const META_VALUE_POINTER: u8 = 2;

/// A decoded LSM value.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct ValueStruct {
    /// `META_*` flags.
    pub(crate) meta: u8,
    /// One byte the user may attach to an entry.
    pub(crate) user_meta: u8,
    /// Unix time in seconds after which the entry is gone; 0 = never.
    pub(crate) expires_at: u64,
    /// Inline value or encoded pointer.
    pub(crate) payload: Vec<u8>,
}

impl ValueStruct {
    /// Appends the encoding to `buf`.
    pub(crate) fn encode_into(&self, buf: &mut Vec<u8>) {
        buf.push(self.meta);
        buf.push(self.user_meta);
        put_uvarint(buf, self.expires_at);
        buf.extend_from_slice(&self.payload);
    }

    /// What the tree stores for a write that went to the value log at `vp`:
    /// a deletion marker, a pointer when the value has at least
    /// `threshold` bytes, or the value inline.
    pub(crate) fn for_log_entry(
        meta: u8,
        user_meta: u8,
        expires_at: u64,
        value: &[u8],
        threshold: usize,
        vp: ValuePointer,
    ) -> ValueStruct {
        let (meta, payload) = if meta & META_DELETE != 0 {
            (META_DELETE, Vec::new())
        } else if value.len() >= threshold {
            (META_VALUE_POINTER, vp.encode())
        } else {
            (0, value.to_vec())
        };
        ValueStruct {
            meta,
            user_meta,
            expires_at,
            payload,
        }
    }

    /// Encodes into a fresh vector.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.payload.len() + 12);
        self.encode_into(&mut b);
        b
    }

    /// Decodes; `None` if the bytes are malformed.
    pub(crate) fn decode(data: &[u8]) -> Option<ValueStruct> {
        let meta = *data.first()?;
        let user_meta = *data.get(1)?;
        let (expires_at, n) = get_uvarint(data.get(2..)?)?;
        let payload = data.get(2 + n..)?.to_vec();
        if meta & META_VALUE_POINTER != 0 && payload.len() != ValuePointer::LEN {
            return None;
        }
        Some(ValueStruct {
            meta,
            user_meta,
            expires_at,
            payload,
        })
    }

    /// True for a tombstone.
    pub(crate) fn is_delete(&self) -> bool {
        self.meta & META_DELETE != 0
    }

    /// True if the entry has expired at `now_secs`.
    pub(crate) fn is_expired(&self, now_secs: u64) -> bool {
        self.expires_at != 0 && self.expires_at <= now_secs
    }

    /// True if the entry is a tombstone or expired: reads must not see it.
    pub(crate) fn is_deleted_or_expired(&self, now_secs: u64) -> bool {
        self.is_delete() || self.is_expired(now_secs)
    }

    /// The value pointer, if the payload is one.
    pub(crate) fn pointer(&self) -> Option<ValuePointer> {
        if self.meta & META_VALUE_POINTER == 0 {
            return None;
        }
        ValuePointer::decode(&self.payload)
    }
}

/// Where a value lives in the value log: file id, offset and length of the
/// whole vlog entry (header, key, value and checksum).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ValuePointer {
    /// Value-log file number.
    pub(crate) fid: u32,
    /// Length of the entry in bytes.
    pub(crate) len: u32,
    /// Byte offset of the entry in the file.
    pub(crate) offset: u64,
}

impl ValuePointer {
    /// Encoded size.
    pub(crate) const LEN: usize = 16;

    /// Encodes as `fid u32 | len u32 | offset u64`, little-endian.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(Self::LEN);
        b.extend_from_slice(&self.fid.to_le_bytes());
        b.extend_from_slice(&self.len.to_le_bytes());
        b.extend_from_slice(&self.offset.to_le_bytes());
        b
    }

    /// Decodes; `None` if the length is wrong.
    pub(crate) fn decode(b: &[u8]) -> Option<ValuePointer> {
        if b.len() != Self::LEN {
            return None;
        }
        Some(ValuePointer {
            fid: get_u32(b, 0)?,
            len: get_u32(b, 4)?,
            offset: get_u64(b, 8)?,
        })
    }
}

/// Seconds since the Unix epoch, for TTL checks.
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_struct_round_trip() {
        let vp = ValuePointer {
            fid: 3,
            len: 99,
            offset: 1 << 40,
        };
        let v = ValueStruct {
            meta: META_VALUE_POINTER,
            user_meta: 7,
            expires_at: 12345,
            payload: vp.encode(),
        };
        let d = ValueStruct::decode(&v.encode()).unwrap();
        assert_eq!(d, v);
        assert_eq!(d.pointer(), Some(vp));
        assert!(ValueStruct::decode(&[META_VALUE_POINTER, 0, 0, 1, 2]).is_none());
        assert!(ValueStruct::decode(&[]).is_none());
    }
}
