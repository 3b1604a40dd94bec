//! Replays every input under `fuzz/corpus/<target>/` and
//! `fuzz/regressions/<target>/` through the fuzz targets' own functions
//! (`fuzz/src/harness`), on stable, so a crash the fuzzer once found stays
//! fixed. Two tests per target (`TARGET::corpus`, `TARGET::regressions`),
//! so a failure names its target; each file is printed before it runs.
//!
//! The seed corpus is made here too: `P2P_FUZZ_WRITE_SEEDS=1 cargo test -p
//! p2p-server --test fuzz_regressions seeds` rewrites
//! `fuzz/corpus/<target>/seed-*` from the real encoders.

#[allow(dead_code)]
#[path = "../../../fuzz/src/harness/mod.rs"]
mod harness;

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn target(name: &str) -> fn(&[u8]) {
    harness::TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
        .unwrap_or_else(|| panic!("no fuzz target {name}"))
}

/// Runs every file of `fuzz/<kind>/<name>/` through the target; returns
/// how many there were.
fn replay(kind: &str, name: &str) -> usize {
    let dir = fuzz_dir().join(kind).join(name);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    files.sort();
    let run = target(name);
    for f in &files {
        eprintln!("replaying {}", f.display());
        run(&std::fs::read(f).unwrap());
    }
    files.len()
}

/// `TARGET::corpus` and `TARGET::regressions` for each target: the seeds
/// and inputs the fuzzer kept, and the crashes it found.
macro_rules! replay_tests {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn corpus() {
                let n = super::replay("corpus", stringify!($name));
                eprintln!("{n} inputs replayed");
            }

            #[test]
            fn regressions() {
                let n = super::replay("regressions", stringify!($name));
                eprintln!("{n} inputs replayed");
            }
        }
    )*};
}

replay_tests!(
    server_frames,
    client_frames,
    peer_frames,
    ctl_request,
    ctl_response,
    preamble,
    state_files,
    users_csv,
    durations,
);

#[test]
fn every_target_has_a_replay_test_and_seeds() {
    let names: Vec<&str> = harness::TARGETS.iter().map(|(n, _)| *n).collect();
    assert_eq!(names.len(), 9, "add a replay test for the new target");
    let seeds = harness::seeds::seeds();
    for n in &names {
        assert!(seeds.iter().any(|(t, _, _)| t == n), "no seed for {n}");
    }
}

/// The seeds (real frames from the real encoders) run clean; with
/// `P2P_FUZZ_WRITE_SEEDS=1` they are also written to `fuzz/corpus/`.
#[test]
fn seeds_run_clean() {
    let write = std::env::var_os("P2P_FUZZ_WRITE_SEEDS").is_some();
    for (name, file, bytes) in harness::seeds::seeds() {
        target(name)(&bytes);
        if write {
            let dir = fuzz_dir().join("corpus").join(name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("seed-{file}")), &bytes).unwrap();
        }
    }
}
