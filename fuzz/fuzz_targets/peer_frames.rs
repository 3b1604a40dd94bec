//! Fuzz target `peer_frames`: see `p2p_fuzz::harness` and docs/fuzzing.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| p2p_fuzz::harness::daemon::peer_frames(data));
