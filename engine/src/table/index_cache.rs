//! A byte-bounded cache of decoded table indexes, shared by all tables of
//! a database. Tables opened with it keep no index of their own: a lookup
//! takes the index from here, decoding it from the file on a miss, so the
//! memory spent on indexes stays within the configured budget however
//! large the database grows.

use super::index::Index;
use quick_cache::sync::Cache;
use quick_cache::Weighter;
use std::fmt;
use std::sync::Arc;

#[derive(Clone)]
struct IndexWeighter;

impl Weighter<u64, Arc<Index>> for IndexWeighter {
    fn weight(&self, _key: &u64, index: &Arc<Index>) -> u64 {
        index.memory_bytes().max(1) as u64
    }
}

/// Decoded indexes by table id.
pub(crate) struct IndexCache {
    inner: Cache<u64, Arc<Index>, IndexWeighter>,
}

impl fmt::Debug for IndexCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IndexCache")
            .field("entries", &self.inner.len())
            .field("bytes", &self.inner.weight())
            .finish()
    }
}

impl IndexCache {
    /// A cache holding about `capacity_bytes` of decoded indexes.
    pub(crate) fn new(capacity_bytes: usize) -> IndexCache {
        let estimated = (capacity_bytes / (64 << 10)).max(16);
        IndexCache {
            inner: Cache::with_weighter(estimated, capacity_bytes as u64, IndexWeighter),
        }
    }

    /// The index of table `id`, decoding it with `load` on a miss.
    pub(crate) fn get_or_load<E>(
        &self,
        id: u64,
        load: impl FnOnce() -> Result<Index, E>,
    ) -> Result<Arc<Index>, E> {
        if let Some(i) = self.inner.get(&id) {
            return Ok(i);
        }
        let index = Arc::new(load()?);
        self.inner.insert(id, index.clone());
        Ok(index)
    }

    /// Bytes of indexes held.
    pub(crate) fn used_bytes(&self) -> u64 {
        self.inner.weight()
    }
}
