//! Raw clients for the relay and reach tests: log in over the real pinned
//! TLS client, invite and accept with raw requests, join the relay with
//! the daemon's own relay client.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use p2p_proto::limits::WIRE_VERSION;
use p2p_proto::wire::{
    Auth, ClientMsg, Contact, PeerInfo, RelayRefusal, Reply, Request, ServerEvent, ServerMsg,
};
use p2p_proto::Secret;
use p2p_testkit::TestServer;
use p2pd::handshake::ServerConn;
use p2pd::relay_client::{self, RelayError, RelayStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longest wait for one expected message or event.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Every account's password.
pub const PASSWORD: &str = "relay-test-password";

/// A fresh pinned TLS connection to `server`.
pub async fn connect(server: &TestServer) -> ServerConn {
    let pin = p2pd::tlsclient::PinVerifier::new(Some(server.fingerprint.clone()));
    p2pd::handshake::connect(&server.addr.to_string(), None, pin)
        .await
        .expect("connect")
}

/// The next message, within [`DEADLINE`].
pub async fn next(conn: &mut ServerConn) -> ServerMsg {
    tokio::time::timeout(DEADLINE, conn.next())
        .await
        .expect("a message in time")
        .expect("connection open")
        .expect("a decodable message")
}

/// A logged-in raw client.
pub struct Client {
    /// Its account.
    pub user: String,
    /// Its session.
    pub conn: ServerConn,
    /// Its link as the server saw it (`LoginOk.observed_addr`).
    pub observed: SocketAddr,
    next_id: u64,
}

impl Client {
    /// Adds `user` to `server` and logs it in, registering `peer`.
    pub async fn login(server: &TestServer, user: &str, peer: PeerInfo) -> Client {
        server.add_user(user, PASSWORD);
        let mut conn = connect(server).await;
        conn.send(ClientMsg::Login {
            version: WIRE_VERSION,
            user: user.into(),
            auth: Auth::Password {
                password: Secret::new(PASSWORD),
            },
            peer,
        })
        .await
        .unwrap();
        let observed = match next(&mut conn).await {
            ServerMsg::LoginOk { observed_addr, .. } => observed_addr.parse().unwrap(),
            other => panic!("login of {user}: {other:?}"),
        };
        Client {
            user: user.into(),
            conn,
            observed,
            next_id: 0,
        }
    }

    /// Logs `user` in with a listener on `port` and nothing else.
    pub async fn plain(server: &TestServer, user: &str, port: u16) -> Client {
        Self::login(server, user, peer_info(port, None, &[])).await
    }

    async fn request(&mut self, req: Request) -> Reply {
        self.next_id += 1;
        let id = self.next_id;
        self.conn
            .send(ClientMsg::Request { id, req })
            .await
            .unwrap();
        loop {
            match next(&mut self.conn).await {
                ServerMsg::Reply { id: got, reply } if got == id => return reply,
                ServerMsg::Event { .. } => {}
                other => panic!("{}: expected a reply, got {other:?}", self.user),
            }
        }
    }

    /// Broadcasts `text`; its id.
    pub async fn broadcast(&mut self, text: &str) -> u64 {
        let text = text.to_string();
        match self.request(Request::Broadcast { text }).await {
            Reply::BroadcastStored { id, .. } => id,
            other => panic!("{}: broadcast: {other:?}", self.user),
        }
    }

    async fn event(&mut self) -> ServerEvent {
        match next(&mut self.conn).await {
            ServerMsg::Event { event } => event,
            other => panic!("{}: expected an event, got {other:?}", self.user),
        }
    }
}

/// Peer details for a login.
pub fn peer_info(port: u16, advertise: Option<&str>, lan: &[&str]) -> PeerInfo {
    PeerInfo {
        port,
        advertise: advertise.map(str::to_string),
        public_key: "ab".repeat(32),
        lan: lan.iter().map(|s| s.to_string()).collect(),
    }
}

/// `inviter` invites `invitee`, who accepts: (the inviter's contact from
/// `Accepted`, the invitee's from `Answered`).
pub async fn accepted(inviter: &mut Client, invitee: &mut Client) -> (Contact, Contact) {
    let to = invitee.user.clone();
    match inviter.request(Request::Invite { to }).await {
        Reply::Invited { .. } => {}
        other => panic!("invite: {other:?}"),
    }
    let invite = match invitee.event().await {
        ServerEvent::Invitation { invite, .. } => invite,
        other => panic!("expected the invitation, got {other:?}"),
    };
    let mine = match invitee
        .request(Request::Answer {
            invite,
            accept: true,
        })
        .await
    {
        Reply::Answered {
            contact: Some(c), ..
        } => c,
        other => panic!("answer: {other:?}"),
    };
    let theirs = match inviter.event().await {
        ServerEvent::Accepted { contact, .. } => contact,
        other => panic!("expected Accepted, got {other:?}"),
    };
    (theirs, mine)
}

/// The relay tokens of a freshly accepted session between two new users
/// (inviter's, invitee's); the clients stay logged in.
pub async fn tokens(server: &TestServer, a: &str, b: &str) -> (Secret, Secret, [Client; 2]) {
    let mut ca = Client::plain(server, a, 4001).await;
    let mut cb = Client::plain(server, b, 4002).await;
    let (ta, tb) = accepted(&mut ca, &mut cb).await;
    (
        ta.relay.expect("a token"),
        tb.relay.expect("a token"),
        [ca, cb],
    )
}

/// Joins the relay with `token` on a fresh connection.
pub async fn join(server: &TestServer, token: Secret) -> Result<(String, RelayStream), RelayError> {
    relay_client::join(connect(server).await, token).await
}

/// Joins and expects a refusal with `code`; returns its message.
pub async fn refused(server: &TestServer, token: Secret, code: RelayRefusal) -> String {
    match join(server, token).await {
        Err(RelayError::Refused { code: got, message }) => {
            assert_eq!(got, code, "{message}");
            message
        }
        Err(e) => panic!("expected {code:?}, got {e}"),
        Ok((peer, _)) => panic!("expected {code:?}, got paired with {peer}"),
    }
}

/// Both sides join at once: (inviter's stream, invitee's stream).
pub async fn pair(server: &TestServer, ta: Secret, tb: Secret) -> (RelayStream, RelayStream) {
    let (a, b) = tokio::join!(join(server, ta), join(server, tb));
    (
        a.expect("first side joins").1,
        b.expect("second side joins").1,
    )
}

/// Deterministic bytes that show loss, duplication or reordering.
pub fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u64)
                .wrapping_mul(2_654_435_761)
                .wrapping_add(seed as u64) as u8
        })
        .collect()
}

/// Writes `out` into `s` while reading `expect_len` bytes from it; returns
/// what was read.
pub async fn exchange(s: RelayStream, out: Vec<u8>, expect_len: usize) -> Vec<u8> {
    let (mut r, mut w) = tokio::io::split(s);
    let write = async move {
        w.write_all(&out).await.expect("write");
        w.flush().await.expect("flush");
        w
    };
    let read = async move {
        let mut got = vec![0u8; expect_len];
        r.read_exact(&mut got).await.expect("read");
        got
    };
    let (_w, got) = tokio::time::timeout(Duration::from_secs(120), async {
        tokio::join!(write, read)
    })
    .await
    .expect("exchange in time");
    got
}

/// Waits until the server's log contains `needle`.
pub fn log_has(server: &TestServer, needle: &str) {
    p2p_testkit::wait_for(DEADLINE, needle, || {
        server.log().contains(needle).then_some(())
    });
}
