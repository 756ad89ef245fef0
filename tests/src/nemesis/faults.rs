//! The faults a nemesis run injects, and the seeded schedule of them.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::fmt;
use std::time::Duration;

/// A kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// SIGKILL the leader, restart it after the hold; the harness
    /// measures how long until a write succeeds again.
    KillLeader,
    /// SIGKILL a random member, restart it after the hold.
    KillRandom,
    /// SIGKILL every member, restart them all after the hold.
    KillAll,
    /// SIGSTOP a random member (the leader half of the time), SIGCONT
    /// after the hold.
    Pause,
    /// Cut the members into a random majority and minority.
    Partition,
    /// Cut the leader off from every other member.
    IsolateLeader,
    /// Split the members into two sides that cannot talk, with one member
    /// (the bridge) that talks to both.
    Bridge,
    /// Remove a follower from the membership, wipe its data directory,
    /// and add it back as a new member (new id, new URLs).
    Replace,
}

impl FaultKind {
    /// Every kind, with its command-line name.
    pub const ALL: [(FaultKind, &'static str); 8] = [
        (FaultKind::KillLeader, "kill-leader"),
        (FaultKind::KillRandom, "kill-random"),
        (FaultKind::KillAll, "kill-all"),
        (FaultKind::Pause, "pause"),
        (FaultKind::Partition, "partition"),
        (FaultKind::IsolateLeader, "isolate-leader"),
        (FaultKind::Bridge, "bridge"),
        (FaultKind::Replace, "replace"),
    ];

    /// Parses a command-line name.
    pub fn parse(name: &str) -> Option<FaultKind> {
        FaultKind::ALL
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(k, _)| *k)
    }

    /// The command-line name.
    pub fn name(self) -> &'static str {
        FaultKind::ALL
            .iter()
            .find(|(k, _)| *k == self)
            .map_or("?", |(_, n)| n)
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One scheduled fault.
#[derive(Debug, Clone)]
pub struct Planned {
    /// When it starts, from the start of the load.
    pub at: Duration,
    /// What it is.
    pub kind: FaultKind,
    /// How long it lasts before the harness heals it.
    pub hold: Duration,
    /// For partitions: drop bytes silently rather than reset connections.
    pub blackhole: bool,
    /// Seed for the choices made when it starts (which member, which
    /// side), which can depend on who leads at that moment.
    pub pick: u64,
}

impl fmt::Display for Planned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>6.1}s {} for {:.1}s{}",
            self.at.as_secs_f64(),
            self.kind,
            self.hold.as_secs_f64(),
            if self.blackhole { " (blackhole)" } else { "" }
        )
    }
}

/// The faults of a run of `duration` with `kinds` enabled, from `seed`:
/// a fault every 1.5–4.5 s of healthy time, each held 1–4 s, none
/// starting in the last 3 s.
pub fn schedule(seed: u64, duration: Duration, kinds: &[FaultKind]) -> Vec<Planned> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x6e65_6d65_7369_7321);
    let mut plan = Vec::new();
    if kinds.is_empty() {
        return plan;
    }
    let mut t = Duration::from_millis(rng.gen_range(1_500..3_000));
    while t + Duration::from_secs(3) < duration {
        let kind = kinds[rng.gen_range(0..kinds.len())];
        let hold = Duration::from_millis(rng.gen_range(1_000..4_000));
        plan.push(Planned {
            at: t,
            kind,
            hold,
            blackhole: rng.gen_bool(0.5),
            pick: rng.gen(),
        });
        t += hold + Duration::from_millis(rng.gen_range(1_500..4_500));
    }
    plan
}
