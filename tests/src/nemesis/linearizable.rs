//! Linearizability checker for per-key registers.
//!
//! # Model
//! Every key is an independent register that starts absent (`None`). A
//! `Write(v)` sets it to `Some(v)`; `Cas { expect, new }` sets it to
//! `Some(new)` iff it holds `Some(expect)`; a `Read` returns it. There is no
//! delete, so once written a register never reads absent again.
//!
//! A history is linearizable when every operation can be given a point in
//! time inside `[invoke_ns, complete_ns]` such that, applied in that order,
//! the sequential register produces exactly the recorded outcomes. Intervals
//! that touch (`a.complete_ns == b.invoke_ns`) count as concurrent.
//!
//! Outcomes:
//! - `Failed` ops had no effect: they are left out of the check.
//! - `Unknown` reads are left out (they constrain nothing).
//! - `Unknown` writes and compare-and-sets may take effect at any point after
//!   `invoke_ns`, or never: their completion is taken as +infinity and the
//!   search may leave them out. An unknown Cas swaps iff the state allows.
//! - An acknowledged `Cas(false)` must take effect where the register does
//!   *not* hold `Some(expect)`.
//!
//! # Algorithm
//! Keys are checked one at a time (P-compositionality). For one key the
//! search is the Wing & Gong / Lowe "just-in-time" depth-first search used
//! by Knossos and Porcupine: from a configuration (set of ops already
//! linearized, register state) it tries every op that may be linearized next
//! — an unlinearized op whose invocation is not after the earliest completion
//! among the acknowledged ops still to linearize — and backtracks when an
//! acknowledged op's completion is reached without it. Visited
//! configurations are memoized so each is expanded once.
//!
//! Optimisations, all of which keep the search exact:
//! - **Windows.** Ops are sorted by invocation and the frontier is found by
//!   a scan that starts at the first unlinearized op and stops at the first
//!   invocation past the earliest pending completion, so a step costs
//!   O(concurrency), not O(history).
//! - **Fingerprinted cache.** The linearized set is a bitset; the memo table
//!   stores a 128-bit Zobrist fingerprint of (set, state) that is updated in
//!   O(1) per step. Two distinct configurations collide with probability
//!   about 2^-128 per pair, i.e. never in practice.
//! - **Legal reads go first.** A read (or failed compare) in the frontier
//!   that fits the current state is linearized at once, without branching:
//!   it changes nothing, and any valid order can move it to the front.
//! - **Dead values.** When the register leaves value `v` while a pending op
//!   R still needs to see `v`, and no unused op that may write `v` is
//!   invoked by R's completion, the branch is cut at once (rather than
//!   when R's completion is reached). With unique write values this makes
//!   almost every wrong guess fail after one step.
//! - **Unknown ops only on demand.** Any valid order can be rewritten so that
//!   unknown ops sit in short chains directly before an acknowledged op that
//!   was impossible in the state before the chain; a chain starts with at
//!   most one write, every step changes the state, and duplicate unknown ops
//!   are interchangeable. The search only tries unknown ops under those rules,
//!   which stops an unobserved timeout from doubling the search space.
//! - **Unobservable values.** Values that no read observes and no Cas
//!   expects are all mapped to one sentinel: register states that differ
//!   only in such a value behave identically.
//! - A read (or successful Cas) of a value that no possibly-effective op
//!   writes is reported at once, without a search.
//!
//! The search is bounded by [`CheckOptions::max_steps_per_key`]; a key that
//! exhausts it is reported in [`Report::inconclusive_keys`], never as a
//! violation.
//!
//! Cost: with unique write values (e.g. `writer << 32 | counter`), 10k ops
//! on one key from 30 processes with 5–10% unknown outcomes take about
//! 0.1 s in a debug build. Reused values, combined with many unknown writes,
//! keep old unknown writes plausible forever and can make the search
//! exponential (it then ends inconclusive): give every write its own value.
//!
//! # Minimal slices
//! For a violating key the op list is shrunk by greedy delta debugging
//! (shortest violating prefix, then latest violating suffix start, then
//! removal of chunks of halving size, repeating single-op removal until
//! nothing more can go) while the subset still fails the check. A write is never dropped when it is the last remaining writer of a
//! value that a remaining op observes, so shrinking does not swap the real
//! anomaly for a manufactured "read of a value never written". Shrinking has
//! its own budget (`SHRINK_BUDGET_FACTOR` times `max_steps_per_key` steps
//! over all trials); whatever has been reached when it runs out is reported.
//! Failed ops that wrote a value the slice observes are appended for context.
//!
//! Inputs must be well formed: outcomes match their op (`Read` → `Read`,
//! `Write` → `Written`, `Cas` → `Cas`, or `Failed`/`Unknown` for any) and an
//! acknowledged op has `invoke_ns <= complete_ns`. Violating this panics.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

/// The operation a client issued against one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegisterOp {
    /// Read the current value.
    Read,
    /// Set the value.
    Write(u64),
    /// Set the value to `new` iff it currently is `Some(expect)`.
    Cas {
        /// Value the register must hold for the swap.
        expect: u64,
        /// Value written when the swap happens.
        new: u64,
    },
}

/// What the client learned about an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The read returned this value; `None` = key absent.
    Read(Option<u64>),
    /// The write was acknowledged.
    Written,
    /// The compare-and-set was acknowledged: `true` = swapped, `false` = the
    /// compare failed and nothing changed.
    Cas(bool),
    /// The op definitely had no effect (e.g. rejected before the leader).
    Failed,
    /// Indeterminate (timeout, connection lost): the op may have taken effect
    /// at any time after invocation, or never.
    Unknown,
}

/// One operation of a client history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// Unique id in the history (for reports).
    pub id: usize,
    /// Client process that issued the op.
    pub process: usize,
    /// Key (register) the op addresses.
    pub key: String,
    /// What was asked.
    pub op: RegisterOp,
    /// When the request was sent (ns, any fixed origin).
    pub invoke_ns: u64,
    /// When the response arrived (ignored for `Unknown`).
    pub complete_ns: u64,
    /// What the response said.
    pub outcome: Outcome,
}

/// Search limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOptions {
    /// Configurations a key's search may expand before the key is declared
    /// inconclusive. Shrinking a violation may spend a few times this more.
    pub max_steps_per_key: u64,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            max_steps_per_key: 2_000_000,
        }
    }
}

/// Result of [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Distinct keys in the history.
    pub keys: usize,
    /// Ops in the history (all outcomes).
    pub ops: usize,
    /// One entry per non-linearizable key, sorted by key.
    pub violations: Vec<Violation>,
    /// Keys whose search ran out of budget, sorted.
    pub inconclusive_keys: Vec<String>,
}

impl Report {
    /// True when no violation was found and every key was decided.
    pub fn is_linearizable(&self) -> bool {
        self.violations.is_empty() && self.inconclusive_keys.is_empty()
    }
}

/// A key whose history is not linearizable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The key.
    pub key: String,
    /// A small subset of the key's ops that is itself not linearizable,
    /// sorted by invocation, plus (for context) failed ops that wrote a value
    /// the subset observes.
    pub ops: Vec<Op>,
    /// Why the subset has no valid order.
    pub explanation: String,
}

/// Shrinking a violation may spend this many times `max_steps_per_key`.
const SHRINK_BUDGET_FACTOR: u64 = 4;

/// Checks every key of `ops` for linearizability (see the module docs).
pub fn check(ops: &[Op], opts: &CheckOptions) -> Report {
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in ops {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    let mut report = Report {
        keys: by_key.len(),
        ops: ops.len(),
        violations: Vec::new(),
        inconclusive_keys: Vec::new(),
    };
    for (key, key_ops) in by_key {
        let mut all: Vec<Op> = key_ops.into_iter().cloned().collect();
        all.sort_by_key(|o| (o.invoke_ns, o.id));
        // Ops that can matter: failed ops and unknown reads constrain nothing.
        let relevant: Vec<Op> = all.iter().filter(|o| matters(o)).cloned().collect();
        let prepared = prepare(&relevant);
        let verdict = match &prepared.phantom {
            Some(_) => Verdict::Violation,
            None => search(&prepared, opts.max_steps_per_key, false).0,
        };
        match verdict {
            Verdict::Linearizable => {}
            Verdict::Inconclusive => report.inconclusive_keys.push(key.to_string()),
            Verdict::Violation => {
                let slice = match prepared.phantom {
                    Some(i) => vec![relevant[i].clone()],
                    None => shrink(
                        relevant,
                        opts.max_steps_per_key,
                        opts.max_steps_per_key.saturating_mul(SHRINK_BUDGET_FACTOR),
                    ),
                };
                let explanation = explain(&slice, opts.max_steps_per_key);
                report.violations.push(Violation {
                    key: key.to_string(),
                    ops: with_failed_context(slice, &all),
                    explanation,
                });
            }
        }
    }
    report
}

impl fmt::Display for RegisterOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisterOp::Read => write!(f, "read"),
            RegisterOp::Write(v) => write!(f, "write {v}"),
            RegisterOp::Cas { expect, new } => write!(f, "cas {expect}->{new}"),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Read(Some(v)) => write!(f, "= {v}"),
            Outcome::Read(None) => write!(f, "= absent"),
            Outcome::Written => write!(f, "ok"),
            Outcome::Cas(true) => write!(f, "swapped"),
            Outcome::Cas(false) => write!(f, "compare failed"),
            Outcome::Failed => write!(f, "failed"),
            Outcome::Unknown => write!(f, "unknown"),
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "op {} p{} {} {}",
            self.id, self.process, self.op, self.outcome
        )
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "key {:?} is not linearizable: {}",
            self.key, self.explanation
        )?;
        let mut ops: Vec<&Op> = self.ops.iter().collect();
        ops.sort_by_key(|o| (o.invoke_ns, o.id));
        let origin = ops.first().map_or(0, |o| o.invoke_ns);
        let ms = |t: u64| t.saturating_sub(origin) as f64 / 1e6;
        writeln!(
            f,
            "  {:>8} {:>5}  {:<22} {:<15} {:>12} {:>12}",
            "op", "proc", "operation", "outcome", "invoke ms", "complete ms"
        )?;
        for o in ops {
            let complete = match o.outcome {
                Outcome::Unknown => "?".to_string(),
                _ => format!("{:.3}", ms(o.complete_ns)),
            };
            writeln!(
                f,
                "  {:>8} {:>5}  {:<22} {:<15} {:>12.3} {:>12}",
                o.id,
                format!("p{}", o.process),
                o.op.to_string(),
                o.outcome.to_string(),
                ms(o.invoke_ns),
                complete
            )?;
        }
        Ok(())
    }
}

/// False for ops that constrain nothing: failed ops and unknown reads.
fn matters(op: &Op) -> bool {
    match op.outcome {
        Outcome::Failed => false,
        Outcome::Unknown => op.op != RegisterOp::Read,
        _ => true,
    }
}

/// The slice plus (up to a few) failed ops that wrote a value the slice
/// observes.
fn with_failed_context(mut slice: Vec<Op>, all: &[Op]) -> Vec<Op> {
    /// Failed ops added for context, at most.
    const FAILED_SHOWN_MAX: usize = 8;
    let observed: HashSet<u64> = slice.iter().filter_map(observes).collect();
    let failed = all.iter().filter(|op| {
        op.outcome == Outcome::Failed && writes(op).is_some_and(|v| observed.contains(&v))
    });
    slice.extend(failed.take(FAILED_SHOWN_MAX).cloned());
    slice.sort_by_key(|o| (o.invoke_ns, o.id));
    slice
}

/// Value an op requires the register to hold, if any.
fn observes(op: &Op) -> Option<u64> {
    match (op.op, op.outcome) {
        (RegisterOp::Read, Outcome::Read(v)) => v,
        (RegisterOp::Cas { expect, .. }, Outcome::Cas(true)) => Some(expect),
        _ => None,
    }
}

/// Value an op may have written (ignoring failure), if any.
fn writes(op: &Op) -> Option<u64> {
    match (op.op, op.outcome) {
        (RegisterOp::Write(v), _) => Some(v),
        (RegisterOp::Cas { new, .. }, Outcome::Cas(true) | Outcome::Unknown | Outcome::Failed) => {
            Some(new)
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Search.

/// An op as the search sees it; values are already mapped (see `prepare`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read(Option<u64>),
    Write(u64),
    CasOk { expect: u64, new: u64 },
    CasFail { expect: u64 },
    UnknownWrite(u64),
    UnknownCas { expect: u64, new: u64 },
}

impl Kind {
    /// The state after applying `self` to `state`, or `None` when the
    /// recorded outcome is impossible in `state`.
    fn step(self, state: Option<u64>) -> Option<Option<u64>> {
        match self {
            Kind::Read(v) => (state == v).then_some(state),
            Kind::Write(v) | Kind::UnknownWrite(v) => Some(Some(v)),
            Kind::CasOk { expect, new } => (state == Some(expect)).then_some(Some(new)),
            Kind::CasFail { expect } => (state != Some(expect)).then_some(state),
            Kind::UnknownCas { expect, new } => Some(if state == Some(expect) {
                Some(new)
            } else {
                state
            }),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    kind: Kind,
    invoke: u64,
    complete: u64,
    /// Index into the op slice given to `prepare`.
    src: usize,
    /// Index (in `Prepared::values`) of the value the op needs to see.
    observes: Option<usize>,
    /// Index (in `Prepared::values`) of the value the op may write.
    writes: Option<usize>,
}

#[derive(Debug)]
struct Prepared {
    /// Acknowledged ops, sorted by (invoke, complete).
    defs: Vec<Entry>,
    /// Unknown writes and Cas ops, sorted by invoke.
    unks: Vec<Entry>,
    /// `expect` of every unknown Cas (a chain may need to reach it).
    unknown_cas_expects: HashSet<u64>,
    /// An acknowledged op observing a value nothing may have written.
    phantom: Option<usize>,
    /// Dense index of every state some op observes (`None` included).
    values: HashMap<Option<u64>, usize>,
    /// Per value index: bits (see `Search::linearized`) of the ops that may
    /// write it, by invocation.
    writers: Vec<Vec<usize>>,
    /// Per value index: defs that need to see it, by completion.
    observers: Vec<Vec<usize>>,
    /// Per bit: its position in its value's `writers` list.
    writer_pos: Vec<usize>,
    /// Per def: its position in its value's `observers` list.
    observer_pos: Vec<usize>,
}

impl Prepared {
    /// The op behind bit `bit` (defs first, then unknown ops).
    fn by_bit(&self, bit: usize) -> &Entry {
        match bit.checked_sub(self.defs.len()) {
            None => &self.defs[bit],
            Some(j) => &self.unks[j],
        }
    }
}

/// Converts one key's relevant ops (no failed ops, no unknown reads).
fn prepare(ops: &[Op]) -> Prepared {
    let mut observable = HashSet::new();
    let mut written = HashSet::new();
    for op in ops {
        assert!(matters(op), "prepare: op {} constrains nothing", op.id);
        match (op.op, op.outcome) {
            (RegisterOp::Read, Outcome::Read(v)) => observable.extend(v),
            (RegisterOp::Write(v), Outcome::Written | Outcome::Unknown) => {
                written.insert(v);
            }
            (RegisterOp::Cas { expect, new }, Outcome::Cas(ok)) => {
                observable.insert(expect);
                if ok {
                    written.insert(new);
                }
            }
            (RegisterOp::Cas { expect, new }, Outcome::Unknown) => {
                observable.insert(expect);
                written.insert(new);
            }
            (o, r) => panic!("op {}: outcome {r:?} does not fit op {o:?}", op.id),
        }
        if op.outcome != Outcome::Unknown {
            assert!(
                op.invoke_ns <= op.complete_ns,
                "op {}: completes ({}) before it is invoked ({})",
                op.id,
                op.complete_ns,
                op.invoke_ns
            );
        }
    }
    // One value no op can tell apart from any other unobservable value.
    let mut sentinel = u64::MAX;
    while observable.contains(&sentinel) {
        sentinel -= 1;
    }
    let map = |v: u64| if observable.contains(&v) { v } else { sentinel };

    let mut p = Prepared {
        defs: Vec::new(),
        unks: Vec::new(),
        unknown_cas_expects: HashSet::new(),
        phantom: None,
        values: HashMap::new(),
        writers: Vec::new(),
        observers: Vec::new(),
        writer_pos: Vec::new(),
        observer_pos: Vec::new(),
    };
    p.values.insert(None, 0);
    for &v in &observable {
        let next = p.values.len();
        p.values.insert(Some(v), next);
    }
    for (src, op) in ops.iter().enumerate() {
        let kind = match (op.op, op.outcome) {
            (RegisterOp::Read, Outcome::Read(v)) => Kind::Read(v),
            (RegisterOp::Read, o) => unreachable!("read with outcome {o:?} passed validation"),
            (RegisterOp::Write(v), Outcome::Written) => Kind::Write(map(v)),
            (RegisterOp::Write(v), _) => Kind::UnknownWrite(map(v)),
            (RegisterOp::Cas { expect, new }, Outcome::Cas(true)) => Kind::CasOk {
                expect,
                new: map(new),
            },
            (RegisterOp::Cas { expect, .. }, Outcome::Cas(false)) => Kind::CasFail { expect },
            (RegisterOp::Cas { expect, new }, _) => {
                p.unknown_cas_expects.insert(expect);
                Kind::UnknownCas {
                    expect,
                    new: map(new),
                }
            }
        };
        let unknown = op.outcome == Outcome::Unknown;
        let (observes, writes) = match kind {
            Kind::Read(v) => (Some(v), None),
            Kind::Write(v) | Kind::UnknownWrite(v) => (None, Some(Some(v))),
            Kind::CasOk { expect, new } => (Some(Some(expect)), Some(Some(new))),
            Kind::CasFail { .. } => (None, None),
            Kind::UnknownCas { new, .. } => (None, Some(Some(new))),
        };
        let entry = Entry {
            kind,
            invoke: op.invoke_ns,
            complete: if unknown { u64::MAX } else { op.complete_ns },
            src,
            observes: observes.map(|v| p.values[&v]),
            writes: writes.and_then(|v| p.values.get(&v).copied()),
        };
        if unknown {
            p.unks.push(entry);
        } else {
            p.defs.push(entry);
        }
    }
    p.defs.sort_by_key(|e| (e.invoke, e.complete, e.src));
    p.unks.sort_by_key(|e| (e.invoke, e.src));
    let bits = p.defs.len() + p.unks.len();
    p.writers = vec![Vec::new(); p.values.len()];
    p.observers = vec![Vec::new(); p.values.len()];
    for bit in 0..bits {
        if let Some(ix) = p.by_bit(bit).writes {
            p.writers[ix].push(bit);
        }
    }
    for (i, e) in p.defs.iter().enumerate() {
        if let Some(ix) = e.observes {
            p.observers[ix].push(i);
        }
    }
    p.writer_pos = vec![usize::MAX; bits];
    for ix in 0..p.values.len() {
        let mut list = std::mem::take(&mut p.writers[ix]);
        list.sort_by_key(|&bit| (p.by_bit(bit).invoke, bit));
        for (pos, &bit) in list.iter().enumerate() {
            p.writer_pos[bit] = pos;
        }
        p.writers[ix] = list;
    }
    p.observer_pos = vec![usize::MAX; p.defs.len()];
    for list in &mut p.observers {
        list.sort_by_key(|&i| (p.defs[i].complete, i));
        for (pos, &i) in list.iter().enumerate() {
            p.observer_pos[i] = pos;
        }
    }
    p.phantom = p
        .defs
        .iter()
        .find(|e| {
            let seen = match e.kind {
                Kind::Read(v) => v,
                Kind::CasOk { expect, .. } => Some(expect),
                _ => None,
            };
            seen.is_some_and(|v| !written.contains(&v))
        })
        .map(|e| e.src);
    p
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Linearizable,
    Violation,
    Inconclusive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cand {
    /// Index into `Prepared::defs`.
    Def(usize),
    /// Index into `Prepared::unks`.
    Unk(usize),
}

/// A configuration on the DFS stack.
#[derive(Debug)]
struct Frame {
    state: Option<u64>,
    /// Every def below `lo` is linearized.
    lo: usize,
    /// This frame's candidates are `cands[start..end]`; `next` is the next
    /// one to try.
    start: usize,
    next: usize,
    end: usize,
    /// The move that led here (undone when the frame is popped).
    mv: Option<Cand>,
}

/// The deepest point the search reached, for explanations.
#[derive(Debug, Default)]
struct Trace {
    done: usize,
    /// `src` of the ops linearized, in order (unknown ones included).
    order: Vec<usize>,
    state: Option<u64>,
    /// `src` of the acknowledged ops that could come next, none of which fit.
    stuck: Vec<usize>,
    /// Configurations expanded.
    steps: u64,
}

/// 64-bit mixer (SplitMix64 finaliser).
fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn zobrist(tag: u64, x: u64) -> u128 {
    let hi = mix64(x.wrapping_mul(4).wrapping_add(tag));
    let lo = mix64(x.wrapping_mul(4).wrapping_add(tag) ^ 0x5851_f42d_4c95_7f2d);
    ((hi as u128) << 64) | lo as u128
}

/// Fingerprint component for an op (`idx` over defs then unks).
fn op_key(idx: usize) -> u128 {
    zobrist(1, idx as u64)
}

/// Fingerprint component for (state, in_chain).
fn state_key(state: Option<u64>, in_chain: bool) -> u128 {
    let s = match state {
        None => zobrist(3, 0),
        Some(v) => zobrist(2, v),
    };
    if in_chain {
        s ^ zobrist(3, 1)
    } else {
        s
    }
}

/// The memo table's keys are already uniformly mixed: hash = low 64 bits.
#[derive(Debug, Default)]
struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = mix64(self.0 ^ b as u64);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 ^= v as u64;
    }
}

type Memo = HashSet<u128, BuildHasherDefault<FingerprintHasher>>;

/// Fixed-size bitset of linearized ops.
#[derive(Debug)]
struct BitSet(Vec<u64>);

impl BitSet {
    fn new(n: usize) -> Self {
        BitSet(vec![0; n.div_ceil(64)])
    }
    fn get(&self, i: usize) -> bool {
        self.0[i / 64] >> (i % 64) & 1 == 1
    }
    fn flip(&mut self, i: usize) {
        self.0[i / 64] ^= 1 << (i % 64);
    }
}

/// The search's mutable configuration (everything but the state).
struct Search<'a> {
    p: &'a Prepared,
    /// Bit `i < defs.len()` = def `i` linearized; bit `defs.len() + j` =
    /// unknown `j` applied.
    linearized: BitSet,
    done: usize,
    fingerprint: u128,
    frontier: Vec<usize>,
    /// Per value index: every `Prepared::writers` entry before it is
    /// linearized.
    writer_ptr: Vec<usize>,
    /// Per value index: every `Prepared::observers` entry before it is
    /// linearized.
    observer_ptr: Vec<usize>,
}

impl Search<'_> {
    fn bit(&self, c: Cand) -> usize {
        match c {
            Cand::Def(i) => i,
            Cand::Unk(j) => self.p.defs.len() + j,
        }
    }

    fn toggle(&mut self, c: Cand) {
        let bit = self.bit(c);
        self.linearized.flip(bit);
        self.fingerprint ^= op_key(bit);
        let now_in = self.linearized.get(bit);
        let e = *self.entry(c);
        if !now_in {
            if let Some(ix) = e.writes {
                let ptr = &mut self.writer_ptr[ix];
                *ptr = (*ptr).min(self.p.writer_pos[bit]);
            }
            if let Some(ix) = e.observes {
                let ptr = &mut self.observer_ptr[ix];
                *ptr = (*ptr).min(self.p.observer_pos[bit]);
            }
        }
        if let Cand::Def(_) = c {
            if now_in {
                self.done += 1;
            } else {
                self.done -= 1;
            }
        }
    }

    /// True when the register just left `old` although a pending op R
    /// still needs to see it and no unused op that may write `old` is
    /// invoked by R's completion: the state cannot return to `old` in time,
    /// so no completion exists.
    fn dead_after_leaving(&mut self, old: Option<u64>) -> bool {
        let Some(&ix) = self.p.values.get(&old) else {
            return false;
        };
        let observers = &self.p.observers[ix];
        let mut k = self.observer_ptr[ix];
        while k < observers.len() && self.linearized.get(observers[k]) {
            k += 1;
        }
        self.observer_ptr[ix] = k;
        let Some(&first) = observers.get(k) else {
            return false;
        };
        let deadline = self.p.defs[first].complete;
        let writers = &self.p.writers[ix];
        let mut w = self.writer_ptr[ix];
        while w < writers.len() && self.linearized.get(writers[w]) {
            w += 1;
        }
        self.writer_ptr[ix] = w;
        writers
            .get(w)
            .is_none_or(|&bit| self.p.by_bit(bit).invoke > deadline)
    }

    fn entry(&self, c: Cand) -> &Entry {
        match c {
            Cand::Def(i) => &self.p.defs[i],
            Cand::Unk(j) => &self.p.unks[j],
        }
    }

    /// Pushes the candidates of the configuration (current set, `state`,
    /// `in_chain`) onto `out`, best first; returns the new `lo` and fills
    /// `self.frontier`.
    fn expand(
        &mut self,
        state: Option<u64>,
        in_chain: bool,
        lo: usize,
        out: &mut Vec<Cand>,
    ) -> usize {
        let defs = &self.p.defs;
        let mut lo = lo;
        while lo < defs.len() && self.linearized.get(lo) {
            lo += 1;
        }
        // The frontier: unlinearized defs invoked no later than the earliest
        // completion among unlinearized defs.
        self.frontier.clear();
        let mut horizon = u64::MAX;
        let mut i = lo;
        while i < defs.len() && defs[i].invoke <= horizon {
            if !self.linearized.get(i) {
                self.frontier.push(i);
                horizon = horizon.min(defs[i].complete);
            }
            i += 1;
        }
        let start = out.len();
        // A legal read or failed compare can always go first: it changes
        // nothing, and moving it forward keeps real-time order (it is in the
        // frontier). So it is the only move worth trying.
        let free = self.frontier.iter().copied().find(|&i| {
            let kind = defs[i].kind;
            matches!(kind, Kind::Read(_) | Kind::CasFail { .. }) && kind.step(state).is_some()
        });
        if let Some(i) = free {
            out.push(Cand::Def(i));
            return lo;
        }
        let mut blocked = false;
        for &i in &self.frontier {
            let kind = defs[i].kind;
            match kind.step(state) {
                // A write right after a chain makes the chain pointless.
                Some(_) if in_chain && matches!(kind, Kind::Write(_)) => {}
                Some(_) => out.push(Cand::Def(i)),
                None => blocked = true,
            }
        }
        // Earliest deadline first: that op is the one most constrained.
        out[start..].sort_by_key(|c| match *c {
            Cand::Def(i) => (defs[i].complete, i),
            Cand::Unk(_) => unreachable!(),
        });
        if blocked {
            let unk_start = out.len();
            for (j, u) in self.p.unks.iter().enumerate() {
                if u.invoke > horizon {
                    break;
                }
                if self.linearized.get(defs.len() + j) {
                    continue;
                }
                let next = match u.kind {
                    Kind::UnknownWrite(v) if !in_chain => v,
                    Kind::UnknownCas { expect, new } if state == Some(expect) => new,
                    _ => continue,
                };
                if Some(next) == state {
                    continue;
                }
                let useful = self.p.unknown_cas_expects.contains(&next)
                    || self.frontier.iter().any(|&i| {
                        let k = defs[i].kind;
                        k.step(state).is_none() && k.step(Some(next)).is_some()
                    });
                let duplicate = out[unk_start..]
                    .iter()
                    .any(|&c| self.entry(c).kind == u.kind);
                if useful && !duplicate {
                    out.push(Cand::Unk(j));
                }
            }
        }
        lo
    }
}

/// Runs the DFS; with `want_trace` also records the deepest point reached.
fn search(p: &Prepared, max_steps: u64, want_trace: bool) -> (Verdict, Trace) {
    let mut trace = Trace::default();
    if p.defs.is_empty() {
        return (Verdict::Linearizable, trace);
    }
    let mut s = Search {
        p,
        linearized: BitSet::new(p.defs.len() + p.unks.len()),
        done: 0,
        fingerprint: 0,
        frontier: Vec::new(),
        writer_ptr: vec![0; p.values.len()],
        observer_ptr: vec![0; p.values.len()],
    };
    let mut memo = Memo::default();
    let mut cands: Vec<Cand> = Vec::new();
    let lo = s.expand(None, false, 0, &mut cands);
    memo.insert(state_key(None, false));
    if want_trace {
        trace.stuck = s.frontier.iter().map(|&i| p.defs[i].src).collect();
    }
    let mut frames = vec![Frame {
        state: None,
        lo,
        start: 0,
        next: 0,
        end: cands.len(),
        mv: None,
    }];
    let mut steps: u64 = 0;
    while let Some(top) = frames.last_mut() {
        if top.next == top.end {
            let frame = frames.pop().expect("non-empty");
            cands.truncate(frame.start);
            if let Some(mv) = frame.mv {
                s.toggle(mv);
            }
            continue;
        }
        let mv = cands[top.next];
        top.next += 1;
        let (state, lo) = (top.state, top.lo);
        let in_chain = matches!(mv, Cand::Unk(_));
        let next_state = s.entry(mv).kind.step(state).expect("candidates are legal");
        s.toggle(mv);
        let dead = next_state != state && s.dead_after_leaving(state);
        if dead || !memo.insert(s.fingerprint ^ state_key(next_state, in_chain)) {
            s.toggle(mv);
            continue;
        }
        steps += 1;
        trace.steps = steps;
        if steps > max_steps {
            return (Verdict::Inconclusive, trace);
        }
        if s.done == p.defs.len() {
            debug_assert!((0..p.defs.len()).all(|i| s.linearized.get(i)));
            return (Verdict::Linearizable, trace);
        }
        let start = cands.len();
        let lo = s.expand(next_state, in_chain, lo, &mut cands);
        if want_trace && s.done > trace.done {
            trace.done = s.done;
            trace.state = next_state;
            trace.order = frames
                .iter()
                .filter_map(|f| f.mv)
                .chain([mv])
                .map(|c| s.entry(c).src)
                .collect();
            trace.stuck = s.frontier.iter().map(|&i| p.defs[i].src).collect();
        }
        frames.push(Frame {
            state: next_state,
            lo,
            start,
            next: start,
            end: cands.len(),
            mv: Some(mv),
        });
    }
    debug_assert_eq!(s.done, 0, "every move was undone");
    debug_assert_eq!(s.fingerprint, 0, "every move was undone");
    (Verdict::Violation, trace)
}

/// Checks one key's relevant ops; also returns the search steps spent.
fn verdict(ops: &[Op], max_steps: u64) -> (Verdict, u64) {
    let p = prepare(ops);
    if p.phantom.is_some() {
        return (Verdict::Violation, 0);
    }
    let (verdict, trace) = search(&p, max_steps, false);
    (verdict, trace.steps)
}

/// Human-readable reason why `ops` (a violating slice) has no valid order.
fn explain(ops: &[Op], max_steps: u64) -> String {
    let p = prepare(ops);
    let show = |v: Option<u64>| v.map_or("absent".to_string(), |v| v.to_string());
    if let Some(i) = p.phantom {
        let op = &ops[i];
        let value = observes(op).expect("a phantom observes a value");
        return format!(
            "op {} (p{} {} {}) needs the value {value}, which no op that may have \
             taken effect writes",
            op.id, op.process, op.op, op.outcome
        );
    }
    let (verdict, trace) = search(&p, max_steps, true);
    match verdict {
        Verdict::Violation => {}
        Verdict::Inconclusive => return "search budget ran out explaining the slice".to_string(),
        Verdict::Linearizable => {
            return "the slice is linearizable (shrinking lost it)".to_string()
        }
    }
    let order: Vec<String> = trace
        .order
        .iter()
        .map(|&i| format!("op {}", ops[i].id))
        .collect();
    let state = trace.state;
    // The sentinel for unobservable values only shows when it is the state.
    let state_text = match state {
        Some(v) if ops.iter().all(|o| writes(o) != Some(v)) => "a value nothing reads".to_string(),
        v => show(v),
    };
    // Whether the register may still leave `state`: not while an op that
    // needs to see it is pending and nothing left can write it again.
    let used: HashSet<usize> = trace.order.iter().copied().collect();
    let pending = |i: &usize| !used.contains(i);
    let needs_state = |o: &Op| match (o.op, o.outcome) {
        (RegisterOp::Read, Outcome::Read(v)) => v == state,
        (RegisterOp::Cas { expect, .. }, Outcome::Cas(true)) => Some(expect) == state,
        _ => false,
    };
    let holder = (0..ops.len())
        .filter(pending)
        .find(|&i| needs_state(&ops[i]))
        .filter(|_| {
            !(0..ops.len())
                .filter(pending)
                .any(|i| state.is_some() && writes(&ops[i]) == state)
        });
    let stuck: Vec<String> = trace
        .stuck
        .iter()
        .map(|&i| {
            let o = &ops[i];
            let why = match (o.op, o.outcome) {
                (RegisterOp::Read, Outcome::Read(v)) => format!("needs {}", show(v)),
                (RegisterOp::Cas { expect, .. }, Outcome::Cas(true)) if Some(expect) != state => {
                    format!("needs {expect}")
                }
                (RegisterOp::Cas { expect, .. }, Outcome::Cas(false)) => {
                    format!("needs anything but {expect}")
                }
                _ => match holder {
                    Some(h) => format!(
                        "would replace {state_text} for good, but op {} still has to see it",
                        ops[h].id
                    ),
                    None => "has no valid continuation".to_string(),
                },
            };
            format!("op {} (p{} {} {}) {why}", o.id, o.process, o.op, o.outcome)
        })
        .collect();
    format!(
        "at most {} of {} acknowledged ops fit a sequential order{}; the register then \
         holds {state_text} and none of the ops that must come next fits: {}",
        trace.done,
        p.defs.len(),
        if order.is_empty() {
            String::new()
        } else {
            format!(" ({})", order.join(", "))
        },
        stuck.join("; ")
    )
}

// ---------------------------------------------------------------------------
// Shrinking.

/// Greedy delta debugging: a small subset of `ops` (a violating history of
/// relevant ops, sorted by invoke) that still violates. Each trial may
/// expand `trial_steps_max` configurations; all trials together (counting
/// each op of a trial as one more step) `total_steps_max`.
fn shrink(ops: Vec<Op>, trial_steps_max: u64, total_steps_max: u64) -> Vec<Op> {
    /// Trials stop once this many have run.
    const TRIALS_MAX: usize = 5_000;
    let n_orig = ops.len();
    // Values some op may write, with the ops observing them (a guard).
    let had_writer: HashSet<u64> = ops.iter().filter_map(writes).collect();
    let guard_ok = |subset: &[Op]| {
        let writers: HashSet<u64> = subset.iter().filter_map(writes).collect();
        subset
            .iter()
            .filter_map(observes)
            .all(|v| !had_writer.contains(&v) || writers.contains(&v))
    };
    let mut spent: u64 = 0;
    let mut trials = 0;
    let mut violates = |subset: &[Op]| -> bool {
        if trials >= TRIALS_MAX || spent >= total_steps_max || !guard_ok(subset) {
            return false;
        }
        trials += 1;
        let (verdict, steps) = verdict(subset, trial_steps_max);
        spent += steps + subset.len() as u64;
        verdict == Verdict::Violation
    };

    let mut cur = ops;
    // Shortest violating prefix (binary search; `hi` always violates).
    let (mut lo, mut hi) = (0, cur.len());
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if violates(&cur[..mid]) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    cur.truncate(hi);
    // Latest violating start (`lo` always violates).
    let (mut lo, mut hi) = (0, cur.len());
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if violates(&cur[mid..]) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    cur.drain(..lo);
    // Remove chunks of halving size; repeat single removals until none
    // succeeds (an op can become removable once an op observing its value
    // is gone).
    let mut chunk = (cur.len() / 2).max(1);
    loop {
        let len_before = cur.len();
        let mut i = 0;
        while i < cur.len() {
            let end = (i + chunk).min(cur.len());
            let candidate: Vec<Op> = cur[..i].iter().chain(&cur[end..]).cloned().collect();
            if !candidate.is_empty() && violates(&candidate) {
                cur = candidate;
            } else {
                i = end;
            }
        }
        if chunk > 1 {
            chunk /= 2;
        } else if cur.len() == len_before {
            break;
        }
    }
    debug_assert!(cur.len() <= n_orig);
    cur
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const MS: u64 = 1_000_000;

    /// Builds ops tersely: (process, op, invoke ms, complete ms, outcome).
    fn hist(ops: &[(usize, RegisterOp, u64, u64, Outcome)]) -> Vec<Op> {
        ops.iter()
            .enumerate()
            .map(|(id, &(process, op, invoke, complete, outcome))| Op {
                id,
                process,
                key: "k".to_string(),
                op,
                invoke_ns: invoke * MS,
                complete_ns: complete * MS,
                outcome,
            })
            .collect()
    }

    fn is_lin(ops: &[Op]) -> bool {
        let r = check(ops, &CheckOptions::default());
        assert!(r.inconclusive_keys.is_empty(), "inconclusive: {r:?}");
        r.violations.is_empty()
    }

    use Outcome::{Cas as C, Read as R, Unknown as U, Written as Ok_};
    use RegisterOp::{Read, Write as W};

    fn cas(expect: u64, new: u64) -> RegisterOp {
        RegisterOp::Cas { expect, new }
    }

    #[test]
    fn sequential_register_is_linearizable() {
        let h = hist(&[
            (0, Read, 0, 1, R(None)),
            (0, W(1), 2, 3, Ok_),
            (1, Read, 4, 5, R(Some(1))),
            (1, cas(1, 2), 6, 7, C(true)),
            (0, cas(1, 3), 8, 9, C(false)),
            (0, Read, 10, 11, R(Some(2))),
        ]);
        assert!(is_lin(&h));
        assert!(is_lin(&[]));
    }

    #[test]
    fn stale_read_after_completed_write_is_a_violation() {
        let h = hist(&[
            (0, W(1), 0, 1, Ok_),
            (0, W(2), 2, 3, Ok_),
            (1, Read, 4, 5, R(Some(1))),
        ]);
        let r = check(&h, &CheckOptions::default());
        assert_eq!(r.violations.len(), 1);
        let text = r.violations[0].to_string();
        assert!(text.contains("key \"k\""), "{text}");
        assert!(text.contains("p1"), "{text}");
        // Reading absent after a write completed is stale too.
        let h = hist(&[(0, W(1), 0, 1, Ok_), (1, Read, 2, 3, R(None))]);
        assert!(!is_lin(&h));
        // Concurrent with the second write, the old value is fine.
        let h = hist(&[
            (0, W(1), 0, 1, Ok_),
            (0, W(2), 2, 5, Ok_),
            (1, Read, 3, 4, R(Some(1))),
        ]);
        assert!(is_lin(&h));
    }

    #[test]
    fn touching_intervals_are_concurrent() {
        let h = hist(&[(0, W(1), 0, 2, Ok_), (1, Read, 2, 3, R(None))]);
        assert!(is_lin(&h));
        let h = hist(&[(0, W(1), 0, 2, Ok_), (1, Read, 3, 4, R(None))]);
        assert!(!is_lin(&h));
    }

    #[test]
    fn concurrent_writes_reads_must_agree_on_one_order() {
        // W1 and W2 overlap; afterwards readers may see either winner, but
        // all later reads must agree.
        let base = [(0, W(1), 0, 10, Ok_), (1, W(2), 1, 9, Ok_)];
        let mut ok = base.to_vec();
        ok.extend([(2, Read, 11, 12, R(Some(1))), (3, Read, 13, 14, R(Some(1)))]);
        assert!(is_lin(&hist(&ok)));
        let mut bad = base.to_vec();
        bad.extend([(2, Read, 11, 12, R(Some(1))), (3, Read, 13, 14, R(Some(2)))]);
        assert!(!is_lin(&hist(&bad)));
        // Reads during the writes may see 2 then 1, but not 1, 2, 1.
        let mut during = base.to_vec();
        during.extend([(2, Read, 2, 3, R(Some(2))), (3, Read, 4, 5, R(Some(1)))]);
        assert!(is_lin(&hist(&during)));
        during.push((2, Read, 6, 7, R(Some(2))));
        assert!(!is_lin(&hist(&during)));
    }

    #[test]
    fn cas_rules() {
        // Success needs the expected value.
        let h = hist(&[(0, W(1), 0, 1, Ok_), (1, cas(2, 3), 2, 3, C(true))]);
        assert!(!is_lin(&h));
        // A failed compare cannot happen while the value is the expected one.
        let h = hist(&[(0, W(1), 0, 1, Ok_), (1, cas(1, 3), 2, 3, C(false))]);
        assert!(!is_lin(&h));
        // ... but can when a concurrent write changes it first.
        let h = hist(&[
            (0, W(1), 0, 1, Ok_),
            (2, W(5), 2, 6, Ok_),
            (1, cas(1, 3), 3, 4, C(false)),
        ]);
        assert!(is_lin(&h));
        // A swap's value is visible afterwards.
        let h = hist(&[
            (0, W(1), 0, 1, Ok_),
            (1, cas(1, 3), 2, 3, C(true)),
            (0, Read, 4, 5, R(Some(1))),
        ]);
        assert!(!is_lin(&h));
        // Two swaps from the same value cannot both succeed.
        let h = hist(&[
            (0, W(1), 0, 1, Ok_),
            (1, cas(1, 3), 2, 5, C(true)),
            (2, cas(1, 4), 2, 5, C(true)),
        ]);
        assert!(!is_lin(&h));
        // On an absent key the compare fails.
        let h = hist(&[(1, cas(0, 3), 0, 1, C(false)), (1, Read, 2, 3, R(None))]);
        assert!(is_lin(&h));
    }

    #[test]
    fn unknown_write_may_take_effect_late_or_never() {
        // Observed long after its invocation: fine.
        let h = hist(&[
            (0, W(1), 0, 1, Ok_),
            (1, W(2), 2, 3, U),
            (0, Read, 10, 11, R(Some(1))),
            (0, Read, 20, 21, R(Some(2))),
        ]);
        assert!(is_lin(&h));
        // Never observed: fine.
        let h = hist(&[
            (0, W(1), 0, 1, Ok_),
            (1, W(2), 2, 3, U),
            (0, Read, 20, 21, R(Some(1))),
        ]);
        assert!(is_lin(&h));
        // Observed, then "unobserved": it can only take effect once.
        let h = hist(&[
            (0, W(1), 0, 1, Ok_),
            (1, W(2), 2, 3, U),
            (0, Read, 10, 11, R(Some(2))),
            (0, Read, 20, 21, R(Some(1))),
        ]);
        assert!(!is_lin(&h));
        // Observed before it was invoked: impossible.
        let h = hist(&[(0, Read, 0, 1, R(Some(2))), (1, W(2), 2, 3, U)]);
        assert!(!is_lin(&h));
    }

    #[test]
    fn unknown_cas_swaps_only_when_the_state_allows() {
        let h = hist(&[
            (0, W(1), 0, 1, Ok_),
            (1, cas(1, 7), 2, 3, U),
            (0, Read, 10, 11, R(Some(7))),
        ]);
        assert!(is_lin(&h));
        let h = hist(&[
            (0, W(1), 0, 1, Ok_),
            (1, cas(9, 7), 2, 3, U),
            (0, Read, 10, 11, R(Some(7))),
        ]);
        assert!(!is_lin(&h));
        // A chain of unknown swaps: 1 -> 5 -> 7.
        let h = hist(&[
            (0, W(1), 0, 1, Ok_),
            (1, cas(5, 7), 2, 3, U),
            (2, cas(1, 5), 2, 3, U),
            (0, Read, 10, 11, R(Some(7))),
        ]);
        assert!(is_lin(&h));
        // An unknown write can explain a failed compare.
        let h = hist(&[
            (0, W(1), 0, 1, Ok_),
            (1, W(4), 2, 3, U),
            (0, cas(1, 3), 10, 11, C(false)),
        ]);
        assert!(is_lin(&h));
    }

    #[test]
    fn failed_ops_never_take_effect() {
        let h = hist(&[
            (0, W(1), 0, 1, Outcome::Failed),
            (1, Read, 2, 3, R(Some(1))),
        ]);
        let r = check(&h, &CheckOptions::default());
        assert_eq!(r.violations.len(), 1);
        // The failed writer is shown for context.
        assert_eq!(r.violations[0].ops.len(), 2, "{}", r.violations[0]);
        let h = hist(&[
            (0, W(1), 0, 1, Outcome::Failed),
            (1, Read, 2, 3, R(None)),
            (2, Read, 2, 3, U),
        ]);
        assert!(is_lin(&h));
    }

    #[test]
    fn keys_are_independent() {
        let mut h = hist(&[(0, W(1), 0, 1, Ok_), (1, Read, 2, 3, R(Some(1)))]);
        h[1].key = "other".to_string();
        let r = check(&h, &CheckOptions::default());
        assert_eq!((r.keys, r.ops), (2, 2));
        assert_eq!(r.violations.len(), 1);
        assert_eq!(r.violations[0].key, "other");
    }

    #[test]
    fn budget_exhaustion_is_inconclusive_not_a_violation() {
        let mut rng = StdRng::seed_from_u64(7);
        let h = random_history(&mut rng, 200, 8, 0.0, 0);
        let r = check(
            &h,
            &CheckOptions {
                max_steps_per_key: 5,
            },
        );
        assert!(r.violations.is_empty());
        assert_eq!(r.inconclusive_keys, vec!["k".to_string()]);
    }

    /// A history produced by a real sequential register: each op takes
    /// effect at a random point inside its interval. `unknown_p` of the
    /// writes/cas ops time out (half of those never take effect).
    fn random_history(
        rng: &mut StdRng,
        n: usize,
        processes: usize,
        unknown_p: f64,
        values: u64,
    ) -> Vec<Op> {
        struct Planned {
            process: usize,
            op: RegisterOp,
            invoke: u64,
            point: u64,
            complete: u64,
            unknown: bool,
            applies: bool,
        }
        let mut next_free = vec![0u64; processes];
        let mut planned = Vec::new();
        let mut value = 0u64;
        // Unique values, or `values` distinct ones.
        let pick = |c: u64| if values == 0 { c } else { 1 + c % values };
        for _ in 0..n {
            let process = rng.gen_range(0..processes);
            let invoke = next_free[process] + rng.gen_range(0..50);
            // Now and then a slow op (a request stuck behind an election).
            let slow = if rng.gen_bool(0.02) { 50 } else { 1 };
            let point = invoke + slow * rng.gen_range(0..100);
            let complete = point + slow * rng.gen_range(0..100);
            next_free[process] = complete + 1;
            let op = match rng.gen_range(0..10) {
                0..=3 => RegisterOp::Read,
                4..=7 => {
                    value += 1;
                    RegisterOp::Write(pick(value))
                }
                _ => {
                    value += 1;
                    RegisterOp::Cas {
                        expect: pick(value.saturating_sub(rng.gen_range(1..4))),
                        new: pick(value),
                    }
                }
            };
            let unknown = op != RegisterOp::Read && rng.gen_bool(unknown_p);
            let applies = !unknown || rng.gen_bool(0.5);
            planned.push(Planned {
                process,
                op,
                invoke,
                point,
                complete,
                unknown,
                applies,
            });
        }
        planned.sort_by_key(|p| p.point);
        let mut state = None;
        let mut ops = Vec::new();
        for (id, p) in planned.iter().enumerate() {
            let outcome = match p.op {
                RegisterOp::Read => Outcome::Read(state),
                RegisterOp::Write(v) => {
                    if p.applies {
                        state = Some(v);
                    }
                    Outcome::Written
                }
                RegisterOp::Cas { expect, new } => {
                    let ok = state == Some(expect);
                    if ok && p.applies {
                        state = Some(new);
                    }
                    Outcome::Cas(ok)
                }
            };
            ops.push(Op {
                id,
                process: p.process,
                key: "k".to_string(),
                op: p.op,
                invoke_ns: p.invoke,
                complete_ns: p.complete,
                outcome: if p.unknown { Outcome::Unknown } else { outcome },
            });
        }
        ops
    }

    #[test]
    fn random_register_histories_are_linearizable_and_corruptions_are_not() {
        let mut rng = StdRng::seed_from_u64(0x5e77);
        for round in 0..300 {
            let n = rng.gen_range(1..120);
            let processes = rng.gen_range(1..8);
            let unknown_p = [0.0, 0.1, 0.3][round % 3];
            let mut h =
                random_history(&mut rng, n, processes, unknown_p, [0, 3, 10][round % 5 % 3]);
            assert!(is_lin(&h), "round {round}: {h:#?}");

            // A read of a value never written.
            let reads: Vec<usize> = (0..h.len())
                .filter(|&i| matches!(h[i].outcome, Outcome::Read(_)))
                .collect();
            if reads.is_empty() {
                continue;
            }
            let i = reads[rng.gen_range(0..reads.len())];
            let saved = h[i].outcome;
            h[i].outcome = Outcome::Read(Some(1_000_000_007));
            assert!(!is_lin(&h), "round {round}: corrupted op {i} passed");
            // The search alone (without the phantom shortcut) agrees.
            let relevant: Vec<Op> = h.iter().filter(|o| matters(o)).cloned().collect();
            let (v, _) = search(&prepare(&relevant), 2_000_000, false);
            assert_eq!(v, Verdict::Violation, "round {round}");
            h[i].outcome = saved;
        }
    }

    #[test]
    fn stale_read_corruptions_are_found_by_the_search() {
        let mut rng = StdRng::seed_from_u64(0xbad);
        let mut found = 0;
        for round in 0..300 {
            let mut h = random_history(&mut rng, 150, 5, 0.1, 0);
            // Read r, write a (acknowledged, value va), acknowledged write b
            // with a.complete < b.invoke and b.complete < r.invoke: r cannot
            // return va (all values are unique).
            let acked_write =
                |o: &Op| matches!((o.op, o.outcome), (RegisterOp::Write(_), Outcome::Written));
            let pick = (0..h.len()).find_map(|r| {
                if !matches!(h[r].outcome, Outcome::Read(_)) {
                    return None;
                }
                let b = h
                    .iter()
                    .filter(|b| acked_write(b) && b.complete_ns < h[r].invoke_ns)
                    .max_by_key(|b| b.invoke_ns)?;
                let a = h
                    .iter()
                    .find(|a| acked_write(a) && a.complete_ns < b.invoke_ns)?;
                match a.op {
                    RegisterOp::Write(va) => Some((r, va)),
                    _ => None,
                }
            });
            let Some((r, va)) = pick else { continue };
            h[r].outcome = Outcome::Read(Some(va));
            found += 1;
            let relevant: Vec<Op> = h.iter().filter(|o| matters(o)).cloned().collect();
            let p = prepare(&relevant);
            assert!(p.phantom.is_none());
            assert_eq!(
                search(&p, 2_000_000, false).0,
                Verdict::Violation,
                "round {round}"
            );
        }
        assert!(found > 100, "only {found} corruptions planted");
    }

    #[test]
    fn shrinker_returns_a_smaller_violating_subset() {
        let mut rng = StdRng::seed_from_u64(42);
        let mut h = random_history(&mut rng, 400, 6, 0.05, 0);
        // Make a late read stale: it returns the first acknowledged write's
        // value although later writes completed before it.
        let first = h
            .iter()
            .position(|o| matches!((o.op, o.outcome), (RegisterOp::Write(_), Outcome::Written)))
            .unwrap();
        let RegisterOp::Write(v) = h[first].op else {
            unreachable!()
        };
        let late = h
            .iter()
            .rposition(|o| matches!(o.outcome, Outcome::Read(_)))
            .unwrap();
        h[late].outcome = Outcome::Read(Some(v));
        let r = check(&h, &CheckOptions::default());
        assert_eq!(r.violations.len(), 1);
        eprintln!("{}", r.violations[0]);
        let slice = &r.violations[0].ops;
        assert!(slice.len() < h.len() / 10, "slice of {} ops", slice.len());
        // 1-minimal: no single op can go (the stale read's writer is kept).
        for skip in 0..slice.len() {
            let mut fewer = slice.clone();
            let gone = fewer.remove(skip);
            if gone.id != h[first].id {
                assert!(is_lin(&fewer), "op {} was removable", gone.id);
            }
        }
        assert!(slice.iter().all(|o| h.contains(o)));
        assert!(
            slice.iter().any(|o| o.id == h[late].id),
            "{}",
            r.violations[0]
        );
        assert!(!is_lin(slice));
        // The write the stale read saw is kept: no manufactured phantom.
        assert!(
            slice.iter().any(|o| o.id == h[first].id),
            "{}",
            r.violations[0]
        );
    }

    /// Exhaustive reference: tries every order (and every subset of the
    /// unknown ops) that respects real time.
    fn brute_force(ops: &[Op]) -> bool {
        fn go(ops: &[&Op], used: &mut Vec<bool>, state: Option<u64>) -> bool {
            let definite = |o: &Op| o.outcome != Outcome::Unknown;
            if (0..ops.len()).all(|i| used[i] || !definite(ops[i])) {
                return true;
            }
            for i in 0..ops.len() {
                if used[i] {
                    continue;
                }
                // Every definite op that completed before `i` was invoked
                // must already be placed.
                let blocked = (0..ops.len()).any(|k| {
                    !used[k] && k != i && definite(ops[k]) && ops[k].complete_ns < ops[i].invoke_ns
                });
                if blocked {
                    continue;
                }
                let next = match (ops[i].op, ops[i].outcome) {
                    (RegisterOp::Read, Outcome::Read(v)) => (state == v).then_some(state),
                    (RegisterOp::Write(v), _) => Some(Some(v)),
                    (RegisterOp::Cas { expect, new }, Outcome::Cas(ok)) => (ok
                        == (state == Some(expect)))
                    .then_some(if ok { Some(new) } else { state }),
                    (RegisterOp::Cas { expect, new }, _) => Some(if state == Some(expect) {
                        Some(new)
                    } else {
                        state
                    }),
                    _ => unreachable!(),
                };
                if let Some(next) = next {
                    used[i] = true;
                    let ok = go(ops, used, next);
                    used[i] = false;
                    if ok {
                        return true;
                    }
                }
            }
            false
        }
        let relevant: Vec<&Op> = ops.iter().filter(|o| matters(o)).collect();
        go(&relevant, &mut vec![false; relevant.len()], None)
    }

    #[test]
    fn agrees_with_brute_force_on_small_random_histories() {
        let mut rng = StdRng::seed_from_u64(0xb7f);
        let (mut yes, mut no) = (0, 0);
        for case in 0..20_000 {
            let n = rng.gen_range(1..8);
            let mut h = Vec::new();
            for id in 0..n {
                let invoke = rng.gen_range(0..20);
                let complete = invoke + rng.gen_range(0..8);
                let value = |rng: &mut StdRng| rng.gen_range(1..4);
                let op = match rng.gen_range(0..3) {
                    0 => RegisterOp::Read,
                    1 => RegisterOp::Write(value(&mut rng)),
                    _ => RegisterOp::Cas {
                        expect: value(&mut rng),
                        new: value(&mut rng),
                    },
                };
                let outcome = match (rng.gen_range(0..10), op) {
                    (0, _) => Outcome::Unknown,
                    (1, _) => Outcome::Failed,
                    (_, RegisterOp::Read) => {
                        Outcome::Read(rng.gen_bool(0.8).then(|| value(&mut rng)))
                    }
                    (_, RegisterOp::Write(_)) => Outcome::Written,
                    (_, RegisterOp::Cas { .. }) => Outcome::Cas(rng.gen_bool(0.5)),
                };
                h.push(Op {
                    id,
                    process: id,
                    key: "k".to_string(),
                    op,
                    invoke_ns: invoke,
                    complete_ns: complete,
                    outcome,
                });
            }
            let expected = brute_force(&h);
            assert_eq!(is_lin(&h), expected, "case {case}: {h:#?}");
            if expected {
                yes += 1;
            } else {
                no += 1;
            }
        }
        assert!(yes > 2_000 && no > 2_000, "{yes} linearizable, {no} not");
    }

    /// Prints search cost for a few history shapes:
    /// `cargo test -p sett-tests --lib search_cost -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn search_cost_report() {
        let shapes = [
            (10_000, 30, 0.0, 0),
            (10_000, 30, 0.05, 0),
            (10_000, 30, 0.2, 0),
            (10_000, 50, 0.1, 0),
            (2_000, 30, 0.0, 50),
            (2_000, 30, 0.05, 5),
            (2_000, 30, 0.05, 50),
        ];
        for (n, processes, unknown_p, values) in shapes {
            let mut rng = StdRng::seed_from_u64(99);
            let h = random_history(&mut rng, n, processes, unknown_p, values);
            let relevant: Vec<Op> = h.iter().filter(|o| matters(o)).cloned().collect();
            let p = prepare(&relevant);
            let t = std::time::Instant::now();
            let (v, trace) = search(&p, 5_000_000, false);
            eprintln!(
                "{n} ops, {processes} processes, {unknown_p} unknown, values {values}: \
                 {v:?} after {} steps in {:?}",
                trace.steps,
                t.elapsed()
            );
        }
    }

    #[test]
    fn large_concurrent_history_checks_quickly() {
        let mut rng = StdRng::seed_from_u64(99);
        let mut h = Vec::new();
        for k in 0..4 {
            let mut part = random_history(&mut rng, 5_000, 30, 0.05, 0);
            for o in &mut part {
                o.key = format!("k{k}");
                o.id += k * 100_000;
            }
            h.extend(part);
        }
        let t = std::time::Instant::now();
        let r = check(&h, &CheckOptions::default());
        assert!(r.is_linearizable(), "{r:?}");
        eprintln!("20k ops over 4 keys checked in {:?}", t.elapsed());
    }
}
