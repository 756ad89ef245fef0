//! The `sett` binary: runs one cluster member (`sett [flags]`), or a local
//! three-member cluster for trying things out (`sett playground`).
//!
//! A member serves the Raft transport on `--listen-peer-urls` and the etcd
//! v3 API (KV, Maintenance.Status, Cluster.MemberList) on
//! `--listen-client-urls`.

use clap::{Args, Parser, Subcommand};
use sett_server::config::{Flags, LogFormat, LogLevel};
use sett_server::node::Node;
use sett_server::raft::MvccApplier;
use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

const ABOUT: &str = "A Raft-replicated key-value service speaking the etcd v3 API";
const LONG_ABOUT: &str = "\
Runs one member of a sett cluster. Flags mirror etcd's; each can also be \
given as a SETT_* environment variable (--initial-cluster = SETT_INITIAL_CLUSTER). \
A restart needs only --data-dir: the resolved configuration is kept in \
<data-dir>/member.json.

A member serves the Raft transport to other members on --listen-peer-urls \
and the etcd v3 API to clients (etcdctl, etcd client libraries) on \
--listen-client-urls.";

#[derive(Debug, Parser)]
#[command(
    name = "sett",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Parses and validates the flags and SETT_* variables as a start
    /// would, prints the resolved configuration as JSON and exits: 0 when
    /// it is valid, 2 with the error a start would give when not. Binds
    /// nothing and writes nothing (an existing <data-dir>/member.json is
    /// read, as at a restart).
    #[arg(long)]
    config_check: bool,
    #[command(flatten)]
    flags: Flags,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs a three-member cluster of this binary on 127.0.0.1 (free
    /// ports), prints its URLs and waits; Ctrl-C stops it. Running it again
    /// with the same --dir restarts the same cluster.
    Playground(PlaygroundArgs),
}

#[derive(Debug, Args)]
struct PlaygroundArgs {
    /// Directory for the members' data [default: a new directory under
    /// the system's temporary directory].
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Logs to stderr at `level`, in `format`; openraft's own logs only from
/// warnings up unless `level` is debug (its info logs dump whole Raft
/// states). `RUST_LOG` overrides both levels.
fn init_tracing(level: LogLevel, format: LogFormat) {
    use std::io::IsTerminal;
    let openraft = if level == LogLevel::Debug {
        "debug"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{},openraft={openraft}", level.as_str()))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Console => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        // One object per line with the message and the event's fields at
        // the top level (`level`, `message`, `target`, ...).
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_ansi(false)
            .try_init(),
    };
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// SIGINT (Ctrl-C) and SIGTERM, caught from creation on: a signal that
/// arrives while the node is still starting is not lost.
struct StopSignals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Installs the handlers (inside a Tokio runtime).
    fn install() -> StopSignals {
        use tokio::signal::unix::{signal, SignalKind};
        StopSignals {
            int: signal(SignalKind::interrupt()).expect("SIGINT handler"),
            term: signal(SignalKind::terminate()).expect("SIGTERM handler"),
        }
    }

    /// Waits for either signal.
    async fn wait(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

fn run_member(flags: &Flags) -> ExitCode {
    let cfg = match flags.resolve() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sett: {e}");
            return ExitCode::from(2);
        }
    };
    let log_format = cfg.log_format;
    init_tracing(cfg.log_level, log_format);
    let rt = runtime();
    let result = rt.block_on(async {
        let mut signals = StopSignals::install();
        let node = Node::start(cfg, |dir| MvccApplier::open(dir)).await?;
        tokio::select! {
            () = signals.wait() => tracing::info!("stopping"),
            () = node.removed() => {
                tracing::warn!("this member has been removed from the cluster; stopping");
            }
        }
        node.shutdown().await
    });
    // Blocking work still running (e.g. a snapshot file written for a
    // client that has gone) does not hold the exit up.
    rt.shutdown_timeout(RUNTIME_SHUTDOWN_WAIT);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // JSON logs stay one object per line to the end.
            match log_format {
                LogFormat::Json => tracing::error!(error = %e, "member failed"),
                LogFormat::Console => eprintln!("sett: {e}"),
            }
            ExitCode::FAILURE
        }
    }
}

/// How long the runtime waits for blocking work once the member has
/// stopped.
const RUNTIME_SHUTDOWN_WAIT: Duration = Duration::from_secs(1);

/// Members of the playground.
const PLAYGROUND_MEMBERS: usize = 3;
/// How long stopping members may take before they are killed.
const PLAYGROUND_STOP_WAIT: Duration = Duration::from_secs(15);
/// How often the playground checks that its members still run.
const PLAYGROUND_POLL: Duration = Duration::from_millis(500);
/// The port assignment, kept so a second run restarts the same cluster.
const PLAYGROUND_PORTS_FILE: &str = "playground-ports.json";

/// Client and peer port per member name.
type Ports = BTreeMap<String, (u16, u16)>;

fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    // All held at once so they differ; released just before the members
    // bind them.
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

fn playground_ports(dir: &Path) -> Result<Ports, String> {
    let path = dir.join(PLAYGROUND_PORTS_FILE);
    if let Ok(bytes) = std::fs::read(&path) {
        return serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()));
    }
    let ports = free_ports(2 * PLAYGROUND_MEMBERS).map_err(|e| format!("free ports: {e}"))?;
    let map: Ports = (0..PLAYGROUND_MEMBERS)
        .map(|i| (format!("m{}", i + 1), (ports[2 * i], ports[2 * i + 1])))
        .collect();
    std::fs::write(
        &path,
        serde_json::to_vec_pretty(&map).expect("ports encode"),
    )
    .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(map)
}

fn run_playground(args: &PlaygroundArgs) -> ExitCode {
    match playground(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sett playground: {e}");
            ExitCode::FAILURE
        }
    }
}

fn playground(args: &PlaygroundArgs) -> Result<ExitCode, String> {
    init_tracing(LogLevel::Info, LogFormat::Console);
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("sett-playground-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let ports = playground_ports(&dir)?;
    let url = |port: u16| format!("http://127.0.0.1:{port}");
    let initial_cluster = ports
        .iter()
        .map(|(name, (_, peer))| format!("{name}={}", url(*peer)))
        .collect::<Vec<_>>()
        .join(",");
    let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
    runtime().block_on(async {
        let mut signals = StopSignals::install();
        let mut children = Vec::new();
        for (name, (client, peer)) in &ports {
            let mut cmd = tokio::process::Command::new(&exe);
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("SETT_") {
                    cmd.env_remove(k);
                }
            }
            cmd.arg("--name")
                .arg(name)
                .arg("--data-dir")
                .arg(dir.join(name))
                .arg("--listen-client-urls")
                .arg(url(*client))
                .arg("--advertise-client-urls")
                .arg(url(*client))
                .arg("--listen-peer-urls")
                .arg(url(*peer))
                .arg("--initial-advertise-peer-urls")
                .arg(url(*peer))
                .arg("--initial-cluster")
                .arg(&initial_cluster)
                .arg("--initial-cluster-token")
                .arg("sett-playground")
                .kill_on_drop(true);
            let child = cmd.spawn().map_err(|e| format!("spawn {name}: {e}"))?;
            children.push((name.clone(), child));
        }
        println!("sett playground: {} members, data in {}", ports.len(), dir.display());
        println!("{:<6} {:<26} {:<26}", "name", "client URL", "peer URL");
        for (name, (client, peer)) in &ports {
            println!("{name:<6} {:<26} {:<26}", url(*client), url(*peer));
        }
        let endpoints = ports
            .values()
            .map(|(client, _)| url(*client))
            .collect::<Vec<_>>()
            .join(",");
        println!("Try: etcdctl --endpoints={endpoints} put greeting hello");
        println!("Ctrl-C stops the cluster; `sett playground --dir {}` restarts it.", dir.display());

        let exited = async {
            // Ends when any member exits on its own.
            let mut poll = tokio::time::interval(PLAYGROUND_POLL);
            loop {
                poll.tick().await;
                for (name, child) in &mut children {
                    if !matches!(child.try_wait(), Ok(None)) {
                        return name.clone();
                    }
                }
            }
        };
        tokio::select! {
            _ = signals.wait() => {}
            name = exited => eprintln!("sett playground: member {name} exited; stopping the others"),
        }
        let mut clean = true;
        for (name, child) in &mut children {
            if let Some(pid) = child.id() {
                let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
                // SAFETY: kill(2) with a pid of our own live child and a
                // valid signal number has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            match tokio::time::timeout(PLAYGROUND_STOP_WAIT, child.wait()).await {
                // A member stopped by SIGTERM before it installed its
                // handler had not opened its storage yet.
                Ok(Ok(status))
                    if status.success() || status.signal() == Some(libc::SIGTERM) => {}
                Ok(Ok(status)) => {
                    eprintln!("sett playground: {name} exited with {status}");
                    clean = false;
                }
                Ok(Err(e)) => {
                    eprintln!("sett playground: {name}: {e}");
                    clean = false;
                }
                Err(_) => {
                    eprintln!("sett playground: {name} did not stop; killing it");
                    let _ = child.kill().await;
                    clean = false;
                }
            }
        }
        Ok(if clean { ExitCode::SUCCESS } else { ExitCode::FAILURE })
    })
}

/// `sett --config-check`: everything a start checks before it binds its
/// listeners (the flags, member.json, openraft's configuration, that every
/// listen URL's host resolves), then the resolved configuration on stdout.
fn config_check(flags: &Flags) -> ExitCode {
    let checked = flags.resolve().map_err(|e| e.to_string()).and_then(|cfg| {
        sett_server::node::raft_config(&cfg).map_err(|e| e.to_string())?;
        let listen = cfg.listen_client_urls.iter().chain(&cfg.listen_peer_urls);
        for url in listen.chain(&cfg.listen_metrics_urls) {
            let hostport = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"))
                .unwrap_or(url);
            let resolved = std::net::ToSocketAddrs::to_socket_addrs(hostport)
                .map_err(|e| format!("cannot listen on {url}: {e}"))?;
            if resolved.count() == 0 {
                return Err(format!(
                    "cannot listen on {url}: host resolves to no address"
                ));
            }
        }
        Ok(cfg)
    });
    match checked {
        Ok(cfg) => {
            let mut out = serde_json::to_value(&cfg).expect("config serializes");
            out["data_dir"] = cfg.data_dir.display().to_string().into();
            println!(
                "{}",
                serde_json::to_string_pretty(&out).expect("config serializes")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sett: {e}");
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Playground(args)) => run_playground(args),
        None if cli.config_check => config_check(&cli.flags),
        None => run_member(&cli.flags),
    }
}
