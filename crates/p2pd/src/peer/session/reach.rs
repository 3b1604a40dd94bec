//! How a relayed session looks for a direct path (design: the upgrade
//! loop): it asks for this daemon's current addresses, sends them to the
//! peer in `TryDirect`, and has the dialler try the peer's. Both go through
//! [`Reach`], so the session task is tested without sockets.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Weak;

use futures::future::BoxFuture;
use p2p_proto::wire::MAX_PATHS;
use tracing::debug;

use crate::link::LinkHandle;
use crate::peer::Peers;
use crate::relay_client;

/// What a session needs from the world to go direct.
pub(crate) trait Reach: Send + Sync {
    /// This daemon's current addresses, best first (may be empty).
    fn my_paths(&self) -> BoxFuture<'static, Vec<String>>;
    /// Dial `paths` of `peer` for the session of invitation `invite`; a
    /// link that verifies comes back to the session as `SessionCmd::Adopt`.
    fn dial(&self, peer: &str, invite: u64, paths: Vec<SocketAddr>);
}

/// The addresses a `TryDirect` may name: parsed, specified, unicast, with a
/// port; at most [`MAX_PATHS`], the rest ignored.
pub(crate) fn parse_paths(paths: &[String]) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for p in paths {
        if out.len() == MAX_PATHS {
            break;
        }
        let Ok(a) = p.parse::<SocketAddr>() else {
            continue;
        };
        if a.port() == 0 || a.ip().is_unspecified() || a.ip().is_multicast() || out.contains(&a) {
            continue;
        }
        out.push(a);
    }
    out
}

/// This daemon's side of a peer link, as offered to peers.
#[derive(Debug, Clone, Default)]
pub struct LocalPeer {
    /// Our X25519 public key (who leads a session: [`p2p_proto::peer::leads`]).
    pub public_key: Vec<u8>,
    /// The peer listener's port (P): probes go out from it.
    pub port: u16,
    /// `advertise` from the configuration.
    pub advertise: Option<String>,
    /// Fixed LAN addresses, used when `listen` is not set (tests).
    pub lan: Vec<String>,
    /// The listener's address: its LAN addresses are read from the
    /// interfaces each time they are needed (they change).
    pub listen: Option<SocketAddr>,
}

impl LocalPeer {
    /// The listener's LAN addresses now.
    pub(crate) fn lan(&self) -> Vec<String> {
        match self.listen {
            Some(listen) => crate::lan::paths(listen, &crate::lan::interfaces()),
            None => self.lan.clone(),
        }
    }

    /// Our paths given the public address the server just saw from port P:
    /// advertised, observed, observed IP with P, LAN; no repeats, at most
    /// [`MAX_PATHS`].
    pub(crate) fn paths(&self, observed: Option<SocketAddr>) -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        all.extend(self.advertise.clone());
        if let Some(o) = observed {
            all.push(o.to_string());
            all.push(SocketAddr::new(o.ip(), self.port).to_string());
        }
        all.extend(self.lan());
        let mut out: Vec<String> = Vec::new();
        for p in all {
            if out.len() < MAX_PATHS && !out.contains(&p) {
                out.push(p);
            }
        }
        out
    }
}

/// The daemon's [`Reach`]: probes through the server link, dials through
/// the peer registry.
pub(crate) struct LinkReach {
    pub(crate) link: LinkHandle,
    pub(crate) local: LocalPeer,
    /// Weak: the registry owns the sessions that hold this.
    pub(crate) peers: Weak<Peers>,
}

impl Reach for LinkReach {
    fn my_paths(&self) -> BoxFuture<'static, Vec<String>> {
        let (link, local) = (self.link.clone(), self.local.clone());
        Box::pin(async move {
            let probed = probe_paths(&link, &local).await;
            // The server link leaves from port P too: the mapping the
            // server saw for it is the one a NAT that keeps one mapping per
            // local port (most do) gives every connection from P, so it
            // goes first. (A probe from P to the same server address is
            // the link's own 4-tuple, so the probe above mostly falls back
            // to an ephemeral port, which tells our IP but not P's port.)
            let observed = link
                .status()
                .observed
                .and_then(|o| o.parse::<SocketAddr>().ok());
            with_first(observed, probed)
        })
    }

    fn dial(&self, peer: &str, invite: u64, paths: Vec<SocketAddr>) {
        let Some(peers) = self.peers.upgrade() else {
            return;
        };
        debug!(peer = %peer, invite, count = paths.len(), "peer offered direct paths");
        peers.dial_for_session(peer, invite, paths);
    }
}

/// `first` (if any) at the head of `paths`, without repeats, at most
/// [`MAX_PATHS`].
fn with_first(first: Option<SocketAddr>, paths: Vec<String>) -> Vec<String> {
    let Some(first) = first.map(|a| a.to_string()) else {
        return paths;
    };
    let mut out = vec![first.clone()];
    out.extend(paths.into_iter().filter(|p| *p != first));
    out.truncate(MAX_PATHS);
    out
}

/// Our paths from a fresh address probe (see [`LocalPeer::paths`]).
async fn probe_paths(link: &LinkHandle, local: &LocalPeer) -> Vec<String> {
    // From port P: the server sees the NAT's current mapping of it.
    let from = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), local.port);
    let conn = match link.open_aux(Some(from)).await {
        Ok(conn) => Some((conn, true)),
        Err(e) => {
            // P is taken without SO_REUSEPORT (or in TIME_WAIT):
            // an ephemeral port still tells our public IP.
            debug!(cause = %e, "address probe from the listener's port failed");
            link.open_aux(None).await.ok().map(|c| (c, false))
        }
    };
    let Some((conn, from_p)) = conn else {
        return local.paths(None);
    };
    match relay_client::observe(conn).await {
        Ok(seen) if from_p => local.paths(Some(seen)),
        Ok(seen) => local.paths(Some(SocketAddr::new(seen.ip(), local.port))),
        Err(e) => {
            debug!(cause = %e, "address probe failed");
            local.paths(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offered_paths_are_checked_and_capped() {
        let mut paths = vec![
            "not an address".to_string(),
            "0.0.0.0:4401".into(),
            "224.0.0.1:4401".into(),
            "10.0.0.1:0".into(),
            "10.0.0.1:4401".into(),
            "10.0.0.1:4401".into(),
            "[2001:db8::1]:4401".into(),
        ];
        paths.extend((0..40).map(|i| format!("192.0.2.{i}:4401")));
        let got = parse_paths(&paths);
        assert_eq!(got.len(), MAX_PATHS);
        assert_eq!(got[0], "10.0.0.1:4401".parse().unwrap());
        assert_eq!(got[1], "[2001:db8::1]:4401".parse().unwrap());
        assert_eq!(got[2], "192.0.2.0:4401".parse().unwrap());
    }

    #[test]
    fn own_paths_put_the_observed_mapping_first_and_repeat_nothing() {
        let local = LocalPeer {
            port: 4401,
            lan: vec!["10.0.0.2:4401".into(), "203.0.113.5:4401".into()],
            ..LocalPeer::default()
        };
        let got = local.paths(Some("203.0.113.5:4401".parse().unwrap()));
        assert_eq!(got, ["203.0.113.5:4401", "10.0.0.2:4401"]);
        let got = local.paths(Some("203.0.113.5:60000".parse().unwrap()));
        assert_eq!(
            got,
            ["203.0.113.5:60000", "203.0.113.5:4401", "10.0.0.2:4401"]
        );
        assert_eq!(local.paths(None), ["10.0.0.2:4401", "203.0.113.5:4401"]);
    }

    /// The link's own mapping leads the offer: through a NAT that keeps one
    /// mapping per local port it is where the peer's SYN gets in, while a
    /// probe from an ephemeral port only knows our IP.
    #[test]
    fn the_links_mapping_leads_the_offered_paths() {
        let probed = vec!["203.0.113.5:4401".to_string(), "10.0.0.2:4401".to_string()];
        let link = "203.0.113.5:8000".parse().ok();
        assert_eq!(
            with_first(link, probed.clone()),
            ["203.0.113.5:8000", "203.0.113.5:4401", "10.0.0.2:4401"]
        );
        let same = "10.0.0.2:4401".parse().ok();
        assert_eq!(
            with_first(same, probed.clone()),
            ["10.0.0.2:4401", "203.0.113.5:4401"]
        );
        assert_eq!(with_first(None, probed.clone()), probed);
        let many: Vec<String> = (1..=20).map(|i| format!("10.0.0.{i}:1")).collect();
        assert_eq!(with_first(link, many).len(), MAX_PATHS);
    }
}
