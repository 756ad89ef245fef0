//! Manifest edits and their byte encoding.
//!
//! A record payload is `count uvarint | edit × count`. Each edit is a tag
//! byte followed by its fields; integers are LEB128 varints, byte strings
//! are `len uvarint | bytes`:
//!
//! | tag | edit          | fields                                                              |
//! |-----|---------------|---------------------------------------------------------------------|
//! | 1   | `AddTable`    | id, level, size, max_version, smallest (len + bytes), largest (len + bytes) |
//! | 2   | `DeleteTable` | id                                                                  |
//! | 3   | `VlogHead`    | fid, offset                                                         |
//! | 4   | `NextFileId`  | value                                                               |
//! | 5   | `MaxVersion`  | value                                                               |
//!
//! Decoding never panics: any malformed payload yields a reason string that
//! the caller turns into [`crate::Error::Corruption`] with file and offset.

use crate::format::{get_uvarint, put_uvarint};

/// Tag of [`ManifestEdit::AddTable`].
const TAG_ADD_TABLE: u8 = 1;
/// Tag of [`ManifestEdit::DeleteTable`].
const TAG_DELETE_TABLE: u8 = 2;
/// Tag of [`ManifestEdit::VlogHead`].
const TAG_VLOG_HEAD: u8 = 3;
/// Tag of [`ManifestEdit::NextFileId`].
const TAG_NEXT_FILE_ID: u8 = 4;
/// Tag of [`ManifestEdit::MaxVersion`].
const TAG_MAX_VERSION: u8 = 5;

/// The smallest encoded edit: a tag and a one-byte varint. Bounds the
/// number of edits a payload of a given size can claim to hold.
const EDIT_BYTES_MIN: usize = 2;

/// Metadata of one table file in the LSM tree.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct TableMeta {
    /// File number (shared counter with value-log files).
    pub id: u64,
    /// LSM level the table belongs to.
    pub level: u32,
    /// File size in bytes.
    pub size: u64,
    /// Smallest internal key in the table.
    pub smallest: Vec<u8>,
    /// Largest internal key in the table.
    pub largest: Vec<u8>,
    /// Largest commit version of any entry in the table.
    pub max_version: u64,
}

/// One change to the durable LSM/value-log metadata. A manifest record holds
/// a batch of edits that is applied atomically.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ManifestEdit {
    /// A table joins the tree. Its id must not be live.
    AddTable(TableMeta),
    /// A table leaves the tree. Its id must be live.
    DeleteTable {
        /// Id of the table to drop.
        id: u64,
    },
    /// Value-log position up to which all writes are in tables; replay starts here.
    VlogHead {
        /// Value-log file number.
        fid: u32,
        /// Byte offset inside that file.
        offset: u64,
    },
    /// Lower bound for the next file number (tables and vlog files share one counter).
    NextFileId(u64),
    /// Largest commit version known to be durable in tables (for the timestamp oracle after restart).
    MaxVersion(u64),
}

/// Appends the payload encoding of `edits` (count, then each edit) to `buf`.
pub(crate) fn encode_edits(edits: &[ManifestEdit], buf: &mut Vec<u8>) {
    put_uvarint(buf, edits.len() as u64);
    for edit in edits {
        encode_edit(edit, buf);
    }
}

/// Appends one edit (tag and fields) to `buf`.
fn encode_edit(edit: &ManifestEdit, buf: &mut Vec<u8>) {
    match edit {
        ManifestEdit::AddTable(t) => {
            buf.push(TAG_ADD_TABLE);
            put_uvarint(buf, t.id);
            put_uvarint(buf, u64::from(t.level));
            put_uvarint(buf, t.size);
            put_uvarint(buf, t.max_version);
            put_bytes(buf, &t.smallest);
            put_bytes(buf, &t.largest);
        }
        ManifestEdit::DeleteTable { id } => {
            buf.push(TAG_DELETE_TABLE);
            put_uvarint(buf, *id);
        }
        ManifestEdit::VlogHead { fid, offset } => {
            buf.push(TAG_VLOG_HEAD);
            put_uvarint(buf, u64::from(*fid));
            put_uvarint(buf, *offset);
        }
        ManifestEdit::NextFileId(v) => {
            buf.push(TAG_NEXT_FILE_ID);
            put_uvarint(buf, *v);
        }
        ManifestEdit::MaxVersion(v) => {
            buf.push(TAG_MAX_VERSION);
            put_uvarint(buf, *v);
        }
    }
}

/// Appends `len uvarint | bytes`.
fn put_bytes(buf: &mut Vec<u8>, bytes: &[u8]) {
    put_uvarint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

/// Decodes a whole record payload. The payload must hold at least one edit
/// and nothing after the last one. `Err` carries the reason and the offset
/// inside the payload.
pub(crate) fn decode_edits(payload: &[u8]) -> Result<Vec<ManifestEdit>, String> {
    let mut r = Reader {
        data: payload,
        pos: 0,
    };
    let count = r.uvarint("edit count")?;
    if count == 0 {
        return Err("record holds no edits".to_string());
    }
    let remaining = payload.len() - r.pos;
    let count_max = (remaining / EDIT_BYTES_MIN) as u64;
    if count > count_max {
        return Err(format!(
            "edit count {count} cannot fit in the {remaining} payload bytes left"
        ));
    }
    // Bounded by `count_max` above, so this never allocates more than the
    // payload itself could describe.
    let mut edits = Vec::with_capacity(count as usize);
    for _ in 0..count {
        edits.push(r.edit()?);
    }
    if r.pos != payload.len() {
        return Err(format!(
            "{} trailing bytes after the last edit at payload offset {}",
            payload.len() - r.pos,
            r.pos
        ));
    }
    debug_assert_eq!(edits.len() as u64, count);
    Ok(edits)
}

/// A cursor over a payload that reports truncation instead of panicking.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    /// Reads one edit.
    fn edit(&mut self) -> Result<ManifestEdit, String> {
        let at = self.pos;
        let tag = *self
            .data
            .get(self.pos)
            .ok_or_else(|| format!("edit tag missing at payload offset {at}"))?;
        self.pos += 1;
        let edit = match tag {
            TAG_ADD_TABLE => {
                let id = self.uvarint("table id")?;
                let level = self.u32("table level")?;
                let size = self.uvarint("table size")?;
                let max_version = self.uvarint("table max_version")?;
                let smallest = self.bytes("table smallest key")?;
                let largest = self.bytes("table largest key")?;
                ManifestEdit::AddTable(TableMeta {
                    id,
                    level,
                    size,
                    smallest,
                    largest,
                    max_version,
                })
            }
            TAG_DELETE_TABLE => ManifestEdit::DeleteTable {
                id: self.uvarint("table id")?,
            },
            TAG_VLOG_HEAD => ManifestEdit::VlogHead {
                fid: self.u32("vlog fid")?,
                offset: self.uvarint("vlog offset")?,
            },
            TAG_NEXT_FILE_ID => ManifestEdit::NextFileId(self.uvarint("next file id")?),
            TAG_MAX_VERSION => ManifestEdit::MaxVersion(self.uvarint("max version")?),
            other => return Err(format!("unknown edit tag {other} at payload offset {at}")),
        };
        Ok(edit)
    }

    /// Reads a varint.
    fn uvarint(&mut self, what: &str) -> Result<u64, String> {
        let rest = self.data.get(self.pos..).unwrap_or_default();
        let (v, n) = get_uvarint(rest).ok_or_else(|| {
            format!(
                "bad or truncated varint ({what}) at payload offset {}",
                self.pos
            )
        })?;
        self.pos += n;
        Ok(v)
    }

    /// Reads a varint that must fit in 32 bits.
    fn u32(&mut self, what: &str) -> Result<u32, String> {
        let at = self.pos;
        let v = self.uvarint(what)?;
        u32::try_from(v).map_err(|_| format!("{what} {v} exceeds u32 at payload offset {at}"))
    }

    /// Reads `len uvarint | bytes`.
    fn bytes(&mut self, what: &str) -> Result<Vec<u8>, String> {
        let at = self.pos;
        let len = self.uvarint(what)?;
        let rest = self.data.len() - self.pos;
        if len > rest as u64 {
            return Err(format!(
                "{what} of {len} bytes overruns the payload ({rest} left) at payload offset {at}"
            ));
        }
        let end = self.pos + len as usize;
        let out = self.data[self.pos..end].to_vec();
        self.pos = end;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<ManifestEdit> {
        vec![
            ManifestEdit::AddTable(TableMeta {
                id: 7,
                level: 3,
                size: 1 << 40,
                smallest: b"a".to_vec(),
                largest: vec![0xff; 300],
                max_version: u64::MAX,
            }),
            ManifestEdit::DeleteTable { id: 0 },
            ManifestEdit::VlogHead {
                fid: u32::MAX,
                offset: 12345,
            },
            ManifestEdit::NextFileId(99),
            ManifestEdit::MaxVersion(1),
        ]
    }

    #[test]
    fn round_trip() {
        let edits = sample();
        let mut buf = Vec::new();
        encode_edits(&edits, &mut buf);
        assert_eq!(decode_edits(&buf).unwrap(), edits);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let mut buf = Vec::new();
        encode_edits(&sample(), &mut buf);
        for cut in 0..buf.len() {
            assert!(decode_edits(&buf[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn rejects_trailing_bytes_empty_batches_and_unknown_tags() {
        let mut buf = Vec::new();
        encode_edits(&sample(), &mut buf);
        buf.push(0);
        assert!(decode_edits(&buf).unwrap_err().contains("trailing"));
        assert!(decode_edits(&[0]).unwrap_err().contains("no edits"));
        assert!(decode_edits(&[1, 9, 0])
            .unwrap_err()
            .contains("unknown edit tag 9"));
        // A count far larger than the payload could hold must not allocate.
        let mut huge = Vec::new();
        put_uvarint(&mut huge, u64::MAX);
        assert!(decode_edits(&huge).unwrap_err().contains("cannot fit"));
    }

    #[test]
    fn rejects_u32_overflow() {
        let mut buf = vec![1, TAG_VLOG_HEAD];
        put_uvarint(&mut buf, u64::from(u32::MAX) + 1);
        put_uvarint(&mut buf, 0);
        assert!(decode_edits(&buf).unwrap_err().contains("exceeds u32"));
    }

    fn arb_edit() -> impl Strategy<Value = ManifestEdit> {
        let bytes = proptest::collection::vec(any::<u8>(), 0..40);
        prop_oneof![
            (
                any::<u64>(),
                any::<u32>(),
                any::<u64>(),
                bytes.clone(),
                bytes,
                any::<u64>()
            )
                .prop_map(|(id, level, size, smallest, largest, max_version)| {
                    ManifestEdit::AddTable(TableMeta {
                        id,
                        level,
                        size,
                        smallest,
                        largest,
                        max_version,
                    })
                }),
            any::<u64>().prop_map(|id| ManifestEdit::DeleteTable { id }),
            (any::<u32>(), any::<u64>())
                .prop_map(|(fid, offset)| ManifestEdit::VlogHead { fid, offset }),
            any::<u64>().prop_map(ManifestEdit::NextFileId),
            any::<u64>().prop_map(ManifestEdit::MaxVersion),
        ]
    }

    proptest! {
        #[test]
        fn prop_round_trip(edits in proptest::collection::vec(arb_edit(), 1..20)) {
            let mut buf = Vec::new();
            encode_edits(&edits, &mut buf);
            prop_assert_eq!(decode_edits(&buf).unwrap(), edits);
        }

        #[test]
        fn prop_decode_arbitrary_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(edits) = decode_edits(&data) {
                // Whatever parses must survive a round trip (the bytes may
                // differ: a varint may have been written non-minimally).
                let mut buf = Vec::new();
                encode_edits(&edits, &mut buf);
                prop_assert_eq!(decode_edits(&buf).unwrap(), edits);
            }
        }
    }
}
