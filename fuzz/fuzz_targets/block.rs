//! Fuzz target: table blocks: block contents (entries, restart array) and stored blocks (compression type, CRC trailer).
//! The checks live in `sett_engine::fuzzing::block`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sett_engine::fuzzing::block(data);
});
