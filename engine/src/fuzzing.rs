//! Entry points for the fuzz targets in `fuzz/` (one per on-disk format),
//! kept in the crate so they reach the real decoders and stay compiled
//! by `cargo test` (see the smoke test at the end). Not a public API.
//!
//! Every entry takes arbitrary bytes and never panics on bad input; a
//! panic here is a bug the fuzzer found. Each one:
//! - feeds the raw bytes to the decoder (only "no panic" and the
//!   checksum rule can be asserted on garbage);
//! - builds valid data of that format from the bytes, decodes it and
//!   asserts it comes back exactly (the round trip);
//! - damages one byte of the valid data and asserts the decoder refuses
//!   it, or returns only what the checksums still vouch for.
//!
//! Loops are bounded by the input: a decoder that does not make progress
//! trips an assertion here instead of hanging the fuzzer.

use crate::backup::{encode_frame, Fingerprint, FrameReader, Header, Trailer};
use crate::format::{checksum, compare_keys, get_u32, key_with_version};
use crate::fs::{FileBytes, Fs, MemFs};
use crate::manifest::{encode_record, file_header, replay, ManifestEdit, ManifestState, TableMeta};
use crate::options::Compression;
use crate::stream::{KvBatch, KvEntry};
use crate::table::{
    read_block, write_block, Block, BlockBuilder, BlockBytes, BlockHandle, DecodedBlock, Table,
    TableBuilder, TableIter, TableOptions, RESTART_INTERVAL,
};
use crate::vlog::{begin_record, decode_entry, encode_entry, finish_record, ValueLog, WriteEntry};
use std::cmp::Ordering;
use std::path::Path;
use std::sync::Arc;

/// A cursor over fuzz input that never fails: past the end it yields
/// zeros and empty slices.
struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.byte();
        }
        u64::from_le_bytes(b)
    }

    /// Up to `max` bytes (the length taken from the input).
    fn bytes(&mut self, max: usize) -> &'a [u8] {
        let n = (self.byte() as usize % (max + 1)).min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

/// Applies the damage the input asks for: XOR a non-zero mask into one
/// byte. Returns whether anything changed.
fn damage(bytes: &mut [u8], at: u16, mask: u8) -> bool {
    if bytes.is_empty() || mask == 0 {
        return false;
    }
    let i = at as usize % bytes.len();
    bytes[i] ^= mask;
    true
}

/// The path named in errors; nothing is read from it.
fn fuzz_path() -> &'static Path {
    Path::new("fuzz")
}

// ---------------------------------------------------------------- block --

/// Fuzz entry for table blocks: block contents (entries and restart
/// array), and stored blocks (compression byte and checksum trailer).
pub fn block(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.byte();
    let rest = input.rest();
    // Raw contents straight into the block decoder.
    check_block_contents(rest);
    // Raw bytes as a one-block file: payload | type | crc.
    check_stored_block(rest, mode & 1 == 1);
    // A valid block built from the input, round-tripped, then damaged.
    block_round_trip(rest);
}

/// Decodes `bytes` as block contents every way a reader does; asserts
/// the ways agree and every walk terminates.
fn check_block_contents(bytes: &[u8]) {
    let Ok(block) = Block::new(BlockBytes::Owned(bytes.to_vec())) else {
        return;
    };
    let mut decoded = DecodedBlock::default();
    let all = block.decode_all(&mut decoded);
    // Forward walk, as the table iterator steps.
    let mut key = Vec::new();
    let mut off = 0;
    let mut forward: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut forward_ok = true;
    while off < block.entries_end() {
        assert!(forward.len() <= bytes.len(), "block walk does not end");
        match block.decode_entry(off, &mut key) {
            Ok(pos) => {
                assert!(pos.next > off, "block entry of zero length");
                assert!(pos.value_start <= pos.value_end && pos.value_end <= bytes.len());
                forward.push((key.clone(), block.value(&pos).to_vec()));
                off = pos.next;
            }
            Err(_) => {
                forward_ok = false;
                break;
            }
        }
    }
    assert_eq!(
        all.is_ok(),
        forward_ok,
        "decode_all and a forward walk disagree"
    );
    if forward_ok {
        assert_eq!(decoded.len(), forward.len());
        for (i, (k, v)) in forward.iter().enumerate() {
            assert_eq!(decoded.key(i), &k[..]);
            let (s, e) = decoded.value_range(i);
            assert_eq!(&block.data()[s..e], &v[..]);
        }
    }
    // Seeks must not panic on any block; their answers are checked on
    // well-formed blocks in `block_round_trip`.
    let mut targets = vec![key_with_version(b"", 0), key_with_version(&[0xff; 4], 7)];
    if let Some((k, _)) = forward.first() {
        targets.push(k.clone());
    }
    for t in &targets {
        let _ = block.seek(t, &mut key);
    }
}

/// Treats `file` as a file holding one stored block at offset 0 and
/// reads it; whatever `read_block` returns must match the stored CRC.
fn check_stored_block(file: &[u8], owned: bool) {
    let Some(len) = file.len().checked_sub(5) else {
        return;
    };
    let bytes: FileBytes = Arc::new(file.to_vec());
    let handle = BlockHandle {
        offset: 0,
        len: len as u64,
    };
    let Ok(contents) = read_block(fuzz_path(), &bytes, handle, "data", owned) else {
        return;
    };
    let stored = get_u32(file, len + 1).unwrap_or(0);
    assert_eq!(
        crc32fast::hash(&file[..=len]),
        stored,
        "read_block returned a block that fails its checksum"
    );
    if file[len] == 0 {
        assert_eq!(contents.as_slice(), &file[..len]);
    }
    check_block_contents(contents.as_slice());
}

/// Sorted, distinct internal keys with values, parsed from the input.
fn entries_from(input: &mut Input<'_>, max: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut kvs = Vec::new();
    while !input.is_empty() && kvs.len() < max {
        let user = input.bytes(24).to_vec();
        let version = u64::from(input.u16());
        let value = input.bytes(64).to_vec();
        kvs.push((key_with_version(&user, version), value));
    }
    kvs.sort_by(|a, b| compare_keys(&a.0, &b.0));
    kvs.dedup_by(|a, b| compare_keys(&a.0, &b.0) == Ordering::Equal);
    kvs
}

/// Builds a block from the input, checks it decodes and seeks exactly,
/// then damages it (blocks carry no checksum of their own: only "no
/// panic" holds for the damaged copy).
fn block_round_trip(data: &[u8]) {
    let mut input = Input::new(data);
    let interval = 1 + input.byte() as usize % RESTART_INTERVAL;
    let (at, mask) = (input.u16(), input.byte());
    let kvs = entries_from(&mut input, 200);
    let mut b = BlockBuilder::new(interval);
    for (k, v) in &kvs {
        b.add(k, v);
    }
    let contents = b.finish().to_vec();
    let block = Block::new(BlockBytes::Owned(contents.clone())).expect("a built block decodes");
    let mut decoded = DecodedBlock::default();
    block
        .decode_all(&mut decoded)
        .expect("a built block decodes");
    assert_eq!(decoded.len(), kvs.len());
    let mut key = Vec::new();
    for (i, (k, v)) in kvs.iter().enumerate() {
        assert_eq!(decoded.key(i), &k[..]);
        let pos = block.seek(k, &mut key).expect("seek").expect("key present");
        assert_eq!((&key[..], block.value(&pos)), (&k[..], &v[..]));
        // Seeking just past a key lands on the next one (or nothing).
        let mut after = k.clone();
        after.push(0);
        let found = block.seek(&after, &mut key).expect("seek");
        match kvs.get(i + 1) {
            Some((next, _)) if compare_keys(next, &after) != Ordering::Less => {
                assert!(found.is_some());
                assert_eq!(&key[..], &next[..]);
            }
            _ => {}
        }
    }
    // Stored with its trailer, any damage is caught by the checksum.
    let mut stored = Vec::new();
    let handle = write_block(&mut stored, &contents, None);
    let file: FileBytes = Arc::new(stored.clone());
    let back = read_block(fuzz_path(), &file, handle, "data", false).expect("stored block reads");
    assert_eq!(back.as_slice(), &contents[..]);
    if damage(&mut stored, at, mask) {
        let file: FileBytes = Arc::new(stored);
        assert!(
            read_block(fuzz_path(), &file, handle, "data", true).is_err(),
            "a damaged stored block passed its checksum"
        );
    }
    let mut bad = contents;
    if damage(&mut bad, at, mask) {
        check_block_contents(&bad);
    }
}

// ---------------------------------------------------------------- table --

/// Fuzz entry for whole table files: footer, index, filter, meta and
/// data blocks.
pub fn table(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.byte();
    let rest = input.rest();
    if mode & 1 == 0 {
        // Raw bytes as a table file.
        check_table_file(rest.to_vec());
    } else {
        // A table built from the input, round-tripped, then damaged.
        table_round_trip(rest);
    }
}

/// Opens `file` as a table and reads everything in it. Returns the
/// entries if the table opened and verified.
fn check_table_file(file: Vec<u8>) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let len = file.len();
    let bytes: FileBytes = Arc::new(file);
    let table = Arc::new(Table::open(1, fuzz_path().into(), bytes, None).ok()?);
    let verified = table.verify().is_ok();
    // Forward, then reverse; each step consumes at least one byte of a
    // block, so neither walk can be longer than the file.
    let forward = walk(&table, false, len);
    let backward = walk(&table, true, len);
    let _ = table.seek_first(&key_with_version(b"m", 5));
    let _ = table.block_separators(2);
    if !verified {
        return None;
    }
    let mut forward = forward.expect("a verified table iterates forward");
    let mut backward = backward.expect("a verified table iterates backward");
    assert_eq!(forward.len() as u64, table.key_count());
    assert!(forward
        .windows(2)
        .all(|w| compare_keys(&w[0].0, &w[1].0) == Ordering::Less));
    backward.reverse();
    assert_eq!(forward, backward, "reverse iteration differs from forward");
    for (k, v) in forward.iter().take(8) {
        assert_eq!(
            table.seek_first(k).expect("seek"),
            Some((k.clone(), v.clone()))
        );
    }
    forward.shrink_to_fit();
    Some(forward)
}

/// Every entry of `table` in one direction; `Err` on corruption.
fn walk(table: &Arc<Table>, reverse: bool, bound: usize) -> crate::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut it = TableIter::new(table.clone(), reverse);
    it.rewind()?;
    let mut out = Vec::new();
    while it.valid() {
        assert!(out.len() <= bound, "table iteration does not end");
        out.push((it.key().to_vec(), it.value().to_vec()));
        it.next()?;
    }
    Ok(out)
}

/// Builds a table from the input (block size, filter and compression
/// chosen by it), checks it reads back exactly, then damages one byte:
/// every byte of a table is under a checksum, so the damaged file must
/// fail to open or to verify.
fn table_round_trip(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.byte();
    let block_size = 32 + input.byte() as usize * 4;
    let (at, mask) = (input.u16(), input.byte());
    let kvs = entries_from(&mut input, 300);
    let opts = TableOptions {
        block_size,
        bloom_bits_per_key: if flags & 1 == 1 { 10 } else { 0 },
        // zstd contexts are costly to create: one input in eight.
        compression: if flags & 0x0e == 0x0e {
            Compression::Zstd(1)
        } else {
            Compression::None
        },
    };
    let mut b = TableBuilder::new(opts);
    for (k, v) in &kvs {
        b.add(k, v);
    }
    let file = b.finish();
    let read = check_table_file(file.clone()).expect("a built table opens and verifies");
    assert_eq!(read, kvs, "table round trip changed the entries");
    let mut bad = file;
    if damage(&mut bad, at, mask) {
        assert!(
            check_table_file(bad).is_none(),
            "a damaged table opened and verified"
        );
    }
}

// ---------------------------------------------------------- vlog record --

/// Fuzz entry for value-log entries and records, and the replay of a
/// value-log file (torn-tail cut included).
pub fn vlog_record(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.byte();
    let rest = input.rest();
    // Raw bytes as one entry.
    if let Ok((e, n)) = decode_entry(rest) {
        assert!(n >= 4 && n <= rest.len());
        let stored = get_u32(rest, n - 4).unwrap_or(0);
        assert_eq!(
            crc32fast::hash(&rest[..n - 4]),
            stored,
            "entry fails its checksum"
        );
        assert!(e.key.len() + e.value.len() < n);
    }
    // The file replay opens two logs: one input in two.
    if mode & 1 == 1 {
        vlog_replay(rest);
    }
}

/// Writes records built from the input to a value-log file in memory,
/// appends raw input bytes, damages one byte, and replays: what replay
/// returns must be a prefix of what was written (entries from the raw
/// tail must pass their checksums), and every pointer must read back.
fn vlog_replay(data: &[u8]) {
    let mut input = Input::new(data);
    let (at, mask) = (input.u16(), input.byte());
    let records = input.byte() % 6;
    let mut written: Vec<WriteEntry> = Vec::new();
    let mut buf = Vec::new();
    for _ in 0..records {
        let start = begin_record(&mut buf);
        for _ in 0..1 + input.byte() % 4 {
            let e = WriteEntry {
                key: input.bytes(16).to_vec(),
                value: input.bytes(48).to_vec(),
                meta: input.byte(),
                user_meta: input.byte(),
                expires_at: u64::from(input.u16()),
                version: input.u64(),
            };
            encode_entry(&mut buf, &e);
            written.push(e);
        }
        finish_record(&mut buf, start);
    }
    let tail = input.rest();

    let fs = Arc::new(MemFs::new());
    let dir = Path::new("/vlog");
    fs.create_dir_all(dir).expect("mem dir");
    let path = dir.join("000001.vlog");
    {
        // Creates the file with its header.
        let log =
            ValueLog::open(fs.clone() as Arc<dyn Fs>, dir, 1 << 30, false).expect("open empty log");
        drop(log);
    }
    let file = fs.open(&path).expect("log file");
    let header_len = file.len().expect("len") as usize;
    let mut bytes = vec![0u8; header_len];
    file.read_exact_at(&mut bytes, 0).expect("read header");
    bytes.extend_from_slice(&buf);
    let clean_len = bytes.len();
    bytes.extend_from_slice(tail);
    let damaged = damage(&mut bytes, at, mask);
    let damaged_at = if damaged {
        at as usize % bytes.len()
    } else {
        usize::MAX
    };
    file.truncate(0).expect("truncate");
    file.append(&bytes).expect("append");
    drop(file);

    let Ok(log) = ValueLog::open(fs.clone() as Arc<dyn Fs>, dir, 1 << 30, false) else {
        return;
    };
    let mut got = Vec::new();
    let Ok(end) = log.replay((1, 0), |e, vp| got.push((e, vp))) else {
        return;
    };
    assert!(end.1 as usize <= bytes.len());
    assert!(got.len() <= bytes.len(), "more entries than bytes");
    for (i, (e, vp)) in got.iter().enumerate() {
        let off = vp.offset as usize;
        let n = vp.len as usize;
        assert!(n >= 4 && off + n <= bytes.len());
        let raw = &bytes[off..off + n];
        assert_eq!(
            crc32fast::hash(&raw[..n - 4]),
            get_u32(raw, n - 4).unwrap_or(0),
            "replay returned an entry that fails its checksum"
        );
        if let Some(w) = written.get(i) {
            if off + n <= clean_len && damaged_at >= off + n {
                assert_eq!(
                    (
                        &e.key,
                        &e.value,
                        e.meta,
                        e.user_meta,
                        e.expires_at,
                        e.version
                    ),
                    (
                        &w.key,
                        &w.value,
                        w.meta,
                        w.user_meta,
                        w.expires_at,
                        w.version
                    ),
                    "replay returned a different entry"
                );
            }
        }
        let back = log.read_entry(*vp).expect("a replayed pointer reads back");
        assert_eq!(&back, e);
    }
    if !damaged {
        assert!(
            got.len() >= written.len(),
            "replay lost entries of a clean log"
        );
    }
}

// ------------------------------------------------------------- manifest --

/// Fuzz entry for manifest files: header, record framing, edit payloads,
/// replay with torn-tail detection, and the state invariants.
pub fn manifest(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.byte();
    let rest = input.rest();
    match mode % 3 {
        0 => {
            check_manifest_file(rest);
        }
        1 => {
            // Past the header check, straight into the records.
            let mut file = file_header().to_vec();
            file.extend_from_slice(rest);
            check_manifest_file(&file);
        }
        _ => manifest_round_trip(rest),
    }
}

/// Replays `file`; a good replay must satisfy the state invariants, and
/// replaying the good prefix it reports must give the same state with
/// no torn tail (what the open does after cutting it).
fn check_manifest_file(file: &[u8]) -> Option<(ManifestState, u64, u64)> {
    let r = replay(fuzz_path(), file).ok()?;
    r.state.check_invariants();
    let good = usize::try_from(r.good_len).expect("good_len fits");
    assert!(good <= file.len());
    assert_eq!(r.torn.is_none(), good == file.len());
    if r.torn.is_some() {
        let again = replay(fuzz_path(), &file[..good]).expect("the good prefix replays");
        assert!(again.torn.is_none());
        assert_eq!(again.state, r.state);
        assert_eq!(again.records, r.records);
    }
    Some((r.state, r.good_len, r.records))
}

/// Edit batches from the input that apply in order (the engine never
/// writes any other), their file, and the state after each record.
fn manifest_round_trip(data: &[u8]) {
    let mut input = Input::new(data);
    let (at, mask) = (input.u16(), input.byte());
    let mut state = ManifestState::default();
    let mut file = file_header().to_vec();
    let mut states = vec![(state.clone(), file.len() as u64)];
    while !input.is_empty() && states.len() < 64 {
        let mut batch = Vec::new();
        for _ in 0..1 + input.byte() % 4 {
            let tag = input.byte();
            let v = u64::from(input.u16());
            let edit = match tag % 5 {
                0 => ManifestEdit::AddTable(TableMeta {
                    id: v % 32,
                    level: u32::from(input.byte() % 7),
                    size: u64::from(input.u16()),
                    smallest: input.bytes(12).to_vec(),
                    largest: input.bytes(12).to_vec(),
                    max_version: u64::from(input.u16()),
                }),
                1 => ManifestEdit::DeleteTable { id: v % 32 },
                2 => ManifestEdit::VlogHead {
                    fid: u32::from(input.byte()),
                    offset: v,
                },
                3 => ManifestEdit::NextFileId(v),
                _ => ManifestEdit::MaxVersion(v),
            };
            batch.push(edit);
        }
        if state.check_edits(&batch).is_err() {
            continue;
        }
        for e in &batch {
            state.apply_edit(e).expect("checked batch applies");
        }
        encode_record(&batch, &mut file);
        states.push((state.clone(), file.len() as u64));
    }
    let (clean, len, records) = check_manifest_file(&file).expect("a written manifest replays");
    assert_eq!((&clean, len), (&state, file.len() as u64));
    assert_eq!(records as usize, states.len() - 1);
    let mut bad = file;
    if damage(&mut bad, at, mask) {
        // Only a prefix of whole records may survive, never a changed one.
        if let Some((s, good_len, records)) = check_manifest_file(&bad) {
            let (want, want_len) = &states[records as usize];
            assert_eq!(
                (&s, good_len),
                (want, *want_len),
                "damaged manifest replayed to another state"
            );
            assert!(
                good_len < bad.len() as u64,
                "damage inside the good prefix went unnoticed"
            );
        }
    }
}

// -------------------------------------------------------- backup stream --

/// Fuzz entry for backup streams: header, frames, entries, trailer and
/// the whole-stream checksum, through the reader restores use.
pub fn backup_stream(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.byte();
    let rest = input.rest();
    match mode % 3 {
        0 => {
            read_backup(rest);
        }
        1 => {
            // Past the header check, straight into the frames.
            let header = Header {
                since_ts: 0,
                read_ts: u64::MAX,
                created_at_secs: 0,
            };
            let mut stream = header.encode().to_vec();
            stream.extend_from_slice(rest);
            read_backup(&stream);
        }
        _ => backup_round_trip(rest),
    }
}

/// Reads a whole backup stream the way a restore does. `Some(batches)`
/// only if the trailer and the end of input verified.
fn read_backup(stream: &[u8]) -> Option<Vec<KvBatch>> {
    let mut reader = FrameReader::new(stream);
    reader.header().ok()?;
    let mut batches = Vec::new();
    // Every frame takes at least 13 bytes.
    let bound = stream.len() / 13 + 1;
    loop {
        assert!(batches.len() <= bound, "backup reader does not end");
        match reader.next_frame() {
            Ok(Some(batch)) => {
                assert!(batch.entries.iter().all(|e| !e.key.is_empty()));
                batches.push(batch);
            }
            Ok(None) => break,
            Err(_) => return None,
        }
    }
    Some(batches)
}

/// Writes a backup stream from the input, reads it back exactly, then
/// damages one byte: every byte is under a checksum (header, frames,
/// trailer, and the body checksum over all of them), so the damaged
/// stream must never verify.
fn backup_round_trip(data: &[u8]) {
    let mut input = Input::new(data);
    let (at, mask) = (input.u16(), input.byte());
    let since_ts = u64::from(input.byte());
    let header = Header {
        since_ts,
        read_ts: since_ts + u64::from(input.u16()),
        created_at_secs: u64::from(input.u16()),
    };
    let mut stream = header.encode().to_vec();
    let mut batches = Vec::new();
    let mut entries = 0u64;
    while !input.is_empty() && batches.len() < 32 {
        let mut batch = KvBatch {
            stream_id: u32::from(input.byte()),
            entries: Vec::new(),
        };
        for _ in 0..input.byte() % 5 {
            let flags = input.byte();
            let mut key = input.bytes(16).to_vec();
            if key.is_empty() {
                key.push(flags);
            }
            let deleted = flags & 1 == 1;
            let value = if deleted {
                Vec::new()
            } else {
                input.bytes(40).to_vec()
            };
            batch.entries.push(KvEntry {
                key,
                value,
                version: u64::from(input.u16()),
                user_meta: input.byte(),
                expires_at: u64::from(input.byte()),
                deleted,
            });
        }
        entries += batch.entries.len() as u64;
        encode_frame(&batch, &mut stream);
        batches.push(batch);
    }
    let trailer = Trailer {
        frames: batches.len() as u64,
        entries,
        live: Fingerprint::default(),
        body_crc: checksum(&stream),
    };
    stream.extend_from_slice(&trailer.encode());
    let read = read_backup(&stream).expect("a written backup reads back");
    assert_eq!(read.len(), batches.len());
    for (a, b) in read.iter().zip(&batches) {
        assert_eq!(a.stream_id, b.stream_id);
        assert_eq!(a.entries, b.entries, "backup round trip changed entries");
    }
    let mut bad = stream;
    if damage(&mut bad, at, mask) {
        assert!(read_backup(&bad).is_none(), "a damaged backup verified");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every entry point on a few fixed inputs, so they keep compiling
    /// and passing under `cargo test` without the fuzzer.
    #[test]
    fn fuzz_entries_smoke() {
        let mut inputs: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![1; 7],
            (0..=255u8).collect(),
            b"\x01SETTMFST\x01\x00\x00\x00garbage".to_vec(),
        ];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for len in [16, 100, 700] {
            inputs.push(
                (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect(),
            );
        }
        for data in &inputs {
            // Each mode byte of interest in front of each input.
            for mode in 0..3u8 {
                let mut d = vec![mode];
                d.extend_from_slice(data);
                block(&d);
                table(&d);
                vlog_record(&d);
                manifest(&d);
                backup_stream(&d);
            }
        }
    }
}
