//! The connection the cluster commands share: endpoints from the global
//! flags, the dial timeout on connecting and the command timeout on each
//! call, and gRPC errors turned into etcd's messages.

use crate::Global;
use anyhow::{anyhow, Result};
use sett_client::{Chan, TokenInterceptor};
use sett_proto::etcdserverpb::auth_client::AuthClient;
use sett_proto::etcdserverpb::cluster_client::ClusterClient;
use sett_proto::etcdserverpb::kv_client::KvClient;
use sett_proto::etcdserverpb::lease_client::LeaseClient;
use sett_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use sett_proto::etcdserverpb::watch_client::WatchClient;
use sett_proto::etcdserverpb::AuthenticateRequest;
use std::future::Future;
use std::time::Duration;
use tonic::transport::Channel;

/// A channel to the cluster plus the timeouts of the global flags; with
/// `--user`, the token every call carries.
#[derive(Debug, Clone)]
pub struct Conn {
    channel: Channel,
    /// `channel` with the token added to each call.
    chan: Chan,
    command_timeout: Duration,
    /// The endpoints as given (`host:port` or URLs).
    pub endpoints: Vec<String>,
}

/// `host:port` → `http://host:port`, or `https://host:port` when TLS
/// flags are given (as etcdctl does); URLs are kept.
pub fn url(endpoint: &str, tls: bool) -> String {
    let e = endpoint.trim();
    if e.contains("://") {
        e.to_owned()
    } else if tls {
        format!("https://{e}")
    } else {
        format!("http://{e}")
    }
}

impl Conn {
    /// Connects to every endpoint of `global` (calls are balanced over
    /// them), giving up after the dial timeout.
    pub async fn open(global: &Global) -> Result<Conn> {
        let endpoints: Vec<String> = global
            .endpoints
            .iter()
            .map(|e| e.trim().to_owned())
            .filter(|e| !e.is_empty())
            .collect();
        if endpoints.is_empty() {
            anyhow::bail!("no endpoints given (--endpoints or SETT_ENDPOINTS)");
        }
        Conn::open_list(endpoints, global).await
    }

    /// The connection's channel, for callers that drive the generated
    /// clients themselves (the load generator).
    pub fn into_channel(self) -> Channel {
        self.channel
    }

    /// Connects to one endpoint only.
    pub async fn open_one(endpoint: &str, global: &Global) -> Result<Conn> {
        Conn::open_list(vec![endpoint.trim().to_owned()], global).await
    }

    async fn open_list(endpoints: Vec<String>, global: &Global) -> Result<Conn> {
        let tls = global.tls();
        let urls: Vec<String> = endpoints.iter().map(|e| url(e, tls.is_some())).collect();
        let dial = global.dial_timeout;
        let connect = sett_client::connect_with_tls(&urls, tls.as_ref());
        let channel = match tokio::time::timeout(dial, connect).await {
            Ok(Ok(c)) => c,
            Ok(Err(sett_client::Error::Transport(e))) => {
                return Err(anyhow!(
                    "cannot connect to {}: {}",
                    endpoints.join(","),
                    transport_reason(&e)
                ))
            }
            Ok(Err(e)) => return Err(anyhow!("cannot connect to {}: {e}", endpoints.join(","))),
            Err(_) => {
                return Err(anyhow!(
                    "cannot connect to {} within the dial timeout ({:?})",
                    endpoints.join(","),
                    dial
                ))
            }
        };
        let auth = TokenInterceptor::default();
        let conn = Conn {
            chan: auth.wrap(channel.clone()),
            channel,
            command_timeout: global.command_timeout,
            endpoints,
        };
        if let Some((name, password)) = credentials(global)? {
            let req = AuthenticateRequest { name, password };
            match conn
                .call(AuthClient::new(conn.channel.clone()).authenticate(req))
                .await
            {
                Ok(resp) => {
                    let token = resp
                        .token
                        .parse()
                        .map_err(|_| anyhow!("the server sent a token that is not ASCII"))?;
                    auth.set(Some(token));
                }
                // As etcdctl: credentials for a cluster without
                // authentication are ignored.
                Err(e) if e.to_string() == "etcdserver: authentication is not enabled" => {}
                Err(e) => return Err(e),
            }
        }
        Ok(conn)
    }

    /// An Auth client.
    pub fn auth(&self) -> AuthClient<Chan> {
        AuthClient::new(self.chan.clone())
    }

    /// A KV client.
    pub fn kv(&self) -> KvClient<Chan> {
        KvClient::new(self.chan.clone())
    }

    /// A Watch client.
    pub fn watch(&self) -> WatchClient<Chan> {
        WatchClient::new(self.chan.clone())
    }

    /// A Lease client.
    pub fn lease(&self) -> LeaseClient<Chan> {
        LeaseClient::new(self.chan.clone())
    }

    /// A Cluster client.
    pub fn cluster(&self) -> ClusterClient<Chan> {
        ClusterClient::new(self.chan.clone())
    }

    /// A Maintenance client.
    pub fn maintenance(&self) -> MaintenanceClient<Chan> {
        MaintenanceClient::new(self.chan.clone())
    }

    /// The command timeout of the global flags.
    pub fn command_timeout(&self) -> Duration {
        self.command_timeout
    }

    /// Runs one unary call under the command timeout; a gRPC error becomes
    /// its message (etcd's wording, e.g. `etcdserver: mvcc: required
    /// revision has been compacted`).
    pub async fn call<T, F>(&self, fut: F) -> Result<T>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        match tokio::time::timeout(self.command_timeout, fut).await {
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) if is_transport_failure(&status) => Err(anyhow!(
                "cannot reach {}: {}",
                self.endpoints.join(","),
                status_error(&status)
            )),
            Ok(Err(status)) => Err(status_error(&status)),
            Err(_) => Err(anyhow!(
                "context deadline exceeded (no answer from {} within the command timeout {:?})",
                self.endpoints.join(","),
                self.command_timeout
            )),
        }
    }
}

/// The user name and password of `--user name[:password]` and
/// `--password`, as etcdctl reads them (no prompt: a missing password is
/// an error).
fn credentials(global: &Global) -> Result<Option<(String, String)>> {
    let Some(user) = &global.user else {
        if global.password.is_some() {
            anyhow::bail!("--password given without --user");
        }
        return Ok(None);
    };
    match (user.split_once(':'), &global.password) {
        (Some(_), Some(_)) => {
            anyhow::bail!("--user must not include a password when --password is given")
        }
        (Some((name, pw)), None) => Ok(Some((name.to_owned(), pw.to_owned()))),
        (None, Some(pw)) => Ok(Some((user.clone(), pw.clone()))),
        (None, None) => {
            anyhow::bail!("no password for user {user:?}: use --user {user}:PASSWORD or --password")
        }
    }
}

/// A gRPC status as an error: the server's message, or the transport
/// failure for a status made by the client side.
pub fn status_error(status: &tonic::Status) -> anyhow::Error {
    let msg = status.message();
    if msg.is_empty() {
        anyhow!("{}", status.code().description())
    } else {
        anyhow!("{msg}")
    }
}

/// Whether a status was made on the client side because no connection
/// could be had (rather than sent by a server).
fn is_transport_failure(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unavailable && !status.message().starts_with("etcdserver:")
}

/// The innermost cause of a transport error (e.g. "Connection refused").
fn transport_reason(e: &tonic::transport::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = s.to_string();
        source = s.source();
    }
    text
}

/// Runs `fut` on a fresh multi-threaded runtime.
pub fn block_on<T>(fut: impl Future<Output = Result<T>>) -> Result<T> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(fut)
}
