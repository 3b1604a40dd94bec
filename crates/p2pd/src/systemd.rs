//! systemd integration (SPEC §7): socket activation of the control socket,
//! and readiness, status and stopping notifications.
//!
//! The flow under the user units in `packaging/systemd/`:
//!
//! 1. `p2pd.socket` makes systemd own `%t/p2p/p2pd.sock`. The first
//!    connection (say `p2pctl status`) starts `p2pd.service` with that
//!    listening socket as fd 3, `LISTEN_FDS=1` and `LISTEN_PID` = our pid.
//! 2. [`run`](crate::run) takes the control listener from
//!    [`control_listener`]: the inherited socket when those variables are
//!    meant for us, else one it binds itself ([`control::bind`]). The
//!    connection that triggered the start waits in the socket's backlog and
//!    is served as soon as the accept loop runs.
//! 3. Once the control socket and the peer listener both accept,
//!    [`announce_ready`] sends `READY=1` with a first `STATUS=` line (this is
//!    what `Type=notify` waits for), then keeps `STATUS=` in step with the
//!    server session, so `systemctl --user status p2pd` reads
//!    "online as alice" or "connecting to HOST (attempt 3, retrying in 30s)".
//! 4. On shutdown [`notify_stopping`] sends `STOPPING=1`.
//!
//! Without systemd (no `LISTEN_*`, no `NOTIFY_SOCKET`) all of this reduces
//! to [`control::bind`] and silent no-ops.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::socket::{getsockname, getsockopt, sockopt, SockType, SockaddrLike, SockaddrStorage};
use p2p_proto::ctl::{Event, ServerState, ServerStatus};
use sd_notify::NotifyState;
use tokio::net::UnixListener;
use tokio::sync::broadcast::error::RecvError;
use tracing::{debug, info, warn};

use crate::error::{DaemonError, Result};
use crate::{control, Daemon};

/// The variables systemd sets for socket activation. All are removed once
/// read (`sd_listen_fds(unset_environment=1)`), so that no child process we
/// might start mistakes our descriptors for its own.
pub(crate) const LISTEN_VARS: [&str; 3] = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"];

/// Whether this process's control socket came from systemd. Process-wide
/// because systemd passes descriptors to a process, not to one `run`.
static SOCKET_FROM_SYSTEMD: AtomicBool = AtomicBool::new(false);

/// The control listener: the socket systemd passed us when `LISTEN_PID` is
/// our pid and `LISTEN_FDS` is 1 (fd 3), else one bound at `path` by
/// [`control::bind`].
///
/// An inherited descriptor must be a listening Unix stream socket; anything
/// else (a `ListenDatagram=` or a TCP `ListenStream=` in a modified unit) is
/// refused with an error that names the unit to fix, rather than served
/// wrongly.
pub(crate) fn control_listener(path: &Path) -> Result<UnixListener> {
    let Some(listener) = take_activated_listener()? else {
        return control::bind(path);
    };
    listener
        .set_nonblocking(true)
        .map_err(|source| DaemonError::Bind {
            what: "the control socket from systemd".into(),
            source,
        })?;
    let listener = UnixListener::from_std(listener).map_err(|source| DaemonError::Bind {
        what: "the control socket from systemd".into(),
        source,
    })?;
    let at = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
        .unwrap_or_else(|| "an unnamed socket".into());
    info!(socket = %at, "control socket passed by systemd (socket activation)");
    SOCKET_FROM_SYSTEMD.store(true, Ordering::Relaxed);
    Ok(listener)
}

/// Whether [`control_listener`] returned the socket systemd passed.
pub(crate) fn socket_from_systemd() -> bool {
    SOCKET_FROM_SYSTEMD.load(Ordering::Relaxed)
}

/// Removes the control socket file at shutdown, unless systemd made it: the
/// socket unit still listens on that file, and the next `p2pctl` must find
/// it there to start p2pd again.
pub(crate) fn remove_control_socket(path: &Path) {
    if !socket_from_systemd() {
        let _ = std::fs::remove_file(path);
    }
}

/// Takes the socket-activated descriptor, if systemd passed one to this
/// process, and clears the `LISTEN_*` variables either way.
fn take_activated_listener() -> Result<Option<std::os::unix::net::UnixListener>> {
    // sd-notify checks LISTEN_PID against our pid and marks the fds
    // close-on-exec; it leaves the environment alone, so we clear it here.
    let fds = sd_notify::listen_fds();
    clear_listen_env();
    let fds: Vec<RawFd> = fds
        .map_err(|e| DaemonError::Config(format!("bad socket activation variables: {e}")))?
        .collect();
    match fds[..] {
        [] => Ok(None),
        [fd] => {
            // SAFETY: sd_listen_fds semantics: the descriptors from 3 up to
            // 3 + LISTEN_FDS belong to the process named by LISTEN_PID, which
            // listen_fds() checked is us, and that it could set FD_CLOEXEC
            // on, so the fd is open. Nothing else in p2pd takes them, and the
            // variables are gone now, so this is the only owner.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            check_unix_stream_listener(&fd)?;
            Ok(Some(std::os::unix::net::UnixListener::from(fd)))
        }
        _ => Err(DaemonError::Config(format!(
            "systemd passed {} sockets; p2pd.socket must have exactly one ListenStream= (the control socket)",
            fds.len()
        ))),
    }
}

/// Removes the socket activation variables from our environment.
fn clear_listen_env() {
    for var in LISTEN_VARS {
        // Called from `run` before the link, control and peer tasks start:
        // the only other task then is the signal handler, which does not read
        // the environment, so nothing races this write.
        std::env::remove_var(var);
    }
}

/// Fails unless `fd` is a listening Unix stream socket.
pub(crate) fn check_unix_stream_listener(fd: &impl AsFd) -> Result<()> {
    let refuse = |what: String| {
        DaemonError::Config(format!(
            "the socket systemd passed (fd {}) is {what}; p2pd.socket needs ListenStream= with a path",
            fd.as_fd().as_raw_fd()
        ))
    };
    let kind =
        getsockopt(fd, sockopt::SockType).map_err(|e| refuse(format!("not a socket ({e})")))?;
    if kind != SockType::Stream {
        return Err(refuse(format!("a {kind:?} socket, not a stream socket")));
    }
    let addr: SockaddrStorage = getsockname(fd.as_fd().as_raw_fd())
        .map_err(|e| refuse(format!("a socket without an address ({e})")))?;
    if addr.as_unix_addr().is_none() {
        return Err(refuse(format!(
            "not a Unix socket (family {:?})",
            addr.family()
        )));
    }
    if !getsockopt(fd, sockopt::AcceptConn).unwrap_or(false) {
        return Err(refuse("not listening".into()));
    }
    Ok(())
}

/// The readiness hook for [`run`](crate::run): sends `READY=1` and a first
/// `STATUS=`, then starts a task (owned by [`Daemon::tasks`]) that updates
/// `STATUS=` on every change of the server session and sends `STOPPING=1`
/// the moment the stop starts. Does nothing when `NOTIFY_SOCKET` is unset
/// (not run by systemd as `Type=notify`). Must be called inside the Tokio
/// runtime.
pub(crate) fn announce_ready(daemon: &Daemon) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    // Subscribe before reading the current state, so a change that happens
    // in between still arrives as an event.
    let events = daemon.events.subscribe();
    let shown = status_text(&daemon.link.status().report());
    notify(&[NotifyState::Ready, NotifyState::Status(&shown)]);
    let task = status_task(events, shown, daemon.shutdown.clone(), notify);
    daemon.tasks.spawn(task);
}

/// Keeps `STATUS=` up to date from the server events on `events` (starting
/// from `shown`) until the stop starts, then sends `STOPPING=1` through
/// `send` at once, not once the stop is over.
async fn status_task(
    mut events: tokio::sync::broadcast::Receiver<Event>,
    mut shown: String,
    shutdown: tokio_util::sync::CancellationToken,
    send: impl Fn(&[NotifyState]),
) {
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => {
                send(&STOPPING);
                return;
            }
            event = events.recv() => event,
        };
        match event {
            Ok(Event::Server(status)) => {
                let text = status_text(&status);
                if text != shown {
                    send(&[NotifyState::Status(&text)]);
                    shown = text;
                }
            }
            // Peer events do not change the session line.
            Ok(_) => {}
            // Every server event carries the whole state, so after a gap
            // the next one puts STATUS= right again.
            Err(RecvError::Lagged(missed)) => debug!(missed, "status updates lagged"),
            Err(RecvError::Closed) => return,
        }
    }
}

/// What a stop says to systemd.
const STOPPING: [NotifyState<'static>; 2] =
    [NotifyState::Stopping, NotifyState::Status("stopping")];

/// Sends `STOPPING=1`: the daemon is shutting down (a no-op without
/// `NOTIFY_SOCKET`).
pub(crate) fn notify_stopping() {
    notify(&STOPPING);
}

/// Sends `states` to systemd. Failing to notify is logged, not fatal: the
/// daemon works the same, only `systemctl status` is less informative (and
/// a `Type=notify` start times out, which systemd reports by itself).
fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        warn!(cause = %e, "cannot notify systemd (NOTIFY_SOCKET)");
    }
}

/// The one-line `STATUS=` text for a server session state, e.g.
/// "online as alice" or "connecting to HOST (attempt 3, retrying in 30s)".
pub(crate) fn status_text(s: &ServerStatus) -> String {
    let user = s.user.as_deref().unwrap_or("?");
    match s.state {
        ServerState::Online => match &s.address {
            Some(server) => format!("online as {user} at {server}"),
            None => format!("online as {user}"),
        },
        ServerState::Connecting => {
            let mut text = match &s.address {
                Some(server) => format!("connecting to {server}"),
                None => "connecting".to_string(),
            };
            let mut details = Vec::new();
            if s.attempt > 0 {
                details.push(format!("attempt {}", s.attempt));
            }
            if let Some(ms) = s.next_retry_ms {
                details.push(retry_text(ms));
            }
            if !details.is_empty() {
                text.push_str(&format!(" ({})", details.join(", ")));
            }
            text
        }
        ServerState::LoggedOut => "logged out (p2pctl login)".to_string(),
        ServerState::Replaced => {
            format!("logged out: another login as {user} took over (p2pctl login)")
        }
    }
}

/// "retrying in 30s", whole seconds rounded up, so a retry due in 200 ms
/// does not read "retrying in 0s".
fn retry_text(ms: u64) -> String {
    if ms == 0 {
        return "retrying now".to_string();
    }
    let wait = Duration::from_secs(ms.div_ceil(1000));
    format!("retrying in {}", humantime::format_duration(wait))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(state: &NotifyState) -> String {
        match state {
            NotifyState::Stopping => "STOPPING=1".into(),
            NotifyState::Status(s) => format!("STATUS={s}"),
            other => format!("{other:?}"),
        }
    }

    /// The stop is announced as soon as it starts, while the daemon (here:
    /// the event bus) is still up. Before, nothing was sent until `run` had
    /// returned, after the sessions' grace (the task in cli.rs that was to
    /// do it only waited).
    #[tokio::test]
    async fn stopping_is_sent_when_the_stop_starts() {
        let (bus, events) = tokio::sync::broadcast::channel(4);
        let shutdown = tokio_util::sync::CancellationToken::new();
        let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = sent.clone();
        let task = tokio::spawn(status_task(
            events,
            "logged out".into(),
            shutdown.clone(),
            move |states: &[NotifyState]| log.lock().unwrap().extend(states.iter().map(line)),
        ));
        bus.send(Event::Server(status(ServerState::Online)))
            .unwrap();
        shutdown.cancel();
        task.await.unwrap();
        let sent = sent.lock().unwrap().clone();
        assert_eq!(sent.last().map(String::as_str), Some("STATUS=stopping"));
        assert!(sent.contains(&"STOPPING=1".to_string()), "{sent:?}");
        drop(bus); // still open when the stop was announced
    }

    fn status(state: ServerState) -> ServerStatus {
        ServerStatus {
            state,
            address: Some("example.net:4400".into()),
            user: Some("alice".into()),
            attempt: 0,
            next_retry_ms: None,
            since: None,
            last_error: None,
            current: None,
        }
    }

    #[test]
    fn status_lines_name_the_state_user_and_retry() {
        assert_eq!(
            status_text(&status(ServerState::Online)),
            "online as alice at example.net:4400"
        );
        let mut c = status(ServerState::Connecting);
        c.attempt = 3;
        c.next_retry_ms = Some(29_001);
        assert_eq!(
            status_text(&c),
            "connecting to example.net:4400 (attempt 3, retrying in 30s)"
        );
        c.next_retry_ms = Some(90_000);
        assert!(
            status_text(&c).ends_with("retrying in 1m 30s)"),
            "{}",
            status_text(&c)
        );
        c.next_retry_ms = Some(200);
        assert!(status_text(&c).ends_with("retrying in 1s)"));
        c.attempt = 0;
        c.next_retry_ms = None;
        assert_eq!(status_text(&c), "connecting to example.net:4400");
        assert_eq!(
            status_text(&status(ServerState::LoggedOut)),
            "logged out (p2pctl login)"
        );
        assert!(status_text(&status(ServerState::Replaced)).contains("another login as alice"));
    }

    #[test]
    fn only_a_listening_unix_stream_socket_is_accepted() {
        let dir = tempfile::Builder::new()
            .prefix("p2p")
            .tempdir_in("/tmp")
            .unwrap();
        let listening = std::os::unix::net::UnixListener::bind(dir.path().join("l")).unwrap();
        check_unix_stream_listener(&listening).unwrap();

        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let e = check_unix_stream_listener(&tcp).unwrap_err().to_string();
        assert!(e.contains("not a Unix socket"), "{e}");

        let dgram = std::os::unix::net::UnixDatagram::bind(dir.path().join("d")).unwrap();
        let e = check_unix_stream_listener(&dgram).unwrap_err().to_string();
        assert!(e.contains("not a stream socket"), "{e}");

        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let e = check_unix_stream_listener(&a).unwrap_err().to_string();
        assert!(e.contains("not listening"), "{e}");

        let file = std::fs::File::open("/dev/null").unwrap();
        let e = check_unix_stream_listener(&file).unwrap_err().to_string();
        assert!(e.contains("not a socket"), "{e}");
    }
}
