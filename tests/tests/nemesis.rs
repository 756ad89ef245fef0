//! The nemesis in CI: a short pass with every fault kind that must find
//! nothing, and proof that each checker bites: with one of the server's
//! debug-only bugs switched on, the matching checker must report a
//! violation.
//!
//! `SETT_NEMESIS_SEEDS=N` and `SETT_NEMESIS_SECONDS=S` lengthen the short
//! pass (defaults 2 seeds of 20 s); the longer runs recorded in
//! docs/RELIABILITY.md use the `nemesis` binary.

#[path = "../src/cluster.rs"]
#[allow(dead_code)]
mod cluster;

use sett_tests::nemesis::faults::FaultKind;
use sett_tests::nemesis::run::{run, Config, Report};
use std::time::Duration;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(seed: u64, seconds: u64) -> Config {
    Config::new(
        cluster::member_binary(),
        seed,
        Duration::from_secs(seconds),
        3,
    )
}

fn run_one(cfg: &Config) -> Report {
    let _one_at_a_time = cluster::serial();
    let report = cluster::runtime().block_on(run(cfg));
    eprintln!(
        "seed {} debug faults {:?}: register ops {} ({} unknown), bank reads {}, \
         watch events {} (acked {}), failover ms {:?}, violations {}, harness errors {:?}",
        report.seed,
        cfg.debug_faults,
        report.register_ops,
        report.register_unknown,
        report.bank_reads,
        report.watch_events,
        report.watch_acked,
        report.failover_ms,
        report.violations.len(),
        report.harness_errors
    );
    report
}

fn describe(r: &Report) -> String {
    let mut s = String::new();
    for (c, t) in &r.violations {
        s.push_str(&format!("\n({c}) {t}"));
    }
    for e in &r.harness_errors {
        s.push_str(&format!("\nharness: {e}"));
    }
    if let Some(d) = &r.dir {
        s.push_str(&format!("\nlogs in {}", d.display()));
    }
    s
}

#[test]
fn short_pass_with_every_fault_finds_nothing() {
    let seeds = env_u64("SETT_NEMESIS_SEEDS", 2);
    let seconds = env_u64("SETT_NEMESIS_SECONDS", 20);
    for seed in 1..=seeds {
        let report = run_one(&config(seed, seconds));
        assert!(
            report.passed(),
            "seed {seed} failed:{}\nschedule:\n{}",
            describe(&report),
            report.schedule.join("\n")
        );
        assert!(report.register_ops > 0 && report.bank_reads > 0 && report.watch_events > 0);
    }
}

/// Runs `seconds` of load with `debug_fault` on and `faults`, and asserts
/// that `checker` reports a violation.
fn assert_bites(debug_fault: &str, faults: &[FaultKind], seconds: u64, checker: &str) {
    let mut cfg = config(7, seconds);
    cfg.debug_faults = vec![debug_fault.to_owned()];
    cfg.faults = faults.to_vec();
    let report = run_one(&cfg);
    assert!(
        report.violated(checker),
        "with {debug_fault} on, the {checker} checker found nothing:{}",
        describe(&report)
    );
}

#[test]
fn linearizability_checker_catches_acknowledged_uncommitted_writes() {
    assert_bites("ack-uncommitted", &[], 8, "linearizable");
}

#[test]
fn linearizability_checker_catches_stale_local_reads() {
    assert_bites("local-read", &[FaultKind::Partition], 14, "linearizable");
}

#[test]
fn watch_checker_catches_a_dropped_event() {
    assert_bites("drop-watch-event", &[], 8, "watch");
}

#[test]
fn bank_checker_catches_transfers_that_ignore_their_compare() {
    assert_bites("skip-txn-compare", &[], 8, "bank");
}
