//! Restoring: a full backup into an empty database, then each incremental
//! backup of its chain on top.
//!
//! Every byte is checked before anything becomes visible: frames are
//! checksummed one by one and fed to a [`crate::StreamWriter`], whose tables
//! stay unrecorded until the trailer (frame and entry counts, checksum of
//! the whole body) and the end of input have been verified; only then is
//! the writer finished, in one manifest edit. A bad or truncated backup
//! leaves the database exactly as it was (the unrecorded tables are
//! deleted).
//!
//! The chain: a restored database's newest timestamp is set to the
//! backup's `read_ts` (in the same manifest edit), and an incremental
//! backup is applied only if its `since_ts` equals that timestamp. So a
//! missing link, a backup applied twice, or a write made to the restored
//! database in between is refused.
//!
//! REQUIRES: no other thread writes to the database during
//! [`Db::load_backup`] (the stream writer's rule).

use super::fingerprint::{counts, entry_counts, Fingerprint};
use super::format::{
    decode_frame, Header, Trailer, FRAME_LEN_MAX, FRAME_PREFIX_LEN, HEADER_LEN, TRAILER_LEN,
    TRAILER_MARKER,
};
use crate::db::Db;
use crate::format::get_u32;
use crate::options::Options;
use crate::stream::KvBatch;
use crate::{Error, Result};
use std::collections::HashMap;
use std::io::{ErrorKind, Read};
use std::path::Path;

/// The name corruption errors give to a backup (a reader has no path).
const BACKUP_NAME: &str = "<backup>";

/// What a restore applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreSummary {
    /// The backup's `since_ts` (0 = a full backup).
    pub since_ts: u64,
    /// The backup's snapshot; the database's newest timestamp after the
    /// restore, and the `since_ts` the next incremental must have.
    pub read_ts: u64,
    /// Entries ingested.
    pub entries: u64,
    /// Frames read.
    pub frames: u64,
    /// Bytes of backup read.
    pub bytes: u64,
}

fn corrupt(offset: u64, reason: impl Into<String>) -> Error {
    Error::corruption(BACKUP_NAME, offset, reason)
}

/// Reads and checks a backup: header, frames, trailer, end of input.
pub(crate) struct FrameReader<R> {
    r: R,
    /// Bytes consumed so far.
    offset: u64,
    body_crc: crc32fast::Hasher,
    frames: u64,
    entries: u64,
    payload: Vec<u8>,
    /// Set once the trailer and the end of input are verified.
    trailer: Option<Trailer>,
}

impl<R: Read> FrameReader<R> {
    pub(crate) fn new(r: R) -> Self {
        FrameReader {
            r,
            offset: 0,
            body_crc: crc32fast::Hasher::new(),
            frames: 0,
            entries: 0,
            payload: Vec::new(),
            trailer: None,
        }
    }

    /// Fills `buf` or fails with a truncation error naming `what`.
    fn fill(&mut self, buf: &mut [u8], what: &str) -> Result<()> {
        match self.r.read_exact(buf) {
            Ok(()) => {
                self.offset += buf.len() as u64;
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => Err(corrupt(
                self.offset,
                format!("backup is truncated: input ends inside the {what}"),
            )),
            Err(e) => Err(Error::Io(e)),
        }
    }

    pub(crate) fn header(&mut self) -> Result<Header> {
        let mut b = [0u8; HEADER_LEN];
        self.fill(&mut b, "header")?;
        self.body_crc.update(&b);
        Header::decode(&b).map_err(|(off, reason)| corrupt(off, reason))
    }

    /// The next frame's batch, or `None` once the trailer and the end of
    /// input have been verified.
    pub(crate) fn next_frame(&mut self) -> Result<Option<KvBatch>> {
        assert!(self.trailer.is_none(), "read past the trailer");
        let start = self.offset;
        let mut prefix = [0u8; FRAME_PREFIX_LEN];
        self.fill(
            &mut prefix[..4],
            "frame length (no trailer: the backup is incomplete)",
        )?;
        let len = get_u32(&prefix, 0).unwrap_or_default();
        if len == TRAILER_MARKER {
            self.trailer(start)?;
            return Ok(None);
        }
        self.fill(&mut prefix[4..], "frame header")?;
        if !(5..=FRAME_LEN_MAX).contains(&len) {
            return Err(corrupt(start, format!("bad frame length {len}")));
        }
        let crc = get_u32(&prefix, 4).unwrap_or_default();
        // Read through `take` so that a corrupt length cannot allocate
        // more than the input holds.
        self.payload.clear();
        let got = (&mut self.r)
            .take(u64::from(len))
            .read_to_end(&mut self.payload)?;
        self.offset += got as u64;
        if got < len as usize {
            return Err(corrupt(
                start,
                format!("backup is truncated: a frame of {len} bytes has only {got}"),
            ));
        }
        let want = crc32fast::hash(&self.payload);
        if crc != want {
            return Err(corrupt(
                start,
                format!("frame checksum mismatch (stored {crc:#010x}, computed {want:#010x})"),
            ));
        }
        let batch = decode_frame(&self.payload)
            .map_err(|(off, reason)| corrupt(start + (FRAME_PREFIX_LEN + off) as u64, reason))?;
        self.body_crc.update(&prefix);
        self.body_crc.update(&self.payload);
        self.frames += 1;
        self.entries += batch.entries.len() as u64;
        Ok(Some(batch))
    }

    fn trailer(&mut self, start: u64) -> Result<()> {
        let mut b = [0u8; TRAILER_LEN];
        b[..4].copy_from_slice(&TRAILER_MARKER.to_le_bytes());
        self.fill(&mut b[4..], "trailer")?;
        let t = Trailer::decode(&b).map_err(|(off, reason)| corrupt(start + off, reason))?;
        let crc = std::mem::take(&mut self.body_crc).finalize();
        if t.body_crc != crc {
            return Err(corrupt(
                start,
                format!(
                    "backup checksum mismatch (trailer {:#010x}, computed {crc:#010x})",
                    t.body_crc
                ),
            ));
        }
        if (t.frames, t.entries) != (self.frames, self.entries) {
            return Err(corrupt(
                start,
                format!(
                    "trailer counts {} frames / {} entries but the backup holds {} / {}",
                    t.frames, t.entries, self.frames, self.entries
                ),
            ));
        }
        let mut extra = [0u8; 1];
        loop {
            match self.r.read(&mut extra) {
                Ok(0) => break,
                Ok(_) => return Err(corrupt(self.offset, "bytes after the backup's trailer")),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Io(e)),
            }
        }
        self.trailer = Some(t);
        Ok(())
    }
}

impl Db {
    /// Restores a full backup into a new database at `opts.dir`, which
    /// must not exist or be empty, and returns it open. Apply the
    /// incremental backups taken after it with [`Db::load_backup`].
    ///
    /// On any error (a corrupt or truncated backup included) nothing is
    /// left behind: the files this call created are removed, and the
    /// directory too if this call created it.
    pub fn restore_into(opts: Options, r: impl Read) -> Result<(Db, RestoreSummary)> {
        let fs = opts.file_system();
        let dir = opts.dir.clone();
        let existed = fs.exists(&dir);
        if existed && !fs.list(&dir)?.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "cannot restore into {}: the directory is not empty",
                dir.display()
            )));
        }
        let on_disk = opts.fs.is_none() && !opts.in_memory;
        let db = Db::open(opts)?;
        match db.load_backup(r) {
            Ok(summary) => Ok((db, summary)),
            Err(e) => {
                let _ = db.close();
                drop(db);
                if let Err(clean) = remove_created(&*fs, &dir, existed, on_disk) {
                    tracing::warn!(error = %clean, dir = %dir.display(), "cleaning up after a failed restore");
                }
                Err(e)
            }
        }
    }

    /// Applies one backup: a full backup into an empty database, or the
    /// next incremental backup of the chain (its `since_ts` must equal the
    /// database's newest timestamp, which a restore sets to the backup's
    /// `read_ts`). Nothing becomes visible unless the whole backup checks
    /// out. No other writes may run meanwhile.
    pub fn load_backup(&self, r: impl Read) -> Result<RestoreSummary> {
        if self.inner().opts.read_only {
            return Err(Error::ReadOnly);
        }
        let mut reader = FrameReader::new(r);
        let header = reader.header()?;
        self.check_chain(&header)?;
        let inner = self.inner().clone();
        // The fingerprint the database will have once the backup is in:
        // start from the current one and update it key by key.
        let mut live = if header.is_incremental() {
            Fingerprint::of_snapshot(&self.begin_read())?
        } else {
            Fingerprint::default()
        };
        let mut last_key: HashMap<u32, Vec<u8>> = HashMap::new();
        let mut writer = self.stream_writer()?;
        writer.raise_ts_to(header.read_ts);
        while let Some(batch) = reader.next_frame()? {
            let frame_offset = reader.offset;
            for e in &batch.entries {
                let last = last_key.entry(batch.stream_id).or_default();
                if *last == e.key {
                    continue; // an older version: not the newest of its key
                }
                last.clear();
                last.extend_from_slice(&e.key);
                if header.is_incremental() {
                    if let Some((version, vs)) = inner.get_at(&e.key, header.since_ts)? {
                        if counts(&vs) {
                            live.remove(&e.key, version);
                        }
                    }
                }
                if entry_counts(e.deleted, e.expires_at) {
                    live.add(&e.key, e.version);
                }
            }
            if let Some(e) = batch
                .entries
                .iter()
                .find(|e| e.version <= header.since_ts || e.version > header.read_ts)
            {
                return Err(corrupt(
                    frame_offset,
                    format!(
                        "entry version {} outside the backup's range ({}, {}]",
                        e.version, header.since_ts, header.read_ts
                    ),
                ));
            }
            writer.write(batch).map_err(|e| match e {
                Error::InvalidArgument(reason) => corrupt(frame_offset, reason),
                Error::EmptyKey => corrupt(frame_offset, "entry with an empty key"),
                other => other,
            })?;
        }
        let trailer = reader.trailer.expect("verified at the end of the frames");
        if live != trailer.live {
            let reason = format!(
                "after this backup the database would hold {} live keys (fingerprint {:#018x}), \
                 the source held {} ({:#018x})",
                live.keys, live.hash, trailer.live.keys, trailer.live.hash
            );
            return Err(if header.is_incremental() {
                Error::InvalidArgument(format!(
                    "this incremental backup cannot reproduce the source: {reason}; the source \
                     has compacted away deletions or expiries newer than since_ts {} (keep \
                     history with a managed-mode discard_ts at or below the last backup's \
                     timestamp), or take a full backup",
                    header.since_ts
                ))
            } else {
                corrupt(reader.offset, reason)
            });
        }
        // Only now, with everything verified, does anything become visible.
        let entries = writer.finish()?;
        assert_eq!(entries, reader.entries, "ingested entries differ from read");
        Ok(RestoreSummary {
            since_ts: header.since_ts,
            read_ts: header.read_ts,
            entries,
            frames: reader.frames,
            bytes: reader.offset,
        })
    }

    /// Refuses a backup that does not continue this database's chain.
    fn check_chain(&self, h: &Header) -> Result<()> {
        let inner = self.inner();
        let at = inner.oracle.visible_ts();
        let empty = at == 0
            && inner.levels.current().levels.iter().all(Vec::is_empty)
            && inner.mem.read().active.is_empty();
        if !h.is_incremental() {
            if !empty {
                return Err(Error::InvalidArgument(format!(
                    "a full backup can only be restored into an empty database; this one holds data up to timestamp {at}"
                )));
            }
            return Ok(());
        }
        if empty {
            return Err(Error::InvalidArgument(format!(
                "this is an incremental backup (changes after timestamp {}); restore the full backup it builds on first",
                h.since_ts
            )));
        }
        if at != h.since_ts {
            return Err(Error::InvalidArgument(format!(
                "backup chain gap: this incremental backup holds the changes after timestamp {}, \
                 but the database is at timestamp {at}; apply the backups of the chain in order \
                 (each incremental's since_ts must equal the previous backup's timestamp) and do \
                 not write to the database between them",
                h.since_ts
            )));
        }
        Ok(())
    }
}

/// Removes what a failed restore created in `dir`.
fn remove_created(fs: &dyn crate::fs::Fs, dir: &Path, existed: bool, on_disk: bool) -> Result<()> {
    for name in fs.list(dir)? {
        fs.remove(&dir.join(name))?;
    }
    if !existed && on_disk {
        std::fs::remove_dir(dir)?;
    }
    Ok(())
}
