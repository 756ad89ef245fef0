//! `MvccStore`: the handle, opening, revisions and the read side (Range,
//! HashKV, meta and lease lookups).

use super::error::{EtcdError, MvccError, Result};
use super::keys::{
    self, decode_i64, encode_i64, KeyRange, Record, DATA, META_COMPACTED, META_REVISION,
};
use super::live_keys::LiveKeys;
use super::view::View;
use parking_lot::{Mutex, RwLock};
use sett_engine::{Db, IterOptions, Options, Txn};
use sett_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use sett_proto::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};
use sett_proto::mvccpb::KeyValue;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};

/// etcd's default `--max-txn-ops`.
pub const DEFAULT_MAX_TXN_OPS: usize = 128;

/// etcd's MVCC key-value store on a managed-mode engine; see the module
/// docs of [`crate::mvcc`].
///
/// Thread-safety: `Send + Sync`. Reads (`range`, `events_since`,
/// `hash_kv`, lookups) may run on any thread at any time. Apply calls
/// (`put`, `delete_range`, `txn`, `compact`, `lease_*`, `apply_meta`) are
/// serialised by an internal lock and must come from one applier (the
/// Raft state machine) in log order: revisions are assigned in call order.
#[derive(Debug)]
pub struct MvccStore {
    pub(crate) db: Db,
    pub(crate) current: AtomicI64,
    pub(crate) compacted: AtomicI64,
    pub(crate) apply_lock: Mutex<()>,
    pub(crate) revision_tx: tokio::sync::watch::Sender<i64>,
    pub(crate) max_txn_ops: usize,
    /// Revisions read right now (with counts): the engine's discard ts
    /// stays at or below the oldest, so a read that passed the compaction
    /// check never loses its versions.
    pub(crate) readers: Mutex<BTreeMap<i64, usize>>,
    /// The live keys at (usually) the current revision, for Range counts;
    /// updated by every commit that changes the data area.
    pub(crate) live: RwLock<LiveKeys>,
}

/// Result of [`MvccStore::hash_kv`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashKv {
    /// The hash (CRC-32 over the canonical encoding; see `hash_kv`).
    pub hash: u32,
    /// The revision hashed.
    pub revision: i64,
    /// The compacted revision at the time of hashing.
    pub compact_revision: i64,
    /// The current revision at the time of hashing (for the header).
    pub current_revision: i64,
}

impl MvccStore {
    /// Engine options suited to the store in `dir`: managed mode and
    /// transaction limits large enough for big DeleteRange requests.
    pub fn default_options(dir: impl Into<std::path::PathBuf>) -> Options {
        let mut o = Options::new(dir);
        o.managed = true;
        o.max_txn_entries = 4_000_000;
        o.max_txn_bytes = 1 << 30;
        o
    }

    /// Opens (or creates) a store; `opts.managed` is forced on.
    pub fn open(mut opts: Options) -> Result<MvccStore> {
        opts.managed = true;
        MvccStore::from_db(Db::open(opts)?)
    }

    /// Wraps an open managed-mode database. An empty database becomes a
    /// new store at revision 1 (a meta-only commit at engine ts 1).
    pub fn from_db(db: Db) -> Result<MvccStore> {
        let (current, compacted) = {
            let r = db.begin_read();
            let cur = r.get(META_REVISION)?.map(|i| i.value()).transpose()?;
            let cmp = r.get(META_COMPACTED)?.map(|i| i.value()).transpose()?;
            match cur {
                Some(c) => (
                    decode_i64(&c)?,
                    cmp.map(|c| decode_i64(&c)).transpose()?.unwrap_or(0),
                ),
                None => {
                    if r.read_ts() > 1 {
                        return Err(MvccError::Corrupt(format!(
                            "database at ts {} has no MVCC revision record",
                            r.read_ts()
                        )));
                    }
                    drop(r);
                    let mut w = db.begin_write_at(0)?;
                    w.set(META_REVISION.to_vec(), encode_i64(1))?;
                    w.set(META_COMPACTED.to_vec(), encode_i64(0))?;
                    w.commit_at(1)?;
                    (1, 0)
                }
            }
        };
        assert!(current >= 1 && compacted >= 0 && compacted <= current);
        db.set_discard_ts(compacted as u64)?;
        let live = load_live_keys(&db, current)?;
        let (revision_tx, _) = tokio::sync::watch::channel(current);
        Ok(MvccStore {
            db,
            current: AtomicI64::new(current),
            compacted: AtomicI64::new(compacted),
            apply_lock: Mutex::new(()),
            revision_tx,
            max_txn_ops: DEFAULT_MAX_TXN_OPS,
            readers: Mutex::new(BTreeMap::new()),
            live: RwLock::new(live),
        })
    }

    /// Sets etcd's `--max-txn-ops` (default 128).
    pub fn set_max_txn_ops(&mut self, n: usize) {
        self.max_txn_ops = n;
    }

    /// The underlying engine.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The current revision (1 for a new store).
    pub fn current_revision(&self) -> i64 {
        self.current.load(Ordering::Acquire)
    }

    /// Keys live at the current revision (from the in-memory index).
    pub fn live_key_count(&self) -> usize {
        self.live.read().len()
    }

    /// The compacted revision (0 if never compacted).
    pub fn compacted_revision(&self) -> i64 {
        self.compacted.load(Ordering::Acquire)
    }

    /// A receiver that sees every new current revision (for watchers:
    /// wake up, then call [`MvccStore::events_since`]).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<i64> {
        self.revision_tx.subscribe()
    }

    pub(crate) fn header(rev: i64) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            revision: rev,
            ..ResponseHeader::default()
        })
    }

    /// Checks a requested revision against `current` and the compaction
    /// point; `<= 0` means `current`.
    pub(crate) fn resolve_rev(&self, rev: i64, current: i64) -> Result<i64> {
        if rev <= 0 {
            return Ok(current);
        }
        if rev > current {
            return Err(EtcdError::FUTURE_REV.into());
        }
        if rev < self.compacted_revision() {
            return Err(EtcdError::COMPACTED.into());
        }
        Ok(rev)
    }

    /// An engine snapshot at `rev`, registered so that compaction keeps
    /// its versions; `COMPACTED` if `rev` is already below the compaction
    /// point (checked after registering, which closes the race with
    /// [`MvccStore::compact`]).
    pub(crate) fn read_at(&self, rev: i64) -> Result<Snapshot<'_>> {
        *self.readers.lock().entry(rev).or_insert(0) += 1;
        let mut snap = Snapshot {
            store: self,
            rev,
            txn: None,
        };
        if rev < self.compacted_revision() {
            return Err(EtcdError::COMPACTED.into());
        }
        snap.txn = Some(self.db.begin_read_at(rev as u64)?);
        Ok(snap)
    }

    /// Sets the engine's discard ts to the compacted revision, or lower
    /// while an older registered read is running.
    pub(crate) fn update_discard_ts(&self, readers: &BTreeMap<i64, usize>) -> Result<()> {
        let compacted = self.compacted_revision();
        let oldest = readers.keys().next().copied().unwrap_or(compacted);
        self.db
            .set_discard_ts(compacted.min(oldest).max(0) as u64)?;
        Ok(())
    }

    /// KV/Range at the latest or a past revision.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        check_range(req)?;
        let current = self.current_revision();
        let rev = self.resolve_rev(req.revision, current)?;
        let txn = self.read_at(rev)?;
        let view = View {
            base: &txn,
            overlay: None,
        };
        // The index describes one revision; at any other the scan counts.
        let counted = {
            let live = self.live.read();
            (live.rev == rev).then(|| live.count(&KeyRange::new(&req.key, &req.range_end)))
        };
        let mut resp = range_in(&view, req, counted)?;
        resp.header = MvccStore::header(current);
        Ok(resp)
    }

    /// A value the caller stored with an apply call's `meta` (e.g. the
    /// Raft applied log id), as of the latest apply.
    pub fn meta(&self, name: &[u8]) -> Result<Option<Vec<u8>>> {
        let txn = self.read_at(self.current_revision())?;
        Ok(txn
            .get(&keys::meta_user_key(name))?
            .map(|i| i.value())
            .transpose()?)
    }

    /// Deterministic hash of the keyspace at `rev` (`<= 0` = current), for
    /// Maintenance/HashKV: CRC-32 over, per key in order, every version
    /// with `compacted < mod_revision <= rev` (deletions included) plus
    /// the live version at the compaction point. Independent of when the
    /// engine physically drops compacted versions.
    pub fn hash_kv(&self, rev: i64) -> Result<HashKv> {
        let current = self.current_revision();
        let compacted = self.compacted_revision();
        // Unlike a Range, etcd refuses to hash the compaction revision
        // itself.
        if rev > 0 && rev <= compacted {
            return Err(EtcdError::COMPACTED.into());
        }
        let rev = self.resolve_rev(rev, current)?;
        let txn = self.read_at(rev)?;
        let mut it = txn.iter(IterOptions {
            lower_bound: Some(vec![DATA]),
            upper_bound: Some(vec![DATA + 1]),
            all_versions: true,
            ..IterOptions::default()
        });
        let mut h = crc32fast::Hasher::new();
        let mut last_key: Vec<u8> = Vec::new();
        let mut seen_old = false;
        it.rewind()?;
        while it.valid() {
            let item = it.item();
            let key = item.key();
            let version = item.version() as i64;
            if key != last_key.as_slice() {
                last_key = key.to_vec();
                seen_old = false;
            }
            let include = if version > compacted {
                true
            } else if !seen_old {
                // Newest version at or below the compaction point: it is
                // the key's state there (hashed only if live).
                seen_old = true;
                !item.is_deleted_or_expired()
            } else {
                false
            };
            if include {
                h.update(&(key.len() as u64).to_be_bytes());
                h.update(key);
                h.update(&version.to_be_bytes());
                if item.is_deleted_or_expired() {
                    h.update(&[0]);
                } else {
                    let v = item.value()?;
                    h.update(&[1]);
                    h.update(&(v.len() as u64).to_be_bytes());
                    h.update(&v);
                }
            }
            it.next()?;
        }
        Ok(HashKv {
            hash: h.finalize(),
            revision: rev,
            compact_revision: compacted,
            current_revision: current,
        })
    }
}

/// A registered engine read at one revision (see [`MvccStore::read_at`]).
pub(crate) struct Snapshot<'a> {
    store: &'a MvccStore,
    rev: i64,
    txn: Option<Txn>,
}

impl std::ops::Deref for Snapshot<'_> {
    type Target = Txn;
    fn deref(&self) -> &Txn {
        self.txn
            .as_ref()
            .expect("a returned snapshot holds its txn")
    }
}

impl Drop for Snapshot<'_> {
    fn drop(&mut self) {
        self.txn = None;
        let mut g = self.store.readers.lock();
        let last = match g.get_mut(&self.rev) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                g.remove(&self.rev);
                true
            }
            None => {
                debug_assert!(false, "unregistered snapshot at {}", self.rev);
                false
            }
        };
        if last && self.rev < self.store.compacted_revision() {
            if let Err(e) = self.store.update_discard_ts(&g) {
                tracing::warn!(error = %e, "raising the discard ts failed");
            }
        }
    }
}

/// etcd's `checkRangeRequest`.
pub fn check_range(req: &RangeRequest) -> Result<()> {
    if req.key.is_empty() {
        return Err(EtcdError::EMPTY_KEY.into());
    }
    if SortOrder::try_from(req.sort_order).is_err()
        || SortTarget::try_from(req.sort_target).is_err()
    {
        return Err(EtcdError::INVALID_SORT_OPTION.into());
    }
    Ok(())
}

/// The live user keys at `rev`, read from the data area.
fn load_live_keys(db: &Db, rev: i64) -> Result<LiveKeys> {
    let txn = db.begin_read_at(rev as u64)?;
    let mut it = txn.iter(IterOptions {
        lower_bound: Some(vec![DATA]),
        upper_bound: Some(vec![DATA + 1]),
        keys_only: true,
        ..IterOptions::default()
    });
    it.rewind()?;
    let mut keys = Vec::new();
    while it.valid() {
        keys.push(Box::<[u8]>::from(&it.item().key()[1..]));
        it.next()?;
    }
    Ok(LiveKeys::from_sorted(rev, keys))
}

/// Range on a view, with etcd's limit / filter / sort rules. `counted`, if
/// known, is the number of live keys in the range (the scan then stops
/// once it has the key-values it returns). The header is left for the
/// caller.
pub(crate) fn range_in(
    view: &View<'_>,
    req: &RangeRequest,
    counted: Option<i64>,
) -> Result<RangeResponse> {
    let range = KeyRange::new(&req.key, &req.range_end);
    let order = SortOrder::try_from(req.sort_order).unwrap_or(SortOrder::None);
    let target = SortTarget::try_from(req.sort_target).unwrap_or(SortTarget::Key);
    let filtered = req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0;
    // etcd fetches everything when it must sort or filter, else limit + 1
    // (to know `more`).
    let decode_max = if req.count_only {
        0
    } else if order != SortOrder::None || filtered || req.limit <= 0 {
        usize::MAX
    } else {
        usize::try_from(req.limit)
            .unwrap_or(usize::MAX)
            .saturating_add(1)
    };
    let (mut kvs, count) = view.scan(&range, decode_max, counted)?;
    kvs.retain(|kv| {
        !(req.max_mod_revision != 0 && kv.mod_revision > req.max_mod_revision
            || req.min_mod_revision != 0 && kv.mod_revision < req.min_mod_revision
            || req.max_create_revision != 0 && kv.create_revision > req.max_create_revision
            || req.min_create_revision != 0 && kv.create_revision < req.min_create_revision)
    });
    let order = if order == SortOrder::None && target != SortTarget::Key {
        SortOrder::Ascend
    } else {
        order
    };
    if order != SortOrder::None {
        let cmp = |a: &KeyValue, b: &KeyValue| match target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        };
        if order == SortOrder::Descend {
            kvs.sort_by(|a, b| cmp(b, a));
        } else {
            kvs.sort_by(cmp);
        }
    }
    let mut more = false;
    if req.limit > 0 && kvs.len() as i64 > req.limit {
        kvs.truncate(req.limit as usize);
        more = true;
    }
    if req.keys_only {
        for kv in &mut kvs {
            kv.value = bytes::Bytes::new();
        }
    }
    Ok(RangeResponse {
        header: None,
        kvs,
        more,
        count,
    })
}

/// Decodes the data value of an engine item.
pub(crate) fn kv_of(key: &[u8], version: u64, raw: &[u8]) -> Result<KeyValue> {
    Ok(Record::decode(raw)?.to_kv(key, version as i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sett_proto::etcdserverpb::{CompactionRequest, PutRequest};

    fn put(s: &MvccStore, k: &str, v: &str) {
        let req = PutRequest {
            key: bytes::Bytes::copy_from_slice(k.as_bytes()),
            value: bytes::Bytes::copy_from_slice(v.as_bytes()),
            ..PutRequest::default()
        };
        s.put(&req, &[]).unwrap();
    }

    #[test]
    fn a_running_read_keeps_its_versions_through_compaction() {
        let mut o = Options::in_memory();
        o.managed = true;
        let s = MvccStore::open(o).unwrap();
        for v in ["1", "2", "3", "4"] {
            put(&s, "k", v); // revs 2..=5
        }
        let snap = s.read_at(2).unwrap();
        let compact = CompactionRequest {
            revision: 5,
            physical: true,
        };
        s.compact(&compact, &[]).unwrap();
        s.db.flush().unwrap();
        s.db.compact().unwrap();
        let item = snap.get(&keys::data_key(b"k")).unwrap().unwrap();
        assert_eq!(item.version(), 2);
        // New reads below the compaction point fail.
        assert!(matches!(
            s.read_at(3),
            Err(MvccError::Etcd(e)) if e == EtcdError::COMPACTED
        ));
        drop(snap);
        assert!(s.readers.lock().is_empty());
    }
}
