//! Serving: the runtime, the listener, the start-up lines on stdout, the
//! signals (SIGTERM/SIGINT stop, SIGHUP reloads) and systemd's readiness
//! protocol (`Type=notify`: `READY=1` once listening, then `STATUS=` with
//! the sessions online, `RELOADING=1` around a reload, `STOPPING=1`).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cli::{server_config, Cli};
use crate::config_file::{self, Either};
use crate::error::{Result, ServerError};
use crate::{reload, Server, Shared};

/// How often `STATUS=` is refreshed under systemd: often enough for
/// `systemctl status` to be current, rarely enough to cost nothing.
const STATUS_INTERVAL: Duration = Duration::from_secs(5);

/// Runs the server `cli` describes until SIGTERM or SIGINT. `argv` is the
/// command line it was parsed from, parsed again (with the config file) on
/// SIGHUP.
pub(crate) fn serve(cli: Cli, argv: Vec<OsString>) -> Result<()> {
    p2p_sys::logging::init(cli.log_level.as_deref());
    let cfg = server_config(&cli)?;
    let listen = cli.serve.listen;
    let admin_path = crate::admin::socket_path(cli.admin_socket.as_deref(), &cfg.data_dir);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        // Before anything can be reported ready: SIGHUP's default action
        // would end the process.
        let hangup = signal(SignalKind::hangup())?;
        let server = Server::open(cfg).await?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| ServerError::Config(format!("cannot listen on {listen}: {e}")))?;
        let metrics = match cli.serve.metrics_listen.0 {
            Some(at) => Some(tokio::net::TcpListener::bind(at).await.map_err(|e| {
                ServerError::Config(format!(
                    "cannot listen for metrics on {at}: {e} (--metrics-listen off disables them)"
                ))
            })?),
            None => None,
        };
        // Bound before "listening on", so `status` works once that is printed.
        let admin = crate::admin::bind(&admin_path);
        // Printed before "listening on", which readers wait for.
        if let Some(m) = &metrics {
            println!("p2p-server metrics on {}", m.local_addr()?);
        }
        // These two lines are the start-up contract: operators copy the
        // fingerprint, and tests wait for "listening on".
        println!("p2p-server fingerprint {}", server.fingerprint());
        println!("p2p-server listening on {}", listener.local_addr()?);
        let shutdown = CancellationToken::new();
        let facts = crate::admin::Facts {
            listen: listener.local_addr()?,
            metrics: match &metrics {
                Some(m) => Some(m.local_addr()?),
                None => None,
            },
            started: std::time::Instant::now(),
        };
        let started = Started {
            listen,
            log_level: cli.log_level.clone(),
            metrics_listen: cli.serve.metrics_listen,
            admin_socket: cli.admin_socket.clone(),
        };
        let shared = server.shared();
        let side = tokio_util::task::TaskTracker::new();
        // Not tracked: it returns only after a signal, which a stop from
        // an error never sends.
        tokio::spawn(p2p_sys::signals::cancel_on_signal(shutdown.clone()));
        if let Some(a) = admin {
            side.spawn(crate::admin::serve(
                a,
                admin_path,
                shared.clone(),
                facts,
                shutdown.clone(),
            ));
        }
        if let Some(m) = metrics {
            side.spawn(crate::metrics::http::serve(
                m,
                shared.clone(),
                shutdown.clone(),
            ));
        }
        side.spawn(reload_on_hangup(
            hangup,
            argv,
            started,
            shared.clone(),
            shutdown.clone(),
        ));
        if std::env::var_os("NOTIFY_SOCKET").is_some() {
            notify(&[
                NotifyState::Ready,
                NotifyState::Status(&status_text(&shared)),
            ]);
            side.spawn(status_updates(shared, shutdown.clone()));
        }
        let result = server.run(listener, shutdown.clone()).await;
        shutdown.cancel();
        side.close();
        side.wait().await;
        result
    })
}

/// What the running server took from the command line at start and no
/// reload changes.
struct Started {
    listen: SocketAddr,
    log_level: Option<String>,
    metrics_listen: crate::cli::MetricsListen,
    admin_socket: Option<std::path::PathBuf>,
}

/// On each SIGHUP: parses the command line and the config file again and
/// applies what can change while running; a file that does not parse
/// changes nothing.
async fn reload_on_hangup(
    mut hangup: Signal,
    argv: Vec<OsString>,
    started: Started,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            got = hangup.recv() => if got.is_none() { return },
        }
        info!("SIGHUP: reloading the configuration");
        notify(&[NotifyState::Reloading]);
        let parsed = match config_file::parse(&argv) {
            Ok(cli) => server_config(&cli)
                .map(|cfg| (cli, cfg))
                .map_err(|e| e.to_string()),
            Err(Either::Config(e)) => Err(e.to_string()),
            Err(Either::Clap(e)) => Err(e.to_string().lines().next().unwrap_or("").to_string()),
        };
        match parsed {
            Ok((cli, cfg)) => {
                let mut restart = reload::apply(&shared, &cfg).await;
                if cli.serve.listen != started.listen {
                    restart.insert(0, "listen");
                }
                if cli.log_level != started.log_level {
                    restart.push("log_level");
                }
                if cli.serve.metrics_listen != started.metrics_listen {
                    restart.push("metrics_listen");
                }
                if cli.admin_socket != started.admin_socket {
                    restart.push("admin_socket");
                }
                reload::report(&restart);
            }
            Err(e) => warn!(cause = %e, "reload refused; the running configuration is kept"),
        }
        notify(&[
            NotifyState::Ready,
            NotifyState::Status(&status_text(&shared)),
        ]);
    }
}

/// Keeps `STATUS=` current until the stop starts, then says `STOPPING=1`.
async fn status_updates(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(STATUS_INTERVAL);
    let mut shown = String::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
                return;
            }
            _ = tick.tick() => {
                let text = status_text(&shared);
                if text != shown {
                    notify(&[NotifyState::Status(&text)]);
                    shown = text;
                }
            }
        }
    }
}

/// "3 sessions online".
fn status_text(shared: &Shared) -> String {
    match shared.presence.count() {
        1 => "1 session online".to_string(),
        n => format!("{n} sessions online"),
    }
}

/// Tells systemd; failing to is logged, not fatal.
fn notify(states: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        warn!(cause = %e, "cannot notify systemd (NOTIFY_SOCKET)");
    }
}
