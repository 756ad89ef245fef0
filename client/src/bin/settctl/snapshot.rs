//! `settctl snapshot …`: the snapshot files `etcdctl snapshot save` (or
//! `Maintenance.Snapshot`) produces.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use sett_server::config::Flags;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Checks a snapshot file's size and SHA-256.
    Status(StatusArgs),
    /// Builds a new member's data directory from a snapshot file, like
    /// `etcdctl snapshot restore`: every key, revision and lease of the
    /// file, and a fresh Raft state for the cluster given by the flags.
    /// Restore the same file once per member, then start each member with
    /// `sett --data-dir DIR`.
    Restore(Box<RestoreArgs>),
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The snapshot file.
    file: PathBuf,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The snapshot file.
    file: PathBuf,
    /// The member's configuration, with `sett`'s flags (--name,
    /// --data-dir, --initial-cluster, --initial-cluster-token,
    /// --initial-advertise-peer-urls, ...).
    #[command(flatten)]
    flags: Flags,
}

pub fn run(cmd: SnapshotCommand) -> Result<()> {
    match cmd {
        SnapshotCommand::Status(a) => {
            let mut f = std::fs::File::open(&a.file)
                .with_context(|| format!("open {}", a.file.display()))?;
            sett_server::dbfile::verify(&mut f)?;
            let size = f.metadata()?.len();
            println!("{}: valid snapshot file, {size} bytes", a.file.display());
            Ok(())
        }
        SnapshotCommand::Restore(a) => {
            let cfg = a.flags.resolve().context("member configuration")?;
            sett_server::dbfile::restore(&a.file, &cfg)
                .with_context(|| format!("restore {}", a.file.display()))?;
            println!(
                "restored {} into {} (member {}); start it with `sett --data-dir {}`",
                a.file.display(),
                cfg.data_dir.display(),
                cfg.name,
                cfg.data_dir.display()
            );
            Ok(())
        }
    }
}
