//! Cross-crate tests for sett; the scenarios live in `tests/`, one per file.
