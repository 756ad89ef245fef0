//! Bank invariant checker.
//!
//! # Model
//! A fixed set of accounts holds a fixed total; clients move money between
//! accounts in transactions and read all balances in one snapshot read (one
//! revision). Serializable transactions keep, in every snapshot:
//! - every account present exactly once, and no other key;
//! - no negative balance (transfers never overdraw);
//! - the sum of balances equal to the total.
//!
//! A snapshot is determined by its revision, so two reads that report the
//! same revision must return identical balances (snapshot consistency).
//!
//! Only successful reads belong in the input; the checker does not look at
//! timing (kept for reports).

use std::collections::BTreeMap;
use std::fmt;

/// One successful read of all balances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankRead {
    /// Client process that read.
    pub process: usize,
    /// When the request was sent (ns).
    pub invoke_ns: u64,
    /// When the response arrived (ns).
    pub complete_ns: u64,
    /// Store revision the read was served at.
    pub revision: i64,
    /// (account, balance) as returned, in response order.
    pub balances: Vec<(String, i64)>,
}

/// A read that breaks an invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankViolation {
    /// The offending read.
    pub read: BankRead,
    /// Every invariant it breaks.
    pub explanation: String,
}

impl fmt::Display for BankViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.read;
        write!(
            f,
            "bank read by p{} at revision {} (invoke {} ns, complete {} ns): {}; balances:",
            r.process, r.revision, r.invoke_ns, r.complete_ns, self.explanation
        )?;
        for (account, balance) in &r.balances {
            write!(f, " {account}={balance}")?;
        }
        Ok(())
    }
}

/// Checks every read against the invariants in the module docs; returns one
/// violation per offending read, in input order (snapshot mismatches after
/// the per-read problems).
pub fn check(reads: &[BankRead], accounts: &[String], total: i64) -> Vec<BankViolation> {
    let mut violations = Vec::new();
    for read in reads {
        let problems = read_problems(read, accounts, total);
        if !problems.is_empty() {
            violations.push(BankViolation {
                read: read.clone(),
                explanation: problems.join("; "),
            });
        }
    }
    // Snapshot consistency: compare each read with the first read of its
    // revision.
    let mut first_at: BTreeMap<i64, (&BankRead, BTreeMap<&str, Vec<i64>>)> = BTreeMap::new();
    for read in reads {
        let view = as_map(read);
        match first_at.get(&read.revision) {
            None => {
                first_at.insert(read.revision, (read, view));
            }
            Some((first, first_view)) if *first_view != view => {
                violations.push(BankViolation {
                    read: read.clone(),
                    explanation: format!(
                        "differs from p{}'s read at the same revision {}: {}",
                        first.process,
                        read.revision,
                        describe_difference(first_view, &view)
                    ),
                });
            }
            Some(_) => {}
        }
    }
    violations
}

/// Account → balances (a list, so duplicates stay visible).
fn as_map(read: &BankRead) -> BTreeMap<&str, Vec<i64>> {
    let mut map: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for (account, balance) in &read.balances {
        map.entry(account.as_str()).or_default().push(*balance);
    }
    map
}

fn read_problems(read: &BankRead, accounts: &[String], total: i64) -> Vec<String> {
    let mut problems = Vec::new();
    let view = as_map(read);
    for account in accounts {
        if !view.contains_key(account.as_str()) {
            problems.push(format!("account {account:?} missing"));
        }
    }
    for (account, balances) in &view {
        if !accounts.iter().any(|a| a == account) {
            problems.push(format!("unexpected account {account:?}"));
        }
        if balances.len() > 1 {
            problems.push(format!(
                "account {account:?} appears {} times",
                balances.len()
            ));
        }
        for &b in balances {
            if b < 0 {
                problems.push(format!("account {account:?} is negative ({b})"));
            }
        }
    }
    let sum: i128 = read.balances.iter().map(|(_, b)| *b as i128).sum();
    if sum != total as i128 {
        problems.push(format!("balances sum to {sum}, expected {total}"));
    }
    problems
}

fn describe_difference(a: &BTreeMap<&str, Vec<i64>>, b: &BTreeMap<&str, Vec<i64>>) -> String {
    let mut parts = Vec::new();
    let names: std::collections::BTreeSet<&str> = a.keys().chain(b.keys()).copied().collect();
    for name in names {
        let show = |m: &BTreeMap<&str, Vec<i64>>| match m.get(name) {
            None => "absent".to_string(),
            Some(v) if v.len() == 1 => v[0].to_string(),
            Some(v) => format!("{v:?}"),
        };
        if a.get(name) != b.get(name) {
            parts.push(format!("{name}: {} vs {}", show(a), show(b)));
        }
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts() -> Vec<String> {
        vec!["a".to_string(), "b".to_string(), "c".to_string()]
    }

    fn read(process: usize, revision: i64, balances: &[(&str, i64)]) -> BankRead {
        BankRead {
            process,
            invoke_ns: 10 * revision as u64,
            complete_ns: 10 * revision as u64 + 5,
            revision,
            balances: balances.iter().map(|&(a, b)| (a.to_string(), b)).collect(),
        }
    }

    #[test]
    fn consistent_reads_pass() {
        let reads = [
            read(0, 1, &[("a", 10), ("b", 10), ("c", 10)]),
            read(1, 2, &[("a", 0), ("b", 20), ("c", 10)]),
            // Same revision, other order of accounts: still identical.
            read(2, 2, &[("c", 10), ("b", 20), ("a", 0)]),
        ];
        assert!(check(&reads, &accounts(), 30).is_empty());
        assert!(check(&[], &accounts(), 30).is_empty());
    }

    #[test]
    fn wrong_total_is_a_violation() {
        let reads = [read(0, 1, &[("a", 10), ("b", 10), ("c", 11)])];
        let v = check(&reads, &accounts(), 30);
        assert_eq!(v.len(), 1);
        assert!(v[0].explanation.contains("sum to 31"), "{}", v[0]);
        assert!(v[0].to_string().contains("c=11"), "{}", v[0]);
    }

    #[test]
    fn negative_balance_is_a_violation_even_with_the_right_total() {
        let reads = [read(0, 1, &[("a", -5), ("b", 25), ("c", 10)])];
        let v = check(&reads, &accounts(), 30);
        assert_eq!(v.len(), 1);
        assert!(v[0].explanation.contains("negative"), "{}", v[0]);
    }

    #[test]
    fn missing_extra_and_duplicate_accounts_are_violations() {
        let missing = [read(0, 1, &[("a", 15), ("b", 15)])];
        let v = check(&missing, &accounts(), 30);
        assert_eq!(v.len(), 1);
        assert!(v[0].explanation.contains("\"c\" missing"), "{}", v[0]);

        let extra = [read(0, 1, &[("a", 10), ("b", 10), ("c", 10), ("d", 0)])];
        let v = check(&extra, &accounts(), 30);
        assert_eq!(v.len(), 1);
        assert!(
            v[0].explanation.contains("unexpected account \"d\""),
            "{}",
            v[0]
        );

        let dup = [read(0, 1, &[("a", 10), ("a", 0), ("b", 10), ("c", 10)])];
        let v = check(&dup, &accounts(), 30);
        assert_eq!(v.len(), 1);
        assert!(v[0].explanation.contains("2 times"), "{}", v[0]);
    }

    #[test]
    fn reads_at_one_revision_must_be_identical() {
        let reads = [
            read(0, 7, &[("a", 10), ("b", 10), ("c", 10)]),
            read(1, 7, &[("a", 10), ("b", 10), ("c", 10)]),
            // Valid on its own, but not the snapshot of revision 7.
            read(2, 7, &[("a", 5), ("b", 15), ("c", 10)]),
            read(3, 8, &[("a", 5), ("b", 15), ("c", 10)]),
        ];
        let v = check(&reads, &accounts(), 30);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].read.process, 2);
        assert!(v[0].explanation.contains("a: 10 vs 5"), "{}", v[0]);
    }

    #[test]
    fn every_bad_read_is_reported() {
        let reads = [
            read(0, 1, &[("a", 10), ("b", 10), ("c", 10)]),
            read(1, 2, &[("a", 10), ("b", 10)]),
            read(2, 3, &[("a", 10), ("b", 10), ("c", 10)]),
            read(3, 4, &[("a", 40), ("b", -10), ("c", 10)]),
        ];
        let v = check(&reads, &accounts(), 30);
        let who: Vec<usize> = v.iter().map(|v| v.read.process).collect();
        assert_eq!(who, vec![1, 3]);
    }
}
