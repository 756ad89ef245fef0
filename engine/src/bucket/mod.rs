//! bbolt-style buckets: nested namespaces of keys inside transactions.

mod cursor;
mod handle;
mod path;
mod stats;

pub use cursor::{Cursor, CursorEntry};
pub use handle::Bucket;
pub use stats::BucketStats;
