//! The event log (watch history) and compaction.
//!
//! Every modifying revision writes its changes under
//! `'e' ‖ be64(rev) ‖ be32(index)` (value: type ‖ key) in the same commit
//! as the data, so replay from revision R is one bounded scan of the log
//! from R plus one point read per event: O(events since R).

use super::error::{EtcdError, MvccError, Result};
use super::keys::{
    self, decode_event, decode_event_key, encode_i64, KeyRange, EVENTS, META_COMPACTED,
};
use super::store::{kv_of, MvccStore, Snapshot};
use super::write::{MetaWrites, WriteCtx};
use bytes::Bytes;
use sett_engine::IterOptions;
use sett_proto::etcdserverpb::{CompactionRequest, CompactionResponse};
use sett_proto::mvccpb::event::EventType;
use sett_proto::mvccpb::{Event, KeyValue};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

impl MvccStore {
    /// Events with revision `>= start_rev` on keys in `key`/`range_end`
    /// (etcd range rules; empty `range_end` = one key), oldest first, as
    /// of the current revision. PUT events carry the key-value at their
    /// revision; DELETE events the key and `mod_revision` = the deletion
    /// revision. With `prev_kv`, each event carries the key's previous
    /// version (omitted when that lies before the compaction point, as in
    /// etcd). At most `limit` events (0 = no limit), but a revision is
    /// never split: the last revision is always complete, so the result
    /// may exceed `limit`. `start_rev` below the compacted revision is
    /// `etcdserver: mvcc: required revision has been compacted`.
    pub fn events_since(
        &self,
        start_rev: i64,
        key: &[u8],
        range_end: &[u8],
        prev_kv: bool,
        limit: usize,
    ) -> Result<Vec<Event>> {
        let current = self.current_revision();
        let start_rev = start_rev.max(1);
        if start_rev < self.compacted_revision() {
            return Err(EtcdError::COMPACTED.into());
        }
        if start_rev > current {
            return Ok(Vec::new());
        }
        let range = KeyRange::new(key, range_end);
        let snap = self.read_at(current)?;
        let mut it = snap.iter(IterOptions {
            lower_bound: Some(keys::event_key(start_rev, 0)),
            upper_bound: Some(vec![EVENTS + 1]),
            ..IterOptions::default()
        });
        it.rewind()?;
        let mut out = Vec::new();
        // One engine snapshot per revision seen (and its predecessor).
        let mut readers: BTreeMap<i64, Snapshot<'_>> = BTreeMap::new();
        let mut last_rev = 0;
        while it.valid() {
            let item = it.item();
            let (rev, _) = decode_event_key(item.key())?;
            if rev > current {
                break;
            }
            if limit > 0 && out.len() >= limit && rev != last_rev {
                break;
            }
            last_rev = rev;
            let raw = item.value()?;
            let (kind, k) = decode_event(&raw)?;
            if range.contains(k) {
                out.push(self.make_event(&mut readers, rev, kind, k, prev_kv)?);
            }
            readers.retain(|r, _| *r >= rev - 1);
            it.next()?;
        }
        if start_rev < self.compacted_revision() {
            // Compacted while we read: part of the history may be gone.
            return Err(EtcdError::COMPACTED.into());
        }
        Ok(out)
    }

    fn make_event<'s>(
        &'s self,
        readers: &mut BTreeMap<i64, Snapshot<'s>>,
        rev: i64,
        kind: i32,
        key: &[u8],
        prev_kv: bool,
    ) -> Result<Event> {
        let dk = keys::data_key(key);
        let mut get = |at: i64| -> Result<Option<KeyValue>> {
            let txn = match readers.entry(at) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => e.insert(self.read_at(at)?),
            };
            match txn.get(&dk)? {
                Some(item) => Ok(Some(kv_of(key, item.version(), &item.value()?)?)),
                None => Ok(None),
            }
        };
        let kv = if kind == EventType::Put as i32 {
            let kv = get(rev)?.ok_or_else(|| {
                MvccError::Corrupt(format!("PUT event at {rev} for a key absent at {rev}"))
            })?;
            if kv.mod_revision != rev {
                return Err(MvccError::Corrupt(format!(
                    "PUT event at {rev}, but the key's version there is {}",
                    kv.mod_revision
                )));
            }
            kv
        } else {
            KeyValue {
                key: Bytes::copy_from_slice(key),
                mod_revision: rev,
                ..KeyValue::default()
            }
        };
        let prev = if prev_kv && rev > self.compacted_revision() {
            get(rev - 1)?
        } else {
            None
        };
        Ok(Event {
            r#type: kind,
            kv: Some(kv),
            prev_kv: prev,
        })
    }

    /// Applies KV/Compact: reads below `revision` become errors, the
    /// engine may drop versions hidden at `revision`, and events older
    /// than `revision` are deleted (those at `revision` stay, as etcd
    /// keeps the revision itself readable). Does not change the current
    /// revision.
    pub fn compact(
        &self,
        req: &CompactionRequest,
        meta: MetaWrites<'_>,
    ) -> Result<CompactionResponse> {
        let _g = self.apply_lock.lock();
        let rev = req.revision;
        let current = self.current_revision();
        let compacted = self.compacted_revision();
        if rev <= compacted {
            return Err(EtcdError::COMPACTED.into());
        }
        if rev > current {
            return Err(EtcdError::FUTURE_REV.into());
        }
        let mut ctx = WriteCtx::new(self)?;
        {
            let mut it = ctx.base.iter(IterOptions {
                lower_bound: Some(keys::event_key(compacted.max(1), 0)),
                upper_bound: Some(keys::event_key(rev, 0)),
                keys_only: true,
                ..IterOptions::default()
            });
            it.rewind()?;
            let mut doomed = Vec::new();
            while it.valid() {
                doomed.push(it.item().key().to_vec());
                it.next()?;
            }
            drop(it);
            for k in doomed {
                ctx.raw.insert(k, None);
            }
        }
        ctx.raw
            .insert(META_COMPACTED.to_vec(), Some(encode_i64(rev)));
        // Raise `compacted` first: a read registering later sees it and
        // fails; one registered earlier holds the discard ts down.
        self.compacted.store(rev, Ordering::SeqCst);
        ctx.commit(meta)?;
        let readers = self.readers.lock();
        self.update_discard_ts(&readers)?;
        Ok(CompactionResponse {
            header: MvccStore::header(current),
        })
    }
}
