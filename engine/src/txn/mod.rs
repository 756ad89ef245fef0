//! Timestamps and transactions.

mod oracle;
mod txn;

pub(crate) use oracle::Oracle;
pub use txn::{Entry, Txn};
