//! The peer listener (SPEC §5): bound before the daemon reports ready and
//! registered with the server at login. Every incoming link runs the link
//! preamble and the Noise handshake in its own task and is let through only
//! if it matches an invitation accepted on either side, or a live session
//! (see [`Peers::incoming`]).
//!
//! Until its handshake is done a link holds a slot, and slots are admitted
//! so that half-open links from one place cannot lock out our real peers:
//!
//! - one source (an IPv4 address, or an IPv6 /64) holds at most
//!   `peer_handshakes_per_source` slots;
//! - when the shared pool is full, a newcomer takes the oldest slot of the
//!   source holding the most, if that source holds at least two more than
//!   the newcomer's: many sources share the pool fairly;
//! - a source whose address is that of a peer we accepted an invitation
//!   from is not held to the per-source limit, and may use
//!   [`RESERVED_HANDSHAKES`] slots beyond the pool;
//! - while the pool is full and we are accepting an invitation, the
//!   listener stops taking links (they wait in the kernel's backlog): the
//!   server tells the inviter, who dials at once, while its answer to us,
//!   with the inviter's address, is still on the way. Once that address is
//!   known (or a slot frees), the backlog is taken in order, and the
//!   inviter's link, unlike the others, finds room.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use p2p_proto::limits::MAX_PENDING_HANDSHAKES;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::Peers;

/// Default of `peer_handshakes_per_source`. A handshake takes a round trip
/// or two, so even an office of users behind one NAT address dialling us at
/// once holds a few slots at most; a quarter of the pool leaves three
/// quarters to everyone else.
pub(crate) const DEFAULT_HANDSHAKES_PER_SOURCE: usize = MAX_PENDING_HANDSHAKES / 4;

/// Slots beyond the shared pool for links from the address of a peer whose
/// invitation we accepted, so a flood from many addresses cannot keep that
/// peer out while we wait for it.
pub(crate) const RESERVED_HANDSHAKES: usize = 16;

/// Refused links are logged at most this often (with a count), so a flood
/// does not become a flood of log lines.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// Where a link comes from, for the per-source limit: an IPv4 address, or
/// the /64 of an IPv6 address (one host usually has a whole /64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Source(IpAddr);

impl Source {
    pub(crate) fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(v4) => Source(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source(IpAddr::V4(v4)),
                None => {
                    let bits = u128::from(v6) & !((1u128 << 64) - 1);
                    Source(IpAddr::V6(bits.into()))
                }
            },
        }
    }
}

/// Why a link got no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refused {
    #[error("too many handshakes from this address")]
    Source,
    #[error("too many handshakes at once")]
    Pool,
}

struct Pending {
    id: u64,
    reserved: bool,
    evict: CancellationToken,
}

#[derive(Default)]
struct Table {
    by_source: HashMap<Source, VecDeque<Pending>>,
    pool: usize,
    reserved: usize,
    next_id: u64,
}

/// The handshake slots of one listener.
pub(crate) struct Admission {
    per_source: usize,
    pool: usize,
    reserve: usize,
    table: Mutex<Table>,
    /// Signalled when a slot is freed.
    freed: Notify,
}

/// A link's slot: freed on drop. [`Slot::evicted`] fires if a newcomer
/// took it.
pub(crate) struct Slot {
    admission: Arc<Admission>,
    source: Source,
    id: u64,
    evict: CancellationToken,
}

impl Slot {
    /// Resolves when the slot was given to another link.
    pub(crate) async fn evicted(&self) {
        self.evict.cancelled().await
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut t = self.admission.lock();
        let Some(queue) = t.by_source.get_mut(&self.source) else {
            return;
        };
        let Some(i) = queue.iter().position(|p| p.id == self.id) else {
            return; // evicted: already removed
        };
        let gone = queue.remove(i).expect("index found above");
        if queue.is_empty() {
            t.by_source.remove(&self.source);
        }
        if gone.reserved {
            t.reserved -= 1;
        } else {
            t.pool -= 1;
        }
        drop(t);
        self.admission.freed.notify_one();
    }
}

impl Admission {
    /// `per_source` slots per source, `pool` shared, `reserve` for expected
    /// sources.
    pub(crate) fn new(per_source: usize, pool: usize, reserve: usize) -> Arc<Self> {
        Arc::new(Admission {
            per_source: per_source.max(1),
            pool,
            reserve,
            table: Mutex::new(Table::default()),
            freed: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // Nothing panics while holding it; a poisoned table is still consistent.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the shared pool is full.
    fn pool_full(&self) -> bool {
        self.lock().pool >= self.pool
    }

    /// A slot for a link from `ip`; `expected` when `ip` is the address of
    /// a peer whose invitation we accepted.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr, expected: bool) -> Result<Slot, Refused> {
        let source = Source::of(ip);
        let mut t = self.lock();
        let held = t.by_source.get(&source).map_or(0, VecDeque::len);
        if !expected && held >= self.per_source {
            return Err(Refused::Source);
        }
        let reserved = if t.pool < self.pool || self.evict_for(&mut t, source, held) {
            false
        } else if expected && t.reserved < self.reserve {
            true
        } else {
            return Err(Refused::Pool);
        };
        if reserved {
            t.reserved += 1;
        } else {
            t.pool += 1;
        }
        let id = t.next_id;
        t.next_id += 1;
        let evict = CancellationToken::new();
        t.by_source.entry(source).or_default().push_back(Pending {
            id,
            reserved,
            evict: evict.clone(),
        });
        Ok(Slot {
            admission: self.clone(),
            source,
            id,
            evict,
        })
    }

    /// Frees the oldest pool slot of the source holding the most, if it
    /// holds at least two more than `newcomer` (which holds `held`).
    fn evict_for(&self, t: &mut Table, newcomer: Source, held: usize) -> bool {
        let in_pool = |q: &VecDeque<Pending>| q.iter().filter(|p| !p.reserved).count();
        let Some((&victim, count)) = t
            .by_source
            .iter()
            .map(|(s, q)| (s, in_pool(q)))
            .max_by_key(|(_, n)| *n)
        else {
            return false;
        };
        if victim == newcomer || count < held + 2 {
            return false;
        }
        let queue = t.by_source.get_mut(&victim).expect("found above");
        let i = queue
            .iter()
            .position(|p| !p.reserved)
            .expect("counted above");
        let gone = queue.remove(i).expect("index found above");
        gone.evict.cancel();
        t.pool -= 1;
        true
    }
}

/// Queue of connections the kernel completes before we accept them.
const LISTEN_BACKLOG: u32 = 1024;

/// Binds the peer listener at `addr` with SO_REUSEADDR and SO_REUSEPORT,
/// so that the server link and every dial can leave from its port (the
/// address the server sees is then the NAT's mapping of the listener's
/// port, and two such NATs let a simultaneous open through: SPEC §10).
///
/// A chosen port is first bound without SO_REUSEPORT, which fails while
/// another listener holds it: two daemons must not end up sharing (and
/// splitting) one port without a word.
pub(crate) fn bind_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let fresh = || {
        if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
    };
    if addr.port() != 0 {
        let probe = fresh()?;
        // SO_REUSEADDR: old connections from the port (TIME_WAIT) are no
        // obstacle; a listener is.
        probe.set_reuseaddr(true)?;
        probe.bind(addr)?;
    }
    let socket = fresh()?;
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Accepts peer links until shutdown, at most `per_source` handshakes at
/// once from one source (see the module doc).
pub(crate) async fn serve(listener: TcpListener, peers: Arc<Peers>, per_source: usize) {
    if let Ok(addr) = listener.local_addr() {
        let _ = peers.listen.set(addr);
    }
    let admission = Admission::new(per_source, MAX_PENDING_HANDSHAKES, RESERVED_HANDSHAKES);
    let mut refused = 0u64;
    let mut last_log: Option<Instant> = None;
    loop {
        // Wakes the loop when an acceptance starts or ends.
        let changed = peers.expectations.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        // While the pool is full and an acceptance is under way, links wait
        // in the backlog until we know the inviter's address (module doc).
        let hold = admission.pool_full() && peers.accepting_any();
        tokio::select! {
            _ = peers.shutdown.cancelled() => return,
            _ = &mut changed => {}
            _ = admission.freed.notified(), if hold => {}
            accepted = listener.accept(), if !hold => match accepted {
                Ok((stream, addr)) => {
                    let expected = peers.expects_from(addr.ip());
                    match admission.admit(addr.ip(), expected) {
                        Ok(slot) => {
                            peers.tasks.spawn(peers.clone().incoming(stream, slot));
                        }
                        Err(why) => {
                            refused += 1;
                            if last_log.is_none_or(|t| t.elapsed() >= REFUSAL_LOG_INTERVAL) {
                                warn!(%addr, reason = %why, refused, "peer link dropped before its handshake");
                                last_log = Some(Instant::now());
                                refused = 0;
                            }
                        }
                    }
                }
                Err(e) => {
                    warn!(cause = %e, "peer accept failed");
                    tokio::time::sleep(crate::ACCEPT_ERROR_PAUSE).await;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A port another listener holds is refused, even though the listener
    /// itself shares its port with our own dials.
    #[tokio::test]
    async fn a_taken_port_is_refused() {
        let first = bind_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let taken = first.local_addr().unwrap();
        let err = bind_listener(taken).expect_err("port in use");
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
        drop(first);
        assert!(bind_listener(taken).is_ok());
    }

    #[test]
    fn one_source_is_held_to_its_share() {
        let a = Admission::new(2, 4, 1);
        let _s1 = a.admit(ip("10.0.0.1"), false).unwrap();
        let s2 = a.admit(ip("10.0.0.1"), false).unwrap();
        assert_eq!(a.admit(ip("10.0.0.1"), false).err(), Some(Refused::Source));
        // Another address is not affected; a freed slot comes back.
        assert!(a.admit(ip("10.0.0.2"), false).is_ok());
        drop(s2);
        assert!(a.admit(ip("10.0.0.1"), false).is_ok());
    }

    #[test]
    fn an_ipv6_host_is_one_source_per_64() {
        let a = Admission::new(1, 4, 0);
        let _s = a.admit(ip("2001:db8:1:2::1"), false).unwrap();
        assert_eq!(
            a.admit(ip("2001:db8:1:2:ffff::9"), false).err(),
            Some(Refused::Source)
        );
        assert!(a.admit(ip("2001:db8:1:3::1"), false).is_ok());
        assert_eq!(
            Source::of(ip("::ffff:10.0.0.1")),
            Source::of(ip("10.0.0.1"))
        );
    }

    #[test]
    fn a_full_pool_gives_the_greediest_sources_oldest_slot_to_a_newcomer() {
        let a = Admission::new(3, 4, 0);
        let old = a.admit(ip("10.0.0.1"), false).unwrap();
        let _b = a.admit(ip("10.0.0.1"), false).unwrap();
        let _c = a.admit(ip("10.0.0.1"), false).unwrap();
        let _d = a.admit(ip("10.0.0.2"), false).unwrap();
        // Full: 10.0.0.3 holds none, 10.0.0.1 holds three: its oldest goes.
        let _e = a.admit(ip("10.0.0.3"), false).unwrap();
        assert!(old.evict.is_cancelled());
        drop(old); // the evicted link's task ends: nothing more is freed
                   // Now 2 + 1 + 1: a fourth source takes 10.0.0.1's next oldest...
        let _f = a.admit(ip("10.0.0.4"), false).unwrap();
        // ...but with 1 + 1 + 1 + 1 nobody holds two more than a newcomer.
        assert_eq!(a.admit(ip("10.0.0.5"), false).err(), Some(Refused::Pool));
    }

    #[test]
    fn an_expected_peer_gets_the_reserve_and_no_source_limit() {
        let a = Admission::new(1, 2, 1);
        let _x = a.admit(ip("10.0.0.1"), false).unwrap();
        let _y = a.admit(ip("10.0.0.2"), false).unwrap();
        assert_eq!(a.admit(ip("10.0.0.3"), false).err(), Some(Refused::Pool));
        // 10.0.0.1 is over its limit, but is where the peer we expect is.
        let r = a.admit(ip("10.0.0.1"), true).unwrap();
        assert_eq!(a.admit(ip("10.0.0.1"), true).err(), Some(Refused::Pool));
        drop(r);
        assert!(a.admit(ip("10.0.0.1"), true).is_ok());
    }
}
