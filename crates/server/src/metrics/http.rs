//! The metrics listener: a minimal HTTP/1.1 responder for two GET paths,
//! `/metrics` (the Prometheus text) and `/healthz` ("ok"). One request per
//! connection (`Connection: close`), as scrapers and probes send.
//!
//! It listens on `--metrics-listen` only, a separate (by default loopback)
//! address: nothing of it is reachable on the public port. Every limit is
//! small because the only clients are a scraper and a health probe.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::metrics;
use crate::{Shared, ACCEPT_ERROR_PAUSE};

/// Largest request head read; a scraper's is a few hundred bytes.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// A connection has this long to send its request and take the answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections answered at once; more are closed unanswered (a scraper
/// retries at its next interval).
const MAX_CONCURRENT: usize = 8;

/// Serves `listener` until `shutdown`, then waits for the requests in
/// flight (each bounded by [`REQUEST_TIMEOUT`]).
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    let tracker = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(MAX_CONCURRENT));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => {
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        debug!(%addr, "metrics: too many requests at once; closed");
                        continue;
                    };
                    let shared = shared.clone();
                    tracker.spawn(async move {
                        match tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &shared)).await {
                            Ok(Err(e)) => debug!(%addr, cause = %e, "metrics request failed"),
                            Err(_) => debug!(%addr, "metrics request timed out"),
                            Ok(Ok(())) => {}
                        }
                        drop(permit);
                    });
                }
                Err(e) => {
                    warn!(cause = %e, "metrics: accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
        }
    }
    tracker.close();
    tracker.wait().await;
}

/// Reads one request head and answers it.
async fn answer(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let complete = loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            break true;
        }
        if head.len() > MAX_REQUEST_HEAD {
            break false;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break head.windows(2).any(|w| w == b"\r\n");
        }
        head.extend_from_slice(&chunk[..n]);
    };
    if complete && head.starts_with(b"GET /metrics") {
        // The account gauge is read from the database now (shared backend).
        shared.accounts.refresh_count().await;
    }
    let (status, kind, body) = if complete {
        route(&head, || metrics().render(shared))
    } else {
        (
            "431 Request Header Fields Too Large",
            TEXT,
            "request head too large\n".into(),
        )
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

const TEXT: &str = "text/plain; charset=utf-8";
/// What prometheus-client's encoder writes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Status line, content type and body for a request head; `render` makes
/// the metrics text.
fn route(head: &[u8], render: impl FnOnce() -> String) -> (&'static str, &'static str, String) {
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => ("200 OK", OPENMETRICS, render()),
        ("GET", "/healthz") => ("200 OK", TEXT, "ok\n".into()),
        ("GET", _) => (
            "404 Not Found",
            TEXT,
            "not found: try /metrics or /healthz\n".into(),
        ),
        _ => ("405 Method Not Allowed", TEXT, "only GET\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(head: &str) -> &'static str {
        route(head.as_bytes(), || "m".into()).0
    }

    #[test]
    fn two_get_paths_and_nothing_else() {
        let (status, kind, body) = route(b"GET /metrics?x=1 HTTP/1.1\r\n\r\n", || "m".into());
        assert_eq!((status, kind, body.as_str()), ("200 OK", OPENMETRICS, "m"));
        assert_eq!(status_of("GET /healthz HTTP/1.0\r\n\r\n"), "200 OK");
        assert_eq!(
            status_of("GET /metrics/../x HTTP/1.1\r\n\r\n"),
            "404 Not Found"
        );
        assert_eq!(
            status_of("POST /metrics HTTP/1.1\r\n\r\n"),
            "405 Method Not Allowed"
        );
        assert_eq!(status_of("\u{0}\u{ff} garbage"), "405 Method Not Allowed");
    }
}
