//! Cross-crate tests for sett; the scenarios live in `tests/`, one per file.
//! Helpers shared by a test and the binaries it drives live here.

pub mod crash;
