//! Fuzz target: whole table files: footer, index, bloom filter, meta and data blocks, forward and reverse iteration.
//! The checks live in `sett_engine::fuzzing::table`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sett_engine::fuzzing::table(data);
});
