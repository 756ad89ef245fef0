//! [`Client`]: endpoints, channels, leader discovery and the retrying
//! call loop every service handle goes through.
//!
//! A client keeps one lazily connected channel per URL it talks to: the
//! configured endpoints, plus the leader's client URL when the leader is
//! not among them. Reads rotate over the configured endpoints, skipping
//! for a moment those that just failed. Mutations go to the leader,
//! learned from `Maintenance.Status` (each member names the leader) and
//! `Cluster.MemberList` (the leader's client URLs; the leader must confirm
//! it leads), at connect and again after a retryable failure. While the
//! members answer but none can be confirmed as leader (an election), a
//! mutation waits and looks again, for at most
//! [`crate::RetryOptions::leader_wait`]; after that, or when no member
//! answers Status at all, mutations are sent like reads (any member
//! forwards writes to the leader).
//!
//! With [`ConnectOptions::user`] set, the client authenticates at connect
//! (before it looks for the leader, which needs a token on a cluster with
//! authentication enabled) and every call carries the token; a call
//! answered `etcdserver: invalid auth token` authenticates again and is
//! sent once more.
//!
//! Thread-safety: a [`Client`] is a handle on shared state (`Arc`); clones
//! are cheap and may be used from any task at once.

use crate::auth::{is_invalid_token, Chan, TokenInterceptor, AUTH_NOT_ENABLED};
use crate::cluster::Cluster;
use crate::error::{Error, NO_LEADER};
use crate::kv::Kv;
use crate::lease::Lease;
use crate::maintenance::Maintenance;
use crate::options::ConnectOptions;
use crate::retry::{should_retry, suggests_rediscovery, Backoff, Kind};
use crate::txn::Transactions;
use crate::watch::Watch;
use sett_proto::etcdserverpb::auth_client::AuthClient;
use sett_proto::etcdserverpb::cluster_client::ClusterClient;
use sett_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use sett_proto::etcdserverpb::{
    AuthenticateRequest, MemberListRequest, StatusRequest, StatusResponse,
};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};

/// How long a configured endpoint that just failed is skipped by reads.
const SUSPECT_FOR: Duration = Duration::from_secs(1);

/// A client of a sett (or etcd) cluster; see the module docs. Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The configured endpoints, normalized to `http(s)://host:port`.
    endpoints: Vec<String>,
    options: ConnectOptions,
    /// How `https://` URLs are dialed (from [`ConnectOptions::tls`]).
    tls: Option<tonic::transport::ClientTlsConfig>,
    /// One lazily connected channel per URL.
    channels: Mutex<HashMap<String, Channel>>,
    state: Mutex<State>,
    /// Held while a discovery runs, so concurrent failures run one.
    discovery: tokio::sync::Mutex<()>,
    /// Adds the current token to every call.
    auth: TokenInterceptor,
}

/// The leader as last discovered.
#[derive(Debug, Clone)]
struct Leader {
    id: u64,
    url: String,
    channel: Channel,
}

#[derive(Debug)]
struct State {
    leader: Option<Leader>,
    /// Bumped by every discovery; a failure seen under an older epoch
    /// does not start another one.
    epoch: u64,
    /// Round-robin position over the configured endpoints.
    next_read: usize,
    /// Per configured endpoint: skipped by reads until then.
    suspect_until: Vec<Option<Instant>>,
    /// Since when discoveries find members answering but no confirmed
    /// leader (`None`: a leader is known, or no member answered).
    leaderless_since: Option<Instant>,
}

/// What a discovery found among members that answered.
#[derive(Debug)]
enum Found {
    Leader(Leader),
    /// Members answered, but no leader could be confirmed.
    Leaderless,
}

/// Where one attempt of a call went.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) channel: Channel,
    /// Index of the configured endpoint used, if it was one.
    endpoint: Option<usize>,
    /// Whether the attempt went to the discovered leader.
    to_leader: bool,
    /// The discovery epoch the target was chosen in.
    pub(crate) epoch: u64,
}

/// `endpoint` as a URL: `host:port` gets `http://`; `http://` and
/// `https://` URLs are kept.
pub(crate) fn normalize(endpoint: &str) -> Result<String, Error> {
    let trimmed = endpoint.trim().trim_end_matches('/');
    if trimmed.is_empty() {
        return Err(Error::InvalidEndpoint {
            endpoint: endpoint.to_owned(),
            reason: "empty".to_owned(),
        });
    }
    let url = if trimmed.contains("://") {
        trimmed.to_owned()
    } else {
        format!("http://{trimmed}")
    };
    if !url.starts_with("http://") && !url.starts_with("https://") {
        return Err(Error::InvalidEndpoint {
            endpoint: endpoint.to_owned(),
            reason: "the scheme must be http or https".to_owned(),
        });
    }
    let uri: tonic::codegen::http::Uri = url.parse().map_err(|e| Error::InvalidEndpoint {
        endpoint: endpoint.to_owned(),
        reason: format!("{e}"),
    })?;
    if uri.port_u16().is_none() {
        return Err(Error::InvalidEndpoint {
            endpoint: endpoint.to_owned(),
            reason: "no port".to_owned(),
        });
    }
    Ok(url)
}

impl Client {
    /// Connects to a cluster through `endpoints` (`http://host:port`,
    /// `https://host:port` or `host:port`). Asks every endpoint for its
    /// Status to find the leader; fails only when the endpoints or the
    /// TLS settings are invalid, or no endpoint answers at all.
    pub async fn connect(
        endpoints: impl IntoIterator<Item = impl Into<String>>,
        options: ConnectOptions,
    ) -> Result<Client, Error> {
        let tls = options
            .tls
            .as_ref()
            .map(crate::TlsOptions::client_config)
            .transpose()?;
        let mut urls = Vec::new();
        for e in endpoints {
            let url = normalize(&e.into())?;
            if !urls.contains(&url) {
                urls.push(url);
            }
        }
        if urls.is_empty() {
            return Err(Error::NoEndpoints);
        }
        let n = urls.len();
        let client = Client {
            inner: Arc::new(Inner {
                endpoints: urls,
                options,
                tls,
                channels: Mutex::new(HashMap::new()),
                state: Mutex::new(State {
                    leader: None,
                    epoch: 0,
                    next_read: 0,
                    suspect_until: vec![None; n],
                    leaderless_since: None,
                }),
                discovery: tokio::sync::Mutex::new(()),
                auth: TokenInterceptor::default(),
            }),
        };
        // Build every channel now, so a bad endpoint fails here.
        for url in &client.inner.endpoints {
            client.channel_for(url)?;
        }
        if client.inner.options.user.is_some() {
            client.authenticate().await?;
        }
        client.discover().await?;
        Ok(client)
    }

    /// The configured endpoints, normalized to `http(s)://host:port`.
    pub fn endpoints(&self) -> &[String] {
        &self.inner.endpoints
    }

    /// `channel` with the client's token added to every call.
    pub(crate) fn chan(&self, channel: Channel) -> Chan {
        self.inner.auth.wrap(channel)
    }

    /// Authenticates with [`ConnectOptions::user`] at the first endpoint
    /// that answers and keeps the token for the following calls.
    pub async fn authenticate(&self) -> Result<(), Error> {
        let Some((name, password)) = self.inner.options.user.clone() else {
            return Ok(());
        };
        let bound = self.inner.options.request_timeout;
        let mut last = Error::NoEndpoints;
        for url in &self.inner.endpoints {
            let req = AuthenticateRequest {
                name: name.clone(),
                password: password.clone(),
            };
            let mut auth = AuthClient::new(self.channel_for(url)?);
            match tokio::time::timeout(bound, auth.authenticate(req)).await {
                Ok(Ok(resp)) => {
                    let token = resp.into_inner().token.parse().map_err(|_| {
                        Error::Protocol("the server sent a token that is not ASCII".to_owned())
                    })?;
                    self.inner.auth.set(Some(token));
                    return Ok(());
                }
                // As etcd's clients: credentials for a cluster without
                // authentication are not an error; calls carry no token.
                Ok(Err(s)) if s.message() == AUTH_NOT_ENABLED => {
                    self.inner.auth.set(None);
                    return Ok(());
                }
                // The member is down or unreachable: try the next one.
                Ok(Err(s)) if s.code() == tonic::Code::Unavailable => last = Error::Status(s),
                Ok(Err(s)) => return Err(Error::Status(s)),
                Err(_) => last = Error::Timeout(bound),
            }
        }
        Err(last)
    }

    /// The options the client was connected with.
    pub fn options(&self) -> &ConnectOptions {
        &self.inner.options
    }

    /// The member id of the leader as last discovered, if any.
    pub fn leader_id(&self) -> Option<u64> {
        self.state().leader.as_ref().map(|l| l.id)
    }

    /// The client URL of the leader as last discovered, if any.
    pub fn leader_url(&self) -> Option<String> {
        self.state().leader.as_ref().map(|l| l.url.clone())
    }

    /// Looks the leader up again now; its member id, if one was confirmed.
    pub async fn refresh_leader(&self) -> Result<Option<u64>, Error> {
        self.discover().await?;
        Ok(self.leader_id())
    }

    /// The KV service: ranges, puts, deletes, transactions, compaction.
    pub fn kv(&self) -> Kv {
        Kv::new(self.clone())
    }

    /// The Watch service: resumable watches.
    pub fn watch(&self) -> Watch {
        Watch::new(self.clone())
    }

    /// The Lease service: grants, revocations, keep-alives.
    pub fn lease(&self) -> Lease {
        Lease::new(self.clone())
    }

    /// The Cluster service: membership.
    pub fn cluster(&self) -> Cluster {
        Cluster::new(self.clone())
    }

    /// The Maintenance service: status, hashes, snapshots, alarms.
    pub fn maintenance(&self) -> Maintenance {
        Maintenance::new(self.clone())
    }

    /// Interactive transactions over `sett.v1`, on the leader's channel
    /// (commits are proposed there) or, while no leader is known, on one
    /// of the endpoints. The helper does its own conflict retries; other
    /// failures are returned as they are.
    pub fn transactions(&self) -> Transactions {
        Transactions::over(self.chan(self.target(Kind::Write).channel))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The channel for `url` (normalized), built on first use.
    pub(crate) fn channel_for(&self, url: &str) -> Result<Channel, Error> {
        let mut channels = self
            .inner
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(ch) = channels.get(url) {
            return Ok(ch.clone());
        }
        let o = &self.inner.options;
        let mut endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|e| Error::InvalidEndpoint {
                endpoint: url.to_owned(),
                reason: e.to_string(),
            })?
            .connect_timeout(o.connect_timeout)
            .tcp_nodelay(true);
        if url.starts_with("https://") {
            let Some(tls) = &self.inner.tls else {
                return Err(Error::Tls(format!(
                    "{url} is an https:// endpoint: give TLS options with a CA certificate"
                )));
            };
            endpoint = endpoint
                .tls_config(tls.clone().timeout(o.connect_timeout))
                .map_err(|e| Error::Tls(format!("{url}: {e}")))?;
        }
        if let Some(interval) = o.keep_alive_interval {
            endpoint = endpoint
                .http2_keep_alive_interval(interval)
                .keep_alive_timeout(o.keep_alive_timeout)
                .keep_alive_while_idle(true);
        }
        let channel = endpoint.connect_lazy();
        channels.insert(url.to_owned(), channel.clone());
        Ok(channel)
    }

    /// The channel of the configured endpoint `i`.
    pub(crate) fn endpoint_channel(&self, i: usize) -> Channel {
        self.channel_for(&self.inner.endpoints[i])
            .expect("configured endpoints were validated at connect")
    }

    /// Where the next attempt of a `kind` call goes.
    pub(crate) fn target(&self, kind: Kind) -> Target {
        let mut st = self.state();
        if kind == Kind::Write {
            if let Some(l) = &st.leader {
                return Target {
                    channel: l.channel.clone(),
                    endpoint: None,
                    to_leader: true,
                    epoch: st.epoch,
                };
            }
        }
        let n = self.inner.endpoints.len();
        let now = Instant::now();
        let start = st.next_read;
        let mut chosen = start % n;
        for k in 0..n {
            let i = (start + k) % n;
            if st.suspect_until[i].is_none_or(|t| t <= now) {
                chosen = i;
                break;
            }
        }
        st.next_read = chosen + 1;
        let epoch = st.epoch;
        drop(st);
        Target {
            channel: self.endpoint_channel(chosen),
            endpoint: Some(chosen),
            to_leader: false,
            epoch,
        }
    }

    /// Records that an attempt through `target` failed in a way that
    /// points at the member: reads skip it for a moment, and a failed
    /// leader is forgotten.
    pub(crate) fn note_failure(&self, target: &Target) {
        let mut st = self.state();
        if let Some(i) = target.endpoint {
            st.suspect_until[i] = Some(Instant::now() + SUSPECT_FOR);
        }
        if target.to_leader && st.epoch == target.epoch {
            st.leader = None;
        }
    }

    /// Rediscovers the leader unless another discovery ran since `epoch`.
    pub(crate) async fn rediscover(&self, epoch: u64) {
        let _guard = self.inner.discovery.lock().await;
        if self.state().epoch != epoch {
            return;
        }
        // A failed discovery leaves no leader: calls go to the endpoints.
        let _ = self.discover_locked().await;
    }

    /// Runs a discovery (waiting for one in progress to end first).
    async fn discover(&self) -> Result<(), Error> {
        let _guard = self.inner.discovery.lock().await;
        self.discover_locked().await
    }

    /// Asks every configured endpoint for its Status and records the
    /// leader they name, if it confirms it leads. Errors when no endpoint
    /// answered.
    async fn discover_locked(&self) -> Result<(), Error> {
        let found = self.find_leader().await;
        let mut st = self.state();
        st.epoch += 1;
        match found {
            Ok(Found::Leader(leader)) => {
                st.leader = Some(leader);
                st.leaderless_since = None;
                Ok(())
            }
            Ok(Found::Leaderless) => {
                st.leader = None;
                st.leaderless_since.get_or_insert_with(Instant::now);
                Ok(())
            }
            Err(e) => {
                st.leader = None;
                st.leaderless_since = None;
                Err(e)
            }
        }
    }

    /// Whether mutations should wait for a leader rather than be sent (see
    /// [`crate::RetryOptions::leader_wait`]).
    fn waiting_for_leader(&self) -> bool {
        let wait = self.inner.options.retry.leader_wait;
        let st = self.state();
        st.leader.is_none() && st.leaderless_since.is_some_and(|t| t.elapsed() < wait)
    }

    /// Bound on one Status or MemberList call made by discovery.
    fn probe_timeout(&self) -> Duration {
        let o = &self.inner.options;
        o.request_timeout
            .min(o.connect_timeout.max(Duration::from_millis(500)))
    }

    async fn find_leader(&self) -> Result<Found, Error> {
        let bound = self.probe_timeout();
        let mut set = tokio::task::JoinSet::new();
        for (i, url) in self.inner.endpoints.iter().enumerate() {
            let channel = self.channel_for(url)?;
            let channel = self.chan(channel);
            set.spawn(async move { (i, status_of(channel, bound).await) });
        }
        let mut answers: Vec<(usize, StatusResponse)> = Vec::new();
        let mut last_err = None;
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((i, Ok(s))) => answers.push((i, s)),
                Ok((_, Err(e))) => last_err = Some(e),
                Err(e) => last_err = Some(Error::Protocol(format!("status task failed: {e}"))),
            }
        }
        if answers.is_empty() {
            return Err(last_err.unwrap_or(Error::NoEndpoints));
        }
        // An endpoint that names itself leader (the highest term wins, in
        // case a deposed leader has not noticed yet).
        let self_leader = answers
            .iter()
            .filter(|(_, s)| s.leader != 0 && member_id(s) == s.leader)
            .max_by_key(|(_, s)| s.raft_term);
        if let Some((i, s)) = self_leader {
            let url = self.inner.endpoints[*i].clone();
            return Ok(Found::Leader(Leader {
                id: s.leader,
                channel: self.channel_for(&url)?,
                url,
            }));
        }
        // Else the leader most answers name, reached by its client URL.
        let mut votes: HashMap<u64, (usize, u64)> = HashMap::new();
        for (_, s) in &answers {
            if s.leader != 0 {
                let v = votes.entry(s.leader).or_insert((0, 0));
                v.0 += 1;
                v.1 = v.1.max(s.raft_term);
            }
        }
        let Some((&leader_id, _)) = votes.iter().max_by_key(|(_, v)| **v) else {
            return Ok(Found::Leaderless);
        };
        let asked = self.endpoint_channel(answers[0].0);
        let list = tokio::time::timeout(
            bound,
            ClusterClient::new(self.chan(asked)).member_list(MemberListRequest {
                linearizable: false,
            }),
        )
        .await;
        let Ok(Ok(list)) = list else {
            return Ok(Found::Leaderless);
        };
        let Some(member) = list
            .into_inner()
            .members
            .into_iter()
            .find(|m| m.id == leader_id)
        else {
            return Ok(Found::Leaderless);
        };
        for url in &member.client_ur_ls {
            let Ok(url) = normalize(url) else { continue };
            let channel = self.channel_for(&url)?;
            if let Ok(s) = status_of(self.chan(channel.clone()), bound).await {
                if s.leader == leader_id && member_id(&s) == leader_id {
                    return Ok(Found::Leader(Leader {
                        id: leader_id,
                        url,
                        channel,
                    }));
                }
            }
        }
        Ok(Found::Leaderless)
    }

    /// Runs one unary call `f` with retries (see [`crate::RetryOptions`]):
    /// each attempt bounded by the request timeout, the whole call by the
    /// retry budget, the leader looked up again between attempts.
    pub(crate) async fn call<T, F, Fut>(&self, kind: Kind, mut f: F) -> Result<T, Error>
    where
        F: FnMut(Chan) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let opts = &self.inner.options;
        let deadline = Instant::now() + opts.retry.total_timeout;
        let mut backoff = Backoff::new(&opts.retry);
        let mut attempt: u32 = 0;
        let mut reauthenticated = false;
        loop {
            let target = self.target(kind);
            let err = if kind == Kind::Write && !target.to_leader && self.waiting_for_leader() {
                // Not sent (so not an attempt): no member leads yet.
                Error::Status(tonic::Status::unavailable(NO_LEADER))
            } else {
                attempt += 1;
                let remaining = deadline.saturating_duration_since(Instant::now());
                let bound = opts.request_timeout.min(remaining);
                let call = f(self.chan(target.channel.clone()));
                let err = match tokio::time::timeout(bound, call).await {
                    Ok(Ok(resp)) => return Ok(resp.into_inner()),
                    Ok(Err(status)) => Error::Status(status),
                    Err(_) => Error::Timeout(bound),
                };
                if suggests_rediscovery(&err) {
                    self.note_failure(&target);
                }
                err
            };
            let token_refused = matches!(&err, Error::Status(s) if is_invalid_token(s));
            if token_refused && !reauthenticated && self.inner.options.user.is_some() {
                // The token expired or the member restarted: once more
                // with a new token, at once.
                reauthenticated = true;
                self.authenticate().await?;
                continue;
            }
            if attempt >= opts.retry.max_attempts || !should_retry(kind, &err, &opts.retry) {
                return Err(err);
            }
            let pause = backoff.next_pause();
            if Instant::now() + pause >= deadline {
                return Err(err);
            }
            tokio::time::sleep(pause).await;
            self.rediscover(target.epoch).await;
        }
    }
}

/// The member id in a Status answer's header.
fn member_id(s: &StatusResponse) -> u64 {
    s.header.as_ref().map_or(0, |h| h.member_id)
}

/// `Maintenance.Status` over `channel`, bounded by `bound`.
pub(crate) async fn status_of(channel: Chan, bound: Duration) -> Result<StatusResponse, Error> {
    match tokio::time::timeout(
        bound,
        MaintenanceClient::new(channel).status(StatusRequest {}),
    )
    .await
    {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(s)) => Err(Error::Status(s)),
        Err(_) => Err(Error::Timeout(bound)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_normalized() {
        assert_eq!(
            normalize("127.0.0.1:2379").unwrap(),
            "http://127.0.0.1:2379"
        );
        assert_eq!(normalize("http://h:1/").unwrap(), "http://h:1");
        assert_eq!(normalize("https://h:1/").unwrap(), "https://h:1");
        assert!(matches!(normalize("h"), Err(Error::InvalidEndpoint { .. })));
        assert!(matches!(
            normalize("ftp://h:1"),
            Err(Error::InvalidEndpoint { .. })
        ));
        assert!(matches!(normalize(" "), Err(Error::InvalidEndpoint { .. })));
    }

    #[tokio::test]
    async fn unusable_tls_settings_are_refused_at_connect() {
        let https = ["https://127.0.0.1:1"];
        let err = Client::connect(https, ConnectOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Tls(_)), "{err}");
        assert!(err.to_string().contains("CA certificate"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("ca.pem");
        let opts =
            ConnectOptions::default().with_tls(crate::TlsOptions::new().with_ca_file(&missing));
        let err = Client::connect(https, opts).await.unwrap_err();
        assert!(matches!(err, Error::Tls(_)), "{err}");
        assert!(err.to_string().contains("ca.pem"), "{err}");

        let opts = ConnectOptions::default()
            .with_tls(crate::TlsOptions::new().with_ca_pem("not a certificate"));
        let err = Client::connect(https, opts).await.unwrap_err();
        assert!(err.to_string().contains("no CERTIFICATE block"), "{err}");

        let none: [&str; 0] = [];
        assert!(matches!(
            Client::connect(none, ConnectOptions::default()).await,
            Err(Error::NoEndpoints)
        ));
    }
}
