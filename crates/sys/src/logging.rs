//! Log setup shared by `p2p-server` and `p2pd` (SPEC §7): journald when
//! systemd started us, stderr otherwise; level from `--log-level`, else
//! `RUST_LOG`, else `info`.
//!
//! Nothing secret is logged at any level: passwords and tokens are
//! [`Secret`](p2p_proto::Secret)s, and message bodies are never a log field.

use std::io::IsTerminal;

use tracing_subscriber::{fmt, prelude::*, EnvFilter};

/// Installs the global subscriber. Call once, at the start of `main`.
pub fn init(level: Option<&str>) {
    let filter = match level {
        Some(l) => EnvFilter::new(l),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    // systemd sets JOURNAL_STREAM when our stderr is connected to the
    // journal; only then is journald the right place (a terminal user wants
    // stderr even if journald exists).
    let under_systemd = std::env::var_os("JOURNAL_STREAM").is_some();
    let journald = if under_systemd {
        tracing_journald::layer().ok()
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
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_target(false),
            )
            .init(),
    }
}
