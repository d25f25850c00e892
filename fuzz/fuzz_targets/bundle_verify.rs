//! Fuzzes the bundle verifier: any bytes must be rejected with a reason (or, for a
//! correctly signed input, accepted), never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fleetkit::fuzzing::bundle_verify(data);
});
