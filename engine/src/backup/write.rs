//! Taking a backup: a parallel all-versions stream of one snapshot,
//! serialised by the caller's thread into header, frames and trailer.
//!
//! Hot: the snapshot is an ordinary read timestamp, held for the whole
//! backup, so commits, flushes and compactions go on meanwhile and the
//! backup still shows exactly the snapshot (compaction keeps every version
//! a registered reader can see). Works on a read-only handle.

use super::fingerprint::Fingerprint;
use super::format::{encode_frame, Header, Trailer};
use crate::db::Db;
use crate::format::now_secs;
use crate::stream::StreamOptions;
use crate::txn::Txn;
use crate::{Error, Result};
use std::io::Write;

/// How to take a backup; see [`Db::backup_with`].
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// 0 for a full backup; otherwise only versions newer than this are
    /// written (deletions included), normally the `read_ts` of the
    /// previous backup of the chain.
    pub since_ts: u64,
    /// The snapshot to back up; `None` = the newest commit. Managed-mode
    /// callers pass an applied timestamp.
    pub read_ts: Option<u64>,
    /// Threads reading the database in parallel.
    pub workers: usize,
    /// Approximate key + value bytes per frame.
    pub frame_bytes: usize,
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions {
            since_ts: 0,
            read_ts: None,
            workers: 2,
            frame_bytes: 1 << 20,
        }
    }
}

/// What a backup wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackupSummary {
    /// The `since_ts` the backup starts after (0 = full).
    pub since_ts: u64,
    /// The snapshot written: pass it as `since_ts` to the next
    /// incremental backup of the chain.
    pub read_ts: u64,
    /// Entries (versions, deletion markers included) written.
    pub entries: u64,
    /// Frames written (end-of-range markers included).
    pub frames: u64,
    /// Bytes of keys and values written.
    pub kv_bytes: u64,
    /// Bytes of backup written, header and trailer included.
    pub bytes: u64,
}

impl Db {
    /// Writes a backup of the newest snapshot to `w`: a full one when
    /// `since_ts` is 0, else an incremental one holding the versions
    /// committed after `since_ts` (the `read_ts` of the previous backup).
    /// Runs while other threads keep writing. `w` is flushed but not
    /// synced; for a file, call `sync_all` afterwards.
    pub fn backup(&self, w: impl Write, since_ts: u64) -> Result<BackupSummary> {
        self.backup_with(
            w,
            BackupOptions {
                since_ts,
                ..BackupOptions::default()
            },
        )
    }

    /// [`Db::backup`] with every option.
    pub fn backup_with(&self, mut w: impl Write, opts: BackupOptions) -> Result<BackupSummary> {
        // Register the snapshot before anything else so that compaction
        // keeps it for the whole backup.
        let txn = match opts.read_ts {
            None => self.begin_read(),
            Some(ts) => {
                let visible = self.inner().oracle.visible_ts();
                if ts > visible {
                    return Err(Error::InvalidArgument(format!(
                        "backup read_ts {ts} is newer than the newest commit {visible}"
                    )));
                }
                self.inner().oracle.acquire_read_at(ts);
                Txn::with_read_ts(self.clone(), false, false, ts)
            }
        };
        let read_ts = txn.read_ts();
        if opts.since_ts > read_ts {
            return Err(Error::InvalidArgument(format!(
                "backup since_ts {} is newer than the snapshot {read_ts}",
                opts.since_ts
            )));
        }
        let header = Header {
            since_ts: opts.since_ts,
            read_ts,
            created_at_secs: now_secs(),
        };
        let header_bytes = header.encode();
        let mut body_crc = crc32fast::Hasher::new();
        body_crc.update(&header_bytes);
        w.write_all(&header_bytes)?;
        let mut summary = BackupSummary {
            since_ts: opts.since_ts,
            read_ts,
            bytes: header_bytes.len() as u64,
            ..BackupSummary::default()
        };

        let mut frame = Vec::new();
        let stream = self.stream(StreamOptions {
            read_ts: Some(read_ts),
            prefix: Vec::new(),
            since_ts: opts.since_ts,
            workers: opts.workers.max(1),
            all_versions: true,
            batch_bytes: opts.frame_bytes.max(1),
        });
        let streamed = stream.run(|batch| {
            for e in &batch.entries {
                debug_assert!(e.version > opts.since_ts && e.version <= read_ts);
            }
            frame.clear();
            encode_frame(&batch, &mut frame);
            body_crc.update(&frame);
            w.write_all(&frame)?;
            summary.entries += batch.entries.len() as u64;
            summary.frames += 1;
            summary.kv_bytes += batch.payload_bytes() as u64;
            summary.bytes += frame.len() as u64;
            Ok(())
        })?;
        // Pair check: the stream delivered what the frames hold.
        assert_eq!(streamed.read_ts, read_ts);
        assert_eq!(streamed.entries, summary.entries);
        // What the restore must reproduce, from the same snapshot.
        let live = Fingerprint::of_snapshot(&txn)?;
        drop(txn);

        let trailer = Trailer {
            frames: summary.frames,
            entries: summary.entries,
            live,
            body_crc: body_crc.finalize(),
        }
        .encode();
        w.write_all(&trailer)?;
        w.flush()?;
        summary.bytes += trailer.len() as u64;
        Ok(summary)
    }
}
