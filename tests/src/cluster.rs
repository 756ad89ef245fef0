//! A cluster of real `sett` member processes on 127.0.0.1, for end-to-end
//! tests that talk to it with an etcd v3 client.
//!
//! [`Cluster::start`] picks free ports, spawns every member with etcd's
//! flags into a fresh temporary directory and waits until every member
//! answers `Maintenance.Status`, all of them name the same leader and every
//! member's `Cluster.MemberList` shows every member's name and client URL
//! (what etcd's own integration harness waits for). Each
//! member's stdout and stderr go to `<dir>/<name>.log` (append mode, so a
//! restart keeps the earlier output); [`Cluster::log_tail`] returns the end
//! of it for failure messages. A restart passes only `--data-dir`: the
//! member takes the rest of its configuration from `member.json`.
//!
//! The binary is `target/<profile>/sett`, found next to the running test
//! executable; build it first with `cargo build -p sett-server --bin sett`
//! (a `cargo test` of the whole workspace builds it). The environment
//! variable `SETT_CLUSTER_BIN` names another binary: one whose file name
//! starts with `etcd` is run as a reference etcd (etcd 3.4 flags only,
//! restarts repeat the full command line, a SIGTERM exit counts as clean),
//! which checks the tests themselves against etcd's behaviour.
//!
//! Every wait is bounded; a member that does not come up in time fails the
//! test with the tail of its log. Dropping a [`Cluster`] SIGKILLs whatever
//! still runs; the directory is removed unless the thread is panicking, in
//! which case it is kept and its path printed.
//!
//! The harness needs the dev-dependencies `etcd-client` and `tokio`, so test
//! files include it with `#[path = "../src/cluster.rs"] mod cluster;`.
//!
//! Beside [`Cluster`] it holds what the cluster test files share:
//! running scenarios one at a time ([`run_scenario`], [`serial`],
//! [`runtime`]) or as reported steps ([`step`], [`assert_steps_passed`]);
//! a member process started by the test itself ([`ExtraMember`], with
//! [`member_binary`], [`built_binary`] and [`two_free_ports`]); and small
//! client helpers ([`put`], [`put_retrying`], [`bounded`], [`rev`],
//! [`kv_rows`], [`listed_members`], [`assert_grpc_err`]).

use etcd_client::{
    Client, ConnectOptions, Error, KeyValue, MemberListResponse, ResponseHeader, StatusResponse,
};
use std::fmt;
use std::fs::OpenOptions;
use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Bound on [`Cluster::start`] waiting for every member and a leader.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on [`Cluster::leader`] and [`Cluster::wait_ready`].
pub const LEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on a member exiting after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on one Status call made by the harness.
const STATUS_TIMEOUT: Duration = Duration::from_secs(3);
/// Per-request timeout of the clients returned by [`Cluster::client`].
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Connect timeout of the clients returned by [`Cluster::client`].
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause between two polls of the cluster's state.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Lines returned by [`Cluster::log_tail`].
const LOG_TAIL_LINES: usize = 60;

/// How to start a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Number of members (3).
    pub members: usize,
    /// `--snapshot-count` (etcd's default, 100000).
    pub snapshot_count: u64,
    /// `--experimental-snapshot-catchup-entries` (etcd's default, 5000).
    pub snapshot_catchup_entries: u64,
    /// `--heartbeat-interval` in milliseconds (50).
    pub heartbeat_interval_ms: u64,
    /// `--election-timeout` in milliseconds (500).
    pub election_timeout_ms: u64,
    /// `--initial-cluster-token` ("sett-test").
    pub cluster_token: String,
    /// Further flags passed to every member at its first start.
    pub extra_args: Vec<String>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            members: 3,
            snapshot_count: 100_000,
            snapshot_catchup_entries: 5_000,
            heartbeat_interval_ms: 50,
            election_timeout_ms: 500,
            cluster_token: "sett-test".to_owned(),
            extra_args: Vec::new(),
        }
    }
}

/// Which server the binary is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    /// `sett`: restarts with `--data-dir` only, exits 0 on SIGTERM.
    Sett,
    /// A reference etcd 3.4.
    Etcd,
}

/// One member process and what is needed to restart it.
#[derive(Debug)]
struct Member {
    name: String,
    data_dir: PathBuf,
    log_path: PathBuf,
    client_port: u16,
    /// Arguments of the first start.
    first_args: Vec<String>,
    /// Raft member id, learned from Status when the cluster came up.
    id: u64,
    /// The running process, `None` while stopped or killed.
    child: Option<Child>,
    /// Whether the process is frozen by SIGSTOP ([`Cluster::pause`]).
    paused: bool,
}

/// A running cluster of member processes; see the module docs.
pub struct Cluster {
    binary: PathBuf,
    flavor: Flavor,
    members: Vec<Member>,
    /// `None` only while dropping.
    dir: Option<tempfile::TempDir>,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("binary", &self.binary)
            .field("dir", &self.dir())
            .field("members", &self.members)
            .finish()
    }
}

/// The member binary: `SETT_CLUSTER_BIN` if set, else `target/<profile>/sett`
/// next to the running test executable (the rule [`Cluster::start`] follows).
pub fn member_binary() -> PathBuf {
    locate_binary().0
}

/// The profile directory holding the built binaries (`target/<profile>`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test executable");
    // target/<profile>/deps/<test>-<hash> → target/<profile>
    exe.parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("unexpected test executable path {}", exe.display()))
        .to_path_buf()
}

/// The binary `name` built into the profile directory; panics, naming the
/// build command, when it is missing.
pub fn built_binary(name: &str) -> PathBuf {
    let path = profile_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build -p sett-server --bin sett \
         -p sett-client --bin settctl`",
        path.display()
    );
    path
}

/// The member binary, and how to drive it.
fn locate_binary() -> (PathBuf, Flavor) {
    if let Some(path) = std::env::var_os("SETT_CLUSTER_BIN") {
        let path = PathBuf::from(path);
        let is_etcd = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("etcd"));
        let flavor = if is_etcd { Flavor::Etcd } else { Flavor::Sett };
        return (path, flavor);
    }
    let path = profile_dir().join(format!("sett{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "the member binary {} is missing: build it with `cargo build -p sett-server --bin sett`",
        path.display()
    );
    (path, Flavor::Sett)
}

/// `n` distinct free ports on 127.0.0.1. The listeners are returned so the
/// caller holds the ports until just before the members bind them.
pub fn free_ports(n: usize) -> (Vec<u16>, Vec<TcpListener>) {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect();
    (ports, listeners)
}

/// Two distinct free ports on 127.0.0.1 (client, peer), for a member
/// started outside [`Cluster::start`].
pub fn two_free_ports() -> (u16, u16) {
    let (ports, _listeners) = free_ports(2);
    (ports[0], ports[1])
}

/// Runs `fut` to completion on a runtime of its own, on a separate thread,
/// so that it works both inside and outside an async context.
fn block_on<T, F, Fut>(make: F) -> T
where
    T: Send,
    F: FnOnce() -> Fut + Send,
    Fut: Future<Output = T>,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(make())
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

/// Status of one member: `(member_id, leader)` as it reports them.
#[derive(Debug, Clone, Copy)]
struct Seen {
    member_id: u64,
    leader: u64,
}

impl Cluster {
    /// Starts a new cluster and waits (at most [`START_TIMEOUT`]) until
    /// every member answers Status and all name the same leader.
    pub fn start(opts: ClusterOptions) -> Cluster {
        assert!(opts.members >= 1, "a cluster needs at least one member");
        let (binary, flavor) = locate_binary();
        let dir = tempfile::Builder::new()
            .prefix("sett-cluster-")
            .tempdir()
            .expect("temporary directory");
        let (ports, listeners) = free_ports(2 * opts.members);
        let names: Vec<String> = (1..=opts.members).map(|i| format!("m{i}")).collect();
        let peer_url = |i: usize| format!("http://127.0.0.1:{}", ports[2 * i + 1]);
        let initial_cluster = names
            .iter()
            .enumerate()
            .map(|(i, n)| format!("{n}={}", peer_url(i)))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::with_capacity(opts.members);
        for (i, name) in names.iter().enumerate() {
            let data_dir = dir.path().join(name);
            let client_url = format!("http://127.0.0.1:{}", ports[2 * i]);
            let mut args = vec![
                format!("--name={name}"),
                format!("--data-dir={}", data_dir.display()),
                format!("--listen-client-urls={client_url}"),
                format!("--advertise-client-urls={client_url}"),
                format!("--listen-peer-urls={}", peer_url(i)),
                format!("--initial-advertise-peer-urls={}", peer_url(i)),
                format!("--initial-cluster={initial_cluster}"),
                "--initial-cluster-state=new".to_owned(),
                format!("--initial-cluster-token={}", opts.cluster_token),
                format!("--heartbeat-interval={}", opts.heartbeat_interval_ms),
                format!("--election-timeout={}", opts.election_timeout_ms),
                format!("--snapshot-count={}", opts.snapshot_count),
            ];
            match flavor {
                Flavor::Sett => args.push(format!(
                    "--experimental-snapshot-catchup-entries={}",
                    opts.snapshot_catchup_entries
                )),
                Flavor::Etcd => {
                    args.push("--logger=zap".to_owned());
                    args.push("--log-outputs=stderr".to_owned());
                }
            }
            args.extend(opts.extra_args.iter().cloned());
            members.push(Member {
                name: name.clone(),
                log_path: dir.path().join(format!("{name}.log")),
                data_dir,
                client_port: ports[2 * i],
                first_args: args,
                id: 0,
                child: None,
                paused: false,
            });
        }
        let mut cluster = Cluster {
            binary,
            flavor,
            members,
            dir: Some(dir),
        };
        drop(listeners);
        for i in 0..cluster.members.len() {
            let args = cluster.members[i].first_args.clone();
            cluster.spawn(i, &args);
        }
        // Wait in short rounds, so that a member that exits (a port taken
        // in the meantime, a bad flag) fails the start at once.
        let deadline = Instant::now() + START_TIMEOUT;
        let seen = loop {
            let last = match block_on(|| cluster.wait_all_agree(Duration::from_secs(1))) {
                Ok(seen) => break seen,
                Err(last) => last,
            };
            for i in 0..cluster.members.len() {
                assert!(
                    cluster.is_running(i),
                    "member {} exited while the cluster started; log tail:\n{}",
                    cluster.members[i].name,
                    cluster.log_tail(i)
                );
            }
            assert!(
                Instant::now() < deadline,
                "cluster in {} did not come up within {START_TIMEOUT:?}: {last}\n{}",
                cluster.dir().display(),
                cluster.all_log_tails()
            );
        };
        for (member, s) in cluster.members.iter_mut().zip(&seen) {
            assert_ne!(s.member_id, 0, "member {} reports id 0", member.name);
            member.id = s.member_id;
        }
        let mut ids: Vec<u64> = seen.iter().map(|s| s.member_id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), seen.len(), "member ids not distinct: {seen:?}");
        block_on(|| cluster.wait_members_published(START_TIMEOUT));
        cluster
    }

    /// Waits until every member's MemberList shows every member with its
    /// name and client URL. A member publishes these through the log once it
    /// runs, so they can lag behind the election (as in etcd).
    pub async fn wait_members_published(&self, timeout: Duration) {
        let expected = self.expected_member_list();
        let deadline = Instant::now() + timeout;
        for i in 0..self.members.len() {
            let mut client = self.client(i).await;
            loop {
                let last = match client.member_list().await {
                    Ok(list) => {
                        let got = listed_members(&list);
                        if got == expected {
                            break;
                        }
                        format!("{got:?}")
                    }
                    Err(e) => e.to_string(),
                };
                assert!(
                    Instant::now() < deadline,
                    "member {} does not list every member within {timeout:?}: \
                     expected {expected:?}, last {last}\n{}",
                    self.members[i].name,
                    self.all_log_tails()
                );
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        }
    }

    /// What MemberList should show once every member has published itself:
    /// each member's `(id, name, client URLs)`, sorted.
    pub fn expected_member_list(&self) -> Vec<ListedMember> {
        let mut expected: Vec<ListedMember> = (0..self.members.len())
            .map(|i| {
                (
                    self.member_id(i),
                    self.name(i).to_owned(),
                    vec![self.client_url(i)],
                )
            })
            .collect();
        expected.sort();
        expected
    }

    /// Spawns member `i` with `args`, logging to its log file.
    fn spawn(&mut self, i: usize, args: &[String]) {
        let member = &mut self.members[i];
        assert!(
            member.child.is_none(),
            "member {} already runs",
            member.name
        );
        member.child = Some(spawn_logged(&self.binary, args, &member.log_path));
        member.paused = false;
    }

    /// Sends `signal` to member `i`'s running process.
    fn signal(&self, i: usize, signal: libc::c_int) {
        let member = &self.members[i];
        let child = member
            .child
            .as_ref()
            .unwrap_or_else(|| panic!("member {} is not running", member.name));
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) with a valid signal number only sends a signal;
        // `pid` is our own unreaped child, so it names that process.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "signal {signal} to member {}", member.name);
    }

    /// Freezes member `i` with SIGSTOP: it keeps its sockets and state but
    /// does nothing (a stalled machine, or a leader cut off) until
    /// [`Cluster::resume`].
    pub fn pause(&mut self, i: usize) {
        assert!(
            !self.members[i].paused,
            "member {} already paused",
            self.members[i].name
        );
        self.signal(i, libc::SIGSTOP);
        self.members[i].paused = true;
    }

    /// Lets a member frozen by [`Cluster::pause`] run again (SIGCONT).
    pub fn resume(&mut self, i: usize) {
        assert!(
            self.members[i].paused,
            "member {} is not paused",
            self.members[i].name
        );
        self.signal(i, libc::SIGCONT);
        self.members[i].paused = false;
    }

    /// Whether member `i` is frozen by [`Cluster::pause`].
    pub fn is_paused(&self, i: usize) -> bool {
        self.members[i].paused
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no members (never, once started).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The cluster's directory: one data directory and one log per member.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("cluster directory").path()
    }

    /// Member `i`'s name (`m1`, `m2`, …).
    pub fn name(&self, i: usize) -> &str {
        &self.members[i].name
    }

    /// Member `i`'s data directory.
    pub fn data_dir(&self, i: usize) -> &Path {
        &self.members[i].data_dir
    }

    /// Member `i`'s client URL, `http://127.0.0.1:<port>`.
    pub fn client_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].client_port)
    }

    /// Every member's client URL, in member order.
    pub fn client_urls(&self) -> Vec<String> {
        (0..self.members.len())
            .map(|i| self.client_url(i))
            .collect()
    }

    /// Member `i`'s Raft member id (as its Status header reported it).
    pub fn member_id(&self, i: usize) -> u64 {
        self.members[i].id
    }

    /// The index of the member whose id is `id`.
    pub fn index_of(&self, id: u64) -> Option<usize> {
        self.members.iter().position(|m| m.id == id)
    }

    /// Whether member `i`'s process runs (was started and not stopped or
    /// killed by the harness; a crash is noticed too).
    pub fn is_running(&mut self, i: usize) -> bool {
        let member = &mut self.members[i];
        match member.child.as_mut() {
            None => false,
            Some(child) => match child.try_wait() {
                Ok(None) => true,
                Ok(Some(status)) => {
                    eprintln!("member {} exited on its own: {status}", member.name);
                    member.child = None;
                    false
                }
                Err(e) => panic!("wait for member {}: {e}", member.name),
            },
        }
    }

    /// Indexes of the members the harness believes are running.
    pub fn running(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&i| self.members[i].child.is_some())
            .collect()
    }

    /// SIGKILLs member `i` and reaps it.
    pub fn kill(&mut self, i: usize) {
        let member = &mut self.members[i];
        let mut child = member
            .child
            .take()
            .unwrap_or_else(|| panic!("kill: member {} is not running", member.name));
        member.paused = false;
        // An already exited child makes kill fail; wait reports it either way.
        let _ = child.kill();
        child
            .wait()
            .unwrap_or_else(|e| panic!("reap member {}: {e}", member.name));
    }

    /// Sends SIGTERM to member `i`, waits (at most [`STOP_TIMEOUT`]) for it
    /// to exit and asserts a clean exit.
    pub fn stop(&mut self, i: usize) {
        if self.members[i].paused {
            self.resume(i);
        }
        self.signal(i, libc::SIGTERM);
        let mut child = self.members[i]
            .child
            .take()
            .unwrap_or_else(|| panic!("stop: member {} is not running", self.members[i].name));
        let deadline = Instant::now() + STOP_TIMEOUT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL_INTERVAL / 5),
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "member {} did not exit within {STOP_TIMEOUT:?} of SIGTERM; log tail:\n{}",
                        self.members[i].name,
                        self.log_tail(i)
                    );
                }
                Err(e) => panic!("wait for member {}: {e}", self.members[i].name),
            }
        };
        assert!(
            self.clean_exit(status),
            "member {} exited with {status} after SIGTERM; log tail:\n{}",
            self.members[i].name,
            self.log_tail(i)
        );
    }

    fn clean_exit(&self, status: ExitStatus) -> bool {
        use std::os::unix::process::ExitStatusExt;
        match self.flavor {
            Flavor::Sett => status.success(),
            // etcd re-raises the signal once it has shut down.
            Flavor::Etcd => status.success() || status.signal() == Some(libc::SIGTERM),
        }
    }

    /// Starts member `i` again on its data directory (only `--data-dir`;
    /// the rest comes from `member.json`). Does not wait for it; see
    /// [`Cluster::wait_ready`].
    pub fn restart(&mut self, i: usize) {
        let args = match self.flavor {
            Flavor::Sett => vec![format!("--data-dir={}", self.members[i].data_dir.display())],
            Flavor::Etcd => self.members[i].first_args.clone(),
        };
        self.spawn(i, &args);
    }

    /// The last lines of member `i`'s log.
    pub fn log_tail(&self, i: usize) -> String {
        file_tail(&self.members[i].log_path)
    }

    /// The tails of every member's log, headed by member names.
    pub fn all_log_tails(&self) -> String {
        (0..self.members.len())
            .map(|i| format!("--- {} ---\n{}", self.members[i].name, self.log_tail(i)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Whether member `i`'s log contains `needle` (e.g. to see that a
    /// snapshot was installed).
    pub fn log_contains(&self, i: usize, needle: &str) -> bool {
        file_contains(&self.members[i].log_path, needle)
    }

    /// A client connected to member `i` only.
    pub async fn client(&self, i: usize) -> Client {
        connect(&self.client_url(i)).await
    }

    /// A client over every member's URL (the client balances between them).
    pub async fn client_all(&self) -> Client {
        let opts = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT);
        Client::connect(self.client_urls(), Some(opts))
            .await
            .unwrap_or_else(|e| panic!("connect to {:?}: {e}", self.client_urls()))
    }

    /// Member `i`'s Status, bounded by a short timeout.
    pub async fn status(&self, i: usize) -> Result<StatusResponse, String> {
        status_of(&self.client_url(i)).await
    }

    /// Index of the current leader among the running members (paused ones
    /// are not asked): a member that names itself leader and that a
    /// majority of all members name too.
    /// Waits at most [`LEADER_TIMEOUT`].
    pub async fn leader(&self) -> usize {
        let deadline = Instant::now() + LEADER_TIMEOUT;
        let quorum = self.members.len() / 2 + 1;
        let mut last = Vec::new();
        loop {
            last.clear();
            for i in self.running() {
                if self.members[i].paused {
                    continue;
                }
                if let Ok(s) = self.status(i).await {
                    last.push(Seen {
                        member_id: s.header().map_or(0, |h| h.member_id()),
                        leader: s.leader(),
                    });
                }
            }
            for s in &last {
                let votes = last.iter().filter(|o| o.leader == s.member_id).count();
                if s.leader == s.member_id && s.member_id != 0 && votes >= quorum {
                    if let Some(i) = self.index_of(s.member_id) {
                        return i;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader among running members {:?} within {LEADER_TIMEOUT:?}; last statuses {last:?}\n{}",
                self.running(),
                self.all_log_tails()
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Waits (at most [`LEADER_TIMEOUT`]) until member `i` answers Status
    /// and knows a leader.
    pub async fn wait_ready(&self, i: usize) {
        let deadline = Instant::now() + LEADER_TIMEOUT;
        loop {
            let last = self.status(i).await;
            if let Ok(s) = &last {
                if s.leader() != 0 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "member {} not ready within {LEADER_TIMEOUT:?}: {last:?}; log tail:\n{}",
                self.members[i].name,
                self.log_tail(i)
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Waits until every member answers Status and all name one leader
    /// that is one of them; returns what each reported.
    /// Gives up after `timeout` with what it last saw.
    async fn wait_all_agree(&self, timeout: Duration) -> Result<Vec<Seen>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut seen = Vec::with_capacity(self.members.len());
            let mut errors = Vec::new();
            for i in 0..self.members.len() {
                match self.status(i).await {
                    Ok(s) => seen.push(Seen {
                        member_id: s.header().map_or(0, |h| h.member_id()),
                        leader: s.leader(),
                    }),
                    Err(e) => errors.push(format!("{}: {e}", self.members[i].name)),
                }
            }
            if errors.is_empty() {
                let leader = seen[0].leader;
                let agreed = leader != 0 && seen.iter().all(|s| s.leader == leader);
                if agreed && seen.iter().any(|s| s.member_id == leader) {
                    return Ok(seen);
                }
            }
            if Instant::now() >= deadline {
                return Err(format!("statuses {seen:?}, errors {errors:?}"));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

/// One member of a MemberList answer: `(id, name, client URLs)`.
pub type ListedMember = (u64, String, Vec<String>);

/// The members of a MemberList answer, sorted, in the shape of
/// [`Cluster::expected_member_list`].
pub fn listed_members(list: &MemberListResponse) -> Vec<ListedMember> {
    let mut got: Vec<ListedMember> = list
        .members()
        .iter()
        .map(|m| (m.id(), m.name().to_owned(), m.client_urls().to_vec()))
        .collect();
    got.sort();
    got
}

/// A client connected to `url` only.
pub async fn connect(url: &str) -> Client {
    let opts = ConnectOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_timeout(REQUEST_TIMEOUT);
    Client::connect([url], Some(opts))
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// Status of the member at `url`, bounded by [`STATUS_TIMEOUT`].
async fn status_of(url: &str) -> Result<StatusResponse, String> {
    let call = async {
        let mut client = connect(url).await;
        client.status().await.map_err(|e| e.to_string())
    };
    match tokio::time::timeout(STATUS_TIMEOUT, call).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {STATUS_TIMEOUT:?}")),
    }
}

/// Spawns `binary` with `args`, its stdout and stderr appended to
/// `log_path`.
fn spawn_logged(binary: &Path, args: &[String], log_path: &Path) -> Child {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .unwrap_or_else(|e| panic!("open {}: {e}", log_path.display()));
    let log_err = log.try_clone().expect("clone log file handle");
    Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()))
}

/// The last [`LOG_TAIL_LINES`] lines of the log at `path`.
fn file_tail(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let all = text(&bytes);
            let lines: Vec<&str> = all.lines().collect();
            let from = lines.len().saturating_sub(LOG_TAIL_LINES);
            lines[from..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Whether the log at `path` exists and contains `needle`.
fn file_contains(path: &Path, needle: &str) -> bool {
    std::fs::read(path).is_ok_and(|b| text(&b).contains(needle))
}

/// A member process started by a test itself rather than by
/// [`Cluster::start`] (one added at runtime, or one of a cluster restored
/// from a snapshot): its URLs, directories and process. Dropping it
/// SIGKILLs the process.
#[derive(Debug)]
pub struct ExtraMember {
    /// `--name`.
    pub name: String,
    /// Client URL, `http://127.0.0.1:<port>`.
    pub client_url: String,
    /// Peer URL, `http://127.0.0.1:<port>`.
    pub peer_url: String,
    /// `--data-dir`.
    pub data_dir: PathBuf,
    /// Where its stdout and stderr are appended.
    pub log_path: PathBuf,
    /// The running process, `None` before [`ExtraMember::spawn`] and
    /// after [`ExtraMember::kill`].
    pub child: Option<Child>,
}

impl ExtraMember {
    /// A member named `name` whose data directory and log live in `dir`,
    /// with fresh ports; not started.
    pub fn new(dir: &Path, name: &str) -> ExtraMember {
        let (client_port, peer_port) = two_free_ports();
        ExtraMember {
            name: name.to_owned(),
            client_url: format!("http://127.0.0.1:{client_port}"),
            peer_url: format!("http://127.0.0.1:{peer_port}"),
            data_dir: dir.join(name),
            log_path: dir.join(format!("{name}.log")),
            child: None,
        }
    }

    /// Starts `binary` with `args`, logging to [`ExtraMember::log_path`].
    pub fn spawn(&mut self, binary: &Path, args: &[String]) {
        assert!(self.child.is_none(), "{} already runs", self.name);
        self.child = Some(spawn_logged(binary, args, &self.log_path));
    }

    /// SIGKILLs the process (if it runs) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process's log mentions `needle`.
    pub fn log_contains(&self, needle: &str) -> bool {
        file_contains(&self.log_path, needle)
    }

    /// The last lines of the process's log.
    pub fn log_tail(&self) -> String {
        file_tail(&self.log_path)
    }
}

impl Drop for ExtraMember {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Lossy UTF-8 text of `bytes` (keys, values, logs).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The revision of a response header, which every KV answer carries.
pub fn rev(header: Option<&ResponseHeader>) -> i64 {
    header.expect("response header").revision()
}

/// A kv as the tests compare it: `(key, value, create_revision,
/// mod_revision, version, lease)`.
pub type KvRow = (String, String, i64, i64, i64, i64);

/// The [`KvRow`] of every kv, in order.
pub fn kv_rows(kvs: &[KeyValue]) -> Vec<KvRow> {
    kvs.iter()
        .map(|kv| {
            (
                text(kv.key()),
                text(kv.value()),
                kv.create_revision(),
                kv.mod_revision(),
                kv.version(),
                kv.lease(),
            )
        })
        .collect()
}

/// Puts `key = value` through `client`, panicking on an error; returns the
/// put's revision.
pub async fn put(client: &mut Client, key: &str, value: &str) -> i64 {
    let resp = client
        .put(key, value, None)
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e}"));
    rev(resp.header())
}

/// Asserts that `result` is a gRPC error with `code` (the name of tonic's
/// `Code`, e.g. `InvalidArgument`) and exactly `message`.
#[track_caller]
pub fn assert_grpc_err<T: fmt::Debug>(result: Result<T, Error>, code: &str, message: &str) {
    match result {
        Err(Error::GRpcStatus(status)) => {
            assert_eq!(
                format!("{:?}", status.code()),
                code,
                "code of {status:?} (expected {code} {message:?})"
            );
            assert_eq!(status.message(), message, "message of {status:?}");
        }
        other => panic!("expected gRPC {code} {message:?}, got {other:?}"),
    }
}

/// `future`, or an error once `bound` has passed.
pub async fn bounded<T, F>(bound: Duration, future: F) -> Result<T, String>
where
    F: Future<Output = Result<T, Error>>,
{
    match tokio::time::timeout(bound, future).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {bound:?}")),
    }
}

/// Puts `key = value` through `client` until it is acknowledged, retrying
/// every [`POLL_INTERVAL`] for at most `timeout` (a new leader may still be
/// settling in); returns the put's revision. Past `timeout` it panics with
/// `what`, the last error and `details()` (e.g. log tails).
pub async fn put_retrying(
    client: &mut Client,
    key: &str,
    value: &str,
    timeout: Duration,
    what: &str,
    details: impl Fn() -> String,
) -> i64 {
    let deadline = Instant::now() + timeout;
    loop {
        match client.put(key, value, None).await {
            Ok(resp) => return rev(resp.header()),
            Err(e) => assert!(Instant::now() < deadline, "{what}: {e}\n{}", details()),
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Serializes the scenarios of one test file: each starts a cluster of
/// its own, and the machine may have only two cores.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs one scenario of a test file: takes the [`serial`] lock, runs
/// `scenario` to completion on a [`runtime`] and prints how long it took
/// under `name`.
pub fn run_scenario<F: Future>(name: &str, scenario: F) -> F::Output {
    let _serial = serial();
    let started = Instant::now();
    let output = runtime().block_on(scenario);
    eprintln!("{name}: {:?}", started.elapsed());
    output
}

/// The two-worker multi-threaded runtime the scenarios run on.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Runs one step of a scenario as a task of its own, so that a failing
/// step is reported (and added to `failures`) while the following steps
/// still run; `None` if it failed.
pub async fn step<T, F>(failures: &mut Vec<String>, name: &str, fut: F) -> Option<T>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    let started = Instant::now();
    match tokio::spawn(fut).await {
        Ok(v) => {
            eprintln!("step {name}: ok in {:?}", started.elapsed());
            Some(v)
        }
        Err(e) => {
            let msg = match e.try_into_panic() {
                Ok(p) => p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "(no message)".to_owned()),
                Err(e) => e.to_string(),
            };
            eprintln!("step {name}: FAILED after {:?}: {msg}", started.elapsed());
            failures.push(format!("{name}: {msg}"));
            None
        }
    }
}

/// Asserts that no [`step`] failed, listing those that did.
#[track_caller]
pub fn assert_steps_passed(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} step(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            if let Some(mut child) = member.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if let Some(dir) = self.dir.take() {
            if std::thread::panicking() {
                let kept = dir.keep();
                eprintln!("cluster directory kept for inspection: {}", kept.display());
            }
        }
    }
}
