//! Helpers shared by the engine's integration tests.

use sett_engine::{Db, IterOptions};

/// One version as (key, version, value, user_meta, expires_at, deleted).
pub type Version = (Vec<u8>, u64, Vec<u8>, u8, u64, bool);

/// Every version of every key, tombstones and expired entries included.
pub fn dump(db: &Db) -> Vec<Version> {
    let txn = db.begin_read();
    let mut it = txn.iter(IterOptions {
        all_versions: true,
        ..IterOptions::default()
    });
    it.rewind().unwrap();
    let mut out = Vec::new();
    while it.valid() {
        let i = it.item();
        let deleted = i.is_deleted_or_expired() && i.expires_at() == 0;
        let value = if deleted {
            Vec::new()
        } else {
            i.value().unwrap()
        };
        out.push((
            i.key().to_vec(),
            i.version(),
            value,
            i.user_meta(),
            i.expires_at(),
            deleted,
        ));
        it.next().unwrap();
    }
    out
}
