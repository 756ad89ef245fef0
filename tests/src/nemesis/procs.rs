//! The member processes of a nemesis run, and the proxies on every link
//! between them.
//!
//! A cluster has `n` slots. A slot is one member at a time; when the
//! nemesis wipes a member and adds it back, the slot's next incarnation
//! takes new ports (a member's id is derived from its peer URLs, and a
//! removed id cannot come back). Every incarnation's URLs are known from
//! the start, so every member's dial map routes each link through its
//! proxy, whichever incarnation is on the other end.

use super::proxy::{Cut, Link};
use std::collections::HashMap;
use std::fs::OpenOptions;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Incarnations a slot can have (the first start plus re-adds).
pub const INCARNATIONS: usize = 4;

/// The two URLs of one incarnation of a slot.
#[derive(Debug, Clone)]
pub struct Urls {
    /// Port of the client URL.
    pub client: u16,
    /// Port of the peer URL.
    pub peer: u16,
}

impl Urls {
    /// `http://127.0.0.1:<client>`.
    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client)
    }
    /// `http://127.0.0.1:<peer>`.
    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer)
    }
}

/// One slot: the member in it and its process.
#[derive(Debug)]
pub struct Slot {
    /// URLs of every incarnation.
    pub urls: Vec<Urls>,
    /// The current incarnation.
    pub incarnation: usize,
    /// Raft member id of the current incarnation (0 until known).
    pub id: u64,
    /// Flags of the current incarnation's first start, used again until
    /// it has written its `member.json`.
    first_args: Vec<String>,
    /// The running process.
    pub child: Option<Child>,
    /// Frozen by SIGSTOP.
    pub paused: bool,
}

impl Slot {
    /// The current incarnation's URLs.
    pub fn now(&self) -> &Urls {
        &self.urls[self.incarnation]
    }
}

/// The processes, their directories and the link proxies.
#[derive(Debug)]
pub struct Procs {
    /// The member binary.
    pub binary: PathBuf,
    /// Root of every data directory and log.
    pub dir: PathBuf,
    /// The slots.
    pub slots: Vec<Slot>,
    /// `links[a][b]`: proxies for connections `a` opens to `b`, one per
    /// incarnation of `b` and kind (peer, client).
    links: Vec<Vec<Vec<Link>>>,
    /// `SETT_DEBUG_FAULTS` for every member.
    debug_faults: String,
    /// Flags every member starts with.
    common_args: Vec<String>,
    /// Listeners holding each (slot, incarnation)'s ports until it starts.
    reserved: HashMap<(usize, usize), Vec<TcpListener>>,
}

/// Free ports on 127.0.0.1, each held by a listener until its member is
/// about to bind it. They are drawn from below Linux's ephemeral range
/// (32768 and up), so no outgoing connection of a proxy or a client can be
/// given one of them in the meantime, however long a later incarnation
/// waits for its turn.
fn free_ports(n: usize) -> Vec<(u16, TcpListener)> {
    let mut rng = rand::thread_rng();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let port = rand::Rng::gen_range(&mut rng, 10_000..32_000);
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
            out.push((port, l));
        }
    }
    out
}

impl Procs {
    /// Allocates ports and starts the proxies (on the current runtime);
    /// starts no member.
    pub async fn new(
        binary: PathBuf,
        dir: PathBuf,
        n: usize,
        debug_faults: String,
        common_args: Vec<String>,
    ) -> Procs {
        let mut reserved = HashMap::new();
        let mut ports = Vec::new();
        for (i, (port, listener)) in free_ports(2 * n * INCARNATIONS).into_iter().enumerate() {
            ports.push(port);
            let slot_incarnation = (i / 2 / INCARNATIONS, i / 2 % INCARNATIONS);
            reserved
                .entry(slot_incarnation)
                .or_insert_with(Vec::new)
                .push(listener);
        }
        let slots: Vec<Slot> = (0..n)
            .map(|s| Slot {
                urls: (0..INCARNATIONS)
                    .map(|k| {
                        let base = 2 * (s * INCARNATIONS + k);
                        Urls {
                            client: ports[base],
                            peer: ports[base + 1],
                        }
                    })
                    .collect(),
                incarnation: 0,
                id: 0,
                first_args: Vec::new(),
                child: None,
                paused: false,
            })
            .collect();
        let mut links = Vec::with_capacity(n);
        for a in 0..n {
            let mut row = Vec::with_capacity(n);
            for (b, slot) in slots.iter().enumerate() {
                let mut proxies = Vec::new();
                if a != b {
                    for u in &slot.urls {
                        for port in [u.peer, u.client] {
                            let link = Link::start(format!("127.0.0.1:{port}"))
                                .await
                                .expect("start a link proxy");
                            proxies.push(link);
                        }
                    }
                }
                row.push(proxies);
            }
            links.push(row);
        }
        Procs {
            binary,
            dir,
            slots,
            links,
            debug_faults,
            common_args,
            reserved,
        }
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there are no slots.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Name of slot `s`'s current member.
    pub fn name(&self, s: usize) -> String {
        let k = self.slots[s].incarnation;
        if k == 0 {
            format!("n{}", s + 1)
        } else {
            format!("n{}-{}", s + 1, k + 1)
        }
    }

    /// Data directory of slot `s`'s current member.
    pub fn data_dir(&self, s: usize) -> PathBuf {
        self.dir.join(self.name(s))
    }

    /// Log file of slot `s` (all incarnations).
    pub fn log_path(&self, s: usize) -> PathBuf {
        self.dir.join(format!("n{}.log", s + 1))
    }

    /// The client URLs of every slot's current member.
    pub fn client_urls(&self) -> Vec<String> {
        self.slots.iter().map(|s| s.now().client_url()).collect()
    }

    /// `--initial-cluster` of the first start.
    fn initial_cluster(&self) -> String {
        (0..self.len())
            .map(|s| format!("{}={}", self.name(s), self.slots[s].now().peer_url()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The dial map of slot `a`'s members: every URL of every other slot
    /// to its proxy.
    fn dial_map(&self, a: usize) -> String {
        let mut pairs = Vec::new();
        for (b, slot) in self.slots.iter().enumerate() {
            if a == b {
                continue;
            }
            for (k, u) in slot.urls.iter().enumerate() {
                let peer = &self.links[a][b][2 * k];
                let client = &self.links[a][b][2 * k + 1];
                pairs.push(format!("{}=http://127.0.0.1:{}", u.peer_url(), peer.port()));
                pairs.push(format!(
                    "{}=http://127.0.0.1:{}",
                    u.client_url(),
                    client.port()
                ));
            }
        }
        pairs.join(",")
    }

    /// The flags of slot `s`'s member at its first start.
    fn first_args(&self, s: usize, initial_cluster: &str, state: &str) -> Vec<String> {
        let u = self.slots[s].now();
        let mut args = vec![
            format!("--name={}", self.name(s)),
            format!("--data-dir={}", self.data_dir(s).display()),
            format!("--listen-client-urls={}", u.client_url()),
            format!("--advertise-client-urls={}", u.client_url()),
            format!("--listen-peer-urls={}", u.peer_url()),
            format!("--initial-advertise-peer-urls={}", u.peer_url()),
            format!("--initial-cluster={initial_cluster}"),
            format!("--initial-cluster-state={state}"),
        ];
        args.extend(self.common_args.iter().cloned());
        args
    }

    fn spawn(&mut self, s: usize, args: &[String]) {
        self.reserved.remove(&(s, self.slots[s].incarnation));
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(s))
            .expect("open member log");
        let err = log.try_clone().expect("clone log handle");
        let child = Command::new(&self.binary)
            .args(args)
            .env("SETT_DEBUG_DIAL_MAP", self.dial_map(s))
            .env("SETT_DEBUG_FAULTS", &self.debug_faults)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.binary.display()));
        self.slots[s].child = Some(child);
        self.slots[s].paused = false;
    }

    /// Starts every member of a new cluster.
    pub fn start_all(&mut self) {
        let ic = self.initial_cluster();
        for s in 0..self.len() {
            let args = self.first_args(s, &ic, "new");
            self.slots[s].first_args = args.clone();
            self.spawn(s, &args);
        }
    }

    /// Starts slot `s`'s next incarnation as a member joining an existing
    /// cluster whose `--initial-cluster` (with the new member) is `ic`;
    /// the caller has wiped and removed the old one.
    pub fn start_joiner(&mut self, s: usize, ic: &str) {
        let args = self.first_args(s, ic, "existing");
        self.slots[s].first_args = args.clone();
        self.spawn(s, &args);
    }

    /// Moves slot `s` to its next incarnation; false when none is left.
    pub fn next_incarnation(&mut self, s: usize) -> bool {
        if self.slots[s].incarnation + 1 >= INCARNATIONS {
            return false;
        }
        self.slots[s].incarnation += 1;
        self.slots[s].id = 0;
        true
    }

    /// Restarts slot `s`'s member from its data directory (with its
    /// first flags again if it never got as far as writing `member.json`).
    pub fn restart(&mut self, s: usize) {
        let dir = self.data_dir(s);
        let args = if dir.join("member.json").is_file() {
            vec![format!("--data-dir={}", dir.display())]
        } else {
            self.slots[s].first_args.clone()
        };
        self.spawn(s, &args);
    }

    /// Whether slot `s` has a live process (paused counts as live).
    pub fn is_running(&mut self, s: usize) -> bool {
        match self.slots[s].child.as_mut() {
            None => false,
            Some(c) => matches!(c.try_wait(), Ok(None)),
        }
    }

    /// SIGKILLs slot `s`'s process and reaps it.
    pub fn kill(&mut self, s: usize) {
        if let Some(mut c) = self.slots[s].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.slots[s].paused = false;
    }

    /// SIGSTOPs slot `s`'s process.
    pub fn pause(&mut self, s: usize) {
        self.signal(s, libc::SIGSTOP);
        self.slots[s].paused = true;
    }

    /// SIGCONTs slot `s`'s process.
    pub fn resume(&mut self, s: usize) {
        self.signal(s, libc::SIGCONT);
        self.slots[s].paused = false;
    }

    fn signal(&self, s: usize, sig: libc::c_int) {
        if let Some(c) = &self.slots[s].child {
            let pid = c.id() as libc::pid_t;
            // SAFETY: kill(2) on a child we spawned and have not reaped.
            unsafe {
                libc::kill(pid, sig);
            }
        }
    }

    /// Cuts every link between a member in `a` and one in `b`, both ways.
    pub fn cut_between(&self, a: &[usize], b: &[usize], how: Cut) {
        for &x in a {
            for &y in b {
                if x == y {
                    continue;
                }
                for link in self.links[x][y].iter().chain(&self.links[y][x]) {
                    link.cut(how);
                }
            }
        }
    }

    /// Heals every link.
    pub fn heal_all(&self) {
        for row in &self.links {
            for proxies in row {
                for link in proxies {
                    link.heal();
                }
            }
        }
    }

    /// Removes slot `s`'s data directory.
    pub fn wipe(&self, s: usize) {
        let _ = std::fs::remove_dir_all(self.data_dir(s));
    }

    /// The last `lines` lines of slot `s`'s log.
    pub fn log_tail(&self, s: usize, lines: usize) -> String {
        tail(&self.log_path(s), lines)
    }

    /// SIGKILLs everything.
    pub fn kill_all(&mut self) {
        for s in 0..self.len() {
            self.kill(s);
        }
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        self.kill_all();
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Whether `cut` is the blackhole kind; for choosing with a coin.
pub fn cut_kind(blackhole: bool) -> Cut {
    if blackhole {
        Cut::Blackhole
    } else {
        Cut::Reset
    }
}
