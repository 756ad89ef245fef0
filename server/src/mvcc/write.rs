//! The apply side: one `WriteCtx` per modifying request collects the
//! request's writes over a snapshot of the current revision and commits
//! them as one engine transaction at the next revision (or, when nothing
//! in the data area changed, meta-only at the current one).

use super::error::{EtcdError, Result};
use super::keys::{self, encode_event, encode_i64, KeyRange, Record, META_REVISION};
use super::store::{MvccStore, Snapshot};
use super::view::{Overlay, View};
use bytes::Bytes;
use sett_proto::etcdserverpb::{
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, ResponseHeader,
};
use sett_proto::mvccpb::event::EventType;
use sett_proto::mvccpb::KeyValue;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

/// Opaque meta entries an apply call stores in the same engine commit as
/// its data: `(name, value)` pairs, read back with [`MvccStore::meta`].
pub type MetaWrites<'a> = &'a [(&'a [u8], &'a [u8])];

/// Writes of one request being applied.
pub(crate) struct WriteCtx<'s> {
    store: &'s MvccStore,
    pub(crate) base: Snapshot<'s>,
    pub(crate) begin: i64,
    overlay: Overlay,
    events: Vec<(EventType, Vec<u8>)>,
    /// (lease, key) → attached after this request?
    attach: BTreeMap<(i64, Vec<u8>), bool>,
    /// Other engine keys (meta, leases, events): `None` deletes.
    pub(crate) raw: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl<'s> WriteCtx<'s> {
    pub(crate) fn new(store: &'s MvccStore) -> Result<WriteCtx<'s>> {
        let begin = store.current_revision();
        Ok(WriteCtx {
            store,
            base: store.read_at(begin)?,
            begin,
            overlay: Overlay::new(),
            events: Vec::new(),
            attach: BTreeMap::new(),
            raw: BTreeMap::new(),
        })
    }

    pub(crate) fn store(&self) -> &'s MvccStore {
        self.store
    }

    /// True once a key in the data area changed.
    pub(crate) fn changed(&self) -> bool {
        !self.events.is_empty()
    }

    /// The revision reads in this request see (begin, or begin + 1 after
    /// a change).
    pub(crate) fn rev(&self) -> i64 {
        self.begin + i64::from(self.changed())
    }

    pub(crate) fn view(&self) -> View<'_> {
        View {
            base: &self.base,
            overlay: Some((&self.overlay, self.begin + 1)),
        }
    }

    /// A view of the store before this request.
    pub(crate) fn pre_view(&self) -> View<'_> {
        View {
            base: &self.base,
            overlay: None,
        }
    }

    /// Is lease `id` granted (as of this request's writes)?
    pub(crate) fn lease_exists(&self, id: i64) -> Result<bool> {
        let k = keys::lease_key(id);
        if let Some(v) = self.raw.get(&k) {
            return Ok(v.is_some());
        }
        Ok(self.base.get(&k)?.is_some())
    }

    /// Puts `key` (no checks: the caller validated).
    pub(crate) fn put(&mut self, key: &[u8], value: Bytes, lease: i64) -> Result<Option<KeyValue>> {
        let prev = self.view().get(key)?;
        let rev = self.begin + 1;
        let (create_revision, version) = match &prev {
            Some(p) => (p.create_revision, p.version + 1),
            None => (rev, 1),
        };
        if let Some(p) = &prev {
            if p.lease != 0 {
                self.attach.insert((p.lease, key.to_vec()), false);
            }
        }
        if lease != 0 {
            self.attach.insert((lease, key.to_vec()), true);
        }
        self.overlay.insert(
            key.to_vec(),
            Some(Record {
                create_revision,
                version,
                lease,
                value,
            }),
        );
        self.events.push((EventType::Put, key.to_vec()));
        Ok(prev)
    }

    /// Deletes every live key in `range`; returns their previous values.
    pub(crate) fn delete_range(&mut self, range: &KeyRange) -> Result<Vec<KeyValue>> {
        let (prevs, _) = self.view().scan(range, usize::MAX, None)?;
        for p in &prevs {
            if p.lease != 0 {
                self.attach.insert((p.lease, p.key.to_vec()), false);
            }
            self.overlay.insert(p.key.to_vec(), None);
            self.events.push((EventType::Delete, p.key.to_vec()));
        }
        Ok(prevs)
    }

    /// etcd's Put (validation and lease / existence checks included).
    pub(crate) fn apply_put(&mut self, req: &PutRequest) -> Result<PutResponse> {
        let mut value = req.value.clone();
        let mut lease = req.lease;
        let prev = if req.ignore_value || req.ignore_lease || req.prev_kv {
            self.view().get(&req.key)?
        } else {
            None
        };
        if req.ignore_value || req.ignore_lease {
            let Some(p) = &prev else {
                return Err(EtcdError::KEY_NOT_FOUND.into());
            };
            if req.ignore_value {
                value = p.value.clone();
            }
            if req.ignore_lease {
                lease = p.lease;
            }
        }
        self.put(&req.key, value, lease)?;
        Ok(PutResponse {
            header: Some(ResponseHeader {
                revision: self.rev(),
                ..ResponseHeader::default()
            }),
            prev_kv: if req.prev_kv { prev } else { None },
        })
    }

    /// etcd's DeleteRange.
    pub(crate) fn apply_delete(&mut self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        let prevs = self.delete_range(&KeyRange::new(&req.key, &req.range_end))?;
        Ok(DeleteRangeResponse {
            header: Some(ResponseHeader {
                revision: self.rev(),
                ..ResponseHeader::default()
            }),
            deleted: prevs.len() as i64,
            prev_kvs: if req.prev_kv { prevs } else { Vec::new() },
        })
    }

    /// Commits everything at `begin + 1` (data changed) or `begin`
    /// (meta only), together with the caller's `meta`. Returns the
    /// current revision afterwards.
    pub(crate) fn commit(self, meta: MetaWrites<'_>) -> Result<i64> {
        let changed = self.changed();
        let ts = self.rev();
        if !changed && self.raw.is_empty() && self.attach.is_empty() && meta.is_empty() {
            return Ok(self.begin);
        }
        let store = self.store;
        let mut w = store.db.begin_write_at(self.begin as u64)?;
        for (k, rec) in &self.overlay {
            match rec {
                Some(r) => w.set(keys::data_key(k), r.encode())?,
                None => w.delete(keys::data_key(k))?,
            }
        }
        for (i, (t, k)) in self.events.iter().enumerate() {
            let idx = u32::try_from(i).expect("fewer than 2^32 events per revision");
            w.set(keys::event_key(ts, idx), encode_event(*t as i32, k))?;
        }
        for ((id, k), on) in self.attach {
            let ak = keys::attach_key(id, &k);
            if on {
                w.set(ak, Vec::new())?;
            } else {
                w.delete(ak)?;
            }
        }
        for (k, v) in self.raw {
            match v {
                Some(v) => w.set(k, v)?,
                None => w.delete(k)?,
            }
        }
        if changed {
            w.set(META_REVISION.to_vec(), encode_i64(ts))?;
        }
        for (name, value) in meta {
            w.set(keys::meta_user_key(name), value.to_vec())?;
        }
        drop(self.base);
        w.commit_at(ts as u64)?;
        if changed {
            // Before `current` moves: a read that sees the new revision
            // finds the index at it too (or, in between, at another one,
            // and counts by scanning).
            let mut live = store.live.write();
            for (k, rec) in &self.overlay {
                match rec {
                    Some(_) => live.insert(k),
                    None => live.remove(k),
                }
            }
            live.rev = ts;
            drop(live);
            store.current.store(ts, Ordering::Release);
            store.revision_tx.send_replace(ts);
        }
        Ok(ts)
    }
}

impl MvccStore {
    /// Applies KV/Put: a new revision, `meta` in the same commit. On error
    /// nothing (not even `meta`) is written: call
    /// [`MvccStore::apply_meta`] to record the applied entry.
    pub fn put(&self, req: &PutRequest, meta: MetaWrites<'_>) -> Result<PutResponse> {
        check_put(req)?;
        let _g = self.apply_lock.lock();
        let mut ctx = WriteCtx::new(self)?;
        if req.lease != 0 && !ctx.lease_exists(req.lease)? {
            return Err(EtcdError::LEASE_NOT_FOUND.into());
        }
        let resp = ctx.apply_put(req)?;
        ctx.commit(meta)?;
        Ok(resp)
    }

    /// Applies KV/DeleteRange: a new revision only if a key was deleted.
    pub fn delete_range(
        &self,
        req: &DeleteRangeRequest,
        meta: MetaWrites<'_>,
    ) -> Result<DeleteRangeResponse> {
        check_delete(req)?;
        let _g = self.apply_lock.lock();
        let mut ctx = WriteCtx::new(self)?;
        let resp = ctx.apply_delete(req)?;
        ctx.commit(meta)?;
        Ok(resp)
    }

    /// Records `meta` (e.g. the Raft applied log id of an entry that
    /// changes no key) at the current revision.
    pub fn apply_meta(&self, meta: MetaWrites<'_>) -> Result<()> {
        let _g = self.apply_lock.lock();
        WriteCtx::new(self)?.commit(meta)?;
        Ok(())
    }
}

/// etcd's `checkDeleteRequest`.
pub fn check_delete(req: &DeleteRangeRequest) -> Result<()> {
    if req.key.is_empty() {
        return Err(EtcdError::EMPTY_KEY.into());
    }
    Ok(())
}

/// etcd's `checkPutRequest`.
pub fn check_put(req: &PutRequest) -> Result<()> {
    if req.key.is_empty() {
        return Err(EtcdError::EMPTY_KEY.into());
    }
    if req.ignore_value && !req.value.is_empty() {
        return Err(EtcdError::VALUE_PROVIDED.into());
    }
    if req.ignore_lease && req.lease != 0 {
        return Err(EtcdError::LEASE_PROVIDED.into());
    }
    Ok(())
}
