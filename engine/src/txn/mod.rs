//! Timestamps and transactions.

mod oracle;
mod transaction;

pub(crate) use oracle::Oracle;
pub use transaction::{Entry, Txn};
