//! Client library for sett.
//!
//! - [`txn`]: interactive serializable transactions over the native
//!   `sett.v1` service, with a closure helper that retries on conflict.
//!
//! The etcd-compatible services (KV, Watch, Lease, Cluster, Maintenance)
//! work with any etcd v3 client library, e.g. the `etcd-client` crate.

pub mod txn;

pub use txn::{Transactions, Txn, TxnError};

/// Connects a channel to `endpoints` (`http://host:port`), balancing
/// calls over them.
pub async fn connect(
    endpoints: &[String],
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let mut list = Vec::with_capacity(endpoints.len());
    for e in endpoints {
        list.push(tonic::transport::Endpoint::from_shared(e.clone())?);
    }
    if list.len() == 1 {
        return list.remove(0).connect().await;
    }
    Ok(tonic::transport::Channel::balance_list(list.into_iter()))
}
