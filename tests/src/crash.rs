//! The protocol between the kill -9 crash test (`tests/crash_kill9.rs`)
//! and its child process (`src/bin/crash_child.rs`); the crash matrix
//! (`tests/crash_matrix.rs`, `src/bin/crash_matrix_child.rs`) speaks the
//! same protocol plus the ingest lines of [`IngestLine`] and shares the
//! checks at the end of this file.
//!
//! The child opens the database with [`options`], prints `OPEN`, and runs
//! [`WRITERS`] writer threads. Writer `w` only touches its own keys
//! ([`key`]) and commits one transaction at a time, numbered `seq = 0, 1,
//! …`. Before a commit it prints
//!
//! ```text
//! TRY <w> <seq> <key-hex>=<value-len>|<key-hex>=DEL ...
//! ```
//!
//! and after the commit returned `Ok`
//!
//! ```text
//! ACK <w> <seq>
//! ```
//!
//! In GC mode (a fourth argument `gc`) a further thread runs value-log
//! garbage collection in a loop and prints `GC <fid>` after each collected
//! file.
//!
//! Each line goes out with one `write` and a flush, so a kill leaves only
//! whole lines (and at most one partial last line, which readers ignore).
//! Values are [`value`]`(trial, seq, key, len)`: the reader can recompute
//! every byte, so any value that was never written is detected.

use sett_engine::{Db, Options};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write as _};
use std::path::Path;

/// Writer threads in the child.
pub const WRITERS: usize = 3;
/// Keys per writer.
pub const KEYS_PER_WRITER: usize = 32;

/// splitmix64: enough randomness for a child's workload, no dependency.
#[derive(Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Writes one whole line to stdout (one `write`, then a flush); a closed
/// pipe means the test is gone, and the child exits.
pub fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    if out
        .write_all(line.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        std::process::exit(0);
    }
}

/// Writer `w` of a child: commits random transactions on its own keys
/// forever, announcing each with `TRY` and acknowledging it with `ACK`
/// (see the module docs). Writer 0 also flushes the memtable every
/// `flush_every` commits when given.
pub fn run_writer(db: &Db, trial: u64, w: usize, seed: u64, flush_every: Option<u64>) {
    let mut rng = Rng(seed ^ (w as u64 + 1).wrapping_mul(0xd6e8_feb8_6659_fd93));
    for seq in 0u64.. {
        let count = 1 + rng.below(3);
        let picked: BTreeSet<usize> = (0..count)
            .map(|_| rng.below(KEYS_PER_WRITER as u64) as usize)
            .collect();
        let writes: Vec<Write> = picked
            .into_iter()
            .map(|i| {
                let len = match rng.below(10) {
                    0 => None,
                    1..=6 => Some(1 + rng.below(60) as usize),
                    _ => Some(100 + rng.below(3000) as usize),
                };
                (i, len)
            })
            .collect();
        let mut txn = db.begin_write();
        for &(i, len) in &writes {
            let k = key(w, i);
            match len {
                Some(len) => txn.set(k.clone(), value(trial, seq, &k, len)),
                None => txn.delete(k),
            }
            .expect("buffer a write");
        }
        emit(&try_line(w, seq, &writes));
        txn.commit().expect("commit");
        emit(&format!("ACK {w} {seq}\n"));
        if let Some(n) = flush_every {
            if w == 0 && seq % n == n - 1 {
                db.flush().expect("flush");
            }
        }
    }
}

/// Options both sides use: synced commits and small everything, so that
/// flushes, compactions and value-log rotations happen within a trial.
pub fn options(dir: &Path) -> Options {
    Options {
        sync_writes: true,
        memtable_size: 16 << 10,
        value_threshold: 64,
        vlog_file_size: 64 << 10,
        block_size: 512,
        table_size: 16 << 10,
        base_level_size: 64 << 10,
        max_levels: 4,
        l0_compaction_trigger: 2,
        l0_slowdown_trigger: 6,
        l0_stall_trigger: 10,
        ..Options::new(dir)
    }
}

/// Key `i` of writer `w`.
pub fn key(w: usize, i: usize) -> Vec<u8> {
    format!("w{w}/k{i:03}").into_bytes()
}

/// The value written to `key` in transaction `seq` (of the key's writer)
/// in `trial`.
pub fn value(trial: u64, seq: u64, key: &[u8], len: usize) -> Vec<u8> {
    let mut pattern = format!("t{trial}s{seq}:").into_bytes();
    pattern.extend_from_slice(key);
    pattern.push(b'|');
    pattern.iter().copied().cycle().take(len).collect()
}

/// One write of a transaction: key index and value length (`None` = delete).
pub type Write = (usize, Option<usize>);

/// Hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes of hex string `s`.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The `TRY` line for transaction `seq` of writer `w`.
pub fn try_line(w: usize, seq: u64, writes: &[Write]) -> String {
    let ops: Vec<String> = writes
        .iter()
        .map(|&(i, len)| match len {
            Some(len) => format!("{}={len}", hex(&key(w, i))),
            None => format!("{}=DEL", hex(&key(w, i))),
        })
        .collect();
    format!("TRY {w} {seq} {}\n", ops.join("|"))
}

/// A parsed line of the child's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// The database opened.
    Open,
    /// A commit is about to start: writer, seq, writes.
    Try(usize, u64, Vec<(Vec<u8>, Option<usize>)>),
    /// The commit of (writer, seq) returned `Ok`.
    Ack(usize, u64),
    /// Value-log GC collected this file.
    Gc(u32),
}

/// Parses one line (without its newline).
pub fn parse_line(line: &str) -> Option<Line> {
    let mut parts = line.split(' ');
    match parts.next()? {
        "OPEN" => Some(Line::Open),
        "GC" => Some(Line::Gc(parts.next()?.parse().ok()?)),
        "ACK" => Some(Line::Ack(
            parts.next()?.parse().ok()?,
            parts.next()?.parse().ok()?,
        )),
        "TRY" => {
            let w = parts.next()?.parse().ok()?;
            let seq = parts.next()?.parse().ok()?;
            let mut writes = Vec::new();
            for op in parts.next()?.split('|') {
                let (k, v) = op.split_once('=')?;
                let len = match v {
                    "DEL" => None,
                    n => Some(n.parse().ok()?),
                };
                writes.push((unhex(k)?, len));
            }
            Some(Line::Try(w, seq, writes))
        }
        _ => None,
    }
}

/// Keys one stream-writer round of the kill -9 ingest test writes.
pub const INGEST_ROUND_KEYS: u64 = 2_000;

/// Key `i` of ingest round `round` in trial `trial`; sorted by `i` within
/// a round.
pub fn ingest_key(trial: u64, round: u64, i: u64) -> Vec<u8> {
    format!("ingest/{trial:04}/{round:06}/{i:06}").into_bytes()
}

// ---------------------------------------------------------------------
// Checks shared by the crash matrix (`tests/crash_matrix.rs`).

/// Keys and values of a database (or of one writer's keys).
pub type State = std::collections::BTreeMap<Vec<u8>, Vec<u8>>;

/// A transaction as the child announced it: (key, value) writes, `None` =
/// delete.
pub type AnnouncedTxn = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// What one writer did in one child run.
#[derive(Debug, Default, Clone)]
pub struct History {
    /// Announced transactions, in commit order.
    pub tried: Vec<AnnouncedTxn>,
    /// How many of them were acknowledged (always a prefix).
    pub acked: usize,
}

impl History {
    /// Records a `TRY` line of `trial`; panics on a skipped seq.
    pub fn tried(&mut self, trial: u64, seq: u64, writes: Vec<(Vec<u8>, Option<usize>)>) {
        assert_eq!(
            seq as usize,
            self.tried.len(),
            "trial {trial}: a writer skipped a seq"
        );
        self.tried.push(
            writes
                .into_iter()
                .map(|(k, len)| {
                    let v = len.map(|len| value(trial, seq, &k, len));
                    (k, v)
                })
                .collect(),
        );
    }

    /// Records an `ACK` line; panics if out of order.
    pub fn acked(&mut self, trial: u64, seq: u64) {
        assert_eq!(
            seq as usize, self.acked,
            "trial {trial}: a writer acked out of order"
        );
        assert!(
            self.acked < self.tried.len(),
            "trial {trial}: ack before try"
        );
        self.acked += 1;
    }
}

/// The transaction counts `n` in `lo..=hi` such that applying the first
/// `n` of `tried` to `base` gives exactly `observed`.
pub fn matching_prefixes(
    base: &State,
    tried: &[AnnouncedTxn],
    observed: &State,
    (lo, hi): (usize, usize),
) -> Vec<usize> {
    let mut state = base.clone();
    let differ_at = |k: &Vec<u8>, state: &State| state.get(k) != observed.get(k);
    let mut differ = state
        .keys()
        .chain(observed.keys().filter(|k| !state.contains_key(*k)))
        .filter(|k| differ_at(k, &state))
        .count();
    let mut out = Vec::new();
    if lo == 0 && differ == 0 {
        out.push(0);
    }
    for (i, txn) in tried[..hi].iter().enumerate() {
        for (k, v) in txn {
            let before = differ_at(k, &state);
            match v {
                Some(v) => state.insert(k.clone(), v.clone()),
                None => state.remove(k),
            };
            match (before, differ_at(k, &state)) {
                (false, true) => differ += 1,
                (true, false) => differ -= 1,
                _ => {}
            }
        }
        if i + 1 >= lo && differ == 0 {
            out.push(i + 1);
        }
    }
    out
}

/// Every key and value under `prefix` at the newest snapshot.
pub fn dump(db: &sett_engine::Db, prefix: &[u8]) -> sett_engine::Result<State> {
    let txn = db.begin_read();
    let mut it = txn.iter(sett_engine::IterOptions {
        prefix: prefix.to_vec(),
        ..sett_engine::IterOptions::default()
    });
    it.rewind()?;
    let mut out = State::new();
    while it.valid() {
        out.insert(it.item().key().to_vec(), it.item().value()?);
        it.next()?;
    }
    Ok(out)
}

/// The writer a key of [`key`] belongs to.
pub fn writer_of(key: &[u8]) -> Option<usize> {
    let rest = key.strip_prefix(b"w")?;
    let slash = rest.iter().position(|&b| b == b'/')?;
    std::str::from_utf8(&rest[..slash])
        .ok()?
        .parse()
        .ok()
        .filter(|&w| w < WRITERS)
}

/// Order-independent fingerprint of a set of entries: the wrapping sum
/// of [`entry_hash`] over them.
pub fn entry_hash(key: &[u8], value: &[u8]) -> u64 {
    // FNV-1a over key, a separator that cannot be confused with a length,
    // and value.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let len = (key.len() as u64).to_le_bytes();
    for &b in len.iter().chain(key).chain(value) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Prefix of the keys ingest round `round` of `trial` copies into the
/// second database of the crash matrix.
pub fn matrix_ingest_prefix(trial: u64, round: u64) -> Vec<u8> {
    format!("r{trial:05}/{round:05}/").into_bytes()
}

/// Ingest progress lines of the crash-matrix child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestLine {
    /// `INGEST_START <round>`: the export of the round begins.
    Start(u64),
    /// `INGEST_READY <round> <entries> <hash>`: exported and handed to
    /// the stream writer; `finish` comes next.
    Ready(u64, u64, u64),
    /// `INGEST_DONE <round>`: `finish` returned `Ok`.
    Done(u64),
}

/// Parses an ingest line (`None` for any other line).
pub fn parse_ingest_line(line: &str) -> Option<IngestLine> {
    let mut parts = line.split(' ');
    let tag = parts.next()?;
    let round = parts.next()?.parse().ok()?;
    match tag {
        "INGEST_START" => Some(IngestLine::Start(round)),
        "INGEST_READY" => Some(IngestLine::Ready(
            round,
            parts.next()?.parse().ok()?,
            parts.next()?.parse().ok()?,
        )),
        "INGEST_DONE" => Some(IngestLine::Done(round)),
        _ => None,
    }
}

/// Whole lines a child wrote before it died; a partial last line is
/// dropped.
pub fn read_lines(out: impl Read) -> Vec<String> {
    let mut r = BufReader::new(out);
    let mut lines = Vec::new();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return lines,
            Ok(_) if buf.ends_with(b"\n") => {
                lines.push(String::from_utf8(buf[..buf.len() - 1].to_vec()).expect("utf-8 line"))
            }
            Ok(_) => return lines,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        let l = try_line(2, 17, &[(3, Some(100)), (5, None)]);
        assert!(l.ends_with('\n'));
        let want = Line::Try(2, 17, vec![(key(2, 3), Some(100)), (key(2, 5), None)]);
        assert_eq!(parse_line(l.trim_end()), Some(want));
        assert_eq!(parse_line("ACK 1 9"), Some(Line::Ack(1, 9)));
        assert_eq!(parse_line("OPEN"), Some(Line::Open));
        assert_eq!(parse_line("GC 12"), Some(Line::Gc(12)));
        assert_eq!(parse_line("TRY 1"), None);
        assert_eq!(unhex(&hex(b"\x00\xffab")), Some(b"\x00\xffab".to_vec()));
    }

    #[test]
    fn ingest_lines_round_trip() {
        assert_eq!(
            parse_ingest_line("INGEST_START 3"),
            Some(IngestLine::Start(3))
        );
        assert_eq!(
            parse_ingest_line("INGEST_READY 3 10 99"),
            Some(IngestLine::Ready(3, 10, 99))
        );
        assert_eq!(
            parse_ingest_line("INGEST_DONE 3"),
            Some(IngestLine::Done(3))
        );
        assert_eq!(parse_ingest_line("ACK 1 2"), None);
    }

    #[test]
    fn prefixes_match_only_with_every_ack() {
        let k = key(0, 1);
        let tried = vec![
            vec![(k.clone(), Some(b"a".to_vec()))],
            vec![(k.clone(), Some(b"b".to_vec()))],
        ];
        let observed: State = [(k.clone(), b"a".to_vec())].into();
        assert_eq!(
            matching_prefixes(&State::new(), &tried, &observed, (0, 2)),
            vec![1]
        );
        assert!(matching_prefixes(&State::new(), &tried, &observed, (2, 2)).is_empty());
        assert_ne!(entry_hash(b"ab", b"c"), entry_hash(b"a", b"bc"));
    }
}
