//! How a logged-in daemon can be reached (design of issue 9, items 1–2):
//! what the server saw of its link, what it said at login, and the
//! [`Contact`] each side of an accepted invitation gets from that.

use std::net::SocketAddr;

use p2p_proto::wire::{Contact, MAX_LAN_PATHS, MAX_PATHS};
use p2p_proto::Secret;

/// Where one online daemon may be reached.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Reach {
    /// The session's TCP peer address as the server sees it: the NAT's
    /// public mapping of the daemon's listener port (daemons connect from
    /// that port).
    pub(crate) link: SocketAddr,
    /// The daemon's peer listener port.
    pub(crate) listen_port: u16,
    /// The address its owner configured for peers, if any.
    pub(crate) advertise: Option<SocketAddr>,
    /// Its LAN addresses, validated (see [`lan_paths`]).
    pub(crate) lan: Vec<SocketAddr>,
}

/// The usable entries of a login's LAN list: `ip:port` that parse, with a
/// port, neither unspecified nor multicast, no duplicates, at most
/// [`MAX_LAN_PATHS`]. Anything else is ignored, never an error: a daemon's
/// view of its interfaces is a hint.
pub(crate) fn lan_paths(lan: &[String]) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for a in lan {
        let Ok(a) = a.parse::<SocketAddr>() else {
            continue;
        };
        let ip = a.ip();
        if a.port() == 0 || ip.is_unspecified() || ip.is_multicast() || out.contains(&a) {
            continue;
        }
        out.push(a);
        if out.len() == MAX_LAN_PATHS {
            break;
        }
    }
    out
}

impl Reach {
    /// Every address to try for this daemon, best first: advertised, the
    /// listener port at the observed host, the observed link mapping, the
    /// LAN addresses; no duplicates, at most [`MAX_PATHS`].
    pub(crate) fn paths(&self) -> Vec<SocketAddr> {
        let listener =
            (self.listen_port != 0).then(|| SocketAddr::new(self.link.ip(), self.listen_port));
        let mut out: Vec<SocketAddr> = Vec::new();
        let all = self.advertise.into_iter().chain(listener);
        for a in all.chain([self.link]).chain(self.lan.iter().copied()) {
            if !out.contains(&a) {
                out.push(a);
            }
        }
        out.truncate(MAX_PATHS);
        out
    }

    /// The address a peer should dial first (what daemons that predate
    /// `paths` use).
    pub(crate) fn primary(&self) -> SocketAddr {
        self.paths().first().copied().unwrap_or(self.link)
    }
}

/// The contact of `user` (reachable as `reach`, key `public_key`) for a
/// receiver whose own link the server sees as `receiver`, with the
/// receiver's own relay token.
pub(crate) fn contact(
    user: &str,
    public_key: &str,
    reach: &Reach,
    receiver: &Reach,
    relay: Option<Secret>,
) -> Contact {
    let paths = reach.paths();
    Contact {
        user: user.to_string(),
        addr: paths.first().copied().unwrap_or(reach.link).to_string(),
        public_key: public_key.to_string(),
        paths: paths.iter().map(SocketAddr::to_string).collect(),
        your_addr: Some(receiver.link.to_string()),
        relay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn lan_entries_that_cannot_be_dialled_are_dropped() {
        let lan = strings(&[
            "10.0.0.5:4401",
            "not an address",
            "10.0.0.6",
            "0.0.0.0:4401",
            "[::]:4401",
            "224.0.0.1:4401",
            "[ff02::1]:4401",
            "10.0.0.7:0",
            "10.0.0.5:4401",
            "[fe80::1]:4401",
        ]);
        assert_eq!(
            lan_paths(&lan),
            vec![sa("10.0.0.5:4401"), sa("[fe80::1]:4401")]
        );
    }

    #[test]
    fn at_most_max_lan_paths_are_kept() {
        let lan: Vec<String> = (1..=20).map(|i| format!("10.0.0.{i}:4401")).collect();
        let kept = lan_paths(&lan);
        assert_eq!(kept.len(), MAX_LAN_PATHS);
        assert_eq!(kept[0], sa("10.0.0.1:4401"));
    }

    #[test]
    fn paths_come_in_design_order_without_duplicates() {
        let r = Reach {
            link: sa("203.0.113.5:50000"),
            listen_port: 4401,
            advertise: Some(sa("198.51.100.1:4401")),
            lan: vec![sa("10.0.0.5:4401"), sa("203.0.113.5:4401")],
        };
        assert_eq!(
            r.paths(),
            vec![
                sa("198.51.100.1:4401"),
                sa("203.0.113.5:4401"),
                sa("203.0.113.5:50000"),
                sa("10.0.0.5:4401"),
            ]
        );
        // No NAT, no advertise: the link leaves from the listener port.
        let flat = Reach {
            link: sa("10.0.0.5:4401"),
            listen_port: 4401,
            advertise: None,
            lan: vec![sa("10.0.0.5:4401")],
        };
        assert_eq!(flat.paths(), vec![sa("10.0.0.5:4401")]);
    }

    #[test]
    fn paths_are_capped() {
        let r = Reach {
            link: sa("203.0.113.5:50000"),
            listen_port: 4401,
            advertise: Some(sa("198.51.100.1:4401")),
            lan: (1..=20).map(|i| sa(&format!("10.0.0.{i}:4401"))).collect(),
        };
        assert_eq!(r.paths().len(), MAX_PATHS);
        assert_eq!(r.paths()[0], sa("198.51.100.1:4401"));
    }

    #[test]
    fn a_contact_carries_the_peers_paths_and_the_receivers_own_address_and_token() {
        let bob = Reach {
            link: sa("203.0.113.5:50000"),
            listen_port: 4401,
            advertise: None,
            lan: vec![sa("10.0.0.5:4401")],
        };
        let alice = Reach {
            link: sa("198.51.100.9:40000"),
            listen_port: 4402,
            advertise: None,
            lan: Vec::new(),
        };
        let c = contact("bob", "key", &bob, &alice, Some(Secret::new("t")));
        assert_eq!(c.user, "bob");
        assert_eq!(c.addr, "203.0.113.5:4401");
        assert_eq!(
            c.paths,
            ["203.0.113.5:4401", "203.0.113.5:50000", "10.0.0.5:4401"]
        );
        assert_eq!(c.your_addr.as_deref(), Some("198.51.100.9:40000"));
        assert_eq!(
            c.relay.map(|t| t.expose().to_string()).as_deref(),
            Some("t")
        );
    }
}
