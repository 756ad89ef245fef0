//! A reference etcd 3.4 for differential tests, and the `etcdctl` runner
//! and output normalisation those tests share.
//!
//! [`EtcdRef::start`] launches a single-member etcd (`/usr/bin/etcd`) on
//! free 127.0.0.1 ports and waits, bounded, until it answers. [`etcdctl`]
//! runs `/usr/bin/etcdctl` with `ETCDCTL_API=3` against one endpoint, feeds
//! it optional stdin and kills it after a deadline. [`normalize`] rewrites
//! the parts of an output that legitimately differ between two servers
//! (member and cluster ids, raft terms and indexes, database sizes, the
//! server version, endpoint URLs, timestamps, durations) into fixed
//! placeholders, so what remains can be compared byte for byte.
//!
//! Both binaries come from the Debian packages `etcd-server` and
//! `etcd-client` (3.4.23) that `.ci/setup.sh` installs.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The etcd server binary.
pub const ETCD_BIN: &str = "/usr/bin/etcd";
/// The etcdctl binary.
pub const ETCDCTL_BIN: &str = "/usr/bin/etcdctl";

/// Longest a single etcdctl invocation may run before it is killed.
pub const ETCDCTL_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest the reference etcd may take to answer after launch.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Panics with a pointer to `.ci/setup.sh` unless both etcd binaries exist.
pub fn require_binaries() {
    for bin in [ETCD_BIN, ETCDCTL_BIN] {
        assert!(
            Path::new(bin).is_file(),
            "{bin} is missing: install etcd-server and etcd-client 3.4 \
             with .ci/setup.sh (apt-get install etcd-server etcd-client)"
        );
    }
}

/// `n` distinct ports on 127.0.0.1 that were free a moment ago (all are
/// held until every one is picked, so none repeats).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// What one etcdctl run produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtlOutput {
    /// Exit code; -1 if it was killed by a signal (or the deadline).
    pub code: i32,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

/// Runs `etcdctl --endpoints=<endpoint> <args>` with `ETCDCTL_API=3`,
/// writing `stdin` (if any) to it, and waits at most [`ETCDCTL_TIMEOUT`].
pub fn etcdctl(endpoint: &str, args: &[&str], stdin: Option<&str>) -> CtlOutput {
    let mut cmd = Command::new(ETCDCTL_BIN);
    // Settings from the environment would change what is sent.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("ETCDCTL_") {
            cmd.env_remove(&k);
        }
    }
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(args);
    run_bounded(
        cmd,
        stdin,
        ETCDCTL_TIMEOUT,
        &format!("etcdctl {args:?} against {endpoint}"),
    )
}

/// Runs `cmd`, writing `stdin` (if any) to it and collecting both output
/// pipes; panics naming `what` if it runs over `limit`.
pub fn run_bounded(
    mut cmd: Command,
    stdin: Option<&str>,
    limit: Duration,
    what: &str,
) -> CtlOutput {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("child stdin");
        // A child that exits early closes the pipe; its output says why.
        let _ = pipe.write_all(input.as_bytes());
    }
    let out = reader(child.stdout.take().expect("child stdout"));
    let err = reader(child.stderr.take().expect("child stderr"));
    let code = wait_bounded(&mut child, limit);
    let stdout = out.join().expect("stdout reader");
    let stderr = err.join().expect("stderr reader");
    let code = code
        .unwrap_or_else(|| panic!("{what} ran over {limit:?}\nstdout: {stdout}\nstderr: {stderr}"));
    CtlOutput {
        code,
        stdout,
        stderr,
    }
}

/// Reads a pipe to its end on a thread, so neither pipe can fill up and
/// stall the child.
fn reader(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Waits for `child` at most `limit`; kills it and returns `None` past it.
/// A signal death reads as exit code -1.
fn wait_bounded(child: &mut Child, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status.code().unwrap_or(-1));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// A running single-member etcd; dropping it kills the process.
#[derive(Debug)]
pub struct EtcdRef {
    child: Child,
    client_url: String,
    log_path: PathBuf,
}

impl EtcdRef {
    /// Starts etcd with its data directory and log under `dir` and waits
    /// until `endpoint health` succeeds. Panics (with the log) if it exits
    /// or does not answer within the start timeout.
    pub fn start(dir: &Path) -> EtcdRef {
        require_binaries();
        let ports = free_ports(2);
        let client_url = format!("http://127.0.0.1:{}", ports[0]);
        let peer_url = format!("http://127.0.0.1:{}", ports[1]);
        let log_path = dir.join("etcd.log");
        let log = std::fs::File::create(&log_path).expect("create etcd log");
        let child = Command::new(ETCD_BIN)
            .arg("--name")
            .arg("ref")
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--listen-client-urls")
            .arg(&client_url)
            .arg("--advertise-client-urls")
            .arg(&client_url)
            .arg("--listen-peer-urls")
            .arg(&peer_url)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer_url)
            .arg("--initial-cluster")
            .arg(format!("ref={peer_url}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn etcd");
        let mut etcd = EtcdRef {
            child,
            client_url,
            log_path,
        };
        etcd.wait_ready();
        etcd
    }

    /// The client URL, `http://127.0.0.1:<port>`.
    pub fn client_url(&self) -> &str {
        &self.client_url
    }

    /// The last `max_bytes` of etcd's log.
    pub fn log_tail(&self, max_bytes: usize) -> String {
        let log = std::fs::read(&self.log_path).unwrap_or_default();
        let from = log.len().saturating_sub(max_bytes);
        String::from_utf8_lossy(&log[from..]).into_owned()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait etcd") {
                panic!("etcd exited with {status}:\n{}", self.log_tail(8192));
            }
            let out = etcdctl(
                &self.client_url,
                &["endpoint", "health", "--command-timeout=2s"],
                None,
            );
            if out.code == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not become healthy within {START_TIMEOUT:?}: {out:?}\n{}",
                self.log_tail(8192)
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for EtcdRef {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fields of a response header that differ between any two servers.
const HEADER_FIELDS: [&str; 3] = ["cluster_id", "member_id", "raft_term"];
/// Fields of a `Status` object (from `endpoint status -w json`) that
/// differ between servers; `version` is the server's, not a key's.
const STATUS_FIELDS: [&str; 7] = [
    "leader",
    "raftIndex",
    "raftTerm",
    "raftAppliedIndex",
    "dbSize",
    "dbSizeInUse",
    "version",
];

/// Rewrites what legitimately differs between servers in etcdctl output:
/// every line that is a JSON document has its header ids and term, its
/// status sizes, indexes, leader and version, its `Endpoint`, and the log
/// fields `ts` and `target` replaced by placeholders (a field absent stays
/// absent, so a missing field still shows); `endpoints` are replaced by
/// `<endpoint>` in all other lines, and `took = <duration>` by
/// `took = <d>`.
pub fn normalize(text: &str, endpoints: &[&str]) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&normalize_line(line, endpoints));
    }
    out
}

fn normalize_line(line: &str, endpoints: &[&str]) -> String {
    let trimmed = line.trim();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        if let Ok(mut v) = serde_json::from_str::<Value>(trimmed) {
            normalize_json(&mut v, None);
            return v.to_string();
        }
    }
    let mut s = line.to_string();
    for ep in endpoints {
        s = s.replace(ep, "<endpoint>");
    }
    mask_after(&s, "took = ", "<d>")
}

/// Replaces the word following each occurrence of `marker` with `mask`.
fn mask_after(s: &str, marker: &str, mask: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(at) = rest.find(marker) {
        out.push_str(&rest[..at + marker.len()]);
        out.push_str(mask);
        let tail = &rest[at + marker.len()..];
        let end = tail.find(char::is_whitespace).unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

fn normalize_json(v: &mut Value, parent_key: Option<&str>) {
    match v {
        Value::Object(map) => {
            let masked: &[&str] = match parent_key {
                Some("header") => &HEADER_FIELDS,
                Some("Status") => &STATUS_FIELDS,
                None => &["ts", "target"],
                _ => &[],
            };
            for (k, field) in map.iter_mut() {
                if k == "Endpoint" || masked.contains(&k.as_str()) {
                    *field = Value::String(format!("<{k}>"));
                } else {
                    normalize_json(field, Some(k));
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                normalize_json(item, parent_key);
            }
        }
        _ => {}
    }
}

/// Normalises the simple (comma-separated) output of `endpoint status`:
/// `url, id, version, db size, is leader, is learner, raft term, raft
/// index, raft applied index, errors`. Masks everything but the leader and
/// learner flags and the errors.
pub fn normalize_status_line(line: &str) -> String {
    let fields: Vec<&str> = line.split(", ").collect();
    fields
        .iter()
        .enumerate()
        .map(|(i, f)| match i {
            0..=3 | 6..=8 => "<masked>",
            _ => f,
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_header_but_not_key_versions() {
        let line = r#"{"header":{"cluster_id":1,"member_id":2,"revision":3,"raft_term":4},"kvs":[{"key":"YQ==","version":1}]}"#;
        let n = normalize(line, &[]);
        assert_eq!(
            n,
            r#"{"header":{"cluster_id":"<cluster_id>","member_id":"<member_id>","raft_term":"<raft_term>","revision":3},"kvs":[{"key":"YQ==","version":1}]}"#
        );
    }

    #[test]
    fn masks_status_endpoint_and_took() {
        let line = r#"[{"Endpoint":"http://x","Status":{"header":{"revision":2},"version":"3.4.23","dbSize":5}}]"#;
        let n = normalize(line, &[]);
        assert_eq!(
            n,
            r#"[{"Endpoint":"<Endpoint>","Status":{"dbSize":"<dbSize>","header":{"revision":2},"version":"<version>"}}]"#
        );
        let h = normalize(
            "http://127.0.0.1:9 is healthy: successfully committed proposal: took = 1.2ms",
            &["http://127.0.0.1:9"],
        );
        assert_eq!(
            h,
            "<endpoint> is healthy: successfully committed proposal: took = <d>"
        );
    }
}
