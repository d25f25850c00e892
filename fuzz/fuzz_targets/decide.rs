//! Fuzzes the decision engine: any command line must get a decision naming its rule,
//! never a panic, a hang or a stack overflow; one that cannot be analysed is never
//! allowed.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fleetkit::fuzzing::decide(data);
});
