//! `p2pd`, the per-user daemon (SPEC §5).
//!
//! [`run`] binds the peer listener and the control socket, then runs five
//! tasks until the shutdown token fires:
//!
//! - the **link** ([`link`]): the server session, with login, keepalive and
//!   reconnect-with-backoff; it publishes login and invitation events on a
//!   channel and is only ever called downward, through [`link::LinkHandle`];
//! - the **invitation driver** ([`peer::Peers::run`]): feeds those events
//!   and its deadlines to the invitation state machine;
//! - the **control server** (`control.rs`): p2pctl connections, each handled
//!   by [`handlers`];
//! - the **peer listener** ([`peer`]);
//! - **desktop notifications** (`notify.rs`): reads the event bus and shows
//!   invitations through the session D-Bus, if there is one.
//!
//! The inbox and the event bus (a broadcast channel of [`ctl::Event`]s for
//! `watch`) belong to the [`Daemon`] and are handed to the tasks that need
//! them. No module below `handlers` imports `Daemon`.
//!
//! Public surface (everything else is `pub(crate)`): [`run`], [`Daemon`],
//! [`DaemonConfig`] and [`cli::main`] for the binary and xtask; for the
//! fuzz harness, the hostile-input tests and the load generator: the
//! pieces a `Daemon` is built from ([`state::StateDir`], [`inbox::Inbox`],
//! [`outbox::Outbox`],
//! [`link::spawn`], [`peer::Peers`], [`backoff::Backoff`],
//! [`config::Overrides`], [`notify::Switch`]), [`handlers::handle`], the server-event and
//! broadcast checks ([`link::check_server_event`],
//! [`inbox::refuse_broadcast`]), the Noise link ([`peer::noise`]) and the
//! pinned TLS client ([`tlsclient`]).

pub mod backoff;
pub mod cli;
pub mod config;
pub mod contacts;
pub(crate) mod control;
pub(crate) mod error;
pub mod handlers;
pub mod handshake;
pub mod inbox;
mod lan;
pub mod link;
mod liveness;
pub mod notify;
pub mod outbox;
pub mod peer;
pub mod relay_client;
mod reload;
pub mod state;
pub(crate) mod systemd;
pub mod tlsclient;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use p2p_proto::ctl;
use p2p_proto::wire::PeerInfo;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

pub use config::DaemonConfig;
pub use error::{DaemonError, Result};

/// Events buffered per watcher before a slow one starts missing them.
pub const EVENT_BUFFER: usize = 1024;
/// On shutdown, peer sessions get this long to send their last
/// acknowledgement and goodbye.
pub(crate) const SESSION_GRACE: Duration = Duration::from_secs(5);
/// Pause after a failed accept (out of file descriptors) instead of spinning.
pub(crate) const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// What handlers share.
pub struct Daemon {
    /// The server session.
    pub link: link::LinkHandle,
    /// Peer sessions, invitations and the inbox.
    pub peers: Arc<peer::Peers>,
    /// The durable inbox (the daemon's; the link and the peer sessions get
    /// clones to store into).
    pub inbox: inbox::Inbox,
    /// Sent messages: the outbox and their history (SPEC §11).
    pub outbox: outbox::Outbox,
    /// Where the peer listener is bound.
    pub peer_listen: SocketAddr,
    /// Our X25519 public key, hex.
    pub public_key: String,
    /// Events for `watch` connections.
    pub events: broadcast::Sender<ctl::Event>,
    /// Daemon shutdown (SIGTERM, SIGINT).
    pub shutdown: CancellationToken,
    /// Tasks of the daemon itself (the systemd status task, desktop
    /// notifications), waited for with a bound at shutdown.
    pub tasks: TaskTracker,
    /// The `notify` setting (the SIGHUP reload flips it).
    pub notify: notify::Switch,
}

/// Runs the daemon until `shutdown` is cancelled. `ready` is called once the
/// control socket and the peer listener are both accepting; it gets the
/// `Arc` so an in-process caller (tests) can keep the daemon and call
/// [`handlers::handle`] on it.
pub async fn run(
    cfg: DaemonConfig,
    shutdown: CancellationToken,
    ready: impl FnOnce(&Arc<Daemon>),
) -> Result<()> {
    // Damaged state (a bad identity key, an emptied inbox) stops the start
    // here, naming the file, before anything listens.
    let state = state::StateDir::open(&cfg.state_dir)?;
    // Held until `run` returns (the kernel drops it if we crash): before the
    // identity is read or made, so a second daemon changes nothing.
    let _lock = p2p_sys::dirlock::DirLock::acquire(&cfg.state_dir)?;
    let identity = state.identity()?;
    let inbox = inbox::Inbox::open(&cfg.state_dir)?;
    let contacts = contacts::Contacts::open(&inbox)?;
    let peer = peer::bind_listener(cfg.peer_listen).map_err(|source| DaemonError::Bind {
        what: format!("peer listener {}", cfg.peer_listen),
        source,
    })?;
    let peer_listen = peer.local_addr().map_err(|source| DaemonError::Bind {
        what: "peer listener".into(),
        source,
    })?;
    let control = systemd::control_listener(&cfg.socket)?;

    let (events, _) = broadcast::channel(EVENT_BUFFER);
    let private_key = hex::decode(identity.private.expose())
        .map_err(|_| DaemonError::Config("identity.json: private key is not hex".into()))?;
    // The link publishes login and invitation events on a channel the peer
    // side consumes; the peer side calls the link only through its handle.
    let (to_peers, from_link) = tokio::sync::mpsc::channel(link::EVENT_QUEUE);
    let link_cfg = link::LinkConfig {
        failpoint: std::env::var("P2PD_FAILPOINT").ok(),
        inbox: inbox.clone(),
        to_peers,
        backoff: backoff::Backoff {
            min: cfg.reconnect_min,
            max: cfg.reconnect_max,
        },
        peer: PeerInfo {
            port: peer_listen.port(),
            advertise: cfg.advertise.map(|a| a.to_string()),
            public_key: identity.public.clone(),
            // Filled at each login (addresses change): see `LinkConfig::listen`.
            lan: Vec::new(),
        },
        listen: Some(peer_listen),
        default_server: cfg.server.clone(),
    };
    let local = peer::LocalPeer {
        public_key: hex::decode(&identity.public)
            .map_err(|_| DaemonError::Config("identity.json: public key is not hex".into()))?,
        port: peer_listen.port(),
        advertise: link_cfg.peer.advertise.clone(),
        lan: Vec::new(),
        listen: Some(peer_listen),
    };
    let (link, link_task) = link::spawn(link_cfg, state.clone(), events.clone(), shutdown.clone());
    let peers = peer::Peers::new(
        private_key,
        local,
        state,
        inbox.clone(),
        contacts.clone(),
        events.clone(),
        cfg.auto_accept.clone(),
        link.clone(),
        shutdown.clone(),
    );
    let outbox = outbox::Outbox::open(&inbox, contacts, events.clone())?;
    peers.set_outbox(outbox.clone());
    let invitations = tokio::spawn(peers.clone().run(from_link));
    let daemon = Arc::new(Daemon {
        link,
        peers: peers.clone(),
        inbox,
        outbox,
        peer_listen,
        public_key: identity.public,
        events,
        shutdown: shutdown.clone(),
        tasks: TaskTracker::new(),
        notify: notify::Switch::new(cfg.notify),
    });
    daemon.tasks.spawn(notify::run(
        peers.clone(),
        daemon.notify.clone(),
        daemon.events.subscribe(),
        shutdown.clone(),
    ));

    info!(socket = %cfg.socket.display(), peer = %peer_listen, "p2pd ready");
    ready(&daemon);
    tokio::join!(
        control::serve(control, daemon.clone(), shutdown.clone()),
        peer::serve(peer, peers.clone(), cfg.peer_handshakes_per_source),
    );
    let _ = link_task.await;
    let _ = invitations.await;
    // Sessions say goodbye and finish acknowledging what they stored; dials,
    // answers and handshakes see the shutdown token and end.
    peers.tasks.close();
    daemon.tasks.close();
    let all = async { tokio::join!(peers.tasks.wait(), daemon.tasks.wait()) };
    if tokio::time::timeout(SESSION_GRACE, all).await.is_err() {
        tracing::warn!("some peer sessions did not end in time");
    }
    systemd::remove_control_socket(&cfg.socket);
    info!("p2pd stopped");
    Ok(())
}
