//! The seed corpus: real messages serialised by the real encoders, one
//! list per target. `crates/server/tests/fuzz_regressions.rs` replays them
//! on every test run and (with `P2P_FUZZ_WRITE_SEEDS=1`) writes them to
//! `fuzz/corpus/<target>/seed-<name>`.

use std::time::Duration;

use p2p_proto::codec::{self, LineCodec};
use p2p_proto::ctl::{self, Command, LoginArgs};
use p2p_proto::peer::{PeerHello, PeerMsg};
use p2p_proto::wire::{
    Auth, ClientMsg, CloseReason, Contact, InviteEnd, LoginError, OnlineUser, PeerInfo, Preamble,
    Reply, Request, ServerEvent, ServerMsg,
};
use p2p_proto::Secret;
use tokio_util::bytes::{BufMut, BytesMut};
use tokio_util::codec::Encoder;

/// One seed: target, file name, bytes.
pub type Seed = (&'static str, String, Vec<u8>);

/// The time in every seed (2026-11-18T11:06:40Z): fixed, so rewriting the seeds
/// changes nothing unless the encoders changed.
const NOW_MS: i64 = 1_795_000_000_000;

const KEY: &str = "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29";

fn client_msgs() -> Vec<(&'static str, ClientMsg)> {
    let peer = PeerInfo {
        port: 4401,
        advertise: None,
        public_key: KEY.into(),
        lan: Vec::new(),
    };
    let login = |auth| ClientMsg::Login {
        version: p2p_proto::limits::WIRE_VERSION,
        user: "alice".into(),
        auth,
        peer: peer.clone(),
    };
    let req = |id, req| ClientMsg::Request { id, req };
    vec![
        (
            "login-password",
            login(Auth::Password {
                password: Secret::new("correct horse"),
            }),
        ),
        (
            "login-token",
            login(Auth::Token {
                token: Secret::new("0123456789abcdef0123456789abcdef"),
            }),
        ),
        (
            "login-register",
            login(Auth::Register {
                password: Secret::new("correct horse"),
            }),
        ),
        ("list", req(1, Request::List)),
        ("invite", req(2, Request::Invite { to: "bob".into() })),
        (
            "broadcast",
            req(
                3,
                Request::Broadcast {
                    text: "maintenance at 18:00".into(),
                },
            ),
        ),
        (
            "answer",
            req(
                4,
                Request::Answer {
                    invite: 7,
                    accept: true,
                },
            ),
        ),
        ("ping", ClientMsg::Ping { nonce: 42 }),
        ("pong", ClientMsg::Pong { nonce: 42 }),
        ("broadcast-ack", ClientMsg::BroadcastAck { upto: 3 }),
        ("logout", ClientMsg::Logout),
        (
            "relay",
            ClientMsg::Relay {
                version: p2p_proto::limits::WIRE_VERSION,
                token: Secret::new("ab".repeat(32)),
            },
        ),
        (
            "observe",
            ClientMsg::Observe {
                version: p2p_proto::limits::WIRE_VERSION,
            },
        ),
    ]
}

fn server_msgs() -> Vec<(&'static str, ServerMsg)> {
    let now = NOW_MS;
    let contact = Contact {
        user: "bob".into(),
        addr: "127.0.0.1:4401".into(),
        public_key: KEY.into(),
        paths: vec!["127.0.0.1:4401".into(), "10.0.0.9:4401".into()],
        your_addr: Some("127.0.0.1:4402".into()),
        relay: Some(Secret::new("ab".repeat(32))),
    };
    let event = |event| ServerMsg::Event { event };
    let reply = |id, reply| ServerMsg::Reply { id, reply };
    vec![
        (
            "login-ok",
            ServerMsg::LoginOk {
                user: "alice".into(),
                token: Secret::new("0123456789abcdef"),
                observed_addr: "127.0.0.1:50000".into(),
                server_time_ms: now,
            },
        ),
        (
            "login-failed",
            ServerMsg::LoginFailed {
                code: LoginError::Busy,
                message: "busy".into(),
                retry_after_ms: Some(2000),
            },
        ),
        (
            "users",
            reply(
                1,
                Reply::Users {
                    users: vec![OnlineUser {
                        user: "bob".into(),
                        since_ms: now,
                    }],
                },
            ),
        ),
        (
            "invited",
            reply(
                2,
                Reply::Invited {
                    invite: 7,
                    expires_ms: now + 60_000,
                },
            ),
        ),
        (
            "broadcast-stored",
            reply(
                3,
                Reply::BroadcastStored {
                    id: 1,
                    expires_ms: now + 1_800_000,
                },
            ),
        ),
        (
            "answered",
            reply(
                4,
                Reply::Answered {
                    invite: 7,
                    contact: Some(contact.clone()),
                },
            ),
        ),
        (
            "error",
            reply(
                5,
                Reply::Error {
                    code: p2p_proto::wire::RefusalCode::NotOnline,
                    message: "bob is not online".into(),
                },
            ),
        ),
        (
            "invitation",
            event(ServerEvent::Invitation {
                invite: 8,
                from: "carol".into(),
                expires_ms: now + 60_000,
            }),
        ),
        (
            "invitation-closed",
            event(ServerEvent::InvitationClosed {
                invite: 8,
                reason: InviteEnd::Expired,
            }),
        ),
        (
            "accepted",
            event(ServerEvent::Accepted { invite: 7, contact }),
        ),
        (
            "broadcast",
            event(ServerEvent::Broadcast {
                id: 1,
                from: "bob".into(),
                text: "maintenance at 18:00".into(),
                sent_ms: now,
                expires_ms: now + 1_800_000,
            }),
        ),
        (
            "declined",
            event(ServerEvent::Declined {
                invite: 7,
                to: "bob".into(),
                reason: InviteEnd::Rejected,
            }),
        ),
        ("ping", ServerMsg::Ping { nonce: 1 }),
        ("pong", ServerMsg::Pong { nonce: 1 }),
        (
            "closing",
            ServerMsg::Closing {
                reason: CloseReason::Shutdown,
                message: "server shutting down".into(),
            },
        ),
    ]
}

fn commands() -> Vec<(&'static str, Command)> {
    let args = LoginArgs {
        server: "127.0.0.1:4400".into(),
        user: "alice".into(),
        password: Secret::new("correct horse"),
        fingerprint: Some(format!("SHA256:{KEY}")),
    };
    vec![
        ("status", Command::Status),
        ("login", Command::Login(args.clone())),
        ("register", Command::Register(args)),
        ("logout", Command::Logout),
        ("list", Command::List),
        ("watch", Command::Watch),
        (
            "connect",
            Command::Connect {
                user: "bob".into(),
                timeout_ms: Some(1000),
                no_wait: true,
            },
        ),
        ("requests", Command::Requests),
        ("accept", Command::Accept { user: "bob".into() }),
        ("reject", Command::Reject { user: "bob".into() }),
        ("sessions", Command::Sessions),
        (
            "send",
            Command::Send {
                user: "bob".into(),
                texts: vec!["hello".into(), "again".into()],
                now: false,
            },
        ),
        ("disconnect", Command::Disconnect { user: "bob".into() }),
        (
            "broadcast",
            Command::Broadcast {
                text: "maintenance at 18:00".into(),
            },
        ),
        (
            "inbox",
            Command::Inbox {
                all: true,
                from: Some("bob".into()),
                follow: false,
                after: Some(3),
            },
        ),
    ]
}

fn peer_msgs() -> Vec<(&'static str, PeerMsg)> {
    vec![
        (
            "message",
            PeerMsg::Message {
                id: 1,
                text: "hello".into(),
                at_ms: NOW_MS,
                mid: Some(42),
            },
        ),
        ("ack", PeerMsg::Ack { upto: 1 }),
        ("ping", PeerMsg::Ping),
        ("pong", PeerMsg::Pong),
        ("bye", PeerMsg::Bye),
    ]
}

/// The same messages as JSON lines (see `harness::framed`): each alone
/// (`json-NAME`), then all of them (`json-all`).
fn json_lines(target: &'static str, items: Vec<(&'static str, Vec<u8>)>) -> Vec<Seed> {
    let all = items
        .iter()
        .map(|(_, b)| b.clone())
        .collect::<Vec<_>>()
        .join(&b'\n');
    let mut out: Vec<Seed> = items
        .into_iter()
        .map(|(n, b)| (target, format!("json-{n}"), b))
        .collect();
    out.push((target, "json-all".into(), all));
    out
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("serialises")
}

/// Each message alone, then all of them in one input.
fn with_all(target: &'static str, items: Vec<(&'static str, Vec<u8>)>) -> Vec<Seed> {
    let all = items.iter().flat_map(|(_, b)| b.clone()).collect();
    let mut out: Vec<Seed> = items
        .into_iter()
        .map(|(n, b)| (target, n.to_string(), b))
        .collect();
    out.push((target, "all".into(), all));
    out
}

fn encode<T, C: Encoder<T>>(mut c: C, v: T) -> Vec<u8>
where
    C::Error: std::fmt::Debug,
{
    let mut buf = BytesMut::new();
    c.encode(v, &mut buf).expect("seed encodes");
    buf.to_vec()
}

/// A peer frame as `peer/noise.rs` writes one into the plaintext stream.
fn peer_frame(m: &PeerMsg) -> Vec<u8> {
    let body = serde_json::to_vec(m).expect("serialises");
    let mut buf = BytesMut::new();
    buf.put_u32(body.len() as u32);
    buf.put_slice(&body);
    buf.to_vec()
}

/// Every seed of every target.
pub fn seeds() -> Vec<Seed> {
    let mut out = Vec::new();
    out.extend(json_lines(
        "server_frames",
        client_msgs().iter().map(|(n, m)| (*n, json(m))).collect(),
    ));
    out.extend(json_lines(
        "client_frames",
        server_msgs().iter().map(|(n, m)| (*n, json(m))).collect(),
    ));
    out.extend(json_lines(
        "peer_frames",
        peer_msgs().iter().map(|(n, m)| (*n, json(m))).collect(),
    ));
    let frames = client_msgs()
        .into_iter()
        .map(|(n, m)| (n, encode(codec::client_side(), m)))
        .collect();
    out.extend(with_all("server_frames", frames));
    let frames = server_msgs()
        .into_iter()
        .map(|(n, m)| (n, encode(codec::server_side(), m)))
        .collect();
    out.extend(with_all("client_frames", frames));
    let lines: Vec<_> = commands()
        .into_iter()
        .enumerate()
        .map(|(i, (n, cmd))| {
            let r = ctl::Request {
                id: i as u64 + 1,
                cmd,
            };
            (n, encode(LineCodec::<(), ctl::Request>::new(usize::MAX), r))
        })
        .collect();
    out.extend(with_all("ctl_request", lines));
    let frames = peer_msgs()
        .iter()
        .map(|(n, m)| (*n, peer_frame(m)))
        .collect();
    out.extend(with_all("peer_frames", frames));
    let hello = PeerHello {
        user: "alice".into(),
        invite: 7,
    };
    out.push((
        "peer_frames",
        "hello".into(),
        serde_json::to_vec(&hello).expect("serialises"),
    ));
    out.extend(ctl_response_seeds());
    out.push((
        "preamble",
        "ready".into(),
        Preamble::Ready.encode().to_vec(),
    ));
    out.push((
        "preamble",
        "busy".into(),
        Preamble::Busy {
            retry_after: Duration::from_secs(5),
        }
        .encode()
        .to_vec(),
    ));
    out.push(("state_files", "real".into(), state_files_seed()));
    out.push(("users_csv", "real".into(), users_csv_seed()));
    for (n, s) in [
        ("seconds", "90s"),
        ("minutes", "5m"),
        ("mixed", "1h 30m"),
        ("millis", "250ms"),
        (
            "config",
            "reconnect_min = \"1s\"\nreconnect_max = \"60s\"\nauto_accept = [\"bob\"]\n",
        ),
    ] {
        out.push(("durations", n.into(), s.as_bytes().to_vec()));
    }
    out
}

fn ctl_response_seeds() -> Vec<Seed> {
    let line = |v: serde_json::Value| {
        let mut b = serde_json::to_vec(&v).expect("serialises");
        b.push(b'\n');
        b
    };
    let greeting = serde_json::json!({"hello": {"protocol": 1, "daemon": "0.1.0"}});
    let ok = serde_json::json!({"id": 1, "result": {"messages": [{"kind": "message", "from": "bob",
        "text": "hello", "id": 1, "at": "2026-11-30T12:00:00Z", "seq": 1}]}});
    let err = serde_json::json!({"id": 2, "error": {"code": "not_logged_in", "message": "not logged in"}});
    let event = serde_json::json!({"event": "message", "kind": "message", "from": "bob",
        "text": "hello", "id": 1, "at": "2026-11-30T12:00:00Z", "seq": 1});
    let items = vec![
        ("greeting", line(greeting)),
        ("inbox", line(ok)),
        ("error", line(err)),
        ("event", line(event)),
    ];
    with_all("ctl_response", items)
}

fn state_files_seed() -> Vec<u8> {
    let dir = super::scratch();
    let state = p2pd::state::StateDir::open(dir.path()).expect("state dir");
    // A fixed identity (not a real key: seeds are public), written as
    // `StateDir::identity` writes one.
    let id = p2pd::state::Identity {
        private: Secret::new("11".repeat(32)),
        public: KEY.into(),
    };
    std::fs::write(
        dir.path().join("identity.json"),
        serde_json::to_vec_pretty(&id).expect("serialises"),
    )
    .expect("identity");
    state
        .save_session(Some(&p2pd::state::SavedSession {
            server: "server.example:4400".into(),
            user: "alice".into(),
            token: Some(Secret::new("0123456789abcdef")),
        }))
        .expect("session");
    state
        .set_pin("server.example:4400", &format!("SHA256:{KEY}"))
        .expect("pin");
    state.set_known_key("bob", KEY).expect("peer key");
    let mut out = Vec::new();
    for name in [
        "identity.json",
        "session.json",
        "known_servers.json",
        "known_peers.json",
    ] {
        if !out.is_empty() {
            out.push(0);
        }
        out.extend(std::fs::read(dir.path().join(name)).expect("state file"));
    }
    out
}

fn users_csv_seed() -> Vec<u8> {
    let dir = super::scratch();
    let file = p2p_server::users::UserFile::in_dir(dir.path());
    for name in ["alice", "bob"] {
        file.add_hashed(name, super::server::SOME_HASH.into())
            .expect("account");
    }
    let text = std::fs::read_to_string(file.path()).expect("users.csv");
    // The same file with a fixed creation time, so the seed is stable.
    let created = p2p_proto::time::rfc3339(NOW_MS);
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        match line.rsplit_once(',') {
            Some((head, _)) if i > 0 => out.push_str(&format!("{head},{created}\n")),
            _ => out.push_str(&format!("{line}\n")),
        }
    }
    out.into_bytes()
}
