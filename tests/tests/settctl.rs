//! `settctl`'s etcdctl-like commands against a real three-member sett
//! cluster: each command's stdout, stderr and exit code.
//!
//! Read-only commands also run through `etcdctl` 3.4 against the same
//! member, and both outputs must match byte for byte (same server, same
//! state: nothing needs masking). Writes, leases, watch, compaction,
//! snapshots, membership and the error paths are checked against the
//! output etcdctl gives for them, exit codes included (etcdctl's 3, 4, 5
//! and 128 for bad txn input, unsupported formats, canceled watches and
//! bad arguments).
//!
//! Needs `target/<profile>/settctl` (built by a workspace `cargo test`, or
//! `cargo build -p sett-client --bin settctl`) and `/usr/bin/etcdctl`
//! (`.ci/setup.sh`).

#[allow(dead_code)]
#[path = "../src/cluster.rs"]
mod cluster;

use cluster::{built_binary, two_free_ports, Cluster, ClusterOptions};
use sett_tests::etcd_ref::{etcdctl, require_binaries, run_bounded, CtlOutput};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Longest one settctl run may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a watch may take to print the expected events.
const WATCH_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs settctl and collects what it printed.
struct Ctl {
    bin: PathBuf,
    endpoint: String,
}

impl Ctl {
    /// `settctl --endpoints=<endpoint> <args>`, with `stdin` if given.
    fn run(&self, args: &[&str], stdin: Option<&str>) -> CtlOutput {
        self.run_at(&self.endpoint, args, stdin)
    }

    /// `settctl --endpoints=<endpoints> <args>`.
    fn run_at(&self, endpoints: &str, args: &[&str], stdin: Option<&str>) -> CtlOutput {
        let mut cmd = Command::new(&self.bin);
        cmd.env_remove("SETT_ENDPOINTS")
            .arg(format!("--endpoints={endpoints}"))
            .args(args);
        run_bounded(cmd, stdin, RUN_TIMEOUT, &format!("settctl {args:?}"))
    }

    /// Runs a command that must succeed; returns its stdout.
    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args, None);
        assert_eq!(out.code, 0, "settctl {args:?}: {out:?}");
        out.stdout
    }

    /// Runs a command that must fail with `message` on stderr.
    #[track_caller]
    fn fails(&self, args: &[&str], stdin: Option<&str>, message: &str) -> CtlOutput {
        let out = self.run(args, stdin);
        assert_ne!(out.code, 0, "settctl {args:?} must fail: {out:?}");
        assert!(
            out.stderr.contains(message),
            "settctl {args:?}: stderr lacks {message:?}: {out:?}"
        );
        out
    }

    /// Starts a long-running command (watch) with its stdout read line by
    /// line on a thread.
    fn spawn(&self, args: &[&str]) -> (Child, mpsc::Receiver<String>) {
        let mut child = Command::new(&self.bin)
            .env_remove("SETT_ENDPOINTS")
            .arg(format!("--endpoints={}", self.endpoint))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn settctl");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        (child, rx)
    }
}

/// Reads `n` lines from a watch, bounded by [`WATCH_TIMEOUT`].
fn read_lines(rx: &mpsc::Receiver<String>, n: usize) -> Vec<String> {
    let deadline = Instant::now() + WATCH_TIMEOUT;
    let mut lines = Vec::new();
    while lines.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => lines.push(l),
            Err(_) => panic!("watch printed only {lines:?}, expected {n} lines"),
        }
    }
    lines
}

/// The revision in a `-w json` response.
fn revision_of(json: &str) -> i64 {
    let v: serde_json::Value = serde_json::from_str(json).expect("json output");
    v["header"]["revision"].as_i64().expect("header.revision")
}

/// The lease ID in `lease grant`'s output (`lease <ID> granted with …`).
fn lease_of(out: &str) -> String {
    let id = out.split_whitespace().nth(1).expect("lease id").to_owned();
    assert_eq!(id.len(), 16, "lease id in {out:?}");
    id
}

/// The same read-only command through etcdctl and settctl against the same
/// member prints the same.
#[track_caller]
fn same_as_etcdctl(ctl: &Ctl, args: &[&str], stdin: Option<&str>) {
    let theirs = etcdctl(&ctl.endpoint, args, stdin);
    let ours = ctl.run(args, stdin);
    assert_eq!(
        ours.stdout, theirs.stdout,
        "stdout of {args:?}\netcdctl: {theirs:?}\nsettctl: {ours:?}"
    );
    assert_eq!(
        ours.code, theirs.code,
        "exit code of {args:?}\netcdctl: {theirs:?}\nsettctl: {ours:?}"
    );
}

fn seed(ctl: &Ctl) {
    for (k, v) in [
        ("k1", "v1"),
        ("k2", "v2"),
        ("k3", "v3"),
        ("a", "z"),
        ("foo", "bar"),
    ] {
        assert_eq!(ctl.ok(&["put", k, v]), "OK\n");
    }
}

fn read_only_matches_etcdctl(ctl: &Ctl) {
    for args in [
        &["get", "foo"][..],
        &["-w", "json", "get", "foo"],
        &["get", "k", "--prefix"],
        &["get", "k", "--prefix", "--print-value-only"],
        &["get", "k", "--prefix", "--keys-only", "-w", "json"],
        &["get", "--from-key", "b", "--keys-only"],
        &[
            "get",
            "a",
            "z",
            "--limit",
            "2",
            "--order",
            "DESCEND",
            "--sort-by",
            "VALUE",
        ],
        &[
            "get",
            "a",
            "z",
            "--sort-by",
            "MODIFY",
            "-w",
            "json",
            "--limit",
            "1",
        ],
        &["get", "k1", "--consistency", "s"],
        &["get", "nothing"],
        &["member", "list"],
        &["-w", "json", "member", "list"],
        &["-w", "table", "member", "list"],
        &["lease", "list"],
        &["alarm", "list"],
        &["endpoint", "hashkv"],
        &["-w", "json", "endpoint", "hashkv"],
        &["-w", "table", "endpoint", "hashkv"],
        &["get", "foo", "--rev", "100000"],
    ] {
        same_as_etcdctl(ctl, args, None);
    }
    let read_txn =
        "mod(\"k1\") > \"0\"\nvalue(\"k2\") = \"v2\"\n\nget k --prefix\nget foo\n\nget a\n\n";
    same_as_etcdctl(ctl, &["txn"], Some(read_txn));
    same_as_etcdctl(ctl, &["-w", "json", "txn"], Some(read_txn));
    let failing = "value(\"k1\") = \"nope\"\n\nget foo\n\nget k1 --print-value-only\nget k --prefix --keys-only\n\n";
    same_as_etcdctl(ctl, &["txn"], Some(failing));
}

fn writes(ctl: &Ctl) {
    assert_eq!(ctl.ok(&["put", "w", "1", "--prev-kv"]), "OK\n");
    assert_eq!(ctl.ok(&["put", "w", "2", "--prev-kv"]), "OK\nw\n1\n");
    let out = ctl.run(&["put", "stdin-key"], Some("from\nstdin"));
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        ctl.ok(&["get", "stdin-key", "--print-value-only"]),
        "from\nstdin\n"
    );
    assert_eq!(ctl.ok(&["put", "w", "--ignore-value"]), "OK\n");
    assert_eq!(ctl.ok(&["get", "w", "--print-value-only"]), "2\n");
    assert_eq!(ctl.ok(&["del", "w", "--prev-kv"]), "1\nw\n2\n");
    assert_eq!(ctl.ok(&["del", "w"]), "0\n");
    let json = ctl.ok(&["-w", "json", "put", "j", "x"]);
    assert!(json.starts_with("{\"header\":{\"cluster_id\":"), "{json}");
    let json = ctl.ok(&["-w", "json", "del", "j", "--prev-kv"]);
    assert!(
        json.contains("\"deleted\":1,\"prev_kvs\":[{\"key\":\"ag==\""),
        "{json}"
    );
    let txn = "mod(\"k1\") > \"0\"\n\nput t1 x\nget t1\ndel k3 --prev-kv\n\nput t2 y\n\n";
    let out = ctl.run(&["txn"], Some(txn));
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "SUCCESS\n\nOK\n\nt1\nx\n\n1\nk3\nv3\n");
    let out = ctl.run(
        &["txn", "-i"],
        Some("version(\"k1\") = \"7\"\n\nput t1 x\n\nput t2 y\n\n"),
    );
    assert_eq!(
        out.stdout,
        "compares:\nsuccess requests (get, put, del):\nfailure requests (get, put, del):\nFAILURE\n\nOK\n"
    );
    assert_eq!(ctl.ok(&["del", "t", "--prefix"]), "2\n");
}

fn leases(ctl: &Ctl) {
    let granted = ctl.ok(&["lease", "grant", "60"]);
    let id = lease_of(&granted);
    assert_eq!(granted, format!("lease {id} granted with TTL(60s)\n"));
    assert_eq!(ctl.ok(&["put", "leased", "v", "--lease", &id]), "OK\n");
    let ttl = ctl.ok(&["lease", "timetolive", &id, "--keys"]);
    assert!(
        ttl.starts_with(&format!("lease {id} granted with TTL(60s), remaining("))
            && ttl.ends_with("s), attached keys([leased])\n"),
        "{ttl}"
    );
    assert_eq!(
        ctl.ok(&["lease", "keep-alive", "--once", &id]),
        format!("lease {id} keepalived with TTL(60)\n")
    );
    assert_eq!(
        ctl.ok(&["lease", "list"]),
        format!("found 1 leases\n{id}\n")
    );
    assert_eq!(
        ctl.ok(&["lease", "revoke", &id]),
        format!("lease {id} revoked\n")
    );
    assert_eq!(
        ctl.ok(&["lease", "timetolive", &id]),
        format!("lease {id} already expired\n")
    );
    assert_eq!(ctl.ok(&["get", "leased"]), "");
    ctl.fails(
        &["lease", "revoke", &id],
        None,
        "failed to revoke lease (etcdserver: requested lease not found)",
    );
    let out = ctl.fails(&["lease", "revoke", "zz"], None, "bad lease ID arg");
    assert_eq!(out.code, 128, "etcdctl's code for bad arguments: {out:?}");
    ctl.fails(
        &["put", "a", "b", "--lease", "123"],
        None,
        "etcdserver: requested lease not found",
    );
    ctl.fails(
        &["put", "a", "b", "--lease", "xyz"],
        None,
        "expecting ID in Hex",
    );
}

fn watch(ctl: &Ctl) {
    let rev = revision_of(&ctl.ok(&["-w", "json", "get", "foo"]));
    let start = (rev + 1).to_string();
    let (mut child, rx) = ctl.spawn(&["watch", "wk", "--prefix", "--prev-kv", "--rev", &start]);
    assert_eq!(ctl.ok(&["put", "wk1", "a"]), "OK\n");
    assert_eq!(ctl.ok(&["put", "wk1", "b"]), "OK\n");
    assert_eq!(ctl.ok(&["del", "wk1"]), "1\n");
    let lines = read_lines(&rx, 13);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        lines,
        ["PUT", "wk1", "a", "PUT", "wk1", "a", "wk1", "b", "DELETE", "wk1", "b", "wk1", ""]
    );
    // One response per event: the watch is live before each write.
    let rev = revision_of(&ctl.ok(&["-w", "json", "get", "foo"]));
    let start = (rev + 1).to_string();
    let (mut child, rx) = ctl.spawn(&["-w", "json", "watch", "wj", "--rev", &start]);
    assert_eq!(ctl.ok(&["put", "wj", "v"]), "OK\n");
    let put = read_lines(&rx, 1).remove(0);
    assert_eq!(ctl.ok(&["del", "wj"]), "1\n");
    let del = read_lines(&rx, 1).remove(0);
    let _ = child.kill();
    let _ = child.wait();
    assert!(put.starts_with("{\"Header\":{\"cluster_id\":"), "{put}");
    assert!(
        put.contains(&format!(
            "\"Events\":[{{\"kv\":{{\"key\":\"d2o=\",\"create_revision\":{start},\"mod_revision\":{start},\"version\":1,\"value\":\"dg==\"}}}}]"
        )),
        "{put}"
    );
    assert!(
        del.contains("\"Events\":[{\"type\":1,\"kv\":{\"key\":\"d2o=\""),
        "{del}"
    );
    assert!(
        del.ends_with("\"CompactRevision\":0,\"Canceled\":false,\"Created\":false}"),
        "{del}"
    );
}

fn compaction_and_errors(ctl: &Ctl) {
    let rev = revision_of(&ctl.ok(&["-w", "json", "get", "foo"]));
    let r = rev.to_string();
    assert_eq!(
        ctl.ok(&["compaction", &r, "--physical"]),
        format!("compacted revision {rev}\n")
    );
    ctl.fails(
        &["get", "foo", "--rev", "2"],
        None,
        "settctl: error: etcdserver: mvcc: required revision has been compacted",
    );
    ctl.fails(
        &["compaction", "2"],
        None,
        "etcdserver: mvcc: required revision has been compacted",
    );
    ctl.fails(
        &["get", "foo", "--rev", "1000000"],
        None,
        "etcdserver: mvcc: required revision is a future revision",
    );
    let out = ctl.fails(
        &["watch", "foo", "--rev", "2"],
        None,
        "watch is canceled by the server",
    );
    assert_eq!(
        out.stdout,
        "watch was canceled (etcdserver: mvcc: required revision has been compacted)\n"
    );
    assert_eq!(out.code, 5, "etcdctl's code for a canceled watch: {out:?}");
    // Bad input.
    let out = ctl.fails(
        &["get", "foo", "--bogus"],
        None,
        "unexpected argument '--bogus'",
    );
    assert_eq!(out.code, 2, "{out:?}");
    let out = ctl.fails(
        &["-w", "table", "get", "foo"],
        None,
        "table not supported as output format",
    );
    assert_eq!(
        out.code, 4,
        "etcdctl's code for an unsupported format: {out:?}"
    );
    ctl.fails(
        &["-w", "yaml", "get", "foo"],
        None,
        "unsupported output format",
    );
    ctl.fails(
        &["get", "k", "--prefix", "--from-key"],
        None,
        "cannot be set at the same time",
    );
    let out = ctl.fails(&["txn"], Some("bad\n\n\n"), "malformed comparison: bad");
    assert_eq!(out.code, 3, "etcdctl's code for bad txn input: {out:?}");
    ctl.fails(
        &["txn"],
        Some("\nfrob a b\n\n\n"),
        "invalid txn request: frob a b",
    );
    ctl.fails(&["member", "remove", "zz"], None, "bad member ID arg");
    ctl.fails(
        &["member", "remove", "1234"],
        None,
        "etcdserver: member not found",
    );
    ctl.fails(&["lease", "grant", "abc"], None, "bad TTL");
}

fn unreachable(ctl: &Ctl) {
    // Nothing listens on these ports: the run fails (within the dial
    // timeout; `Ctl::run` panics if it ever hangs) with a clear message.
    let (port, _) = two_free_ports();
    let ep = format!("127.0.0.1:{port}");
    let out = ctl.run_at(&ep, &["--dial-timeout", "2s", "get", "foo"], None);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .starts_with("settctl: error: cannot connect to 127.0.0.1:"),
        "{out:?}"
    );
    let two = format!("{ep},127.0.0.1:{}", two_free_ports().0);
    let out = ctl.run_at(
        &two,
        &[
            "--dial-timeout",
            "1s",
            "--command-timeout",
            "2s",
            "put",
            "a",
            "b",
        ],
        None,
    );
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.starts_with("settctl: error: "), "{out:?}");
}

fn maintenance(ctl: &Ctl, all: &str, dir: &Path) {
    let file = dir.join("saved.db");
    let file_arg = file.to_str().expect("utf-8 path");
    assert_eq!(
        ctl.ok(&["snapshot", "save", file_arg]),
        format!("Snapshot saved at {file_arg}\n")
    );
    assert!(!dir.join("saved.db.part").exists());
    assert!(ctl
        .ok(&["snapshot", "status", file_arg])
        .contains("valid snapshot file"));
    let out = ctl.run_at(all, &["snapshot", "save", file_arg], None);
    assert_ne!(out.code, 0, "one endpoint only: {out:?}");

    assert_eq!(
        ctl.ok(&["defrag"]),
        format!("Finished defragmenting etcd member[{}]\n", ctl.endpoint)
    );
    assert_eq!(ctl.ok(&["alarm", "disarm"]), "");

    let out = ctl.run_at(all, &["endpoint", "health"], None);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "");
    assert_eq!(
        out.stderr
            .matches(" is healthy: successfully committed proposal: took = ")
            .count(),
        3,
        "{out:?}"
    );
    let out = ctl.run(&["-w", "json", "endpoint", "health", "--cluster"], None);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout.matches("\"health\":true").count(), 3, "{out:?}");
    let out = ctl.run(&["-w", "table", "endpoint", "status", "--cluster"], None);
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 7, "{out:?}");
    assert!(lines[1].contains(" ENDPOINT ") && lines[1].contains(" RAFT APPLIED INDEX "));
    assert!(
        lines[3..6]
            .iter()
            .all(|l| l.starts_with("| http://127.0.0.1:")),
        "{out:?}"
    );
    let out = ctl.run(&["endpoint", "status"], None);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.starts_with(&format!("{}, ", ctl.endpoint)),
        "{out:?}"
    );
    let dead = format!("127.0.0.1:{}", two_free_ports().0);
    let out = ctl.run_at(&dead, &["endpoint", "health", "--dial-timeout", "1s"], None);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains(&format!("{dead} is unhealthy")),
        "{out:?}"
    );
}

fn membership(ctl: &Ctl) {
    let (_, peer) = two_free_ports();
    let url = format!("http://127.0.0.1:{peer}");
    let out = ctl.ok(&["member", "add", "extra", "--learner", "--peer-urls", &url]);
    let first = out.lines().next().expect("output");
    assert!(first.starts_with("Member "), "{out}");
    assert!(first.contains(" added to cluster "), "{out}");
    assert!(out.contains("\nETCD_NAME=\"extra\"\n"), "{out}");
    assert!(out.contains(&format!("extra={url}")), "{out}");
    assert!(
        out.ends_with("ETCD_INITIAL_CLUSTER_STATE=\"existing\"\n"),
        "{out}"
    );
    let id = first
        .split_whitespace()
        .nth(1)
        .expect("member id")
        .to_owned();
    let list = ctl.ok(&["member", "list"]);
    assert!(
        list.contains(&format!("{id}, unstarted, , {url}, , true\n")),
        "{list}"
    );
    let removed = ctl.ok(&["member", "remove", &id]);
    assert!(
        removed.starts_with(&format!("Member {id:>16} removed from cluster ")),
        "{removed}"
    );
    assert!(!ctl.ok(&["member", "list"]).contains(&url));
    ctl.fails(
        &["member", "add", "x"],
        None,
        "member peer urls not provided",
    );
}

#[test]
fn settctl_commands() {
    require_binaries();
    let bin = built_binary("settctl");
    let cluster = Cluster::start(ClusterOptions::default());
    let ctl = Ctl {
        bin,
        endpoint: cluster.client_url(0),
    };
    let all = cluster.client_urls().join(",");
    let work = cluster.dir().join("settctl-test");
    std::fs::create_dir_all(&work).expect("work directory");

    let started = Instant::now();
    seed(&ctl);
    read_only_matches_etcdctl(&ctl);
    writes(&ctl);
    leases(&ctl);
    watch(&ctl);
    compaction_and_errors(&ctl);
    unreachable(&ctl);
    maintenance(&ctl, &all, &work);
    membership(&ctl);
    eprintln!("settctl_commands: {:?}", started.elapsed());
}
