//! What a stream carries.

/// One version of one key, as exported and ingested.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KvEntry {
    /// The user key.
    pub key: Vec<u8>,
    /// The value (empty for a deletion).
    pub value: Vec<u8>,
    /// Commit timestamp of this version.
    pub version: u64,
    /// The user's byte.
    pub user_meta: u8,
    /// Expiry in Unix seconds; 0 = never.
    pub expires_at: u64,
    /// A deletion marker.
    pub deleted: bool,
}

/// A run of entries from one key range of a stream, in key order (and, for
/// one key, newest version first). Ranges of different `stream_id`s never
/// overlap; batches of one range arrive in order.
///
/// A batch with no entries marks the end of its range: nothing more comes
/// for that `stream_id` (an export sends one after each range it finishes;
/// [`crate::StreamWriter`] then writes that range's last table).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KvBatch {
    /// Which key range the entries belong to.
    pub stream_id: u32,
    /// The entries.
    pub entries: Vec<KvEntry>,
}

impl KvBatch {
    /// Bytes of keys and values in the batch.
    pub fn payload_bytes(&self) -> usize {
        self.entries
            .iter()
            .map(|e| e.key.len() + e.value.len())
            .sum()
    }
}
