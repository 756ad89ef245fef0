//! `settctl snapshot …`: the snapshot files `etcdctl snapshot save` (or
//! `Maintenance.Snapshot`) produces.

use crate::conn::{block_on, status_error, Conn};
use crate::Global;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use sett_server::config::Flags;
use std::path::PathBuf;

/// The snapshot commands.
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Stores a snapshot of one member's database into a file: written to
    /// `FILE.part`, synced, checked, then renamed to FILE.
    Save(SaveArgs),
    /// Checks a snapshot file's size and SHA-256.
    Status(StatusArgs),
    /// Builds a new member's data directory from a snapshot file, like
    /// `etcdctl snapshot restore`: every key, revision and lease of the
    /// file, and a fresh Raft state for the cluster given by the flags.
    /// Restore the same file once per member, then start each member with
    /// `sett --data-dir DIR`.
    Restore(Box<RestoreArgs>),
}

/// `snapshot save FILE`.
#[derive(Debug, Args)]
pub struct SaveArgs {
    /// The file to write.
    file: PathBuf,
}

/// `snapshot status FILE`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The snapshot file.
    file: PathBuf,
}

/// `snapshot restore FILE [member flags]`.
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

/// Runs a snapshot command.
pub fn run(global: &Global, cmd: SnapshotCommand) -> Result<()> {
    match cmd {
        SnapshotCommand::Save(a) => block_on(save(global, &a.file)),
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

/// `snapshot save`: streams `Maintenance.Snapshot` of the one endpoint
/// into `FILE.part`, syncs it, checks its trailing hash and renames it.
async fn save(global: &Global, file: &std::path::Path) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    if global.endpoints.len() != 1 {
        anyhow::bail!(
            "snapshot must be requested to one selected node, not multiple [{}]",
            global.endpoints.join(" ")
        );
    }
    let conn = Conn::open_one(&global.endpoints[0], global).await?;
    let mut part = file.as_os_str().to_owned();
    part.push(".part");
    let part = PathBuf::from(part);
    let mut out = tokio::fs::File::create(&part)
        .await
        .with_context(|| format!("could not open {}", part.display()))?;
    let result = async {
        let mut stream = conn
            .call(
                conn.maintenance()
                    .snapshot(sett_proto::etcdserverpb::SnapshotRequest {}),
            )
            .await?;
        // Each chunk must come within the command timeout (a stalled
        // stream fails instead of hanging); the whole transfer may take
        // longer.
        loop {
            let next = tokio::time::timeout(conn.command_timeout(), stream.message())
                .await
                .map_err(|_| {
                    anyhow::anyhow!("snapshot stream stalled (no data within the command timeout)")
                })?;
            match next.map_err(|s| status_error(&s))? {
                Some(chunk) => out.write_all(&chunk.blob).await?,
                None => break,
            }
        }
        out.flush().await?;
        out.sync_all().await?;
        let mut f = std::fs::File::open(&part)?;
        sett_server::dbfile::verify(&mut f).context("the received snapshot is damaged")?;
        tokio::fs::rename(&part, file).await.with_context(|| {
            format!("could not rename {} to {}", part.display(), file.display())
        })?;
        // The rename is durable once the directory is synced.
        let dir = match file.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("could not sync {}", dir.display()))?;
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = result {
        let _ = std::fs::remove_file(&part);
        return Err(e);
    }
    println!("Snapshot saved at {}", file.display());
    Ok(())
}
