//! Fuzz target: backup streams: header, frames, entries, trailer and the whole-stream checksum.
//! The checks live in `sett_engine::fuzzing::backup_stream`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sett_engine::fuzzing::backup_stream(data);
});
