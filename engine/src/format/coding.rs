//! Integer coding and checksums. Every on-disk integer is little-endian
//! (fixed width) or LEB128 varint; internal-key version suffixes are the one
//! big-endian exception so that they sort bytewise.

/// CRC-32 (IEEE) of `data`.
pub(crate) fn checksum(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

/// Appends `v` as an unsigned LEB128 varint.
pub(crate) fn put_uvarint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Decodes an unsigned LEB128 varint from the front of `data`, returning the
/// value and the number of bytes used, or `None` if it is truncated or
/// longer than 10 bytes.
pub(crate) fn get_uvarint(data: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    for (i, &b) in data.iter().enumerate().take(10) {
        let part = u64::from(b & 0x7f);
        if i == 9 && b > 1 {
            return None;
        }
        v |= part << (7 * i);
        if b < 0x80 {
            return Some((v, i + 1));
        }
    }
    None
}

/// Reads a little-endian u32 at `off`, or `None` past the end.
pub(crate) fn get_u32(data: &[u8], off: usize) -> Option<u32> {
    let b = data.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

/// Reads a little-endian u64 at `off`, or `None` past the end.
pub(crate) fn get_u64(data: &[u8], off: usize) -> Option<u64> {
    let b = data.get(off..off.checked_add(8)?)?;
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            put_uvarint(&mut b, v);
            assert_eq!(get_uvarint(&b), Some((v, b.len())));
            assert_eq!(get_uvarint(&b[..b.len() - 1]), None);
        }
    }

    #[test]
    fn varint_rejects_overlong() {
        assert_eq!(get_uvarint(&[0xff; 11]), None);
        assert_eq!(
            get_uvarint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
            None
        );
    }
}
