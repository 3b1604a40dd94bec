//! The control socket (SPEC §5, §6): a Unix socket in a 0700 directory,
//! itself 0600, that only the daemon's own user (and root) may use, checked
//! with `SO_PEERCRED` on every connection. See [`p2p_proto::ctl`] for the
//! protocol.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use futures::{SinkExt, StreamExt};
use p2p_proto::codec::{self, LineCodec};
use p2p_proto::ctl::{self, CtlError, DaemonHello, ErrorCode, Event, Greeting, Reply, Response};
use p2p_proto::limits::{CTL_VERSION, MAX_INBOX_PAGE_BYTES, WRITE_TIMEOUT};
use serde::Serialize;
use tokio::net::{UnixListener, UnixStream};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::error::{DaemonError, Result};
use crate::{handlers, Daemon};

/// Everything the daemon writes on a control connection: typed until
/// here, serialized once by the connection's codec.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum CtlOut {
    /// First line.
    Greeting(Greeting),
    /// Answer to a request.
    Response(Response),
    /// After `watch`.
    Event(Event),
}

type CtlConn = Framed<UnixStream, LineCodec<serde_json::Value, CtlOut>>;

/// On shutdown, control connections get this long to finish what they are
/// writing; then the daemon exits without them. A client that stops
/// reading (a `watch`, a big answer) must not hold up SIGTERM.
pub(crate) const CONTROL_SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The client went away or stopped reading.
struct Gone;

/// `send` requests one connection may have stored and not answered yet.
/// Their messages are in the outbox; their answers wait for the delivery.
/// p2pctl keeps two in flight (one stored while the one before is
/// delivered); this bounds what a client that sends many before reading
/// holds (each request at most `MAX_CTL_REQUEST`).
pub(crate) const MAX_SENDS_IN_FLIGHT: usize = 4;

/// A stored `send`'s answer to come, with its request id.
type SendAnswer = BoxFuture<'static, (u64, std::result::Result<Reply, CtlError>)>;

/// Writes the answers of the `send`s in flight, in order, waiting for each.
/// After a failed write the rest are still waited for (so each settles as
/// if answered) but not written.
async fn drain(
    conn: &mut CtlConn,
    sends: &mut FuturesOrdered<SendAnswer>,
) -> std::result::Result<(), Gone> {
    let mut gone = false;
    while let Some((id, result)) = sends.next().await {
        if !gone && send(conn, respond(id, result)).await.is_err() {
            gone = true;
        }
    }
    if gone {
        Err(Gone)
    } else {
        Ok(())
    }
}

/// Writes one line with [`WRITE_TIMEOUT`]: a client that does not read
/// its answers or events is dropped, not waited for.
async fn send(conn: &mut CtlConn, out: CtlOut) -> std::result::Result<(), Gone> {
    match tokio::time::timeout(WRITE_TIMEOUT, conn.send(out)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            debug!(cause = %e, "control client gone");
            Err(Gone)
        }
        Err(_) => {
            warn!("control client stopped reading (write timed out); closing it");
            Err(Gone)
        }
    }
}

/// Binds the control socket at `path`: makes its directory 0700 (refusing
/// one owned by someone else), replaces a stale socket left by a crash, and
/// refuses to start if another daemon answers on it.
pub(crate) fn bind(path: &Path) -> Result<UnixListener> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.exists() {
        p2p_sys::fsutil::ensure_private_dir(dir).map_err(DaemonError::file(dir))?;
    }
    let meta = std::fs::metadata(dir).map_err(DaemonError::file(dir))?;
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(DaemonError::Unsafe(format!(
            "{} belongs to uid {}, not to you (uid {me}); refusing to put the control socket there",
            dir.display(),
            meta.uid()
        )));
    }
    if path.exists() {
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => return Err(DaemonError::AlreadyRunning(path.to_path_buf())),
            Err(_) => {
                debug!(socket = %path.display(), "removing stale socket");
                std::fs::remove_file(path).map_err(DaemonError::file(path))?;
            }
        }
    }
    let listener = UnixListener::bind(path).map_err(|source| DaemonError::Bind {
        what: path.display().to_string(),
        source,
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(DaemonError::file(path))?;
    Ok(listener)
}

/// Accepts control connections until shutdown.
pub(crate) async fn serve(
    listener: UnixListener,
    daemon: Arc<Daemon>,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let (daemon, shutdown) = (daemon.clone(), shutdown.clone());
                    tracker.spawn(async move { client(stream, daemon, shutdown).await });
                }
                Err(e) => {
                    warn!(cause = %e, "control accept failed");
                    tokio::time::sleep(crate::ACCEPT_ERROR_PAUSE).await;
                }
            },
        }
    }
    tracker.close();
    if tokio::time::timeout(CONTROL_SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        warn!("some control connections did not finish in time; closing them");
    }
}

/// Why a control connection is refused before its first request.
#[derive(Debug, thiserror::Error)]
enum NotAllowed {
    /// The kernel would not say who connected.
    #[error("cannot read peer credentials: {0}")]
    Credentials(std::io::Error),
    /// Another user (not root) connected.
    #[error("uid {peer} may not control the p2pd of uid {me}")]
    OtherUser {
        /// Who connected.
        peer: u32,
        /// Whose daemon this is.
        me: u32,
    },
}

fn allowed(stream: &UnixStream) -> std::result::Result<(), NotAllowed> {
    let cred = stream.peer_cred().map_err(NotAllowed::Credentials)?;
    let me = nix::unistd::geteuid().as_raw();
    if cred.uid() == me || cred.uid() == 0 {
        Ok(())
    } else {
        Err(NotAllowed::OtherUser {
            peer: cred.uid(),
            me,
        })
    }
}

fn respond(id: u64, result: std::result::Result<Reply, CtlError>) -> CtlOut {
    let (result, error) = match result {
        Ok(v) => (Some(v), None),
        Err(e) => (None, Some(e)),
    };
    CtlOut::Response(Response { id, result, error })
}

async fn client(stream: UnixStream, daemon: Arc<Daemon>, shutdown: CancellationToken) {
    let refused = allowed(&stream);
    let mut conn: CtlConn = Framed::new(stream, codec::daemon_side());
    if let Err(why) = refused {
        warn!(reason = %why, "control connection refused");
        let _ = send(
            &mut conn,
            respond(
                0,
                Err(CtlError::new(ErrorCode::PermissionDenied, why.to_string())),
            ),
        )
        .await;
        return;
    }
    let hello = Greeting {
        hello: DaemonHello {
            protocol: CTL_VERSION,
            daemon: env!("CARGO_PKG_VERSION").into(),
            pending: daemon
                .peers
                .requests()
                .into_iter()
                .map(|r| r.from)
                .collect(),
            key_changed: daemon.peers.key_changed(),
        },
    };
    if send(&mut conn, CtlOut::Greeting(hello)).await.is_err() {
        return;
    }
    // Answers come in request order: a `send` is stored before the next
    // request is read (so messages keep the order of their requests) and
    // answered once delivered; any other request first waits for the
    // answers of the `send`s before it.
    let mut sends: FuturesOrdered<SendAnswer> = FuturesOrdered::new();
    loop {
        let line = tokio::select! {
            // The sends in flight answer "shutting down" at once.
            _ = shutdown.cancelled() => {
                let _ = drain(&mut conn, &mut sends).await;
                return;
            }
            Some((id, result)) = sends.next(), if !sends.is_empty() => {
                if send(&mut conn, respond(id, result)).await.is_err() {
                    let _ = drain(&mut conn, &mut sends).await;
                    return;
                }
                continue;
            }
            line = conn.next(), if sends.len() < MAX_SENDS_IN_FLIGHT => line,
        };
        let value = match line {
            None | Some(Err(_)) => {
                let _ = drain(&mut conn, &mut sends).await;
                return;
            }
            Some(Ok(Err(bad))) => {
                if drain(&mut conn, &mut sends).await.is_err() {
                    return;
                }
                let code = match bad {
                    p2p_proto::ProtoError::TooLarge { .. } => ErrorCode::TooLarge,
                    _ => ErrorCode::BadRequest,
                };
                let e = CtlError::new(code, format!("unreadable request: {bad}"));
                if send(&mut conn, respond(0, Err(e))).await.is_err() {
                    return;
                }
                continue;
            }
            Some(Ok(Ok(v))) => v,
        };
        let id = value.get("id").and_then(|v| v.as_u64()).unwrap_or(0);
        let req: ctl::Request = match serde_json::from_value(value) {
            Ok(r) => r,
            Err(e) => {
                let e = CtlError::new(ErrorCode::BadRequest, format!("bad request: {e}"));
                if drain(&mut conn, &mut sends).await.is_err()
                    || send(&mut conn, respond(id, Err(e))).await.is_err()
                {
                    return;
                }
                continue;
            }
        };
        debug!(id, cmd = ?std::mem::discriminant(&req.cmd), "control request");
        if let ctl::Command::Send { user, texts, now } = req.cmd {
            // Stored now (in request order), answered when delivered; a
            // shutdown answers it at once.
            let delivery = handlers::start_send(&daemon, user, texts, now).await;
            let stop = shutdown.clone();
            sends.push_back(Box::pin(async move {
                let result = tokio::select! {
                    _ = stop.cancelled() => Err(CtlError::new(ErrorCode::Internal, "p2pd is shutting down")),
                    r = delivery => r,
                };
                (id, result)
            }));
            continue;
        }
        if drain(&mut conn, &mut sends).await.is_err() {
            return;
        }
        if let ctl::Command::Watch = req.cmd {
            return watch(conn, id, &daemon, &shutdown).await;
        }
        if let ctl::Command::Inbox {
            follow: true,
            from,
            all,
            ..
        } = &req.cmd
        {
            // Subscribe before reading the list, so nothing falls in between.
            let events = daemon.events.subscribe();
            let (from, all) = (from.clone(), *all);
            let result = handlers::handle(&daemon, req.cmd).await;
            let listed = result.is_ok();
            let (last, more) = match &result {
                Ok(Reply::Inbox(page)) => (page.messages.last().map(|e| e.seq), page.more),
                _ => (None, false),
            };
            // A follower has no next request to acknowledge with: entries
            // become read as they are written (the follow contract), this
            // page first. Marked just before the write, so a client that
            // has seen them never finds them still unread.
            let mut last = last.unwrap_or(0);
            if last > 0 && !mark_read(&daemon, from.clone(), last).await {
                return;
            }
            if send(&mut conn, respond(id, result)).await.is_err() || !listed {
                return;
            }
            if more {
                // The rest of a backlog larger than one page, as events.
                match rest_of_backlog(&mut conn, &daemon, all, from.clone(), last).await {
                    Some(upto) => last = upto,
                    None => return,
                }
            }
            return follow(conn, events, from, last, &daemon, &shutdown).await;
        }
        // A command may wait long (connect, accept): never past shutdown.
        let result = tokio::select! {
            _ = shutdown.cancelled() => Err(CtlError::new(ErrorCode::Internal, "p2pd is shutting down")),
            r = handlers::handle(&daemon, req.cmd) => r,
        };
        if send(&mut conn, respond(id, result)).await.is_err() {
            return;
        }
    }
}

/// Marks what a follower was sent read; false (logged) if that failed.
async fn mark_read(daemon: &Daemon, from: Option<String>, upto: u64) -> bool {
    let inbox = daemon.inbox.clone();
    match tokio::task::spawn_blocking(move || inbox.mark_read_upto(from.as_deref(), upto)).await {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => {
            warn!(cause = %e, "cannot mark followed messages read");
            false
        }
        Err(e) => {
            warn!(cause = %e, "inbox task failed");
            false
        }
    }
}

/// Sends the pages after `after` as events (each page marked read as it is
/// written); returns the last `seq` sent, or `None` if the client went
/// away.
async fn rest_of_backlog(
    conn: &mut CtlConn,
    daemon: &Daemon,
    all: bool,
    from: Option<String>,
    mut after: u64,
) -> Option<u64> {
    loop {
        let (inbox, who) = (daemon.inbox.clone(), from.clone());
        let page = tokio::task::spawn_blocking(move || {
            inbox.page(all, who.as_deref(), after, MAX_INBOX_PAGE_BYTES)
        })
        .await
        .ok()?;
        let (entries, more) = match page {
            Ok(p) => p,
            Err(e) => {
                warn!(cause = %e, "cannot read the inbox for a follower");
                return None;
            }
        };
        let Some(upto) = entries.last().map(|e| e.seq) else {
            return Some(after);
        };
        if !mark_read(daemon, from.clone(), upto).await {
            return None;
        }
        for e in entries {
            after = e.seq;
            send(conn, CtlOut::Event(Event::for_entry(e.into())))
                .await
                .ok()?;
        }
        if !more {
            return Some(after);
        }
    }
}

/// `inbox --follow`: after the list, every new message or broadcast (from
/// `from`, if given) as an event, marked read as it is written.
async fn follow(
    mut conn: CtlConn,
    mut events: tokio::sync::broadcast::Receiver<Event>,
    from: Option<String>,
    listed_upto: u64,
    daemon: &Daemon,
    shutdown: &CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            line = conn.next() => if matches!(line, None | Some(Err(_))) { return },
            event = events.recv() => match event {
                Ok(ev) => {
                    let Some(e) = ev.inbox_entry() else { continue };
                    if e.seq <= listed_upto || from.as_deref().is_some_and(|f| f != e.from) {
                        continue;
                    }
                    // Marked just before the write (as for the pages), so
                    // a follower that has seen it never finds it unread.
                    let (inbox, seq) = (daemon.inbox.clone(), e.seq);
                    match tokio::task::spawn_blocking(move || inbox.mark_read(seq)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(err)) => warn!(cause = %err, "cannot mark a followed message read"),
                        Err(err) => warn!(cause = %err, "inbox task failed"),
                    }
                    if send(&mut conn, CtlOut::Event(ev)).await.is_err() {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    warn!(missed = n, "inbox follower too slow; it will find them with p2pctl inbox");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// Turns the connection into an event stream: the current server state
/// first, then every event as it happens.
async fn watch(mut conn: CtlConn, id: u64, daemon: &Daemon, shutdown: &CancellationToken) {
    let mut events = daemon.events.subscribe();
    let ack = ctl::Watching { watching: true };
    if send(&mut conn, respond(id, Ok(ack.into()))).await.is_err() {
        return;
    }
    let now = Event::Server(daemon.link.status().report());
    if send(&mut conn, CtlOut::Event(now)).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            // Anything the client sends now is ignored; EOF ends the watch.
            line = conn.next() => if matches!(line, None | Some(Err(_))) { return },
            event = events.recv() => match event {
                Ok(e) => if send(&mut conn, CtlOut::Event(e)).await.is_err() { return },
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    warn!(missed = n, "watcher too slow; events dropped");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}
