//! What every fuzz target runs: one function per target, taking the raw
//! input bytes, that decodes them with the real decoders and feeds what
//! decoded into what the daemon or the server does next (validation, the
//! inbox, the handlers, formatting).
//!
//! This module is compiled twice: by the cargo-fuzz crate (`fuzz/`, nightly,
//! AddressSanitizer) and, through `#[path]`, by the stable tests in
//! `crates/server/tests/` (`fuzz_regressions.rs` replays every corpus and
//! regression file, `hostile_values.rs` is the proptest). So a crash found
//! by the fuzzer becomes a CI test by copying its input file into
//! `fuzz/regressions/<target>/`.
//!
//! A target panics only on a defect: a panic in the code under test, or a
//! property checked here (a random resume token logging in, a damaged pin
//! file being overwritten, a handler that never answers).

pub mod daemon;
pub mod seeds;
pub mod server;
pub mod simple;

/// A fuzz target: its name (the directory under `fuzz/corpus/` and
/// `fuzz/regressions/`) and its function.
pub type Target = (&'static str, fn(&[u8]));

/// Every target.
pub const TARGETS: &[Target] = &[
    ("server_frames", server::server_frames),
    ("client_frames", daemon::client_frames),
    ("peer_frames", daemon::peer_frames),
    ("ctl_request", daemon::ctl_request),
    ("ctl_response", simple::ctl_response),
    ("preamble", simple::preamble),
    ("state_files", simple::state_files),
    ("users_csv", server::users_csv),
    ("durations", simple::durations),
];

/// A private scratch directory, on tmpfs when there is one: the inbox and
/// the server's database sync on every commit, which costs nothing there.
pub fn scratch() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::Builder::new().prefix("p2p-fuzz").tempdir_in(shm) {
            return d;
        }
    }
    tempfile::Builder::new()
        .prefix("p2p-fuzz")
        .tempdir()
        .expect("temp dir")
}

/// Prefix of the directories that live as long as a process (the shared
/// daemon and server fixtures); [`fixture_dir`] removes those of processes
/// that are gone.
const FIXTURE_PREFIX: &str = "p2p-fuzz-fixture-";

/// A directory for a fixture that lives until the process ends (statics are
/// never dropped, so it is cleaned up by the next process instead).
pub fn fixture_dir() -> std::path::PathBuf {
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    if let Ok(entries) = std::fs::read_dir(&base) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name
                .strip_prefix(FIXTURE_PREFIX)
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok());
            if let Some(pid) = pid {
                if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
    tempfile::Builder::new()
        .prefix(&format!("{FIXTURE_PREFIX}{}-", std::process::id()))
        .tempdir_in(base)
        .expect("fixture dir")
        .keep()
}

/// The bytes a frame target decodes. A stream of real frames starts with a
/// length whose first byte is 0 (every frame limit is under 16 MiB); an
/// input that starts with `{` is instead taken as JSON documents, one per
/// line, each given a correct 4-byte length first. Both go through the
/// same decoder; the second lets the fuzzer mutate messages without
/// having to keep a length prefix in step.
pub fn framed(data: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if data.first() != Some(&b'{') {
        return std::borrow::Cow::Borrowed(data);
    }
    let mut out = Vec::with_capacity(data.len() + 64);
    for doc in data.split(|&b| b == b'\n').take(MAX_ITEMS_PER_INPUT) {
        out.extend_from_slice(&(doc.len() as u32).to_be_bytes());
        out.extend_from_slice(doc);
    }
    std::borrow::Cow::Owned(out)
}

/// Most messages decoded from one input: keeps each run short, so the
/// fuzzer explores instead of replaying one long input.
pub const MAX_ITEMS_PER_INPUT: usize = 64;
