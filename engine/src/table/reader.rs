//! An open table: footer, index, filter and meta parsed and checked at
//! open; data blocks read (and checksummed) on demand, through the block
//! cache when there is one.
//!
//! Thread-safety: a [`Table`] is immutable and `Send + Sync`; share it as
//! `Arc<Table>`. The bytes behind it (a memory map) must not change while
//! it is open.

use super::block::{Block, BlockBytes, DecodedBlock};
use super::bloom;
use super::cache::BlockCache;
use super::codec::read_block;
use super::footer::{BlockHandle, Footer, FOOTER_LEN};
use super::index::Index;
use super::index_cache::IndexCache;
use super::meta::Meta;
use crate::format::{compare_keys, key_hash, key_version, user_key};
use crate::fs::FileBytes;
use crate::{Error, Result};
use std::cmp::Ordering;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a table finds its decoded index.
enum IndexSlot {
    /// Decoded at open and kept for the table's life.
    Pinned(Arc<Index>),
    /// Decoded on demand into the shared, bounded cache.
    Cached {
        cache: Arc<IndexCache>,
        handle: BlockHandle,
    },
}

/// An immutable, open table file.
pub(crate) struct Table {
    /// Unique id; the block cache key prefix.
    id: u64,
    /// Where the file lives (for errors).
    path: PathBuf,
    /// The whole file.
    file: FileBytes,
    /// Shared decoded-block cache.
    cache: Option<Arc<BlockCache>>,
    /// The block index: decoded and kept, or fetched from the shared
    /// index cache.
    index: IndexSlot,
    /// Number of data blocks.
    blocks: usize,
    /// The bloom filter block's contents, if any.
    filter: Option<BlockBytes>,
    /// Counts and key bounds.
    meta: Meta,
    /// Where the meta block is (for error messages).
    meta_offset: u64,
}

impl fmt::Debug for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("id", &self.id)
            .field("path", &self.path)
            .field("size", &self.size())
            .field("key_count", &self.meta.key_count)
            .field("blocks", &self.blocks)
            .finish()
    }
}

impl Table {
    /// Opens the table in `data`, checking the footer (magic, version,
    /// checksum), the block layout, and the index, filter and meta blocks
    /// (checksums and structure). Data blocks are checked when read.
    /// Never panics on bad bytes; returns [`Error::Corruption`] instead.
    ///
    /// `id` must be unique among the tables sharing `cache`.
    pub(crate) fn open(
        id: u64,
        path: PathBuf,
        data: FileBytes,
        cache: Option<Arc<BlockCache>>,
    ) -> Result<Table> {
        Table::open_with(id, path, data, cache, None)
    }

    /// [`Table::open`], keeping the index in `index_cache` (bounded,
    /// shared) instead of in the table. `id` must be unique among the
    /// tables sharing either cache.
    pub(crate) fn open_with(
        id: u64,
        path: PathBuf,
        data: FileBytes,
        cache: Option<Arc<BlockCache>>,
        index_cache: Option<Arc<IndexCache>>,
    ) -> Result<Table> {
        let bytes = (*data).as_ref();
        let corrupt = |offset: u64, reason: &str| Error::corruption(&path, offset, reason);
        let footer_off = bytes
            .len()
            .checked_sub(FOOTER_LEN)
            .ok_or_else(|| corrupt(0, "file shorter than a table footer"))?;
        let footer =
            Footer::decode(&bytes[footer_off..]).map_err(|r| corrupt(footer_off as u64, &r))?;
        check_layout(&footer, footer_off as u64).map_err(|r| corrupt(footer_off as u64, r))?;

        let index_block = read_block(&path, &data, footer.index, "index", false)?;
        let index_block = Block::new(index_block).map_err(|r| corrupt(footer.index.offset, r))?;
        let index = Index::decode(&index_block, footer.index.offset)
            .map_err(|r| corrupt(footer.index.offset, r))?;

        let filter = match footer.filter {
            Some(h) => {
                let f = read_block(&path, &data, h, "filter", false)?;
                bloom::validate(f.as_slice()).map_err(|r| corrupt(h.offset, r))?;
                Some(f)
            }
            None => None,
        };

        let meta_block = read_block(&path, &data, footer.meta, "meta", false)?;
        let meta =
            Meta::decode(meta_block.as_slice()).map_err(|r| corrupt(footer.meta.offset, r))?;
        check_meta_against_index(&meta, &index).map_err(|r| corrupt(footer.meta.offset, r))?;

        let blocks = index.len();
        let index = match index_cache {
            Some(c) => {
                c.get_or_load::<Error>(id, || Ok(index))?;
                IndexSlot::Cached {
                    cache: c,
                    handle: footer.index,
                }
            }
            None => IndexSlot::Pinned(Arc::new(index)),
        };
        Ok(Table {
            id,
            path,
            file: data,
            cache,
            index,
            blocks,
            filter,
            meta,
            meta_offset: footer.meta.offset,
        })
    }

    /// The table's id.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The table's file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// First internal key (empty for an empty table).
    pub(crate) fn smallest(&self) -> &[u8] {
        &self.meta.smallest
    }

    /// Last internal key (empty for an empty table).
    pub(crate) fn largest(&self) -> &[u8] {
        &self.meta.largest
    }

    /// File size in bytes.
    pub(crate) fn size(&self) -> u64 {
        (*self.file).as_ref().len() as u64
    }

    /// Number of entries (internal keys).
    pub(crate) fn key_count(&self) -> u64 {
        self.meta.key_count
    }

    /// Largest version of any key (0 for an empty table).
    pub(crate) fn max_version(&self) -> u64 {
        self.meta.max_version
    }

    /// Number of data blocks.
    pub(crate) fn block_count(&self) -> usize {
        self.blocks
    }

    /// Every `step`-th block's index separator (blocks `step-1`, `2*step-1`,
    /// …): internal keys at or after a block's last key and before the next
    /// block's first. Streams cut key ranges at these.
    pub(crate) fn block_separators(&self, step: usize) -> Result<Vec<Vec<u8>>> {
        let index = self.index()?;
        let step = step.max(1);
        Ok((step - 1..index.len())
            .step_by(step)
            .map(|i| index.key(i).to_vec())
            .collect())
    }

    /// False if no key with user-key hash `user_key_hash`
    /// ([`crate::format::key_hash`]) is in the table; true when unsure or
    /// when the table has no filter.
    #[inline]
    pub(crate) fn may_contain(&self, user_key_hash: u64) -> bool {
        match &self.filter {
            Some(f) => bloom::may_contain(f.as_slice(), user_key_hash),
            None => true,
        }
    }

    /// The first entry whose internal key is `>= seek` (by
    /// [`compare_keys`]), as owned (key, value).
    pub(crate) fn seek_first(&self, seek: &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let mut key = Vec::new();
        // At most two blocks: the one the index names, and (if `seek` fell
        // between its last key and its separator) the next one.
        let index = self.index()?;
        for i in index.find(seek)..index.len() {
            let block = self.data_block(i)?;
            let found = block
                .seek(seek, &mut key)
                .map_err(|r| self.corrupt_block(i, r))?;
            if let Some(pos) = found {
                let value = block.value(&pos).to_vec();
                return Ok(Some((key, value)));
            }
        }
        Ok(None)
    }

    /// Re-checks the footer, index, filter and meta blocks, then reads and
    /// checksums every data block and checks every entry: keys ascend, lie
    /// within their index bounds, pass the filter, and match the meta
    /// block's count, bounds and max version. Bypasses the cache.
    pub(crate) fn verify(&self) -> Result<()> {
        let fresh = Table::open(self.id, self.path.clone(), self.file.clone(), None)?;
        let index = fresh.index()?;
        let mut decoded = DecodedBlock::default();
        let mut prev: Vec<u8> = Vec::new();
        let mut count = 0u64;
        let mut max_version = 0u64;
        for i in 0..index.len() {
            let block = fresh.load_block(i, false)?;
            block
                .decode_all(&mut decoded)
                .map_err(|r| fresh.corrupt_block(i, r))?;
            for j in 0..decoded.len() {
                let k = decoded.key(j);
                let bad = |r: &str| Err(fresh.corrupt_block(i, r));
                if count > 0 && compare_keys(&prev, k) != Ordering::Less {
                    return bad("keys out of order");
                }
                if compare_keys(k, index.key(i)) == Ordering::Greater {
                    return bad("key above its index separator");
                }
                if i > 0 && compare_keys(k, index.key(i - 1)) != Ordering::Greater {
                    return bad("key not above the previous block's separator");
                }
                if !fresh.may_contain(key_hash(user_key(k))) {
                    return bad("bloom filter misses a key");
                }
                if count == 0 && k != &fresh.meta.smallest[..] {
                    return bad("first key differs from the recorded smallest key");
                }
                max_version = max_version.max(key_version(k));
                count += 1;
                prev.clear();
                prev.extend_from_slice(k);
            }
        }
        let meta_off = self.meta_offset;
        if count != fresh.meta.key_count {
            return Err(self.corrupt(
                meta_off,
                &format!("{count} entries, meta says {}", fresh.meta.key_count),
            ));
        }
        if prev != fresh.meta.largest {
            return Err(self.corrupt(meta_off, "last key differs from the recorded largest key"));
        }
        if max_version != fresh.meta.max_version {
            return Err(self.corrupt(meta_off, "max version differs from the meta block"));
        }
        Ok(())
    }

    /// The index, from the table or the shared cache (decoded from the
    /// file on a miss).
    pub(super) fn index(&self) -> Result<Arc<Index>> {
        match &self.index {
            IndexSlot::Pinned(i) => Ok(i.clone()),
            IndexSlot::Cached { cache, handle } => cache.get_or_load(self.id, || {
                let corrupt = |r: &str| Error::corruption(&self.path, handle.offset, r);
                let block = read_block(&self.path, &self.file, *handle, "index", false)?;
                let block = Block::new(block).map_err(&corrupt)?;
                Index::decode(&block, handle.offset).map_err(&corrupt)
            }),
        }
    }

    /// Data block `i`, from the cache or read, checksummed and decoded
    /// (then cached). Precondition: `i < block_count()`.
    pub(super) fn data_block(&self, i: usize) -> Result<Arc<Block>> {
        let Some(cache) = &self.cache else {
            return Ok(Arc::new(self.load_block(i, false)?));
        };
        let offset = self.index()?.handle(i).offset;
        if let Some(block) = cache.get(self.id, offset) {
            return Ok(block);
        }
        let block = Arc::new(self.load_block(i, true)?);
        cache.insert(self.id, offset, block.clone());
        Ok(block)
    }

    /// Reads and checks data block `i`, bypassing the cache.
    fn load_block(&self, i: usize, owned: bool) -> Result<Block> {
        let h = self.index()?.handle(i);
        let bytes = read_block(&self.path, &self.file, h, "data", owned)?;
        let block = Block::new(bytes).map_err(|r| self.corrupt(h.offset, r))?;
        if block.is_empty() {
            return Err(self.corrupt(h.offset, "empty data block"));
        }
        Ok(block)
    }

    /// A corruption error at data block `i`.
    pub(super) fn corrupt_block(&self, i: usize, reason: &str) -> Error {
        let offset = self.index().map_or(0, |x| x.handle(i).offset);
        self.corrupt(offset, reason)
    }

    /// A corruption error in this file.
    fn corrupt(&self, offset: u64, reason: &str) -> Error {
        Error::corruption(&self.path, offset, reason)
    }
}

/// Checks that the index, filter and meta blocks follow each other and the
/// footer without gaps: `data | index | filter? | meta | footer`.
fn check_layout(f: &Footer, footer_off: u64) -> std::result::Result<(), &'static str> {
    let end = |h: BlockHandle| h.end().ok_or("block handle overflows");
    let mut next = end(f.index)?;
    if let Some(filter) = f.filter {
        if filter.offset != next || filter.len == 0 {
            return Err("filter block misplaced");
        }
        next = end(filter)?;
    }
    if f.meta.offset != next || end(f.meta)? != footer_off {
        return Err("meta block misplaced");
    }
    Ok(())
}

/// Cross-checks the meta block with the index.
fn check_meta_against_index(meta: &Meta, index: &Index) -> std::result::Result<(), &'static str> {
    if meta.data_blocks != index.len() as u64 {
        return Err("meta block count differs from the index");
    }
    if let Some(last) = index.len().checked_sub(1) {
        if index.key(last) != &meta.largest[..] {
            return Err("largest key differs from the last index key");
        }
        if compare_keys(&meta.smallest, index.key(0)) == Ordering::Greater {
            return Err("smallest key above the first index key");
        }
    }
    Ok(())
}
