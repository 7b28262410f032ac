//! `cohort_engine::fuzzing::duravip` under libFuzzer (see that function for what it checks).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cohort_engine::fuzzing::duravip(data));
