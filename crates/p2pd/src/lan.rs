//! This host's LAN addresses, registered with the server at each login
//! (`PeerInfo.lan`) so a peer behind the same router can reach the
//! listener directly (SPEC §10): the server hands out only what it saw,
//! the router's public address, which hairpinning routers often do not
//! loop back.

use std::net::{IpAddr, SocketAddr};

use p2p_proto::wire::MAX_LAN_PATHS;

/// Whether another host could reach us at `ip`: not loopback, unspecified,
/// multicast or link-local (a link-local address needs a scope no peer
/// knows).
fn reachable(ip: IpAddr) -> bool {
    if ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() {
        return false;
    }
    match ip {
        IpAddr::V4(v4) => !v4.is_link_local() && !v4.is_broadcast(),
        IpAddr::V6(v6) => !v6.is_unicast_link_local() && v6.to_ipv4_mapped().is_none(),
    }
}

/// The LAN paths of a listener bound to `listen`: its port on each of
/// `interfaces` when it is bound to an unspecified address (of the same
/// family; an IPv6 wildcard also takes IPv4 connections), or the bound
/// address itself; at most [`MAX_LAN_PATHS`], as strings.
pub(crate) fn paths(listen: SocketAddr, interfaces: &[IpAddr]) -> Vec<String> {
    let ips: Vec<IpAddr> = if listen.ip().is_unspecified() {
        let v6 = listen.is_ipv6();
        interfaces
            .iter()
            .copied()
            .filter(|ip| v6 || ip.is_ipv4())
            .collect()
    } else {
        vec![listen.ip()]
    };
    let mut out: Vec<String> = Vec::new();
    for ip in ips.into_iter().filter(|ip| reachable(*ip)) {
        let s = SocketAddr::new(ip, listen.port()).to_string();
        if !out.contains(&s) && out.len() < MAX_LAN_PATHS {
            out.push(s);
        }
    }
    out
}

/// The addresses of this host's interfaces that are up (empty if they
/// cannot be read: the LAN paths are a bonus, not a requirement).
pub(crate) fn interfaces() -> Vec<IpAddr> {
    use nix::net::if_::InterfaceFlags;
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addrs
        .filter(|a| a.flags.contains(InterfaceFlags::IFF_UP))
        .filter_map(|a| {
            let addr = a.address?;
            if let Some(v4) = addr.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                addr.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_addresses_another_host_can_reach_are_registered() {
        let ifs = [
            ip("127.0.0.1"),
            ip("192.168.1.20"),
            ip("169.254.3.4"),
            ip("::1"),
            ip("fe80::1"),
            ip("2001:db8::5"),
            ip("192.168.1.20"),
        ];
        let any4 = "0.0.0.0:4401".parse().unwrap();
        assert_eq!(paths(any4, &ifs), ["192.168.1.20:4401"]);
        let any6 = "[::]:4401".parse().unwrap();
        assert_eq!(
            paths(any6, &ifs),
            ["192.168.1.20:4401", "[2001:db8::5]:4401"]
        );
        // Bound to one address: that one, if others can reach it.
        let one = "10.1.2.3:4401".parse().unwrap();
        assert_eq!(paths(one, &ifs), ["10.1.2.3:4401"]);
        assert!(paths("127.0.0.2:4401".parse().unwrap(), &ifs).is_empty());
        // Never more than the server takes.
        let many: Vec<IpAddr> = (1..=20).map(|i| ip(&format!("10.0.0.{i}"))).collect();
        assert_eq!(paths(any4, &many).len(), MAX_LAN_PATHS);
    }
}
