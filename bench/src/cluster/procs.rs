//! Child processes of `sett-bench cluster`: a three-member etcd or sett
//! cluster on 127.0.0.1, its health check through etcdctl, and the
//! clean-up that leaves no process behind.
//!
//! Every child is spawned with `PR_SET_PDEATHSIG = SIGKILL`, so the kernel
//! kills it if this process dies in any way (SIGKILL included). SIGINT,
//! SIGTERM and SIGHUP only raise a flag ([`interrupted`]) that every wait
//! here polls; the waiting code then returns an error, and the `Drop` of
//! [`Servers`] kills and reaps the members while the stack unwinds (also
//! on a panic).

use anyhow::{bail, Context, Result};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::System;

/// Set by the signal handler.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Granularity of every polling wait.
const POLL: Duration = Duration::from_millis(50);
/// Bound on a new cluster becoming healthy.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// Bound on one `etcdctl endpoint health` call.
const HEALTH_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on a member exiting after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Bytes of a member's log shown in error messages.
const LOG_TAIL_BYTES: u64 = 3000;

extern "C" fn on_signal(_signal: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Makes SIGINT, SIGTERM and SIGHUP set the [`interrupted`] flag instead
/// of ending the process, so that the run can stop its children and
/// remove its directory first.
pub fn install_signal_handlers() {
    let handler = on_signal as extern "C" fn(libc::c_int);
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe; signal(2) has no other preconditions.
        unsafe {
            libc::signal(signal, handler as libc::sighandler_t);
        }
    }
}

/// Whether a termination signal arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// An error if a termination signal arrived.
pub fn check_interrupted() -> Result<()> {
    if interrupted() {
        bail!("interrupted");
    }
    Ok(())
}

/// Sleeps for `d`, returning early with an error on a termination signal.
pub fn sleep(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    loop {
        check_interrupted()?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep(POLL.min(end - now));
    }
}

/// Spawns `cmd` as a child that the kernel kills when this process dies.
pub fn spawn_guarded(cmd: &mut Command) -> std::io::Result<Child> {
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec and calls
    // only prctl(2), getppid(2) and _exit(2), which are async-signal-safe;
    // it allocates nothing and touches no lock.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent died before the prctl took effect.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Waits for `child` to exit, for at most `timeout`; kills and reaps it on
/// timeout or on a termination signal (then returns an error). `None`
/// means it ran over the timeout.
pub fn wait_bounded(child: &mut Child, timeout: Duration) -> Result<Option<ExitStatus>> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if interrupted() {
            kill_and_reap(child);
            bail!("interrupted");
        }
        if Instant::now() >= end {
            kill_and_reap(child);
            return Ok(None);
        }
        std::thread::sleep(POLL);
    }
}

/// SIGKILLs `child` (if still running) and reaps it.
pub fn kill_and_reap(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Sends `signal` to a running child.
fn send_signal(child: &Child, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) only sends a signal; the pid is our own unreaped
        // child, so it cannot have been reused by another process.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// `n` distinct free TCP ports on 127.0.0.1 (held together while chosen,
/// then released for the members to bind).
fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .context("choosing free ports on 127.0.0.1")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// The end of a log file, for error messages.
pub fn log_tail(path: &Path) -> String {
    let read = || -> std::io::Result<String> {
        let mut f = File::open(path)?;
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    match read() {
        Ok(s) => s,
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// How to start one system's cluster.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Which server.
    pub system: System,
    /// Its binary.
    pub binary: PathBuf,
    /// etcdctl 3.4, for the health check.
    pub etcdctl: PathBuf,
    /// Number of members.
    pub members: usize,
    /// `--heartbeat-interval`, milliseconds.
    pub heartbeat_ms: u64,
    /// `--election-timeout`, milliseconds.
    pub election_ms: u64,
    /// `--quota-backend-bytes`.
    pub quota_bytes: u64,
}

/// One member process.
#[derive(Debug)]
struct Member {
    name: String,
    client_url: String,
    log_path: PathBuf,
    child: Option<Child>,
}

/// A running cluster; dropping it kills and reaps every member.
#[derive(Debug)]
pub struct Servers {
    system: System,
    members: Vec<Member>,
}

impl Servers {
    /// Starts the cluster with its data and logs under `dir` (which must
    /// exist) and waits until `etcdctl endpoint health` passes on every
    /// member.
    pub fn start(spec: &ClusterSpec, dir: &Path) -> Result<Servers> {
        let n = spec.members;
        let ports = free_ports(2 * n)?;
        let prefix = match spec.system {
            System::Etcd => "e",
            System::Sett => "s",
        };
        let names: Vec<String> = (1..=n).map(|i| format!("{prefix}{i}")).collect();
        let client_url = |i: usize| format!("http://127.0.0.1:{}", ports[2 * i]);
        let peer_url = |i: usize| format!("http://127.0.0.1:{}", ports[2 * i + 1]);
        let initial_cluster = names
            .iter()
            .enumerate()
            .map(|(i, name)| format!("{name}={}", peer_url(i)))
            .collect::<Vec<_>>()
            .join(",");
        let mut servers = Servers {
            system: spec.system,
            members: Vec::with_capacity(n),
        };
        for (i, name) in names.iter().enumerate() {
            let mut args = vec![
                format!("--name={name}"),
                format!("--data-dir={}", dir.join(name).display()),
                format!("--listen-client-urls={}", client_url(i)),
                format!("--advertise-client-urls={}", client_url(i)),
                format!("--listen-peer-urls={}", peer_url(i)),
                format!("--initial-advertise-peer-urls={}", peer_url(i)),
                format!("--initial-cluster={initial_cluster}"),
                format!("--initial-cluster-token=sett-bench-{}", spec.system.name()),
                "--initial-cluster-state=new".to_owned(),
                format!("--heartbeat-interval={}", spec.heartbeat_ms),
                format!("--election-timeout={}", spec.election_ms),
                format!("--quota-backend-bytes={}", spec.quota_bytes),
            ];
            if spec.system == System::Etcd {
                args.push("--logger=zap".to_owned());
                args.push("--log-outputs=stderr".to_owned());
            }
            let log_path = dir.join(format!("{name}.log"));
            let log = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .with_context(|| format!("creating {}", log_path.display()))?;
            let mut cmd = Command::new(&spec.binary);
            cmd.args(&args)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log);
            // A member reads its flags; keep the caller's SETT_*/ETCD_*
            // environment from changing them.
            for (key, _) in std::env::vars_os() {
                let k = key.to_string_lossy();
                if k.starts_with("SETT_") || k.starts_with("ETCD_") {
                    cmd.env_remove(&key);
                }
            }
            let child = spawn_guarded(&mut cmd)
                .with_context(|| format!("starting {}", spec.binary.display()))?;
            servers.members.push(Member {
                name: name.clone(),
                client_url: client_url(i),
                log_path,
                child: Some(child),
            });
        }
        servers.wait_healthy(&spec.etcdctl)?;
        Ok(servers)
    }

    /// The members' client URLs.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// An error naming the first member that has exited, with the end of
    /// its log.
    pub fn check_alive(&mut self) -> Result<()> {
        for m in &mut self.members {
            let Some(child) = m.child.as_mut() else {
                bail!("{} member {} is not running", self.system.name(), m.name);
            };
            if let Some(status) = child.try_wait()? {
                m.child = None;
                bail!(
                    "{} member {} exited ({status}); end of {}:\n{}",
                    self.system.name(),
                    m.name,
                    m.log_path.display(),
                    log_tail(&m.log_path)
                );
            }
        }
        Ok(())
    }

    /// Polls `etcdctl endpoint health` over all members until it passes.
    fn wait_healthy(&mut self, etcdctl: &Path) -> Result<()> {
        let start = Instant::now();
        let endpoints = self.endpoints().join(",");
        loop {
            self.check_alive()?;
            let last = match health(etcdctl, &endpoints)? {
                Ok(()) => return Ok(()),
                Err(msg) => msg,
            };
            if start.elapsed() > START_TIMEOUT {
                let logs: String = self
                    .members
                    .iter()
                    .map(|m| format!("--- {} ---\n{}\n", m.name, log_tail(&m.log_path)))
                    .collect();
                bail!(
                    "the {} cluster was not healthy after {START_TIMEOUT:?}; last etcdctl \
                     output:\n{last}\n{logs}",
                    self.system.name()
                );
            }
            sleep(Duration::from_millis(250))?;
        }
    }

    /// Stops every member: SIGTERM, then SIGKILL after a bound; reaps all.
    pub fn stop(mut self) {
        for m in &self.members {
            if let Some(child) = &m.child {
                send_signal(child, libc::SIGTERM);
            }
        }
        let end = Instant::now() + STOP_TIMEOUT;
        for m in &mut self.members {
            if let Some(mut child) = m.child.take() {
                loop {
                    match child.try_wait() {
                        Ok(None) if Instant::now() < end && !interrupted() => {
                            std::thread::sleep(POLL)
                        }
                        Ok(Some(_)) => break,
                        _ => {
                            kill_and_reap(&mut child);
                            break;
                        }
                    }
                }
            }
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut child) = m.child.take() {
                kill_and_reap(&mut child);
            }
        }
    }
}

/// One `ETCDCTL_API=3 etcdctl --endpoints=... endpoint health`: `Ok(Ok)`
/// when every endpoint is healthy, `Ok(Err(output))` when not (yet).
fn health(etcdctl: &Path, endpoints: &str) -> Result<std::result::Result<(), String>> {
    let mut cmd = Command::new(etcdctl);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ETCDCTL_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .args([
            "--dial-timeout=2s",
            "--command-timeout=3s",
            "endpoint",
            "health",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child =
        spawn_guarded(&mut cmd).with_context(|| format!("running {}", etcdctl.display()))?;
    // The output is a few lines: it fits the pipe buffers, so reading after
    // the exit cannot block the child.
    let status = wait_bounded(&mut child, HEALTH_CALL_TIMEOUT)?;
    let mut out = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut out);
    }
    Ok(match status {
        Some(s) if s.success() => Ok(()),
        Some(s) => Err(format!("{s}: {}", out.trim())),
        None => Err(format!("ran over {HEALTH_CALL_TIMEOUT:?}")),
    })
}
