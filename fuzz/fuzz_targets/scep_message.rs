//! Fuzzes the SCEP message layer: any bytes given to `fleetkit serve`'s PKIOperation
//! are parsed, verified, decrypted with the (test-only) fixture RA and read as a
//! PKCS#10 request, and answered with a FAILURE CertRep; never a panic, hang or
//! unbounded allocation. Seed it with `tests/fixtures/scep/*.der`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fleetkit::fuzzing::scep_message(data);
});
