//! `SIGHUP` (SPEC §12): re-read the config file and apply what can change
//! while running. Never exits: without a handler, SIGHUP's default action
//! would kill the daemon and leave its control socket behind.

use std::sync::Arc;

use tokio::signal::unix::Signal;
use tokio::sync::oneshot;
use tracing::{info, warn};

use crate::config::{DaemonConfig, Overrides};
use crate::Daemon;
use p2p_sys::logging::LogHandle;

/// The keys that differ between `old` and `new`, except `log_level`,
/// `auto_accept` and `notify` (applied at once): each needs a restart to
/// take effect.
pub(crate) fn needs_restart(old: &DaemonConfig, new: &DaemonConfig) -> Vec<&'static str> {
    let mut keys = Vec::new();
    let mut check = |changed: bool, key: &'static str| {
        if changed {
            keys.push(key);
        }
    };
    check(old.socket != new.socket, "socket");
    check(old.state_dir != new.state_dir, "state_dir");
    check(old.peer_listen != new.peer_listen, "peer_listen");
    check(old.advertise != new.advertise, "advertise");
    check(old.reconnect_min != new.reconnect_min, "reconnect_min");
    check(old.reconnect_max != new.reconnect_max, "reconnect_max");
    check(
        old.peer_handshakes_per_source != new.peer_handshakes_per_source,
        "peer_handshakes_per_source",
    );
    check(old.server != new.server, "server");
    keys
}

/// Reloads on every SIGHUP from `hangups`, forever (the task is aborted at
/// shutdown). `overrides` are the command-line flags, which still beat the
/// file; `running` is the configuration the daemon started with; `daemon`
/// arrives once the daemon is ready (a SIGHUP before that applies
/// `auto_accept` and `notify` at the next one).
pub(crate) async fn on_hangup(
    mut hangups: Signal,
    overrides: Overrides,
    running: DaemonConfig,
    log: LogHandle,
    mut daemon: oneshot::Receiver<Arc<Daemon>>,
) {
    let mut current = running.clone();
    let mut ready: Option<Arc<Daemon>> = None;
    while hangups.recv().await.is_some() {
        if ready.is_none() {
            ready = daemon.try_recv().ok();
        }
        let mut new = match DaemonConfig::resolve(overrides.clone()) {
            Ok(new) => new,
            Err(e) => {
                warn!("SIGHUP: config not reloaded, keeping the running one: {e}");
                continue;
            }
        };
        if new.log_level != current.log_level {
            log.set_level(new.log_level.as_deref());
            info!(
                log_level = new.log_level.as_deref().unwrap_or("default"),
                "SIGHUP: log level changed"
            );
        }
        if new.auto_accept != current.auto_accept {
            if let Some(d) = &ready {
                d.peers.set_auto_accept(new.auto_accept.clone());
                info!(
                    users = %new.auto_accept.join(", "),
                    "SIGHUP: auto_accept changed"
                );
            }
        }
        if new.notify != current.notify {
            if let Some(d) = &ready {
                d.notify.set(new.notify);
                info!(notify = new.notify, "SIGHUP: notify changed");
            }
        }
        // Compared with what runs, not with the last file read, so the
        // warning repeats until the restart happens.
        let pending = needs_restart(&running, &new);
        if pending.is_empty() {
            info!("SIGHUP: config reloaded");
        } else {
            warn!(
                keys = %pending.join(", "),
                "SIGHUP: config reloaded; changed, needs a restart: {}",
                pending.join(", ")
            );
        }
        if ready.is_none() {
            // Not applied yet (the daemon is still starting): the next
            // SIGHUP tries again.
            new.auto_accept = current.auto_accept.clone();
            new.notify = current.notify;
        }
        current = new;
    }
}
