//! The relay (SPEC §10, design of issue 9): the last resort when two
//! daemons cannot reach each other directly. Each accepted invitation gets
//! one token per side ([`Relay::issue`]); each side brings its token on a
//! fresh connection (`ClientMsg::Relay` instead of `Login`), the first
//! waits for the second ([`Claim::First`]), and once both are there the
//! server copies bytes between them ([`splice`]). The bytes are the
//! peers' Noise ciphertext: the server sees who talks to whom, when and how
//! much, never what.
//!
//! Tokens live in memory only, keyed by their SHA-256 digest (a lookup
//! compares digests, never the secret, so timing tells nothing about a
//! token), and are never logged. A token pairs once: it is dead as soon as
//! its side leaves, and an unused one dies after the token lifetime.
//! Expiry is lazy (each issue and claim first drops what is due, from a
//! deadline heap): no task per token, nothing to stop at shutdown.
//!
//! Per user, at most `sessions_per_user` seats (sides waiting plus live
//! pairs), and one [`Pacer`] shared by all of that user's pairs: the bytes a
//! user sends into the relay are paced to `bytes_per_sec`, never dropped.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use p2p_proto::wire::RelayRefusal;
use p2p_proto::Secret;
use sha2::{Digest as _, Sha256};
use tokio::sync::oneshot;
use tokio::time::Instant;

pub(crate) mod pace;
pub(crate) mod splice;

pub(crate) use pace::Pacer;

/// Default `--relay-sessions-per-user`: a person talks to a handful of
/// peers at once; more relayed sessions than this is someone using the
/// server as free transit.
pub const DEFAULT_SESSIONS_PER_USER: usize = 4;
/// Default `--relay-bytes-per-sec` (1 MiB/s per user): plenty for chat
/// and small files, bounded for a server that relays for many users.
pub const DEFAULT_BYTES_PER_SEC: u64 = 1 << 20;
/// Default `--relay-idle`: peers send a keepalive every 15 s, so two
/// minutes without a byte either way means both are gone.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(120);
/// Default `--relay-pair-timeout`: both daemons turn to the relay about
/// 1.5 s after acceptance, and setup gives up 5 s after it; waiting 4 s
/// for the second side leaves time to tell the user why.
pub const DEFAULT_PAIR_TIMEOUT: Duration = Duration::from_secs(4);
/// Default `--relay-token-ttl`: a session that has not reached the relay
/// a minute after acceptance never will (setup gives up after 5 s).
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(60);

/// How the relay runs (the `--relay-*` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayPolicy {
    /// False with `--no-relay`: no tokens, every join refused.
    pub enabled: bool,
    /// Most seats (waiting sides plus live pairs) one user holds.
    pub sessions_per_user: usize,
    /// Bytes per second one user may send through the relay, all its
    /// pairs together.
    pub bytes_per_sec: u64,
    /// A pair with no byte either way for this long is ended.
    pub idle: Duration,
    /// How long the first side waits for the second.
    pub pair_timeout: Duration,
    /// An unused token dies after this.
    pub token_ttl: Duration,
}

impl Default for RelayPolicy {
    fn default() -> Self {
        RelayPolicy {
            enabled: true,
            sessions_per_user: DEFAULT_SESSIONS_PER_USER,
            bytes_per_sec: DEFAULT_BYTES_PER_SEC,
            idle: DEFAULT_IDLE,
            pair_timeout: DEFAULT_PAIR_TIMEOUT,
            token_ttl: DEFAULT_TOKEN_TTL,
        }
    }
}

/// Why a join was turned away, for `RelayRefused`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The code.
    pub code: RelayRefusal,
    /// For people.
    pub message: String,
}

fn refusal(code: RelayRefusal, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

fn unknown() -> Refusal {
    refusal(
        RelayRefusal::UnknownToken,
        "unknown relay token (never issued, already used, or expired)",
    )
}

type Digest = [u8; 32];

fn digest(token: &Secret) -> Digest {
    Sha256::digest(token.expose().as_bytes()).into()
}

/// Where one side of a pair is.
#[derive(Debug)]
enum SideState<A> {
    /// Token issued, not brought yet.
    Unused,
    /// Brought; waiting for the other side, which hands itself over here.
    Waiting(oneshot::Sender<A>),
    /// Paired.
    Joined,
    /// Left, gave up, or expired unused: its token is dead.
    Gone,
}

#[derive(Debug)]
struct Side<A> {
    user: String,
    digest: Digest,
    state: SideState<A>,
}

#[derive(Debug)]
struct UserUse {
    seats: usize,
    pacer: Arc<Pacer>,
}

#[derive(Debug)]
struct Table<A> {
    next_pair: u64,
    /// Token digest → (pair id, side index).
    tokens: HashMap<Digest, (u64, usize)>,
    pairs: HashMap<u64, [Side<A>; 2]>,
    /// (token deadline, pair id), earliest first; ids are never reused,
    /// so an entry for a pair already gone is skipped.
    expiry: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Users holding at least one seat.
    users: HashMap<String, UserUse>,
}

impl<A> Table<A> {
    /// Kills the side's token; drops the pair once both sides are gone.
    fn bury(&mut self, pair: u64, side: usize) {
        let Some(sides) = self.pairs.get_mut(&pair) else {
            return;
        };
        sides[side].state = SideState::Gone;
        self.tokens.remove(&sides[side].digest);
        if sides.iter().all(|s| matches!(s.state, SideState::Gone)) {
            self.pairs.remove(&pair);
        }
    }

    /// Kills the unused tokens whose lifetime ended at or before `now`.
    fn sweep(&mut self, now: Instant) {
        while let Some(Reverse((deadline, pair))) = self.expiry.peek().copied() {
            if deadline > now {
                break;
            }
            self.expiry.pop();
            for side in 0..2 {
                let unused = self
                    .pairs
                    .get(&pair)
                    .is_some_and(|s| matches!(s[side].state, SideState::Unused));
                if unused {
                    self.bury(pair, side);
                }
            }
        }
    }
}

/// The relay's token table and seats. `A` is what the second side hands
/// the first (the server's [`Arrival`]; tests use anything).
#[derive(Debug)]
pub struct Relay<A = Arrival> {
    /// Changed by a reload ([`Relay::set_policy`]).
    policy: std::sync::RwLock<RelayPolicy>,
    table: Mutex<Table<A>>,
}

/// The second side of a pair, handed to the first side's task, which runs
/// the splice for both.
pub struct Arrival {
    /// Its connection, right after its `Relay` message.
    pub(crate) conn: crate::conn::Conn,
    /// Its user's pacer (for the bytes it sends).
    pub(crate) pacer: Arc<Pacer>,
    /// Dropped when the pair is over; its connection task waits for that.
    pub(crate) done: oneshot::Sender<()>,
}

impl std::fmt::Debug for Arrival {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Arrival")
    }
}

/// A valid token brought to the relay.
#[derive(Debug)]
pub enum Claim<A = Arrival> {
    /// The other side is not there yet: wait on `rx` (at most the pair
    /// timeout, then [`Relay::give_up`]).
    First {
        /// This side's place.
        seat: Seat<A>,
        /// Where the other side arrives.
        rx: oneshot::Receiver<A>,
    },
    /// The other side waits: hand ourselves over through `tx`.
    Second {
        /// This side's place.
        seat: Seat<A>,
        /// The waiting side's receiver.
        tx: oneshot::Sender<A>,
    },
}

/// One side's place in a pair: counts against its user's cap until
/// dropped, and dropping it kills its token.
#[derive(Debug)]
pub struct Seat<A = Arrival> {
    relay: Arc<Relay<A>>,
    pair: u64,
    side: usize,
    user: String,
    peer: String,
    pacer: Arc<Pacer>,
}

impl<A> Seat<A> {
    /// This side's user.
    pub fn user(&self) -> &str {
        &self.user
    }
    /// The other side's user.
    pub fn peer(&self) -> &str {
        &self.peer
    }
    /// This side's user's pacer.
    pub(crate) fn pacer(&self) -> &Arc<Pacer> {
        &self.pacer
    }
}

impl<A> Drop for Seat<A> {
    fn drop(&mut self) {
        let mut t = self.relay.lock();
        if let Some(u) = t.users.get_mut(&self.user) {
            u.seats -= 1;
            if u.seats == 0 {
                t.users.remove(&self.user);
            }
        }
        t.bury(self.pair, self.side);
    }
}

impl<A> Relay<A> {
    /// A relay run by `policy`.
    pub fn new(policy: RelayPolicy) -> Self {
        Relay {
            policy: std::sync::RwLock::new(policy),
            table: Mutex::new(Table {
                next_pair: 0,
                tokens: HashMap::new(),
                pairs: HashMap::new(),
                expiry: BinaryHeap::new(),
                users: HashMap::new(),
            }),
        }
    }

    /// The policy it runs by now.
    pub fn policy(&self) -> RelayPolicy {
        // Plain Copy data: a poisoned lock still holds a whole policy.
        *self.policy.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies a new policy (a reload) to new tokens and joins. Live pairs
    /// and users' existing pacers keep the values they started with.
    pub fn set_policy(&self, policy: RelayPolicy) {
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = policy;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table<A>> {
        self.table.lock().expect("relay table poisoned")
    }

    /// Tokens for a newly accepted session between `a` and `b`: `a`'s
    /// first, then `b`'s. None when the relay is off.
    pub fn issue(&self, a: &str, b: &str, now: Instant) -> Option<(Secret, Secret)> {
        if !self.policy().enabled {
            return None;
        }
        let new = || Secret::new(hex::encode(rand::random::<[u8; 32]>()));
        let (ta, tb) = (new(), new());
        let mut t = self.lock();
        t.sweep(now);
        t.next_pair += 1;
        let id = t.next_pair;
        let side = |user: &str, token: &Secret| Side {
            user: user.to_string(),
            digest: digest(token),
            state: SideState::Unused,
        };
        let sides = [side(a, &ta), side(b, &tb)];
        for (i, s) in sides.iter().enumerate() {
            t.tokens.insert(s.digest, (id, i));
        }
        t.pairs.insert(id, sides);
        t.expiry.push(Reverse((now + self.policy().token_ttl, id)));
        Some((ta, tb))
    }

    /// `token` brought to the relay at `now`.
    pub fn claim(self: &Arc<Self>, token: &Secret, now: Instant) -> Result<Claim<A>, Refusal> {
        if !self.policy().enabled {
            return Err(refusal(
                RelayRefusal::Disabled,
                "this server runs without a relay (--no-relay)",
            ));
        }
        let mut guard = self.lock();
        let t = &mut *guard;
        t.sweep(now);
        let &(pair, side) = t.tokens.get(&digest(token)).ok_or_else(unknown)?;
        let sides = t.pairs.get_mut(&pair).ok_or_else(unknown)?;
        if !matches!(sides[side].state, SideState::Unused) {
            return Err(unknown());
        }
        let (user, peer) = (sides[side].user.clone(), sides[1 - side].user.clone());
        if matches!(sides[1 - side].state, SideState::Gone) {
            t.bury(pair, side);
            return Err(refusal(
                RelayRefusal::PeerAbsent,
                format!("{peer} left the relay before this side came"),
            ));
        }
        let cap = self.policy().sessions_per_user;
        let seats = t.users.get(&user).map_or(0, |u| u.seats);
        if seats >= cap {
            return Err(refusal(
                RelayRefusal::OverCap,
                format!(
                    "{user} already has {seats} relayed sessions, the most this server allows \
                     (--relay-sessions-per-user {cap}); end one or connect directly"
                ),
            ));
        }
        let (rate, pacer_now) = (self.policy().bytes_per_sec, now);
        let usage = t.users.entry(user.clone()).or_insert_with(|| UserUse {
            seats: 0,
            pacer: Arc::new(Pacer::new(rate, pacer_now)),
        });
        usage.seats += 1;
        let seat = Seat {
            relay: self.clone(),
            pair,
            side,
            user,
            peer,
            pacer: usage.pacer.clone(),
        };
        let sides = t.pairs.get_mut(&pair).expect("pair checked above");
        let other = std::mem::replace(&mut sides[1 - side].state, SideState::Joined);
        match other {
            SideState::Waiting(tx) => {
                sides[side].state = SideState::Joined;
                Ok(Claim::Second { seat, tx })
            }
            other => {
                // Unused (Gone was handled above, Joined cannot be with
                // this side unused).
                sides[1 - side].state = other;
                let (tx, rx) = oneshot::channel();
                sides[side].state = SideState::Waiting(tx);
                Ok(Claim::First { seat, rx })
            }
        }
    }

    /// The first side's pair timeout passed: true if the other side had
    /// not come (this side's token is dead now and the other side will be
    /// told `PeerAbsent`); false if it came meanwhile (its hand-over is on
    /// the seat's receiver).
    pub fn give_up(&self, seat: &Seat<A>) -> bool {
        let mut t = self.lock();
        let waiting = t
            .pairs
            .get(&seat.pair)
            .is_some_and(|s| matches!(s[seat.side].state, SideState::Waiting(_)));
        if waiting {
            t.bury(seat.pair, seat.side);
        }
        waiting
    }

    /// Live tokens (issued, not dead), for tests.
    #[cfg(test)]
    fn live_tokens(&self) -> usize {
        self.lock().tokens.len()
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
