//! `settctl`: the command-line tool for sett.
//!
//! ```text
//! settctl engine info    --dir DIR
//! settctl engine check   --dir DIR
//! settctl engine backup  --dir DIR --out FILE [--since TS] [--workers N]
//! settctl engine restore --dir NEWDIR --in FILE [--in FILE ...]
//! settctl engine stream  --dir DIR [--prefix P] [--workers N] [--all-versions] [--out FILE]
//! settctl engine gc      --dir DIR [--ratio 0.5]
//! settctl snapshot status FILE
//! settctl snapshot restore FILE --name N --data-dir DIR --initial-cluster ... [sett flags]
//! settctl bench put|range|txn-put|txn-mixed|watch-latency|native-txn [options]
//!
//! settctl [--endpoints=H:P,...] [-w simple|json|table] COMMAND   (etcdctl 3.4's syntax)
//!   put KEY [VALUE] | get KEY [END] | del KEY [END] | txn [-i] | watch KEY [END]
//!   lease grant|revoke|timetolive|list|keep-alive | member list|add|remove|promote
//!   endpoint status|health|hashkv [--cluster] | snapshot save FILE
//!   compaction REV [--physical] | defrag | alarm list|disarm
//!   auth enable|disable|status | user add|get|list|delete|passwd|grant-role|revoke-role
//!   role add|get|list|delete|grant-permission|revoke-permission
//!   (global --user NAME[:PASSWORD] [--password P] to authenticate)
//! ```
//!
//! The `engine` tools work on a database directory directly (the process
//! must be the only writer: stop the server first; `info`, `check`,
//! `backup` and `stream` open it read-only and may run beside other
//! readers). Errors go to stderr with exit code 1; progress bars go to
//! stderr when it is a terminal.

mod auth_cmd;
mod bench;
mod conn;
mod endpoint;
mod engine;
mod exit;
mod kv;
mod lease;
mod maint;
mod member;
mod output;
mod progress;
mod snapshot;
mod txn_cmd;
mod watch;

use clap::{Args, Parser, Subcommand};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(name = "settctl", version, about = "Command-line tool for sett")]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every command that talks to a cluster shares (etcdctl's
/// global flags).
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Comma-separated client URLs (`http://host:port` or `host:port`).
    #[arg(
        long,
        global = true,
        env = "SETT_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    pub endpoints: Vec<String>,
    /// Output format: simple, json or table.
    #[arg(
        short = 'w',
        long = "write-out",
        global = true,
        default_value = "simple"
    )]
    pub write_out: String,
    /// Time allowed to connect.
    #[arg(long, global = true, default_value = "2s", value_parser = parse_duration)]
    pub dial_timeout: Duration,
    /// Time allowed for one command (not for watch, keep-alive or bench).
    #[arg(long, global = true, default_value = "5s", value_parser = parse_duration)]
    pub command_timeout: Duration,
    /// username[:password] for authentication.
    #[arg(long, global = true, env = "SETT_USER")]
    pub user: Option<String>,
    /// Password for authentication (if given, --user must not include
    /// one).
    #[arg(long, global = true, env = "SETT_PASSWORD")]
    pub password: Option<String>,
    /// Verify certificates of TLS-enabled secure servers using this CA
    /// bundle; `host:port` endpoints then mean `https://`.
    #[arg(
        long = "cacert",
        id = "tls_cacert",
        value_name = "FILE",
        global = true,
        env = "SETT_CACERT"
    )]
    pub cacert: Option<std::path::PathBuf>,
    /// Identify secure client using this TLS certificate file.
    #[arg(
        long = "cert",
        id = "tls_cert",
        value_name = "FILE",
        global = true,
        env = "SETT_CERT",
        requires = "tls_key"
    )]
    pub cert: Option<std::path::PathBuf>,
    /// Identify secure client using this TLS key file.
    #[arg(
        long = "key",
        id = "tls_key",
        value_name = "FILE",
        global = true,
        env = "SETT_KEY",
        requires = "tls_cert"
    )]
    pub key: Option<std::path::PathBuf>,
}

impl Global {
    /// The TLS settings of `--cacert`, `--cert` and `--key`, if any is
    /// given.
    pub fn tls(&self) -> Option<sett_client::TlsOptions> {
        if self.cacert.is_none() && self.cert.is_none() {
            return None;
        }
        let mut tls = sett_client::TlsOptions::new();
        if let Some(ca) = &self.cacert {
            tls = tls.with_ca_file(ca);
        }
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            tls = tls.with_client_cert_files(cert, key);
        }
        Some(tls)
    }
}

/// Parses `500ms`, `2s`, `1m`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("invalid duration unit in {s:?}")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("invalid duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Offline tools for a database directory: info, check, backup,
    /// restore, stream, gc.
    #[command(subcommand)]
    Engine(engine::EngineCommand),
    /// Snapshot files of a running cluster: save, status, restore.
    #[command(subcommand)]
    Snapshot(Box<snapshot::SnapshotCommand>),
    /// Load generator for etcd v3 API clusters (sett or etcd).
    Bench(Box<bench::BenchArgs>),
    /// Puts the given key into the store.
    Put(kv::PutArgs),
    /// Gets the key or a range of keys.
    Get(kv::GetArgs),
    /// Removes the specified key or range of keys [key, range_end).
    Del(kv::DelArgs),
    /// Txn processes all the requests in one transaction.
    Txn(txn_cmd::TxnArgs),
    /// Watches events stream on keys or prefixes.
    Watch(watch::WatchArgs),
    /// Lease related commands.
    #[command(subcommand)]
    Lease(lease::LeaseCommand),
    /// Membership related commands.
    #[command(subcommand)]
    Member(member::MemberCommand),
    /// Endpoint related commands.
    #[command(subcommand)]
    Endpoint(endpoint::EndpointCommand),
    /// Compacts the event history up to a revision.
    Compaction(kv::CompactionArgs),
    /// Defragments the storage of the members with given endpoints.
    Defrag(maint::DefragArgs),
    /// Alarm related commands.
    #[command(subcommand)]
    Alarm(maint::AlarmCommand),
    /// Enable or disable authentication.
    #[command(subcommand)]
    Auth(auth_cmd::AuthCommand),
    /// User related commands.
    #[command(subcommand)]
    User(auth_cmd::UserCommand),
    /// Role related commands.
    #[command(subcommand)]
    Role(auth_cmd::RoleCommand),
}

/// Runs a command that talks to the cluster over one shared connection.
fn cluster_command(global: &Global, command: Command) -> anyhow::Result<()> {
    let format = output::Format::parse(&global.write_out)?;
    conn::block_on(async move {
        match command {
            Command::Endpoint(cmd) => return endpoint::run(global, format, cmd).await,
            Command::Defrag(a) => return maint::defrag(global, a).await,
            _ => {}
        }
        let conn = conn::Conn::open(global).await?;
        match command {
            Command::Put(a) => kv::put(&conn, format, a).await,
            Command::Get(a) => kv::get(&conn, format, a).await,
            Command::Del(a) => kv::del(&conn, format, a).await,
            Command::Txn(a) => txn_cmd::run(&conn, format, a).await,
            Command::Watch(a) => watch::run(&conn, format, a).await,
            Command::Lease(cmd) => lease::run(&conn, format, cmd).await,
            Command::Member(cmd) => member::run(&conn, format, cmd).await,
            Command::Compaction(a) => kv::compaction(&conn, a).await,
            Command::Alarm(cmd) => maint::alarm(&conn, format, cmd).await,
            Command::Auth(cmd) => auth_cmd::auth(&conn, cmd).await,
            Command::User(cmd) => auth_cmd::user(&conn, cmd).await,
            Command::Role(cmd) => auth_cmd::role(&conn, cmd).await,
            other => anyhow::bail!("{other:?} is not a cluster command"),
        }
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Engine(cmd) => engine::run(cmd),
        Command::Snapshot(cmd) => snapshot::run(&cli.global, *cmd),
        Command::Bench(args) => bench::run(&cli.global, *args),
        other => cluster_command(&cli.global, other),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("settctl: error: {e:#}");
            ExitCode::from(exit::code_of(&e))
        }
    }
}
