//! Membership changes on a real cluster, made through the etcd v3 Cluster
//! API the way `etcdctl member add/promote/remove` makes them:
//!
//! 1. three members grow to five and shrink back to three (the leader is
//!    one of the two removed) while a load of writes goes on; in the end
//!    every acknowledged write is on every remaining member and MemberList
//!    shows exactly those members;
//! 2. a learner added to a cluster whose log was already purged catches up
//!    (by snapshot), serves the data to serializable reads and, once
//!    promoted, is listed as a voter;
//! 3. the leader removes itself: while its process still runs, the others
//!    elect a leader among themselves and take writes;
//! 4. bad membership requests get etcd's error codes and messages.
//!
//! The harness starts only the initial members: a member added at runtime
//! is started here, with etcd's flags and `--initial-cluster-state
//! existing`, after its MemberAdd. A removed member's process keeps
//! running until the test kills it.
//!
//! Scenarios run one at a time, each on a cluster of its own. Every wait
//! is bounded; no timing is asserted.
//!
//! Needs `target/<profile>/sett` (`cargo build -p sett-server --bin sett`).
//! `SETT_CLUSTER_BIN` names another member binary, as for the harness.

#[path = "../src/cluster.rs"]
#[allow(dead_code)]
mod cluster;

use cluster::{
    assert_grpc_err, bounded, member_binary, run_scenario, runtime, serial, text, Cluster,
    ClusterOptions, ExtraMember,
};
use etcd_client::{Client, Error, GetOptions, MemberAddOptions, MemberAddResponse};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bound on members agreeing on a state (data, member list, leader).
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(90);
/// Bound on a joining member coming up and catching up.
const JOIN_TIMEOUT: Duration = Duration::from_secs(90);
/// Bound on the load making the progress a phase waits for.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on one client request.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on one write attempt of the load.
const WRITE_TIMEOUT: Duration = Duration::from_secs(4);
/// Attempts per load write (each on the next target) before its outcome
/// counts as unknown.
const WRITE_ATTEMPTS: usize = 25;
/// Upper bound on the writes of one writer task.
const WRITES_PER_WRITER_MAX: usize = 200_000;
/// Writer tasks in the load.
const WRITERS: usize = 2;
/// Writes acknowledged between two membership changes.
const WRITES_PER_PHASE: usize = 40;
/// Pause between two polls.
const POLL: Duration = Duration::from_millis(100);
/// The text etcd answers, and retries internally, while a member that
/// just joined has not been connected long enough (etcd's strict
/// reconfiguration check); a membership call seeing it is tried again.
const UNHEALTHY: &str = "etcdserver: unhealthy cluster";
/// MemberPromote of a learner that has not caught up.
const LEARNER_NOT_READY: &str =
    "etcdserver: can only promote a learner member which is in sync with leader";

/// Whether `e` is etcd's transient "unhealthy cluster" refusal.
fn is_unhealthy(e: &Error) -> bool {
    matches!(e, Error::GRpcStatus(s) if s.message() == UNHEALTHY)
}

/// A member added at runtime.
type Joiner = ExtraMember;

/// Starts `joiner` as etcd's procedure says, once MemberAdd has answered
/// `added`.
fn start_joiner(joiner: &mut Joiner, added: &MemberAddResponse, opts: &ClusterOptions) {
    let new_id = added.member().expect("MemberAdd names the new member").id();
    let initial_cluster = initial_cluster_after_add(added, new_id, &joiner.name);
    let args = [
        format!("--name={}", joiner.name),
        format!("--data-dir={}", joiner.data_dir.display()),
        format!("--initial-cluster={initial_cluster}"),
        "--initial-cluster-state=existing".to_owned(),
        format!("--initial-cluster-token={}", opts.cluster_token),
        format!("--listen-peer-urls={}", joiner.peer_url),
        format!("--initial-advertise-peer-urls={}", joiner.peer_url),
        format!("--listen-client-urls={}", joiner.client_url),
        format!("--advertise-client-urls={}", joiner.client_url),
        format!("--heartbeat-interval={}", opts.heartbeat_interval_ms),
        format!("--election-timeout={}", opts.election_timeout_ms),
    ];
    joiner.spawn(&member_binary(), &args);
}

/// `--initial-cluster` for the member just added as `new_id`: every
/// member of the MemberAdd answer with each of its peer URLs, the new one
/// under `new_name` (what `etcdctl member add` prints).
fn initial_cluster_after_add(added: &MemberAddResponse, new_id: u64, new_name: &str) -> String {
    let mut parts = Vec::new();
    for m in added.member_list() {
        let name = if m.id() == new_id { new_name } else { m.name() };
        for url in m.peer_urls() {
            parts.push(format!("{name}={url}"));
        }
    }
    assert!(
        added.member_list().iter().any(|m| m.id() == new_id),
        "MemberAdd's member list lacks the new member {new_id:x}: {:?}",
        added.member_list()
    );
    parts.join(",")
}

/// A member as MemberList shows it: `(id, name, client URLs, is_learner)`.
type MemberRow = (u64, String, Vec<String>, bool);

async fn member_rows(url: &str) -> Result<Vec<MemberRow>, String> {
    let mut client = cluster::connect(url).await;
    let list = bounded(CALL_TIMEOUT, client.member_list()).await?;
    let mut rows: Vec<MemberRow> = list
        .members()
        .iter()
        .map(|m| {
            (
                m.id(),
                m.name().to_owned(),
                m.client_urls().to_vec(),
                m.is_learner(),
            )
        })
        .collect();
    rows.sort();
    Ok(rows)
}

/// The rows MemberList shows for the harness's members `members`, all
/// voters.
fn voter_rows(cluster: &Cluster, members: impl Iterator<Item = usize>) -> Vec<MemberRow> {
    members
        .map(|i| {
            (
                cluster.member_id(i),
                cluster.name(i).to_owned(),
                vec![cluster.client_url(i)],
                false,
            )
        })
        .collect()
}

/// Waits until MemberList on every one of `urls` shows exactly `expected`.
async fn wait_member_list(urls: &[String], expected: &[MemberRow], context: &str) {
    let mut expected = expected.to_vec();
    expected.sort();
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    for url in urls {
        loop {
            let last = member_rows(url).await;
            if last.as_ref() == Ok(&expected) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{context}: MemberList on {url} does not show {expected:?} within \
                 {CONVERGE_TIMEOUT:?}; last {last:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Waits until every one of `urls` answers Status naming the same leader,
/// which is one of `ids` and names itself; returns its id.
async fn leader_among(urls: &[String], ids: &[u64], context: &str) -> u64 {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    loop {
        let mut seen = Vec::with_capacity(urls.len());
        for url in urls {
            let mut client = cluster::connect(url).await;
            seen.push(
                bounded(Duration::from_secs(3), client.status())
                    .await
                    .map(|s| (s.header().map_or(0, |h| h.member_id()), s.leader())),
            );
        }
        let leaders: BTreeSet<u64> = seen
            .iter()
            .map(|s| s.as_ref().map_or(0, |&(_, leader)| leader))
            .collect();
        if let [leader] = leaders.iter().copied().collect::<Vec<_>>()[..] {
            let self_named = seen
                .iter()
                .any(|s| matches!(s, Ok((me, l)) if *me == leader && *l == leader));
            if leader != 0 && ids.contains(&leader) && self_named {
                return leader;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{context}: {urls:?} agree on no leader among {ids:x?} within \
             {CONVERGE_TIMEOUT:?}; last (member, leader): {seen:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until the member at `url` answers Status and knows a leader.
async fn wait_serving(url: &str, log: impl Fn() -> String) {
    let deadline = Instant::now() + JOIN_TIMEOUT;
    loop {
        let mut client = cluster::connect(url).await;
        let last = bounded(Duration::from_secs(3), client.status()).await;
        if matches!(&last, Ok(s) if s.leader() != 0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "member at {url} does not serve within {JOIN_TIMEOUT:?}: {last:?}\nlog tail:\n{}",
            log()
        );
        tokio::time::sleep(POLL).await;
    }
}

/// MemberAdd of `peer_url` through `client`, retried (bounded) while etcd
/// refuses it as unhealthy.
async fn member_add(client: &mut Client, peer_url: &str, learner: bool) -> MemberAddResponse {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    loop {
        let opts = if learner {
            MemberAddOptions::new().with_is_learner()
        } else {
            MemberAddOptions::new()
        };
        match tokio::time::timeout(CALL_TIMEOUT, client.member_add([peer_url], Some(opts))).await {
            Ok(Ok(resp)) => {
                let member = resp.member().expect("MemberAdd names the new member");
                assert_ne!(member.id(), 0, "MemberAdd answered id 0");
                assert_eq!(member.peer_urls(), [peer_url.to_owned()]);
                assert_eq!(member.is_learner(), learner, "learner flag of {member:?}");
                return resp;
            }
            Ok(Err(e)) if is_unhealthy(&e) && Instant::now() < deadline => {}
            other => panic!("MemberAdd {peer_url} (learner: {learner}): {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// MemberRemove of `id` through `client`, retried (bounded) while etcd
/// refuses it as unhealthy; returns the member list it answers.
async fn member_remove(client: &mut Client, id: u64) -> Vec<u64> {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    loop {
        match tokio::time::timeout(CALL_TIMEOUT, client.member_remove(id)).await {
            Ok(Ok(resp)) => return resp.members().iter().map(|m| m.id()).collect(),
            Ok(Err(e)) if is_unhealthy(&e) && Instant::now() < deadline => {}
            other => panic!("MemberRemove {id:x}: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A put through one of `urls` (each tried in turn), retried until it is
/// acknowledged (bounded); returns the put's revision.
async fn put_somewhere(urls: &[String], key: &str, value: &str) -> i64 {
    let deadline = Instant::now() + PROGRESS_TIMEOUT;
    for attempt in 0.. {
        let url = &urls[attempt % urls.len()];
        let mut client = cluster::connect(url).await;
        match bounded(WRITE_TIMEOUT, client.put(key, value, None)).await {
            Ok(resp) => return resp.header().expect("put header").revision(),
            Err(e) => assert!(
                Instant::now() < deadline,
                "put {key} through {urls:?} not acknowledged within {PROGRESS_TIMEOUT:?}: {e}"
            ),
        }
        tokio::time::sleep(POLL).await;
    }
    unreachable!("the loop returns or panics")
}

/// Waits until a serializable read of `prefix` on the member at `url`
/// satisfies `check`, which gets `key → value` and says what is wrong.
async fn converge<F>(url: &str, prefix: &str, context: &str, check: F)
where
    F: Fn(&BTreeMap<String, String>) -> Result<(), String>,
{
    let mut client = cluster::connect(url).await;
    let opts = GetOptions::new().with_prefix().with_serializable();
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    loop {
        let last = match bounded(CALL_TIMEOUT, client.get(prefix, Some(opts.clone()))).await {
            Ok(resp) => {
                let got: BTreeMap<String, String> = resp
                    .kvs()
                    .iter()
                    .map(|kv| (text(kv.key()), text(kv.value())))
                    .collect();
                check(&got)
            }
            Err(e) => Err(format!("range failed: {e}")),
        };
        match last {
            Ok(()) => return,
            Err(why) => assert!(
                Instant::now() < deadline,
                "{context}: member at {url} did not converge within {CONVERGE_TIMEOUT:?}: {why}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The write load: writers put unique keys through the current targets
/// and record what was acknowledged.
#[derive(Debug, Default)]
struct Load {
    /// Client URLs the writers send to; a member leaves the list before
    /// it is removed.
    targets: Mutex<Vec<String>>,
    acked: Mutex<BTreeMap<String, String>>,
    /// Keys whose every attempt failed: they may or may not be applied.
    unknown: Mutex<BTreeMap<String, String>>,
    failed_attempts: AtomicUsize,
    stop: AtomicBool,
}

impl Load {
    fn acked_len(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    fn retarget(&self, urls: Vec<String>) {
        assert!(!urls.is_empty(), "the load needs a target");
        *self.targets.lock().unwrap() = urls;
    }

    /// Waits until `more` writes beyond the current count are acknowledged.
    async fn progress(&self, more: usize, phase: &str) {
        let target = self.acked_len() + more;
        let deadline = Instant::now() + PROGRESS_TIMEOUT;
        while self.acked_len() < target {
            assert!(
                Instant::now() < deadline,
                "{phase}: only {} of {target} writes acknowledged within {PROGRESS_TIMEOUT:?} \
                 ({} failed attempts)",
                self.acked_len(),
                self.failed_attempts.load(Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Writer `w`: puts `load/w<w>/<seq>` until told to stop, each write tried
/// on the targets in turn, at most [`WRITE_ATTEMPTS`] times.
async fn writer(w: usize, load: Arc<Load>) {
    let mut clients: BTreeMap<String, Client> = BTreeMap::new();
    for seq in 0..WRITES_PER_WRITER_MAX {
        if load.stop.load(Ordering::SeqCst) {
            return;
        }
        let key = format!("load/w{w}/{seq:06}");
        let value = format!("v{w}-{seq}");
        let mut acked = false;
        for attempt in 0..WRITE_ATTEMPTS {
            let targets = load.targets.lock().unwrap().clone();
            let url = &targets[(w + seq + attempt) % targets.len()];
            if !clients.contains_key(url) {
                let client = cluster::connect(url).await;
                clients.insert(url.clone(), client);
            }
            let client = clients.get_mut(url).expect("client just inserted");
            match bounded(
                WRITE_TIMEOUT,
                client.put(key.as_str(), value.as_str(), None),
            )
            .await
            {
                Ok(_) => {
                    load.acked
                        .lock()
                        .unwrap()
                        .insert(key.clone(), value.clone());
                    acked = true;
                    break;
                }
                Err(_) => {
                    load.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(POLL).await;
                }
            }
        }
        if !acked {
            load.unknown.lock().unwrap().insert(key, value);
        }
    }
}

/// A member of the changing cluster: an initial one (harness index) or a
/// joiner (index into the test's joiners).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Initial(usize),
    Joined(usize),
}

/// A member as the test tracks it.
#[derive(Debug, Clone)]
struct Node {
    who: Who,
    id: u64,
    name: String,
    client_url: String,
}

fn node_rows(nodes: &[Node]) -> Vec<MemberRow> {
    nodes
        .iter()
        .map(|n| (n.id, n.name.clone(), vec![n.client_url.clone()], false))
        .collect()
}

fn node_urls(nodes: &[Node]) -> Vec<String> {
    nodes.iter().map(|n| n.client_url.clone()).collect()
}

/// Adds a voter named `name` through `via`, starts it and waits until it
/// serves and every member lists it; records it in `joiners` and `nodes`.
async fn grow(
    cluster: &Cluster,
    opts: &ClusterOptions,
    joiners: &mut Vec<Joiner>,
    nodes: &mut Vec<Node>,
    via: &str,
    name: &str,
) {
    let mut joiner = Joiner::new(cluster.dir(), name);
    let mut client = cluster::connect(via).await;
    let added = member_add(&mut client, &joiner.peer_url, false).await;
    let id = added.member().expect("new member").id();
    assert!(
        nodes.iter().all(|n| n.id != id),
        "MemberAdd reused the id {id:x} of {nodes:?}"
    );
    start_joiner(&mut joiner, &added, opts);
    wait_serving(&joiner.client_url, || joiner.log_tail()).await;
    nodes.push(Node {
        who: Who::Joined(joiners.len()),
        id,
        name: name.to_owned(),
        client_url: joiner.client_url.clone(),
    });
    joiners.push(joiner);
    wait_member_list(
        &node_urls(nodes),
        &node_rows(nodes),
        &format!("after adding {name}"),
    )
    .await;
}

/// Three members grow to five and shrink back to three, the leader among
/// the removed, under a write load through the initial members.
#[test]
fn grow_and_shrink_under_load() {
    let _serial = serial();
    let started = Instant::now();
    runtime().block_on(async {
        let opts = ClusterOptions::default();
        let mut cluster = Cluster::start(opts.clone());
        let mut nodes: Vec<Node> = (0..cluster.len())
            .map(|i| Node {
                who: Who::Initial(i),
                id: cluster.member_id(i),
                name: cluster.name(i).to_owned(),
                client_url: cluster.client_url(i),
            })
            .collect();
        let mut joiners: Vec<Joiner> = Vec::new();

        let load = Arc::new(Load::default());
        load.retarget(cluster.client_urls());
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| tokio::spawn(writer(w, load.clone())))
            .collect();
        load.progress(WRITES_PER_PHASE, "before growing").await;

        // 3 → 4 through the first member, 4 → 5 through the newest one.
        let via = cluster.client_url(0);
        grow(&cluster, &opts, &mut joiners, &mut nodes, &via, "m4").await;
        load.progress(WRITES_PER_PHASE, "with four members").await;
        let via = joiners[0].client_url.clone();
        grow(&cluster, &opts, &mut joiners, &mut nodes, &via, "m5").await;
        load.progress(WRITES_PER_PHASE, "with five members").await;
        eprintln!(
            "grown to five members after {:?}, {} writes acknowledged",
            started.elapsed(),
            load.acked_len()
        );

        // 5 → 4: the leader goes, removed through itself.
        let ids: Vec<u64> = nodes.iter().map(|n| n.id).collect();
        let leader_id = leader_among(&node_urls(&nodes), &ids, "with five members").await;
        let first = nodes
            .iter()
            .position(|n| n.id == leader_id)
            .expect("the leader is a member");
        // 5 → 3 then: the newest member that is not the leader (m5, or m4
        // if m5 leads), removed through a remaining initial member; two
        // initial members keep taking the load.
        let second = (0..nodes.len())
            .rev()
            .find(|&k| k != first)
            .expect("a second member");
        let removed = [nodes[first].clone(), nodes[second].clone()];
        let keep: Vec<Node> = nodes
            .iter()
            .filter(|n| removed.iter().all(|r| r.id != n.id))
            .cloned()
            .collect();
        let load_targets: Vec<String> = keep
            .iter()
            .filter(|n| matches!(n.who, Who::Initial(_)))
            .map(|n| n.client_url.clone())
            .collect();
        assert!(!load_targets.is_empty(), "an initial member remains");
        load.retarget(load_targets);
        eprintln!(
            "removing the leader {} and then {}",
            removed[0].name, removed[1].name
        );

        let mut client = cluster::connect(&removed[0].client_url).await;
        let left = member_remove(&mut client, removed[0].id).await;
        assert!(
            !left.contains(&removed[0].id),
            "MemberRemove's answer still lists {}: {left:x?}",
            removed[0].name
        );
        let mut four = nodes.clone();
        four.retain(|n| n.id != removed[0].id);
        let four_ids: Vec<u64> = four.iter().map(|n| n.id).collect();
        leader_among(&node_urls(&four), &four_ids, "after removing the leader").await;
        stop_node(&mut cluster, &mut joiners, &removed[0]);
        load.progress(WRITES_PER_PHASE, "after removing the leader")
            .await;

        let via = keep[0].client_url.clone();
        let mut client = cluster::connect(&via).await;
        let left = member_remove(&mut client, removed[1].id).await;
        assert!(
            !left.contains(&removed[1].id),
            "MemberRemove's answer still lists {}: {left:x?}",
            removed[1].name
        );
        let keep_ids: Vec<u64> = keep.iter().map(|n| n.id).collect();
        leader_among(&node_urls(&keep), &keep_ids, "after the second removal").await;
        stop_node(&mut cluster, &mut joiners, &removed[1]);
        load.progress(WRITES_PER_PHASE, "after shrinking to three")
            .await;

        load.stop.store(true, Ordering::SeqCst);
        for w in writers {
            w.await.expect("writer task");
        }
        let acked = load.acked.lock().unwrap().clone();
        let unknown = load.unknown.lock().unwrap().clone();
        eprintln!(
            "{} writes acknowledged, {} unknown, {} failed attempts",
            acked.len(),
            unknown.len(),
            load.failed_attempts.load(Ordering::Relaxed)
        );

        for n in &keep {
            converge(
                &n.client_url,
                "load/",
                &format!("member {}", n.name),
                |got| {
                    if let Some((k, v)) = acked.iter().find(|(k, v)| got.get(*k) != Some(*v)) {
                        return Err(format!(
                            "acknowledged {k}={v} reads as {:?} ({} keys)",
                            got.get(k),
                            got.len()
                        ));
                    }
                    match got
                        .iter()
                        .find(|(k, v)| acked.get(*k) != Some(*v) && unknown.get(*k) != Some(*v))
                    {
                        Some((k, v)) => Err(format!("{k}={v} was never written")),
                        None => Ok(()),
                    }
                },
            )
            .await;
        }
        wait_member_list(&node_urls(&keep), &node_rows(&keep), "after shrinking").await;
    });
    eprintln!("grow_and_shrink_under_load: {:?}", started.elapsed());
}

/// Kills the process of a removed member.
fn stop_node(cluster: &mut Cluster, joiners: &mut [Joiner], node: &Node) {
    match node.who {
        Who::Initial(i) => cluster.kill(i),
        Who::Joined(j) => joiners[j].kill(),
    }
}

/// A learner added after the log was purged catches up and is promoted.
#[test]
fn learner_catches_up_and_is_promoted() {
    run_scenario("learner_catches_up_and_is_promoted", async {
        let opts = ClusterOptions {
            snapshot_count: 50,
            snapshot_catchup_entries: 5,
            ..ClusterOptions::default()
        };
        let cluster = Cluster::start(opts.clone());
        let urls = cluster.client_urls();
        let mut data = BTreeMap::new();
        for k in 0..300 {
            let (key, value) = (format!("data/{k:04}"), format!("value-{k}"));
            put_somewhere(&urls, &key, &value).await;
            data.insert(key, value);
        }

        let mut learner = Joiner::new(cluster.dir(), "m4");
        let mut client = cluster.client(1).await;
        let added = member_add(&mut client, &learner.peer_url, true).await;
        let id = added.member().expect("new member").id();
        let mut rows = voter_rows(&cluster, 0..cluster.len());
        // Not started yet: listed without name and client URLs.
        rows.push((id, String::new(), Vec::new(), true));
        wait_member_list(&urls, &rows, "after adding the learner").await;

        // Its process is not running: it has nothing of the log.
        assert_grpc_err(
            client.member_promote(id).await,
            "FailedPrecondition",
            LEARNER_NOT_READY,
        );

        start_joiner(&mut learner, &added, &opts);
        wait_serving(&learner.client_url, || learner.log_tail()).await;
        converge(&learner.client_url, "data/", "the learner", |got| {
            if got == &data {
                Ok(())
            } else {
                Err(format!("{} of {} keys", got.len(), data.len()))
            }
        })
        .await;
        eprintln!(
            "the learner caught up; its log mentions a snapshot: {}",
            learner.log_contains("snapshot")
        );
        rows.pop();
        rows.push((id, "m4".to_owned(), vec![learner.client_url.clone()], true));
        // Asked of the voters: etcd serves a learner only Status and
        // serializable reads.
        wait_member_list(&urls, &rows, "once the learner runs").await;
        let mut all_urls = urls.clone();
        all_urls.push(learner.client_url.clone());
        let mut on_learner = cluster::connect(&learner.client_url).await;
        let status = bounded(CALL_TIMEOUT, on_learner.status())
            .await
            .expect("Status of the learner");
        assert!(status.is_learner(), "the learner's Status: {status:?}");

        // Caught up: the promotion goes through (retried while the leader
        // has not yet seen the learner's progress).
        let deadline = Instant::now() + JOIN_TIMEOUT;
        loop {
            match client.member_promote(id).await {
                Ok(resp) => {
                    let promoted = resp.members().iter().find(|m| m.id() == id);
                    assert!(
                        promoted.is_some_and(|m| !m.is_learner()),
                        "MemberPromote's answer: {:?}",
                        resp.members()
                    );
                    break;
                }
                Err(Error::GRpcStatus(s))
                    if s.message() == LEARNER_NOT_READY && Instant::now() < deadline => {}
                Err(e) => panic!("MemberPromote {id:x}: {e}\n{}", learner.log_tail()),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        rows.pop();
        rows.push((id, "m4".to_owned(), vec![learner.client_url.clone()], false));
        wait_member_list(&all_urls, &rows, "after the promotion").await;
        let status = bounded(CALL_TIMEOUT, on_learner.status())
            .await
            .expect("Status of the promoted member");
        assert!(
            !status.is_learner(),
            "the promoted member's Status: {status:?}"
        );

        // A voter now: promoting it again is refused, and it takes writes.
        assert_grpc_err(
            client.member_promote(id).await,
            "FailedPrecondition",
            "etcdserver: can only promote a learner member",
        );
        put_somewhere(&[learner.client_url.clone()], "data/after", "promoted").await;
        data.insert("data/after".to_owned(), "promoted".to_owned());
        for url in &all_urls {
            converge(url, "data/", "after the promotion", |got| {
                if got == &data {
                    Ok(())
                } else {
                    Err(format!("{} of {} keys", got.len(), data.len()))
                }
            })
            .await;
        }
    });
}

/// The leader removes itself; the others go on without it.
#[test]
fn removed_leader_is_replaced() {
    run_scenario("removed_leader_is_replaced", async {
        let mut cluster = Cluster::start(ClusterOptions::default());
        let urls = cluster.client_urls();
        for k in 0..20 {
            put_somewhere(&urls, &format!("data/{k:02}"), "before").await;
        }
        let old = cluster.leader().await;
        let old_id = cluster.member_id(old);
        let mut client = cluster.client(old).await;
        let left = member_remove(&mut client, old_id).await;
        assert_eq!(left.len(), 2, "members after the removal: {left:x?}");
        assert!(
            !left.contains(&old_id),
            "the removed leader is listed: {left:x?}"
        );

        // The removed process still runs; the rest elect a leader of
        // their own and take writes.
        assert!(
            cluster.is_running(old),
            "the removed leader's process exited"
        );
        let rest: Vec<usize> = (0..cluster.len()).filter(|&i| i != old).collect();
        let rest_urls: Vec<String> = rest.iter().map(|&i| cluster.client_url(i)).collect();
        let rest_ids: Vec<u64> = rest.iter().map(|&i| cluster.member_id(i)).collect();
        let new_id = leader_among(&rest_urls, &rest_ids, "after removing the leader").await;
        assert_ne!(new_id, old_id);
        let rev = put_somewhere(&rest_urls, "data/after", "removal").await;
        let rows = voter_rows(&cluster, rest.iter().copied());
        wait_member_list(&rest_urls, &rows, "after removing the leader").await;

        cluster.kill(old);
        let rev2 = put_somewhere(&rest_urls, "data/after-kill", "still").await;
        assert!(rev2 > rev, "revision {rev2} after {rev}");
        for url in &rest_urls {
            converge(url, "data/", "after removing the leader", |got| {
                let ok = got.len() == 22
                    && got.get("data/after").map(String::as_str) == Some("removal")
                    && got.get("data/after-kill").map(String::as_str) == Some("still");
                if ok {
                    Ok(())
                } else {
                    Err(format!("{} keys: {got:?}", got.len()))
                }
            })
            .await;
        }
    });
}

/// Bad membership requests get etcd's codes and messages.
#[test]
fn membership_errors() {
    run_scenario("membership_errors", async {
        let cluster = Cluster::start(ClusterOptions::default());
        let urls = cluster.client_urls();
        let mut client = cluster.client(0).await;
        let listed = member_rows(&urls[0]).await.expect("MemberList");
        let known: BTreeSet<u64> = listed.iter().map(|r| r.0).collect();
        let unknown_id = (1..u64::MAX)
            .map(|k| k.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .find(|id| !known.contains(id))
            .expect("an unused id");

        // Promoting a voter.
        for i in 0..cluster.len() {
            assert_grpc_err(
                client.member_promote(cluster.member_id(i)).await,
                "FailedPrecondition",
                "etcdserver: can only promote a learner member",
            );
        }
        // Removing or promoting a member that does not exist.
        assert_grpc_err(
            client.member_remove(unknown_id).await,
            "NotFound",
            "etcdserver: member not found",
        );
        assert_grpc_err(
            client.member_promote(unknown_id).await,
            "NotFound",
            "etcdserver: member not found",
        );

        // A learner added at runtime and never started. (Its MemberAdd
        // waits out etcd's strict reconfiguration check, which precedes
        // the URL checks below there.)
        let spare = Joiner::new(cluster.dir(), "m4");
        let added = member_add(&mut client, &spare.peer_url, true).await;
        let learner_id = added.member().expect("new member").id();
        // Adding peer URLs an initial member already has.
        let taken = cluster::connect(&urls[2])
            .await
            .member_list()
            .await
            .expect("MemberList")
            .members()
            .iter()
            .find(|m| m.id() == cluster.member_id(1))
            .expect("member 2 is listed")
            .peer_urls()
            .to_vec();
        assert_grpc_err(
            client.member_add(taken, None).await,
            "FailedPrecondition",
            "etcdserver: Peer URLs already exists",
        );

        // Adding the peer URLs of the learner. etcd derives an added
        // member's id from its peer URLs and the second of the request, so
        // within a second it finds the id taken before it checks the URLs;
        // either refusal is etcd's.
        for learner in [false, true] {
            let opts = if learner {
                MemberAddOptions::new().with_is_learner()
            } else {
                MemberAddOptions::new()
            };
            let result = client
                .member_add([spare.peer_url.as_str()], Some(opts))
                .await;
            let id_taken = matches!(&result, Err(Error::GRpcStatus(s))
                if s.message() == "etcdserver: member ID already exist");
            let message = if id_taken {
                "etcdserver: member ID already exist"
            } else {
                "etcdserver: Peer URLs already exists"
            };
            assert_grpc_err(result, "FailedPrecondition", message);
        }
        // The learner has nothing of the log: it cannot be promoted.
        assert_grpc_err(
            client.member_promote(learner_id).await,
            "FailedPrecondition",
            LEARNER_NOT_READY,
        );
        // A learner can be removed; after that it is not found.
        let left = member_remove(&mut client, learner_id).await;
        assert_eq!(
            left.len(),
            3,
            "members after removing the learner: {left:x?}"
        );
        assert_grpc_err(
            client.member_remove(learner_id).await,
            "NotFound",
            "etcdserver: member not found",
        );
        let rows = voter_rows(&cluster, 0..cluster.len());
        wait_member_list(&urls, &rows, "after the failed requests").await;
        // The cluster still takes writes.
        put_somewhere(&urls, "data/ok", "yes").await;
    });
}
