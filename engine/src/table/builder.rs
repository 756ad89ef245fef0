//! Writes a table file from entries added in ascending internal-key order.
//!
//! File layout: data blocks, index block, optional filter block, meta
//! block, footer; each block followed by its trailer (see
//! `docs/engine-format.md (Table format)`). The whole file is assembled in memory and
//! returned by [`TableBuilder::finish`].

use super::block::{BlockBuilder, RESTART_INTERVAL};
use super::bloom;
use super::codec::{stored_len, write_block, BlockCompressor};
use super::footer::{BlockHandle, Footer, FOOTER_LEN};
use super::index::{encode_value, separator, INDEX_VALUE_LEN};
use super::meta::Meta;
use crate::format::{compare_keys, key_hash, key_version, user_key, VERSION_LEN};
use crate::options::{Compression, Options};
use std::cmp::Ordering;

/// How tables are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TableOptions {
    /// Target uncompressed size of a data block; a block is closed once it
    /// reaches this size.
    pub block_size: usize,
    /// Bloom filter bits per user key; 0 writes no filter.
    pub bloom_bits_per_key: usize,
    /// Compression of data and index blocks.
    pub compression: Compression,
}

impl TableOptions {
    /// The table settings of the database options.
    pub(crate) fn from_options(o: &Options) -> Self {
        TableOptions {
            block_size: o.block_size,
            bloom_bits_per_key: o.bloom_bits_per_key,
            compression: o.compression,
        }
    }
}

/// Builds one table file in memory.
///
/// Preconditions: keys are internal keys (at least [`VERSION_LEN`] bytes)
/// added in strictly ascending [`compare_keys`] order.
#[derive(Debug)]
pub(crate) struct TableBuilder {
    /// Settings.
    opts: TableOptions,
    /// The file so far: stored data blocks.
    out: Vec<u8>,
    /// The data block being filled.
    data: BlockBuilder,
    /// Index entries for the blocks written so far.
    index: BlockBuilder,
    /// The last data block written, whose index entry waits for the next
    /// key (to pick a short separator).
    pending: Option<BlockHandle>,
    /// Scratch for separators.
    sep: Vec<u8>,
    /// Hashes of distinct user keys, for the filter.
    hashes: Vec<u64>,
    /// The last key added.
    last_key: Vec<u8>,
    /// Counts and bounds so far (`largest` is filled in by `finish`).
    meta: Meta,
    /// Present when compressing with zstd.
    compressor: Option<BlockCompressor>,
}

impl TableBuilder {
    /// An empty builder.
    pub(crate) fn new(opts: TableOptions) -> Self {
        let compressor = match opts.compression {
            Compression::None => None,
            Compression::Zstd(level) => BlockCompressor::new(level),
        };
        TableBuilder {
            opts,
            out: Vec::new(),
            data: BlockBuilder::new(RESTART_INTERVAL),
            index: BlockBuilder::new(RESTART_INTERVAL),
            pending: None,
            sep: Vec::new(),
            hashes: Vec::new(),
            last_key: Vec::new(),
            meta: Meta::default(),
            compressor,
        }
    }

    /// Adds an entry. `ikey` must sort strictly after the previous key.
    pub(crate) fn add(&mut self, ikey: &[u8], value: &[u8]) {
        debug_assert!(ikey.len() >= VERSION_LEN, "internal key too short");
        let first = self.meta.key_count == 0;
        debug_assert!(
            first || compare_keys(&self.last_key, ikey) == Ordering::Less,
            "table keys must strictly ascend"
        );
        if !self.data.is_empty() && self.data.estimated_size() >= self.opts.block_size {
            self.flush_data();
        }
        if let Some(handle) = self.pending.take() {
            separator(&self.last_key, ikey, &mut self.sep);
            self.index.add(&self.sep, &encode_value(handle));
        }
        if self.opts.bloom_bits_per_key > 0 && (first || user_key(&self.last_key) != user_key(ikey))
        {
            self.hashes.push(key_hash(user_key(ikey)));
        }
        self.data.add(ikey, value);
        if first {
            self.meta.smallest = ikey.to_vec();
        }
        self.meta.key_count += 1;
        self.meta.max_version = self.meta.max_version.max(key_version(ikey));
        self.last_key.clear();
        self.last_key.extend_from_slice(ikey);
    }

    /// True if nothing was added.
    pub(crate) fn is_empty(&self) -> bool {
        self.meta.key_count == 0
    }

    /// Approximate size of the file [`Self::finish`] would return now
    /// (exact for the data written so far; the open block is counted
    /// uncompressed).
    pub(crate) fn estimated_size(&self) -> u64 {
        let open_block = if self.data.is_empty() {
            0
        } else {
            stored_len(self.data.estimated_size())
        };
        let blocks = self.meta.data_blocks as usize + usize::from(!self.data.is_empty());
        let pending = usize::from(self.pending.is_some() || !self.data.is_empty());
        let index = self.index.estimated_size()
            + pending * (self.last_key.len() + INDEX_VALUE_LEN + 3)
            + blocks / 4;
        let filter = match (self.opts.bloom_bits_per_key, self.hashes.len()) {
            (0, _) | (_, 0) => 0,
            (bpk, n) => stored_len(bloom::encoded_len(n, bpk)),
        };
        let meta = 32 + self.meta.smallest.len() + self.last_key.len();
        (self.out.len() + open_block + stored_len(index) + filter + stored_len(meta) + FOOTER_LEN)
            as u64
    }

    /// Closes the open data block and writes it out.
    fn flush_data(&mut self) {
        debug_assert!(!self.data.is_empty());
        debug_assert!(self.pending.is_none());
        let handle = write_block(&mut self.out, self.data.finish(), self.compressor.as_mut());
        self.data.reset();
        self.pending = Some(handle);
        self.meta.data_blocks += 1;
    }

    /// Writes the index, filter, meta block and footer; returns the file.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        if !self.data.is_empty() {
            self.flush_data();
        }
        if let Some(handle) = self.pending.take() {
            self.index.add(&self.last_key, &encode_value(handle));
        }
        debug_assert_eq!(self.index.len() as u64, self.meta.data_blocks);
        let index = write_block(&mut self.out, self.index.finish(), self.compressor.as_mut());
        let filter = if self.opts.bloom_bits_per_key > 0 && !self.hashes.is_empty() {
            let mut raw = Vec::with_capacity(bloom::encoded_len(
                self.hashes.len(),
                self.opts.bloom_bits_per_key,
            ));
            bloom::build(&self.hashes, self.opts.bloom_bits_per_key, &mut raw);
            Some(write_block(&mut self.out, &raw, None))
        } else {
            None
        };
        self.meta.largest = std::mem::take(&mut self.last_key);
        let mut raw = Vec::new();
        self.meta.encode_into(&mut raw);
        let meta = write_block(&mut self.out, &raw, None);
        Footer {
            index,
            filter,
            meta,
        }
        .encode_into(&mut self.out);
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::key_with_version;

    #[test]
    fn estimate_tracks_final_size() {
        for compression in [Compression::None, Compression::Zstd(3)] {
            let opts = TableOptions {
                block_size: 1024,
                bloom_bits_per_key: 10,
                compression,
            };
            let mut b = TableBuilder::new(opts);
            assert!(b.is_empty());
            let empty_estimate = b.estimated_size();
            for i in 0..2000u32 {
                b.add(
                    &key_with_version(format!("k{i:06}").as_bytes(), 1),
                    &[7u8; 40],
                );
            }
            assert!(!b.is_empty());
            let est = b.estimated_size();
            assert!(est > empty_estimate);
            let file = b.finish();
            // Compression shrinks the index and the open block below their
            // (uncompressed) estimates.
            let slack = if compression == Compression::None {
                11
            } else {
                13
            };
            let (lo, hi) = (file.len() as u64 * 9 / 10, file.len() as u64 * slack / 10);
            assert!(
                (lo..=hi).contains(&est),
                "{compression:?}: estimate {est} vs {}",
                file.len()
            );
        }
        let empty = TableBuilder::new(TableOptions {
            block_size: 4096,
            bloom_bits_per_key: 10,
            compression: Compression::None,
        });
        let est = empty.estimated_size();
        assert_eq!(est, empty.finish().len() as u64);
    }
}
