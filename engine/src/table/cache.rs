//! A byte-bounded cache of decoded data blocks shared by all tables.
//!
//! Keyed by (table id, block offset); a block is checksummed and
//! decompressed once per fill. Table ids must not be reused while the cache
//! lives (blocks of a deleted table simply age out).
//!
//! Thread-safety: `Send + Sync`; all methods take `&self`.

use super::block::Block;
use quick_cache::sync::{Cache, DefaultLifecycle};
use quick_cache::Weighter;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Cache key: (table id, block offset).
type Key = (u64, u64);

/// Weighs a block by the memory it holds.
#[derive(Debug, Clone, Copy)]
struct BlockWeighter;

impl Weighter<Key, Arc<Block>> for BlockWeighter {
    fn weight(&self, _key: &Key, block: &Arc<Block>) -> u64 {
        block.memory_size() as u64
    }
}

/// Hashes cache keys with a cheap multiply-xorshift mix (keys are not
/// attacker-controlled, so no need for SipHash).
#[derive(Debug, Clone, Copy, Default)]
struct KeyHashBuilder;

/// State of one [`KeyHashBuilder`] hash.
#[derive(Debug, Default)]
struct KeyHasher(u64);

impl BuildHasher for KeyHashBuilder {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(23) ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        // murmur3's 64-bit finaliser spreads entropy to every bit.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        h ^= h >> 33;
        h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
        h ^ (h >> 33)
    }
}

/// Decoded blocks, bounded by total bytes.
pub(crate) struct BlockCache {
    /// The underlying sharded cache.
    inner: Cache<Key, Arc<Block>, BlockWeighter, KeyHashBuilder, DefaultLifecycle<Key, Arc<Block>>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockCache")
            .field("capacity_bytes", &self.inner.capacity())
            .field("used_bytes", &self.inner.weight())
            .field("blocks", &self.inner.len())
            .finish()
    }
}

impl BlockCache {
    /// A cache holding up to about `capacity_bytes` of blocks.
    pub(crate) fn new(capacity_bytes: usize) -> Self {
        let estimated_blocks = (capacity_bytes / 4096).max(16);
        BlockCache {
            inner: Cache::with(
                estimated_blocks,
                capacity_bytes as u64,
                BlockWeighter,
                KeyHashBuilder,
                DefaultLifecycle::default(),
            ),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The cached block at `offset` of table `table_id`.
    #[inline]
    pub(crate) fn get(&self, table_id: u64, offset: u64) -> Option<Arc<Block>> {
        let hit = self.inner.get(&(table_id, offset));
        let counter = if hit.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        hit
    }

    /// Lookups that found their block, and lookups that did not.
    pub(crate) fn hits_misses(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// Caches `block` as the block at `offset` of table `table_id`.
    pub(crate) fn insert(&self, table_id: u64, offset: u64, block: Arc<Block>) {
        self.inner.insert((table_id, offset), block);
    }

    /// Bytes of blocks currently cached (for statistics).
    pub(crate) fn used_bytes(&self) -> u64 {
        self.inner.weight()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::block::BlockBytes;

    /// An empty block whose buffer weighs `capacity` bytes.
    fn block(capacity: usize) -> Arc<Block> {
        let mut v = Vec::with_capacity(capacity);
        v.extend_from_slice(&0u32.to_le_bytes());
        Arc::new(Block::new(BlockBytes::Owned(v)).unwrap())
    }

    #[test]
    fn bounded_by_bytes() {
        let cache = BlockCache::new(64 << 10);
        for i in 0..1000u64 {
            cache.insert(1, i * 4096, block(4096));
        }
        assert!(
            cache.used_bytes() <= 64 << 10,
            "used {}",
            cache.used_bytes()
        );
        assert!(!cache.inner.is_empty());
        assert!(cache.inner.len() < 1000);
        let zero = BlockCache::new(0);
        zero.insert(1, 0, block(100));
        assert!(zero.get(1, 0).is_none());
    }
}
