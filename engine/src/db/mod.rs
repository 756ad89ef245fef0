//! The database: opening and recovery, the commit path, flushing, and the
//! public handle.

mod batch;
mod coalesce;
mod drop;
mod flush;
mod gc;
mod handle;
mod inner;
mod item;
mod metrics;
mod subscribe;
mod write;

pub use batch::WriteBatch;
pub use gc::{GcOutcome, GcReport, GcStats};
pub use handle::{CheckReport, Db, Stats};
pub(crate) use inner::DbInner;
pub use item::Item;
pub use metrics::{SyncLatency, SYNC_LATENCY_BOUNDS_US};
pub use subscribe::{Change, Commit, Subscription, DEFAULT_SUBSCRIPTION_CAPACITY};
pub(crate) use write::WriteRequest;

/// Counts one point read (for `Db::stats`).
pub(crate) fn count_get(db: &DbInner) {
    metrics::Metrics::add(&db.metrics.gets, 1);
}
