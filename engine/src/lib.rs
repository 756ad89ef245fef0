//! sett-engine: an embeddable LSM-tree storage engine with a separate value
//! log (the WiscKey design), MVCC snapshots and serializable optimistic
//! transactions.
#![warn(missing_docs)]

mod error;
mod format;
pub mod fs;
mod options;

pub use error::{Error, Result};
pub use options::{Compression, Options};
