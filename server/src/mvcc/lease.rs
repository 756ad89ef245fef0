//! Lease records: which leases exist (with their granted TTL) and which
//! keys are attached to each. Expiry timing is not kept here: the lease
//! manager decides when a lease expires and applies a revoke through
//! Raft.

use super::error::{EtcdError, MvccError, Result};
use super::keys::{self, decode_i64, encode_i64, KeyRange, LEASES};
use super::store::MvccStore;
use super::write::{MetaWrites, WriteCtx};
use sett_engine::IterOptions;

/// A granted lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRecord {
    /// Lease ID (> 0).
    pub id: i64,
    /// Granted TTL in seconds.
    pub ttl_secs: i64,
}

impl MvccStore {
    /// Applies a LeaseGrant with the ID the proposer chose (must be > 0:
    /// the leader picks an ID for `ID = 0` before proposing, so that the
    /// apply is deterministic). Changes no revision.
    pub fn lease_grant(&self, id: i64, ttl_secs: i64, meta: MetaWrites<'_>) -> Result<LeaseRecord> {
        let _g = self.apply_lock.lock();
        if id <= 0 {
            return Err(MvccError::Corrupt(format!("lease grant with ID {id}")));
        }
        let mut ctx = WriteCtx::new(self)?;
        if ctx.lease_exists(id)? {
            return Err(EtcdError::LEASE_EXISTS.into());
        }
        ctx.raw
            .insert(keys::lease_key(id), Some(encode_i64(ttl_secs)));
        ctx.commit(meta)?;
        Ok(LeaseRecord { id, ttl_secs })
    }

    /// Applies a LeaseRevoke (or an expiry): deletes the attached keys at
    /// one new revision (in key order, one DELETE event each; no new
    /// revision if none is attached) and forgets the lease. Returns the
    /// current revision afterwards.
    pub fn lease_revoke(&self, id: i64, meta: MetaWrites<'_>) -> Result<i64> {
        let _g = self.apply_lock.lock();
        let mut ctx = WriteCtx::new(self)?;
        if !ctx.lease_exists(id)? {
            return Err(EtcdError::LEASE_NOT_FOUND.into());
        }
        let attached = attached_keys(&ctx.base, id)?;
        for k in &attached {
            ctx.delete_range(&KeyRange::Single(k.clone()))?;
        }
        ctx.raw.insert(keys::lease_key(id), None);
        ctx.commit(meta)
    }

    /// The lease `id`, if granted.
    pub fn lease(&self, id: i64) -> Result<Option<LeaseRecord>> {
        let txn = self.read_at(self.current_revision())?;
        match txn.get(&keys::lease_key(id))? {
            Some(item) => Ok(Some(LeaseRecord {
                id,
                ttl_secs: decode_i64(&item.value()?)?,
            })),
            None => Ok(None),
        }
    }

    /// Every granted lease, by ID.
    pub fn leases(&self) -> Result<Vec<LeaseRecord>> {
        let txn = self.read_at(self.current_revision())?;
        let mut it = txn.iter(IterOptions {
            prefix: vec![LEASES],
            ..IterOptions::default()
        });
        it.rewind()?;
        let mut out = Vec::new();
        while it.valid() {
            let item = it.item();
            let id = decode_i64(&item.key()[1..])?;
            out.push(LeaseRecord {
                id,
                ttl_secs: decode_i64(&item.value()?)?,
            });
            it.next()?;
        }
        Ok(out)
    }

    /// Keys attached to lease `id`, in key order.
    pub fn lease_keys(&self, id: i64) -> Result<Vec<Vec<u8>>> {
        let txn = self.read_at(self.current_revision())?;
        attached_keys(&txn, id)
    }
}

fn attached_keys(txn: &sett_engine::Txn, id: i64) -> Result<Vec<Vec<u8>>> {
    let prefix = keys::attach_prefix(id);
    let mut it = txn.iter(IterOptions {
        prefix: prefix.clone(),
        keys_only: true,
        ..IterOptions::default()
    });
    it.rewind()?;
    let mut out = Vec::new();
    while it.valid() {
        out.push(it.item().key()[prefix.len()..].to_vec());
        it.next()?;
    }
    Ok(out)
}
