//! Crash-safe replacement of a whole database directory, used to install
//! a snapshot.
//!
//! Layout under `root`: database directories `db-<n>` and a file `CURRENT`
//! naming the live one. A switch writes the new database completely in a
//! fresh `db-<n+1>` (the caller closes it, the engine has synced its files),
//! syncs `root`, writes `CURRENT.tmp`, fsyncs it, renames it over
//! `CURRENT` and fsyncs `root` again; only then is the old directory
//! removed. A crash at any point leaves `CURRENT` naming a complete
//! database; `open` removes every other `db-*` directory and a stray
//! `CURRENT.tmp`.

use super::error::StoreError;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

const CURRENT: &str = "CURRENT";
const CURRENT_TMP: &str = "CURRENT.tmp";
const PREFIX: &str = "db-";

/// The live database directory under a root; see the module docs.
#[derive(Debug)]
pub struct DirSwitch {
    root: PathBuf,
    live: u64,
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

fn dir_number(name: &str) -> Option<u64> {
    name.strip_prefix(PREFIX)?.parse().ok()
}

impl DirSwitch {
    /// Opens `root` (creating it and a first `db-1` entry if needed) and
    /// removes what an interrupted switch left behind.
    pub fn open(root: impl Into<PathBuf>) -> Result<DirSwitch, StoreError> {
        let root = root.into();
        fs::create_dir_all(&root)?;
        let live = match fs::read_to_string(root.join(CURRENT)) {
            Ok(s) => dir_number(s.trim())
                .ok_or_else(|| StoreError::Corruption(format!("bad CURRENT file: {s:?}")))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let sw = DirSwitch {
                    root: root.clone(),
                    live: 1,
                };
                sw.write_current(1)?;
                1
            }
            Err(e) => return Err(e.into()),
        };
        let _ = fs::remove_file(root.join(CURRENT_TMP));
        for entry in fs::read_dir(&root)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(n) = name.to_str().and_then(dir_number) else {
                continue;
            };
            if n != live {
                fs::remove_dir_all(entry.path())?;
            }
        }
        Ok(DirSwitch { root, live })
    }

    /// The live database directory.
    pub fn live_dir(&self) -> PathBuf {
        self.root.join(format!("{PREFIX}{}", self.live))
    }

    /// An empty directory to build the next database in.
    pub fn staging_dir(&self) -> Result<PathBuf, StoreError> {
        let dir = self.root.join(format!("{PREFIX}{}", self.live + 1));
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    fn write_current(&self, n: u64) -> Result<(), StoreError> {
        let tmp = self.root.join(CURRENT_TMP);
        let mut f = File::create(&tmp)?;
        f.write_all(format!("{PREFIX}{n}\n").as_bytes())?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, self.root.join(CURRENT))?;
        sync_dir(&self.root)
    }

    /// Makes the staging directory live (the database in it must be
    /// closed) and removes the old one.
    pub fn switch(&mut self) -> Result<(), StoreError> {
        let old = self.live_dir();
        let next = self.live + 1;
        sync_dir(&self.root.join(format!("{PREFIX}{next}")))?;
        sync_dir(&self.root)?;
        self.write_current(next)?;
        self.live = next;
        fs::remove_dir_all(old)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switch_survives_reopen_and_cleans_up() {
        let tmp = tempfile::tempdir().unwrap();
        let mut sw = DirSwitch::open(tmp.path()).unwrap();
        let first = sw.live_dir();
        fs::create_dir_all(&first).unwrap();
        let staging = sw.staging_dir().unwrap();
        fs::write(staging.join("x"), b"new").unwrap();
        sw.switch().unwrap();
        assert_eq!(sw.live_dir(), staging);
        assert!(!first.exists());
        // An interrupted switch: a staging dir that never became live.
        let stray = sw.staging_dir().unwrap();
        drop(sw);
        let sw = DirSwitch::open(tmp.path()).unwrap();
        assert_eq!(sw.live_dir(), staging);
        assert!(!stray.exists());
        assert_eq!(fs::read(staging.join("x")).unwrap(), b"new");
    }
}
