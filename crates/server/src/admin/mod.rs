//! The admin socket (SPEC §12): `p2p-server status`, `sessions` and
//! `kick USER` talk to the running server over a Unix socket, by default
//! `admin.sock` in the data directory (file mode 0600, directory 0700).
//!
//! Flow: the client connects and writes one JSON line,
//! `{"cmd":"status"}`, `{"cmd":"sessions"}` or `{"cmd":"kick","user":"alice"}`;
//! the server checks the peer's uid (`SO_PEERCRED`: the server's own user
//! or root, nobody else, whatever the file modes say), answers one JSON
//! line (`{"error":{"code","message"}}` on failure) and closes.

pub(crate) mod client;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::{Shared, ACCEPT_ERROR_PAUSE};

/// The socket's file name in the data directory.
pub(crate) const SOCKET_FILE: &str = "admin.sock";
/// Longest request line; the longest real one is a kick with a 32-byte name.
const MAX_REQUEST: u64 = 4 * 1024;
/// A connection has this long to ask and take the answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One admin request.
#[derive(Debug, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Request {
    /// Version, addresses, counts, uptime.
    Status,
    /// Who is online, since when, from where.
    Sessions,
    /// End `user`'s session.
    Kick {
        /// The account.
        user: String,
    },
}

/// What `status` reports that the shared state does not know.
#[derive(Debug, Clone)]
pub(crate) struct Facts {
    /// The public listener.
    pub(crate) listen: SocketAddr,
    /// The metrics listener, if on.
    pub(crate) metrics: Option<SocketAddr>,
    /// Started at.
    pub(crate) started: Instant,
}

/// The socket path: `flag`, else `admin.sock` in `data_dir`.
pub(crate) fn socket_path(flag: Option<&Path>, data_dir: &Path) -> PathBuf {
    flag.map_or_else(|| data_dir.join(SOCKET_FILE), Path::to_path_buf)
}

/// Binds the socket at `path` (0600). A file left there by a server that
/// died is replaced; one a running server answers on is not (then there is
/// no admin socket, and a warning says why).
pub(crate) fn bind(path: &Path) -> Option<UnixListener> {
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        warn!(socket = %path.display(), "another p2p-server answers on this admin socket; running without one");
        return None;
    }
    let _ = std::fs::remove_file(path);
    // Created 0600 from the start (umask), not chmod-ed after: no moment
    // where another user could connect.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    match bound {
        Ok(l) => Some(l),
        Err(e) => {
            warn!(socket = %path.display(), cause = %e, "cannot create the admin socket; status, sessions and kick will not work (--admin-socket PATH moves it)");
            None
        }
    }
}

/// Serves admin requests until `shutdown`, then removes the socket file.
pub(crate) async fn serve(
    listener: UnixListener,
    path: PathBuf,
    shared: Arc<Shared>,
    facts: Facts,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let (shared, facts) = (shared.clone(), facts.clone());
                    tracker.spawn(async move {
                        if tokio::time::timeout(REQUEST_TIMEOUT, connection(stream, &shared, &facts)).await.is_err() {
                            debug!("admin request timed out");
                        }
                    });
                }
                Err(e) => {
                    warn!(cause = %e, "admin socket: accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
        }
    }
    tracker.close();
    tracker.wait().await;
    let _ = std::fs::remove_file(&path);
}

/// Whether `uid` may use the admin socket: the server's own user or root.
fn allowed(uid: u32) -> bool {
    uid == 0 || uid == nix::unistd::geteuid().as_raw()
}

fn error(code: &str, message: impl Into<String>) -> Value {
    json!({"error": {"code": code, "message": message.into()}})
}

async fn connection(stream: UnixStream, shared: &Shared, facts: &Facts) {
    let uid = stream.peer_cred().map(|c| c.uid());
    let (read, mut write) = stream.into_split();
    let answer = match uid {
        Ok(uid) if allowed(uid) => {
            let mut line = String::new();
            let mut reader = BufReader::new(read.take(MAX_REQUEST));
            match reader.read_line(&mut line).await {
                Ok(_) => match serde_json::from_str::<Request>(&line) {
                    Ok(req) => {
                        if matches!(req, Request::Status) {
                            shared.accounts.refresh_count().await;
                        }
                        handle(req, shared, facts).await
                    }
                    Err(e) => error("bad_request", format!("not an admin request: {e}")),
                },
                Err(e) => error("bad_request", e.to_string()),
            }
        }
        Ok(uid) => {
            warn!(uid, "admin socket: refused a client of another user");
            error(
                "forbidden",
                "only the server's own user and root may use the admin socket",
            )
        }
        Err(e) => error("forbidden", format!("cannot tell who is asking: {e}")),
    };
    let mut text = answer.to_string();
    text.push('\n');
    let _ = write.write_all(text.as_bytes()).await;
    let _ = write.shutdown().await;
}

async fn handle(req: Request, shared: &Shared, facts: &Facts) -> Value {
    match req {
        Request::Status => json!({
            "version": env!("CARGO_PKG_VERSION"),
            "listen": facts.listen.to_string(),
            "metrics": facts.metrics.map(|a| a.to_string()),
            "fingerprint": shared.tls.read().unwrap_or_else(|p| p.into_inner()).fingerprint,
            "uptime_secs": facts.started.elapsed().as_secs(),
            "sessions": shared.presence.count(),
            "users": shared.accounts.count(),
            "relay": shared.relay.policy().enabled,
        }),
        Request::Sessions => {
            let sessions: Vec<Value> = shared
                .presence
                .sessions()
                .into_iter()
                .map(|(user, since_ms, from)| {
                    json!({
                        "user": user,
                        "since": p2p_proto::time::rfc3339(since_ms),
                        "address": from.to_string(),
                    })
                })
                .collect();
            json!({ "sessions": sessions })
        }
        Request::Kick { user } => {
            let kicked = match &shared.cluster {
                _ if shared.presence.kick(&user) => Ok(true),
                // Held by another instance of the cluster, or nowhere.
                Some(cluster) => cluster.kick(&user).await,
                None => Ok(false),
            };
            match kicked {
                Ok(true) => {
                    info!(user = %user, "kick requested on the admin socket");
                    json!({ "kicked": user })
                }
                Ok(false) => error("not_online", format!("{user} is not online")),
                Err(e) => error("database", format!("cannot reach the other instances: {e}")),
            }
        }
    }
}
