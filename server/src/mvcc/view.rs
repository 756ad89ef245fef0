//! Reading the data area: one engine snapshot, optionally with the pending
//! writes of the request being applied laid over it (a txn's later ops see
//! its earlier ones, at the txn's new revision).

use super::error::Result;
use super::keys::{data_key, KeyRange, Record};
use sett_engine::{IterOptions, Txn};

use sett_proto::mvccpb::KeyValue;
use std::collections::BTreeMap;

/// Pending writes of one request: user key → new record (`None` = deleted).
pub(crate) type Overlay = BTreeMap<Vec<u8>, Option<Record>>;

/// A read view: an engine snapshot plus, optionally, an overlay whose
/// entries carry `mod_revision = overlay_rev`.
pub(crate) struct View<'a> {
    pub base: &'a Txn,
    pub overlay: Option<(&'a Overlay, i64)>,
}

impl View<'_> {
    /// The live key `key`, if any.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        if let Some((ov, rev)) = self.overlay {
            if let Some(p) = ov.get(key) {
                return Ok(p.as_ref().map(|r| r.to_kv(key, rev)));
            }
        }
        match self.base.get(&data_key(key))? {
            None => Ok(None),
            Some(item) => {
                let rec = Record::decode(&item.value()?)?;
                Ok(Some(rec.to_kv(key, item.version() as i64)))
            }
        }
    }

    /// Live keys in `range`, in key order: the first `decode_max` as full
    /// key-values, plus the total count. Keys past `decode_max` are only
    /// counted (their values are never read); with `counted` (the count,
    /// known from elsewhere) they are not visited at all.
    pub(crate) fn scan(
        &self,
        range: &KeyRange,
        decode_max: usize,
        counted: Option<i64>,
    ) -> Result<(Vec<KeyValue>, i64)> {
        let mut kvs = Vec::new();
        let mut count = 0i64;
        if range.is_empty() {
            return Ok((kvs, 0));
        }
        if let KeyRange::Single(k) = range {
            if let Some(kv) = self.get(k)? {
                count = 1;
                if decode_max > 0 {
                    kvs.push(kv);
                }
            }
            return Ok((kvs, count));
        }
        let (lower, upper) = range.engine_bounds();
        let pending: Vec<(&Vec<u8>, &Option<Record>)> = match self.overlay {
            Some((ov, _)) => ov.iter().filter(|(k, _)| range.contains(k)).collect(),
            None => Vec::new(),
        };
        let overlay_rev = self.overlay.map_or(0, |(_, r)| r);
        let mut it = self.base.iter(IterOptions {
            lower_bound: Some(lower),
            upper_bound: Some(upper),
            keys_only: true,
            ..IterOptions::default()
        });
        it.rewind()?;
        let mut j = 0;
        loop {
            if let Some(n) = counted {
                if kvs.len() >= decode_max {
                    return Ok((kvs, n));
                }
            }
            let engine_key = it.valid().then(|| it.item().key()[1..].to_vec());
            let pend = pending.get(j);
            let take_pending = match (&engine_key, pend) {
                (None, None) => break,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some(ek), Some((pk, _))) => pk.as_slice() <= ek.as_slice(),
            };
            if take_pending {
                let (pk, rec) = pend.expect("checked above");
                if engine_key.as_deref() == Some(pk.as_slice()) {
                    it.next()?;
                }
                j += 1;
                if let Some(rec) = rec {
                    count += 1;
                    if kvs.len() < decode_max {
                        kvs.push(rec.to_kv(pk, overlay_rev));
                    }
                }
            } else {
                let ek = engine_key.expect("checked above");
                count += 1;
                if kvs.len() < decode_max {
                    let item = it.item();
                    let rec = Record::decode(&item.value()?)?;
                    kvs.push(rec.to_kv(&ek, item.version() as i64));
                }
                it.next()?;
            }
        }
        Ok((kvs, count))
    }
}
