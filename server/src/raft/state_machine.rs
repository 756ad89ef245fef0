//! The Raft state machine: openraft's `RaftStateMachine` and
//! `RaftSnapshotBuilder` over an [`Applier`], plus the snapshot files.
//!
//! # The `Applier` contract
//! An applier owns the replicated state in a sett-engine database and
//! stores the last applied log id and the membership **in the same engine
//! commit** as the data those entries changed, so that after a crash
//! `applied_state()` names exactly the entries whose effects are present.
//! All methods are blocking; [`StateMachineStore`] runs them on Tokio's
//! blocking pool. `apply` is called by one task at a time; `export` may
//! run concurrently with `apply` (snapshot builds run in their own task)
//! and must read one consistent point; `install` is never concurrent with
//! `apply` but may wait for a running `export`.
//!
//! [`KvApplier`](super::kv_applier::KvApplier) is the simple engine-backed
//! applier used by the tests. The etcd MVCC store plugs in by implementing
//! [`Applier`]: `apply` decodes each [`Request`](super::types::Request) and
//! runs the etcd operation at the next revision, handing the entry's log id
//! and the current membership to its applied-state hook so they are
//! written in that revision's `commit_at`; `export` streams the engine at
//! the current revision with `all_versions` (history kept until
//! `Compact`) via [`snapshot_codec::export`](super::snapshot_codec::export); `install` ingests into a fresh
//! directory with [`snapshot_codec::ingest`](super::snapshot_codec::ingest) and swaps it in with
//! [`DirSwitch`](super::dir_switch::DirSwitch).
//!
//! # Snapshot directory
//! `<dir>/snap-<n>.snap` holds the data (the [`snapshot_codec`](super::snapshot_codec) format),
//! `<dir>/snap-<n>.meta` the openraft `SnapshotMeta` (postcard ‖ be32
//! crc32). A build writes `build-<n>.part`, fsyncs it, renames it to
//! `.snap`, then writes the `.meta` (via a fsynced temporary and a rename)
//! and fsyncs the directory: a `.snap` without a valid `.meta` is
//! incomplete and removed at open. Received snapshots arrive in
//! `recv-<n>.part` files. The two newest snapshots are kept, so a transfer
//! of the previous one can finish while a new one is built.

use super::error::{blocking, StoreError};
use super::types::{
    Entry, LogId, Response, Snapshot, SnapshotFile, SnapshotMeta, StorageError, StoredMembership,
    TypeConfig,
};
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::OptionalSend;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What the state machine has applied: openraft's `applied_state`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedState {
    /// The last applied log id.
    pub last_applied: Option<LogId>,
    /// The last membership applied.
    pub membership: StoredMembership,
}

/// The replicated state behind the state machine; see the module docs.
pub trait Applier: Send + Sync + 'static {
    /// The applied state as durably recorded with the data.
    fn applied_state(&self) -> Result<AppliedState, StoreError>;
    /// Applies `entries` (consecutive, in log order) and returns one
    /// response per entry. A deterministic refusal is a
    /// [`Response::Failed`]; an `Err` means the local state is unusable.
    fn apply(&self, entries: Vec<Entry>) -> Result<Vec<Response>, StoreError>;
    /// Writes a consistent snapshot (in the [`snapshot_codec`](super::snapshot_codec) format) to
    /// `out` and returns the applied state it covers.
    fn export(&self, out: &mut dyn Write) -> Result<AppliedState, StoreError>;
    /// Replaces the whole state by the snapshot read from `input` and
    /// returns the applied state it carried.
    fn install(&self, input: &mut dyn Read) -> Result<AppliedState, StoreError>;
}

/// The snapshot files of one member.
#[derive(Debug)]
struct SnapshotDir {
    dir: PathBuf,
    next: AtomicU64,
    /// The newest complete snapshot: its meta and number.
    current: Mutex<Option<(SnapshotMeta, u64)>>,
    /// Held by each commit from its rename to its clean-up: a build and an
    /// install may commit at the same time, and the clean-up of one must
    /// not see the other's data file before its meta exists (and delete
    /// it as stale).
    commits: Mutex<()>,
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

fn encode_meta(meta: &SnapshotMeta) -> Result<Vec<u8>, StoreError> {
    let mut bytes = postcard::to_allocvec(meta)?;
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_be_bytes());
    Ok(bytes)
}

fn decode_meta(bytes: &[u8]) -> Result<SnapshotMeta, StoreError> {
    let split = bytes
        .len()
        .checked_sub(4)
        .ok_or_else(|| StoreError::Corruption("snapshot meta too short".into()))?;
    let (body, crc) = bytes.split_at(split);
    let want = u32::from_be_bytes(crc.try_into().expect("4 bytes"));
    if crc32fast::hash(body) != want {
        return Err(StoreError::Corruption(
            "snapshot meta checksum mismatch".into(),
        ));
    }
    Ok(postcard::from_bytes(body)?)
}

/// Snapshots kept on disk.
const SNAPSHOTS_KEPT: usize = 2;

impl SnapshotDir {
    fn open(dir: PathBuf) -> Result<SnapshotDir, StoreError> {
        fs::create_dir_all(&dir)?;
        let mut complete: Vec<(u64, SnapshotMeta)> = Vec::new();
        let mut max_n = 0u64;
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with(".part") || name.ends_with(".tmp") {
                fs::remove_file(&path)?;
                continue;
            }
            let Some(n) = name
                .strip_prefix("snap-")
                .and_then(|r| r.strip_suffix(".meta"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            max_n = max_n.max(n);
            let meta = fs::read(&path)
                .map_err(StoreError::from)
                .and_then(|b| decode_meta(&b));
            match meta {
                Ok(m) if dir.join(format!("snap-{n}.snap")).exists() => complete.push((n, m)),
                _ => {
                    tracing::warn!(?path, "removing incomplete snapshot");
                    fs::remove_file(&path)?;
                }
            }
        }
        // The newest is the one covering the most log, then the latest
        // written.
        complete.sort_by(|(na, a), (nb, b)| (&a.last_log_id, na).cmp(&(&b.last_log_id, nb)));
        let sd = SnapshotDir {
            dir,
            next: AtomicU64::new(max_n + 1),
            current: Mutex::new(complete.pop().map(|(n, m)| (m, n))),
            commits: Mutex::new(()),
        };
        sd.remove_stale()?;
        Ok(sd)
    }

    fn data_path(&self, n: u64) -> PathBuf {
        self.dir.join(format!("snap-{n}.snap"))
    }

    fn part_path(&self, kind: &str) -> PathBuf {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!("{kind}-{n}.part"))
    }

    /// Records the finished data file `data` (fsynced) as snapshot `meta`.
    fn commit(&self, data: &Path, meta: &SnapshotMeta) -> Result<SnapshotFile, StoreError> {
        let _commit = self.commits.lock();
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let final_path = self.data_path(n);
        if data.parent() == Some(self.dir.as_path()) {
            fs::rename(data, &final_path)?;
        } else {
            let mut out = File::create(&final_path)?;
            std::io::copy(&mut File::open(data)?, &mut out)?;
            out.sync_all()?;
        }
        let tmp = self.dir.join(format!("snap-{n}.meta.tmp"));
        let mut f = File::create(&tmp)?;
        f.write_all(&encode_meta(meta)?)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, self.dir.join(format!("snap-{n}.meta")))?;
        sync_dir(&self.dir)?;
        {
            // A build that started before an install may finish after it:
            // never let an older snapshot replace a newer current one.
            let mut cur = self.current.lock();
            if cur
                .as_ref()
                .is_none_or(|(c, _)| c.last_log_id <= meta.last_log_id)
            {
                *cur = Some((meta.clone(), n));
            }
        }
        self.remove_stale()?;
        Ok(SnapshotFile::new(final_path))
    }

    /// Removes snapshot files other than the newest [`SNAPSHOTS_KEPT`] and
    /// data files without meta.
    fn remove_stale(&self) -> Result<(), StoreError> {
        let mut metas: Vec<u64> = Vec::new();
        let mut datas: Vec<u64> = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let parse = |suffix: &str| {
                name.strip_prefix("snap-")
                    .and_then(|r| r.strip_suffix(suffix))
                    .and_then(|n| n.parse::<u64>().ok())
            };
            if let Some(n) = parse(".meta") {
                metas.push(n);
            } else if let Some(n) = parse(".snap") {
                datas.push(n);
            }
        }
        metas.sort_unstable();
        let keep: Vec<u64> = metas.iter().rev().take(SNAPSHOTS_KEPT).copied().collect();
        let current = self.current.lock().as_ref().map(|(_, n)| *n);
        for n in metas.iter().chain(datas.iter()) {
            if keep.contains(n) || Some(*n) == current {
                continue;
            }
            for suffix in ["meta", "snap"] {
                let p = self.dir.join(format!("snap-{n}.{suffix}"));
                if p.exists() {
                    fs::remove_file(p)?;
                }
            }
        }
        Ok(())
    }

    fn current(&self) -> Option<Snapshot> {
        self.current.lock().as_ref().map(|(meta, n)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(SnapshotFile::new(self.data_path(*n))),
        })
    }
}

/// openraft's state machine over an [`Applier`]; see the module docs.
#[derive(Debug)]
pub struct StateMachineStore<A> {
    applier: Arc<A>,
    snapshots: Arc<SnapshotDir>,
    /// Where apply times are recorded, if anywhere.
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl<A: Applier> StateMachineStore<A> {
    /// A state machine over `applier`, keeping snapshot files in
    /// `snapshot_dir` (created if needed; leftovers of a crash removed).
    pub fn open(applier: A, snapshot_dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        Ok(StateMachineStore {
            applier: Arc::new(applier),
            snapshots: Arc::new(SnapshotDir::open(snapshot_dir.into())?),
            metrics: None,
        })
    }

    /// Records how long each batch of entries takes to apply in
    /// `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The applier (for reads served outside Raft).
    pub fn applier(&self) -> &Arc<A> {
        &self.applier
    }
}

/// Builds one snapshot; see [`StateMachineStore`].
#[derive(Debug)]
pub struct SnapshotBuilder<A> {
    applier: Arc<A>,
    snapshots: Arc<SnapshotDir>,
}

impl<A: Applier> RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder<A> {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let applier = self.applier.clone();
        let snapshots = self.snapshots.clone();
        blocking(move || {
            let part = snapshots.part_path("build");
            let file = File::create(&part)?;
            let mut out = BufWriter::new(file);
            let state = applier.export(&mut out)?;
            let file = out.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            drop(file);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let snapshot_id = match &state.last_applied {
                Some(l) => format!(
                    "{}-{}-{}-{nanos}",
                    l.leader_id.term, l.leader_id.node_id, l.index
                ),
                None => format!("none-{nanos}"),
            };
            let meta = SnapshotMeta {
                last_log_id: state.last_applied,
                last_membership: state.membership,
                snapshot_id,
            };
            let data = snapshots.commit(&part, &meta)?;
            Ok(Snapshot {
                meta,
                snapshot: Box::new(data),
            })
        })
        .await
        .map_err(|e| e.write_snapshot())
    }
}

impl<A: Applier> RaftStateMachine<TypeConfig> for StateMachineStore<A> {
    type SnapshotBuilder = SnapshotBuilder<A>;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let applier = self.applier.clone();
        let st = blocking(move || applier.applied_state())
            .await
            .map_err(|e| e.read_state_machine())?;
        Ok((st.last_applied, st.membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let Some(last) = entries.last().map(|e| e.log_id) else {
            return Ok(Vec::new());
        };
        let n = entries.len();
        let applier = self.applier.clone();
        let started = std::time::Instant::now();
        let out = blocking(move || applier.apply(entries))
            .await
            .map_err(|e| e.apply(last))?;
        if let Some(m) = &self.metrics {
            m.applied(started.elapsed());
        }
        assert_eq!(out.len(), n, "one response per applied entry");
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            applier: self.applier.clone(),
            snapshots: self.snapshots.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotFile>, StorageError> {
        let path = self.snapshots.part_path("recv");
        let p = path.clone();
        blocking(move || {
            File::create(&p)?;
            Ok(())
        })
        .await
        .map_err(|e| e.write_snapshot())?;
        Ok(Box::new(SnapshotFile::new(path)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<SnapshotFile>,
    ) -> Result<(), StorageError> {
        let applier = self.applier.clone();
        let snapshots = self.snapshots.clone();
        let meta = meta.clone();
        blocking(move || {
            let mut input = BufReader::new(File::open(snapshot.path())?);
            let state = applier.install(&mut input)?;
            if state.last_applied != meta.last_log_id || state.membership != meta.last_membership {
                return Err(StoreError::Corruption(format!(
                    "installed snapshot carries applied state {:?} / {:?}, its meta says {meta}",
                    state.last_applied, state.membership
                )));
            }
            snapshots.commit(snapshot.path(), &meta)?;
            Ok(())
        })
        .await
        .map_err(|e| e.write_snapshot())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        Ok(self.snapshots.current())
    }
}
