//! How a [`crate::Client`] connects, times out and retries.

use std::path::PathBuf;
use std::time::Duration;

/// Options of [`crate::Client::connect`]. `ConnectOptions::default()`
/// gives the values named on each field.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Bound on establishing one connection (5 s).
    pub connect_timeout: Duration,
    /// Bound on one attempt of a unary call (10 s); retries make further
    /// attempts within [`RetryOptions::total_timeout`].
    pub request_timeout: Duration,
    /// Interval of HTTP/2 keep-alive pings, also while no call is in flight
    /// (10 s); `None` sends none.
    pub keep_alive_interval: Option<Duration>,
    /// How long a keep-alive ping may go unanswered before the connection
    /// is considered dead (10 s).
    pub keep_alive_timeout: Duration,
    /// Retries of failed calls.
    pub retry: RetryOptions,
    /// How long a broken watch keeps trying to resume before it reports
    /// the failure (5 min).
    pub watch_resume_timeout: Duration,
    /// TLS settings. This build has no TLS transport: when set,
    /// [`crate::Client::connect`] fails with [`crate::Error::TlsUnsupported`].
    pub tls: Option<TlsOptions>,
    /// User name and password: the client authenticates at connect, sends
    /// the token with every call and authenticates again once when a call
    /// is answered `etcdserver: invalid auth token` (`None`).
    pub user: Option<(String, String)>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            keep_alive_interval: Some(Duration::from_secs(10)),
            keep_alive_timeout: Duration::from_secs(10),
            retry: RetryOptions::default(),
            watch_resume_timeout: Duration::from_secs(300),
            tls: None,
            user: None,
        }
    }
}

impl ConnectOptions {
    /// The defaults.
    pub fn new() -> ConnectOptions {
        ConnectOptions::default()
    }

    /// Sets [`ConnectOptions::connect_timeout`].
    pub fn with_connect_timeout(mut self, timeout: Duration) -> ConnectOptions {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`ConnectOptions::request_timeout`].
    pub fn with_request_timeout(mut self, timeout: Duration) -> ConnectOptions {
        self.request_timeout = timeout;
        self
    }

    /// Sets the HTTP/2 keep-alive interval and timeout.
    pub fn with_keep_alive(mut self, interval: Duration, timeout: Duration) -> ConnectOptions {
        self.keep_alive_interval = Some(interval);
        self.keep_alive_timeout = timeout;
        self
    }

    /// Sets [`ConnectOptions::retry`].
    pub fn with_retry(mut self, retry: RetryOptions) -> ConnectOptions {
        self.retry = retry;
        self
    }

    /// Sets [`ConnectOptions::user`].
    pub fn with_user(mut self, name: impl Into<String>, password: impl Into<String>) -> Self {
        self.user = Some((name.into(), password.into()));
        self
    }

    /// Sets [`ConnectOptions::tls`].
    pub fn with_tls(mut self, tls: TlsOptions) -> ConnectOptions {
        self.tls = Some(tls);
        self
    }
}

/// TLS settings, kept as data until the client has a TLS transport.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file of the certificate authorities to trust.
    pub ca_file: Option<PathBuf>,
    /// PEM file of the client certificate (mutual TLS).
    pub cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    pub key_file: Option<PathBuf>,
    /// Name to verify the server certificate against, instead of the
    /// endpoint's host.
    pub server_name: Option<String>,
}

/// How failed calls are retried: capped exponential backoff with jitter,
/// bounded both in attempts and in total time.
///
/// Reads are retried on `Unavailable` (etcd's "no leader", "leader
/// changed", "request timed out", a member stopping or unreachable) and
/// on broken connections. Mutations (Put, DeleteRange, a Txn with writes,
/// Compact, lease grant and revoke, membership changes) are retried the
/// same way except after "request timed out", whose request may still
/// commit. With [`RetryOptions::retry_mutations`] set (the default) a
/// mutation is also retried when its connection broke or its member
/// became unavailable after it was sent: if the first attempt had reached
/// the leader, the mutation may then apply twice (at-least-once, the
/// caveat etcd's own client has). Clear it to retry mutations only on
/// "no leader", which the server answers before proposing anything.
#[derive(Debug, Clone)]
pub struct RetryOptions {
    /// Attempts per call, the first included (10).
    pub max_attempts: u32,
    /// Pause before the second attempt (50 ms); doubles up to
    /// [`RetryOptions::max_backoff`], each pause jittered to 50–100 %.
    pub initial_backoff: Duration,
    /// Longest pause between two attempts (1 s).
    pub max_backoff: Duration,
    /// Bound on a call with all its attempts and pauses (30 s).
    pub total_timeout: Duration,
    /// Whether mutations are retried after failures that may have
    /// happened once the request reached the server (true).
    pub retry_mutations: bool,
    /// How long mutations wait for a leader when the members answer but
    /// none can be confirmed as leader (an election, or a leader that just
    /// died) before they are sent to any member to forward (5 s). Waiting
    /// keeps them from being proposed on a member that cannot reach a
    /// leader, where they would only time out; sending after the wait
    /// covers a leader this client cannot reach itself.
    pub leader_wait: Duration,
}

impl Default for RetryOptions {
    fn default() -> Self {
        RetryOptions {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            total_timeout: Duration::from_secs(30),
            retry_mutations: true,
            leader_wait: Duration::from_secs(5),
        }
    }
}

impl RetryOptions {
    /// No retries: one attempt per call.
    pub fn none() -> RetryOptions {
        RetryOptions {
            max_attempts: 1,
            ..RetryOptions::default()
        }
    }
}
