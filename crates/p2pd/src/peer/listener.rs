//! The peer listener (SPEC §5): bound before the daemon reports ready and
//! registered with the server at login. Every incoming link runs the Noise
//! handshake in its own task and is let through only if it matches an
//! invitation we accepted (see [`Peers::incoming`]).

use std::sync::Arc;

use tokio::net::TcpListener;
use tracing::warn;

use super::Peers;

/// Accepts peer links until shutdown.
pub async fn serve(listener: TcpListener, peers: Arc<Peers>) {
    loop {
        tokio::select! {
            _ = peers.shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(peers.clone().incoming(stream));
                }
                Err(e) => {
                    warn!(cause = %e, "peer accept failed");
                    tokio::time::sleep(crate::ACCEPT_ERROR_PAUSE).await;
                }
            },
        }
    }
}
