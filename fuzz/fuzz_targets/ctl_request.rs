//! Fuzz target `ctl_request`: see `p2p_fuzz::harness` and docs/fuzzing.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| p2p_fuzz::harness::daemon::ctl_request(data));
