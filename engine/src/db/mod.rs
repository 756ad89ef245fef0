//! The database: opening and recovery, the commit path, flushing, and the
//! public handle.

mod batch;
mod flush;
mod handle;
mod inner;
mod item;
mod subscribe;
mod write;

pub use batch::WriteBatch;
pub use handle::{CheckReport, Db, Stats};
pub(crate) use inner::DbInner;
pub use item::Item;
pub(crate) use write::WriteRequest;
