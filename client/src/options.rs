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
    /// TLS settings for `https://` endpoints (none: only `http://`
    /// endpoints can be used).
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

/// A PEM document: a file to read at connect, or the bytes themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pem {
    /// Read from this file when the client connects.
    File(PathBuf),
    /// These bytes.
    Bytes(Vec<u8>),
}

impl Pem {
    /// The bytes, read from the file if need be; `what` names the
    /// document in the error.
    pub(crate) fn load(&self, what: &str) -> Result<Vec<u8>, crate::Error> {
        match self {
            Pem::Bytes(b) => Ok(b.clone()),
            Pem::File(p) => std::fs::read(p)
                .map_err(|e| crate::Error::Tls(format!("{what} {}: {e}", p.display()))),
        }
    }
}

/// TLS settings for `https://` endpoints (`http://` endpoints stay
/// plaintext): the certificate authorities that verify the members'
/// certificates (required for `https://`), and optionally a client
/// certificate and key for members that require one
/// (`--client-cert-auth`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// The certificate authorities to trust (PEM).
    pub ca: Option<Pem>,
    /// The client certificate chain (PEM), for mutual TLS.
    pub cert: Option<Pem>,
    /// The client certificate's private key (PEM).
    pub key: Option<Pem>,
    /// Name to verify the server certificate against, instead of the
    /// endpoint's host.
    pub server_name: Option<String>,
}

impl TlsOptions {
    /// No settings yet.
    pub fn new() -> TlsOptions {
        TlsOptions::default()
    }

    /// Trusts the certificate authorities of the PEM file `path`.
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> TlsOptions {
        self.ca = Some(Pem::File(path.into()));
        self
    }

    /// Trusts the certificate authorities of `pem`.
    pub fn with_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> TlsOptions {
        self.ca = Some(Pem::Bytes(pem.into()));
        self
    }

    /// Presents the client certificate of the PEM files `cert` and `key`.
    pub fn with_client_cert_files(
        mut self,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> TlsOptions {
        self.cert = Some(Pem::File(cert.into()));
        self.key = Some(Pem::File(key.into()));
        self
    }

    /// Presents the client certificate `cert` with its key `key` (PEM).
    pub fn with_client_cert_pem(
        mut self,
        cert: impl Into<Vec<u8>>,
        key: impl Into<Vec<u8>>,
    ) -> TlsOptions {
        self.cert = Some(Pem::Bytes(cert.into()));
        self.key = Some(Pem::Bytes(key.into()));
        self
    }

    /// Verifies server certificates against `name` instead of the
    /// endpoint's host.
    pub fn with_server_name(mut self, name: impl Into<String>) -> TlsOptions {
        self.server_name = Some(name.into());
        self
    }

    /// The tonic configuration: every document read and checked to hold
    /// what it should (certificates, a private key), so that a bad file
    /// fails here with its name rather than at the first handshake.
    pub fn client_config(&self) -> Result<tonic::transport::ClientTlsConfig, crate::Error> {
        use crate::Error;
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        let check = |what: &str, pem: &Pem, bytes: &[u8], key: bool| {
            let name = match pem {
                Pem::File(p) => format!("{what} {}", p.display()),
                Pem::Bytes(_) => what.to_owned(),
            };
            let ok = if key {
                sett_server::tls::key_in(bytes).map(drop)
            } else {
                sett_server::tls::certs_in(bytes).map(drop)
            };
            ok.map_err(|e| Error::Tls(format!("{name}: {e}")))
        };
        let mut config = ClientTlsConfig::new();
        let Some(ca) = &self.ca else {
            return Err(Error::Tls(
                "no CA certificate given to verify the members' certificates".into(),
            ));
        };
        let ca_pem = ca.load("CA certificate")?;
        check("CA certificate", ca, &ca_pem, false)?;
        config = config.ca_certificate(Certificate::from_pem(ca_pem));
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let cert_pem = cert.load("client certificate")?;
                check("client certificate", cert, &cert_pem, false)?;
                let key_pem = key.load("client key")?;
                check("client key", key, &key_pem, true)?;
                config = config.identity(Identity::from_pem(cert_pem, key_pem));
            }
            (None, None) => {}
            (Some(_), None) => return Err(Error::Tls("a client certificate needs its key".into())),
            (None, Some(_)) => return Err(Error::Tls("a client key needs its certificate".into())),
        }
        if let Some(name) = &self.server_name {
            config = config.domain_name(name.clone());
        }
        Ok(config)
    }
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
