//! One nemesis run: start a cluster, load it, inject the scheduled
//! faults, heal, restart every member, and check the history.

use super::bank_check::{self, BankRead};
use super::faults::{schedule, FaultKind, Planned};
use super::linearizable::{self, CheckOptions, Op, Outcome as RegOutcome, RegisterOp};
use super::procs::{cut_kind, Procs};
use super::watch_check;
use super::workload::{self, Clients, Shared, REGISTER_PREFIX, WATCH_PREFIX};
use etcd_client::{Client, GetOptions, Txn, TxnOp};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Seed of the fault schedule and of every worker.
    pub seed: u64,
    /// Length of the load under faults.
    pub duration: Duration,
    /// Members (3 or 5).
    pub nodes: usize,
    /// Fault kinds to draw from.
    pub faults: Vec<FaultKind>,
    /// `SETT_DEBUG_FAULTS` for the members (deliberate bugs).
    pub debug_faults: Vec<String>,
    /// The `sett` binary (a debug build, for the dial map).
    pub binary: PathBuf,
    /// `--heartbeat-interval` (ms).
    pub heartbeat_ms: u64,
    /// `--election-timeout` (ms).
    pub election_ms: u64,
    /// Keep the run's directory (member logs, data) afterwards.
    pub keep_dir: bool,
    /// Print progress on stderr.
    pub verbose: bool,
}

impl Config {
    /// A run of `binary` with every fault kind and etcd's default
    /// timeouts.
    pub fn new(binary: PathBuf, seed: u64, duration: Duration, nodes: usize) -> Config {
        Config {
            seed,
            duration,
            nodes,
            faults: FaultKind::ALL.iter().map(|(k, _)| *k).collect(),
            debug_faults: Vec::new(),
            binary,
            heartbeat_ms: 100,
            election_ms: 1000,
            keep_dir: false,
            verbose: true,
        }
    }
}

/// What a run found.
#[derive(Debug, Default)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// The fault schedule, as printed.
    pub schedule: Vec<String>,
    /// Register operations checked.
    pub register_ops: usize,
    /// Register operations whose outcome is unknown.
    pub register_unknown: usize,
    /// Register keys the checker gave up on (search budget).
    pub inconclusive_keys: Vec<String>,
    /// Bank reads checked.
    pub bank_reads: usize,
    /// Acknowledged watched writes, and events in the reference.
    pub watch_acked: usize,
    /// Events in the reference history of the watched prefix.
    pub watch_events: usize,
    /// Events the watchers received, and their resumptions.
    pub watcher_events: usize,
    /// Times a watcher resumed on a member.
    pub watcher_resumes: usize,
    /// Milliseconds from each leader SIGKILL until a write succeeded.
    pub failover_ms: Vec<u64>,
    /// Violations found, per checker: ("linearizable" | "bank" | "watch",
    /// text). Durability is checked by all three: the final reads and the
    /// reference watch come after every member was SIGKILLed and
    /// restarted.
    pub violations: Vec<(String, String)>,
    /// Problems of the harness itself (a fault that could not be applied,
    /// a cluster that did not come back); not violations, but a run with
    /// any is not a pass.
    pub harness_errors: Vec<String>,
    /// Where the members' logs are (when kept).
    pub dir: Option<PathBuf>,
}

impl Report {
    /// True when no checker found a violation and the harness had no
    /// trouble.
    pub fn passed(&self) -> bool {
        self.violations.is_empty() && self.harness_errors.is_empty()
    }

    /// Whether `checker` reported a violation.
    pub fn violated(&self, checker: &str) -> bool {
        self.violations.iter().any(|(c, _)| c == checker)
    }
}

/// Register keys of the linearizability workload.
const REGISTER_KEYS: usize = 8;
/// Register workers.
const REGISTER_WORKERS: usize = 6;
/// Bank accounts and their starting balance.
const ACCOUNTS: usize = 5;
const START_BALANCE: i64 = 100;
/// Bound on the cluster coming (back) up.
const UP_TIMEOUT: Duration = Duration::from_secs(90);
/// Bound on one operation of the workload.
const OP_TIMEOUT: Duration = Duration::from_secs(3);

macro_rules! say {
    ($cfg:expr, $($arg:tt)*) => {
        if $cfg.verbose {
            eprintln!("nemesis: {}", format!($($arg)*));
        }
    };
}

/// Runs the whole thing; see the module docs.
pub async fn run(cfg: &Config) -> Report {
    let mut report = Report {
        seed: cfg.seed,
        ..Report::default()
    };
    let tmp = tempfile::Builder::new()
        .prefix("sett-nemesis-")
        .tempdir()
        .expect("temporary directory");
    let common = vec![
        format!("--heartbeat-interval={}", cfg.heartbeat_ms),
        format!("--election-timeout={}", cfg.election_ms),
        "--initial-cluster-token=nemesis".to_owned(),
        // Snapshots and catch-up by snapshot happen during the run.
        "--snapshot-count=2000".to_owned(),
        "--experimental-snapshot-catchup-entries=500".to_owned(),
    ];
    let mut procs = Procs::new(
        cfg.binary.clone(),
        tmp.path().to_path_buf(),
        cfg.nodes,
        cfg.debug_faults.join(","),
        common,
    )
    .await;
    let plan = schedule(cfg.seed, cfg.duration, &cfg.faults);
    say!(
        cfg,
        "seed {} nodes {} duration {:?} debug faults {:?} dir {}",
        cfg.seed,
        cfg.nodes,
        cfg.duration,
        cfg.debug_faults,
        tmp.path().display()
    );
    for p in &plan {
        say!(cfg, "plan {p}");
        report.schedule.push(p.to_string());
    }
    procs.start_all();
    if let Err(e) = wait_up(&mut procs, UP_TIMEOUT).await {
        report
            .harness_errors
            .push(format!("cluster did not start: {e}"));
        finish_dir(cfg, tmp, &mut report);
        return report;
    }
    let shared = Arc::new(Shared {
        start: Instant::now(),
        stop: Default::default(),
        urls: RwLock::new(procs.client_urls()),
        op_timeout: OP_TIMEOUT,
    });
    let accounts = workload::bank_accounts(ACCOUNTS);
    let watch_start = match setup(&shared, &accounts).await {
        Ok(r) => r + 1,
        Err(e) => {
            report.harness_errors.push(format!("setup: {e}"));
            finish_dir(cfg, tmp, &mut report);
            return report;
        }
    };
    let native =
        sett_client::Client::connect(procs.client_urls(), sett_client::ConnectOptions::default())
            .await
            .ok();

    // The load.
    let mut reg_tasks = Vec::new();
    for w in 0..REGISTER_WORKERS {
        let seed = cfg.seed.wrapping_mul(31).wrapping_add(w as u64);
        reg_tasks.push(tokio::spawn(workload::register_worker(
            shared.clone(),
            w,
            REGISTER_KEYS,
            seed,
        )));
    }
    let mut bank_tasks = Vec::new();
    for w in 0..4 {
        let seed = cfg.seed.wrapping_mul(37).wrapping_add(w as u64);
        let native = if w % 2 == 1 { native.clone() } else { None };
        bank_tasks.push(tokio::spawn(workload::bank_worker(
            shared.clone(),
            w,
            accounts.clone(),
            native,
            seed,
        )));
    }
    let mut writer_tasks = Vec::new();
    for w in 0..2 {
        let seed = cfg.seed.wrapping_mul(41).wrapping_add(w as u64);
        writer_tasks.push(tokio::spawn(workload::watch_writer(
            shared.clone(),
            w,
            seed,
        )));
    }
    let until = Arc::new(RwLock::new(None));
    let mut watcher_tasks = Vec::new();
    for w in 0..3 {
        let seed = cfg.seed.wrapping_mul(43).wrapping_add(w as u64);
        watcher_tasks.push(tokio::spawn(workload::watcher(
            shared.clone(),
            format!("watcher-{w}"),
            watch_start,
            seed,
            until.clone(),
            Duration::from_secs(60),
        )));
    }

    // The faults.
    let load_start = Instant::now();
    for p in &plan {
        sleep_until(load_start + p.at).await;
        say!(
            cfg,
            "{:>6.1}s start {}",
            load_start.elapsed().as_secs_f64(),
            p.kind
        );
        if let Err(e) = apply(cfg, &mut procs, &shared, p, &mut report).await {
            say!(cfg, "fault {} could not be applied: {e}", p.kind);
            report.harness_errors.push(format!(
                "{}: {} not applied: {e}",
                p.at.as_secs_f64(),
                p.kind
            ));
        }
        heal(&mut procs);
        say!(cfg, "{:>6.1}s healed", load_start.elapsed().as_secs_f64());
    }
    sleep_until(load_start + cfg.duration).await;
    heal(&mut procs);
    say!(cfg, "load done; waiting for the cluster");
    if let Err(e) = wait_up(&mut procs, UP_TIMEOUT).await {
        report
            .harness_errors
            .push(format!("cluster did not recover: {e}"));
    }
    // A little load on the healed cluster, then stop the workers.
    tokio::time::sleep(Duration::from_secs(2)).await;
    shared.stop.store(true, Ordering::SeqCst);
    let mut reg_ops: Vec<Op> = Vec::new();
    for t in reg_tasks {
        reg_ops.extend(t.await.unwrap_or_default());
    }
    let mut bank_reads: Vec<BankRead> = Vec::new();
    for t in bank_tasks {
        bank_reads.extend(t.await.unwrap_or_default());
    }
    let mut acked = Vec::new();
    for t in writer_tasks {
        acked.extend(t.await.unwrap_or_default());
    }

    // Durability: SIGKILL every member at once and start them again.
    say!(cfg, "killing every member and restarting");
    procs.kill_all();
    for s in 0..procs.len() {
        procs.restart(s);
    }
    if let Err(e) = wait_up(&mut procs, UP_TIMEOUT).await {
        report
            .harness_errors
            .push(format!("cluster did not restart: {e}"));
    }
    let mut final_client = None;
    if let Some(s) = leader_slot(&mut procs).await {
        final_client = Clients::default().get(&shared, s).await;
    }
    match final_client {
        None => report
            .harness_errors
            .push("no leader to read the final state from".into()),
        Some(mut c) => {
            // Final reads of every register, in the history.
            let process = 1_000_000;
            for k in 0..REGISTER_KEYS {
                let key = format!("{REGISTER_PREFIX}{k}");
                let invoke_ns = shared.now_ns();
                let outcome =
                    workload::register_call(&shared, &mut c, &key, &RegisterOp::Read).await;
                if outcome == RegOutcome::Failed {
                    report
                        .harness_errors
                        .push(format!("final read of {key} failed"));
                }
                reg_ops.push(Op {
                    id: 0,
                    process: process + k,
                    key,
                    op: RegisterOp::Read,
                    invoke_ns,
                    complete_ns: shared.now_ns(),
                    outcome,
                });
            }
            match workload::bank_read(&shared, &mut c, 1_000_000).await {
                Some(r) => bank_reads.push(r),
                None => report.harness_errors.push("final bank read failed".into()),
            }
            // The watchers catch up to the last watched write.
            let end = last_watched_revision(&mut c).await.unwrap_or(0);
            *until.write().expect("until lock") = Some(end);
            match workload::reference_events(&mut c, watch_start, end, Duration::from_secs(60))
                .await
            {
                Err(e) => report.harness_errors.push(e),
                Ok(reference) => {
                    let mut logs = Vec::new();
                    for t in watcher_tasks {
                        if let Ok(l) = t.await {
                            logs.push(l);
                        }
                    }
                    report.watch_acked = acked.len();
                    report.watch_events = reference.len();
                    for l in &logs {
                        report.watcher_events += l.events.len();
                        report.watcher_resumes += l.resumes;
                        let last = l.events.last().map_or(watch_start - 1, |e| e.revision);
                        let reached = reference.last().map_or(watch_start - 1, |e| e.revision);
                        if last < reached {
                            report.violations.push((
                                "watch".into(),
                                format!(
                                    "{} could not resume to revision {reached}: stopped at {last}",
                                    l.name
                                ),
                            ));
                        }
                    }
                    for v in watch_check::check(&reference, &acked, &logs) {
                        report.violations.push(("watch".into(), v.to_string()));
                    }
                }
            }
        }
    }

    // The checks.
    for (i, op) in reg_ops.iter_mut().enumerate() {
        op.id = i;
    }
    report.register_ops = reg_ops.len();
    report.register_unknown = reg_ops
        .iter()
        .filter(|o| o.outcome == RegOutcome::Unknown)
        .count();
    let lin = linearizable::check(&reg_ops, &CheckOptions::default());
    report.inconclusive_keys = lin.inconclusive_keys.clone();
    for v in &lin.violations {
        report
            .violations
            .push(("linearizable".into(), v.to_string()));
    }
    report.bank_reads = bank_reads.len();
    let total = START_BALANCE * ACCOUNTS as i64;
    for v in bank_check::check(&bank_reads, &accounts, total) {
        report.violations.push(("bank".into(), v.to_string()));
    }
    let limit = 3 * cfg.election_ms;
    for ms in &report.failover_ms {
        if *ms > limit {
            say!(
                cfg,
                "writes resumed {ms} ms after a leader kill (3 election timeouts = {limit} ms)"
            );
        }
    }
    drop(procs);
    finish_dir(cfg, tmp, &mut report);
    report
}

fn finish_dir(cfg: &Config, tmp: tempfile::TempDir, report: &mut Report) {
    if cfg.keep_dir || !report.passed() {
        report.dir = Some(tmp.keep());
    }
}

async fn sleep_until(t: Instant) {
    tokio::time::sleep_until(t.into()).await;
}

/// Writes the bank's starting balances in one Txn; returns its revision.
async fn setup(shared: &Shared, accounts: &[String]) -> Result<i64, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut clients = Clients::default();
    loop {
        if let Some(mut c) = clients.get(shared, 0).await {
            let ops: Vec<TxnOp> = accounts
                .iter()
                .map(|a| TxnOp::put(a.as_str(), START_BALANCE.to_string(), None))
                .collect();
            match c.txn(Txn::new().and_then(ops)).await {
                Ok(r) => return Ok(r.header().map_or(0, |h| h.revision())),
                Err(e) if Instant::now() >= deadline => return Err(e.to_string()),
                Err(_) => {}
            }
        }
        if Instant::now() >= deadline {
            return Err("no member answered".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The highest mod revision under the watched prefix (no deletes there).
async fn last_watched_revision(c: &mut Client) -> Option<i64> {
    let r = c
        .get(WATCH_PREFIX, Some(GetOptions::new().with_prefix()))
        .await
        .ok()?;
    r.kvs().iter().map(|kv| kv.mod_revision()).max()
}

/// Status of slot `s`: (member id, leader id), within a second.
async fn status(procs: &Procs, s: usize) -> Option<(u64, u64)> {
    let url = procs.slots[s].now().client_url();
    let opts = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_millis(500))
        .with_timeout(Duration::from_secs(1));
    let fut = async {
        let mut c = Client::connect([url], Some(opts)).await.ok()?;
        let st = c.status().await.ok()?;
        let h = st.header()?;
        Some((h.member_id(), st.leader()))
    };
    tokio::time::timeout(Duration::from_secs(2), fut)
        .await
        .ok()
        .flatten()
}

/// The slot whose member leads, by what the reachable members say.
async fn leader_slot(procs: &mut Procs) -> Option<usize> {
    let mut votes: HashMap<u64, usize> = HashMap::new();
    for s in 0..procs.len() {
        if procs.slots[s].paused || !procs.is_running(s) {
            continue;
        }
        if let Some((id, leader)) = status(procs, s).await {
            if procs.slots[s].id == 0 {
                procs.slots[s].id = id;
            }
            if leader != 0 {
                *votes.entry(leader).or_default() += 1;
            }
        }
    }
    let (leader, _) = votes.into_iter().max_by_key(|(_, n)| *n)?;
    procs.slots.iter().position(|s| s.id == leader)
}

/// Waits until every slot's member answers Status and all name one
/// leader; restarts members found dead (a member may stop itself, e.g.
/// after a failed start).
async fn wait_up(procs: &mut Procs, bound: Duration) -> Result<(), String> {
    let deadline = Instant::now() + bound;
    loop {
        let mut seen = Vec::new();
        for s in 0..procs.len() {
            seen.push(status(procs, s).await);
        }
        let leaders: Vec<u64> = seen.iter().flatten().map(|(_, l)| *l).collect();
        if seen.iter().all(Option::is_some)
            && leaders[0] != 0
            && leaders.iter().all(|l| *l == leaders[0])
        {
            for (s, st) in seen.iter().enumerate() {
                if let Some((id, _)) = st {
                    procs.slots[s].id = *id;
                }
            }
            return Ok(());
        }
        if Instant::now() >= deadline {
            let tails: Vec<String> = (0..procs.len())
                .map(|s| format!("--- {}:\n{}", procs.name(s), procs.log_tail(s, 15)))
                .collect();
            return Err(format!("status {seen:?}\n{}", tails.join("\n")));
        }
        for s in 0..procs.len() {
            if !procs.is_running(s) {
                procs.restart(s);
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Undoes every fault: links healed, paused members continued, dead
/// members restarted.
fn heal(procs: &mut Procs) {
    procs.heal_all();
    for s in 0..procs.len() {
        if procs.slots[s].paused {
            procs.resume(s);
        }
        if !procs.is_running(s) {
            procs.restart(s);
        }
    }
}

/// Applies fault `p`, holds it, and returns (the caller heals).
async fn apply(
    cfg: &Config,
    procs: &mut Procs,
    shared: &Arc<Shared>,
    p: &Planned,
    report: &mut Report,
) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(p.pick);
    let n = procs.len();
    let all: Vec<usize> = (0..n).collect();
    let cut = cut_kind(p.blackhole);
    match p.kind {
        FaultKind::KillLeader => {
            let leader = leader_slot(procs).await.ok_or("no leader")?;
            say!(cfg, "  kill {} (leader)", procs.name(leader));
            procs.kill(leader);
            let killed = Instant::now();
            let others: Vec<usize> = all.iter().copied().filter(|s| *s != leader).collect();
            let ms = first_write_after(shared, &others, Duration::from_secs(20)).await;
            match ms {
                Some(ms) => {
                    say!(cfg, "  writes resumed after {ms} ms");
                    report.failover_ms.push(ms);
                }
                None => return Err("no write succeeded within 20 s of the leader kill".into()),
            }
            sleep_until(killed + p.hold).await;
        }
        FaultKind::KillRandom => {
            let s = rng.gen_range(0..n);
            say!(cfg, "  kill {}", procs.name(s));
            procs.kill(s);
            tokio::time::sleep(p.hold).await;
        }
        FaultKind::KillAll => {
            say!(cfg, "  kill all");
            procs.kill_all();
            tokio::time::sleep(p.hold).await;
        }
        FaultKind::Pause => {
            let s = if rng.gen_bool(0.5) {
                leader_slot(procs).await.unwrap_or(0)
            } else {
                rng.gen_range(0..n)
            };
            say!(cfg, "  pause {}", procs.name(s));
            procs.pause(s);
            tokio::time::sleep(p.hold).await;
        }
        FaultKind::Partition => {
            let mut order = all.clone();
            order.shuffle(&mut rng);
            let (minority, majority) = order.split_at(n.div_ceil(2) - 1);
            say!(cfg, "  partition {minority:?} | {majority:?}");
            procs.cut_between(minority, majority, cut);
            tokio::time::sleep(p.hold).await;
        }
        FaultKind::IsolateLeader => {
            let leader = leader_slot(procs).await.ok_or("no leader")?;
            let rest: Vec<usize> = all.iter().copied().filter(|s| *s != leader).collect();
            say!(cfg, "  isolate {} (leader)", procs.name(leader));
            procs.cut_between(&[leader], &rest, cut);
            tokio::time::sleep(p.hold).await;
        }
        FaultKind::Bridge => {
            let mut order = all.clone();
            order.shuffle(&mut rng);
            let bridge = order[0];
            let rest = &order[1..];
            let (a, b) = rest.split_at(rest.len() / 2);
            say!(cfg, "  bridge {bridge}: {a:?} | {b:?}");
            procs.cut_between(a, b, cut);
            tokio::time::sleep(p.hold).await;
        }
        FaultKind::Replace => replace(cfg, procs, shared, &mut rng).await?,
    }
    Ok(())
}

/// Milliseconds until a put through one of `slots` succeeds.
async fn first_write_after(shared: &Shared, slots: &[usize], bound: Duration) -> Option<u64> {
    let start = Instant::now();
    let mut clients = Clients::default();
    let mut i = 0;
    while start.elapsed() < bound {
        let s = slots[i % slots.len()];
        i += 1;
        if let Some(mut c) = clients.get(shared, s).await {
            let put = c.put("/probe", i.to_string(), None);
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(500), put).await {
                return Some(start.elapsed().as_millis() as u64);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// Removes a follower, wipes its data, and adds it back as a new member.
async fn replace(
    cfg: &Config,
    procs: &mut Procs,
    shared: &Shared,
    rng: &mut StdRng,
) -> Result<(), String> {
    let leader = leader_slot(procs).await.ok_or("no leader")?;
    let followers: Vec<usize> = (0..procs.len()).filter(|s| *s != leader).collect();
    let s = *followers.choose(rng).ok_or("no follower")?;
    if procs.slots[s].incarnation + 1 >= super::procs::INCARNATIONS {
        return Ok(());
    }
    let old_id = procs.slots[s].id;
    let mut c = Clients::default()
        .get(shared, leader)
        .await
        .ok_or("no client for the leader")?;
    say!(cfg, "  remove {} ({old_id:x})", procs.name(s));
    retry(|| {
        let mut c = c.clone();
        async move {
            match c.member_remove(old_id).await {
                // An earlier attempt that timed out went through.
                Err(e) if e.to_string().contains("member not found") => Ok(()),
                r => r.map(|_| ()),
            }
        }
    })
    .await
    .map_err(|e| format!("member remove: {e}"))?;
    procs.kill(s);
    procs.wipe(s);
    procs.next_incarnation(s);
    let name = procs.name(s);
    let peer = procs.slots[s].now().peer_url();
    say!(cfg, "  add {name} at {peer}");
    let added = retry(|| {
        let mut c = c.clone();
        let peer = peer.clone();
        async move { c.member_add([peer], None).await }
    })
    .await
    .map_err(|e| format!("member add: {e}"))?;
    let new_id = added
        .member()
        .map(|m| m.id())
        .ok_or("no member in answer")?;
    let ic = added
        .member_list()
        .iter()
        .flat_map(|m| {
            let n = if m.id() == new_id {
                name.clone()
            } else {
                m.name().to_owned()
            };
            m.peer_urls()
                .iter()
                .map(move |u| format!("{n}={u}"))
                .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>()
        .join(",");
    procs.slots[s].id = new_id;
    shared.urls.write().expect("urls lock")[s] = procs.slots[s].now().client_url();
    procs.start_joiner(s, &ic);
    let _ = c.status().await;
    Ok(())
}

/// Calls `f` until it succeeds or fails for a reason other than a
/// leader change or etcd's "unhealthy cluster" refusal, for up to 10 s.
async fn retry<T, F, Fut>(mut f: F) -> Result<T, etcd_client::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    let transient = |e: &etcd_client::Error| {
        let m = e.to_string();
        [
            "unhealthy cluster",
            "leader changed",
            "no leader",
            "timed out",
            "Unavailable",
        ]
        .iter()
        .any(|t| m.contains(t))
    };
    loop {
        let r = tokio::time::timeout(Duration::from_secs(3), f()).await;
        match r {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) if Instant::now() >= deadline || !transient(&e) => return Err(e),
            Err(_) if Instant::now() >= deadline => {
                return Err(etcd_client::Error::InvalidArgs("timed out".into()))
            }
            _ => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}
