//! What a write needs, checked against an [`AuthState`]: the same check
//! runs on the member that receives the request (before proposing it)
//! and in the state machine (at apply, against the state as of that log
//! position), as etcd checks twice.
//!
//! - Put: write on the key (and read with `prev_kv`);
//! - DeleteRange: write on the range (and read with `prev_kv`);
//! - Txn: read on every compare and range, write on every put and delete
//!   (read too with `prev_kv`), recursively through nested txns;
//! - LeaseRevoke: write on every key attached to the lease;
//! - native commit: read on every read range, write on every written key
//!   or range;
//! - Compact, Alarm: role `root`;
//! - LeaseGrant: any user.
//!
//! A request that does not decode passes: the apply refuses it anyway.

use super::perm::PermKind;
use super::state::AuthState;
use crate::mvcc::{EtcdError, MvccError};
use crate::raft::Request;
use prost::Message;
use sett_proto::etcdserverpb::request_op::Request as Op;
use sett_proto::etcdserverpb::{
    DeleteRangeRequest, LeaseRevokeRequest, PutRequest, RangeRequest, TxnRequest,
};

/// The keys attached to a lease (from the store the check runs on).
pub type LeaseKeys<'a> = &'a dyn Fn(i64) -> Result<Vec<Vec<u8>>, MvccError>;

/// Checks that `user` may make the write `req` under `state`. `Ok(Err)`
/// is the client's error; `Err` a storage failure reading lease keys.
pub fn check_write(
    state: &AuthState,
    user: &str,
    req: &Request,
    lease_keys: LeaseKeys<'_>,
) -> Result<Result<(), EtcdError>, MvccError> {
    if !state.enabled {
        return Ok(Ok(()));
    }
    if user.is_empty() {
        return Ok(Err(EtcdError::AUTH_USER_EMPTY));
    }
    if !state.users.contains_key(user) {
        return Ok(Err(EtcdError::AUTH_PERMISSION_DENIED));
    }
    if state.is_root(user) {
        return Ok(Ok(()));
    }
    let ok = match req {
        Request::Put(b) => {
            PutRequest::decode(b.as_slice()).map_or(true, |r| put_ok(state, user, &r))
        }
        Request::DeleteRange(b) => {
            DeleteRangeRequest::decode(b.as_slice()).map_or(true, |r| delete_ok(state, user, &r))
        }
        Request::Txn(b) => {
            TxnRequest::decode(b.as_slice()).map_or(true, |r| txn_ok(state, user, &r))
        }
        Request::LeaseRevoke(b) => match LeaseRevokeRequest::decode(b.as_slice()) {
            Ok(r) => lease_keys(r.id)?
                .iter()
                .all(|k| state.permitted(user, PermKind::Write, k, &[])),
            Err(_) => true,
        },
        Request::NativeCommit(b) => {
            match sett_proto::sett::v1::CommitRequest::decode(b.as_slice()) {
                Ok(r) => native_ok(state, user, &r),
                Err(_) => true,
            }
        }
        Request::LeaseGrant(_) | Request::Noop => true,
        // Administrative requests: root only (checked above).
        Request::Compact(_) | Request::Alarm(_) | Request::Auth(_) | Request::AsUser { .. } => {
            false
        }
    };
    Ok(if ok {
        Ok(())
    } else {
        Err(EtcdError::AUTH_PERMISSION_DENIED)
    })
}

/// Whether `user` may read `[key, range_end)`.
pub fn range_ok(state: &AuthState, user: &str, key: &[u8], range_end: &[u8]) -> bool {
    state.permitted(user, PermKind::Read, key, range_end)
}

fn put_ok(state: &AuthState, user: &str, r: &PutRequest) -> bool {
    state.permitted(user, PermKind::Write, &r.key, &[])
        && (!r.prev_kv || state.permitted(user, PermKind::Read, &r.key, &[]))
}

fn delete_ok(state: &AuthState, user: &str, r: &DeleteRangeRequest) -> bool {
    state.permitted(user, PermKind::Write, &r.key, &r.range_end)
        && (!r.prev_kv || state.permitted(user, PermKind::Read, &r.key, &r.range_end))
}

fn read_ok(state: &AuthState, user: &str, r: &RangeRequest) -> bool {
    range_ok(state, user, &r.key, &r.range_end)
}

/// Whether `user` may run txn `t` (every branch, recursively).
pub fn txn_ok(state: &AuthState, user: &str, t: &TxnRequest) -> bool {
    t.compare
        .iter()
        .all(|c| range_ok(state, user, &c.key, &c.range_end))
        && t.success
            .iter()
            .chain(&t.failure)
            .all(|op| match &op.request {
                Some(Op::RequestRange(r)) => read_ok(state, user, r),
                Some(Op::RequestPut(r)) => put_ok(state, user, r),
                Some(Op::RequestDeleteRange(r)) => delete_ok(state, user, r),
                Some(Op::RequestTxn(r)) => txn_ok(state, user, r),
                None => true,
            })
}

fn native_ok(state: &AuthState, user: &str, r: &sett_proto::sett::v1::CommitRequest) -> bool {
    use sett_proto::sett::v1::write::Op as W;
    r.reads
        .iter()
        .all(|k| range_ok(state, user, &k.key, &k.range_end))
        && r.writes.iter().all(|w| match &w.op {
            Some(W::Put(p)) => state.permitted(user, PermKind::Write, &p.key, &[]),
            Some(W::Delete(d)) => state.permitted(user, PermKind::Write, &d.key, &d.range_end),
            None => true,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{AuthCommand, Perm};
    use sett_proto::etcdserverpb::{Compare, RequestOp};

    /// Auth enabled; user `u` may read `/a/` and write `/b/`.
    fn state() -> AuthState {
        let mut s = AuthState::default();
        let cmds = [
            AuthCommand::UserAdd {
                name: "root".into(),
                password_hash: None,
            },
            AuthCommand::UserGrantRole {
                user: "root".into(),
                role: "root".into(),
            },
            AuthCommand::UserAdd {
                name: "u".into(),
                password_hash: None,
            },
            AuthCommand::RoleAdd { name: "r".into() },
            AuthCommand::RoleGrantPermission {
                name: "r".into(),
                perm: Perm {
                    kind: PermKind::Read,
                    key: b"/a/".to_vec(),
                    range_end: b"/a0".to_vec(),
                },
            },
            AuthCommand::RoleGrantPermission {
                name: "r".into(),
                perm: Perm {
                    kind: PermKind::Write,
                    key: b"/b/".to_vec(),
                    range_end: b"/b0".to_vec(),
                },
            },
            AuthCommand::UserGrantRole {
                user: "u".into(),
                role: "r".into(),
            },
            AuthCommand::Enable,
        ];
        for c in &cmds {
            s.apply(c).expect("setup");
        }
        s
    }

    fn put(key: &str, prev_kv: bool) -> PutRequest {
        PutRequest {
            key: key.as_bytes().to_vec().into(),
            prev_kv,
            ..PutRequest::default()
        }
    }

    fn op(r: Op) -> RequestOp {
        RequestOp { request: Some(r) }
    }

    fn check(s: &AuthState, user: &str, req: &Request) -> Result<(), EtcdError> {
        let no_leases = |_| Ok(Vec::new());
        check_write(s, user, req, &no_leases).expect("no storage")
    }

    #[test]
    fn puts_deletes_and_admin_requests() {
        let s = state();
        let p = |k, prev| Request::Put(put(k, prev).encode_to_vec());
        assert_eq!(check(&s, "u", &p("/b/1", false)), Ok(()));
        assert_eq!(
            check(&s, "u", &p("/b/1", true)),
            Err(EtcdError::AUTH_PERMISSION_DENIED),
            "prev_kv needs read"
        );
        assert_eq!(
            check(&s, "u", &p("/a/1", false)),
            Err(EtcdError::AUTH_PERMISSION_DENIED)
        );
        assert_eq!(
            check(&s, "", &p("/b/1", false)),
            Err(EtcdError::AUTH_USER_EMPTY)
        );
        assert_eq!(check(&s, "root", &p("/x", true)), Ok(()));
        let compact = Request::Compact(Vec::new());
        assert_eq!(
            check(&s, "u", &compact),
            Err(EtcdError::AUTH_PERMISSION_DENIED)
        );
        assert_eq!(check(&s, "root", &compact), Ok(()));
        let mut off = s.clone();
        off.apply(&AuthCommand::Disable).expect("disable");
        assert_eq!(check(&off, "", &compact), Ok(()));
    }

    #[test]
    fn txns_are_checked_through_every_branch_and_nesting() {
        let s = state();
        let txn = |t: TxnRequest| Request::Txn(t.encode_to_vec());
        let compare_a = Compare {
            key: b"/a/1".to_vec().into(),
            ..Compare::default()
        };
        let ok = TxnRequest {
            compare: vec![compare_a.clone()],
            success: vec![op(Op::RequestPut(put("/b/1", false)))],
            failure: vec![op(Op::RequestRange(RangeRequest {
                key: b"/a/".to_vec().into(),
                range_end: b"/a0".to_vec().into(),
                ..RangeRequest::default()
            }))],
        };
        assert_eq!(check(&s, "u", &txn(ok.clone())), Ok(()));
        // A forbidden put in the failure branch refuses the whole txn.
        let mut bad = ok.clone();
        bad.failure.push(op(Op::RequestPut(put("/a/1", false))));
        assert_eq!(
            check(&s, "u", &txn(bad)),
            Err(EtcdError::AUTH_PERMISSION_DENIED)
        );
        // A compare on a key the user cannot read.
        let mut bad = ok.clone();
        bad.compare[0].key = b"/b/1".to_vec().into();
        assert_eq!(
            check(&s, "u", &txn(bad)),
            Err(EtcdError::AUTH_PERMISSION_DENIED)
        );
        // A forbidden range two levels down.
        let inner = TxnRequest {
            success: vec![op(Op::RequestRange(RangeRequest {
                key: b"/c".to_vec().into(),
                ..RangeRequest::default()
            }))],
            ..TxnRequest::default()
        };
        let outer = TxnRequest {
            success: vec![op(Op::RequestTxn(TxnRequest {
                success: vec![op(Op::RequestTxn(inner))],
                ..TxnRequest::default()
            }))],
            ..TxnRequest::default()
        };
        assert_eq!(
            check(&s, "u", &txn(outer)),
            Err(EtcdError::AUTH_PERMISSION_DENIED)
        );
    }

    #[test]
    fn lease_revoke_needs_write_on_every_attached_key() {
        let s = state();
        let revoke = Request::LeaseRevoke(LeaseRevokeRequest { id: 7 }.encode_to_vec());
        let only_b = |_| Ok(vec![b"/b/1".to_vec(), b"/b/2".to_vec()]);
        assert_eq!(check_write(&s, "u", &revoke, &only_b).unwrap(), Ok(()));
        let mixed = |_| Ok(vec![b"/b/1".to_vec(), b"/a/1".to_vec()]);
        assert_eq!(
            check_write(&s, "u", &revoke, &mixed).unwrap(),
            Err(EtcdError::AUTH_PERMISSION_DENIED)
        );
    }
}
