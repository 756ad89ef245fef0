//! Differential test: one fixed `etcdctl` command sequence runs against a
//! fresh single-member etcd 3.4 and against a fresh three-member sett
//! cluster, and every command's exit code, stdout and stderr must match
//! after normalisation (`sett_tests::etcd_ref::normalize`: ids, raft terms
//! and indexes, database sizes, server version, endpoint URLs, timestamps
//! and durations are masked; everything else, revisions included, is
//! compared exactly).
//!
//! Most commands go to the sett leader; a few go through a follower's
//! client URL. The sequence covers put, get (prefix, rev, limit,
//! keys-only, from-key, sort, print-value-only, hex, json), del (prefix,
//! prev-kv), txn from stdin (simple and json), compaction (logical and
//! physical), the error paths (compacted and future revisions, empty
//! keys, duplicate txn keys, ignore-value on a missing key) and `endpoint
//! health` / `endpoint status`.
//!
//! Needs `/usr/bin/etcd` and `/usr/bin/etcdctl` 3.4 (`.ci/setup.sh`).
//! `SETT_ETCDCTL_DUMP=1` prints etcd's normalised output of every step,
//! for working on the sequence.

#[allow(dead_code)]
#[path = "../src/cluster.rs"]
mod cluster;

use cluster::{Cluster, ClusterOptions};
use sett_tests::etcd_ref::{
    etcdctl, normalize, normalize_status_line, require_binaries, CtlOutput, EtcdRef,
};
use std::fmt::Write as _;
use std::time::Instant;

/// Which member of the cluster a command goes to (the reference etcd has
/// only one, which serves both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    Leader,
    Follower,
}

/// What a step must do on etcd, checked before any comparison so that a
/// typo in the sequence cannot make both sides fail alike unnoticed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Ok,
    Fail,
}

/// One etcdctl invocation.
struct Step {
    node: Node,
    args: Vec<&'static str>,
    stdin: Option<&'static str>,
    expect: Expect,
    /// Stdout is the simple `endpoint status` line.
    status_line: bool,
    /// The endpoint is given as `host:port` instead of a URL.
    bare_addr: bool,
}

fn step(node: Node, expect: Expect, args: &[&'static str]) -> Step {
    Step {
        node,
        args: args.to_vec(),
        stdin: None,
        expect,
        status_line: false,
        bare_addr: false,
    }
}

/// A command on the leader that must succeed.
fn ok(args: &[&'static str]) -> Step {
    step(Node::Leader, Expect::Ok, args)
}

/// A command on the leader that must fail.
fn fail(args: &[&'static str]) -> Step {
    step(Node::Leader, Expect::Fail, args)
}

/// A command on a follower that must succeed.
fn follower(args: &[&'static str]) -> Step {
    step(Node::Follower, Expect::Ok, args)
}

/// `s` with its endpoint given as `host:port`.
fn bare(s: Step) -> Step {
    Step {
        bare_addr: true,
        ..s
    }
}

/// `etcdctl txn [extra]` reading `script` (compares, blank line, success
/// ops, blank line, failure ops, blank line) from stdin.
fn txn(expect: Expect, extra: &[&'static str], script: &'static str) -> Step {
    let mut args = vec!["txn"];
    args.extend_from_slice(extra);
    Step {
        stdin: Some(script),
        ..step(Node::Leader, expect, &args)
    }
}

/// The sequence. Revisions in the comments assume a fresh store at
/// revision 1.
fn sequence() -> Vec<Step> {
    use Expect::{Fail, Ok};
    vec![
        // Writes: revisions 2..=7.
        ok(&["put", "foo", "bar"]),
        ok(&["put", "foo1", "bar1"]),
        ok(&["put", "foo2", "bar2"]),
        ok(&["put", "zoo", "zval"]),
        ok(&["put", "foo", "bar-new", "--prev-kv"]),
        ok(&["put", "foo3", "v3", "-w", "json"]),
        // Reads.
        ok(&["get", "foo"]),
        ok(&["get", "foo", "-w", "json"]),
        ok(&["get", "foo", "--prefix"]),
        ok(&["get", "foo", "--prefix", "-w", "json"]),
        ok(&["get", "foo", "--prefix", "--limit=2"]),
        ok(&["get", "foo", "--prefix", "--limit=2", "-w", "json"]),
        ok(&["get", "foo", "--prefix", "--keys-only"]),
        ok(&["get", "foo", "--prefix", "--keys-only", "-w", "json"]),
        ok(&["get", "foo1", "--from-key"]),
        ok(&["get", "foo1", "--from-key", "--limit=2", "-w", "json"]),
        ok(&["get", "", "--from-key", "--keys-only"]),
        ok(&["get", "", "--from-key", "-w", "json"]),
        ok(&["get", "foo", "foo2"]),
        ok(&["get", "foo", "--prefix", "--sort-by=MODIFY", "--order=DESCEND"]),
        ok(&["get", "foo", "--prefix", "--sort-by=VALUE", "--order=ASCEND", "-w", "json"]),
        ok(&["get", "foo", "--prefix", "--sort-by=CREATE", "--order=DESCEND", "--limit=2", "-w", "json"]),
        ok(&["get", "foo", "--prefix", "--sort-by=VERSION", "--order=DESCEND", "--keys-only"]),
        ok(&["get", "foo", "--prefix", "--sort-by=KEY", "--order=DESCEND", "--print-value-only"]),
        ok(&["get", "foo", "--prefix", "--sort-by=MODIFY"]),
        ok(&["get", "foo", "--prefix", "--order=DESCEND", "-w", "json"]),
        ok(&["get", "foo", "--prefix", "--print-value-only"]),
        // etcdctl 3.4 has no --count-only; the usage error must agree too.
        fail(&["get", "foo", "--prefix", "--count-only", "-w", "json"]),
        ok(&["get", "foo", "--rev=2"]),
        ok(&["get", "foo", "--rev=2", "-w", "json"]),
        ok(&["get", "foo1", "--rev=2", "-w", "json"]),
        ok(&["get", "foo", "--prefix", "--rev=4", "-w", "json"]),
        ok(&["get", "foo", "--prefix", "--rev=4", "--limit=1", "-w", "json"]),
        ok(&["get", "nosuch"]),
        ok(&["get", "nosuch", "-w", "json"]),
        ok(&["get", "foo", "--prefix", "--hex"]),
        // Through a follower: revision 8.
        follower(&["put", "fol", "fv"]),
        follower(&["get", "fo", "--prefix", "-w", "json"]),
        follower(&["get", "fol"]),
        // Put options: revision 9.
        ok(&["put", "foo3", "--ignore-value"]),
        fail(&["put", "nosuch", "--ignore-value"]),
        ok(&["get", "foo3", "-w", "json"]),
        ok(&["get", "foo", "--consistency=s", "-w", "json"]),
        // Deletes: revisions 10..=13.
        ok(&["del", "foo1"]),
        ok(&["del", "nosuch"]),
        ok(&["del", "nosuch", "-w", "json"]),
        ok(&["del", "foo", "foo3", "--prev-kv"]),
        ok(&["del", "foo", "--prefix", "--prev-kv", "-w", "json"]),
        ok(&["del", "z", "--from-key", "--prev-kv", "-w", "json"]),
        ok(&["get", "", "--from-key", "-w", "json"]),
        // Transactions: revisions 14..=19 (a failed compare with only
        // reads writes nothing).
        ok(&["put", "k1", "v1"]),
        ok(&["put", "k2", "v2"]),
        txn(
            Ok,
            &[],
            "mod(\"k1\") > \"0\"\nvalue(\"k1\") = \"v1\"\n\nput k1 s1\nget k1\n\nput k1 f1\n\n",
        ),
        txn(
            Ok,
            &["-w", "json"],
            "value(\"k1\") = \"v1\"\n\nput k2 x\n\nget k --prefix\ndel k2\n\n",
        ),
        txn(
            Ok,
            &[],
            "version(\"nokey\") = \"0\"\ncreate(\"k2\") = \"0\"\n\nput k3 v3\nget k --prefix --keys-only\n\nget k1\n\n",
        ),
        txn(
            Ok,
            &["-w", "json"],
            "version(\"k1\") > \"5\"\n\nput k1 never\n\nget k1\nget nosuch\n\n",
        ),
        txn(
            Ok,
            &["-w", "json"],
            "value(\"k3\") != \"v3\"\n\nget k3\n\nput k1 s2 --prev-kv\ndel k3 --prev-kv\n\n",
        ),
        txn(Fail, &[], "\nput k a\nput k b\n\n\n"),
        txn(Ok, &["-w", "json"], "\n\n\n"),
        ok(&["get", "k", "--prefix", "-w", "json"]),
        // Compaction and the errors around it.
        ok(&["compaction", "5"]),
        fail(&["get", "foo", "--rev=4"]),
        ok(&["get", "foo", "--prefix", "--rev=5", "-w", "json"]),
        fail(&["get", "foo", "--rev=999"]),
        fail(&["get", "foo", "--rev=999", "-w", "json"]),
        fail(&["compaction", "5"]),
        fail(&["compaction", "999"]),
        ok(&["compaction", "8", "--physical"]),
        fail(&["get", "zoo", "--rev=6", "-w", "json"]),
        ok(&["get", "fol", "--rev=8"]),
        follower(&["get", "k", "--prefix", "--rev=14", "-w", "json"]),
        // Odds and ends after the compaction: revisions 20 and 21.
        txn(
            Fail,
            &[],
            "mod(\"k1\") < \"100\"\n\ndel k --prefix\nput k5 v5\n\n\n",
        ),
        ok(&["put", "k4", ""]),
        ok(&["get", "k4", "-w", "json"]),
        txn(
            Ok,
            &["-w", "json"],
            "create(\"k4\") = \"20\"\nvalue(\"k4\") = \"\"\n\ndel k --prefix --prev-kv\nget k --prefix\n\n\n",
        ),
        ok(&["get", "", "--from-key", "--rev=15", "--keys-only"]),
        ok(&["get", "k", "--from-key", "--rev=18", "--sort-by=VALUE", "--order=DESCEND", "--limit=1", "-w", "json"]),
        // Empty keys.
        fail(&["put", "", "x"]),
        fail(&["get", ""]),
        fail(&["del", ""]),
        // Endpoint commands, with the endpoint as a URL (as in the rest of
        // the sequence) and as host:port. For `endpoint status` etcdctl 3.4
        // dials the endpoint string as given, so a URL endpoint arrives as
        // the HTTP/2 `:authority` "http://127.0.0.1:<port>"; etcd serves
        // it all the same, and so must a compatible server.
        ok(&["endpoint", "health"]),
        ok(&["endpoint", "status", "-w", "json"]),
        Step {
            status_line: true,
            ..ok(&["endpoint", "status"])
        },
        follower(&["endpoint", "health"]),
        follower(&["endpoint", "status", "-w", "json"]),
        bare(ok(&["endpoint", "health"])),
        bare(ok(&["endpoint", "status", "-w", "json"])),
        bare(Step {
            status_line: true,
            ..ok(&["endpoint", "status"])
        }),
        bare(follower(&["endpoint", "status", "-w", "json"])),
        bare(follower(&["get", "fol", "-w", "json"])),
        // The final state, and that nothing above moved the revision twice.
        follower(&["get", "", "--from-key", "-w", "json"]),
        ok(&["get", "", "--from-key", "-w", "json"]),
    ]
}

/// The URLs a sequence runs against.
struct Target<'a> {
    leader: &'a str,
    follower: &'a str,
    /// Every URL of the side, masked in plain-text output.
    all: Vec<&'a str>,
}

/// A step's output after normalisation.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(steps: &[Step], target: &Target<'_>) -> Vec<(CtlOutput, Seen)> {
    // URLs first: each contains its host:port form.
    let bare = target
        .all
        .iter()
        .map(|u| u.strip_prefix("http://").unwrap_or(u));
    let masks: Vec<&str> = target.all.iter().copied().chain(bare).collect();
    steps
        .iter()
        .map(|s| {
            let url = match s.node {
                Node::Leader => target.leader,
                Node::Follower => target.follower,
            };
            let addr = if s.bare_addr {
                url.strip_prefix("http://").unwrap_or(url)
            } else {
                url
            };
            let raw = etcdctl(addr, &s.args, s.stdin);
            let mut stdout = normalize(&raw.stdout, &masks);
            if s.status_line {
                stdout = stdout
                    .lines()
                    .map(normalize_status_line)
                    .collect::<Vec<_>>()
                    .join("\n");
            }
            let seen = Seen {
                code: raw.code,
                stdout,
                stderr: normalize(&raw.stderr, &masks),
            };
            (raw, seen)
        })
        .collect()
}

fn describe(s: &Step) -> String {
    let addr = if s.bare_addr { "host:port" } else { "url" };
    let mut d = format!("[{:?} {addr}] etcdctl {:?}", s.node, s.args);
    if let Some(input) = s.stdin {
        let _ = write!(d, " <<< {input:?}");
    }
    d
}

#[test]
fn etcdctl_sequence_matches_etcd() {
    require_binaries();
    let started = Instant::now();
    let steps = sequence();

    // Reference run on a fresh etcd.
    let etcd_dir = tempfile::tempdir().expect("tempdir");
    let etcd = EtcdRef::start(etcd_dir.path());
    let url = etcd.client_url().to_string();
    let want = run(
        &steps,
        &Target {
            leader: &url,
            follower: &url,
            all: vec![&url],
        },
    );
    drop(etcd);
    let dump = std::env::var_os("SETT_ETCDCTL_DUMP").is_some();
    for (s, (raw, seen)) in steps.iter().zip(&want) {
        if dump {
            eprintln!(
                "=== {}\ncode {}\n{}{}",
                describe(s),
                seen.code,
                seen.stdout,
                seen.stderr
            );
        }
        let succeeded = raw.code == 0;
        assert_eq!(
            succeeded,
            s.expect == Expect::Ok,
            "the reference etcd disagrees with the sequence's expectation for {}: {raw:?}",
            describe(s)
        );
    }

    // The same on a fresh sett cluster.
    let members = 3;
    let cluster = Cluster::start(ClusterOptions {
        members,
        ..ClusterOptions::default()
    });
    let leader = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(cluster.leader());
    let follower = (leader + 1) % members;
    let urls = cluster.client_urls();
    let got = run(
        &steps,
        &Target {
            leader: &urls[leader],
            follower: &urls[follower],
            all: urls.iter().map(String::as_str).collect(),
        },
    );

    let mut report = String::new();
    let mut mismatches = 0;
    for (s, ((_, w), (graw, g))) in steps.iter().zip(want.iter().zip(&got)) {
        if w != g {
            mismatches += 1;
            let _ = writeln!(
                report,
                "\n=== {}\n--- etcd (normalised): code {}\n{}{}\n--- sett (normalised): code {}\n{}{}\n--- sett (raw): {graw:?}",
                describe(s),
                w.code,
                w.stdout,
                w.stderr,
                g.code,
                g.stdout,
                g.stderr,
            );
        }
    }
    if mismatches > 0 {
        for i in 0..members {
            let _ = writeln!(
                report,
                "\n=== sett member {i} log tail\n{}",
                cluster.log_tail(i)
            );
        }
    }
    eprintln!(
        "{} steps, {mismatches} mismatches, {:?}",
        steps.len(),
        started.elapsed()
    );
    assert_eq!(mismatches, 0, "sett differs from etcd 3.4:{report}");
}
