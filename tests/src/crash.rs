//! The protocol between the kill -9 crash test (`tests/crash_kill9.rs`)
//! and its child process (`src/bin/crash_child.rs`).
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

use sett_engine::Options;
use std::path::Path;

/// Writer threads in the child.
pub const WRITERS: usize = 3;
/// Keys per writer.
pub const KEYS_PER_WRITER: usize = 32;

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
}
