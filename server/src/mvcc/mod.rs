//! etcd MVCC semantics on sett-engine in managed mode: the engine commit
//! timestamp of every data write **is** the etcd revision.
//!
//! # Key layout
//!
//! One engine keyspace, split by the first byte (all integers big-endian):
//!
//! | engine key | value | written at ts |
//! |---|---|---|
//! | `'k' ‖ key` | `0x01 ‖ be64 create_revision ‖ be64 version ‖ be64 lease ‖ value`; the engine version is `mod_revision`; a delete is an engine tombstone | the modifying revision |
//! | `'e' ‖ be64 rev ‖ be32 index` | `type (0 PUT, 1 DELETE) ‖ key`: the event log, one entry per changed key in op order | `rev` |
//! | `'m' "rev"` | `be64` current revision | each modifying revision |
//! | `'m' "compact"` | `be64` compacted revision | the current revision at Compact |
//! | `'m' 'r' ‖ name` | caller's opaque bytes (Raft applied log id, membership) | the apply's commit ts |
//! | `'l' ‖ be64 id` | `be64` granted TTL (seconds) | grant / revoke |
//! | `'a' ‖ be64 id ‖ key` | empty: key attached to lease `id` | the put / delete |
//!
//! Reading the data area at engine ts `R` gives the store at revision `R`
//! (the value written at `mod_revision = R`, or the tombstone); the
//! previous value of an event at `R` is the read at `R - 1`.
//!
//! # Revisions and commits
//!
//! A new store is at revision 1 (a meta-only commit at ts 1); the first
//! write gets revision 2. Each apply call reads a snapshot at the current
//! revision `C` and commits all its writes as **one** engine transaction:
//! at `C + 1` if any key changed (data, events, `'m' "rev"`, lease
//! attachments and the caller's meta together), otherwise — read-only
//! txn, DeleteRange that matched nothing, lease grant, Compact, or
//! [`MvccStore::apply_meta`] — at `C` with only meta/lease/event-log keys.
//! Such meta-only commits rewrite keys of the meta and lease areas at a
//! timestamp they may already hold; the engine's merge resolves equal
//! internal keys to the newest write (managed mode allows non-increasing
//! commit timestamps), and data keys are never rewritten at one ts.
//!
//! Every apply call takes `meta: &[(name, value)]`, stored in the same
//! commit, so the Raft state machine's applied log id is atomic with the
//! data it covers. An apply that fails with an etcd error writes nothing,
//! not even `meta`: record the entry with [`MvccStore::apply_meta`].
//!
//! # Compaction
//!
//! `compact(R)` records `R`, deletes events with revision `< R` (those at
//! `R` stay: revision `R` itself remains readable) and sets the engine's
//! discard ts to `R`, so compaction keeps the newest version at or below
//! `R` of every key. Reads below `R` fail with etcd's compacted error.
//!
//! # Threading
//!
//! [`MvccStore`] is `Send + Sync`. Apply calls must come from one applier
//! (they also serialise on an internal lock); reads may run concurrently
//! on any thread. Every engine read registers its revision; the engine's
//! discard ts is `min(compacted, oldest running read)`, and a read checks
//! the compaction point after registering, so a read either fails with
//! etcd's compacted error or sees complete data.
//!
//! # Native transactions
//!
//! [`MvccStore::native_commit`] applies a `sett.v1.CommitRequest`: it
//! commits iff no event in the log after the read revision touches a read
//! range (O(events since the read revision)); conflicts and compacted read
//! revisions are [`NativeCommitOutcome`] values, not errors.
//!
//! # Snapshots
//!
//! [`MvccStore::export_snapshot`] / [`SnapshotImporter`]: see
//! `snapshot.rs`. Install = import into a fresh directory, then swap it in.

mod error;
mod events;
mod keys;
mod lease;
mod live_keys;
mod native;
mod snapshot;
mod store;
mod txn;
mod view;
mod write;

pub use error::{EtcdError, MvccError, Result};
pub(crate) use keys::KeyRange;
pub use lease::LeaseRecord;
pub use native::NativeCommitOutcome;
pub use snapshot::{SnapshotImporter, SnapshotInfo};
pub use store::{check_range, HashKv, MvccStore, DEFAULT_MAX_TXN_OPS};
pub use txn::validate_txn;
pub use write::{check_delete, check_put, MetaWrites};
