//! The manifest file: opening (replay and torn-tail repair), appending edit
//! batches, and rewriting the file as one snapshot when it grows too big.
//!
//! Thread-safety: a [`Manifest`] is a single writer; the engine keeps it
//! behind a mutex. It is `Send + Sync`.
//!
//! Durability protocol:
//! - `apply` appends one record and syncs the file before returning `Ok`.
//! - A new file (first open, or a rewrite) is written in full to
//!   `MANIFEST.tmp`, synced, renamed over `MANIFEST`, and the directory is
//!   synced. Until the directory sync the old `MANIFEST` — which already
//!   holds every applied edit — is what a crash leaves.
//! - A leftover `MANIFEST.tmp` at open is from an interrupted rewrite and is
//!   removed.
//! - After a failed append or sync, or a failed directory sync after a
//!   rename, the manifest refuses further edits ([`Error::Poisoned`]): what
//!   is on disk is no longer known. Reopening repairs it.

use super::edit::ManifestEdit;
use super::record::{check_file_header, encode_record, file_header, replay, MAX_RECORD_BYTES};
use super::state::ManifestState;
use crate::fs::{join, Fs, FsFile};
use crate::{Error, Result};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Name of the manifest file inside the database directory.
pub(crate) const MANIFEST_FILE: &str = "MANIFEST";
/// Name of the file a rewrite is staged in.
pub(crate) const MANIFEST_TMP_FILE: &str = "MANIFEST.tmp";
/// Largest manifest file `open` will read (4 GiB).
pub(crate) const MANIFEST_FILE_BYTES_MAX: u64 = 1 << 32;

/// When to rewrite the manifest as a single snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ManifestOptions {
    /// Never rewrite a file smaller than this.
    pub rewrite_min_bytes: u64,
    /// Rewrite once the file exceeds this many times the size it had right
    /// after the last rewrite (header plus snapshot record). At least 2.
    pub rewrite_ratio: u64,
}

impl Default for ManifestOptions {
    fn default() -> Self {
        if crate::crash_point::manifest_rewrite_eager() {
            // Crash tests only (debug builds): rewrite on every doubling.
            return ManifestOptions {
                rewrite_min_bytes: 0,
                rewrite_ratio: 2,
            };
        }
        ManifestOptions {
            rewrite_min_bytes: 4 << 20,
            rewrite_ratio: 10,
        }
    }
}

impl ManifestOptions {
    /// File length above which a file whose fresh snapshot was
    /// `snapshot_len` bytes gets rewritten.
    fn rewrite_at(&self, snapshot_len: u64) -> u64 {
        self.rewrite_min_bytes
            .max(snapshot_len.saturating_mul(self.rewrite_ratio))
    }
}

/// The open manifest of one database directory.
#[derive(Debug)]
pub(crate) struct Manifest {
    /// The file system everything goes through.
    fs: Arc<dyn Fs>,
    /// The database directory holding `MANIFEST`.
    dir: PathBuf,
    /// `dir/MANIFEST`.
    path: PathBuf,
    /// Open for appending; always the file currently named `path`.
    file: Arc<dyn FsFile>,
    /// Length of `file`: header plus whole records, all synced.
    len: u64,
    /// Rewrite once `len` exceeds this.
    rewrite_at: u64,
    /// Number of completed rewrites since open.
    rewrites: u64,
    /// Rewrite thresholds.
    opts: ManifestOptions,
    /// The state after every record in `file`.
    state: ManifestState,
    /// Set once the file's on-disk contents are unknown; refuses edits.
    poisoned: Option<String>,
}

/// How installing a new manifest file failed.
enum InstallError {
    /// `MANIFEST` was not replaced; the old file is intact.
    NotInstalled(Error),
    /// `MANIFEST` was replaced but the directory sync failed: which file a
    /// crash leaves is unknown.
    Unsynced(Error),
}

impl Manifest {
    /// Opens `dir/MANIFEST`, creating an empty one (synced, dir synced) if
    /// absent; replays it. A torn last record is cut off (and the cut
    /// synced) so later appends are clean. Default [`ManifestOptions`].
    pub(crate) fn open(fs: Arc<dyn Fs>, dir: &Path) -> Result<(Manifest, ManifestState)> {
        Self::open_with(fs, dir, ManifestOptions::default())
    }

    /// Replays `dir/MANIFEST` without changing anything on disk (read-only
    /// opens). A torn last record is ignored, not cut.
    pub(crate) fn read_state(fs: &dyn Fs, dir: &Path) -> Result<ManifestState> {
        let path = join(dir, MANIFEST_FILE);
        if !fs.exists(&path) {
            return Err(Error::InvalidArgument(format!(
                "no database in {} to open read-only",
                dir.display()
            )));
        }
        let bytes = fs.read_all(&path)?;
        let replayed = replay(&path, (*bytes).as_ref())?;
        replayed.state.check_invariants();
        Ok(replayed.state)
    }

    /// [`Manifest::open`] with explicit rewrite thresholds.
    pub(crate) fn open_with(
        fs: Arc<dyn Fs>,
        dir: &Path,
        opts: ManifestOptions,
    ) -> Result<(Manifest, ManifestState)> {
        assert!(opts.rewrite_ratio >= 2, "rewrite_ratio must be at least 2");
        let path = join(dir, MANIFEST_FILE);
        let tmp = join(dir, MANIFEST_TMP_FILE);
        if fs.exists(&tmp) {
            tracing::info!(path = %tmp.display(), "removing leftover manifest rewrite file");
            fs.remove(&tmp)?;
        }
        if !fs.exists(&path) {
            tracing::info!(path = %path.display(), "creating empty manifest");
            install(&*fs, dir, &ManifestState::default()).map_err(|e| match e {
                InstallError::NotInstalled(e) | InstallError::Unsynced(e) => e,
            })?;
        }

        let file = fs.open(&path)?;
        let file_len = file.len()?;
        if file_len > MANIFEST_FILE_BYTES_MAX {
            return Err(Error::corruption(
                &path,
                0,
                format!(
                    "manifest of {file_len} bytes exceeds the {MANIFEST_FILE_BYTES_MAX}-byte limit"
                ),
            ));
        }
        let mut bytes = vec![0u8; file_len as usize];
        file.read_exact_at(&mut bytes, 0)?;
        let replayed = replay(&path, &bytes)?;
        drop(bytes);
        if let Some(reason) = &replayed.torn {
            tracing::warn!(
                path = %path.display(),
                dropped_bytes = file_len - replayed.good_len,
                %reason,
                "cutting torn tail off the manifest"
            );
            file.truncate(replayed.good_len)?;
            file.sync()?;
        }
        assert!(replayed.good_len <= file_len);
        debug_assert_eq!(file.len()?, replayed.good_len);
        replayed.state.check_invariants();

        let snapshot_len = snapshot_file_bytes(&replayed.state).len() as u64;
        let manifest = Manifest {
            fs,
            dir: dir.to_path_buf(),
            path,
            file,
            len: replayed.good_len,
            rewrite_at: opts.rewrite_at(snapshot_len),
            rewrites: 0,
            opts,
            state: replayed.state.clone(),
            poisoned: None,
        };
        Ok((manifest, replayed.state))
    }

    /// Appends one record holding all `edits` atomically, syncs, applies
    /// them to the in-memory state; rewrites the file when it has grown too
    /// big. An empty batch is a no-op.
    ///
    /// Errors: a batch that does not apply to the current state (`AddTable`
    /// of a live id, `DeleteTable` of an unknown one) is refused with
    /// [`Error::Corruption`] before anything is written, and the manifest
    /// stays usable. An I/O error while appending or syncing leaves the
    /// outcome unknown (the record may or may not be durable) and poisons
    /// the manifest. A failed rewrite after a durable append is logged, not
    /// returned: the edits are durable either way.
    pub(crate) fn apply(&mut self, edits: &[ManifestEdit]) -> Result<()> {
        self.check_poisoned()?;
        if edits.is_empty() {
            return Ok(());
        }
        self.state.check_edits(edits).map_err(|reason| {
            Error::corruption(
                &self.path,
                self.len,
                format!("edit batch refused: {reason}"),
            )
        })?;
        let mut record = Vec::new();
        let payload_len = encode_record(edits, &mut record);
        if payload_len > MAX_RECORD_BYTES {
            return Err(Error::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("manifest edit batch of {payload_len} bytes exceeds {MAX_RECORD_BYTES}"),
            )));
        }
        debug_assert_eq!(
            super::record::read_record(&record, 0).ok(),
            Some((edits.to_vec(), record.len())),
            "record must decode to the edits it was built from"
        );

        if let Err(e) = self.file.append(&record).and_then(|()| self.file.sync()) {
            self.poison(format!("append to {} failed: {e}", self.path.display()));
            return Err(e.into());
        }
        self.len += record.len() as u64;
        for edit in edits {
            let applied = self.state.apply_edit(edit);
            assert!(applied.is_ok(), "checked edit failed to apply: {applied:?}");
        }
        if cfg!(debug_assertions) {
            self.state.check_invariants();
        }

        if self.len > self.rewrite_at {
            if let Err(e) = self.rewrite() {
                tracing::warn!(path = %self.path.display(), error = %e, "manifest rewrite failed");
            }
        }
        Ok(())
    }

    /// Rewrites the file as one snapshot record of the current state
    /// (write `MANIFEST.tmp`, sync, rename over `MANIFEST`, sync the
    /// directory). Called by `apply` when the file has grown past its
    /// threshold; callable directly (e.g. at shutdown).
    ///
    /// On an error before the rename the old file stays in use and the
    /// manifest stays usable; on an error after it the manifest is poisoned.
    pub(crate) fn rewrite(&mut self) -> Result<()> {
        self.check_poisoned()?;
        let installed_len = match install(&*self.fs, &self.dir, &self.state) {
            Ok(len) => len,
            Err(InstallError::NotInstalled(e)) => {
                let tmp = join(&self.dir, MANIFEST_TMP_FILE);
                if self.fs.exists(&tmp) {
                    // Best effort: a leftover is removed at the next open.
                    let _ = self.fs.remove(&tmp);
                }
                return Err(e);
            }
            Err(InstallError::Unsynced(e)) => {
                self.poison(format!("directory sync after manifest rewrite failed: {e}"));
                return Err(e);
            }
        };
        let reopened = self.fs.open(&self.path).and_then(|f| {
            let len = f.len()?;
            if len != installed_len {
                return Err(io::Error::other(format!(
                    "rewritten manifest is {len} bytes, {installed_len} were written"
                )));
            }
            Ok((f, len))
        });
        let (file, len) = match reopened {
            Ok(pair) => pair,
            Err(e) => {
                self.poison(format!("reopening rewritten manifest failed: {e}"));
                return Err(e.into());
            }
        };
        tracing::debug!(path = %self.path.display(), old_bytes = self.len, new_bytes = len, "manifest rewritten");
        self.file = file;
        self.len = len;
        self.rewrite_at = self.opts.rewrite_at(len);
        self.rewrites += 1;
        assert!(self.len <= self.rewrite_at);
        Ok(())
    }

    /// The state after every applied edit.
    pub(crate) fn state(&self) -> &ManifestState {
        &self.state
    }

    /// Current file length in bytes (all of it synced).
    #[cfg(test)]
    pub(crate) fn file_len(&self) -> u64 {
        self.len
    }

    /// Number of rewrites since open.
    #[cfg(test)]
    pub(crate) fn rewrites(&self) -> u64 {
        self.rewrites
    }

    /// True once an I/O failure made the manifest refuse further edits.
    #[cfg(test)]
    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    /// `Err(Poisoned)` once the manifest refuses edits.
    fn check_poisoned(&self) -> Result<()> {
        match &self.poisoned {
            Some(reason) => Err(Error::Poisoned(format!("manifest: {reason}"))),
            None => Ok(()),
        }
    }

    /// Makes every later `apply`/`rewrite` fail; keeps the first reason.
    fn poison(&mut self, reason: String) {
        tracing::error!(path = %self.path.display(), %reason, "manifest poisoned");
        self.poisoned.get_or_insert(reason);
    }
}

/// The whole content of a fresh manifest file holding `state`: header and
/// one snapshot record.
fn snapshot_file_bytes(state: &ManifestState) -> Vec<u8> {
    let mut bytes = file_header().to_vec();
    encode_record(&state.snapshot_edits(), &mut bytes);
    bytes
}

/// Writes a fresh manifest holding `state` to `dir/MANIFEST.tmp`, syncs it,
/// renames it over `dir/MANIFEST` and syncs `dir`. Returns the file length.
fn install(fs: &dyn Fs, dir: &Path, state: &ManifestState) -> Result<u64, InstallError> {
    let path = join(dir, MANIFEST_FILE);
    let tmp = join(dir, MANIFEST_TMP_FILE);
    let bytes = snapshot_file_bytes(state);
    if bytes.len() - super::record::FILE_HEADER_LEN - super::record::RECORD_HEADER_LEN
        > MAX_RECORD_BYTES
    {
        return Err(InstallError::NotInstalled(Error::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "manifest snapshot of {} bytes exceeds {MAX_RECORD_BYTES}",
                bytes.len()
            ),
        ))));
    }
    // Pair assertion: the snapshot must replay to the state it was made from.
    debug_assert!(check_file_header(&tmp, &bytes).is_ok());
    debug_assert_eq!(
        replay(&tmp, &bytes).ok().map(|r| r.state).as_ref(),
        Some(state)
    );

    let staged = (|| -> io::Result<()> {
        let f = fs.create(&tmp)?;
        f.append(&bytes)?;
        f.sync()?;
        crate::crash_point::hit("manifest.tmp_written");
        // Read back before publishing: a short or mangled write must not
        // replace a good manifest.
        let mut back = vec![0u8; bytes.len()];
        f.read_exact_at(&mut back, 0)?;
        if back != bytes || f.len()? != bytes.len() as u64 {
            return Err(io::Error::other(
                "manifest rewrite read back different bytes",
            ));
        }
        fs.rename(&tmp, &path)
    })();
    staged.map_err(|e| InstallError::NotInstalled(e.into()))?;
    crate::crash_point::hit("manifest.renamed");
    fs.sync_dir(dir)
        .map_err(|e| InstallError::Unsynced(e.into()))?;
    crate::crash_point::hit("manifest.installed");
    Ok(bytes.len() as u64)
}
