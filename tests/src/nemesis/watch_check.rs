//! Watch delivery checker.
//!
//! # Model
//! The *reference* is the complete list of committed events under the
//! watched prefix, read after the run by a fresh watch on a healthy cluster.
//! It is ordered by revision; events that share a revision come from one
//! multi-key transaction and keep their order. In etcd an event is
//! identified by (revision, key): one revision changes a key at most once.
//!
//! A watcher that watched the prefix from `start_revision` (inclusive),
//! resuming across failures however it needed to, must have received
//! exactly a prefix of the reference events with `revision >=
//! start_revision`: same order, same kind and value, nothing skipped,
//! nothing twice, nothing invented. It may have stopped early.
//!
//! Checks, each reported as a [`WatchViolation`]:
//! - the reference itself is in non-decreasing revision order and names no
//!   (revision, key) twice (watcher name `"reference"`);
//! - every acknowledged write (key, revision) is in the reference (watcher
//!   name `"acked writes"`, one violation listing all that are missing);
//! - each watcher's first divergence from the reference, classified as
//!   duplicate, gap, reorder, phantom or changed content, with a few events
//!   of context from both sides.

use std::collections::{HashMap, HashSet};
use std::fmt;

/// What an event did to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The key was created or updated.
    Put,
    /// The key was deleted.
    Delete,
}

/// One watch event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WatchEvent {
    /// Revision of the change (etcd `mod_revision`).
    pub revision: i64,
    /// The changed key.
    pub key: String,
    /// Put or delete.
    pub kind: EventKind,
    /// The new value (empty for deletes).
    pub value: Vec<u8>,
}

/// Everything one watcher received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatcherLog {
    /// Watcher name (for reports).
    pub name: String,
    /// First revision it asked for (inclusive).
    pub start_revision: i64,
    /// Events in delivery order, across resumes.
    pub events: Vec<WatchEvent>,
    /// How many times the watch was re-established (for reports).
    pub resumes: usize,
}

/// A broken delivery guarantee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchViolation {
    /// Watcher name, `"reference"` or `"acked writes"`.
    pub watcher: String,
    /// What went wrong, with a few events of context (may span lines).
    pub explanation: String,
}

impl fmt::Display for WatchViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "watch {}: {}", self.watcher, self.explanation)
    }
}

impl fmt::Display for WatchEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// Values longer than this are cut in reports.
        const VALUE_SHOWN_BYTES_MAX: usize = 32;
        match self.kind {
            EventKind::Delete => write!(f, "rev {} DELETE {}", self.revision, self.key),
            EventKind::Put => {
                let cut = self.value.len().min(VALUE_SHOWN_BYTES_MAX);
                let more = if cut < self.value.len() { "…" } else { "" };
                write!(
                    f,
                    "rev {} PUT {} = {:?}{more}",
                    self.revision,
                    self.key,
                    String::from_utf8_lossy(&self.value[..cut])
                )
            }
        }
    }
}

/// Events of context shown on each side of a divergence.
const CONTEXT_EVENTS: usize = 3;
/// Missing acknowledged writes listed by name (the rest are counted).
const ACKED_LISTED_MAX: usize = 10;

/// Checks the reference, the acknowledged writes and every watcher (see the
/// module docs). Returns violations in that order; at most one per watcher.
pub fn check(
    reference: &[WatchEvent],
    acked: &[(String, i64)],
    watchers: &[WatcherLog],
) -> Vec<WatchViolation> {
    let mut violations = Vec::new();
    violations.extend(check_reference(reference));

    let present: HashSet<(i64, &str)> = reference
        .iter()
        .map(|e| (e.revision, e.key.as_str()))
        .collect();
    let missing: Vec<&(String, i64)> = acked
        .iter()
        .filter(|(key, rev)| !present.contains(&(*rev, key.as_str())))
        .collect();
    if !missing.is_empty() {
        let listed: Vec<String> = missing
            .iter()
            .take(ACKED_LISTED_MAX)
            .map(|(key, rev)| format!("{key}@{rev}"))
            .collect();
        let more = missing.len().saturating_sub(ACKED_LISTED_MAX);
        violations.push(WatchViolation {
            watcher: "acked writes".to_string(),
            explanation: format!(
                "{} of {} acknowledged writes are not in the reference event list: {}{}",
                missing.len(),
                acked.len(),
                listed.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ),
        });
    }

    for w in watchers {
        violations.extend(check_watcher(reference, w));
    }
    violations
}

fn check_reference(reference: &[WatchEvent]) -> Option<WatchViolation> {
    let mut seen: HashSet<(i64, &str)> = HashSet::new();
    for (i, e) in reference.iter().enumerate() {
        let problem = if i > 0 && e.revision < reference[i - 1].revision {
            Some(format!(
                "revision goes backwards at index {i} ({} after {})",
                e.revision,
                reference[i - 1].revision
            ))
        } else if !seen.insert((e.revision, e.key.as_str())) {
            Some(format!(
                "key {} appears twice in revision {} (index {i})",
                e.key, e.revision
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            return Some(WatchViolation {
                watcher: "reference".to_string(),
                explanation: format!("{problem}\n{}", context("reference", reference.iter(), i)),
            });
        }
    }
    None
}

fn check_watcher(reference: &[WatchEvent], w: &WatcherLog) -> Option<WatchViolation> {
    let expected: Vec<&WatchEvent> = reference
        .iter()
        .filter(|e| e.revision >= w.start_revision)
        .collect();
    let position: HashMap<(i64, &str), usize> = expected
        .iter()
        .enumerate()
        .map(|(i, e)| ((e.revision, e.key.as_str()), i))
        .collect();
    let i = (0..w.events.len()).find(|&i| expected.get(i) != Some(&&w.events[i]))?;
    let got = &w.events[i];
    let id = (got.revision, got.key.as_str());
    let what = if w.events[..i]
        .iter()
        .any(|e| (e.revision, e.key.as_str()) == id)
    {
        format!("duplicate: event {i} ({got}) was already delivered")
    } else if i >= expected.len() {
        format!(
            "phantom: event {i} ({got}) comes after the last of the {} reference events",
            expected.len()
        )
    } else {
        let want = expected[i];
        let want_id = (want.revision, want.key.as_str());
        let want_later = w.events[i + 1..]
            .iter()
            .any(|e| (e.revision, e.key.as_str()) == want_id);
        match position.get(&id) {
            Some(&j) if j == i => {
                format!("changed content: event {i} is {got}, the reference has {want}")
            }
            Some(_) if want_later => {
                format!(
                    "reorder: event {i} is {got}, but {want} comes first and was delivered later"
                )
            }
            Some(_) => {
                format!("gap: event {i} is {got}; {want} (and maybe more) was never delivered")
            }
            None if got.revision < w.start_revision => format!(
                "phantom: event {i} ({got}) is before the start revision {}",
                w.start_revision
            ),
            None => format!("phantom: event {i} ({got}) is not in the reference"),
        }
    };
    Some(WatchViolation {
        watcher: w.name.clone(),
        explanation: format!(
            "{what} (start revision {}, {} events received, {} resumes)\n{}\n{}",
            w.start_revision,
            w.events.len(),
            w.resumes,
            context("received", w.events.iter(), i),
            context("expected", expected.iter().copied(), i),
        ),
    })
}

/// Events `at - CONTEXT_EVENTS ..= at + CONTEXT_EVENTS` of `events`, one a
/// line with its index, the one at `at` marked.
fn context<'a>(label: &str, events: impl Iterator<Item = &'a WatchEvent>, at: usize) -> String {
    let from = at.saturating_sub(CONTEXT_EVENTS);
    let mut out = format!("  {label}:");
    let mut shown = 0;
    for (i, e) in events.enumerate().skip(from).take(2 * CONTEXT_EVENTS + 1) {
        let mark = if i == at { ">" } else { " " };
        out.push_str(&format!("\n  {mark} [{i}] {e}"));
        shown += 1;
    }
    if shown == 0 {
        out.push_str(" (nothing here)");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(revision: i64, key: &str, value: &str) -> WatchEvent {
        WatchEvent {
            revision,
            key: key.to_string(),
            kind: EventKind::Put,
            value: value.as_bytes().to_vec(),
        }
    }

    fn del(revision: i64, key: &str) -> WatchEvent {
        WatchEvent {
            revision,
            key: key.to_string(),
            kind: EventKind::Delete,
            value: Vec::new(),
        }
    }

    /// Revisions 2..=9, revision 5 a two-key transaction.
    fn reference() -> Vec<WatchEvent> {
        vec![
            put(2, "/w/a", "1"),
            put(3, "/w/b", "1"),
            put(4, "/w/a", "2"),
            put(5, "/w/a", "3"),
            put(5, "/w/b", "2"),
            del(6, "/w/b"),
            put(7, "/w/c", "1"),
            put(8, "/w/a", "4"),
            put(9, "/w/c", "2"),
        ]
    }

    fn acked() -> Vec<(String, i64)> {
        reference()
            .iter()
            .map(|e| (e.key.clone(), e.revision))
            .collect()
    }

    fn watcher(start_revision: i64, events: Vec<WatchEvent>) -> WatcherLog {
        WatcherLog {
            name: "w1".to_string(),
            start_revision,
            events,
            resumes: 1,
        }
    }

    fn one(w: WatcherLog) -> WatchViolation {
        let v = check(&reference(), &acked(), &[w]);
        assert_eq!(v.len(), 1, "{v:#?}");
        assert_eq!(v[0].watcher, "w1");
        v.into_iter().next().unwrap()
    }

    #[test]
    fn healthy_watchers_pass_including_early_stop() {
        let r = reference();
        let full = watcher(1, r.clone());
        let from_five = watcher(5, r[3..].to_vec());
        let stopped_early = watcher(3, r[1..5].to_vec());
        let nothing = watcher(4, Vec::new());
        let past_end = watcher(100, Vec::new());
        let v = check(
            &r,
            &acked(),
            &[full, from_five, stopped_early, nothing, past_end],
        );
        assert!(v.is_empty(), "{v:#?}");
    }

    #[test]
    fn duplicate_is_reported() {
        let r = reference();
        // A resume that restarts one event too early.
        let mut events = r[..4].to_vec();
        events.extend(r[3..].iter().cloned());
        let v = one(watcher(1, events));
        assert!(v.explanation.starts_with("duplicate: event 4"), "{v}");
        assert!(v.to_string().contains("> [4] rev 5 PUT /w/a"), "{v}");
    }

    #[test]
    fn gap_is_reported() {
        let r = reference();
        let mut events = r[..5].to_vec();
        events.extend(r[6..].iter().cloned()); // the delete at 6 is lost
        let v = one(watcher(1, events));
        assert!(v.explanation.starts_with("gap: event 5"), "{v}");
        assert!(v.explanation.contains("rev 6 DELETE /w/b"), "{v}");
    }

    #[test]
    fn reorder_is_reported_also_inside_one_revision() {
        let r = reference();
        let mut events = r.clone();
        events.swap(3, 4); // the two events of revision 5
        let v = one(watcher(1, events));
        assert!(v.explanation.starts_with("reorder: event 3"), "{v}");
        let mut events = r.clone();
        events.swap(6, 7);
        let v = one(watcher(1, events));
        assert!(v.explanation.starts_with("reorder: event 6"), "{v}");
    }

    #[test]
    fn phantom_and_changed_events_are_reported() {
        let r = reference();
        let mut events = r[..3].to_vec();
        events.push(put(4, "/w/z", "x"));
        let v = one(watcher(1, events));
        assert!(v.explanation.starts_with("phantom: event 3"), "{v}");

        let mut events = r.clone();
        events.push(put(10, "/w/a", "5"));
        let v = one(watcher(1, events));
        assert!(v.explanation.contains("after the last"), "{v}");

        let v = one(watcher(4, r.clone()));
        assert!(v.explanation.contains("before the start revision 4"), "{v}");

        let mut events = r.clone();
        events[2].value = b"changed".to_vec();
        let v = one(watcher(1, events));
        assert!(v.explanation.starts_with("changed content: event 2"), "{v}");

        let mut events = r.clone();
        events[5].kind = EventKind::Put;
        let v = one(watcher(1, events));
        assert!(v.explanation.starts_with("changed content: event 5"), "{v}");
    }

    #[test]
    fn missing_acked_write_is_reported() {
        let mut acked = acked();
        acked.push(("/w/a".to_string(), 11));
        acked.push(("/w/c".to_string(), 3)); // revision 3 changed /w/b, not /w/c
        let v = check(&reference(), &acked, &[]);
        assert_eq!(v.len(), 1, "{v:#?}");
        assert_eq!(v[0].watcher, "acked writes");
        assert!(v[0].explanation.contains("2 of 11"), "{}", v[0]);
        assert!(v[0].explanation.contains("/w/a@11, /w/c@3"), "{}", v[0]);
    }

    #[test]
    fn broken_reference_is_reported() {
        let mut r = reference();
        r.swap(1, 2);
        let v = check(&r, &[], &[]);
        assert_eq!(v.len(), 1, "{v:#?}");
        assert_eq!(v[0].watcher, "reference");
        assert!(
            v[0].explanation.contains("backwards at index 2"),
            "{}",
            v[0]
        );

        let mut r = reference();
        r.insert(4, put(5, "/w/a", "3"));
        let v = check(&r, &[], &[]);
        assert_eq!(v.len(), 1, "{v:#?}");
        assert!(v[0].explanation.contains("appears twice"), "{}", v[0]);
    }

    #[test]
    fn each_watcher_reports_its_first_divergence_only() {
        let r = reference();
        let mut a = watcher(1, r[..2].to_vec());
        a.events.push(r[1].clone());
        a.events.push(r[1].clone());
        a.name = "a".to_string();
        let mut b = watcher(1, r.clone());
        b.events.remove(0);
        b.name = "b".to_string();
        let v = check(&r, &acked(), &[a, b]);
        let names: Vec<&str> = v.iter().map(|v| v.watcher.as_str()).collect();
        assert_eq!(names, vec!["a", "b"]);
        assert!(v[1].explanation.starts_with("gap: event 0"), "{}", v[1]);
    }
}
