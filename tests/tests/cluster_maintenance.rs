//! The Maintenance service of a real three-member cluster, through an
//! etcd client, `etcdctl` 3.4 and `settctl`:
//!
//! 1. after a random workload (puts, deletes, txns, a compaction) every
//!    member answers the same HashKV at the same revisions;
//! 2. Status: one leader named by all, applied index ≤ last index, a
//!    version, a non-empty database;
//! 3. `etcdctl snapshot save` writes a file of etcd's shape that
//!    `settctl snapshot status` accepts; restored once per member with
//!    `settctl snapshot restore`, it makes a new cluster holding the same
//!    keys, values and revisions, whose next write goes on from the saved
//!    revision; a damaged file is refused;
//! 4. Defragment keeps every key and the hashes;
//! 5. MoveLeader answers UNIMPLEMENTED (openraft 0.9 cannot transfer
//!    leadership).
//!
//! Scenarios run one at a time, each on a cluster of its own. Every wait
//! and every child process is bounded; no timing is asserted.
//!
//! Needs `target/<profile>/sett` and `target/<profile>/settctl`
//! (`cargo build -p sett-server --bin sett -p sett-client --bin settctl`)
//! and `/usr/bin/etcdctl` 3.4 for the snapshot scenario.

#[path = "../src/cluster.rs"]
#[allow(dead_code)]
mod cluster;

use cluster::{
    bounded, built_binary, kv_rows, run_scenario, text, Cluster, ClusterOptions, ExtraMember, KvRow,
};
use etcd_client::{Client, CompactionOptions, Compare, CompareOp, Error, GetOptions, Txn, TxnOp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Bound on members agreeing on a state.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on one client request.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on one `etcdctl` or `settctl` run.
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between two polls.
const POLL: Duration = Duration::from_millis(100);
/// Operations of the random workload.
const WORKLOAD_OPS: usize = 400;
/// Distinct keys the workload touches.
const WORKLOAD_KEYS: usize = 40;
/// The etcdctl the snapshot scenario drives.
const ETCDCTL: &str = "/usr/bin/etcdctl";

/// Every key of the member at `url` (serializable) once it has applied
/// `revision`: `(header revision, rows)`.
async fn all_rows_at(url: &str, revision: i64) -> (i64, Vec<KvRow>) {
    let mut client = cluster::connect(url).await;
    let opts = GetOptions::new().with_all_keys().with_serializable();
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    loop {
        let last = match bounded(CALL_TIMEOUT, client.get("", Some(opts.clone()))).await {
            Ok(resp) => {
                let rev = resp.header().expect("range header").revision();
                if rev >= revision {
                    return (rev, kv_rows(resp.kvs()));
                }
                format!("at revision {rev}")
            }
            Err(e) => e,
        };
        assert!(
            Instant::now() < deadline,
            "member at {url} does not reach revision {revision} within {CONVERGE_TIMEOUT:?}: {last}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// What a tool run left behind.
#[derive(Debug)]
struct Ran {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `command` to completion, at most [`TOOL_TIMEOUT`], its output
/// going to files under `dir` (no pipe to fill up).
fn run_tool(mut command: Command, dir: &Path, label: &str) -> Ran {
    let out_path = dir.join(format!("{label}.stdout"));
    let err_path = dir.join(format!("{label}.stderr"));
    let out = std::fs::File::create(&out_path).expect("create stdout file");
    let err = std::fs::File::create(&err_path).expect("create stderr file");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("{label}: spawn {command:?}: {e}"));
    let deadline = Instant::now() + TOOL_TIMEOUT;
    let status = loop {
        match child.try_wait().expect("wait for a tool") {
            Some(status) => break status,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{label}: {command:?} did not finish within {TOOL_TIMEOUT:?}");
            }
        }
    };
    let read = |p: &Path| std::fs::read(p).map(|b| text(&b)).unwrap_or_default();
    Ran {
        status,
        stdout: read(&out_path),
        stderr: read(&err_path),
    }
}

/// The random workload of puts, deletes and txns over `WORKLOAD_KEYS`
/// keys under `work/`, with one compaction halfway (at the revision of the
/// write before it). Requests rotate over `urls`; on a healthy cluster each
/// must succeed. Returns the compaction revision.
async fn random_workload(urls: &[String], seed: u64) -> i64 {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut clients: Vec<Client> = Vec::with_capacity(urls.len());
    for url in urls {
        clients.push(cluster::connect(url).await);
    }
    let key = |k: usize| format!("work/{k:03}");
    let mut compacted_at = 0;
    let mut last_rev = 0;
    for op in 0..WORKLOAD_OPS {
        let c = &mut clients[op % urls.len()];
        let k = key(rng.gen_range(0..WORKLOAD_KEYS));
        let revision = match rng.gen_range(0..10) {
            0..=5 => {
                let value = format!("v{op}-{}", rng.gen_range(0..1_000_000u32));
                bounded(CALL_TIMEOUT, c.put(k.as_str(), value, None))
                    .await
                    .unwrap_or_else(|e| panic!("op {op}: put {k}: {e}"))
                    .header()
                    .expect("put header")
                    .revision()
            }
            6 | 7 => bounded(CALL_TIMEOUT, c.delete(k.as_str(), None))
                .await
                .unwrap_or_else(|e| panic!("op {op}: delete {k}: {e}"))
                .header()
                .expect("delete header")
                .revision(),
            _ => {
                let other = key(rng.gen_range(0..WORKLOAD_KEYS));
                let limit = rng.gen_range(0..4);
                let txn = Txn::new()
                    .when([Compare::version(k.as_str(), CompareOp::Greater, limit)])
                    .and_then([
                        TxnOp::put(k.as_str(), format!("txn{op}"), None),
                        TxnOp::delete(
                            if other == k {
                                key(WORKLOAD_KEYS)
                            } else {
                                other
                            },
                            None,
                        ),
                    ])
                    .or_else([
                        TxnOp::put(key(WORKLOAD_KEYS + 1), format!("else{op}"), None),
                        TxnOp::get(k.as_str(), None),
                    ]);
                bounded(CALL_TIMEOUT, c.txn(txn))
                    .await
                    .unwrap_or_else(|e| panic!("op {op}: txn on {k}: {e}"))
                    .header()
                    .expect("txn header")
                    .revision()
            }
        };
        assert!(
            revision >= last_rev,
            "op {op}: revision {revision} after {last_rev}"
        );
        last_rev = revision;
        if op == WORKLOAD_OPS / 2 {
            bounded(
                CALL_TIMEOUT,
                c.compact(revision, Some(CompactionOptions::new().with_physical())),
            )
            .await
            .unwrap_or_else(|e| panic!("compact at {revision}: {e}"));
            compacted_at = revision;
        }
    }
    assert!(compacted_at > 1, "the workload compacted");
    compacted_at
}

/// Puts the key `marker` and returns its revision: every later check
/// waits until a member has applied it.
async fn put_marker(cluster: &Cluster) -> i64 {
    let mut client = cluster.client(0).await;
    bounded(CALL_TIMEOUT, client.put("marker", "here", None))
        .await
        .unwrap_or_else(|e| panic!("put marker: {e}"))
        .header()
        .expect("put header")
        .revision()
}

/// `(hash, compact_revision)` of HashKV at `revision` on every member,
/// each once it has applied `revision`.
async fn hashes_at(cluster: &Cluster, revision: i64) -> Vec<(u32, i64)> {
    let mut hashes = Vec::with_capacity(cluster.len());
    for i in 0..cluster.len() {
        all_rows_at(&cluster.client_url(i), revision).await;
        let client = cluster.client(i).await;
        let h = bounded(CALL_TIMEOUT, client.maintenance_client().hash_kv(revision))
            .await
            .unwrap_or_else(|e| panic!("HashKV({revision}) on {}: {e}", cluster.name(i)));
        hashes.push((h.hash(), h.compact_version()));
    }
    hashes
}

/// Every member answers the same HashKV at the same revision.
#[test]
fn hash_kv_agrees_after_workload() {
    run_scenario("hash_kv_agrees_after_workload", async {
        let cluster = Cluster::start(ClusterOptions::default());
        let compacted = random_workload(&cluster.client_urls(), 0x5e77).await;
        // The marker twice: the hash must change with the second put.
        let before_marker = put_marker(&cluster).await;
        let marker = put_marker(&cluster).await;
        assert!(
            compacted < before_marker,
            "compaction {compacted} < {before_marker}"
        );

        let mid = (compacted + before_marker) / 2;
        for rev in [compacted + 1, mid, before_marker, marker] {
            let hashes = hashes_at(&cluster, rev).await;
            eprintln!("HashKV at {rev}: {hashes:?}");
            assert!(
                hashes.iter().all(|h| *h == hashes[0]),
                "HashKV at revision {rev} differs between members: {hashes:?}"
            );
            assert_eq!(
                hashes[0].1, compacted,
                "compact revision reported by HashKV at {rev}"
            );
        }
        let a = hashes_at(&cluster, before_marker).await[0].0;
        let b = hashes_at(&cluster, marker).await[0].0;
        assert_ne!(a, b, "HashKV at {before_marker} and {marker}");

        // At or below the compaction point there is nothing to hash (etcd
        // 3.4 refuses the compaction revision itself too).
        let client = cluster.client(0).await;
        for rev in [compacted - 1, compacted] {
            match client.maintenance_client().hash_kv(rev).await {
                Err(Error::GRpcStatus(s)) => {
                    assert_eq!(format!("{:?}", s.code()), "OutOfRange", "{s:?}");
                    assert_eq!(
                        s.message(),
                        "etcdserver: mvcc: required revision has been compacted"
                    );
                }
                other => panic!("HashKV at {rev}, compaction revision {compacted}: {other:?}"),
            }
        }
    });
}

/// Status fields are consistent across members.
#[test]
fn status_fields() {
    run_scenario("status_fields", async {
        let cluster = Cluster::start(ClusterOptions::default());
        let mut client = cluster.client_all().await;
        for k in 0..20 {
            bounded(CALL_TIMEOUT, client.put(format!("s/{k}"), "x", None))
                .await
                .unwrap_or_else(|e| panic!("put: {e}"));
        }
        let marker = put_marker(&cluster).await;
        let ids: Vec<u64> = (0..cluster.len()).map(|i| cluster.member_id(i)).collect();
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        loop {
            let mut leaders = Vec::new();
            for i in 0..cluster.len() {
                all_rows_at(&cluster.client_url(i), marker).await;
                let s = cluster
                    .status(i)
                    .await
                    .unwrap_or_else(|e| panic!("Status of {}: {e}", cluster.name(i)));
                let header = s.header().expect("Status header");
                assert_eq!(
                    header.member_id(),
                    cluster.member_id(i),
                    "member id of {s:?}"
                );
                assert_ne!(header.cluster_id(), 0, "cluster id of {s:?}");
                assert!(header.revision() >= marker, "revision of {s:?}");
                assert!(
                    s.raft_applied_index() <= s.raft_index(),
                    "{}: applied index above the last index: {s:?}",
                    cluster.name(i)
                );
                assert!(s.raft_applied_index() > 0, "applied index of {s:?}");
                assert!(s.raft_term() > 0, "term of {s:?}");
                assert!(!s.version().is_empty(), "version of {s:?}");
                assert!(s.db_size() > 0, "db size of {s:?}");
                assert!(!s.is_learner(), "a voter reports is_learner: {s:?}");
                assert!(s.errors().is_empty(), "errors of {s:?}");
                leaders.push((s.leader(), header.cluster_id()));
            }
            let agreed = leaders.iter().all(|l| *l == leaders[0]) && ids.contains(&leaders[0].0);
            if agreed {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "members do not name one leader among {ids:x?} within {CONVERGE_TIMEOUT:?}: \
                 (leader, cluster id) {leaders:x?}"
            );
            tokio::time::sleep(POLL).await;
        }
    });
}

/// A member of the restored cluster.
type Restored = ExtraMember;

/// Flips one byte of `path`, at `offset`.
fn flip_byte(path: &Path, offset: usize) {
    let mut bytes = std::fs::read(path).expect("read snapshot copy");
    bytes[offset] ^= 0x5a;
    std::fs::write(path, bytes).expect("write snapshot copy");
}

/// `etcdctl snapshot save`, `settctl snapshot status` and `settctl
/// snapshot restore` into a new cluster.
#[test]
fn snapshot_save_restore() {
    assert!(
        Path::new(ETCDCTL).is_file(),
        "{ETCDCTL} is missing (Debian package etcd-client 3.4)"
    );
    let settctl = built_binary("settctl");
    let sett = built_binary("sett");
    run_scenario("snapshot_save_restore", async {
        let cluster = Cluster::start(ClusterOptions::default());
        random_workload(&cluster.client_urls(), 0xa11ce).await;
        let mut client = cluster.client(0).await;
        for k in 0..10 {
            bounded(
                CALL_TIMEOUT,
                client.put(format!("last/{k}"), format!("{k}"), None),
            )
            .await
            .unwrap_or_else(|e| panic!("put: {e}"));
        }
        let marker = put_marker(&cluster).await;
        let leader = cluster.leader().await;
        let (saved_rev, saved) = all_rows_at(&cluster.client_url(leader), marker).await;
        assert_eq!(saved_rev, marker, "no write after the marker");
        assert!(saved.len() > 10, "the workload left keys: {saved:?}");

        let work = cluster.dir().join("snapshot-test");
        std::fs::create_dir_all(&work).expect("create work directory");
        let file = work.join("saved.db");
        let mut save = Command::new(ETCDCTL);
        save.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", cluster.client_url(leader)))
            .arg("--dial-timeout=5s")
            .arg("--command-timeout=30s")
            .arg("snapshot")
            .arg("save")
            .arg(&file);
        let ran = run_tool(save, &work, "etcdctl-save");
        assert!(ran.status.success(), "etcdctl snapshot save: {ran:?}");
        assert!(
            ran.stdout.contains("Snapshot saved at"),
            "etcdctl snapshot save: {ran:?}"
        );
        let size = std::fs::metadata(&file).expect("saved file").len();
        assert_eq!(size % 512, 32, "saved file of {size} bytes");

        let mut status = Command::new(&settctl);
        status.args(["snapshot", "status"]).arg(&file);
        let ran = run_tool(status, &work, "settctl-status");
        assert!(ran.status.success(), "settctl snapshot status: {ran:?}");

        // A new three-member cluster from the file.
        let token = "sett-restored";
        let mut members: Vec<Restored> = (1..=3)
            .map(|k| Restored::new(&work, &format!("r{k}")))
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        for m in &members {
            let mut restore = Command::new(&settctl);
            restore
                .args(["snapshot", "restore"])
                .arg(&file)
                .arg(format!("--name={}", m.name))
                .arg(format!("--data-dir={}", m.data_dir.display()))
                .arg(format!("--initial-cluster={initial_cluster}"))
                .arg(format!("--initial-cluster-token={token}"))
                .arg(format!("--initial-advertise-peer-urls={}", m.peer_url))
                .arg(format!("--listen-peer-urls={}", m.peer_url))
                .arg(format!("--listen-client-urls={}", m.client_url))
                .arg(format!("--advertise-client-urls={}", m.client_url))
                .arg("--heartbeat-interval=50")
                .arg("--election-timeout=500");
            let ran = run_tool(restore, &work, &format!("settctl-restore-{}", m.name));
            assert!(ran.status.success(), "settctl snapshot restore: {ran:?}");
        }
        for m in &mut members {
            let data_dir = format!("--data-dir={}", m.data_dir.display());
            m.spawn(&sett, &[data_dir]);
        }

        // Up: one leader named by all three, which are exactly r1..r3.
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        loop {
            let mut seen = Vec::new();
            for m in &members {
                let mut c = cluster::connect(&m.client_url).await;
                seen.push(
                    bounded(Duration::from_secs(3), c.status())
                        .await
                        .map(|s| s.leader()),
                );
            }
            if seen
                .iter()
                .all(|s| matches!(s, Ok(l) if *l != 0 && Ok(*l) == seen[0]))
            {
                break;
            }
            let logs: Vec<String> = members
                .iter()
                .map(|m| format!("--- {} ---\n{}", m.name, m.log_tail()))
                .collect();
            assert!(
                Instant::now() < deadline,
                "the restored cluster elects no leader within {CONVERGE_TIMEOUT:?}: {seen:?}\n{}",
                logs.join("\n")
            );
            tokio::time::sleep(POLL).await;
        }
        let mut restored = cluster::connect(&members[0].client_url).await;
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        loop {
            let list = bounded(CALL_TIMEOUT, restored.member_list())
                .await
                .expect("MemberList of the restored cluster");
            let mut names: Vec<(String, Vec<String>)> = list
                .members()
                .iter()
                .map(|m| (m.name().to_owned(), m.peer_urls().to_vec()))
                .collect();
            names.sort();
            let expected: Vec<(String, Vec<String>)> = members
                .iter()
                .map(|m| (m.name.clone(), vec![m.peer_url.clone()]))
                .collect();
            if names == expected {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "restored MemberList {names:?}, expected {expected:?}"
            );
            tokio::time::sleep(POLL).await;
        }

        // The same keys, values and revisions on every restored member.
        for m in &members {
            let (rev, got) = all_rows_at(&m.client_url, saved_rev).await;
            assert_eq!(rev, saved_rev, "{}: revision after the restore", m.name);
            assert_eq!(got, saved, "{}: keys after the restore", m.name);
        }
        let linear = bounded(
            CALL_TIMEOUT,
            restored.get("", Some(GetOptions::new().with_all_keys())),
        )
        .await
        .expect("linearizable read of the restored cluster");
        assert_eq!(
            kv_rows(linear.kvs()),
            saved,
            "linearizable read after the restore"
        );
        let next = bounded(CALL_TIMEOUT, restored.put("after/restore", "new", None))
            .await
            .expect("put on the restored cluster")
            .header()
            .expect("put header")
            .revision();
        assert!(
            next > saved_rev,
            "a put after the restore got revision {next}, the file was saved at {saved_rev}"
        );
        for m in &members {
            let (_, got) = all_rows_at(&m.client_url, next).await;
            let after: Vec<&KvRow> = got.iter().filter(|r| r.0 == "after/restore").collect();
            assert_eq!(after.len(), 1, "{}: {after:?}", m.name);
            assert_eq!(after[0].3, next, "{}: mod revision of {after:?}", m.name);
        }

        // Damaged copies are refused.
        let bytes = std::fs::read(&file).expect("read saved file");
        for (label, offset) in [
            ("middle", bytes.len() / 2),
            ("first", 0),
            ("hash", bytes.len() - 1),
        ] {
            let copy = work.join(format!("damaged-{label}.db"));
            std::fs::copy(&file, &copy).expect("copy snapshot");
            flip_byte(&copy, offset);
            let mut status = Command::new(&settctl);
            status.args(["snapshot", "status"]).arg(&copy);
            let ran = run_tool(status, &work, &format!("settctl-status-{label}"));
            assert!(
                !ran.status.success(),
                "settctl snapshot status accepted a file with byte {offset} flipped: {ran:?}"
            );
            assert!(!ran.stderr.is_empty(), "no error message: {ran:?}");
        }
        let truncated = work.join("truncated.db");
        std::fs::write(&truncated, &bytes[..bytes.len() - 512]).expect("write truncated copy");
        let mut status = Command::new(&settctl);
        status.args(["snapshot", "status"]).arg(&truncated);
        let ran = run_tool(status, &work, "settctl-status-truncated");
        assert!(
            !ran.status.success(),
            "a truncated file was accepted: {ran:?}"
        );

        let damaged = work.join("damaged-middle.db");
        let dir = work.join("refused");
        let mut restore = Command::new(&settctl);
        restore
            .args(["snapshot", "restore"])
            .arg(&damaged)
            .arg("--name=x1")
            .arg(format!("--data-dir={}", dir.display()))
            .arg("--initial-cluster=x1=http://127.0.0.1:1")
            .arg("--initial-advertise-peer-urls=http://127.0.0.1:1");
        let ran = run_tool(restore, &work, "settctl-restore-damaged");
        assert!(
            !ran.status.success(),
            "a damaged file was restored: {ran:?}"
        );
    });
}

/// Defragment on every member keeps every key and the hashes.
#[test]
fn defragment_keeps_data() {
    run_scenario("defragment_keeps_data", async {
        let cluster = Cluster::start(ClusterOptions::default());
        random_workload(&cluster.client_urls(), 0xdef4a6).await;
        // Some larger values, overwritten, so there is garbage to collect.
        let mut client = cluster.client(0).await;
        for round in 0..3 {
            for k in 0..20 {
                let value = format!("{round}-{}", "x".repeat(4096));
                bounded(CALL_TIMEOUT, client.put(format!("big/{k:02}"), value, None))
                    .await
                    .unwrap_or_else(|e| panic!("put: {e}"));
            }
        }
        let marker = put_marker(&cluster).await;
        // Compacted just below the marker: HashKV needs a revision above
        // the compaction point.
        bounded(
            CALL_TIMEOUT,
            client.compact(marker - 1, Some(CompactionOptions::new().with_physical())),
        )
        .await
        .unwrap_or_else(|e| panic!("compact: {e}"));
        let before_rows = all_rows_at(&cluster.client_url(0), marker).await;
        let before_hashes = hashes_at(&cluster, marker).await;

        for i in 0..cluster.len() {
            let mut c = cluster.client(i).await;
            bounded(CALL_TIMEOUT, c.defragment())
                .await
                .unwrap_or_else(|e| panic!("Defragment on {}: {e}", cluster.name(i)));
        }

        for i in 0..cluster.len() {
            let after = all_rows_at(&cluster.client_url(i), marker).await;
            assert_eq!(after, before_rows, "{} after Defragment", cluster.name(i));
        }
        let after_hashes = hashes_at(&cluster, marker).await;
        assert_eq!(
            after_hashes, before_hashes,
            "HashKV before and after Defragment"
        );
        assert!(
            after_hashes.iter().all(|h| *h == after_hashes[0]),
            "HashKV differs between members: {after_hashes:?}"
        );
        let next = bounded(CALL_TIMEOUT, client.put("after/defrag", "ok", None))
            .await
            .expect("put after Defragment")
            .header()
            .expect("put header")
            .revision();
        assert_eq!(next, marker + 1, "the put after Defragment");
        for i in 0..cluster.len() {
            let (_, got) = all_rows_at(&cluster.client_url(i), next).await;
            assert!(
                got.iter().any(|r| r.0 == "after/defrag" && r.1 == "ok"),
                "{} lacks the put after Defragment",
                cluster.name(i)
            );
        }
    });
}

/// MoveLeader is not supported.
#[test]
fn move_leader_is_unimplemented() {
    run_scenario("move_leader_is_unimplemented", async {
        let cluster = Cluster::start(ClusterOptions::default());
        let leader = cluster.leader().await;
        let target = (leader + 1) % cluster.len();
        let mut client = cluster.client(leader).await;
        match client.move_leader(cluster.member_id(target)).await {
            Err(Error::GRpcStatus(s)) => {
                assert_eq!(format!("{:?}", s.code()), "Unimplemented", "{s:?}");
            }
            other => panic!("MoveLeader: {other:?}"),
        }
    });
}
