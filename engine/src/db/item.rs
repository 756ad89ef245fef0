//! A key-value pair returned by reads and iterators.

use super::DbInner;
use crate::format::ValueStruct;
use crate::Result;
use std::sync::Arc;

/// One version of one key. The value is fetched lazily: for values kept in
/// the value log, [`Item::value`] reads it; key-only iteration never does.
#[derive(Debug, Clone)]
pub struct Item {
    pub(crate) key: Vec<u8>,
    pub(crate) version: u64,
    pub(crate) vs: ValueStruct,
    pub(crate) db: Arc<DbInner>,
}

impl Item {
    /// The user key.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The commit timestamp of this version.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The value (empty for a deletion marker).
    pub fn value(&self) -> Result<Vec<u8>> {
        self.db.resolve_value(&self.vs)
    }

    /// The byte the writer attached with [`crate::Entry::with_user_meta`].
    pub fn user_meta(&self) -> u8 {
        self.vs.user_meta
    }

    /// Expiry as Unix seconds; 0 when the entry never expires.
    pub fn expires_at(&self) -> u64 {
        self.vs.expires_at
    }

    /// True if this version is a deletion marker or has expired. Only
    /// all-versions iteration returns such items.
    pub fn is_deleted_or_expired(&self) -> bool {
        self.vs.is_deleted_or_expired(crate::format::now_secs())
    }

    /// True if the value lives in the value log (reading it costs an I/O).
    pub fn value_in_log(&self) -> bool {
        self.vs.pointer().is_some()
    }
}
