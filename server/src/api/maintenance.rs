//! `etcdserverpb.Maintenance`: `Status` (what `etcdctl endpoint status`
//! shows), `Hash` and `HashKV` (equal on every member at the same
//! revision), `Snapshot` (the [`crate::dbfile`] file, written to a
//! temporary file first so a slow reader never holds the store), and
//! `Defragment` (a full engine compaction plus value-log GC), `Alarm`
//! (list from the store; raise and clear through Raft). MoveLeader and Downgrade answer `UNIMPLEMENTED`.

use super::ApiContext;
use crate::mvcc::EtcdError;
use sett_proto::etcdserverpb::maintenance_server::Maintenance;
use sett_proto::etcdserverpb::{
    alarm_request::AlarmAction, AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse,
    DowngradeRequest, DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse,
    MoveLeaderRequest, MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest,
    StatusResponse,
};
use std::io::Read;
use std::pin::Pin;
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

/// The etcd API level a member reports as its `version`: the release
/// whose wire interface and semantics sett serves.
pub(crate) const ETCD_API_VERSION: &str = "3.4.0";

/// The Maintenance service of one member.
#[derive(Debug, Clone)]
pub(crate) struct MaintenanceService {
    ctx: ApiContext,
}

impl MaintenanceService {
    pub(crate) fn new(ctx: ApiContext) -> MaintenanceService {
        MaintenanceService { ctx }
    }
}

/// Where snapshot files are written before streaming (under the data
/// directory; each is unlinked as soon as it is open).
const SNAPSHOT_TMP_DIR: &str = "tmp";
/// Bytes per Snapshot message.
const SNAPSHOT_CHUNK_BYTES: u64 = 1 << 20;
/// Snapshot messages queued towards the client.
const SNAPSHOT_QUEUE: usize = 4;
/// The value-log GC ratio Defragment collects down to.
const DEFRAG_GC_RATIO: f64 = 0.5;

/// Writes the snapshot file of `store` into an anonymous file under
/// `dir`; returns it (at its start) and its size.
fn write_snapshot_file(
    store: &crate::mvcc::MvccStore,
    dir: &std::path::Path,
) -> Result<(std::fs::File, u64), crate::dbfile::DbFileError> {
    use std::io::Seek;
    std::fs::create_dir_all(dir)?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let path = dir.join(format!("snapshot-{nanos}.tmp"));
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    // Gone from the directory now; the space is freed when the stream ends.
    std::fs::remove_file(&path)?;
    let size = crate::dbfile::write(store, &file)?;
    file.seek(std::io::SeekFrom::Start(0))?;
    Ok((file, size))
}

fn unimplemented(what: &str) -> Status {
    Status::unimplemented(format!("sett: Maintenance.{what} is not supported yet"))
}

type SnapshotStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(
        &self,
        request: GrpcRequest<AlarmRequest>,
    ) -> Result<GrpcResponse<AlarmResponse>, Status> {
        let caller = self.ctx.caller(&request).await?;
        let req = request.into_inner();
        match AlarmAction::try_from(req.action) {
            Ok(AlarmAction::Get) => {
                let store = self.ctx.store();
                let alarms = crate::raft::mvcc_applier::alarms(&store)
                    .map_err(|e| Status::internal(e.to_string()))?;
                let mut resp = AlarmResponse {
                    alarms,
                    ..AlarmResponse::default()
                };
                self.ctx
                    .fill_header(&mut resp, Some(store.current_revision()));
                Ok(GrpcResponse::new(resp))
            }
            Ok(AlarmAction::Activate | AlarmAction::Deactivate) => {
                self.ctx.require_root(&caller).await?;
                let cmd = crate::raft::Request::Alarm(prost::Message::encode_to_vec(&req));
                let cmd = self.ctx.as_user(&caller, cmd).await?;
                self.ctx.propose(cmd).await.map(GrpcResponse::new)
            }
            Err(_) => Err(Status::invalid_argument(format!(
                "sett: unknown alarm action {}",
                req.action
            ))),
        }
    }

    async fn status(
        &self,
        request: GrpcRequest<StatusRequest>,
    ) -> Result<GrpcResponse<StatusResponse>, Status> {
        self.ctx.caller(&request).await?;
        let metrics = self.ctx.proposer().raft().metrics().borrow().clone();
        let store = self.ctx.store();
        let db_size = super::db_size(&store);
        let me = self.ctx.proposer().member_id();
        let is_learner = !metrics
            .membership_config
            .membership()
            .voter_ids()
            .any(|id| id == me);
        let mut resp = StatusResponse {
            version: ETCD_API_VERSION.to_owned(),
            db_size: i64::try_from(db_size).unwrap_or(i64::MAX),
            leader: self.ctx.known_leader().unwrap_or(0),
            raft_index: metrics.last_log_index.unwrap_or(0),
            raft_term: metrics.current_term,
            raft_applied_index: metrics.last_applied.map_or(0, |l| l.index),
            errors: Vec::new(),
            db_size_in_use: i64::try_from(db_size).unwrap_or(i64::MAX),
            is_learner,
            ..StatusResponse::default()
        };
        self.ctx
            .fill_header(&mut resp, Some(store.current_revision()));
        Ok(GrpcResponse::new(resp))
    }

    async fn defragment(
        &self,
        request: GrpcRequest<DefragmentRequest>,
    ) -> Result<GrpcResponse<DefragmentResponse>, Status> {
        let caller = self.ctx.caller(&request).await?;
        self.ctx.require_root(&caller).await?;
        let store = self.ctx.store();
        let rev = store.current_revision();
        tokio::task::spawn_blocking(move || -> Result<(), sett_engine::Error> {
            let db = store.db();
            db.compact()?;
            while let sett_engine::GcOutcome::Collected(_) = db.run_value_log_gc(DEFRAG_GC_RATIO)? {
            }
            Ok(())
        })
        .await
        .map_err(|e| Status::internal(format!("defragment task: {e}")))?
        .map_err(|e| Status::internal(format!("defragment: {e}")))?;
        let mut resp = DefragmentResponse::default();
        self.ctx.fill_header(&mut resp, Some(rev));
        Ok(GrpcResponse::new(resp))
    }

    async fn hash(
        &self,
        request: GrpcRequest<HashRequest>,
    ) -> Result<GrpcResponse<HashResponse>, Status> {
        let caller = self.ctx.caller(&request).await?;
        self.ctx.require_root(&caller).await?;
        // The hash of the whole keyspace history kept (see
        // `MvccStore::hash_kv`): equal on members with equal state.
        let h = self.ctx.read(|store| store.hash_kv(0))?;
        let mut resp = HashResponse {
            hash: h.hash,
            ..HashResponse::default()
        };
        self.ctx.fill_header(&mut resp, Some(h.current_revision));
        Ok(GrpcResponse::new(resp))
    }

    async fn hash_kv(
        &self,
        request: GrpcRequest<HashKvRequest>,
    ) -> Result<GrpcResponse<HashKvResponse>, Status> {
        let caller = self.ctx.caller(&request).await?;
        self.ctx.require_root(&caller).await?;
        let rev = request.into_inner().revision;
        let h = self.ctx.read(|store| store.hash_kv(rev))?;
        let mut resp = HashKvResponse {
            hash: h.hash,
            compact_revision: h.compact_revision,
            ..HashKvResponse::default()
        };
        self.ctx.fill_header(&mut resp, Some(h.current_revision));
        Ok(GrpcResponse::new(resp))
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(
        &self,
        request: GrpcRequest<SnapshotRequest>,
    ) -> Result<GrpcResponse<SnapshotStream>, Status> {
        let caller = self.ctx.caller(&request).await?;
        self.ctx.require_root(&caller).await?;
        let store = self.ctx.store();
        let rev = store.current_revision();
        let dir = self.ctx.inner.data_dir.join(SNAPSHOT_TMP_DIR);
        let written = tokio::task::spawn_blocking(move || write_snapshot_file(&store, &dir));
        // A stopping member does not wait for the file (the writer fails
        // once the store is closed).
        let written = tokio::select! {
            w = written => w,
            () = self.ctx.stopped() => return Err(EtcdError::STOPPED.to_status()),
        };
        let (mut file, size) = written
            .map_err(|e| Status::internal(format!("snapshot task: {e}")))?
            .map_err(|e| Status::internal(format!("snapshot: {e}")))?;
        let mut header = SnapshotResponse::default();
        self.ctx.fill_header(&mut header, Some(rev));
        let header = header.header;
        let (tx, rx) = tokio::sync::mpsc::channel(SNAPSHOT_QUEUE);
        tokio::task::spawn_blocking(move || {
            let mut remaining = size;
            let mut first = true;
            while remaining > 0 || first {
                let n = remaining.min(SNAPSHOT_CHUNK_BYTES) as usize;
                let mut blob = vec![0u8; n];
                if let Err(e) = file.read_exact(&mut blob) {
                    let _ = tx.blocking_send(Err(Status::internal(format!("snapshot read: {e}"))));
                    return;
                }
                remaining -= n as u64;
                let msg = SnapshotResponse {
                    header,
                    remaining_bytes: remaining,
                    blob: blob.into(),
                };
                if tx.blocking_send(Ok(msg)).is_err() {
                    return; // the client went away
                }
                first = false;
            }
        });
        // Ends with `server stopped` when the member stops; the reader
        // then finds the queue gone and ends too.
        Ok(GrpcResponse::new(Box::pin(self.ctx.until_stopped(rx))))
    }

    async fn move_leader(
        &self,
        request: GrpcRequest<MoveLeaderRequest>,
    ) -> Result<GrpcResponse<MoveLeaderResponse>, Status> {
        let caller = self.ctx.caller(&request).await?;
        self.ctx.require_root(&caller).await?;
        // openraft 0.9 has no leadership transfer, and a forced election
        // on the target is refused by followers still under the current
        // leader's lease.
        Err(Status::unimplemented(
            "sett: MoveLeader is not supported: the Raft library has no leadership transfer",
        ))
    }

    async fn downgrade(
        &self,
        request: GrpcRequest<DowngradeRequest>,
    ) -> Result<GrpcResponse<DowngradeResponse>, Status> {
        let caller = self.ctx.caller(&request).await?;
        self.ctx.require_root(&caller).await?;
        Err(unimplemented("Downgrade"))
    }
}
