//! Member configuration: etcd's flags (each with a `SETT_*` environment
//! variable), their validation, and the resolved configuration persisted
//! in the data directory.
//!
//! # Identity
//! An initial member's Raft node id is `xxh3_64(name ‖ 0 ‖ cluster token)`
//! (a member added at runtime, started with `--initial-cluster-state
//! existing`, hashes its sorted peer URLs instead: see
//! [`added_member_id`]), and the
//! cluster id `xxh3_64("sett-cluster" ‖ 0 ‖ cluster token)`: every member
//! computes every id from `--initial-cluster` and
//! `--initial-cluster-token` alone, without coordination. (etcd's cluster
//! id also covers the initial member list; sett's covers only the token,
//! so a member started with `--initial-cluster-state existing` and a longer
//! member list still belongs to the same cluster.)
//!
//! # Restart
//! The first start writes the resolved configuration to
//! `<data-dir>/member.json`. A later start with that data directory needs
//! no other flag: identity (name, ids, initial membership) comes from the
//! file and `--initial-cluster*` flags are ignored, as in etcd; URLs,
//! timeouts and limits come from a flag when one is given, else from the
//! file.

use crate::raft::{NodeId, SettNode};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Name of the persisted configuration inside the data directory.
pub const MEMBER_FILE: &str = "member.json";

/// etcd's default member name.
pub const DEFAULT_NAME: &str = "default";
/// Default `--initial-cluster-token`.
pub const DEFAULT_CLUSTER_TOKEN: &str = "sett-cluster";
const DEFAULT_CLIENT_URL: &str = "http://localhost:2379";
const DEFAULT_PEER_URL: &str = "http://localhost:2380";
const DEFAULT_HEARTBEAT_MS: u64 = 100;
/// etcd's default watch progress notification interval: 10 minutes.
const DEFAULT_PROGRESS_NOTIFY_MS: u64 = 10 * 60 * 1000;
const DEFAULT_ELECTION_MS: u64 = 1000;
/// etcd caps the election timeout at 50 s.
const ELECTION_MS_MAX: u64 = 50_000;
const DEFAULT_SNAPSHOT_COUNT: u64 = 100_000;
/// etcd's `SnapshotCatchUpEntries`: log kept behind a snapshot for slow
/// followers.
const DEFAULT_SNAPSHOT_CATCHUP_ENTRIES: u64 = 5_000;
const DEFAULT_MAX_REQUEST_BYTES: u64 = 1_572_864;
const DEFAULT_QUOTA_BACKEND_BYTES: u64 = 2 << 30;

/// `--initial-cluster-state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterState {
    /// All members of `--initial-cluster` start together; the one with the
    /// smallest node id initializes the Raft group.
    New,
    /// Join a running cluster that already lists this member (added
    /// through the membership API, add-learner then promote).
    Existing,
}

/// `--auto-compaction-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AutoCompactionMode {
    /// Retention is a duration (`1h`, `30m`, or a number of hours).
    Periodic,
    /// Retention is a number of revisions.
    Revision,
}

/// `--log-level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Everything.
    Debug,
    /// The default.
    Info,
    /// Warnings and errors.
    Warn,
    /// Errors only.
    Error,
}

impl LogLevel {
    /// As a `tracing` filter directive.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (colored on a terminal); the default.
    #[default]
    Console,
    /// One JSON object per line: `timestamp`, `level`, `message`,
    /// `target` and the event's fields.
    Json,
}

/// etcd's default `--max-concurrent-streams`: no limit.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = u32::MAX;

fn default_max_concurrent_streams() -> u32 {
    DEFAULT_MAX_CONCURRENT_STREAMS
}

/// The member flags, named as etcd names them. Every flag is optional on
/// the command line so that a restart can take it from `member.json`.
#[derive(Debug, Clone, Default, Args)]
pub struct Flags {
    /// Human-readable name of this member [default: default].
    #[arg(long, env = "SETT_NAME")]
    pub name: Option<String>,
    /// Path to the data directory [default: <name>.sett].
    #[arg(long, env = "SETT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Comma-separated URLs to listen on for client traffic
    /// [default: http://localhost:2379]; the etcd v3 API is served there.
    #[arg(long, env = "SETT_LISTEN_CLIENT_URLS")]
    pub listen_client_urls: Option<String>,
    /// Comma-separated client URLs advertised to the cluster
    /// [default: http://localhost:2379].
    #[arg(long, env = "SETT_ADVERTISE_CLIENT_URLS")]
    pub advertise_client_urls: Option<String>,
    /// Comma-separated URLs to listen on for peer (Raft) traffic
    /// [default: http://localhost:2380].
    #[arg(long, env = "SETT_LISTEN_PEER_URLS")]
    pub listen_peer_urls: Option<String>,
    /// Comma-separated peer URLs advertised to the other members
    /// [default: http://localhost:2380].
    #[arg(long, env = "SETT_INITIAL_ADVERTISE_PEER_URLS")]
    pub initial_advertise_peer_urls: Option<String>,
    /// Initial cluster configuration for bootstrapping, `name=url,...`
    /// [default: <name>=<initial-advertise-peer-urls>].
    #[arg(long, env = "SETT_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,
    /// Initial cluster state [default: new].
    #[arg(long, env = "SETT_INITIAL_CLUSTER_STATE", value_enum)]
    pub initial_cluster_state: Option<ClusterState>,
    /// Initial cluster token; members of one cluster must share it
    /// [default: sett-cluster].
    #[arg(long, env = "SETT_INITIAL_CLUSTER_TOKEN")]
    pub initial_cluster_token: Option<String>,
    /// Time (in milliseconds) of a heartbeat interval [default: 100].
    #[arg(long, env = "SETT_HEARTBEAT_INTERVAL")]
    pub heartbeat_interval: Option<u64>,
    /// Time (in milliseconds) for an election to timeout; at least 5 times
    /// the heartbeat interval [default: 1000].
    #[arg(long, env = "SETT_ELECTION_TIMEOUT")]
    pub election_timeout: Option<u64>,
    /// Number of committed transactions to trigger a snapshot
    /// [default: 100000].
    #[arg(long, env = "SETT_SNAPSHOT_COUNT")]
    pub snapshot_count: Option<u64>,
    /// Number of log entries kept behind a snapshot for slow followers
    /// [default: 5000].
    #[arg(long, env = "SETT_EXPERIMENTAL_SNAPSHOT_CATCHUP_ENTRIES")]
    pub experimental_snapshot_catchup_entries: Option<u64>,
    /// Maximum client request size in bytes the server will accept
    /// [default: 1572864].
    #[arg(long, env = "SETT_MAX_REQUEST_BYTES")]
    pub max_request_bytes: Option<u64>,
    /// Raise an alarm when the backend size exceeds this many bytes; 0
    /// means the default [default: 2147483648].
    #[arg(long, env = "SETT_QUOTA_BACKEND_BYTES")]
    pub quota_backend_bytes: Option<u64>,
    /// Interpret --auto-compaction-retention as a duration (periodic) or a
    /// revision count (revision) [default: periodic].
    #[arg(long, env = "SETT_AUTO_COMPACTION_MODE", value_enum)]
    pub auto_compaction_mode: Option<AutoCompactionMode>,
    /// Auto compaction retention; 0 disables it [default: 0].
    #[arg(long, env = "SETT_AUTO_COMPACTION_RETENTION")]
    pub auto_compaction_retention: Option<String>,
    /// Log level [default: info].
    #[arg(long, env = "SETT_LOG_LEVEL", value_enum)]
    pub log_level: Option<LogLevel>,
    /// Interval between watch progress notifications, e.g. `10m`, `30s`
    /// [default: 10m].
    #[arg(long, env = "SETT_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL")]
    pub experimental_watch_progress_notify_interval: Option<String>,

    // Authentication
    /// Auth token type; only `simple` is supported [default: simple].
    #[arg(long, env = "SETT_AUTH_TOKEN")]
    pub auth_token: Option<String>,
    /// Time (in seconds) an unused simple token stays valid
    /// [default: 300].
    #[arg(long, env = "SETT_AUTH_TOKEN_TTL")]
    pub auth_token_ttl: Option<u64>,
    /// bcrypt cost for hashing passwords, 4 to 31 [default: 10].
    #[arg(long, env = "SETT_BCRYPT_COST")]
    pub bcrypt_cost: Option<u32>,
    // Metrics, logs and limits
    /// Comma-separated URLs (`http://host:port`) to serve `/metrics`
    /// (Prometheus) and `/health` on over plain HTTP/1.1; empty serves
    /// none [default: none].
    #[arg(long, env = "SETT_LISTEN_METRICS_URLS")]
    pub listen_metrics_urls: Option<String>,
    /// Log format: console or json (one object per line)
    /// [default: console].
    #[arg(long, env = "SETT_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Maximum concurrent streams (calls) per client connection: the
    /// HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS this member announces
    /// [default: 4294967295, no limit].
    #[arg(long, env = "SETT_MAX_CONCURRENT_STREAMS")]
    pub max_concurrent_streams: Option<u32>,

    // TLS
    /// Path to the client server TLS cert file (PEM, the chain with the
    /// leaf first); needed by `https://` client URLs. An empty value
    /// clears a stored one.
    #[arg(long, env = "SETT_CERT_FILE")]
    pub cert_file: Option<PathBuf>,
    /// Path to the client server TLS key file (PEM).
    #[arg(long, env = "SETT_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Require client certificates signed by --trusted-ca-file on the
    /// `https://` client URLs [default: false].
    #[arg(long, env = "SETT_CLIENT_CERT_AUTH", num_args = 0..=1, default_missing_value = "true")]
    pub client_cert_auth: Option<bool>,
    /// Path to the client server TLS trusted CA cert file (PEM): clients
    /// of the `https://` client URLs must present a certificate it signed
    /// (as in etcd); also verifies other members' `https://` client URLs.
    #[arg(long, env = "SETT_TRUSTED_CA_FILE")]
    pub trusted_ca_file: Option<PathBuf>,
    /// Path to the peer server TLS cert file (PEM); needed by `https://`
    /// peer URLs, and presented when dialing other members.
    #[arg(long, env = "SETT_PEER_CERT_FILE")]
    pub peer_cert_file: Option<PathBuf>,
    /// Path to the peer server TLS key file (PEM).
    #[arg(long, env = "SETT_PEER_KEY_FILE")]
    pub peer_key_file: Option<PathBuf>,
    /// Require peer certificates signed by --peer-trusted-ca-file on the
    /// `https://` peer URLs [default: false].
    #[arg(long, env = "SETT_PEER_CLIENT_CERT_AUTH", num_args = 0..=1, default_missing_value = "true")]
    pub peer_client_cert_auth: Option<bool>,
    /// Path to the peer server TLS trusted CA file (PEM): members dialing
    /// the `https://` peer URLs must present a certificate it signed, and
    /// it verifies the other members' certificates when dialing them.
    #[arg(long, env = "SETT_PEER_TRUSTED_CA_FILE")]
    pub peer_trusted_ca_file: Option<PathBuf>,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A flag's value is invalid.
    #[error("{flag}: {message}")]
    Invalid {
        /// The flag, e.g. `--initial-cluster`.
        flag: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The flags contradict each other or the data directory.
    #[error("{0}")]
    Conflict(String),
    /// `member.json` cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// `member.json` does not decode.
    #[error("{path}: {source}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: serde_json::Error,
    },
}

fn invalid(flag: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        flag,
        message: message.into(),
    }
}

/// The resolved configuration of one member (persisted as `member.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberConfig {
    /// `--name`.
    pub name: String,
    /// `--data-dir` (not persisted: the file lives in it).
    #[serde(skip)]
    pub data_dir: PathBuf,
    /// This member's Raft node id.
    pub node_id: NodeId,
    /// The cluster id checked on every Raft message.
    pub cluster_id: u64,
    /// `--initial-cluster-token`.
    pub cluster_token: String,
    /// `--initial-cluster-state` of the first start.
    pub initial_cluster_state: ClusterState,
    /// `--initial-cluster`, resolved: node id → member.
    pub initial_members: BTreeMap<NodeId, SettNode>,
    /// `--listen-client-urls`, normalized.
    pub listen_client_urls: Vec<String>,
    /// `--advertise-client-urls`, normalized.
    pub advertise_client_urls: Vec<String>,
    /// `--listen-peer-urls`, normalized.
    pub listen_peer_urls: Vec<String>,
    /// `--initial-advertise-peer-urls`, normalized.
    pub advertise_peer_urls: Vec<String>,
    /// `--heartbeat-interval`, in milliseconds.
    pub heartbeat_interval_ms: u64,
    /// `--election-timeout`, in milliseconds.
    pub election_timeout_ms: u64,
    /// `--snapshot-count`.
    pub snapshot_count: u64,
    /// `--experimental-snapshot-catchup-entries`.
    pub snapshot_catchup_entries: u64,
    /// `--max-request-bytes`.
    pub max_request_bytes: u64,
    /// `--quota-backend-bytes`.
    pub quota_backend_bytes: u64,
    /// `--auto-compaction-mode`.
    pub auto_compaction_mode: AutoCompactionMode,
    /// `--auto-compaction-retention`.
    pub auto_compaction_retention: String,
    /// `--log-level`.
    pub log_level: LogLevel,
    /// `--experimental-watch-progress-notify-interval`, in milliseconds.
    #[serde(default = "default_progress_notify_ms")]
    pub watch_progress_notify_interval_ms: u64,
    // Metrics, logs and limits
    /// `--listen-metrics-urls`, normalized (empty: no metrics listener).
    #[serde(default)]
    pub listen_metrics_urls: Vec<String>,
    /// `--log-format`.
    #[serde(default)]
    pub log_format: LogFormat,
    /// `--max-concurrent-streams`.
    #[serde(default = "default_max_concurrent_streams")]
    pub max_concurrent_streams: u32,

    // Authentication
    /// `--auth-token-ttl`, in seconds.
    #[serde(default = "default_auth_token_ttl_secs")]
    pub auth_token_ttl_secs: u64,
    /// `--bcrypt-cost`.
    #[serde(default = "default_bcrypt_cost")]
    pub bcrypt_cost: u32,

    // TLS
    /// `--cert-file`, `--key-file`, `--client-cert-auth`,
    /// `--trusted-ca-file`.
    #[serde(default)]
    pub client_tls: TlsFiles,
    /// `--peer-cert-file`, `--peer-key-file`, `--peer-client-cert-auth`,
    /// `--peer-trusted-ca-file`.
    #[serde(default)]
    pub peer_tls: TlsFiles,
}

/// etcd's default `--auth-token-ttl` (seconds).
pub const DEFAULT_AUTH_TOKEN_TTL_SECS: u64 = 300;
/// etcd's default `--bcrypt-cost`.
pub const DEFAULT_BCRYPT_COST: u32 = 10;

fn default_auth_token_ttl_secs() -> u64 {
    DEFAULT_AUTH_TOKEN_TTL_SECS
}

fn default_bcrypt_cost() -> u32 {
    DEFAULT_BCRYPT_COST
}

/// The TLS files of one side (client or peer) of a member; paths are
/// absolute once resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsFiles {
    /// The certificate chain (PEM), leaf first.
    pub cert_file: Option<PathBuf>,
    /// The private key of the leaf (PEM).
    pub key_file: Option<PathBuf>,
    /// Whether connecting clients must present a certificate signed by
    /// `trusted_ca_file` (a trusted CA requires one anyway, as in etcd;
    /// this insists on the CA).
    pub client_cert_auth: bool,
    /// The certificate authorities (PEM) trusted for the certificates of
    /// connecting clients and of the members this one dials.
    pub trusted_ca_file: Option<PathBuf>,
}

impl TlsFiles {
    /// Whether nothing is configured.
    pub fn is_empty(&self) -> bool {
        *self == TlsFiles::default()
    }
}

/// The flag names of one side's [`TlsFiles`], for error messages.
#[derive(Debug, Clone, Copy)]
struct TlsFlags {
    side: &'static str,
    listen: &'static str,
    cert: &'static str,
    key: &'static str,
    auth: &'static str,
    ca: &'static str,
}

const CLIENT_TLS_FLAGS: TlsFlags = TlsFlags {
    side: "client",
    listen: "--listen-client-urls",
    cert: "--cert-file",
    key: "--key-file",
    auth: "--client-cert-auth",
    ca: "--trusted-ca-file",
};

const PEER_TLS_FLAGS: TlsFlags = TlsFlags {
    side: "peer",
    listen: "--listen-peer-urls",
    cert: "--peer-cert-file",
    key: "--peer-key-file",
    auth: "--peer-client-cert-auth",
    ca: "--peer-trusted-ca-file",
};

/// A file flag's value: an empty path clears it, a relative one is made
/// absolute (so that `member.json` works from any directory).
fn tls_path(flag: &'static str, p: &Path) -> Result<Option<PathBuf>, ConfigError> {
    if p.as_os_str().is_empty() {
        return Ok(None);
    }
    std::path::absolute(p)
        .map(Some)
        .map_err(|e| invalid(flag, format!("{}: {e}", p.display())))
}

/// Overrides `files` with the flags given.
fn override_tls(
    files: &mut TlsFiles,
    names: TlsFlags,
    cert: Option<&PathBuf>,
    key: Option<&PathBuf>,
    auth: Option<bool>,
    ca: Option<&PathBuf>,
) -> Result<(), ConfigError> {
    if let Some(p) = cert {
        files.cert_file = tls_path(names.cert, p)?;
    }
    if let Some(p) = key {
        files.key_file = tls_path(names.key, p)?;
    }
    if let Some(v) = auth {
        files.client_cert_auth = v;
    }
    if let Some(p) = ca {
        files.trusted_ca_file = tls_path(names.ca, p)?;
    }
    Ok(())
}

/// Checks one side's TLS settings against its listen URLs and loads every
/// file given, as a start would.
fn validate_tls(
    files: &TlsFiles,
    names: TlsFlags,
    listen: &[String],
    dialed: &[&String],
) -> Result<(), ConfigError> {
    if let Some(url) = listen.iter().find(|u| u.starts_with("https://")) {
        if files.cert_file.is_none() || files.key_file.is_none() {
            return Err(invalid(
                names.listen,
                format!(
                    "TLS key/cert ({}, {}) must be provided for {} url {url} with HTTPS scheme",
                    names.cert, names.key, names.side
                ),
            ));
        }
    }
    match (&files.cert_file, &files.key_file) {
        (Some(_), None) => return Err(invalid(names.key, format!("needed with {}", names.cert))),
        (None, Some(_)) => return Err(invalid(names.cert, format!("needed with {}", names.key))),
        _ => {}
    }
    if files.client_cert_auth && files.trusted_ca_file.is_none() {
        return Err(invalid(
            names.auth,
            format!("needs {} to verify the certificates", names.ca),
        ));
    }
    if let Some(url) = dialed.iter().find(|u| u.starts_with("https://")) {
        if files.trusted_ca_file.is_none() {
            return Err(invalid(
                names.ca,
                format!(
                    "needed to verify the certificate of the {} url {url}, which members dial",
                    names.side
                ),
            ));
        }
    }
    crate::tls::check(files).map_err(|e| {
        let flag = match e.part {
            crate::tls::Part::Cert | crate::tls::Part::Pair => names.cert,
            crate::tls::Part::Key => names.key,
            crate::tls::Part::TrustedCa => names.ca,
        };
        invalid(flag, e.message)
    })
}

fn default_progress_notify_ms() -> u64 {
    DEFAULT_PROGRESS_NOTIFY_MS
}

/// The Raft node id of member `name` in the cluster of `token`.
pub fn node_id(name: &str, token: &str) -> NodeId {
    let id = xxhash_rust::xxh3::xxh3_64(&[name.as_bytes(), &[0], token.as_bytes()].concat());
    // openraft treats no id specially, but etcd reserves member id 0.
    id.max(1)
}

/// The Raft node id of a member added at runtime (`MemberAdd`, then
/// started with `--initial-cluster-state existing`): derived from its
/// peer URLs, the only identity a MemberAdd request carries, as in etcd.
pub fn added_member_id(peer_urls: &[String], token: &str) -> NodeId {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let mut bytes = Vec::new();
    for u in &urls {
        bytes.extend_from_slice(u.as_bytes());
        bytes.push(0);
    }
    bytes.extend_from_slice(b"added");
    bytes.push(0);
    bytes.extend_from_slice(token.as_bytes());
    xxhash_rust::xxh3::xxh3_64(&bytes).max(1)
}

/// The cluster id of the cluster of `token`.
pub fn cluster_id(token: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(&[b"sett-cluster".as_slice(), &[0], token.as_bytes()].concat())
}

/// Parses and normalizes one URL (`http://host:port` or
/// `https://host:port`).
pub fn parse_url(flag: &'static str, s: &str) -> Result<String, ConfigError> {
    let u = url::Url::parse(s.trim()).map_err(|e| invalid(flag, format!("{s:?}: {e}")))?;
    let scheme = match u.scheme() {
        s @ ("http" | "https") => s,
        other => {
            return Err(invalid(
                flag,
                format!("{s:?}: URL scheme must be http or https, not {other:?}"),
            ))
        }
    };
    let host = u
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| invalid(flag, format!("{s:?}: URL has no host")))?;
    let port = u
        .port()
        .ok_or_else(|| invalid(flag, format!("{s:?}: URL must name a port")))?;
    if !(u.path().is_empty() || u.path() == "/") || u.query().is_some() {
        return Err(invalid(
            flag,
            format!("{s:?}: URL must not have a path or query"),
        ));
    }
    Ok(format!("{scheme}://{host}:{port}"))
}

/// Parses a comma-separated URL list (at least one).
pub fn parse_urls(flag: &'static str, s: &str) -> Result<Vec<String>, ConfigError> {
    let urls = s
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| parse_url(flag, p))
        .collect::<Result<Vec<_>, _>>()?;
    if urls.is_empty() {
        return Err(invalid(flag, "no URL given"));
    }
    Ok(urls)
}

/// Parses `--initial-cluster` (`name=url,...`; a name may repeat to give
/// a member several URLs) into name → URLs.
pub fn parse_initial_cluster(s: &str) -> Result<BTreeMap<String, Vec<String>>, ConfigError> {
    const FLAG: &str = "--initial-cluster";
    let mut members: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, u) = part
            .split_once('=')
            .ok_or_else(|| invalid(FLAG, format!("{part:?} is not name=url")))?;
        if name.is_empty() {
            return Err(invalid(FLAG, format!("{part:?} has an empty name")));
        }
        let u = parse_url(FLAG, u)?;
        if !seen.insert(u.clone()) {
            return Err(invalid(FLAG, format!("URL {u} appears more than once")));
        }
        members.entry(name.to_owned()).or_default().push(u);
    }
    if members.is_empty() {
        return Err(invalid(FLAG, "no member given"));
    }
    Ok(members)
}

fn same_set(a: &[String], b: &[String]) -> bool {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort();
    b.sort();
    a == b
}

impl Flags {
    /// Resolves the flags into a member configuration: from
    /// `<data-dir>/member.json` when it exists (flags override URLs,
    /// timeouts and limits), else from the flags and etcd's defaults.
    /// Validates the result.
    pub fn resolve(&self) -> Result<MemberConfig, ConfigError> {
        let name_flag = self.name.clone();
        let data_dir = match &self.data_dir {
            Some(d) => d.clone(),
            None => PathBuf::from(format!(
                "{}.sett",
                name_flag.as_deref().unwrap_or(DEFAULT_NAME)
            )),
        };
        let mut cfg = match MemberConfig::load(&data_dir)? {
            Some(stored) => {
                if let Some(n) = &name_flag {
                    if *n != stored.name {
                        return Err(ConfigError::Conflict(format!(
                            "--name {n:?} does not match the data directory {}, which belongs to member {:?}",
                            data_dir.display(),
                            stored.name
                        )));
                    }
                }
                if self.initial_cluster.is_some() || self.initial_cluster_token.is_some() {
                    tracing::warn!(
                        "the data directory is initialized; ignoring --initial-cluster and --initial-cluster-token"
                    );
                }
                stored
            }
            None => self.fresh()?,
        };
        cfg.data_dir = data_dir;
        self.override_runtime(&mut cfg)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The configuration of a member without a data directory yet.
    fn fresh(&self) -> Result<MemberConfig, ConfigError> {
        let name = self.name.clone().unwrap_or_else(|| DEFAULT_NAME.into());
        if name.is_empty() {
            return Err(invalid("--name", "must not be empty"));
        }
        let token = self
            .initial_cluster_token
            .clone()
            .unwrap_or_else(|| DEFAULT_CLUSTER_TOKEN.into());
        if token.is_empty() {
            return Err(invalid("--initial-cluster-token", "must not be empty"));
        }
        let advertise_peer_urls = parse_urls(
            "--initial-advertise-peer-urls",
            self.initial_advertise_peer_urls
                .as_deref()
                .unwrap_or(DEFAULT_PEER_URL),
        )?;
        let cluster = match &self.initial_cluster {
            Some(s) => parse_initial_cluster(s)?,
            None => BTreeMap::from([(name.clone(), advertise_peer_urls.clone())]),
        };
        let Some(own_urls) = cluster.get(&name) else {
            return Err(ConfigError::Conflict(format!(
                "couldn't find local name {name:?} in the initial cluster configuration"
            )));
        };
        if !same_set(own_urls, &advertise_peer_urls) {
            return Err(ConfigError::Conflict(format!(
                "--initial-cluster has {name}={} but missing from --initial-advertise-peer-urls={}",
                own_urls.join(","),
                advertise_peer_urls.join(",")
            )));
        }
        let advertise_client_urls = parse_urls(
            "--advertise-client-urls",
            self.advertise_client_urls
                .as_deref()
                .unwrap_or(DEFAULT_CLIENT_URL),
        )?;
        let state = self.initial_cluster_state.unwrap_or(ClusterState::New);
        let own_id = match state {
            ClusterState::New => node_id(&name, &token),
            // Added at runtime by MemberAdd, which knows only the peer URLs.
            ClusterState::Existing => added_member_id(&advertise_peer_urls, &token),
        };
        let mut initial_members = BTreeMap::new();
        for (member, urls) in &cluster {
            let id = if *member == name {
                own_id
            } else {
                node_id(member, &token)
            };
            let node = SettNode {
                name: member.clone(),
                peer_urls: urls.clone(),
                client_urls: if *member == name {
                    advertise_client_urls.clone()
                } else {
                    Vec::new()
                },
            };
            if let Some(other) = initial_members.insert(id, node) {
                return Err(ConfigError::Conflict(format!(
                    "members {:?} and {member:?} hash to the same id; rename one",
                    other.name
                )));
            }
        }
        Ok(MemberConfig {
            node_id: own_id,
            cluster_id: cluster_id(&token),
            name,
            data_dir: PathBuf::new(),
            cluster_token: token,
            initial_cluster_state: self.initial_cluster_state.unwrap_or(ClusterState::New),
            initial_members,
            listen_client_urls: parse_urls("--listen-client-urls", DEFAULT_CLIENT_URL)?,
            advertise_client_urls,
            listen_peer_urls: parse_urls("--listen-peer-urls", DEFAULT_PEER_URL)?,
            advertise_peer_urls,
            heartbeat_interval_ms: DEFAULT_HEARTBEAT_MS,
            election_timeout_ms: DEFAULT_ELECTION_MS,
            snapshot_count: DEFAULT_SNAPSHOT_COUNT,
            snapshot_catchup_entries: DEFAULT_SNAPSHOT_CATCHUP_ENTRIES,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            quota_backend_bytes: DEFAULT_QUOTA_BACKEND_BYTES,
            auto_compaction_mode: AutoCompactionMode::Periodic,
            auto_compaction_retention: "0".into(),
            log_level: LogLevel::Info,
            watch_progress_notify_interval_ms: DEFAULT_PROGRESS_NOTIFY_MS,
            auth_token_ttl_secs: DEFAULT_AUTH_TOKEN_TTL_SECS,
            bcrypt_cost: DEFAULT_BCRYPT_COST,
            listen_metrics_urls: Vec::new(),
            log_format: LogFormat::Console,
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            client_tls: TlsFiles::default(),
            peer_tls: TlsFiles::default(),
        })
    }

    /// Applies the flags that may change between starts.
    fn override_runtime(&self, cfg: &mut MemberConfig) -> Result<(), ConfigError> {
        if let Some(s) = &self.listen_client_urls {
            cfg.listen_client_urls = parse_urls("--listen-client-urls", s)?;
        }
        if let Some(s) = &self.advertise_client_urls {
            cfg.advertise_client_urls = parse_urls("--advertise-client-urls", s)?;
        }
        if let Some(s) = &self.listen_peer_urls {
            cfg.listen_peer_urls = parse_urls("--listen-peer-urls", s)?;
        }
        if let Some(v) = self.heartbeat_interval {
            cfg.heartbeat_interval_ms = v;
        }
        if let Some(v) = self.election_timeout {
            cfg.election_timeout_ms = v;
        }
        if let Some(v) = self.snapshot_count {
            cfg.snapshot_count = v;
        }
        if let Some(v) = self.experimental_snapshot_catchup_entries {
            cfg.snapshot_catchup_entries = v;
        }
        if let Some(v) = self.max_request_bytes {
            cfg.max_request_bytes = v;
        }
        if let Some(v) = self.quota_backend_bytes {
            cfg.quota_backend_bytes = if v == 0 {
                DEFAULT_QUOTA_BACKEND_BYTES
            } else {
                v
            };
        }
        if let Some(v) = self.auto_compaction_mode {
            cfg.auto_compaction_mode = v;
        }
        if let Some(v) = &self.auto_compaction_retention {
            cfg.auto_compaction_retention = v.clone();
        }
        if let Some(v) = self.log_level {
            cfg.log_level = v;
        }
        if let Some(s) = &self.experimental_watch_progress_notify_interval {
            let secs = parse_retention_secs(s)
                .filter(|v| *v > 0.0)
                .ok_or_else(|| {
                    invalid(
                        "--experimental-watch-progress-notify-interval",
                        format!("{s:?} is not a positive duration (like 10m, 30s)"),
                    )
                })?;
            cfg.watch_progress_notify_interval_ms = (secs * 1000.0).ceil() as u64;
        }
        if let Some(t) = &self.auth_token {
            // etcd also accepts options after a comma (`simple,...`).
            if t.split(',').next() != Some("simple") {
                return Err(invalid(
                    "--auth-token",
                    format!("{t:?}: only simple tokens are supported"),
                ));
            }
        }
        if let Some(v) = self.auth_token_ttl {
            if v == 0 {
                return Err(invalid("--auth-token-ttl", "must be positive"));
            }
            cfg.auth_token_ttl_secs = v;
        }
        if let Some(v) = self.bcrypt_cost {
            if !(bcrypt_cost_min()..=31).contains(&v) {
                return Err(invalid(
                    "--bcrypt-cost",
                    format!("{v} is outside {}..=31", bcrypt_cost_min()),
                ));
            }
            cfg.bcrypt_cost = v;
        }
        if let Some(s) = &self.listen_metrics_urls {
            cfg.listen_metrics_urls = if s.trim().is_empty() {
                Vec::new()
            } else {
                parse_urls("--listen-metrics-urls", s)?
            };
        }
        if let Some(v) = self.log_format {
            cfg.log_format = v;
        }
        if let Some(v) = self.max_concurrent_streams {
            cfg.max_concurrent_streams = v;
        }
        override_tls(
            &mut cfg.client_tls,
            CLIENT_TLS_FLAGS,
            self.cert_file.as_ref(),
            self.key_file.as_ref(),
            self.client_cert_auth,
            self.trusted_ca_file.as_ref(),
        )?;
        override_tls(
            &mut cfg.peer_tls,
            PEER_TLS_FLAGS,
            self.peer_cert_file.as_ref(),
            self.peer_key_file.as_ref(),
            self.peer_client_cert_auth,
            self.peer_trusted_ca_file.as_ref(),
        )?;
        Ok(())
    }
}

/// The lowest bcrypt cost accepted.
fn bcrypt_cost_min() -> u32 {
    4
}

/// Parses a periodic retention: `<n>h`, `<n>m`, `<n>s` or a number of
/// hours (fractions allowed, as in etcd); returns seconds.
pub fn parse_retention_secs(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().last()? {
        (i, 'h') => (&s[..i], 3600.0),
        (i, 'm') => (&s[..i], 60.0),
        (i, 's') => (&s[..i], 1.0),
        _ => (s, 3600.0),
    };
    let v: f64 = num.parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some(v * unit)
}

impl MemberConfig {
    /// Checks the invariants between fields.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.heartbeat_interval_ms == 0 {
            return Err(invalid("--heartbeat-interval", "must be positive"));
        }
        if self.election_timeout_ms < 5 * self.heartbeat_interval_ms {
            return Err(ConfigError::Conflict(format!(
                "--election-timeout[{}ms] should be at least as 5 times as --heartbeat-interval[{}ms]",
                self.election_timeout_ms, self.heartbeat_interval_ms
            )));
        }
        if self.election_timeout_ms > ELECTION_MS_MAX {
            return Err(invalid(
                "--election-timeout",
                format!(
                    "{}ms is too long, and should be set less than 50 seconds",
                    self.election_timeout_ms
                ),
            ));
        }
        if self.snapshot_count == 0 {
            return Err(invalid("--snapshot-count", "must be positive"));
        }
        if self.max_request_bytes == 0 {
            return Err(invalid("--max-request-bytes", "must be positive"));
        }
        let retention_ok = match self.auto_compaction_mode {
            AutoCompactionMode::Periodic => {
                parse_retention_secs(&self.auto_compaction_retention).is_some()
            }
            AutoCompactionMode::Revision => {
                self.auto_compaction_retention.trim().parse::<u64>().is_ok()
            }
        };
        if !retention_ok {
            return Err(invalid(
                "--auto-compaction-retention",
                format!(
                    "{:?} is not valid for --auto-compaction-mode {:?}",
                    self.auto_compaction_retention, self.auto_compaction_mode
                ),
            ));
        }
        if self.max_concurrent_streams == 0 {
            return Err(invalid(
                "--max-concurrent-streams",
                "must be positive (a client could open no call at all)",
            ));
        }
        if !self.initial_members.contains_key(&self.node_id) {
            return Err(ConfigError::Conflict(format!(
                "couldn't find local name {:?} in the initial cluster configuration",
                self.name
            )));
        }
        let peer_urls: Vec<&String> = self
            .initial_members
            .values()
            .flat_map(|m| &m.peer_urls)
            .chain(&self.advertise_peer_urls)
            .collect();
        validate_tls(
            &self.peer_tls,
            PEER_TLS_FLAGS,
            &self.listen_peer_urls,
            &peer_urls,
        )?;
        // Other members' client URLs are verified with --trusted-ca-file,
        // else --peer-trusted-ca-file (see `tls::client_url_dial_config`):
        // server-only TLS on the client side stays possible.
        validate_tls(
            &self.client_tls,
            CLIENT_TLS_FLAGS,
            &self.listen_client_urls,
            &[],
        )?;
        Ok(())
    }

    /// This member as published to the cluster.
    pub fn own_node(&self) -> SettNode {
        SettNode {
            name: self.name.clone(),
            peer_urls: self.advertise_peer_urls.clone(),
            client_urls: self.advertise_client_urls.clone(),
        }
    }

    /// Reads `<data_dir>/member.json`, if there is one.
    pub fn load(data_dir: &Path) -> Result<Option<MemberConfig>, ConfigError> {
        let path = data_dir.join(MEMBER_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(ConfigError::Io { path, source }),
        };
        let mut cfg: MemberConfig = serde_json::from_slice(&bytes)
            .map_err(|source| ConfigError::Decode { path, source })?;
        cfg.data_dir = data_dir.to_owned();
        Ok(Some(cfg))
    }

    /// Writes `<data_dir>/member.json` durably (temporary file, fsync,
    /// rename, directory fsync), creating the directory if needed.
    pub fn save(&self) -> Result<(), ConfigError> {
        let dir = &self.data_dir;
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| ConfigError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let tmp = dir.join(format!("{MEMBER_FILE}.tmp"));
        let bytes = serde_json::to_vec_pretty(self).expect("config serializes");
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&bytes)
            .and_then(|()| f.sync_all())
            .map_err(io(&tmp))?;
        drop(f);
        let path = dir.join(MEMBER_FILE);
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
        Ok(())
    }
}
