//! Log setup shared by `p2p-server` and `p2pd` (SPEC §7, §12): journald when
//! our stderr really is the journal stream, stderr otherwise; level from
//! `--log-level`, else `RUST_LOG`, else `info`; no colour under `NO_COLOR`
//! or when stderr is not a terminal.
//!
//! Nothing secret is logged at any level: passwords and tokens are
//! [`Secret`](p2p_proto::Secret)s, and message bodies are never a log field.

use std::ffi::OsStr;
use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use tracing_subscriber::{fmt, prelude::*, reload, EnvFilter, Registry};

pub mod journal;

/// The levels `--log-level` accepts, alone or after `target=`.
pub const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Clap value parser for `--log-level` (and its config key): a level, or a
/// comma-separated filter whose every directive is a level or
/// `target=level`. Anything else is refused: `EnvFilter` would otherwise take
/// a mistyped level ("verbose") for a target name and silently log nothing.
pub fn parse_log_level(s: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "invalid log level {s:?}: use one of {} or a filter like info,p2p_server=debug",
            LEVELS.join(", ")
        )
    };
    let directives: Vec<&str> = s.split(',').map(str::trim).collect();
    if directives.iter().all(|d| d.is_empty()) {
        return Err(bad());
    }
    for d in directives.iter().filter(|d| !d.is_empty()) {
        let level = match d.rsplit_once('=') {
            Some((target, level)) if !target.is_empty() => level,
            Some(_) => return Err(bad()),
            None => d,
        };
        if !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level)) {
            return Err(bad());
        }
    }
    EnvFilter::try_new(s).map_err(|_| bad())?;
    Ok(s.to_owned())
}

/// Whether `JOURNAL_STREAM` (systemd's "DEV:INODE" of the stream it gave
/// us) names the file whose device and inode are `dev`/`ino`. A shell
/// started from a systemd unit inherits the variable while its stderr is a
/// terminal: that must not count.
pub fn journal_stream_matches(journal_stream: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = journal_stream.trim().split_once(':') else {
        return false;
    };
    matches!((d.parse::<u64>(), i.parse::<u64>()), (Ok(d), Ok(i)) if d == dev && i == ino)
}

/// Whether log lines may carry ANSI colour: only on a terminal, and never
/// when `NO_COLOR` is set to a non-empty value (<https://no-color.org>).
pub fn use_ansi(stderr_is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Whether our stderr is the journal stream systemd announced.
fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some(stream) = stream.to_str() else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    match std::fs::File::from(fd).metadata() {
        Ok(meta) => journal_stream_matches(stream, meta.dev(), meta.ino()),
        Err(_) => false,
    }
}

fn filter_for(level: Option<&str>) -> EnvFilter {
    match level {
        Some(l) => EnvFilter::new(l),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    }
}

/// Changes the log level of the running process (a reload).
#[derive(Clone)]
pub struct LogHandle(reload::Handle<EnvFilter, Registry>);

impl LogHandle {
    /// Applies `level` (already checked by [`parse_log_level`]); `None`
    /// means `RUST_LOG`, else `info`, as at start.
    pub fn set_level(&self, level: Option<&str>) {
        if let Err(e) = self.0.reload(filter_for(level)) {
            tracing::warn!("cannot change the log level: {e}");
        }
    }
}

/// Installs the global subscriber. Call once, at the start of `main`.
pub fn init(level: Option<&str>) -> LogHandle {
    let (filter, handle) = reload::Layer::new(filter_for(level));
    let journald = if stderr_is_journal() {
        journal::JournalLayer::new().ok()
    } else {
        None
    };
    let registry = tracing_subscriber::registry().with(filter);
    match journald {
        Some(layer) => registry.with(layer).init(),
        None => registry
            .with(
                fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(use_ansi(
                        std::io::stderr().is_terminal(),
                        std::env::var_os("NO_COLOR").as_deref(),
                    ))
                    .with_target(false),
            )
            .init(),
    }
    LogHandle(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_must_name_stderr() {
        assert!(journal_stream_matches("8:1234", 8, 1234));
        assert!(journal_stream_matches("8:1234\n", 8, 1234));
        assert!(!journal_stream_matches("8:1234", 8, 1235));
        assert!(!journal_stream_matches("9:1234", 8, 1234));
        assert!(!journal_stream_matches("1:1", 8, 1234));
        assert!(!journal_stream_matches("", 8, 1234));
        assert!(!journal_stream_matches("8", 8, 1234));
        assert!(!journal_stream_matches("x:y", 8, 1234));
    }

    #[test]
    fn no_color_turns_ansi_off() {
        assert!(use_ansi(true, None));
        assert!(use_ansi(true, Some(OsStr::new(""))));
        assert!(!use_ansi(true, Some(OsStr::new("1"))));
        assert!(!use_ansi(false, None));
    }

    #[test]
    fn log_levels_are_checked() {
        for ok in ["info", "DEBUG", "off", "info,p2p_server=trace", "p2pd=warn"] {
            assert_eq!(parse_log_level(ok).as_deref(), Ok(ok), "{ok}");
        }
        for bad in ["verbose", "", ",", "info,p2pd=loud", "=info", "inf"] {
            let e = parse_log_level(bad).unwrap_err();
            assert!(e.contains("error, warn, info, debug, trace"), "{e}");
        }
    }
}
