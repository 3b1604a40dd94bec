//! Serving: the runtime, the listener, the start-up lines on stdout, and
//! the signals (SIGTERM/SIGINT stop).

use std::ffi::OsString;

use tokio_util::sync::CancellationToken;

use crate::cli::{server_config, Cli};
use crate::error::{Result, ServerError};
use crate::Server;

/// Runs the server `cli` describes until SIGTERM or SIGINT. `argv` is the
/// command line it was parsed from.
pub(crate) fn serve(cli: Cli, _argv: Vec<OsString>) -> Result<()> {
    p2p_sys::logging::init(cli.log_level.as_deref());
    let cfg = server_config(&cli)?;
    let listen = cli.serve.listen;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let server = Server::open(cfg)?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| ServerError::Config(format!("cannot listen on {listen}: {e}")))?;
        // These two lines are the start-up contract: operators copy the
        // fingerprint, and tests wait for "listening on".
        println!("p2p-server fingerprint {}", server.fingerprint());
        println!("p2p-server listening on {}", listener.local_addr()?);
        let shutdown = CancellationToken::new();
        tokio::spawn(p2p_sys::signals::cancel_on_signal(shutdown.clone()));
        server.run(listener, shutdown).await
    })
}
