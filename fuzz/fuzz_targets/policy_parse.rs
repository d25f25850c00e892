//! Fuzzes the policy parser and validator: any bytes must give a policy or located
//! findings, never a panic, hang or unbounded allocation.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fleetkit::fuzzing::policy_parse(data);
});
