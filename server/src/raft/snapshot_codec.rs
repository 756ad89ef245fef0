//! The snapshot file format: an engine stream (`Db::stream`) written as
//! checksummed frames, read back into `Db::stream_writer`.
//!
//! ```text
//! file   := magic "SETTSNP1" frame* end
//! frame  := u8 kind=1 | be32 len | be32 crc32(payload) | payload(len)
//! end    := u8 kind=2 | be32 8   | be32 crc32(payload) | be64 entry_count
//! payload:= be32 stream_id | be32 n | entry*n
//! entry  := be32 klen | key | be32 vlen | value | be64 version
//!           | u8 user_meta | be64 expires_at | u8 deleted(0|1)
//! ```
//!
//! All integers are big-endian. A batch with `n = 0` is the engine's
//! end-of-range marker and is passed through. The reader checks the magic,
//! every checksum, the frame size limit, the entry count in the end frame,
//! and that nothing follows it; bad bytes are an error, never a panic.

use super::error::StoreError;
use sett_engine::{Db, KvBatch, KvEntry, StreamOptions};
use std::io::{Read, Write};

const MAGIC: &[u8; 8] = b"SETTSNP1";
const KIND_BATCH: u8 = 1;
const KIND_END: u8 = 2;
/// Largest frame accepted when reading (the engine's batches are ~4 MiB,
/// a single value may reach its value size limit).
const MAX_FRAME_BYTES: u32 = 1 << 30;

fn corrupt(msg: impl Into<String>) -> StoreError {
    StoreError::Corruption(format!("snapshot: {}", msg.into()))
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) -> Result<(), StoreError> {
    let len = u32::try_from(b.len()).map_err(|_| corrupt("key or value over 4 GiB"))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(b);
    Ok(())
}

fn encode_batch(batch: &KvBatch) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(batch.payload_bytes() + 32 * batch.entries.len() + 8);
    out.extend_from_slice(&batch.stream_id.to_be_bytes());
    let n = u32::try_from(batch.entries.len()).map_err(|_| corrupt("batch too long"))?;
    out.extend_from_slice(&n.to_be_bytes());
    for e in &batch.entries {
        put_bytes(&mut out, &e.key)?;
        put_bytes(&mut out, &e.value)?;
        out.extend_from_slice(&e.version.to_be_bytes());
        out.push(e.user_meta);
        out.extend_from_slice(&e.expires_at.to_be_bytes());
        out.push(u8::from(e.deleted));
    }
    Ok(out)
}

/// A cursor over a frame payload.
struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.buf.len() < n {
            return Err(corrupt("frame payload truncated"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, StoreError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes(b.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Result<u64, StoreError> {
        let b = self.take(8)?;
        Ok(u64::from_be_bytes(b.try_into().expect("8 bytes")))
    }

    fn bytes(&mut self) -> Result<Vec<u8>, StoreError> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
}

fn decode_batch(payload: &[u8]) -> Result<KvBatch, StoreError> {
    let mut c = Cursor { buf: payload };
    let stream_id = c.u32()?;
    let n = c.u32()? as usize;
    // Each entry takes at least 26 bytes: bound the allocation by the input.
    if n > payload.len() / 26 + 1 {
        return Err(corrupt(format!("entry count {n} exceeds frame size")));
    }
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        let key = c.bytes()?;
        let value = c.bytes()?;
        let version = c.u64()?;
        let user_meta = c.u8()?;
        let expires_at = c.u64()?;
        let deleted = match c.u8()? {
            0 => false,
            1 => true,
            b => return Err(corrupt(format!("bad deletion flag {b}"))),
        };
        entries.push(KvEntry {
            key,
            value,
            version,
            user_meta,
            expires_at,
            deleted,
        });
    }
    if !c.buf.is_empty() {
        return Err(corrupt("trailing bytes in a batch frame"));
    }
    Ok(KvBatch { stream_id, entries })
}

fn write_frame(out: &mut dyn Write, kind: u8, payload: &[u8]) -> Result<(), StoreError> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&l| l <= MAX_FRAME_BYTES)
        .ok_or_else(|| corrupt("frame over the size limit"))?;
    out.write_all(&[kind])?;
    out.write_all(&len.to_be_bytes())?;
    out.write_all(&crc32fast::hash(payload).to_be_bytes())?;
    out.write_all(payload)?;
    Ok(())
}

/// Reads one frame; `None` at a clean end of input before the kind byte.
fn read_frame(input: &mut dyn Read) -> Result<Option<(u8, Vec<u8>)>, StoreError> {
    let mut kind = [0u8; 1];
    if input.read(&mut kind)? == 0 {
        return Ok(None);
    }
    let mut head = [0u8; 8];
    input
        .read_exact(&mut head)
        .map_err(|_| corrupt("frame header truncated"))?;
    let len = u32::from_be_bytes(head[..4].try_into().expect("4 bytes"));
    let crc = u32::from_be_bytes(head[4..].try_into().expect("4 bytes"));
    if len > MAX_FRAME_BYTES {
        return Err(corrupt(format!("frame of {len} bytes over the limit")));
    }
    let mut payload = Vec::new();
    input
        .take(u64::from(len))
        .read_to_end(&mut payload)
        .map_err(StoreError::Io)?;
    if payload.len() != len as usize {
        return Err(corrupt("frame payload truncated"));
    }
    let got = crc32fast::hash(&payload);
    if got != crc {
        return Err(corrupt(format!(
            "frame checksum mismatch: got {got:#010x}, expected {crc:#010x}"
        )));
    }
    Ok(Some((kind[0], payload)))
}

/// Exports `db` as described by `opts` into `out`; returns the number of
/// entries written.
pub fn export(db: &Db, opts: StreamOptions, out: &mut dyn Write) -> Result<u64, StoreError> {
    out.write_all(MAGIC)?;
    let mut count = 0u64;
    let mut sink_err: Option<StoreError> = None;
    let res = db.stream(opts).run(|batch| {
        let r = encode_batch(&batch).and_then(|p| write_frame(out, KIND_BATCH, &p));
        match r {
            Ok(()) => {
                count += batch.entries.len() as u64;
                Ok(())
            }
            Err(e) => {
                sink_err = Some(e);
                Err(sett_engine::Error::InvalidArgument(
                    "snapshot sink failed".into(),
                ))
            }
        }
    });
    if let Some(e) = sink_err {
        return Err(e);
    }
    res?;
    write_frame(out, KIND_END, &count.to_be_bytes())?;
    out.flush()?;
    Ok(count)
}

/// Ingests a snapshot from `input` into the empty database `db` with its
/// stream writer; returns the number of entries ingested. Nothing becomes
/// visible unless the whole input is valid.
pub fn ingest(input: &mut dyn Read, db: &Db) -> Result<u64, StoreError> {
    let mut magic = [0u8; 8];
    input
        .read_exact(&mut magic)
        .map_err(|_| corrupt("file shorter than its magic"))?;
    if &magic != MAGIC {
        return Err(corrupt("bad magic"));
    }
    let mut writer = db.stream_writer()?;
    let mut count = 0u64;
    loop {
        let Some((kind, payload)) = read_frame(input)? else {
            return Err(corrupt("missing end frame"));
        };
        match kind {
            KIND_BATCH => {
                let batch = decode_batch(&payload)?;
                count += batch.entries.len() as u64;
                writer.write(batch)?;
            }
            KIND_END => {
                let expected = u64::from_be_bytes(
                    payload
                        .as_slice()
                        .try_into()
                        .map_err(|_| corrupt("bad end frame"))?,
                );
                if expected != count {
                    return Err(corrupt(format!(
                        "end frame counts {expected} entries, read {count}"
                    )));
                }
                if read_frame(input)?.is_some() {
                    return Err(corrupt("data after the end frame"));
                }
                writer.finish()?;
                return Ok(count);
            }
            k => return Err(corrupt(format!("unknown frame kind {k}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_round_trips() {
        let b = KvBatch {
            stream_id: 7,
            entries: vec![
                KvEntry {
                    key: b"a".to_vec(),
                    value: b"1".to_vec(),
                    version: 3,
                    user_meta: 9,
                    expires_at: 0,
                    deleted: false,
                },
                KvEntry {
                    key: b"b".to_vec(),
                    value: Vec::new(),
                    version: 2,
                    user_meta: 0,
                    expires_at: 12,
                    deleted: true,
                },
            ],
        };
        let p = encode_batch(&b).unwrap();
        assert_eq!(decode_batch(&p).unwrap(), b);
        for cut in 0..p.len() {
            assert!(decode_batch(&p[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn frames_detect_damage() {
        let mut buf = Vec::new();
        write_frame(&mut buf, KIND_BATCH, b"hello").unwrap();
        let (k, p) = read_frame(&mut buf.as_slice()).unwrap().unwrap();
        assert_eq!((k, p.as_slice()), (KIND_BATCH, &b"hello"[..]));
        let mut bad = buf.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(read_frame(&mut bad.as_slice()).is_err());
        assert!(read_frame(&mut &buf[..buf.len() - 1]).is_err());
    }
}
