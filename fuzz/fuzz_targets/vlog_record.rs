//! Fuzz target: value-log entries and records, and the replay of a value-log file (torn-tail cut).
//! The checks live in `sett_engine::fuzzing::vlog_record`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sett_engine::fuzzing::vlog_record(data);
});
