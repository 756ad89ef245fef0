//! Client library for sett (and any etcd v3 cluster).
//!
//! [`Client::connect`] takes the cluster's client URLs and
//! [`ConnectOptions`]; the handles it gives out share its channels and
//! are cheap to clone:
//!
//! | handle | module | offers |
//! |---|---|---|
//! | [`Client::kv`] | [`kv`] | get/range with every `RangeRequest` option, put, delete, transactions ([`kv::TxnBuilder`], [`kv::Compare`], [`kv::Op`]), compaction |
//! | [`Client::watch`] | [`watch`] | watches that resume after a broken stream without losing or repeating a revision |
//! | [`Client::lease`] | [`lease`] | grant, revoke, time-to-live, listing, one renewal, and [`LeaseKeeper`] renewing in the background |
//! | [`Client::cluster`] | [`cluster`] | member list, add, remove, update, promote |
//! | [`Client::maintenance`] | [`maintenance`] | per-member status, hash and defragmentation, snapshots, alarms |
//! | [`Client::transactions`] | [`txn`] | interactive serializable transactions over the native `sett.v1` service, with a closure helper that retries on conflict |
//!
//! The client finds the leader (`Maintenance.Status` and
//! `Cluster.MemberList`) and sends mutations there; reads rotate over the
//! endpoints. Calls that fail transiently (`Unavailable`: no leader, a
//! leader change, a member down) are retried with capped exponential
//! backoff after looking the leader up again; [`RetryOptions`] says which
//! failures are retried for mutations and the at-least-once caveat that
//! comes with it. Answers are the protobuf responses, re-exported as
//! [`etcdserverpb`] and [`mvccpb`]. Every failure is an [`Error`].
//!
//! ```no_run
//! use sett_client::{Client, ConnectOptions, GetOptions, PutOptions, WatchOptions};
//!
//! # async fn example() -> Result<(), sett_client::Error> {
//! let client = Client::connect(
//!     ["127.0.0.1:2379", "127.0.0.1:22379"],
//!     ConnectOptions::default(),
//! )
//! .await?;
//! let kv = client.kv();
//! kv.put("app/greeting", "hello", PutOptions::new()).await?;
//! let resp = kv.get("app/", GetOptions::new().with_prefix()).await?;
//! assert_eq!(resp.kvs.len(), 1);
//!
//! let mut watch = client
//!     .watch()
//!     .watch("app/", WatchOptions::new().with_prefix())
//!     .await?;
//! kv.put("app/greeting", "hi", PutOptions::new()).await?;
//! if let Some(events) = watch.next_events().await? {
//!     println!("{} event(s)", events.len());
//! }
//!
//! let lease = client.lease().grant(10, 0).await?;
//! let keeper = client.lease().keep_alive(lease.id).await?;
//! assert!(keeper.ttl() > 0);
//! # Ok(())
//! # }
//! ```
//!
//! [`connect`] (a plain tonic channel balanced over endpoints) remains for
//! callers that drive the generated clients themselves.

#![warn(missing_docs)]

mod auth;
mod client;
pub mod cluster;
mod error;
pub mod kv;
pub mod lease;
pub mod maintenance;
mod options;
mod retry;
pub mod txn;
pub mod watch;

pub use auth::{Chan, TokenInterceptor};
pub use client::Client;
pub use error::Error;
pub use kv::{DeleteOptions, GetOptions, Kv, PutOptions, TxnBuilder};
pub use lease::{Lease, LeaseKeeper};
pub use maintenance::{Maintenance, SnapshotStream};
pub use options::{ConnectOptions, Pem, RetryOptions, TlsOptions};
pub use sett_proto::{etcdserverpb, mvccpb};
pub use txn::{Transactions, Txn, TxnError};
pub use watch::{Watch, WatchOptions, WatchStream};

/// Connects a channel to `endpoints` (`http(s)://host:port`), balancing
/// calls over them; `https://` endpoints are dialed with `tls`, which
/// they need.
pub async fn connect_with_tls(
    endpoints: &[String],
    tls: Option<&TlsOptions>,
) -> Result<tonic::transport::Channel, Error> {
    let config = tls.map(TlsOptions::client_config).transpose()?;
    let mut list = Vec::with_capacity(endpoints.len());
    for e in endpoints {
        let mut endpoint = tonic::transport::Endpoint::from_shared(e.clone()).map_err(|err| {
            Error::InvalidEndpoint {
                endpoint: e.clone(),
                reason: err.to_string(),
            }
        })?;
        if e.starts_with("https://") {
            let Some(config) = &config else {
                return Err(Error::Tls(format!(
                    "{e} is an https:// endpoint: give a CA certificate"
                )));
            };
            endpoint = endpoint.tls_config(config.clone())?;
        }
        list.push(endpoint);
    }
    if list.len() == 1 {
        return Ok(list.remove(0).connect().await?);
    }
    Ok(tonic::transport::Channel::balance_list(list.into_iter()))
}

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
