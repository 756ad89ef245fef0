//! Cross-crate tests for sett; the scenarios live in `tests/`, one per file.
//! Helpers shared by a test and the binaries it drives live here.

pub mod crash;
pub mod etcd_ref;
pub mod nemesis;

// The real-process cluster harness uses `etcd-client` and `tokio`, which are
// dev-dependencies of this crate: the test files include the module with
// `#[path = "../src/cluster.rs"]`, and it is compiled here only in test
// builds (so `cargo test`/`clippy --all-targets` check it once more).
#[cfg(test)]
pub mod cluster;
