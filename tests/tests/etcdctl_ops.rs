//! `etcdctl` 3.4 against a three-member sett cluster for the commands the
//! differential test (`etcdctl.rs`) does not cover because their output
//! carries ids and timings: `watch`, `lease grant|keep-alive|timetolive|
//! list|revoke`, `member list|add|remove`, `endpoint status|health`
//! (`--cluster`), `alarm list`, `defrag` and `snapshot save`.
//!
//! Needs `/usr/bin/etcdctl` 3.4 (`.ci/setup.sh`).

#[allow(dead_code)]
#[path = "../src/cluster.rs"]
mod cluster;

use cluster::{Cluster, ClusterOptions};
use sett_tests::etcd_ref::{etcdctl, require_binaries, CtlOutput, ETCDCTL_BIN};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Bound on waiting for a background `etcdctl watch` to print.
const WATCH_WAIT: Duration = Duration::from_secs(20);

fn ok(out: CtlOutput, what: &str) -> String {
    assert_eq!(out.code, 0, "{what}: {out:?}");
    out.stdout
}

fn field<'a>(json: &'a serde_json::Value, path: &[&str]) -> &'a serde_json::Value {
    path.iter().fold(json, |v, k| &v[*k])
}

#[test]
fn etcdctl_watch_lease_member_endpoint_and_maintenance_commands() {
    require_binaries();
    let cluster = Cluster::start(ClusterOptions::default());
    let urls = cluster.client_urls();
    let ep = urls[0].as_str();
    let all = urls.join(",");

    // watch: started at a fixed revision, so no event can be missed.
    let rev: i64 = {
        let out = ok(
            etcdctl(ep, &["put", "w/start", "0", "-w", "json"], None),
            "put",
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        field(&v, &["header", "revision"]).as_i64().unwrap()
    };
    let from = (rev + 1).to_string();
    let mut watch = Command::new(ETCDCTL_BIN)
        .env("ETCDCTL_API", "3")
        .args([
            &format!("--endpoints={}", urls[1]),
            "watch",
            "--prefix",
            "w/",
            "--prev-kv",
            "--rev",
            &from,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    ok(etcdctl(ep, &["put", "w/a", "1"], None), "put");
    ok(etcdctl(ep, &["put", "w/a", "2"], None), "put");
    ok(etcdctl(ep, &["del", "w/a"], None), "del");
    ok(etcdctl(ep, &["put", "other", "x"], None), "put");
    // etcdctl prints each event as its type, the previous key-value (if
    // any), then the key-value: 3 + 5 + 5 lines (a deleted key's value is
    // an empty line).
    let deadline = Instant::now() + WATCH_WAIT;
    let stdout = watch.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            lines.push(line);
            if lines.len() == 13 {
                break;
            }
        }
        lines
    });
    while !reader.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = watch.kill();
    let _ = watch.wait();
    let lines = reader.join().unwrap();
    assert_eq!(
        lines,
        [
            "PUT", "w/a", "1", //
            "PUT", "w/a", "1", "w/a", "2", //
            "DELETE", "w/a", "2", "w/a", "",
        ],
        "watch output"
    );

    // lease grant | put --lease | timetolive --keys | keep-alive --once |
    // list | revoke.
    let out = ok(etcdctl(ep, &["lease", "grant", "60"], None), "lease grant");
    let id = out
        .strip_prefix("lease ")
        .and_then(|s| s.split(' ').next())
        .unwrap_or_else(|| panic!("lease grant printed {out:?}"))
        .to_owned();
    assert!(out.ends_with("granted with TTL(60s)\n"), "{out:?}");
    ok(
        etcdctl(ep, &["put", "--lease", &id, "l/k", "v"], None),
        "put --lease",
    );
    let out = ok(
        etcdctl(&urls[2], &["lease", "timetolive", &id, "--keys"], None),
        "timetolive",
    );
    assert!(
        out.starts_with(&format!("lease {id} granted with TTL(60s), remaining(")),
        "{out:?}"
    );
    assert!(out.ends_with("attached keys([l/k])\n"), "{out:?}");
    let out = ok(
        etcdctl(&urls[1], &["lease", "keep-alive", "--once", &id], None),
        "keep-alive",
    );
    assert_eq!(out, format!("lease {id} keepalived with TTL(60)\n"));
    let out = ok(etcdctl(ep, &["lease", "list"], None), "lease list");
    assert_eq!(out, format!("found 1 leases\n{id}\n"));
    let out = ok(etcdctl(ep, &["lease", "revoke", &id], None), "revoke");
    assert_eq!(out, format!("lease {id} revoked\n"));
    let out = ok(etcdctl(ep, &["get", "l/k"], None), "get");
    assert_eq!(out, "");
    let out = ok(
        etcdctl(ep, &["lease", "timetolive", &id], None),
        "timetolive",
    );
    assert_eq!(out, format!("lease {id} already expired\n"));
    let out = etcdctl(ep, &["lease", "revoke", &id], None);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("etcdserver: requested lease not found"),
        "{out:?}"
    );

    // member list | add | remove.
    let list = ok(etcdctl(ep, &["member", "list"], None), "member list");
    assert_eq!(list.lines().count(), 3, "{list}");
    for (i, url) in urls.iter().enumerate() {
        let line = list
            .lines()
            .find(|l| l.contains(url.as_str()))
            .unwrap_or_else(|| panic!("{url} missing from {list}"));
        assert!(
            line.contains(&format!(", started, {}, ", cluster.name(i))),
            "{line}"
        );
        assert!(line.ends_with(", false"), "{line}");
    }
    let out = ok(
        etcdctl(
            ep,
            &[
                "member",
                "add",
                "extra",
                "--learner",
                "--peer-urls=http://127.0.0.1:9",
            ],
            None,
        ),
        "member add",
    );
    let added = out
        .strip_prefix("Member ")
        .and_then(|s| s.split(' ').next())
        .unwrap_or_else(|| panic!("member add printed {out:?}"))
        .to_owned();
    assert!(
        out.contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\""),
        "{out}"
    );
    let list = ok(etcdctl(&urls[2], &["member", "list"], None), "member list");
    let line = list.lines().find(|l| l.starts_with(&added)).unwrap();
    assert!(
        line.contains("unstarted") && line.ends_with(", true"),
        "{line}"
    );
    let dup = etcdctl(
        ep,
        &["member", "add", "again", "--peer-urls=http://127.0.0.1:9"],
        None,
    );
    assert_ne!(dup.code, 0);
    assert!(
        dup.stderr.contains("etcdserver: Peer URLs already exists"),
        "{dup:?}"
    );
    let out = ok(
        etcdctl(&urls[1], &["member", "remove", &added], None),
        "member remove",
    );
    assert!(
        out.starts_with(&format!("Member {added} removed from cluster ")),
        "{out}"
    );
    let gone = etcdctl(ep, &["member", "remove", &added], None);
    assert_ne!(gone.code, 0);
    assert!(
        gone.stderr.contains("etcdserver: member not found"),
        "{gone:?}"
    );

    // endpoint status --cluster: every member, one leader, the same
    // leader everywhere.
    let out = ok(
        etcdctl(ep, &["endpoint", "status", "--cluster", "-w", "json"], None),
        "endpoint status",
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    let leaders: Vec<u64> = rows
        .iter()
        .map(|r| field(r, &["Status", "leader"]).as_u64().unwrap())
        .collect();
    assert!(leaders.iter().all(|l| *l == leaders[0] && *l != 0), "{out}");
    let ids: Vec<u64> = rows
        .iter()
        .map(|r| {
            field(r, &["Status", "header", "member_id"])
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(ids.contains(&leaders[0]), "{out}");
    // etcdctl 3.4 prints health results on stderr.
    let out = etcdctl(&all, &["endpoint", "health", "--cluster"], None);
    assert_eq!(out.code, 0, "{out:?}");
    let healthy = out
        .stderr
        .matches("is healthy: successfully committed proposal")
        .count();
    assert_eq!(healthy, 3, "{out:?}");

    // alarm list (none), defrag, snapshot save.
    assert_eq!(ok(etcdctl(ep, &["alarm", "list"], None), "alarm list"), "");
    let out = ok(etcdctl(ep, &["defrag"], None), "defrag");
    assert_eq!(out, format!("Finished defragmenting etcd member[{ep}]\n"));
    let file = cluster.dir().join("saved.db");
    let out = etcdctl(ep, &["snapshot", "save", file.to_str().unwrap()], None);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout,
        format!("Snapshot saved at {}\n", file.display())
    );
    let size = std::fs::metadata(&file).unwrap().len();
    assert_eq!(size % 512, 32, "snapshot file of {size} bytes");
}
