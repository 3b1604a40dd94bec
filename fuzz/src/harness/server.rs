//! Targets for what p2p-server decodes: client frames (then the checks and
//! stores a logged-in or logging-in client reaches) and `users.csv`.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use p2p_proto::codec;
use p2p_proto::limits::{
    DEFAULT_BROADCAST_LIMIT, DEFAULT_BROADCAST_TTL, DEFAULT_BROADCAST_WINDOW, INVITATION_TTL,
    MAX_BROADCAST_BYTES,
};
use p2p_proto::names::{validate_password, validate_username};
use p2p_proto::wire::{Auth, ClientMsg, LoginError, RefusalCode, RelayRefusal, Request};
use p2p_server::auth::Authenticator;
use p2p_server::broadcast::{BroadcastHub, BroadcastPolicy, Delivery, SqliteBroadcasts};
use p2p_server::invitations::Invitations;
use p2p_server::presence::Presence;
use p2p_server::relay::{Relay, RelayPolicy};
use p2p_server::tokens::TokenStore;
use p2p_server::users::{UserDb, UserFile};
use tokio_util::bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use super::MAX_ITEMS_PER_INPUT;

/// The account every decoded request is made as.
pub const ME: &str = "alice";
/// Accounts in the fixture's `users.csv`.
pub const ACCOUNTS: &[&str] = &[ME, "bob", "carol"];
/// A syntactically valid argon2id hash (of a password nobody knows): logins
/// by password are not run here (one argon2 check costs more than thousands
/// of fuzz runs), only the checks before it.
pub const SOME_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3rxGrQq7uCsxRdAz6T9q1Zr2HUjK7s4I8lZ6m3zY9mE";

/// A real server's account, token, broadcast and invitation state in a
/// temp dir, shared by every run of a process.
pub struct Fixture {
    rt: tokio::runtime::Runtime,
    auth: Authenticator,
    hub: Arc<BroadcastHub>,
    presence: Arc<Presence>,
    invitations: Arc<Invitations>,
    relay: Arc<Relay>,
}

/// The process-wide server fixture, one per thread: a test that panics
/// (poisoning a lock in it) cannot fail the tests running beside it.
pub fn fixture() -> &'static Fixture {
    thread_local! {
        static F: &'static Fixture = Box::leak(Box::new(Fixture::new()));
    }
    F.with(|f| *f)
}

impl Fixture {
    fn new() -> Self {
        let dir = super::fixture_dir();
        let file = UserFile::in_dir(dir.as_path());
        for name in ACCOUNTS {
            file.add_hashed(name, SOME_HASH.into()).expect("account");
        }
        let users = Arc::new(UserDb::open(dir.as_path()).expect("users"));
        let tokens = Arc::new(TokenStore::open(dir.as_path()).expect("tokens"));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let store = Arc::new(SqliteBroadcasts::open(dir.as_path()).expect("broadcasts"));
        let hub = rt.block_on(async {
            BroadcastHub::start(
                store,
                BroadcastPolicy {
                    ttl: DEFAULT_BROADCAST_TTL,
                    limit: DEFAULT_BROADCAST_LIMIT,
                    window: DEFAULT_BROADCAST_WINDOW,
                },
            )
        });
        Fixture {
            rt,
            auth: Authenticator::new(users, tokens, 1, false, Default::default())
                .expect("hashing threads"),
            hub,
            presence: Arc::new(Presence::default()),
            invitations: Arc::new(Invitations::new(INVITATION_TTL, Default::default())),
            relay: Arc::new(Relay::new(RelayPolicy::default())),
        }
    }
}

/// Client → server frames, as a connection decodes them, each message taken
/// as far as the server takes it: login checks (token logins for real),
/// broadcasts stored, invitations made and answered, acknowledgements.
pub fn server_frames(data: &[u8]) {
    let f = fixture();
    let mut rx = codec::server_side();
    let mut buf = BytesMut::from(&*super::framed(data));
    for _ in 0..MAX_ITEMS_PER_INPUT {
        let msg = match rx.decode(&mut buf) {
            Ok(Some(m)) => m,
            Ok(None) | Err(_) => return,
        };
        round_trip(&msg);
        client_msg(f, msg);
    }
}

fn round_trip(msg: &ClientMsg) {
    let mut buf = BytesMut::new();
    if codec::client_side().encode(msg.clone(), &mut buf).is_ok() {
        let back = codec::server_side().decode(&mut buf).expect("re-decodes");
        assert_eq!(back.as_ref(), Some(msg), "client message round trip");
    }
}

/// One decoded client message through the server's handling.
pub fn client_msg(f: &Fixture, msg: ClientMsg) {
    let addr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    match msg {
        ClientMsg::Login { user, auth, .. } => match &auth {
            Auth::Token { .. } | Auth::Register { .. } => {
                let r = f.rt.block_on(f.auth.login(&user, &auth, addr));
                // No token was ever issued and registration is closed.
                let Err(refusal) = r else {
                    panic!("an unknown token or a closed registration logged in as {user:?}");
                };
                if validate_username(&user).is_err() {
                    assert_eq!(refusal.code, LoginError::BadUsername);
                }
            }
            Auth::Password { password } => {
                let _ = validate_username(&user);
                let _ = validate_password(password.expose());
            }
        },
        ClientMsg::Request { req, .. } => request(f, req),
        // Through the session's delivery, as `conn.rs` does (it clamps).
        ClientMsg::BroadcastAck { upto } => f.rt.block_on(async {
            if let Ok(d) = Delivery::start(f.hub.clone(), ME).await {
                d.ack(upto);
            }
        }),
        ClientMsg::Ping { .. } | ClientMsg::Pong { .. } | ClientMsg::Logout => {}
        // As `conn/relayed.rs` does with a connection's first message. Nobody
        // here is online, so no invitation is ever accepted and no token
        // issued: every token is refused, and refused without a panic.
        ClientMsg::Relay { token, .. } => {
            let now = tokio::time::Instant::now();
            match f.relay.claim(&token, now) {
                Err(r) => assert_eq!(r.code, RelayRefusal::UnknownToken, "{}", r.message),
                Ok(_) => panic!("the relay took a token it never issued"),
            }
        }
        // Answered with the connection's address; nothing to decode.
        ClientMsg::Observe { .. } => {}
    }
}

fn request(f: &Fixture, req: Request) {
    match req {
        Request::Broadcast { text } => {
            let too_long = text.len() > MAX_BROADCAST_BYTES;
            let r = f.rt.block_on(f.hub.publish(ME, text));
            if too_long {
                assert_eq!(r.err().map(|e| e.code()), Some(RefusalCode::TooLarge));
            }
        }
        Request::Invite { to } => {
            // As `conn.rs` does: any name, unknown and offline alike.
            let _ = f.invitations.invite(
                &f.presence,
                ME,
                1,
                std::net::Ipv4Addr::LOCALHOST.into(),
                &to,
            );
        }
        Request::Answer { invite, accept } => {
            let _ = f
                .invitations
                .answer(&f.presence, &f.relay, ME, 1, invite, accept);
        }
        Request::List => {
            let _ = f.presence.list();
        }
    }
}

/// `users.csv` as the server and the admin commands read it.
pub fn users_csv(data: &[u8]) {
    let dir = super::scratch();
    std::fs::write(dir.path().join(p2p_server::users::USERS_FILE), data).expect("write");
    let loaded = UserFile::in_dir(dir.path()).load();
    match UserDb::open(dir.path()) {
        Ok(db) => {
            let n = loaded.expect("the same file loads both ways").len();
            assert!(db.count() <= n);
            for name in ACCOUNTS {
                let _ = db.hash_of(name);
                let _ = db.exists(name);
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}
