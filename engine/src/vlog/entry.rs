//! Encoding of one value-log entry.
//!
//! `meta u8 | user_meta u8 | key_len uvarint | value_len uvarint |
//! expires_at uvarint | version u64 LE | key | value | crc32 u32 LE`,
//! the checksum covering every byte before it. A value pointer addresses a
//! whole entry, so a single value read can verify its own checksum.

use crate::format::{checksum, get_u32, get_u64, get_uvarint, put_uvarint};

/// One write as the commit path hands it to the log.
#[derive(Debug, Clone)]
pub(crate) struct WriteEntry {
    /// User key.
    pub(crate) key: Vec<u8>,
    /// User value (empty for a delete).
    pub(crate) value: Vec<u8>,
    /// `META_*` flags (only `META_DELETE` is meaningful here).
    pub(crate) meta: u8,
    /// The user's byte.
    pub(crate) user_meta: u8,
    /// Expiry in Unix seconds, 0 = never.
    pub(crate) expires_at: u64,
    /// Commit version.
    pub(crate) version: u64,
}

/// An entry parsed back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodedEntry {
    pub(crate) key: Vec<u8>,
    pub(crate) value: Vec<u8>,
    pub(crate) meta: u8,
    pub(crate) user_meta: u8,
    pub(crate) expires_at: u64,
    pub(crate) version: u64,
}

/// Appends the encoding of `e` to `buf`; returns the encoded length.
pub(crate) fn encode_entry(buf: &mut Vec<u8>, e: &WriteEntry) -> usize {
    let start = buf.len();
    buf.push(e.meta);
    buf.push(e.user_meta);
    put_uvarint(buf, e.key.len() as u64);
    put_uvarint(buf, e.value.len() as u64);
    put_uvarint(buf, e.expires_at);
    buf.extend_from_slice(&e.version.to_le_bytes());
    buf.extend_from_slice(&e.key);
    buf.extend_from_slice(&e.value);
    let crc = checksum(&buf[start..]);
    buf.extend_from_slice(&crc.to_le_bytes());
    buf.len() - start
}

/// Where the parts of one entry lie within its bytes.
struct Layout {
    meta: u8,
    user_meta: u8,
    expires_at: u64,
    version: u64,
    key: std::ops::Range<usize>,
    value: std::ops::Range<usize>,
    /// Length of the whole entry, checksum included.
    len: usize,
}

/// Parses and checksums the entry at the front of `data`.
fn parse_entry(data: &[u8]) -> Result<Layout, &'static str> {
    const SHORT: &str = "entry truncated";
    let meta = *data.first().ok_or(SHORT)?;
    let user_meta = *data.get(1).ok_or(SHORT)?;
    let mut p = 2;
    let varint = |p: &mut usize| -> Result<u64, &'static str> {
        let (v, n) = get_uvarint(data.get(*p..).ok_or(SHORT)?).ok_or("bad varint")?;
        *p += n;
        Ok(v)
    };
    let klen = varint(&mut p)?;
    let vlen = varint(&mut p)?;
    let expires_at = varint(&mut p)?;
    let version = get_u64(data, p).ok_or(SHORT)?;
    p += 8;
    let klen = usize::try_from(klen).map_err(|_| "key length overflow")?;
    let vlen = usize::try_from(vlen).map_err(|_| "value length overflow")?;
    let body_end = p
        .checked_add(klen)
        .and_then(|x| x.checked_add(vlen))
        .ok_or("length overflow")?;
    let stored = get_u32(data, body_end).ok_or(SHORT)?;
    if checksum(&data[..body_end]) != stored {
        return Err("entry checksum mismatch");
    }
    Ok(Layout {
        meta,
        user_meta,
        expires_at,
        version,
        key: p..p + klen,
        value: p + klen..body_end,
        len: body_end + 4,
    })
}

/// Parses one entry at the front of `data`; returns it and its length, or a
/// reason the bytes are bad.
pub(crate) fn decode_entry(data: &[u8]) -> Result<(DecodedEntry, usize), &'static str> {
    let l = parse_entry(data)?;
    Ok((
        DecodedEntry {
            key: data[l.key].to_vec(),
            value: data[l.value].to_vec(),
            meta: l.meta,
            user_meta: l.user_meta,
            expires_at: l.expires_at,
            version: l.version,
        },
        l.len,
    ))
}

/// Checks that `buf` holds exactly one whole entry and turns it into that
/// entry's value in place (no second buffer: the read path of values).
pub(crate) fn into_value(mut buf: Vec<u8>) -> Result<Vec<u8>, &'static str> {
    let l = parse_entry(&buf)?;
    if l.len != buf.len() {
        return Err("value pointer length mismatch");
    }
    buf.truncate(l.value.end);
    buf.drain(..l.value.start);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_flip_detected() {
        let e = WriteEntry {
            key: b"key".to_vec(),
            value: vec![7; 40],
            meta: 0,
            user_meta: 9,
            expires_at: 77,
            version: 5,
        };
        let mut buf = Vec::new();
        let n = encode_entry(&mut buf, &e);
        let (d, m) = decode_entry(&buf).unwrap();
        assert_eq!(m, n);
        assert_eq!(
            (d.key, d.value, d.user_meta, d.expires_at, d.version),
            (e.key, e.value, 9, 77, 5)
        );
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            assert!(decode_entry(&bad).is_err(), "flip at {i} undetected");
        }
        for cut in 0..buf.len() {
            assert!(decode_entry(&buf[..cut]).is_err());
        }
        assert_eq!(into_value(buf.clone()).unwrap(), vec![7; 40]);
        let mut longer = buf.clone();
        longer.push(0);
        assert!(into_value(longer).is_err());
    }
}
