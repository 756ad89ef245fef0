//! Whole-state snapshots for Raft: export with the engine's parallel
//! stream (every version, deletions included, of every area: data, events,
//! meta, leases), import with the stream writer into a fresh database.
//!
//! A snapshot is a sequence of chunks; each chunk is one postcard-encoded
//! `SnapshotBatch` (one engine `KvBatch`). Chunks must be imported in the
//! order they were exported. The state machine installs a snapshot by
//! importing it into a **new, empty directory**, then swapping that
//! directory in for the old one (the stream writer needs an empty
//! database; an ingest into a live one would need strictly newer
//! versions).

use super::error::{MvccError, Result};
use super::store::MvccStore;
use serde::{Deserialize, Serialize};
use sett_engine::{Db, KvBatch, KvEntry, Options, StreamOptions, StreamWriter};

#[derive(Debug, Serialize, Deserialize)]
struct SnapshotEntry {
    key: Vec<u8>,
    value: Vec<u8>,
    version: u64,
    user_meta: u8,
    expires_at: u64,
    deleted: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct SnapshotBatch {
    stream_id: u32,
    entries: Vec<SnapshotEntry>,
}

/// What an export covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The store's current revision in the snapshot.
    pub revision: i64,
    /// The compacted revision in the snapshot.
    pub compact_revision: i64,
    /// Engine entries exported.
    pub entries: u64,
    /// Chunks handed to the sink.
    pub chunks: u64,
}

impl MvccStore {
    /// Exports the whole state as chunks handed to `sink` (on this
    /// thread). Holds the apply lock for the duration, so the snapshot is
    /// exactly the state after the last apply (meta included); reads go
    /// on meanwhile.
    pub fn export_snapshot(
        &self,
        mut sink: impl FnMut(Vec<u8>) -> Result<()>,
    ) -> Result<SnapshotInfo> {
        let _g = self.apply_lock.lock();
        let revision = self.current_revision();
        let compact_revision = self.compacted_revision();
        let mut chunks = 0u64;
        let mut sink_err: Option<MvccError> = None;
        let summary = self
            .db
            .stream(StreamOptions {
                read_ts: Some(revision as u64),
                all_versions: true,
                workers: 2,
                ..StreamOptions::default()
            })
            .run(|batch: KvBatch| {
                let b = SnapshotBatch {
                    stream_id: batch.stream_id,
                    entries: batch
                        .entries
                        .into_iter()
                        .map(|e| SnapshotEntry {
                            key: e.key,
                            value: e.value,
                            version: e.version,
                            user_meta: e.user_meta,
                            expires_at: e.expires_at,
                            deleted: e.deleted,
                        })
                        .collect(),
                };
                let bytes = postcard::to_stdvec(&b).map_err(|e| {
                    sett_engine::Error::InvalidArgument(format!("snapshot encode: {e}"))
                })?;
                chunks += 1;
                sink(bytes).map_err(|e| {
                    let msg = e.to_string();
                    sink_err = Some(e);
                    sett_engine::Error::InvalidArgument(format!("snapshot sink: {msg}"))
                })
            });
        if let Some(e) = sink_err {
            return Err(e);
        }
        let summary = summary?;
        Ok(SnapshotInfo {
            revision,
            compact_revision,
            entries: summary.entries,
            chunks,
        })
    }
}

/// Magic at the start of a framed snapshot ([`MvccStore::write_snapshot`]).
const FRAMED_MAGIC: &[u8; 8] = b"SETTMVC1";
/// Largest chunk a framed snapshot may hold.
const FRAME_BYTES_MAX: usize = 256 << 20;

impl MvccStore {
    /// [`MvccStore::export_snapshot`] into one byte stream: `"SETTMVC1"`,
    /// then per chunk `be32 length ‖ chunk`, then `be32 0` as the end mark.
    pub fn write_snapshot(&self, out: &mut dyn std::io::Write) -> Result<SnapshotInfo> {
        let io = |e: std::io::Error| MvccError::Storage(sett_engine::Error::Io(e));
        out.write_all(FRAMED_MAGIC).map_err(io)?;
        let info = self.export_snapshot(|chunk| {
            let len = u32::try_from(chunk.len())
                .ok()
                .filter(|l| *l != 0 && (*l as usize) <= FRAME_BYTES_MAX)
                .ok_or_else(|| MvccError::Corrupt(format!("chunk of {} bytes", chunk.len())))?;
            out.write_all(&len.to_be_bytes()).map_err(io)?;
            out.write_all(&chunk).map_err(io)
        })?;
        out.write_all(&0u32.to_be_bytes()).map_err(io)?;
        Ok(info)
    }
}

/// Builds a store from snapshot chunks in a fresh database.
#[derive(Debug)]
pub struct SnapshotImporter {
    db: Db,
    writer: StreamWriter,
}

impl SnapshotImporter {
    /// Opens a new database with `opts` (managed mode is forced). The
    /// database must be empty.
    pub fn new(mut opts: Options) -> Result<SnapshotImporter> {
        opts.managed = true;
        let db = Db::open(opts)?;
        if db.begin_read().read_ts() != 0 {
            return Err(MvccError::Corrupt(
                "snapshot import needs an empty database".into(),
            ));
        }
        let writer = db.stream_writer()?;
        Ok(SnapshotImporter { db, writer })
    }

    /// Ingests one chunk from [`MvccStore::export_snapshot`].
    pub fn write_chunk(&mut self, chunk: &[u8]) -> Result<()> {
        let b: SnapshotBatch = postcard::from_bytes(chunk)
            .map_err(|e| MvccError::Corrupt(format!("snapshot chunk: {e}")))?;
        self.writer.write(KvBatch {
            stream_id: b.stream_id,
            entries: b
                .entries
                .into_iter()
                .map(|e| KvEntry {
                    key: e.key,
                    value: e.value,
                    version: e.version,
                    user_meta: e.user_meta,
                    expires_at: e.expires_at,
                    deleted: e.deleted,
                })
                .collect(),
        })?;
        Ok(())
    }

    /// Reads a whole framed snapshot ([`MvccStore::write_snapshot`]) from
    /// `input` into a new database opened with `opts`.
    pub fn read_from(opts: Options, input: &mut dyn std::io::Read) -> Result<MvccStore> {
        let io = |e: std::io::Error| MvccError::Corrupt(format!("snapshot stream: {e}"));
        let mut magic = [0u8; 8];
        input.read_exact(&mut magic).map_err(io)?;
        if &magic != FRAMED_MAGIC {
            return Err(MvccError::Corrupt("not an MVCC snapshot stream".into()));
        }
        let mut imp = SnapshotImporter::new(opts)?;
        let mut buf = Vec::new();
        loop {
            let mut len = [0u8; 4];
            input.read_exact(&mut len).map_err(io)?;
            let len = u32::from_be_bytes(len) as usize;
            if len == 0 {
                break;
            }
            if len > FRAME_BYTES_MAX {
                return Err(MvccError::Corrupt(format!("snapshot frame of {len} bytes")));
            }
            buf.resize(len, 0);
            input.read_exact(&mut buf).map_err(io)?;
            imp.write_chunk(&buf)?;
        }
        imp.finish()
    }

    /// Makes the ingested state visible and opens it as a store.
    pub fn finish(self) -> Result<MvccStore> {
        self.writer.finish()?;
        MvccStore::from_db(self.db)
    }
}
