//! A simple engine-backed [`Applier`]: a plain key-value map, used by the
//! tests (openraft's storage suite, durability tests) until the etcd MVCC
//! store implements [`Applier`].
//!
//! The engine runs in managed mode under a [`DirSwitch`] root. Each batch
//! of entries commits at timestamp `last index + 1` in one `commit_at`
//! holding the data and the applied-state record (a batch too large for one
//! transaction is split, each part recording its own last entry), so the
//! record always describes exactly the data present.
//!
//! | key | value |
//! |---|---|
//! | `d/` ‖ user key | value (from `Request::Put`; `DeleteRange` deletes `key` only) |
//! | `m/applied` | postcard [`AppliedState`] |

use super::dir_switch::DirSwitch;
use super::error::StoreError;
use super::snapshot_codec;
use super::state_machine::{AppliedState, Applier};
use super::types::{Entry, FailureKind, Request, Response, StoredMembership};
use openraft::EntryPayload;
use parking_lot::{Mutex, RwLock};
use prost::Message;
use sett_engine::{Db, Options, StreamOptions};
use sett_proto::etcdserverpb::{DeleteRangeRequest, PutRequest};
use std::io::{Read, Write};
use std::path::PathBuf;

const DATA_PREFIX: &[u8] = b"d/";
const APPLIED_KEY: &[u8] = b"m/applied";
/// Writes one commit carries before the batch is split (well inside the
/// engine's transaction limits).
const COMMIT_ENTRIES_MAX: usize = 10_000;
/// Request bytes one commit carries before the batch is split.
const COMMIT_BYTES_MAX: usize = 32 << 20;

#[derive(Debug)]
struct Live {
    switch: DirSwitch,
    db: Db,
}

#[derive(Debug, Default)]
struct Progress {
    /// Timestamp of the newest commit.
    ts: u64,
    state: AppliedState,
    /// Read timestamp of a running export: compaction must keep it.
    export_ts: Option<u64>,
}

/// The test applier; see the module docs.
#[derive(Debug)]
pub struct KvApplier {
    live: RwLock<Live>,
    progress: Mutex<Progress>,
}

fn data_key(key: &[u8]) -> Vec<u8> {
    [DATA_PREFIX, key].concat()
}

fn engine_options(dir: PathBuf) -> Options {
    let mut o = Options::new(dir);
    o.managed = true;
    o.sync_writes = true;
    o.compaction_threads = 1;
    o
}

fn read_state(db: &Db) -> Result<(u64, AppliedState), StoreError> {
    let txn = db.begin_read();
    match txn.get(APPLIED_KEY)? {
        Some(item) => Ok((item.version(), postcard::from_bytes(&item.value()?)?)),
        None => Ok((0, AppliedState::default())),
    }
}

impl KvApplier {
    /// Opens (creating if needed) the applier's databases under `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<KvApplier, StoreError> {
        let switch = DirSwitch::open(root)?;
        let db = Db::open(engine_options(switch.live_dir()))?;
        let (ts, state) = read_state(&db)?;
        Ok(KvApplier {
            live: RwLock::new(Live { switch, db }),
            progress: Mutex::new(Progress {
                ts,
                state,
                export_ts: None,
            }),
        })
    }

    /// Reads the newest value of `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.live.read().db.get(&data_key(key))?)
    }

    /// Closes the database.
    pub fn close(&self) -> Result<(), StoreError> {
        Ok(self.live.read().db.close()?)
    }

    fn apply_one(txn: &mut sett_engine::Txn, req: &Request) -> Result<Response, StoreError> {
        let invalid = |m: String| Response::Failed {
            kind: FailureKind::InvalidArgument,
            message: m,
        };
        Ok(match req {
            Request::Put(bytes) => match PutRequest::decode(bytes.as_slice()) {
                Ok(p) if p.key.is_empty() => invalid("etcdserver: key is not provided".into()),
                Ok(p) => {
                    txn.set(data_key(&p.key), p.value.to_vec())?;
                    Response::Empty
                }
                Err(e) => invalid(format!("bad PutRequest: {e}")),
            },
            Request::DeleteRange(bytes) => match DeleteRangeRequest::decode(bytes.as_slice()) {
                Ok(d) if d.key.is_empty() => invalid("etcdserver: key is not provided".into()),
                Ok(d) => {
                    txn.delete(data_key(&d.key))?;
                    Response::Empty
                }
                Err(e) => invalid(format!("bad DeleteRangeRequest: {e}")),
            },
            Request::Noop => Response::Empty,
            _ => Response::Failed {
                kind: FailureKind::FailedPrecondition,
                message: "not supported by the key-value test applier".into(),
            },
        })
    }

    /// Commits `txn` with `state` at `state.last_applied.index + 1`.
    fn commit(
        &self,
        mut txn: sett_engine::Txn,
        state: &AppliedState,
        progress: &mut Progress,
    ) -> Result<(), StoreError> {
        let last = state
            .last_applied
            .expect("a commit covers at least one entry");
        let ts = last.index + 1;
        assert!(
            ts > progress.ts,
            "apply timestamps must grow: {ts} after {}",
            progress.ts
        );
        txn.set(APPLIED_KEY.to_vec(), postcard::to_allocvec(state)?)?;
        txn.commit_at(ts)?;
        progress.ts = ts;
        progress.state = state.clone();
        Ok(())
    }
}

impl Applier for KvApplier {
    fn applied_state(&self) -> Result<AppliedState, StoreError> {
        Ok(self.progress.lock().state.clone())
    }

    fn apply(&self, entries: Vec<Entry>) -> Result<Vec<Response>, StoreError> {
        let live = self.live.read();
        let mut progress = self.progress.lock();
        let mut state = progress.state.clone();
        let mut txn = live.db.begin_write_at(progress.ts)?;
        let mut pending = false;
        let mut pending_bytes = 0usize;
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            if let Some(prev) = state.last_applied {
                assert!(
                    entry.log_id.index > prev.index,
                    "entries must be applied in order"
                );
            }
            let size = match &entry.payload {
                EntryPayload::Normal(Request::Put(b) | Request::DeleteRange(b)) => b.len(),
                _ => 0,
            };
            if pending
                && (txn.pending_len() >= COMMIT_ENTRIES_MAX
                    || pending_bytes + size > COMMIT_BYTES_MAX)
            {
                self.commit(txn, &state, &mut progress)?;
                txn = live.db.begin_write_at(progress.ts)?;
                pending_bytes = 0;
            }
            pending_bytes += size;
            let resp = match &entry.payload {
                EntryPayload::Blank => Response::Empty,
                EntryPayload::Normal(req) => Self::apply_one(&mut txn, req)?,
                EntryPayload::Membership(m) => {
                    state.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                    Response::Empty
                }
            };
            state.last_applied = Some(entry.log_id);
            pending = true;
            out.push(resp);
        }
        if pending {
            self.commit(txn, &state, &mut progress)?;
        }
        let floor = progress.export_ts.unwrap_or(progress.ts).min(progress.ts);
        live.db.set_discard_ts(floor)?;
        Ok(out)
    }

    fn export(&self, out: &mut dyn Write) -> Result<AppliedState, StoreError> {
        let live = self.live.read();
        let (ts, state) = {
            let mut p = self.progress.lock();
            p.export_ts = Some(p.ts);
            (p.ts, p.state.clone())
        };
        let res = snapshot_codec::export(
            &live.db,
            StreamOptions {
                read_ts: Some(ts),
                workers: 2,
                ..StreamOptions::default()
            },
            out,
        );
        self.progress.lock().export_ts = None;
        res?;
        Ok(state)
    }

    fn install(&self, input: &mut dyn Read) -> Result<AppliedState, StoreError> {
        let mut live = self.live.write();
        let staging = live.switch.staging_dir()?;
        let db = Db::open(engine_options(staging))?;
        let ingested = snapshot_codec::ingest(input, &db).and_then(|_| read_state(&db));
        db.close()?;
        let (ts, state) = ingested?;
        live.db.close()?;
        live.switch.switch()?;
        live.db = Db::open(engine_options(live.switch.live_dir()))?;
        let mut p = self.progress.lock();
        p.ts = ts;
        p.state = state.clone();
        Ok(state)
    }
}
