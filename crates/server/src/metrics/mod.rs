//! Prometheus metrics (SPEC §12), served by [`http`] at `/metrics` on
//! `--metrics-listen` (default `127.0.0.1:9464`), never on the public port.
//!
//! Names (OpenMetrics text; counters end in `_total`, units are in the
//! name), none labelled by user:
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `p2p_server_users_registered` | gauge | |
//! | `p2p_server_sessions_online` | gauge | |
//! | `p2p_server_logins_total` | counter | `result`: `ok` or the refusal code |
//! | `p2p_server_invitations_total` | counter | `outcome`: `sent`, `accepted`, `rejected`, `expired`, `refused` |
//! | `p2p_server_broadcasts_stored_total` | counter | |
//! | `p2p_server_broadcasts_delivered_total` | counter | (one per recipient) |
//! | `p2p_server_broadcasts_expired_undelivered_total` | counter | |
//! | `p2p_server_relay_sessions_active` | gauge | |
//! | `p2p_server_relay_sessions_total` | counter | |
//! | `p2p_server_relay_bytes_total` | counter | |
//! | `p2p_server_rate_limited_total` | counter | `kind`: `login`, `registration`, `broadcast`, `invitation`, `relay` |
//! | `p2p_server_tls_certificate_not_after_seconds` | gauge | (Unix time) |
//! | `p2p_server_build_info` | info | `version` |
//!
//! The counters live in one process-wide [`Metrics`] ([`metrics()`]):
//! they are bumped deep inside components (the broadcast purger, the
//! invitation expiry, the relay) that would otherwise each need a handle
//! threaded through their constructors, and a process runs one server.
//! The two gauges that are counts of server state (users, sessions) and
//! the certificate's expiry are read at scrape time instead.

pub(crate) mod http;

use std::sync::LazyLock;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::Shared;

/// One label: name and a value from a small fixed set.
type Label = [(&'static str, &'static str); 1];

/// The server's counters and gauges.
pub(crate) struct Metrics {
    registry: Registry,
    users: Gauge,
    sessions: Gauge,
    tls_not_after: Gauge,
    /// Logins by result.
    pub(crate) logins: Family<Label, Counter>,
    /// Invitations by outcome.
    pub(crate) invitations: Family<Label, Counter>,
    /// Broadcasts stored.
    pub(crate) broadcasts_stored: Counter,
    /// Broadcast events sent to sessions.
    pub(crate) broadcasts_delivered: Counter,
    /// Broadcasts that expired before every account that had received
    /// broadcasts had this one.
    pub(crate) broadcasts_expired_undelivered: Counter,
    /// Relayed pairs running now.
    pub(crate) relay_active: Gauge,
    /// Relayed pairs ever started.
    pub(crate) relay_sessions: Counter,
    /// Bytes copied by the relay, both directions.
    pub(crate) relay_bytes: Counter,
    /// Requests refused by a rate limit, by kind.
    pub(crate) rate_limited: Family<Label, Counter>,
}

/// The process's metrics.
pub(crate) fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("p2p_server");
        let m = Metrics {
            registry: Registry::default(),
            users: Gauge::default(),
            sessions: Gauge::default(),
            tls_not_after: Gauge::default(),
            logins: Family::default(),
            invitations: Family::default(),
            broadcasts_stored: Counter::default(),
            broadcasts_delivered: Counter::default(),
            broadcasts_expired_undelivered: Counter::default(),
            relay_active: Gauge::default(),
            relay_sessions: Counter::default(),
            relay_bytes: Counter::default(),
            rate_limited: Family::default(),
        };
        let r = &mut registry;
        r.register(
            "users_registered",
            "Accounts (users.csv, or the shared database)",
            m.users.clone(),
        );
        r.register("sessions_online", "Logged-in sessions", m.sessions.clone());
        r.register(
            "logins",
            "Login attempts by result (ok or the refusal code)",
            m.logins.clone(),
        );
        r.register(
            "invitations",
            "Invitations by outcome",
            m.invitations.clone(),
        );
        r.register(
            "broadcasts_stored",
            "Broadcasts accepted and stored",
            m.broadcasts_stored.clone(),
        );
        r.register(
            "broadcasts_delivered",
            "Broadcasts sent to a recipient's session (one per recipient)",
            m.broadcasts_delivered.clone(),
        );
        r.register(
            "broadcasts_expired_undelivered",
            "Broadcasts deleted at expiry that some account had not acknowledged",
            m.broadcasts_expired_undelivered.clone(),
        );
        r.register(
            "relay_sessions_active",
            "Relayed pairs running now",
            m.relay_active.clone(),
        );
        r.register(
            "relay_sessions",
            "Relayed pairs started",
            m.relay_sessions.clone(),
        );
        r.register_with_unit(
            "relay",
            "Bytes copied by the relay, both directions, counted when a pair ends",
            Unit::Bytes,
            m.relay_bytes.clone(),
        );
        r.register(
            "rate_limited",
            "Requests refused by a rate limit, by kind",
            m.rate_limited.clone(),
        );
        r.register_with_unit(
            "tls_certificate_not_after",
            "End of the served TLS certificate's validity (Unix time)",
            Unit::Seconds,
            m.tls_not_after.clone(),
        );
        r.register(
            "build",
            "The running version",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        Metrics { registry, ..m }
    }

    /// Counts a login with `result` (`ok` or a refusal code).
    pub(crate) fn login(&self, result: &'static str) {
        self.logins.get_or_create(&[("result", result)]).inc();
    }

    /// Counts an invitation `outcome`.
    pub(crate) fn invitation(&self, outcome: &'static str) {
        self.invitations
            .get_or_create(&[("outcome", outcome)])
            .inc();
    }

    /// Counts a request refused by the `kind` rate limit.
    pub(crate) fn limited(&self, kind: &'static str) {
        self.rate_limited.get_or_create(&[("kind", kind)]).inc();
    }

    /// The text exposition of every metric, the state gauges read from
    /// `shared` now.
    pub(crate) fn render(&self, shared: &Shared) -> String {
        self.users.set(shared.accounts.count() as i64);
        self.sessions.set(shared.presence.count() as i64);
        let not_after = shared
            .tls
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .not_after;
        self.tls_not_after.set(not_after.unwrap_or(0));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// The label of a login refusal code (its wire name).
pub(crate) fn login_code(code: &p2p_proto::wire::LoginError) -> &'static str {
    use p2p_proto::wire::LoginError as E;
    match code {
        E::BadCredentials => "bad_credentials",
        E::BadToken => "bad_token",
        E::Throttled => "throttled",
        E::BadUsername => "bad_username",
        E::BadPassword => "bad_password",
        E::RegistrationClosed => "registration_closed",
        E::UserExists => "user_exists",
        E::VersionMismatch => "version_mismatch",
        E::Busy => "busy",
        E::Internal => "internal",
    }
}
