//! The etcd MVCC store as the Raft state machine's [`Applier`].
//!
//! Each committed entry is applied in log order:
//! - `Normal(Request)`: the protobuf request is decoded and run by the
//!   matching [`MvccStore`] method, with the entry's log id (and the
//!   membership, if it changed since it was last recorded) as the call's
//!   `meta`, so the applied state is written in the same engine commit as
//!   the data. The answer is the protobuf-encoded etcd (or `sett.v1`)
//!   response, [`Response::Encoded`].
//! - An etcd error ([`MvccError::Etcd`]), an undecodable request or a lost
//!   native-transaction conflict is a deterministic refusal,
//!   [`Response::Failed`]; the store wrote nothing, so the entry is
//!   recorded like a `Blank`/`Membership` entry (below).
//! - `Blank`, `Membership`, `Noop` and refused entries change no key: their
//!   log id (and membership) is recorded by the next successful store call
//!   of the same batch, or by one [`MvccStore::apply_meta`] at its end.
//! - A storage failure ([`MvccError::Storage`], [`MvccError::Corrupt`]) is
//!   a [`StoreError`]: openraft stops the node.
//!
//! Nothing here reads a clock or any per-member state, so every member
//! computes the same responses and the same store. (The store's
//! `max_txn_ops` must be the same on every member: it is part of the
//! deterministic validation.)
//!
//! # Meta keys
//!
//! | name | value |
//! |---|---|
//! | `raft/applied` | postcard `Option<LogId>` |
//! | `raft/membership` | postcard [`StoredMembership`] (written when it changes) |
//! | `alarms` | protobuf `AlarmResponse` whose `alarms` are the raised alarms |
//! | `auth` | postcard [`AuthState`](crate::auth::AuthState) (written when it changes) |
//!
//! # Authentication
//!
//! `Auth` entries change the auth state ([`crate::auth`]); the applier
//! keeps the applied state in memory too ([`MvccApplier::auth`]), reloaded
//! from the store at open and after a snapshot install, and registers the
//! token of each applied `Authenticate` entry. `AsUser` entries are
//! client writes applied only if their user holds the permissions they
//! need in the auth state at that point of the log
//! ([`crate::auth::check`]), so a permission revoked between a member's
//! check and the commit still refuses the write everywhere.
//!
//! # Alarms
//!
//! `Alarm` entries raise or clear an alarm of one member. While any
//! member's NOSPACE alarm is raised, Put, Txn with a put, LeaseGrant and
//! native commits with writes are refused with etcd's `database space exceeded` (ResourceExhausted);
//! deletes, compaction and lease revokes, which free space, still apply.
//!
//! # Durability
//!
//! The engine commits without fsync (a per-request fsync would cost one
//! disk flush per entry): after a crash the store may lack a suffix of the
//! applied entries, which openraft re-applies from the durable log (the
//! applied state is always exactly the data present). Logs are purged only
//! behind a snapshot, so [`Applier::export`] flushes the engine (value log
//! synced, tables written) before it returns: the applied state on disk is
//! then never behind the purge point.
//!
//! # Snapshots
//!
//! `export` is [`MvccStore::write_snapshot`] (every version of every area,
//! at the state after the last apply; it holds the store's apply lock, so
//! applies wait for it). `install` reads it with
//! [`SnapshotImporter::read_from`] into a fresh directory of a
//! [`DirSwitch`], closes the old store and swaps the directory in, then
//! reopens the store there. Readers holding the old store see
//! `Error::Closed`; [`MvccApplier::subscribe_store`] announces the new one.

use super::dir_switch::DirSwitch;
use super::error::StoreError;
use super::state_machine::{AppliedState, Applier};
use super::types::{Entry, FailureKind, LogId, Request, Response, StoredMembership};
use crate::auth::{AuthCommand, AuthShared, Refusal, META_AUTH};
use crate::mvcc::EtcdError;
use crate::mvcc::{
    MvccError, MvccStore, NativeCommitOutcome, SnapshotImporter, DEFAULT_MAX_TXN_OPS,
};
use openraft::EntryPayload;
use parking_lot::{Mutex, RwLock};
use prost::Message;
use sett_engine::Options;
use sett_proto::etcdserverpb::alarm_request::AlarmAction;
use sett_proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, AlarmType, CompactionRequest, DeleteRangeRequest,
    LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse, PutRequest,
    ResponseHeader, TxnRequest,
};
use sett_proto::sett::v1::{CommitRequest, CommitResponse, ErrorDetail, ErrorReason};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

/// Meta name of the last applied log id.
pub const META_APPLIED: &[u8] = b"raft/applied";
/// Meta name of the last applied membership.
pub const META_MEMBERSHIP: &[u8] = b"raft/membership";
/// Meta name of the raised alarms (an encoded `AlarmResponse` listing
/// them).
pub const META_ALARMS: &[u8] = b"alarms";

/// The message of a native commit that lost a conflict.
pub const CONFLICT_MESSAGE: &str = "sett: transaction conflict";
/// The message of a native commit whose read revision was compacted.
pub const COMPACTED_MESSAGE: &str = "sett: read revision has been compacted";
/// The message of an `Authenticate` entry refused because the auth state
/// changed since the password was checked (the member checks again).
pub const AUTH_STALE_MESSAGE: &str = "sett: auth state changed while authenticating";

#[derive(Debug)]
struct Live {
    switch: DirSwitch,
    store: Arc<MvccStore>,
}

/// The etcd MVCC [`Applier`]; see the module docs.
#[derive(Debug)]
pub struct MvccApplier {
    live: RwLock<Live>,
    /// Engine options of every store opened (the directory is replaced).
    options: Options,
    max_txn_ops: usize,
    /// Held by `apply` for a batch and by `export` / `install` for their
    /// whole run: the applied state an export reports is the one of the
    /// data it wrote.
    gate: Mutex<()>,
    store_tx: tokio::sync::watch::Sender<Arc<MvccStore>>,
    /// The auth state as applied, and the tokens of this member.
    auth: Arc<AuthShared>,
}

/// A store failure as a (fatal) storage error; an etcd error reaching
/// this point is a bug in the applier's own calls.
fn storage(e: MvccError) -> StoreError {
    match e {
        MvccError::Storage(e) => StoreError::Engine(e),
        MvccError::Corrupt(m) => StoreError::Corruption(m),
        other => StoreError::Corruption(format!("unexpected MVCC error: {other}")),
    }
}

/// Either the store's answer (and whether it recorded the entry's meta)
/// or a deterministic refusal (nothing written).
enum Outcome {
    /// Applied; the store wrote `meta` with it.
    Applied(Vec<u8>),
    /// Refused; nothing written.
    Refused(Response),
}

fn failure_kind(code: tonic::Code) -> FailureKind {
    match code {
        tonic::Code::InvalidArgument => FailureKind::InvalidArgument,
        tonic::Code::NotFound => FailureKind::NotFound,
        tonic::Code::OutOfRange => FailureKind::OutOfRange,
        tonic::Code::ResourceExhausted => FailureKind::ResourceExhausted,
        tonic::Code::Aborted => FailureKind::Conflict,
        tonic::Code::PermissionDenied => FailureKind::PermissionDenied,
        tonic::Code::Unauthenticated => FailureKind::Unauthenticated,
        _ => FailureKind::FailedPrecondition,
    }
}

fn refused(kind: FailureKind, message: impl Into<String>) -> Outcome {
    Outcome::Refused(Response::Failed {
        kind,
        message: message.into(),
    })
}

/// A native commit's abort, with its `ErrorDetail` for the client.
fn aborted(message: &str, detail: &ErrorDetail) -> Outcome {
    Outcome::Refused(Response::FailedWithDetail {
        kind: FailureKind::Conflict,
        message: message.to_owned(),
        detail: detail.encode_to_vec(),
    })
}

/// Maps a store result: etcd errors become refusals, storage errors
/// propagate.
fn outcome<T: Message>(r: Result<T, MvccError>) -> Result<Outcome, StoreError> {
    match r {
        Ok(resp) => Ok(Outcome::Applied(resp.encode_to_vec())),
        Err(MvccError::Etcd(e)) => Ok(refused(failure_kind(e.code), e.message)),
        Err(e) => Err(storage(e)),
    }
}

fn decode<T: Message + Default>(bytes: &[u8], what: &str) -> Result<T, Outcome> {
    T::decode(bytes).map_err(|e| {
        refused(
            FailureKind::InvalidArgument,
            format!("sett: undecodable {what}: {e}"),
        )
    })
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..ResponseHeader::default()
    })
}

/// Runs one request on `store` with `meta`; `nospace` says whether a
/// NOSPACE alarm is raised (requests that grow the database are refused).
fn apply_request(
    store: &MvccStore,
    auth: &AuthShared,
    req: &Request,
    meta: &[(&[u8], &[u8])],
    nospace: bool,
) -> Result<Outcome, StoreError> {
    macro_rules! decode_or_refuse {
        ($ty:ty, $bytes:expr, $what:literal) => {
            match decode::<$ty>($bytes, $what) {
                Ok(r) => r,
                Err(o) => return Ok(o),
            }
        };
    }
    let no_space = || refused(FailureKind::ResourceExhausted, EtcdError::NO_SPACE.message);
    match req {
        Request::Alarm(b) => {
            let r = decode_or_refuse!(AlarmRequest, b, "AlarmRequest");
            apply_alarm(store, &r, meta)
        }
        Request::Put(b) => {
            if nospace {
                return Ok(no_space());
            }
            let r = decode_or_refuse!(PutRequest, b, "PutRequest");
            outcome(store.put(&r, meta))
        }
        Request::DeleteRange(b) => {
            let r = decode_or_refuse!(DeleteRangeRequest, b, "DeleteRangeRequest");
            outcome(store.delete_range(&r, meta))
        }
        Request::Txn(b) => {
            let r = decode_or_refuse!(TxnRequest, b, "TxnRequest");
            if nospace && txn_has_put(&r) {
                return Ok(no_space());
            }
            outcome(store.txn(&r, meta))
        }
        Request::Compact(b) => {
            let r = decode_or_refuse!(CompactionRequest, b, "CompactionRequest");
            outcome(store.compact(&r, meta))
        }
        Request::LeaseGrant(b) => {
            if nospace {
                return Ok(no_space());
            }
            let r = decode_or_refuse!(LeaseGrantRequest, b, "LeaseGrantRequest");
            if r.id <= 0 {
                // The proposer must choose a positive ID; refusing keeps a
                // bad proposal from stopping every member.
                return Ok(refused(
                    FailureKind::InvalidArgument,
                    format!("sett: lease grant proposed with ID {}", r.id),
                ));
            }
            let res = store
                .lease_grant(r.id, r.ttl, meta)
                .map(|l| LeaseGrantResponse {
                    header: header(store.current_revision()),
                    id: l.id,
                    ttl: l.ttl_secs,
                    error: String::new(),
                });
            outcome(res)
        }
        Request::LeaseRevoke(b) => {
            let r = decode_or_refuse!(LeaseRevokeRequest, b, "LeaseRevokeRequest");
            let res = store
                .lease_revoke(r.id, meta)
                .map(|rev| LeaseRevokeResponse {
                    header: header(rev),
                });
            outcome(res)
        }
        Request::NativeCommit(b) => {
            let r = decode_or_refuse!(CommitRequest, b, "CommitRequest");
            if nospace && !r.writes.is_empty() {
                return Ok(no_space());
            }
            let before = store.current_revision();
            match store.native_commit(&r, meta) {
                Ok(NativeCommitOutcome::Committed { revision }) => {
                    let resp = CommitResponse {
                        header: Some(sett_proto::sett::v1::ResponseHeader {
                            revision,
                            ..Default::default()
                        }),
                        commit_revision: if revision > before { revision } else { 0 },
                    };
                    Ok(Outcome::Applied(resp.encode_to_vec()))
                }
                Ok(NativeCommitOutcome::Conflict { key, revision }) => {
                    let detail = ErrorDetail {
                        reason: ErrorReason::Conflict as i32,
                        key: key.into(),
                        revision,
                    };
                    Ok(aborted(CONFLICT_MESSAGE, &detail))
                }
                Ok(NativeCommitOutcome::Compacted { compact_revision }) => {
                    let detail = ErrorDetail {
                        reason: ErrorReason::Compacted as i32,
                        revision: compact_revision,
                        ..ErrorDetail::default()
                    };
                    Ok(aborted(COMPACTED_MESSAGE, &detail))
                }
                Err(e) => outcome::<CommitResponse>(Err(e)),
            }
        }
        Request::Noop => Ok(Outcome::Refused(Response::Empty)),
        Request::Auth(cmd) => apply_auth(store, auth, cmd, meta),
        Request::AsUser { user, request } => {
            let state = auth.state();
            let lease_keys = |id| store.lease_keys(id);
            match crate::auth::check::check_write(&state, user, request, &lease_keys)
                .map_err(storage)?
            {
                Ok(()) => apply_request(store, auth, request, meta, nospace),
                Err(e) => Ok(refused(failure_kind(e.code), e.message)),
            }
        }
    }
}

/// Applies one change of the auth state; on success the new state is
/// written with `meta` and published in `auth`.
fn apply_auth(
    store: &MvccStore,
    auth: &AuthShared,
    cmd: &AuthCommand,
    meta: &[(&[u8], &[u8])],
) -> Result<Outcome, StoreError> {
    use sett_proto::etcdserverpb as pb;
    let mut state = (*auth.state()).clone();
    match state.apply(cmd) {
        Err(Refusal::Etcd(e)) => return Ok(refused(failure_kind(e.code), e.message)),
        Err(Refusal::Stale) => {
            return Ok(refused(FailureKind::FailedPrecondition, AUTH_STALE_MESSAGE))
        }
        Ok(()) => {}
    }
    let encoded = postcard::to_allocvec(&state)?;
    let mut all: Vec<(&[u8], &[u8])> = meta.to_vec();
    all.push((META_AUTH, &encoded));
    store.apply_meta(&all).map_err(storage)?;
    auth.set_state(state);
    let h = header(store.current_revision());
    let resp = match cmd {
        AuthCommand::Enable => pb::AuthEnableResponse { header: h }.encode_to_vec(),
        AuthCommand::Disable => {
            auth.tokens.clear();
            pb::AuthDisableResponse { header: h }.encode_to_vec()
        }
        AuthCommand::UserAdd { .. } => pb::AuthUserAddResponse { header: h }.encode_to_vec(),
        AuthCommand::UserDelete { name } => {
            auth.tokens.remove_user(name);
            pb::AuthUserDeleteResponse { header: h }.encode_to_vec()
        }
        AuthCommand::UserChangePassword { name, .. } => {
            auth.tokens.remove_user(name);
            pb::AuthUserChangePasswordResponse { header: h }.encode_to_vec()
        }
        AuthCommand::UserGrantRole { .. } => {
            pb::AuthUserGrantRoleResponse { header: h }.encode_to_vec()
        }
        AuthCommand::UserRevokeRole { .. } => {
            pb::AuthUserRevokeRoleResponse { header: h }.encode_to_vec()
        }
        AuthCommand::RoleAdd { .. } => pb::AuthRoleAddResponse { header: h }.encode_to_vec(),
        AuthCommand::RoleDelete { .. } => pb::AuthRoleDeleteResponse { header: h }.encode_to_vec(),
        AuthCommand::RoleGrantPermission { .. } => {
            pb::AuthRoleGrantPermissionResponse { header: h }.encode_to_vec()
        }
        AuthCommand::RoleRevokePermission { .. } => {
            pb::AuthRoleRevokePermissionResponse { header: h }.encode_to_vec()
        }
        AuthCommand::Authenticate {
            name,
            token,
            issued_at_ms,
            ..
        } => {
            auth.tokens.insert(token, name, *issued_at_ms);
            pb::AuthenticateResponse {
                header: h,
                token: token.clone(),
            }
            .encode_to_vec()
        }
    };
    Ok(Outcome::Applied(resp))
}

/// The auth state stored in `store`.
fn read_auth(store: &MvccStore) -> Result<crate::auth::AuthState, StoreError> {
    let bytes = store.meta(META_AUTH).map_err(storage)?;
    Ok(crate::auth::decode_state(bytes.as_deref())?)
}

/// Whether a txn holds a put in any branch (nested txns included).
pub fn txn_has_put(t: &TxnRequest) -> bool {
    use sett_proto::etcdserverpb::request_op::Request as Op;
    t.success
        .iter()
        .chain(&t.failure)
        .any(|op| match &op.request {
            Some(Op::RequestPut(_)) => true,
            Some(Op::RequestTxn(inner)) => txn_has_put(inner),
            _ => false,
        })
}

/// The alarms raised in `store`.
pub fn alarms(store: &MvccStore) -> Result<Vec<AlarmMember>, StoreError> {
    match store.meta(META_ALARMS).map_err(storage)? {
        Some(b) => Ok(AlarmResponse::decode(b.as_slice())
            .map_err(|e| StoreError::Corruption(format!("alarm list: {e}")))?
            .alarms),
        None => Ok(Vec::new()),
    }
}

/// Whether a NOSPACE alarm is raised in `store`.
fn nospace_raised(store: &MvccStore) -> Result<bool, StoreError> {
    Ok(alarms(store)?
        .iter()
        .any(|a| a.alarm == AlarmType::Nospace as i32))
}

/// Raises or clears one alarm, recorded with `meta`; the answer lists the
/// alarm changed (none if it already was in that state), as etcd's does.
fn apply_alarm(
    store: &MvccStore,
    r: &AlarmRequest,
    meta: &[(&[u8], &[u8])],
) -> Result<Outcome, StoreError> {
    let mut list = alarms(store)?;
    let member = AlarmMember {
        member_id: r.member_id,
        alarm: r.alarm,
    };
    let present = list.contains(&member);
    let changed = match AlarmAction::try_from(r.action) {
        Ok(AlarmAction::Activate) if !present && r.alarm != AlarmType::None as i32 => {
            list.push(member);
            true
        }
        Ok(AlarmAction::Deactivate) if present => {
            list.retain(|a| *a != member);
            true
        }
        _ => false,
    };
    let encoded = AlarmResponse {
        alarms: list,
        ..AlarmResponse::default()
    }
    .encode_to_vec();
    let mut all: Vec<(&[u8], &[u8])> = meta.to_vec();
    all.push((META_ALARMS, &encoded));
    store.apply_meta(&all).map_err(storage)?;
    let resp = AlarmResponse {
        header: header(store.current_revision()),
        alarms: if changed { vec![member] } else { Vec::new() },
    };
    Ok(Outcome::Applied(resp.encode_to_vec()))
}

/// Reads the applied state recorded in `store`'s meta.
fn read_state(store: &MvccStore) -> Result<AppliedState, StoreError> {
    let last_applied = match store.meta(META_APPLIED).map_err(storage)? {
        Some(b) => postcard::from_bytes::<Option<LogId>>(&b)?,
        None => None,
    };
    let membership = match store.meta(META_MEMBERSHIP).map_err(storage)? {
        Some(b) => postcard::from_bytes::<StoredMembership>(&b)?,
        None => StoredMembership::default(),
    };
    Ok(AppliedState {
        last_applied,
        membership,
    })
}

impl MvccApplier {
    /// Opens (creating if needed) the store under `root` with
    /// [`MvccStore::default_options`] without fsync per commit (see
    /// "Durability" above) and etcd's default `--max-txn-ops`.
    pub fn open(root: impl Into<PathBuf>) -> Result<MvccApplier, StoreError> {
        let root = root.into();
        let mut options = MvccStore::default_options(root.clone());
        options.sync_writes = false;
        MvccApplier::open_with(root, options, DEFAULT_MAX_TXN_OPS)
    }

    /// Opens the store under `root` with engine `options` (their `dir` is
    /// replaced by the live directory; managed mode is forced) and
    /// `max_txn_ops` (must be equal on every member).
    pub fn open_with(
        root: impl Into<PathBuf>,
        options: Options,
        max_txn_ops: usize,
    ) -> Result<MvccApplier, StoreError> {
        let switch = DirSwitch::open(root)?;
        let store = Arc::new(open_store(&options, switch.live_dir(), max_txn_ops)?);
        let auth = Arc::new(AuthShared::default());
        auth.set_state(read_auth(&store)?);
        let (store_tx, _) = tokio::sync::watch::channel(store.clone());
        Ok(MvccApplier {
            auth,
            live: RwLock::new(Live { switch, store }),
            options,
            max_txn_ops,
            gate: Mutex::new(()),
            store_tx,
        })
    }

    /// The live store, for reads served outside Raft (ranges, watches,
    /// hashes). Replaced when a snapshot is installed.
    pub fn store(&self) -> Arc<MvccStore> {
        self.live.read().store.clone()
    }

    /// The auth state as applied on this member, and its tokens.
    pub fn auth(&self) -> &Arc<AuthShared> {
        &self.auth
    }

    /// A receiver that sees the new store after each snapshot install
    /// (watchers re-subscribe to its revisions).
    pub fn subscribe_store(&self) -> tokio::sync::watch::Receiver<Arc<MvccStore>> {
        self.store_tx.subscribe()
    }

    /// Forgets the Raft state recorded with the data (applied log id and
    /// membership), keeping every key: for a store restored from a
    /// snapshot file to seed a new cluster.
    pub fn forget_raft_state(&self) -> Result<(), StoreError> {
        let _gate = self.gate.lock();
        let applied = postcard::to_allocvec(&None::<LogId>)?;
        let membership = postcard::to_allocvec(&StoredMembership::default())?;
        let meta: Vec<(&[u8], &[u8])> =
            vec![(META_APPLIED, &applied), (META_MEMBERSHIP, &membership)];
        self.live.read().store.apply_meta(&meta).map_err(storage)
    }

    /// Closes the database.
    pub fn close(&self) -> Result<(), StoreError> {
        Ok(self.live.read().store.db().close()?)
    }
}

fn open_store(
    options: &Options,
    dir: PathBuf,
    max_txn_ops: usize,
) -> Result<MvccStore, StoreError> {
    let mut o = options.clone();
    o.dir = dir;
    let mut store = MvccStore::open(o).map_err(storage)?;
    store.set_max_txn_ops(max_txn_ops);
    Ok(store)
}

impl Applier for MvccApplier {
    fn applied_state(&self) -> Result<AppliedState, StoreError> {
        read_state(&self.live.read().store)
    }

    fn apply(&self, entries: Vec<Entry>) -> Result<Vec<Response>, StoreError> {
        let _gate = self.gate.lock();
        let live = self.live.read();
        let store = &*live.store;
        let mut out = Vec::with_capacity(entries.len());
        // The last entry not yet recorded in the store, and a membership
        // change not yet recorded.
        let mut unrecorded: Option<LogId> = None;
        let mut membership: Option<StoredMembership> = None;
        // Read once per batch; only an Alarm entry changes it.
        let mut nospace = nospace_raised(store)?;
        for entry in entries {
            let log_id = entry.log_id;
            let resp = match entry.payload {
                EntryPayload::Blank => {
                    unrecorded = Some(log_id);
                    Response::Empty
                }
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(log_id), m));
                    unrecorded = Some(log_id);
                    Response::Empty
                }
                EntryPayload::Normal(req) => {
                    let applied = postcard::to_allocvec(&Some(log_id))?;
                    let mem = membership.as_ref().map(postcard::to_allocvec).transpose()?;
                    let mut meta: Vec<(&[u8], &[u8])> = vec![(META_APPLIED, &applied)];
                    if let Some(m) = &mem {
                        meta.push((META_MEMBERSHIP, m));
                    }
                    let outcome = apply_request(store, &self.auth, &req, &meta, nospace)?;
                    if matches!(req.inner(), Request::Alarm(_)) {
                        nospace = nospace_raised(store)?;
                    }
                    match outcome {
                        Outcome::Applied(bytes) => {
                            unrecorded = None;
                            membership = None;
                            Response::Encoded(bytes)
                        }
                        Outcome::Refused(resp) => {
                            unrecorded = Some(log_id);
                            resp
                        }
                    }
                }
            };
            out.push(resp);
        }
        if let Some(log_id) = unrecorded {
            let applied = postcard::to_allocvec(&Some(log_id))?;
            let mem = membership.as_ref().map(postcard::to_allocvec).transpose()?;
            let mut meta: Vec<(&[u8], &[u8])> = vec![(META_APPLIED, &applied)];
            if let Some(m) = &mem {
                meta.push((META_MEMBERSHIP, m));
            }
            store.apply_meta(&meta).map_err(storage)?;
        }
        Ok(out)
    }

    fn export(&self, out: &mut dyn Write) -> Result<AppliedState, StoreError> {
        let gate = self.gate.lock();
        let live = self.live.read();
        let state = read_state(&live.store)?;
        live.store.write_snapshot(out).map_err(storage)?;
        drop(gate);
        out.flush()?;
        // Logs up to this state may be purged once the snapshot exists:
        // make the state durable in the store first (see module docs).
        live.store.db().flush()?;
        Ok(state)
    }

    fn install(&self, input: &mut dyn Read) -> Result<AppliedState, StoreError> {
        let _gate = self.gate.lock();
        let mut live = self.live.write();
        let staging = live.switch.staging_dir()?;
        let mut o = self.options.clone();
        o.dir = staging;
        let imported = SnapshotImporter::read_from(o, input).map_err(storage)?;
        let state = read_state(&imported);
        imported.db().close()?;
        drop(imported);
        let state = state?;
        live.store.db().close()?;
        live.switch.switch()?;
        let store = Arc::new(open_store(
            &self.options,
            live.switch.live_dir(),
            self.max_txn_ops,
        )?);
        self.auth.set_state(read_auth(&store)?);
        live.store = store.clone();
        drop(live);
        self.store_tx.send_replace(store);
        Ok(state)
    }
}
