//! The nemesis: real `sett` processes under client load while faults are
//! injected, with the history checked afterwards.
//!
//! [`run::run`] starts a cluster whose every member-to-member link runs
//! through a proxy the harness controls ([`proxy`], [`procs`]), runs the
//! workloads of [`workload`] (registers, bank, watch) while applying the
//! seeded schedule of [`faults`], heals everything, SIGKILLs and restarts
//! every member, reads the final state, and runs the checkers
//! ([`linearizable`], [`bank_check`], [`watch_check`]). The command-line
//! front end is `src/bin/nemesis.rs`; `docs/RELIABILITY.md` describes the
//! faults, workloads and checkers and records results.

pub mod bank_check;
pub mod faults;
pub mod linearizable;
pub mod procs;
pub mod proxy;
pub mod run;
pub mod watch_check;
pub mod workload;
