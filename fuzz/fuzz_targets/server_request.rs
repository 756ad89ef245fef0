//! Fuzz target: etcd requests (Range, Put, DeleteRange, Txn, Compact,
//! LeaseGrant/Revoke, Alarm, WatchCreate) against an in-memory member's
//! gRPC checks, state machine apply and read path. The layer driven and
//! the checks are described in `sett_server::fuzzing`.
#![no_main]

use std::cell::RefCell;

thread_local! {
    /// One member state, reset by the fuzzer every `INPUTS_PER_STORE` inputs.
    static MEMBER: RefCell<Option<sett_server::fuzzing::RequestFuzzer>> = const { RefCell::new(None) };
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    MEMBER.with(|m| {
        m.borrow_mut()
            .get_or_insert_with(sett_server::fuzzing::RequestFuzzer::new)
            .run(data);
    });
});
