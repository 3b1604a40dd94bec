//! Reload (SIGHUP, `systemctl reload`; SPEC §12): the config file, the TLS
//! certificate and key, and `users.csv` are read again while every session
//! stays up.
//!
//! Applied at once, to the next request: the broadcast limit, window and
//! TTL; the invitation limits and the invitation life (`invitation_ttl`,
//! for invitations made from then on); the relay policy (caps, timeouts, on/off);
//! the TLS identity (new connections get the new certificate); accounts
//! (removed users are disconnected). Everything else is read at start only:
//! a changed value is logged as "changed, needs a restart" and the running
//! value is kept (see [`restart_only`] and docs/config.md).

use std::sync::Arc;

use tracing::{info, warn};

use crate::{tls, ServerConfig, Shared};

/// Applies `new` to the running server and returns the keys that changed
/// but only take effect at the next start.
pub(crate) async fn apply(shared: &Arc<Shared>, new: &ServerConfig) -> Vec<&'static str> {
    shared.broadcasts.set_policy(new.broadcasts);
    shared.invitations.set_limits(new.invite_limits);
    shared.invitations.set_ttl(new.invitation_ttl);
    shared.relay.set_policy(new.relay);
    reload_tls(shared, &new.tls);
    shared.kick_removed().await;
    restart_only(&shared.cfg, new)
}

/// Loads the certificate and key again. A broken pair keeps the running
/// one (a half-renewed certificate must not take the server down).
fn reload_tls(shared: &Shared, source: &tls::TlsSource) {
    // The generated identity is never made anew by a reload: with its
    // files gone, keep serving the loaded one.
    if matches!(source, tls::TlsSource::SelfSigned)
        && !shared.cfg.data_dir.join(tls::CERT_FILE).exists()
    {
        warn!("the generated certificate is gone from the data directory; keeping the loaded one");
        return;
    }
    match tls::load(source, &shared.cfg.data_dir) {
        Ok(identity) => {
            let mut current = shared.tls.write().unwrap_or_else(|p| p.into_inner());
            if identity.fingerprint != current.fingerprint {
                warn!(old = %current.fingerprint, new = %identity.fingerprint,
                    "TLS certificate changed: daemons that pinned the old fingerprint will refuse the new one until their users accept it");
            }
            *current = identity;
        }
        Err(e) => warn!(cause = %e, "cannot load the TLS certificate; keeping the loaded one"),
    }
}

/// The keys of `new` that differ from the running `old` and are read at
/// start only.
pub(crate) fn restart_only(old: &ServerConfig, new: &ServerConfig) -> Vec<&'static str> {
    let mut keys = Vec::new();
    let mut check = |changed: bool, key: &'static str| {
        if changed {
            keys.push(key);
        }
    };
    check(old.data_dir != new.data_dir, "data_dir");
    check(old.max_clients != new.max_clients, "max_clients");
    check(
        old.open_registration != new.open_registration,
        "open_registration",
    );
    check(old.login_timeout != new.login_timeout, "login_timeout");
    check(
        old.first_byte_timeout != new.first_byte_timeout,
        "first_byte_timeout",
    );
    check(
        old.sources.per_address != new.sources.per_address,
        "max_unauthenticated_per_address",
    );
    check(
        old.sources.per_network != new.sources.per_network,
        "max_unauthenticated_per_network",
    );
    check(old.idle_timeout != new.idle_timeout, "idle_timeout");
    let db = |c: &ServerConfig| {
        c.database
            .as_ref()
            .map(|d| (d.url.clone(), d.lease, d.poll))
    };
    check(db(old) != db(new), "database");
    let (a, b) = (&old.limits, &new.limits);
    check(a.per_source != b.per_source, "login_failures_per_source");
    check(a.per_prefix != b.per_prefix, "login_failures_per_prefix");
    check(a.global != b.global, "login_failures_global");
    check(
        a.registrations_per_source != b.registrations_per_source,
        "registrations_per_source",
    );
    check(
        a.registrations_per_prefix != b.registrations_per_prefix,
        "registrations_per_prefix",
    );
    keys
}

/// Logs the outcome of a reload.
pub(crate) fn report(restart: &[&str]) {
    for key in restart {
        warn!(key, "changed, needs a restart; the running value is kept");
    }
    info!(
        needs_restart = restart.len(),
        "configuration reloaded (limits, relay policy, TLS certificate, accounts)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_start_time_keys_are_reported() {
        let old = ServerConfig::new("/tmp/a".into());
        let mut new = old.clone();
        new.broadcasts.limit += 1;
        new.relay.sessions_per_user += 1;
        new.invite_limits.per_address += 1;
        new.invitation_ttl *= 2;
        assert!(restart_only(&old, &new).is_empty());
        new.max_clients += 1;
        new.data_dir = "/tmp/b".into();
        new.limits.global = new.limits.per_source;
        assert_eq!(
            restart_only(&old, &new),
            ["data_dir", "max_clients", "login_failures_global"]
        );
    }
}
