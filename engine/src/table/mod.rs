//! Sorted string tables: immutable files of internal keys and values, with
//! prefix-compressed blocks, a block index, a bloom filter over user keys and
//! a checksummed footer. The byte layout is specified in
//! `docs/engine-format.md (Table format)`.
//!
//! Thread-safety: a [`Table`] is immutable after [`Table::open`] and may be
//! shared between threads as `Arc<Table>`; a [`TableIter`] belongs to one
//! thread at a time; the [`BlockCache`] is shared by all tables of a database.

mod block;
mod bloom;
mod builder;
mod cache;
mod codec;
mod footer;
mod index;
mod index_cache;
mod iter;
mod meta;
mod reader;

pub(crate) use builder::{TableBuilder, TableOptions};
pub(crate) use cache::BlockCache;
pub(crate) use index_cache::IndexCache;
pub(crate) use iter::TableIter;
pub(crate) use reader::Table;
// For `crate::fuzzing` (the block-level decoders it drives directly).
pub(crate) use block::{Block, BlockBuilder, BlockBytes, DecodedBlock, RESTART_INTERVAL};
pub(crate) use codec::{read_block, write_block};
pub(crate) use footer::BlockHandle;

#[cfg(test)]
mod tests;
