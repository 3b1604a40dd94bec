//! Several instances on one PostgreSQL database (SPEC §9): what each
//! instance does so that the others see its users and they see theirs.
//!
//! - `presence.rs`: each session's row (instance, session, lease, key and
//!   reach), claimed at login, renewed with a lease, released at the end;
//!   `list` reads every instance's rows. A login that takes a user over
//!   from another instance tells that instance through the bus.
//! - `bus.rs`: events for a session on another instance (replaced, and the
//!   invitation events), as rows the holding instance takes and deletes.
//! - `feed.rs`: every broadcast, this instance's included, read back from
//!   the database in id order and published to the local sessions.
//! - `invitations.rs`: invitations as rows bound to both sessions, their
//!   events and answers through the bus, expiry by every instance.
//! - `listen.rs`: one dedicated connection LISTENing for wake-ups (the
//!   NOTIFY payload is at most an instance id, never data); re-made after
//!   a drop. Every driver also polls, so a lost notification only delays.
//!
//! The drivers run until [`Cluster::stop`], which also deletes this
//! instance's presence rows (a killed instance's rows expire with their
//! lease instead).

mod bus;
mod feed;
mod invitations;
mod kick;
mod listen;
mod presence;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub(crate) use bus::BusEvent;

use crate::pg::{PgBroadcasts, PgPool};
use crate::Shared;

/// Default presence lease: a killed instance's users leave `list` this
/// long after its last renewal (SPEC §9: "about 90 s").
pub const PRESENCE_LEASE: Duration = Duration::from_secs(90);
/// Default poll interval of the feed and the bus: the most a lost
/// notification delays a broadcast or an event.
pub const CLUSTER_POLL: Duration = Duration::from_secs(1);
/// Wait before re-making a dropped LISTEN connection.
const LISTEN_RETRY: Duration = Duration::from_secs(1);

/// How this instance takes part.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The database URL (holds a password: never logged).
    pub url: String,
    /// CA of the database's certificate: connections are TLS (`--database-ca`).
    pub ca: Option<std::path::PathBuf>,
    /// Presence lease; renewed every third of it.
    pub lease: Duration,
    /// Poll interval of the feed and the bus.
    pub poll: Duration,
}

impl ClusterConfig {
    /// Defaults for `url`.
    pub fn new(url: String) -> Self {
        ClusterConfig {
            url,
            ca: None,
            lease: PRESENCE_LEASE,
            poll: CLUSTER_POLL,
        }
    }
}

/// This instance's part in the cluster.
pub(crate) struct Cluster {
    pub(crate) pool: PgPool,
    /// Random per start: names this instance's presence rows and events.
    pub(crate) instance: String,
    cfg: ClusterConfig,
    /// Wakes the feed (a NOTIFY, or a broadcast stored here).
    pub(crate) feed_wake: Arc<Notify>,
    /// Wakes the bus (a NOTIFY naming this instance).
    bus_wake: Notify,
    store: Arc<PgBroadcasts>,
    /// Sessions here whose presence row is written: user → session.
    claimed: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    /// Sessions here whose claim failed (the database was out of reach):
    /// user → session, claimed again by the next lease renewal.
    unclaimed: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Cluster {
    /// This instance, not started yet.
    pub(crate) fn new(pool: PgPool, cfg: ClusterConfig, store: Arc<PgBroadcasts>) -> Arc<Self> {
        Arc::new(Cluster {
            pool,
            instance: hex::encode(rand::random::<[u8; 8]>()),
            cfg,
            feed_wake: Arc::new(Notify::new()),
            bus_wake: Notify::new(),
            store,
            claimed: Default::default(),
            unclaimed: Default::default(),
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
        })
    }

    /// Starts the drivers (the listener, the feed, the bus, the lease, the
    /// invitation expiry).
    /// Call before any session starts: the feed publishes what is stored
    /// after this, sessions catch up on the rest from the store.
    pub(crate) async fn start(self: &Arc<Self>, shared: &Arc<Shared>) -> crate::Result<()> {
        let newest = self.store.newest().await?;
        let me = self.clone();
        self.tasks.spawn(async move { me.listen().await });
        let (me, s) = (self.clone(), shared.clone());
        self.tasks.spawn(async move { me.feed(&s, newest).await });
        let (me, s) = (self.clone(), shared.clone());
        self.tasks.spawn(async move { me.bus(&s).await });
        let (me, s) = (self.clone(), shared.clone());
        self.tasks.spawn(async move { me.leases(&s).await });
        let (me, s) = (self.clone(), shared.clone());
        self.tasks
            .spawn(async move { me.invitation_expiry(&s).await });
        Ok(())
    }

    /// Stops the drivers and deletes this instance's presence rows (its
    /// sessions have closed).
    pub(crate) async fn stop(&self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        if let Err(e) = self.release_all().await {
            tracing::warn!(cause = %e, "cannot delete this instance's presence rows; they expire with their lease");
        }
    }
}
