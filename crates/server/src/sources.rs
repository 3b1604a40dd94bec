//! Per-source limits on connections that have not logged in yet.
//!
//! Without them one host can hold every slot of the connection cap with
//! idle TCP connections, reopened just before the login deadline. Each
//! accepted connection takes a [`Pending`] ticket for its source before it
//! gets a slot; the ticket is returned when the login succeeds or the
//! connection ends, so logged-in sessions never count.
//!
//! A source is an IPv4 address or an IPv6 /64 (one host usually owns a
//! whole /64, so counting single IPv6 addresses would limit nothing); a
//! network is an IPv4 /24 or an IPv6 /48 (a site).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Default for `--max-unauthenticated-per-address`. A login in flight lasts
/// a TLS handshake plus a token check (milliseconds), or at most the argon2
/// queue wait for a password: even an office of a thousand daemons behind
/// one NAT address, all reconnecting after a server restart, has far fewer
/// than this between accept and `login_ok` at any moment. One host can hold
/// no more than this many slots of the default 1024.
pub(crate) const DEFAULT_PER_ADDRESS: usize = 64;
/// Default for `--max-unauthenticated-per-network`: several NAT addresses of
/// one site together, while a /24 (or /48) of attackers still cannot hold
/// more than a quarter of the default connection cap.
pub(crate) const DEFAULT_PER_NETWORK: usize = 256;

/// The two per-source caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceLimits {
    /// Unauthenticated connections per address (IPv4) or /64 (IPv6).
    pub(crate) per_address: usize,
    /// Unauthenticated connections per /24 (IPv4) or /48 (IPv6).
    pub(crate) per_network: usize,
}

impl Default for SourceLimits {
    fn default() -> Self {
        SourceLimits {
            per_address: DEFAULT_PER_ADDRESS,
            per_network: DEFAULT_PER_NETWORK,
        }
    }
}

/// What a per-source count is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum SourceKey {
    /// An IPv4 address or the first 64 bits of an IPv6 one.
    Address(IpAddr),
    /// An IPv4 /24 or the first 48 bits of an IPv6 address.
    Network(IpAddr),
}

fn v6_prefix(ip: Ipv6Addr, bits: u32) -> IpAddr {
    let mask = u128::MAX << (128 - bits);
    IpAddr::V6(Ipv6Addr::from(u128::from(ip) & mask))
}

/// The address key of `ip` (IPv4-mapped IPv6 counts as IPv4).
pub(crate) fn address_key(ip: IpAddr) -> SourceKey {
    match ip.to_canonical() {
        IpAddr::V4(v4) => SourceKey::Address(IpAddr::V4(v4)),
        IpAddr::V6(v6) => SourceKey::Address(v6_prefix(v6, 64)),
    }
}

/// The network key of `ip`.
pub(crate) fn network_key(ip: IpAddr) -> SourceKey {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let net = u32::from(v4) & 0xffff_ff00;
            SourceKey::Network(IpAddr::V4(Ipv4Addr::from(net)))
        }
        IpAddr::V6(v6) => SourceKey::Network(v6_prefix(v6, 48)),
    }
}

/// Counts of unauthenticated connections per source.
#[derive(Debug)]
pub(crate) struct PendingLogins {
    limits: SourceLimits,
    counts: Mutex<HashMap<SourceKey, usize>>,
}

/// One unauthenticated connection's place in the counts; dropping it gives
/// the place back.
#[derive(Debug)]
pub(crate) struct Pending {
    owner: Arc<PendingLogins>,
    keys: [SourceKey; 2],
}

impl PendingLogins {
    /// Empty counts under `limits`.
    pub(crate) fn new(limits: SourceLimits) -> Arc<Self> {
        Arc::new(PendingLogins {
            limits,
            counts: Mutex::new(HashMap::new()),
        })
    }

    fn counts(&self) -> MutexGuard<'_, HashMap<SourceKey, usize>> {
        // Only integer updates happen under the lock: nothing can leave the
        // map half-changed, so a poisoned lock is still consistent.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A ticket for a new connection from `ip`, or `None` if its address or
    /// network is at its cap.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Pending> {
        let keys = [address_key(ip), network_key(ip)];
        let caps = [self.limits.per_address, self.limits.per_network];
        let mut counts = self.counts();
        if keys
            .iter()
            .zip(caps)
            .any(|(k, cap)| counts.get(k).copied().unwrap_or(0) >= cap)
        {
            return None;
        }
        for k in keys {
            *counts.entry(k).or_insert(0) += 1;
        }
        Some(Pending {
            owner: self.clone(),
            keys,
        })
    }

    /// Unauthenticated connections now counted for `key`.
    #[cfg(test)]
    pub(crate) fn count(&self, key: SourceKey) -> usize {
        self.counts().get(&key).copied().unwrap_or(0)
    }

    /// Number of sources with a count (entries are removed at zero).
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.counts().len()
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let mut counts = self.owner.counts();
        for k in self.keys {
            if let Some(n) = counts.get_mut(&k) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(&k);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_address_is_capped_and_others_are_not() {
        let p = PendingLogins::new(SourceLimits {
            per_address: 3,
            per_network: 100,
        });
        let held: Vec<_> = (0..3).map(|_| p.admit(ip("10.0.0.1")).unwrap()).collect();
        assert!(p.admit(ip("10.0.0.1")).is_none());
        // Same address written as IPv4-mapped IPv6.
        assert!(p.admit(ip("::ffff:10.0.0.1")).is_none());
        let other = p.admit(ip("10.0.0.2")).expect("another address gets in");
        drop(held);
        assert!(p.admit(ip("10.0.0.1")).is_some());
        drop(other);
        assert_eq!(p.tracked(), 0, "counts at zero are forgotten");
    }

    #[test]
    fn a_network_is_capped_across_its_addresses() {
        let p = PendingLogins::new(SourceLimits {
            per_address: 10,
            per_network: 4,
        });
        let held: Vec<_> = (1..=4)
            .map(|i| p.admit(ip(&format!("192.0.2.{i}"))).unwrap())
            .collect();
        assert!(p.admit(ip("192.0.2.99")).is_none());
        assert!(p.admit(ip("192.0.3.1")).is_some(), "the next /24 is apart");
        assert_eq!(p.count(network_key(ip("192.0.2.7"))), 4);
        drop(held);
        assert_eq!(p.count(network_key(ip("192.0.2.7"))), 0);
    }

    #[test]
    fn an_ipv6_host_is_its_64_and_a_site_its_48() {
        let p = PendingLogins::new(SourceLimits {
            per_address: 2,
            per_network: 3,
        });
        let _a = p.admit(ip("2001:db8:1:1::1")).unwrap();
        let _b = p.admit(ip("2001:db8:1:1::ffff")).unwrap();
        assert!(
            p.admit(ip("2001:db8:1:1:dead::1")).is_none(),
            "same /64, new address"
        );
        let _c = p.admit(ip("2001:db8:1:2::1")).unwrap();
        assert!(p.admit(ip("2001:db8:1:3::1")).is_none(), "same /48");
        assert!(p.admit(ip("2001:db8:2::1")).is_some());
    }
}
