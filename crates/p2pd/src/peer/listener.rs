//! The peer listener (SPEC §5): bound before the daemon reports ready and
//! registered with the server at login. Every incoming link runs the Noise
//! handshake in its own task and is let through only if it matches an
//! invitation we accepted (see [`Peers::incoming`]).

use std::sync::Arc;

use p2p_proto::limits::MAX_PENDING_HANDSHAKES;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::warn;

use super::Peers;

/// Accepts peer links until shutdown.
pub async fn serve(listener: TcpListener, peers: Arc<Peers>) {
    let handshakes = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
    loop {
        tokio::select! {
            _ = peers.shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => match handshakes.clone().try_acquire_owned() {
                    Ok(permit) => {
                        tokio::spawn(peers.clone().incoming(stream, permit));
                    }
                    Err(_) => warn!(%addr, "too many peer handshakes at once; link dropped"),
                },
                Err(e) => {
                    warn!(cause = %e, "peer accept failed");
                    tokio::time::sleep(crate::ACCEPT_ERROR_PAUSE).await;
                }
            },
        }
    }
}
