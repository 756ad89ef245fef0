//! Blocks: prefix-compressed runs of sorted entries, the unit a table is
//! read, checksummed, compressed and cached in.
//!
//! Contents (before compression; all integers little-endian):
//!
//! ```text
//! entry*  restart_offset: u32 * n  n: u32
//! entry = shared: uvarint | unshared: uvarint | value_len: uvarint
//!         | key[shared..] (unshared bytes) | value (value_len bytes)
//! ```
//!
//! Every [`RESTART_INTERVAL`]-th entry is a restart point: it stores its key
//! whole (`shared == 0`) and its offset is listed in the restart array, so a
//! reader can binary-search the restart keys and then scan at most one
//! interval.
//!
//! Invariants of a [`Block`] (checked by [`Block::new`]): the restart array
//! fits, restart offsets start at 0, strictly ascend and lie inside the entry
//! area. Entries are parsed lazily and every parse is bounds-checked; a bad
//! entry yields a [`BlockError`], never a panic.

use crate::format::{compare_keys, get_u32, get_uvarint, put_uvarint, VERSION_LEN};
use crate::fs::FileBytes;
use std::cmp::Ordering;
use std::fmt;

/// Entries between restart points in data and index blocks.
pub(crate) const RESTART_INTERVAL: usize = 16;

/// Why a block's contents do not parse; the caller adds file and offset.
pub(crate) type BlockError = &'static str;

/// Result of parsing block contents.
pub(crate) type BlockResult<T> = std::result::Result<T, BlockError>;

/// Builds the contents of one block from entries added in ascending order.
#[derive(Debug)]
pub(crate) struct BlockBuilder {
    /// Entries encoded so far.
    buf: Vec<u8>,
    /// Offsets of restart entries in `buf`.
    restarts: Vec<u32>,
    /// Key of the last entry added, for prefix compression.
    last_key: Vec<u8>,
    /// Entries since the last restart point.
    since_restart: usize,
    /// Entries in the block.
    entries: usize,
    /// Entries per restart interval.
    interval: usize,
}

impl BlockBuilder {
    /// An empty builder placing a restart point every `interval` entries.
    pub(crate) fn new(interval: usize) -> Self {
        assert!(interval >= 1, "restart interval must be positive");
        BlockBuilder {
            buf: Vec::new(),
            restarts: Vec::new(),
            last_key: Vec::new(),
            since_restart: 0,
            entries: 0,
            interval,
        }
    }

    /// Appends an entry. Keys must ascend (the table builder checks this).
    pub(crate) fn add(&mut self, key: &[u8], value: &[u8]) {
        let shared = if self.entries == 0 || self.since_restart == self.interval {
            self.restarts.push(offset_u32(self.buf.len()));
            self.since_restart = 0;
            0
        } else {
            common_prefix(&self.last_key, key)
        };
        let unshared = &key[shared..];
        put_uvarint(&mut self.buf, shared as u64);
        put_uvarint(&mut self.buf, unshared.len() as u64);
        put_uvarint(&mut self.buf, value.len() as u64);
        self.buf.extend_from_slice(unshared);
        self.buf.extend_from_slice(value);
        self.last_key.truncate(shared);
        self.last_key.extend_from_slice(unshared);
        debug_assert_eq!(self.last_key, key);
        self.since_restart += 1;
        self.entries += 1;
        // Restart offsets are u32; the block must stay addressable.
        let _ = offset_u32(self.buf.len());
    }

    /// True if no entry was added since the last reset.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Entries added since the last reset.
    pub(crate) fn len(&self) -> usize {
        self.entries
    }

    /// Size of the contents [`Self::finish`] would produce now.
    pub(crate) fn estimated_size(&self) -> usize {
        self.buf.len() + 4 * self.restarts.len() + 4
    }

    /// Appends the restart array and returns the finished contents. Call
    /// [`Self::reset`] before adding to the next block.
    pub(crate) fn finish(&mut self) -> &[u8] {
        let expected = self.estimated_size();
        for &r in &self.restarts {
            self.buf.extend_from_slice(&r.to_le_bytes());
        }
        self.buf
            .extend_from_slice(&offset_u32(self.restarts.len()).to_le_bytes());
        debug_assert_eq!(self.buf.len(), expected);
        &self.buf
    }

    /// Clears the builder for the next block, keeping its allocations.
    pub(crate) fn reset(&mut self) {
        self.buf.clear();
        self.restarts.clear();
        self.last_key.clear();
        self.since_restart = 0;
        self.entries = 0;
    }
}

/// Converts an in-block offset to its on-disk width. A block larger than
/// 4 GiB cannot be written; that is a caller bug, not bad input.
fn offset_u32(v: usize) -> u32 {
    u32::try_from(v).expect("table block exceeds 4 GiB")
}

/// Length of the common prefix of `a` and `b`.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Where a block's bytes live.
pub(crate) enum BlockBytes {
    /// Decompressed or copied into memory (cached blocks are always owned).
    Owned(Vec<u8>),
    /// A verified, uncompressed range of the mapped table file.
    Mapped {
        /// The whole file.
        file: FileBytes,
        /// First byte of the contents.
        start: usize,
        /// One past the last byte of the contents.
        end: usize,
    },
}

impl fmt::Debug for BlockBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockBytes::Owned(v) => write!(f, "Owned({} bytes)", v.len()),
            BlockBytes::Mapped { start, end, .. } => write!(f, "Mapped({start}..{end})"),
        }
    }
}

impl BlockBytes {
    /// The contents.
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            BlockBytes::Owned(v) => v,
            // The range was bounds-checked against this same immutable file
            // when the block was read.
            BlockBytes::Mapped { file, start, end } => &(**file).as_ref()[*start..*end],
        }
    }
}

/// Position of a decoded entry within a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EntryPos {
    /// First byte of the value.
    pub(crate) value_start: usize,
    /// One past the last byte of the value.
    pub(crate) value_end: usize,
    /// Offset of the next entry (equal to [`Block::entries_end`] after the
    /// last one).
    pub(crate) next: usize,
}

/// The decoded contents of one block, ready to search.
pub(crate) struct Block {
    /// Contents, restart array included.
    bytes: BlockBytes,
    /// Offset of the restart array (= end of the entries).
    restarts_off: usize,
    /// Number of restart points.
    num_restarts: usize,
}

impl fmt::Debug for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Block")
            .field("len", &self.data().len())
            .field("restarts", &self.num_restarts)
            .finish()
    }
}

impl Block {
    /// Parses the restart array of `bytes`.
    pub(crate) fn new(bytes: BlockBytes) -> BlockResult<Block> {
        let data = bytes.as_slice();
        let len = data.len();
        let count_off = len
            .checked_sub(4)
            .ok_or("block shorter than its restart count")?;
        let num_restarts =
            get_u32(data, count_off).ok_or("block restart count unreadable")? as usize;
        let restarts_off = num_restarts
            .checked_mul(4)
            .and_then(|n| count_off.checked_sub(n))
            .ok_or("block restart array larger than the block")?;
        if num_restarts == 0 && restarts_off != 0 {
            return Err("block has entries but no restart points");
        }
        let mut prev: Option<usize> = None;
        for i in 0..num_restarts {
            let r = get_u32(data, restarts_off + 4 * i).ok_or("block restart unreadable")? as usize;
            let ok = match prev {
                None => r == 0,
                Some(p) => r > p && r < restarts_off,
            };
            if !ok {
                return Err("block restart points out of order or out of range");
            }
            prev = Some(r);
        }
        let block = Block {
            bytes,
            restarts_off,
            num_restarts,
        };
        debug_assert!(block.restarts_off + 4 * block.num_restarts + 4 == block.data().len());
        Ok(block)
    }

    /// The contents, restart array included.
    pub(crate) fn data(&self) -> &[u8] {
        self.bytes.as_slice()
    }

    /// Offset one past the last entry; entries occupy `0..entries_end()`.
    pub(crate) fn entries_end(&self) -> usize {
        self.restarts_off
    }

    /// True if the block holds no entry.
    pub(crate) fn is_empty(&self) -> bool {
        self.restarts_off == 0
    }

    /// Bytes this block occupies in memory, for the cache's weigher.
    pub(crate) fn memory_size(&self) -> usize {
        let owned = match &self.bytes {
            BlockBytes::Owned(v) => v.capacity(),
            BlockBytes::Mapped { .. } => 0,
        };
        owned + std::mem::size_of::<Block>()
    }

    /// Value bytes of a decoded entry.
    pub(crate) fn value(&self, pos: &EntryPos) -> &[u8] {
        // `pos` came from `decode_entry` on this block, which bounds-checked it.
        &self.data()[pos.value_start..pos.value_end]
    }

    /// Offset of restart point `i` (validated by [`Block::new`]).
    fn restart(&self, i: usize) -> usize {
        debug_assert!(i < self.num_restarts);
        get_u32(self.data(), self.restarts_off + 4 * i).unwrap_or(0) as usize
    }

    /// Parses the entry header at `off`: (shared, key delta range, value end).
    #[inline]
    fn header(&self, off: usize) -> BlockResult<(usize, usize, usize, usize)> {
        let data = &self.data()[..self.restarts_off];
        let mut p = off;
        let shared = read_varint(data, &mut p)?;
        let unshared = read_varint(data, &mut p)?;
        let value_len = read_varint(data, &mut p)?;
        let key_end = p.checked_add(unshared).ok_or("block entry key overflows")?;
        let value_end = key_end
            .checked_add(value_len)
            .ok_or("block entry value overflows")?;
        if value_end > data.len() {
            return Err("block entry runs past the entry area");
        }
        Ok((shared, p, key_end, value_end))
    }

    /// Decodes the entry at `off`, rebuilding its key in `key`, which must
    /// hold the previous entry's key (anything, at a restart point).
    #[inline]
    pub(crate) fn decode_entry(&self, off: usize, key: &mut Vec<u8>) -> BlockResult<EntryPos> {
        let (shared, key_start, key_end, value_end) = self.header(off)?;
        if shared > key.len() {
            return Err("block entry shares more bytes than the previous key has");
        }
        key.truncate(shared);
        key.extend_from_slice(&self.data()[key_start..key_end]);
        if key.len() < VERSION_LEN {
            return Err("block key shorter than its version suffix");
        }
        debug_assert!(value_end > off);
        Ok(EntryPos {
            value_start: key_end,
            value_end,
            next: value_end,
        })
    }

    /// The key of restart point `i`, borrowed from the block.
    fn restart_key(&self, i: usize) -> BlockResult<&[u8]> {
        let (shared, key_start, key_end, _) = self.header(self.restart(i))?;
        if shared != 0 {
            return Err("block restart entry is prefix-compressed");
        }
        if key_end - key_start < VERSION_LEN {
            return Err("block key shorter than its version suffix");
        }
        Ok(&self.data()[key_start..key_end])
    }

    /// Finds the first entry whose key is `>= target` (by
    /// [`compare_keys`]), leaving its key in `key`; `None` if every key is
    /// smaller.
    pub(crate) fn seek(&self, target: &[u8], key: &mut Vec<u8>) -> BlockResult<Option<EntryPos>> {
        // First restart point whose key is >= target.
        let (mut lo, mut hi) = (0, self.num_restarts);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if compare_keys(self.restart_key(mid)?, target) == Ordering::Less {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if self.num_restarts == 0 {
            return Ok(None);
        }
        // The answer lies in the interval before that restart, or is it.
        let mut off = self.restart(lo.saturating_sub(1));
        key.clear();
        while off < self.restarts_off {
            let pos = self.decode_entry(off, key)?;
            if compare_keys(key, target) != Ordering::Less {
                return Ok(Some(pos));
            }
            off = pos.next;
        }
        Ok(None)
    }

    /// Decodes every entry into `out` (cleared first); used to step
    /// backwards through a block.
    pub(crate) fn decode_all(&self, out: &mut DecodedBlock) -> BlockResult<()> {
        out.keys.clear();
        out.entries.clear();
        out.scratch.clear();
        let mut off = 0;
        while off < self.restarts_off {
            let pos = self.decode_entry(off, &mut out.scratch)?;
            out.keys.extend_from_slice(&out.scratch);
            out.entries.push(DecodedEntry {
                key_end: out.keys.len(),
                value_start: pos.value_start,
                value_end: pos.value_end,
            });
            off = pos.next;
        }
        Ok(())
    }
}

/// Reads a uvarint that must fit in `usize` from `data[*p..]`, advancing `p`.
#[inline]
fn read_varint(data: &[u8], p: &mut usize) -> BlockResult<usize> {
    match data.get(*p) {
        Some(&b) if b < 0x80 => {
            *p += 1;
            Ok(usize::from(b))
        }
        Some(_) => {
            let (v, n) = get_uvarint(&data[*p..]).ok_or("bad varint in block")?;
            *p += n;
            usize::try_from(v).map_err(|_| "varint in block too large")
        }
        None => Err("block entry header truncated"),
    }
}

/// One entry of a [`DecodedBlock`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct DecodedEntry {
    /// End of the key in [`DecodedBlock::keys`]; it starts where the
    /// previous entry's key ends.
    key_end: usize,
    /// First byte of the value in the block.
    value_start: usize,
    /// One past the last byte of the value in the block.
    value_end: usize,
}

/// All entries of one block with their keys materialised, for reverse
/// iteration. Reused from block to block to keep allocations down.
#[derive(Debug, Default)]
pub(crate) struct DecodedBlock {
    /// Every key, concatenated.
    keys: Vec<u8>,
    /// Entries in block order.
    entries: Vec<DecodedEntry>,
    /// Key being rebuilt while decoding.
    scratch: Vec<u8>,
}

impl DecodedBlock {
    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Key of entry `i`. Precondition: `i < len()`.
    pub(crate) fn key(&self, i: usize) -> &[u8] {
        let start = if i == 0 {
            0
        } else {
            self.entries[i - 1].key_end
        };
        &self.keys[start..self.entries[i].key_end]
    }

    /// Value range of entry `i` within its block. Precondition: `i < len()`.
    pub(crate) fn value_range(&self, i: usize) -> (usize, usize) {
        let e = &self.entries[i];
        (e.value_start, e.value_end)
    }

    /// Number of entries whose key is `<= target`.
    pub(crate) fn count_le(&self, target: &[u8]) -> usize {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if compare_keys(self.key(mid), target) != Ordering::Greater {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{key_version, key_with_version, user_key};

    /// Entries as (key, value) pairs.
    type Kvs = Vec<(Vec<u8>, Vec<u8>)>;

    fn build(n: usize) -> (Kvs, Block) {
        let mut b = BlockBuilder::new(RESTART_INTERVAL);
        let mut kvs = Vec::new();
        for i in 0..n {
            let k = key_with_version(format!("key{:05}", i / 3).as_bytes(), 10 - (i % 3) as u64);
            let v = format!("value-{i}").into_bytes();
            b.add(&k, &v);
            kvs.push((k, v));
        }
        assert_eq!(b.len(), n);
        let est = b.estimated_size();
        let data = b.finish().to_vec();
        assert_eq!(data.len(), est);
        (kvs, Block::new(BlockBytes::Owned(data)).unwrap())
    }

    #[test]
    fn round_trip_and_decode_all() {
        for n in [0, 1, 15, 16, 17, 100] {
            let (kvs, block) = build(n);
            assert_eq!(block.is_empty(), n == 0);
            let mut d = DecodedBlock::default();
            block.decode_all(&mut d).unwrap();
            assert_eq!(d.len(), n);
            for (i, (k, v)) in kvs.iter().enumerate() {
                assert_eq!(d.key(i), &k[..]);
                let (s, e) = d.value_range(i);
                assert_eq!(&block.data()[s..e], &v[..]);
            }
        }
    }

    #[test]
    fn seek_finds_first_not_less() {
        let (kvs, block) = build(100);
        let mut key = Vec::new();
        for (k, v) in &kvs {
            let pos = block.seek(k, &mut key).unwrap().unwrap();
            assert_eq!(key, *k);
            assert_eq!(block.value(&pos), &v[..]);
            // A newer version of the same user key lands on the first entry
            // not below it.
            let before = key_with_version(user_key(k), key_version(k) + 1);
            let expect = kvs
                .iter()
                .find(|(x, _)| compare_keys(x, &before) != Ordering::Less)
                .unwrap();
            block.seek(&before, &mut key).unwrap().unwrap();
            assert_eq!(key, expect.0);
        }
        assert!(block
            .seek(&key_with_version(b"zzz", 1), &mut key)
            .unwrap()
            .is_none());
        block
            .seek(&key_with_version(b"a", 1), &mut key)
            .unwrap()
            .unwrap();
        assert_eq!(key, kvs[0].0);
        let (_, empty) = build(0);
        assert!(empty.seek(&kvs[0].0, &mut key).unwrap().is_none());
    }

    #[test]
    fn count_le_counts() {
        let (kvs, block) = build(50);
        let mut d = DecodedBlock::default();
        block.decode_all(&mut d).unwrap();
        for (i, (k, _)) in kvs.iter().enumerate() {
            assert_eq!(d.count_le(k), i + 1);
        }
        assert_eq!(d.count_le(&key_with_version(b"a", 0)), 0);
        assert_eq!(d.count_le(&key_with_version(b"zzz", 0)), 50);
    }

    #[test]
    fn garbage_never_panics() {
        let (_, block) = build(40);
        let good = block.data().to_vec();
        let mut key = Vec::new();
        let mut d = DecodedBlock::default();
        for i in 0..good.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = good.clone();
                bad[i] ^= bit;
                if let Ok(b) = Block::new(BlockBytes::Owned(bad)) {
                    let _ = b.decode_all(&mut d);
                    let _ = b.seek(&key_with_version(b"key00007", 3), &mut key);
                }
            }
        }
        for cut in 0..good.len() {
            if let Ok(b) = Block::new(BlockBytes::Owned(good[..cut].to_vec())) {
                let _ = b.decode_all(&mut d);
            }
        }
        assert!(Block::new(BlockBytes::Owned(vec![1, 2])).is_err());
    }
}
