//! The `p2pd` command line (SPEC Appendix A). It runs in the foreground and
//! never forks (systemd style).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::config::{DaemonConfig, Overrides};

/// p2p-broadcast daemon: holds your server session and peer listener, and
/// answers p2pctl on a Unix socket.
///
/// Exit codes: 0 clean shutdown, 1 error, 2 usage.
#[derive(Debug, Parser)]
#[command(name = "p2pd", version, about, long_about = None)]
pub struct Cli {
    /// Config file (default: $XDG_CONFIG_HOME/p2p/p2pd.toml).
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Control socket (default: $XDG_RUNTIME_DIR/p2p/p2pd.sock).
    #[arg(long, value_name = "PATH", env = p2p_sys::paths::SOCKET_ENV)]
    pub(crate) socket: Option<PathBuf>,
    /// State directory (default: $XDG_STATE_HOME/p2p).
    #[arg(long, value_name = "DIR")]
    pub(crate) state_dir: Option<PathBuf>,
    /// Peer listener address (default: 0.0.0.0:0, an ephemeral port).
    #[arg(long, value_name = "ADDR")]
    pub(crate) peer_listen: Option<SocketAddr>,
    /// Address to give peers instead of the one the server sees.
    #[arg(long, value_name = "ADDR")]
    pub(crate) advertise: Option<SocketAddr>,
    /// Log level or filter; default RUST_LOG, else info.
    #[arg(long, value_name = "LEVEL", value_parser = p2p_sys::logging::parse_log_level)]
    pub(crate) log_level: Option<String>,
    /// Peer handshakes in progress at once from one address (default 16).
    #[arg(long, value_name = "N")]
    pub(crate) peer_handshakes_per_source: Option<usize>,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let overrides = Overrides {
        config: cli.config,
        socket: cli.socket,
        state_dir: cli.state_dir,
        peer_listen: cli.peer_listen,
        advertise: cli.advertise,
        log_level: cli.log_level,
        peer_handshakes_per_source: cli.peer_handshakes_per_source,
    };
    let cfg = match DaemonConfig::resolve(overrides.clone()) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("p2pd: {e}");
            return ExitCode::FAILURE;
        }
    };
    let log = p2p_sys::logging::init(cfg.log_level.as_deref());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("p2pd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let signals = tokio::spawn(p2p_sys::signals::cancel_on_signal(shutdown.clone()));
        // Installed before anything else runs: SIGHUP's default action
        // would kill us and leave the control socket behind.
        let (daemon_tx, daemon_rx) = tokio::sync::oneshot::channel();
        let reload = match signal(SignalKind::hangup()) {
            Ok(hangups) => Some(tokio::spawn(crate::reload::on_hangup(
                hangups,
                overrides,
                cfg.clone(),
                log,
                daemon_rx,
            ))),
            Err(e) => {
                tracing::error!("cannot handle SIGHUP (it would stop p2pd): {e}");
                None
            }
        };
        // Once ready, the systemd task sends STOPPING=1 as the stop starts.
        let result = crate::run(cfg, shutdown, |d| {
            let _ = daemon_tx.send(d.clone());
            crate::systemd::announce_ready(d)
        })
        .await;
        // Still waiting for a signal if the run ended by itself (an error).
        signals.abort();
        let _ = signals.await;
        if let Some(reload) = reload {
            reload.abort();
            let _ = reload.await;
        }
        result
    });
    if result.is_err() {
        // A start that failed (or a run that broke) stops here.
        crate::systemd::notify_stopping();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("p2pd: {e}");
            ExitCode::FAILURE
        }
    }
}
