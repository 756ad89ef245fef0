//! Merges several sorted sources into one sorted stream of internal keys.
//!
//! Sources are ordered newest first; when two sources hold the same
//! internal key, the earlier (newer) one wins and the other copy is
//! skipped. The current entry is found by a linear scan, which beats a heap
//! for the handful of sources an LSM tree has.

use super::Source;
use crate::format::compare_keys;
use crate::Result;
use std::cmp::Ordering;

/// A merging cursor, forward or reverse.
#[derive(Debug)]
pub(crate) struct MergeIter {
    sources: Vec<Source>,
    reverse: bool,
    cur: Option<usize>,
    /// Scratch copy of the key being stepped past.
    last: Vec<u8>,
}

impl MergeIter {
    /// Merges `sources` (newest first).
    pub(crate) fn new(sources: Vec<Source>, reverse: bool) -> MergeIter {
        MergeIter {
            sources,
            reverse,
            cur: None,
            last: Vec::new(),
        }
    }

    fn pick(&mut self) {
        let mut best: Option<usize> = None;
        for (i, s) in self.sources.iter().enumerate() {
            if !s.valid() {
                continue;
            }
            best = match best {
                None => Some(i),
                Some(b) => {
                    let o = compare_keys(s.key(), self.sources[b].key());
                    let better = if self.reverse {
                        o == Ordering::Greater
                    } else {
                        o == Ordering::Less
                    };
                    if better {
                        Some(i)
                    } else {
                        Some(b)
                    }
                }
            };
        }
        self.cur = best;
    }

    /// Positions at the first entry in the iteration direction.
    pub(crate) fn rewind(&mut self) -> Result<()> {
        for s in &mut self.sources {
            s.rewind()?;
        }
        self.pick();
        Ok(())
    }

    /// Forward: first entry >= `ikey`; reverse: last entry <= `ikey`.
    pub(crate) fn seek(&mut self, ikey: &[u8]) -> Result<()> {
        for s in &mut self.sources {
            s.seek(ikey)?;
        }
        self.pick();
        Ok(())
    }

    /// Steps past the current internal key (in every source holding it).
    pub(crate) fn next(&mut self) -> Result<()> {
        let Some(c) = self.cur else { return Ok(()) };
        self.last.clear();
        self.last.extend_from_slice(self.sources[c].key());
        for s in &mut self.sources {
            if s.valid() && s.key() == self.last.as_slice() {
                s.next()?;
            }
        }
        self.pick();
        Ok(())
    }

    /// True while positioned on an entry.
    pub(crate) fn valid(&self) -> bool {
        self.cur.is_some()
    }

    /// Current internal key.
    pub(crate) fn key(&self) -> &[u8] {
        self.sources[self.cur.expect("valid")].key()
    }

    /// Current encoded value.
    pub(crate) fn value(&self) -> &[u8] {
        self.sources[self.cur.expect("valid")].value()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{key_with_version, user_key};
    use crate::iter::VecIter;

    fn src(keys: &[(&[u8], u64)], reverse: bool) -> Source {
        let mut v: Vec<_> = keys
            .iter()
            .map(|(k, ver)| (key_with_version(k, *ver), vec![*ver as u8]))
            .collect();
        v.sort_by(|a, b| compare_keys(&a.0, &b.0));
        Source::Vec(VecIter::new(v, reverse))
    }

    #[test]
    fn merges_and_dedups_both_ways() {
        for reverse in [false, true] {
            let a = src(&[(b"a", 2), (b"c", 1)], reverse);
            let b = src(&[(b"a", 2), (b"a", 1), (b"b", 1)], reverse);
            let mut m = MergeIter::new(vec![a, b], reverse);
            m.rewind().unwrap();
            let mut got = Vec::new();
            while m.valid() {
                got.push((
                    user_key(m.key()).to_vec(),
                    crate::format::key_version(m.key()),
                ));
                m.next().unwrap();
            }
            let mut want = vec![
                (b"a".to_vec(), 2),
                (b"a".to_vec(), 1),
                (b"b".to_vec(), 1),
                (b"c".to_vec(), 1),
            ];
            if reverse {
                want.reverse();
            }
            assert_eq!(got, want);
        }
    }
}
