//! The peer listener (SPEC §5): bound before the daemon reports ready and
//! registered with the server at login, so peers can always reach us.
//!
//! Peer sessions (invitations, Noise) are not implemented yet: every
//! incoming connection is closed at once, and logged.

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Accepts and closes peer connections until shutdown.
pub async fn serve(listener: TcpListener, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((_stream, addr)) => debug!(%addr, "peer connection closed: no accepted invitation"),
                Err(e) => {
                    warn!(cause = %e, "peer accept failed");
                    tokio::time::sleep(crate::ACCEPT_ERROR_PAUSE).await;
                }
            },
        }
    }
}
