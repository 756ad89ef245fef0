//! The client workloads of a nemesis run. Every worker is a Tokio task
//! that talks to a member of its choosing through etcd's own Rust client
//! (and sett's native transactions for half of the bank transfers), and
//! records what it invoked and what came back.
//!
//! An operation that times out or loses its connection is *unknown*: it
//! may still take effect. A register worker whose operation is unknown
//! continues as a new process, since it cannot know what it did.

use super::bank_check::BankRead;
use super::linearizable::{Op, Outcome, RegisterOp};
use super::watch_check::{EventKind, WatchEvent, WatcherLog};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Txn, TxnOp, WatchOptions,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Prefix of the register keys.
pub const REGISTER_PREFIX: &str = "/reg/";
/// Prefix of the bank accounts.
pub const BANK_PREFIX: &str = "/bank/";
/// Prefix of the keys the watchers watch.
pub const WATCH_PREFIX: &str = "/w/";

/// What every worker shares.
#[derive(Debug)]
pub struct Shared {
    /// Time zero of the history.
    pub start: Instant,
    /// Set when the workers are to finish.
    pub stop: AtomicBool,
    /// The client URL of every slot's current member.
    pub urls: RwLock<Vec<String>>,
    /// Bound on one operation.
    pub op_timeout: Duration,
}

impl Shared {
    /// Nanoseconds since [`Shared::start`].
    pub fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Whether the workers are to finish.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn url(&self, slot: usize) -> String {
        self.urls.read().expect("urls lock")[slot].clone()
    }

    fn slots(&self) -> usize {
        self.urls.read().expect("urls lock").len()
    }
}

/// One client per slot, rebuilt when the slot's URL changes.
#[derive(Default)]
pub struct Clients {
    cache: Vec<Option<(String, Client)>>,
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<&str> = self
            .cache
            .iter()
            .flatten()
            .map(|(u, _)| u.as_str())
            .collect();
        f.debug_struct("Clients").field("urls", &urls).finish()
    }
}

impl Clients {
    /// The client for slot `s`.
    pub async fn get(&mut self, shared: &Shared, s: usize) -> Option<Client> {
        let url = shared.url(s);
        if self.cache.len() <= s {
            self.cache.resize_with(s + 1, || None);
        }
        if let Some((u, c)) = &self.cache[s] {
            if *u == url {
                return Some(c.clone());
            }
        }
        let opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(1))
            .with_timeout(shared.op_timeout);
        let c = tokio::time::timeout(
            Duration::from_secs(2),
            Client::connect([url.as_str()], Some(opts)),
        )
        .await
        .ok()?
        .ok()?;
        self.cache[s] = Some((url, c.clone()));
        Some(c)
    }
}

/// Runs `f` with the operation timeout; `None` when it timed out.
async fn timed<T, F: std::future::Future<Output = T>>(shared: &Shared, f: F) -> Option<T> {
    tokio::time::timeout(shared.op_timeout, f).await.ok()
}

fn decode_u64(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// Register worker `w`: reads, writes and compare-and-sets on `keys`
/// register keys until told to stop. Process ids are `w * 10_000 + n`
/// for its `n`th process.
pub async fn register_worker(shared: Arc<Shared>, w: usize, keys: usize, seed: u64) -> Vec<Op> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut clients = Clients::default();
    let mut ops = Vec::new();
    let mut process = w * 10_000;
    let mut counter: u64 = 0;
    // The last value this worker saw per key: what its CAS expects.
    let mut seen: Vec<Option<u64>> = vec![None; keys];
    while !shared.stopping() {
        let k = rng.gen_range(0..keys);
        let key = format!("{REGISTER_PREFIX}{k}");
        let slot = rng.gen_range(0..shared.slots());
        let choice = rng.gen_range(0..10);
        let op = if choice < 5 {
            RegisterOp::Read
        } else if choice < 8 || seen[k].is_none() {
            counter += 1;
            RegisterOp::Write(((w as u64) << 32) | counter)
        } else {
            counter += 1;
            RegisterOp::Cas {
                expect: seen[k].unwrap_or(0),
                new: ((w as u64) << 32) | counter,
            }
        };
        let invoke_ns = shared.now_ns();
        let outcome = match clients.get(&shared, slot).await {
            None => Outcome::Failed,
            Some(mut c) => register_call(&shared, &mut c, &key, &op).await,
        };
        let complete_ns = shared.now_ns();
        match &outcome {
            Outcome::Read(v) => seen[k] = *v,
            Outcome::Written => {
                if let RegisterOp::Write(v) = op {
                    seen[k] = Some(v);
                }
            }
            Outcome::Cas(true) => {
                if let RegisterOp::Cas { new, .. } = op {
                    seen[k] = Some(new);
                }
            }
            _ => {}
        }
        let unknown = outcome == Outcome::Unknown;
        ops.push(Op {
            id: 0,
            process,
            key,
            op,
            invoke_ns,
            complete_ns,
            outcome,
        });
        if unknown {
            process += 1;
            // A member that does not answer: give it a moment.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    ops
}

/// One register operation through `c`.
pub async fn register_call(shared: &Shared, c: &mut Client, key: &str, op: &RegisterOp) -> Outcome {
    match op {
        RegisterOp::Read => match timed(shared, c.get(key, None)).await {
            Some(Ok(r)) => Outcome::Read(r.kvs().first().and_then(|kv| decode_u64(kv.value()))),
            // A read that failed had no effect: leave it out.
            _ => Outcome::Failed,
        },
        RegisterOp::Write(v) => match timed(shared, c.put(key, v.to_string(), None)).await {
            Some(Ok(_)) => Outcome::Written,
            _ => Outcome::Unknown,
        },
        RegisterOp::Cas { expect, new } => {
            let txn = Txn::new()
                .when([Compare::value(key, CompareOp::Equal, expect.to_string())])
                .and_then([TxnOp::put(key, new.to_string(), None)]);
            match timed(shared, c.txn(txn)).await {
                Some(Ok(r)) => Outcome::Cas(r.succeeded()),
                _ => Outcome::Unknown,
            }
        }
    }
}

/// The bank's accounts.
pub fn bank_accounts(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{BANK_PREFIX}a{i}")).collect()
}

/// Reads every account at one revision through `c`.
pub async fn bank_read(shared: &Shared, c: &mut Client, process: usize) -> Option<BankRead> {
    let invoke_ns = shared.now_ns();
    let r = timed(
        shared,
        c.get(BANK_PREFIX, Some(GetOptions::new().with_prefix())),
    )
    .await?
    .ok()?;
    let balances = r
        .kvs()
        .iter()
        .map(|kv| {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let v = std::str::from_utf8(kv.value())
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(i64::MIN);
            (key, v)
        })
        .collect();
    Some(BankRead {
        process,
        invoke_ns,
        complete_ns: shared.now_ns(),
        revision: r.header().map_or(0, |h| h.revision()),
        balances,
    })
}

/// Bank worker `w`: transfers between accounts (through etcd Txn, or
/// through native interactive transactions when `native` is given) and
/// reads of all accounts.
pub async fn bank_worker(
    shared: Arc<Shared>,
    w: usize,
    accounts: Vec<String>,
    native: Option<sett_client::Client>,
    seed: u64,
) -> Vec<BankRead> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut clients = Clients::default();
    let mut reads = Vec::new();
    while !shared.stopping() {
        let slot = rng.gen_range(0..shared.slots());
        let Some(mut c) = clients.get(&shared, slot).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if rng.gen_bool(0.4) {
            if let Some(r) = bank_read(&shared, &mut c, w).await {
                reads.push(r);
            }
            continue;
        }
        let from = rng.gen_range(0..accounts.len());
        let to = (from + rng.gen_range(1..accounts.len())) % accounts.len();
        let amount = rng.gen_range(1..=5i64);
        match &native {
            Some(n) => native_transfer(&shared, n, &accounts[from], &accounts[to], amount).await,
            None => etcd_transfer(&shared, &mut c, &accounts[from], &accounts[to], amount).await,
        }
    }
    reads
}

/// Moves `amount` from `from` to `to` if `from` has it, with an etcd Txn
/// guarded by both accounts' mod revisions.
async fn etcd_transfer(shared: &Shared, c: &mut Client, from: &str, to: &str, amount: i64) {
    let Some(Ok(r)) = timed(
        shared,
        c.get(BANK_PREFIX, Some(GetOptions::new().with_prefix())),
    )
    .await
    else {
        return;
    };
    let find = |k: &str| {
        r.kvs()
            .iter()
            .find(|kv| kv.key() == k.as_bytes())
            .map(|kv| (decode_i64(kv.value()), kv.mod_revision()))
    };
    let (Some((fb, fr)), Some((tb, tr))) = (find(from), find(to)) else {
        return;
    };
    if fb < amount {
        return;
    }
    let txn = Txn::new()
        .when([
            Compare::mod_revision(from, CompareOp::Equal, fr),
            Compare::mod_revision(to, CompareOp::Equal, tr),
        ])
        .and_then([
            TxnOp::put(from, (fb - amount).to_string(), None),
            TxnOp::put(to, (tb + amount).to_string(), None),
        ]);
    let _ = timed(shared, c.txn(txn)).await;
}

fn decode_i64(bytes: &[u8]) -> i64 {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(i64::MIN)
}

/// The same transfer as one native interactive transaction.
async fn native_transfer(
    shared: &Shared,
    client: &sett_client::Client,
    from: &str,
    to: &str,
    amount: i64,
) {
    let txs = client.transactions().with_max_attempts(1);
    let work = async {
        let txn = txs.begin().await.ok()?;
        let fb = decode_i64(&txn.get(from).await.ok()??);
        let tb = decode_i64(&txn.get(to).await.ok()??);
        if fb < amount {
            return None;
        }
        txn.put(from, (fb - amount).to_string());
        txn.put(to, (tb + amount).to_string());
        txs.commit(&txn).await.ok()
    };
    let _ = timed(shared, work).await;
}

/// Watch writer `w`: puts to the watched keys and records each
/// acknowledged `(key, revision)`.
pub async fn watch_writer(shared: Arc<Shared>, w: usize, seed: u64) -> Vec<(String, i64)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut clients = Clients::default();
    let mut acked = Vec::new();
    let mut n = 0u64;
    while !shared.stopping() {
        let slot = rng.gen_range(0..shared.slots());
        let Some(mut c) = clients.get(&shared, slot).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        n += 1;
        let key = format!("{WATCH_PREFIX}k{}", rng.gen_range(0..8));
        if let Some(Ok(r)) = timed(&shared, c.put(key.as_str(), format!("{w}-{n}"), None)).await {
            acked.push((key, r.header().map_or(0, |h| h.revision())));
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..20))).await;
    }
    acked
}

/// A watcher of [`WATCH_PREFIX`] from `start_revision`: follows the
/// stream on a member of its choosing and, when the stream breaks, resumes
/// on another member from the revision after the last event it got. Runs
/// until `shared` stops and then until it has seen `until()` (if it
/// returns a revision), within `catch_up`.
pub async fn watcher(
    shared: Arc<Shared>,
    name: String,
    start_revision: i64,
    seed: u64,
    until: Arc<RwLock<Option<i64>>>,
    catch_up: Duration,
) -> WatcherLog {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut clients = Clients::default();
    let mut log = WatcherLog {
        name,
        start_revision,
        events: Vec::new(),
        resumes: 0,
    };
    let mut deadline: Option<Instant> = None;
    let mut first = true;
    loop {
        let target = *until.read().expect("until lock");
        let done = |log: &WatcherLog| {
            let last = log.events.last().map_or(start_revision - 1, |e| e.revision);
            target.is_some_and(|t| last >= t)
        };
        if shared.stopping() {
            let d = *deadline.get_or_insert_with(|| Instant::now() + catch_up);
            if done(&log) || Instant::now() >= d {
                return log;
            }
            if target.is_none() {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        }
        if !first {
            log.resumes += 1;
        }
        first = false;
        let slot = rng.gen_range(0..shared.slots());
        let Some(mut c) = clients.get(&shared, slot).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let from = log.events.last().map_or(start_revision, |e| e.revision + 1);
        let opts = WatchOptions::new().with_prefix().with_start_revision(from);
        let Some(Ok(mut stream)) = timed(&shared, c.watch(WATCH_PREFIX, Some(opts))).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        // Follow this stream until it breaks, goes quiet for a while
        // (its member may be cut off), or the catch-up is complete.
        loop {
            let quiet = Duration::from_secs(2);
            match tokio::time::timeout(quiet, stream.message()).await {
                Ok(Ok(Some(resp))) => {
                    if resp.canceled() {
                        break;
                    }
                    log.events.extend(resp.events().iter().filter_map(event));
                }
                Ok(_) => break,
                Err(_) => {
                    if shared.stopping() || rng.gen_bool(0.5) {
                        break;
                    }
                }
            }
            if shared.stopping() && (done(&log) || deadline.is_some_and(|d| Instant::now() >= d)) {
                break;
            }
        }
    }
}

/// A watch event as the checker takes it.
fn event(ev: &etcd_client::Event) -> Option<WatchEvent> {
    let kv = ev.kv()?;
    Some(WatchEvent {
        revision: kv.mod_revision(),
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        kind: match ev.event_type() {
            EventType::Put => EventKind::Put,
            EventType::Delete => EventKind::Delete,
        },
        value: kv.value().to_vec(),
    })
}

/// The complete event list of [`WATCH_PREFIX`] from `start` through
/// `end`, read by a fresh watch through `c`.
pub async fn reference_events(
    c: &mut Client,
    start: i64,
    end: i64,
    bound: Duration,
) -> Result<Vec<WatchEvent>, String> {
    let mut events = Vec::new();
    if end < start {
        return Ok(events);
    }
    let opts = WatchOptions::new().with_prefix().with_start_revision(start);
    let mut stream = c
        .watch(WATCH_PREFIX, Some(opts))
        .await
        .map_err(|e| format!("reference watch: {e}"))?;
    let deadline = Instant::now() + bound;
    while events.last().map_or(start - 1, |e: &WatchEvent| e.revision) < end {
        let left = deadline.saturating_duration_since(Instant::now());
        let resp = match tokio::time::timeout(left, stream.message()).await {
            Ok(Ok(Some(r))) => r,
            Ok(Ok(None)) => return Err("reference watch ended".into()),
            Ok(Err(e)) => return Err(format!("reference watch: {e}")),
            Err(_) => return Err(format!("reference watch did not reach revision {end}")),
        };
        events.extend(resp.events().iter().filter_map(event));
    }
    Ok(events)
}
