//! The image and the compose cluster on the machine's Docker engine:
//!
//! 1. `deploy/build-image.sh` builds an image (unique tag) from the
//!    `sett` and `settctl` this test build made (`SETT_BIN_DIR`, nothing
//!    is compiled or pulled);
//! 2. `docker-compose up -d` of `deploy/docker-compose.yml` under a unique
//!    project name, its client ports published on free loopback ports
//!    (`SETT_HOST_PORT_1..3`); the test waits until every member names
//!    the same leader and a write is acknowledged;
//! 3. put/get through the published ports (etcd's Rust client);
//! 4. `docker kill` of the leader: writes through the other two succeed;
//!    `docker start` brings it back on its volume and a linearizable read
//!    on it returns the keys written while it was down;
//! 5. `docker network disconnect` of a follower: the other two still take
//!    writes; the cut-off member refuses linearizable reads and writes
//!    with etcd's errors (`settctl` run inside its container, the only way
//!    to reach it), and a serializable read there, if it answers, shows
//!    the old data only; reconnected, it catches up.
//!
//! Whatever happens, a guard removes the project (containers, network,
//! volumes) and the image. When `docker info` fails there is no engine to
//! test against: the test prints why and passes. An engine without
//! `docker-compose` fails the test.
//!
//! Every wait is a bounded poll; nothing asserts how long a step took.
//! Needs `target/<profile>/sett` and `settctl` (a workspace `cargo test`
//! builds both).

#[path = "../src/cluster.rs"]
#[allow(dead_code)]
mod cluster;

use cluster::{built_binary, free_ports, profile_dir, runtime, serial, text};
use etcd_client::{Client, ConnectOptions, GetOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Bound on building the image.
const BUILD_TIMEOUT: Duration = Duration::from_secs(300);
/// Bound on one docker or docker-compose command.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound on the cluster settling (start, rejoin, catch-up, election).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between two polls.
const POLL: Duration = Duration::from_millis(250);
/// Bound on one client call through a published port.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// `settctl --command-timeout` inside a container: longer than the
/// member's own request timeout (7 s with the compose file's 1 s election
/// timeout), so that the member's answer, not the client's, is seen.
const CTL_COMMAND_TIMEOUT: &str = "20s";
/// Keys written in each phase.
const KEYS_PER_PHASE: usize = 5;
/// The errors with which etcd (and sett) refuse a request that needs a
/// quorum the member cannot reach.
const QUORUM_ERRORS: [&str; 3] = [
    "etcdserver: no leader",
    "etcdserver: request timed out",
    "etcdserver: leader changed",
];

/// What a finished command printed.
#[derive(Debug)]
struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Output {
    fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs `cmd` to completion, killing it past `bound`.
fn run(cmd: &mut Command, bound: Duration) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let mut out = child.stdout.take().expect("stdout pipe");
    let mut err = child.stderr.take().expect("stderr pipe");
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + bound;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Err(e) => panic!("wait for {what}: {e}"),
        }
    };
    let stdout = text(&out_reader.join().expect("stdout reader"));
    let stderr = text(&err_reader.join().expect("stderr reader"));
    match status {
        Some(s) => Output {
            code: s.code(),
            stdout,
            stderr,
        },
        None => Output {
            code: None,
            stdout,
            stderr: format!("{stderr}\n(killed: no exit within {bound:?})"),
        },
    }
}

/// Runs `cmd`, panicking with its output unless it exits 0.
#[track_caller]
fn run_ok(cmd: &mut Command, bound: Duration) -> Output {
    let what = format!("{cmd:?}");
    let out = run(cmd, bound);
    assert!(out.ok(), "{what} failed: {out:?}");
    out
}

/// Why there is no Docker engine to test against, if there is none.
fn docker_unavailable() -> Option<String> {
    match Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
    {
        Err(e) => Some(format!("`docker info` cannot run: {e}")),
        Ok(o) if !o.status.success() => {
            Some(format!("`docker info` failed: {}", text(&o.stderr).trim()))
        }
        Ok(_) => None,
    }
}

/// The repository's root (the test crate lives in `<root>/tests`).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

/// The image and compose project of one run; dropping it removes both.
struct Deployment {
    root: PathBuf,
    project: String,
    tag: String,
    ports: [u16; 3],
}

impl Deployment {
    /// A deployment with a name no other run uses.
    fn new() -> Deployment {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .subsec_nanos();
        let unique = format!("{}-{nanos}", std::process::id());
        Deployment {
            root: repo_root(),
            project: format!("sett-test-{unique}"),
            tag: format!("sett-test:{unique}"),
            ports: three_free_ports(),
        }
    }

    /// `docker-compose` for this project, with the image and ports in its
    /// environment.
    fn compose(&self) -> Command {
        let mut cmd = Command::new("docker-compose");
        cmd.current_dir(&self.root)
            .env("SETT_IMAGE", &self.tag)
            .args(["-p", &self.project, "-f", "deploy/docker-compose.yml"]);
        for (i, port) in self.ports.iter().enumerate() {
            cmd.env(format!("SETT_HOST_PORT_{}", i + 1), port.to_string());
        }
        cmd
    }

    /// Builds the image from the binaries of this test build.
    fn build_image(&self) {
        let bin_dir = profile_dir();
        built_binary("sett");
        built_binary("settctl");
        let out = run_ok(
            Command::new("bash")
                .current_dir(&self.root)
                .arg("deploy/build-image.sh")
                .arg(&self.tag)
                .env("SETT_BIN_DIR", &bin_dir),
            BUILD_TIMEOUT,
        );
        eprintln!("{}", out.stdout.trim());
    }

    /// `docker-compose up -d`.
    fn up(&self) {
        run_ok(self.compose().args(["up", "-d"]), DOCKER_TIMEOUT);
    }

    /// The container id of service `sett-<i+1>`.
    fn container(&self, i: usize) -> String {
        let out = run_ok(
            self.compose()
                .args(["ps", "-q", &format!("sett-{}", i + 1)]),
            DOCKER_TIMEOUT,
        );
        let id = out.stdout.trim().to_owned();
        assert!(!id.is_empty(), "no container for sett-{}", i + 1);
        id
    }

    /// The client URL of member `i` on the host.
    fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[i])
    }

    /// `settctl <args>` inside member `i`'s container, against that
    /// member only.
    fn ctl(&self, i: usize, args: &[&str]) -> Output {
        let container = self.container(i);
        run(
            Command::new("docker")
                .args(["exec", &container, "settctl"])
                .args([
                    "--endpoints=http://127.0.0.1:2379",
                    &format!("--command-timeout={CTL_COMMAND_TIMEOUT}"),
                ])
                .args(args),
            DOCKER_TIMEOUT,
        )
    }

    /// The last lines of every member's output.
    fn logs(&self) -> String {
        let out = run(
            self.compose().args(["logs", "--no-color", "--tail=40"]),
            DOCKER_TIMEOUT,
        );
        format!("{}{}", out.stdout, out.stderr)
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- member logs ---\n{}", self.logs());
        }
        let down = run(
            self.compose()
                .args(["down", "-v", "--remove-orphans", "-t", "5"]),
            DOCKER_TIMEOUT,
        );
        if !down.ok() {
            eprintln!("docker-compose down failed: {down:?}");
        }
        let rmi = run(
            Command::new("docker").args(["rmi", "-f", &self.tag]),
            DOCKER_TIMEOUT,
        );
        if !rmi.ok() {
            eprintln!("docker rmi {} failed: {rmi:?}", self.tag);
        }
    }
}

/// A client of the members at `urls`, with short bounds.
async fn client_of(urls: &[String]) -> Result<Client, String> {
    let opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(3))
        .with_timeout(CALL_TIMEOUT);
    Client::connect(urls, Some(opts))
        .await
        .map_err(|e| format!("connect to {urls:?}: {e}"))
}

/// Runs blocking work (a docker command) from the scenario.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Polls `attempt` every [`POLL`] until it yields a value, for at most
/// [`SETTLE_TIMEOUT`]; past that, panics with `what` and the last error.
async fn poll<T, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let last = match tokio::time::timeout(CALL_TIMEOUT, attempt()).await {
            Ok(Ok(v)) => return v,
            Ok(Err(e)) => e,
            Err(_) => format!("no answer within {CALL_TIMEOUT:?}"),
        };
        assert!(
            Instant::now() < deadline,
            "{what}: not done within {SETTLE_TIMEOUT:?}; last: {last}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// The member id and the leader member `i` reports.
async fn status(d: &Deployment, i: usize) -> Result<(u64, u64), String> {
    let mut c = client_of(&[d.url(i)]).await?;
    let s = c.status().await.map_err(|e| e.to_string())?;
    Ok((s.header().map_or(0, |h| h.member_id()), s.leader()))
}

/// Waits until every member answers and all name one leader among them;
/// returns the leader's index.
async fn wait_leader(d: &Deployment, members: &[usize]) -> usize {
    poll("one leader named by every member", || async {
        let mut seen = Vec::new();
        for &i in members {
            seen.push(
                status(d, i)
                    .await
                    .map_err(|e| format!("sett-{}: {e}", i + 1))?,
            );
        }
        let leader = seen[0].1;
        if leader == 0 || seen.iter().any(|s| s.1 != leader) {
            return Err(format!("statuses (id, leader): {seen:?}"));
        }
        members
            .iter()
            .zip(&seen)
            .find(|(_, s)| s.0 == leader)
            .map(|(&i, _)| i)
            .ok_or_else(|| format!("leader {leader:x} is not among {seen:?}"))
    })
    .await
}

/// Puts `key = value` through the members at `urls`, retried while a
/// new leader settles in.
async fn put_settled(urls: &[String], key: &str, value: &str) {
    poll(&format!("put {key} through {urls:?}"), || async {
        let mut c = client_of(urls).await?;
        c.put(key, value, None)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await;
}

/// `(key, value)` of every key under `prefix`, read linearizably from the
/// member at `url` alone.
async fn read_prefix(url: &str, prefix: &str) -> Result<Vec<(String, String)>, String> {
    let mut c = client_of(&[url.to_owned()]).await?;
    let resp = c
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await
        .map_err(|e| e.to_string())?;
    Ok(resp
        .kvs()
        .iter()
        .map(|kv| (text(kv.key()), text(kv.value())))
        .collect())
}

/// The keys and values of one phase.
fn phase_keys(prefix: &str) -> Vec<(String, String)> {
    (0..KEYS_PER_PHASE)
        .map(|n| (format!("{prefix}{n}"), format!("value-{n}")))
        .collect()
}

/// A settctl run refused with one of etcd's quorum errors.
#[track_caller]
fn assert_quorum_refusal(out: &Output, what: &str) {
    assert!(!out.ok(), "{what} on the cut-off member succeeded: {out:?}");
    assert!(
        QUORUM_ERRORS.iter().any(|e| out.stderr.contains(e)),
        "{what} on the cut-off member: expected one of {QUORUM_ERRORS:?}, got {out:?}"
    );
}

/// `docker inspect -f <format> <container>`.
fn inspect(container: &str, format: &str) -> String {
    run_ok(
        Command::new("docker").args(["inspect", "-f", format, container]),
        DOCKER_TIMEOUT,
    )
    .stdout
    .trim()
    .to_owned()
}

async fn scenario(d: &Deployment) {
    let all = [0, 1, 2];
    let urls: Vec<String> = all.iter().map(|&i| d.url(i)).collect();

    // Up: every member names one leader, a write goes through.
    let leader = wait_leader(d, &all).await;
    eprintln!("cluster up, leader sett-{}", leader + 1);
    put_settled(&urls, "greeting", "hello").await;
    let hello = vec![("greeting".to_owned(), "hello".to_owned())];
    for url in &urls {
        let got = poll(&format!("get greeting on {url}"), || {
            read_prefix(url, "greeting")
        })
        .await;
        assert_eq!(got, hello, "{url}");
    }

    // docker kill of the leader; the others take writes; it rejoins.
    let killed = leader;
    let others: Vec<String> = all
        .iter()
        .filter(|&&i| i != killed)
        .map(|&i| d.url(i))
        .collect();
    let container = blocking(|| d.container(killed));
    blocking(|| {
        run_ok(
            Command::new("docker").args(["kill", &container]),
            DOCKER_TIMEOUT,
        )
    });
    eprintln!(
        "killed sett-{} (running: {})",
        killed + 1,
        blocking(|| inspect(&container, "{{.State.Running}}"))
    );
    let down_keys = phase_keys("down/");
    for (k, v) in &down_keys {
        put_settled(&others, k, v).await;
    }
    blocking(|| {
        run_ok(
            Command::new("docker").args(["start", &container]),
            DOCKER_TIMEOUT,
        )
    });
    let killed_url = &urls[killed];
    poll(
        &format!("down/ keys on the restarted {killed_url}"),
        || async {
            let got = read_prefix(killed_url, "down/").await?;
            if got == down_keys {
                Ok(())
            } else {
                Err(format!("got {got:?}"))
            }
        },
    )
    .await;
    // Its data came from its volume: the key written before the kill is
    // there too.
    assert_eq!(read_prefix(killed_url, "greeting").await, Ok(hello.clone()));

    // A follower cut off from the compose network.
    let leader = wait_leader(d, &all).await;
    let cut = (leader + 1) % 3;
    let rest: Vec<String> = all
        .iter()
        .filter(|&&i| i != cut)
        .map(|&i| d.url(i))
        .collect();
    let container = blocking(|| d.container(cut));
    let network = blocking(|| {
        inspect(
            &container,
            "{{range $name, $n := .NetworkSettings.Networks}}{{$name}}{{end}}",
        )
    });
    let aliases = blocking(|| {
        inspect(
            &container,
            &format!(
                "{{{{range (index .NetworkSettings.Networks \"{network}\").Aliases}}}}{{{{.}}}} {{{{end}}}}"
            ),
        )
    });
    eprintln!(
        "cutting sett-{} off {network} (aliases: {aliases})",
        cut + 1
    );
    blocking(|| {
        run_ok(
            Command::new("docker").args(["network", "disconnect", &network, &container]),
            DOCKER_TIMEOUT,
        )
    });
    let cut_keys = phase_keys("cut/");
    for (k, v) in &cut_keys {
        put_settled(&rest, k, v).await;
    }
    // Outside `cut/`: a write refused with "request timed out" may still
    // be applied once the member is back (as in etcd, its outcome is
    // unknown).
    let write = blocking(|| d.ctl(cut, &["put", "refused", "x"]));
    assert_quorum_refusal(&write, "a put");
    let read = blocking(|| d.ctl(cut, &["get", "cut/", "--prefix"]));
    assert_quorum_refusal(&read, "a linearizable get");
    eprintln!(
        "the cut-off member refused a put ({}) and a linearizable get ({})",
        write.stderr.trim(),
        read.stderr.trim()
    );
    let stale = blocking(|| d.ctl(cut, &["get", "--consistency=s", "--from-key", ""]));
    if stale.ok() {
        assert!(
            stale.stdout.contains("greeting") && !stale.stdout.contains("cut/"),
            "a serializable read on the cut-off member shows what it had before: {stale:?}"
        );
        eprintln!("a serializable read on the cut-off member answered from its own state");
    } else {
        eprintln!(
            "a serializable read on the cut-off member was refused: {}",
            stale.stderr.trim()
        );
    }

    // Reconnected (under the names the other members dial it by), it
    // catches up.
    let mut reconnect = Command::new("docker");
    reconnect.args(["network", "connect"]);
    for alias in aliases.split_whitespace() {
        reconnect.arg(format!("--alias={alias}"));
    }
    reconnect.args([&network, &container]);
    blocking(|| run_ok(&mut reconnect, DOCKER_TIMEOUT));
    let expected: String = cut_keys
        .iter()
        .map(|(k, v)| format!("{k}\n{v}\n"))
        .collect();
    poll(
        &format!("cut/ keys on the reconnected sett-{}", cut + 1),
        || {
            let out = blocking(|| d.ctl(cut, &["get", "cut/", "--prefix"]));
            let expected = &expected;
            async move {
                if out.ok() && out.stdout == *expected {
                    Ok(())
                } else {
                    Err(format!("{out:?}"))
                }
            }
        },
    )
    .await;
    // The whole cluster takes writes with every member in it.
    wait_leader(d, &all).await;
    put_settled(&urls, "after", "ok").await;
}

#[test]
fn compose_cluster_survives_kill_and_partition() {
    if let Some(why) = docker_unavailable() {
        eprintln!("SKIPPED compose_cluster_survives_kill_and_partition: no Docker engine ({why})");
        return;
    }
    let compose = run(
        Command::new("docker-compose").arg("version"),
        DOCKER_TIMEOUT,
    );
    assert!(
        compose.ok(),
        "Docker answers but docker-compose does not run (install it: the Debian package \
         docker-compose): {compose:?}"
    );
    let _serial = serial();
    let started = Instant::now();
    let deployment = Deployment::new();
    deployment.build_image();
    eprintln!("image {} built in {:?}", deployment.tag, started.elapsed());
    deployment.up();
    runtime().block_on(scenario(&deployment));
    eprintln!("containers: {:?}", started.elapsed());
}

/// Three distinct free ports on 127.0.0.1, released for Docker to publish.
fn three_free_ports() -> [u16; 3] {
    let (ports, _held) = free_ports(3);
    [ports[0], ports[1], ports[2]]
}
