//! Fuzz target: manifest files: header, record framing, edit payloads, replay and torn-tail detection.
//! The checks live in `sett_engine::fuzzing::manifest`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sett_engine::fuzzing::manifest(data);
});
