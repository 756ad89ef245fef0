//! KV/Txn: validation (etcd's `checkTxnRequest` and `checkIntervals`),
//! compares evaluated on the state before the txn (nested ones too, as
//! etcd's `compareToPath`), pre-checks of the chosen path, then execution
//! of the chosen ops at one shared revision.

use super::error::{EtcdError, Result};
use super::keys::KeyRange;
use super::store::{check_range, range_in, MvccStore};
use super::view::View;
use super::write::{check_put, MetaWrites, WriteCtx};
use sett_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use sett_proto::etcdserverpb::request_op::Request;
use sett_proto::etcdserverpb::response_op::Response;
use sett_proto::etcdserverpb::{
    Compare, RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use sett_proto::mvccpb::KeyValue;
use std::cmp::Ordering;
use std::collections::BTreeSet;

/// Validates a txn as etcd's gRPC layer does before proposing it: the op
/// limit, empty keys, put flags, sort options, and no key written twice.
pub fn validate_txn(req: &TxnRequest, max_ops: usize) -> Result<()> {
    check_txn(req, max_ops)?;
    check_intervals(&req.success)?;
    check_intervals(&req.failure)?;
    Ok(())
}

fn check_txn(req: &TxnRequest, max_ops: usize) -> Result<()> {
    let opc = req
        .compare
        .len()
        .max(req.success.len())
        .max(req.failure.len());
    if opc > max_ops {
        return Err(EtcdError::TOO_MANY_OPS.into());
    }
    if req.compare.iter().any(|c| c.key.is_empty()) {
        return Err(EtcdError::EMPTY_KEY.into());
    }
    for op in req.success.iter().chain(&req.failure) {
        match &op.request {
            Some(Request::RequestRange(r)) => check_range(r)?,
            Some(Request::RequestPut(p)) => check_put(p)?,
            Some(Request::RequestDeleteRange(d)) => {
                if d.key.is_empty() {
                    return Err(EtcdError::EMPTY_KEY.into());
                }
            }
            Some(Request::RequestTxn(t)) => check_txn(t, max_ops - opc)?,
            None => return Err(EtcdError::KEY_NOT_FOUND.into()),
        }
    }
    Ok(())
}

/// etcd's `checkIntervals`: the keys put by `ops` (nested txns included)
/// and the delete ranges; a put key given twice, or put and deleted, is
/// an error (a nested txn's success and failure branches may share keys).
pub(crate) fn check_intervals(ops: &[RequestOp]) -> Result<(BTreeSet<Vec<u8>>, Vec<KeyRange>)> {
    let mut dels: Vec<KeyRange> = ops
        .iter()
        .filter_map(|op| match &op.request {
            Some(Request::RequestDeleteRange(d)) => Some(KeyRange::literal(&d.key, &d.range_end)),
            _ => None,
        })
        .collect();
    let mut puts: BTreeSet<Vec<u8>> = BTreeSet::new();
    let hits = |dels: &[KeyRange], k: &[u8]| dels.iter().any(|r| r.intersects_point(k));
    for op in ops {
        let Some(Request::RequestTxn(t)) = &op.request else {
            continue;
        };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || hits(&dels, k) {
                return Err(EtcdError::DUPLICATE_KEY.into());
            }
            puts.insert(k.clone());
        }
        for k in &puts_else {
            if puts.contains(k) && !puts_then.contains(k) || hits(&dels, k) {
                return Err(EtcdError::DUPLICATE_KEY.into());
            }
            puts.insert(k.clone());
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in ops {
        let Some(Request::RequestPut(p)) = &op.request else {
            continue;
        };
        let k = p.key.to_vec();
        if puts.contains(&k) || hits(&dels, &k) {
            return Err(EtcdError::DUPLICATE_KEY.into());
        }
        puts.insert(k);
    }
    Ok((puts, dels))
}

/// etcd's `applyCompare`: every key in the range must satisfy the
/// compare; a missing key compares as a zero `KeyValue`, except for VALUE
/// which then fails.
fn compare(view: &View<'_>, c: &Compare) -> Result<bool> {
    if crate::debug_faults::enabled(crate::debug_faults::Fault::SkipTxnCompare) {
        return Ok(true);
    }
    // An unknown target compares as equal, as in etcd's `compareKV`.
    let Ok(target) = CompareTarget::try_from(c.target) else {
        return Ok(compare_result(c, Ordering::Equal));
    };
    let (kvs, _) = view.scan(&KeyRange::new(&c.key, &c.range_end), usize::MAX, None)?;
    if kvs.is_empty() {
        if target == CompareTarget::Value {
            return Ok(false);
        }
        return Ok(compare_kv(c, target, &KeyValue::default()));
    }
    Ok(kvs.iter().all(|kv| compare_kv(c, target, kv)))
}

fn compare_kv(c: &Compare, target: CompareTarget, kv: &KeyValue) -> bool {
    let int = |v: Option<i64>| v.unwrap_or(0);
    let ord = match target {
        CompareTarget::Value => {
            let want: &[u8] = match &c.target_union {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value.as_ref().cmp(want)
        }
        CompareTarget::Create => kv.create_revision.cmp(&int(match c.target_union {
            Some(TargetUnion::CreateRevision(v)) => Some(v),
            _ => None,
        })),
        CompareTarget::Mod => kv.mod_revision.cmp(&int(match c.target_union {
            Some(TargetUnion::ModRevision(v)) => Some(v),
            _ => None,
        })),
        CompareTarget::Version => kv.version.cmp(&int(match c.target_union {
            Some(TargetUnion::Version(v)) => Some(v),
            _ => None,
        })),
        CompareTarget::Lease => kv.lease.cmp(&int(match c.target_union {
            Some(TargetUnion::Lease(v)) => Some(v),
            _ => None,
        })),
    };
    compare_result(c, ord)
}

fn compare_result(c: &Compare, ord: Ordering) -> bool {
    match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => ord == Ordering::Equal,
        Ok(CompareResult::NotEqual) => ord != Ordering::Equal,
        Ok(CompareResult::Greater) => ord == Ordering::Greater,
        Ok(CompareResult::Less) => ord == Ordering::Less,
        Err(_) => true,
    }
}

/// etcd's `compareToPath`: the branch taken by the txn and by each nested
/// txn on the taken branches, in pre-order, all on the pre-txn state.
fn compare_to_path(view: &View<'_>, req: &TxnRequest, path: &mut Vec<bool>) -> Result<()> {
    let mut ok = true;
    for c in &req.compare {
        if !compare(view, c)? {
            ok = false;
            break;
        }
    }
    path.push(ok);
    for op in if ok { &req.success } else { &req.failure } {
        if let Some(Request::RequestTxn(t)) = &op.request {
            compare_to_path(view, t, path)?;
        }
    }
    Ok(())
}

/// Visits the ops of the taken branches in pre-order.
fn walk_path<'r>(
    req: &'r TxnRequest,
    path: &[bool],
    pos: &mut usize,
    f: &mut dyn FnMut(&'r RequestOp) -> Result<()>,
) -> Result<()> {
    let ok = path[*pos];
    *pos += 1;
    for op in if ok { &req.success } else { &req.failure } {
        f(op)?;
        if let Some(Request::RequestTxn(t)) = &op.request {
            walk_path(t, path, pos, f)?;
        }
    }
    Ok(())
}

fn execute(
    ctx: &mut WriteCtx<'_>,
    req: &TxnRequest,
    path: &[bool],
    pos: &mut usize,
) -> Result<TxnResponse> {
    let ok = path[*pos];
    *pos += 1;
    let mut responses = Vec::new();
    for op in if ok { &req.success } else { &req.failure } {
        let resp = match &op.request {
            Some(Request::RequestRange(r)) => {
                let rev = ctx.rev();
                let mut resp = if r.revision <= 0 || r.revision == rev {
                    range_in(&ctx.view(), r, None)?
                } else {
                    let txn = ctx.store().read_at(r.revision)?;
                    range_in(
                        &View {
                            base: &txn,
                            overlay: None,
                        },
                        r,
                        None,
                    )?
                };
                resp.header = MvccStore::header(rev);
                Response::ResponseRange(resp)
            }
            Some(Request::RequestPut(p)) => Response::ResponsePut(ctx.apply_put(p)?),
            Some(Request::RequestDeleteRange(d)) => {
                Response::ResponseDeleteRange(ctx.apply_delete(d)?)
            }
            Some(Request::RequestTxn(t)) => Response::ResponseTxn(execute(ctx, t, path, pos)?),
            None => unreachable!("validated: every op has a request"),
        };
        responses.push(ResponseOp {
            response: Some(resp),
        });
    }
    Ok(TxnResponse {
        header: Some(ResponseHeader::default()),
        succeeded: ok,
        responses,
    })
}

impl MvccStore {
    /// Applies KV/Txn: compares, then the chosen ops; one new revision if
    /// any key changed (read-only txns keep the revision). Validation
    /// ([`validate_txn`]) is repeated here, so a bad request never writes.
    pub fn txn(&self, req: &TxnRequest, meta: MetaWrites<'_>) -> Result<TxnResponse> {
        validate_txn(req, self.max_txn_ops)?;
        let _g = self.apply_lock.lock();
        let mut ctx = WriteCtx::new(self)?;
        let mut path = Vec::new();
        compare_to_path(&ctx.pre_view(), req, &mut path)?;
        // Pre-checks on the pre-txn state (etcd's checkRequests): puts
        // first, then ranges.
        {
            let view = ctx.pre_view();
            let mut pos = 0;
            walk_path(req, &path, &mut pos, &mut |op| {
                if let Some(Request::RequestPut(p)) = &op.request {
                    if (p.ignore_value || p.ignore_lease) && view.get(&p.key)?.is_none() {
                        return Err(EtcdError::KEY_NOT_FOUND.into());
                    }
                    if p.lease != 0 && !ctx.lease_exists(p.lease)? {
                        return Err(EtcdError::LEASE_NOT_FOUND.into());
                    }
                }
                Ok(())
            })?;
            let mut pos = 0;
            walk_path(req, &path, &mut pos, &mut |op| {
                if let Some(Request::RequestRange(r)) = &op.request {
                    if r.revision > 0 {
                        self.resolve_rev(r.revision, ctx.begin)?;
                    }
                }
                Ok(())
            })?;
        }
        let mut pos = 0;
        let mut resp = execute(&mut ctx, req, &path, &mut pos)?;
        debug_assert_eq!(pos, path.len());
        let rev = ctx.rev();
        ctx.commit(meta)?;
        resp.header = MvccStore::header(rev);
        Ok(resp)
    }
}
