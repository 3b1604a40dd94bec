//! Golden JSON fixtures of the control protocol: every `--json` document of
//! SPEC Appendix A (and the other command results, the greeting and an
//! error line) as a file in `tests/fixtures/`. Each test builds the typed
//! value, serializes it and compares it with the fixture (as JSON values:
//! key order is not part of the contract), then decodes the fixture back.
//! A change to a control type that changes its JSON fails here.
//!
//! To write a fixture for a new document, run with `P2P_BLESS_FIXTURES=1`
//! and review the file; never bless a change to an existing one without a
//! protocol version bump.

use std::fmt::Debug;
use std::path::PathBuf;

use p2p_proto::ctl::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

const AT: &str = "2026-11-30T14:05:09Z";
const LATER: &str = "2026-11-30T14:06:09Z";

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.json"))
}

fn load(name: &str) -> Value {
    let p = path(name);
    let text = std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e} (P2P_BLESS_FIXTURES=1 writes it)", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Serializes `v`, compares with the fixture `name`, decodes it back.
fn golden<T>(name: &str, v: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let got = serde_json::to_value(v).unwrap();
    if std::env::var_os("P2P_BLESS_FIXTURES").is_some() && !path(name).exists() {
        let text = serde_json::to_string_pretty(&got).unwrap() + "\n";
        std::fs::write(path(name), text).unwrap();
    }
    let want = load(name);
    assert_eq!(got, want, "{name}: the JSON of the typed value changed");
    let back: T = serde_json::from_value(want)
        .unwrap_or_else(|e| panic!("{name}: the fixture does not decode: {e}"));
    assert_eq!(&back, v, "{name}: the fixture decodes to another value");
}

/// A command result: also as the daemon writes it, wrapped in a [`Reply`]
/// inside a response line.
fn golden_reply<T>(name: &str, v: T)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug + Into<Reply> + Clone,
{
    golden(name, &v);
    let line = Response {
        id: 7,
        result: Some(v.into()),
        error: None,
    };
    let line = serde_json::to_value(line).unwrap();
    assert_eq!(line["id"], 7);
    assert_eq!(
        line["result"],
        load(name),
        "{name}: Reply adds or drops something"
    );
    assert_eq!(line.as_object().unwrap().len(), 2, "{name}: {line}");
}

fn session() -> SessionInfo {
    SessionInfo {
        peer: "bob".into(),
        since: AT.into(),
        initiator: true,
        path: SessionPath::Direct,
    }
}

fn entry(kind: InboxKind, seq: u64) -> InboxEntry {
    InboxEntry {
        kind,
        from: "bob".into(),
        text: "hello \"there\"\nsecond line é".into(),
        id: 3,
        at: AT.into(),
        seq,
    }
}

fn online() -> ServerStatus {
    ServerStatus {
        state: ServerState::Online,
        address: Some("rendezvous.example:4400".into()),
        user: Some("alice".into()),
        attempt: 0,
        next_retry_ms: None,
        since: Some(AT.into()),
        last_error: None,
        current: None,
    }
}

/// With several servers (SPEC §9): the list as given, and which one the
/// session is on.
#[test]
fn status_with_a_server_list() {
    golden_reply(
        "status-failover",
        StatusReport {
            server: ServerStatus {
                address: Some("a.example:4400,b.example:4400,c.example:4400".into()),
                current: Some("b.example:4400".into()),
                ..online()
            },
            peer_listen: "0.0.0.0:4401".into(),
            sessions: 0,
            direct: 0,
            relayed: 0,
            pending: 0,
            unread: 0,
            public_key: "ab".repeat(32),
        },
    );
}

#[test]
fn status() {
    golden_reply(
        "status",
        StatusReport {
            server: online(),
            peer_listen: "0.0.0.0:4401".into(),
            sessions: 1,
            direct: 1,
            relayed: 0,
            pending: 2,
            unread: 3,
            public_key: "ab".repeat(32),
        },
    );
    golden_reply(
        "status-connecting",
        StatusReport {
            server: ServerStatus {
                state: ServerState::Connecting,
                attempt: 3,
                next_retry_ms: Some(4000),
                since: None,
                last_error: Some("connection refused".into()),
                ..online()
            },
            peer_listen: "0.0.0.0:4401".into(),
            sessions: 0,
            direct: 0,
            relayed: 0,
            pending: 0,
            unread: 0,
            public_key: "ab".repeat(32),
        },
    );
}

#[test]
fn list_requests_sessions() {
    golden_reply(
        "list",
        UserList {
            users: vec![UserEntry {
                user: "bob".into(),
                since: AT.into(),
            }],
        },
    );
    golden_reply(
        "requests",
        RequestList {
            requests: vec![PendingRequest {
                from: "alice".into(),
                expires_at: LATER.into(),
            }],
        },
    );
    golden_reply(
        "sessions",
        SessionList {
            sessions: vec![session()],
        },
    );
}

#[test]
fn send_inbox_broadcast() {
    golden_reply(
        "send",
        SentList {
            sent: vec![
                SentMessage {
                    to: "bob".into(),
                    id: 1,
                    status: SendStatus::Delivered,
                },
                SentMessage {
                    to: "bob".into(),
                    id: 2,
                    status: SendStatus::Delivered,
                },
            ],
        },
    );
    golden_reply(
        "inbox",
        InboxList {
            messages: vec![
                entry(InboxKind::Message, 41),
                entry(InboxKind::Broadcast, 42),
            ],
            more: false,
        },
    );
    golden_reply(
        "inbox-more",
        InboxList {
            messages: vec![entry(InboxKind::Message, 41)],
            more: true,
        },
    );
    golden_reply(
        "broadcast",
        BroadcastDone {
            broadcast: BroadcastInfo {
                id: 17,
                expires_at: LATER.into(),
            },
        },
    );
}

#[test]
fn other_results() {
    golden_reply(
        "login",
        LoginDone {
            user: "alice".into(),
            server: "rendezvous.example:4400".into(),
            fingerprint: format!("SHA256:{}", "0f".repeat(32)),
        },
    );
    golden_reply(
        "logout",
        LogoutDone {
            user: Some("alice".into()),
        },
    );
    golden_reply("watching", Watching { watching: true });
    golden_reply(
        "netcheck",
        NetcheckReport {
            server: "rendezvous.example:4400".into(),
            public_addr: Some("203.0.113.7:4401".into()),
            peer_listen: "0.0.0.0:4401".into(),
            lan: vec!["192.168.1.20:4401".into()],
            endpoint_independent: Some(true),
            relay: true,
            rtt_ms: Some(12),
            problems: Vec::new(),
        },
    );
    golden_reply(
        "probe",
        ProbeReport {
            server: "rendezvous.example:4400".into(),
            pinned: None,
            fingerprint: Some(format!("SHA256:{}", "0f".repeat(32))),
        },
    );
    golden_reply(
        "connect",
        ConnectDone {
            connected: Some(session()),
            invited: None,
        },
    );
    golden_reply(
        "connect-no-wait",
        ConnectDone {
            connected: None,
            invited: Some(PendingRequest {
                from: "bob".into(),
                expires_at: LATER.into(),
            }),
        },
    );
    golden_reply(
        "accept",
        Answered {
            peer: "alice".into(),
            accepted: true,
            session: Some(SessionInfo {
                peer: "alice".into(),
                initiator: false,
                ..session()
            }),
        },
    );
    golden_reply(
        "reject",
        Answered {
            peer: "alice".into(),
            accepted: false,
            session: None,
        },
    );
    golden_reply(
        "disconnect",
        Disconnected {
            disconnected: "bob".into(),
        },
    );
}

#[test]
fn watch_events() {
    golden("event-server", &Event::Server(online()));
    golden(
        "event-request",
        &Event::Request(PendingRequest {
            from: "alice".into(),
            expires_at: LATER.into(),
        }),
    );
    golden("event-connected", &Event::Connected(session()));
    golden(
        "event-rejected",
        &Event::Rejected {
            peer: "bob".into(),
            reason: "expired".into(),
        },
    );
    golden(
        "event-message",
        &Event::Message(entry(InboxKind::Message, 41)),
    );
    golden(
        "event-broadcast",
        &Event::Broadcast(entry(InboxKind::Broadcast, 42)),
    );
    golden(
        "event-disconnected",
        &Event::Disconnected {
            peer: "bob".into(),
            reason: "closed by peer".into(),
        },
    );
    golden(
        "event-key_changed",
        &Event::KeyChanged {
            peer: "bob".into(),
            old_key: "ab".repeat(32),
            new_key: "cd".repeat(32),
        },
    );
}

#[test]
fn errors_and_greeting() {
    golden(
        "error",
        &ErrorDocument {
            error: ErrorBody {
                code: "no_session".into(),
                message: "no session with bob; run p2pctl connect bob".into(),
            },
            sent: None,
        },
    );
    golden(
        "error-partial-send",
        &ErrorDocument {
            error: ErrorBody {
                code: "too_large".into(),
                message: "line 3 is 70000 bytes; the limit is 65536. Nothing of it was sent".into(),
            },
            sent: Some(vec![SentMessage {
                to: "bob".into(),
                id: 1,
                status: SendStatus::Delivered,
            }]),
        },
    );
    golden(
        "response-error",
        &Response::<Value> {
            id: 3,
            result: None,
            error: Some(CtlError::new(ErrorCode::NotOnline, "bob is not online")),
        },
    );
    golden(
        "greeting",
        &Greeting {
            hello: DaemonHello {
                protocol: p2p_proto::limits::CTL_VERSION,
                daemon: "0.1.0".into(),
                pending: vec!["carol".into()],
                key_changed: Vec::new(),
            },
        },
    );
}

/// The §11 documents: contacts, outbox, history, verify, trust and the
/// contact changes.
#[test]
fn contacts_outbox_history_verify() {
    golden_reply(
        "contacts",
        ContactList {
            contacts: vec![ContactInfo {
                user: "bob".into(),
                since: "2026-11-30T18:00:00Z".into(),
                online: true,
                verified: false,
                key: "ab".repeat(32),
                key_changed: false,
                held: false,
            }],
            blocked: vec!["mallory".into()],
        },
    );
    golden_reply(
        "forget",
        ContactDone {
            user: "bob".into(),
            forgotten: true,
            blocked: false,
            dropped: 2,
        },
    );
    golden_reply(
        "send-queued",
        SentList {
            sent: vec![SentMessage {
                to: "bob".into(),
                id: 7,
                status: SendStatus::Queued,
            }],
        },
    );
    golden_reply(
        "outbox",
        OutboxList {
            outbox: vec![OutboxEntry {
                to: "bob".into(),
                id: 7,
                text: "see you at 6".into(),
                at: "2026-11-30T18:00:00Z".into(),
            }],
        },
    );
    golden_reply(
        "history",
        HistoryList {
            history: vec![
                HistoryEntry {
                    dir: Direction::In,
                    text: "hi".into(),
                    at: "2026-11-30T17:59:00Z".into(),
                    status: SendStatus::Delivered,
                    id: 3,
                },
                HistoryEntry {
                    dir: Direction::Out,
                    text: "see you at 6".into(),
                    at: "2026-11-30T18:00:00Z".into(),
                    status: SendStatus::Queued,
                    id: 7,
                },
            ],
        },
    );
    golden_reply(
        "verify",
        VerifyDone {
            verify: VerifyInfo {
                user: "bob".into(),
                safety_number: p2p_proto::safety::safety_number(&[1; 32], &[2; 32]),
                verified: true,
                held: false,
            },
        },
    );
    golden_reply(
        "trust",
        TrustDone {
            trusted: "bob".into(),
            key: "cd".repeat(32),
        },
    );
    golden(
        "event-queued",
        &Event::Queued {
            to: "bob".into(),
            id: 7,
        },
    );
    golden(
        "event-delivered",
        &Event::Delivered {
            to: "bob".into(),
            id: 7,
        },
    );
}

/// The fields SPEC Appendix A requires, by JSON pointer, are in the
/// fixtures: a fixture cannot lose one without this failing too.
#[test]
fn fixtures_hold_the_fields_the_spec_requires() {
    let required: &[(&str, &[&str])] = &[
        (
            "status",
            &[
                "/server/state",
                "/server/address",
                "/server/user",
                "/server/attempt",
                "/server/next_retry_ms",
                "/peer_listen",
                "/sessions",
                "/pending",
                "/unread",
            ],
        ),
        ("status-failover", &["/server/address", "/server/current"]),
        ("list", &["/users/0/user", "/users/0/since"]),
        ("requests", &["/requests/0/from", "/requests/0/expires_at"]),
        (
            "sessions",
            &[
                "/sessions/0/peer",
                "/sessions/0/since",
                "/sessions/0/initiator",
                "/sessions/0/path",
            ],
        ),
        ("send", &["/sent/0/to", "/sent/0/id"]),
        (
            "inbox",
            &[
                "/messages/0/kind",
                "/messages/0/from",
                "/messages/0/text",
                "/messages/0/id",
                "/messages/0/at",
            ],
        ),
        ("broadcast", &["/broadcast/id", "/broadcast/expires_at"]),
        ("event-request", &["/event", "/from"]),
        ("event-connected", &["/event", "/peer"]),
        ("event-rejected", &["/event", "/peer"]),
        ("event-message", &["/event", "/from", "/text", "/id", "/at"]),
        (
            "event-broadcast",
            &["/event", "/from", "/text", "/id", "/at"],
        ),
        ("event-disconnected", &["/event", "/peer"]),
        ("event-server", &["/event", "/state"]),
        ("event-key_changed", &["/event", "/peer"]),
        ("error", &["/error/code", "/error/message"]),
        (
            "contacts",
            &[
                "/contacts/0/user",
                "/contacts/0/since",
                "/contacts/0/online",
                "/contacts/0/verified",
                "/contacts/0/key",
            ],
        ),
        (
            "send-queued",
            &["/sent/0/to", "/sent/0/id", "/sent/0/status"],
        ),
        (
            "outbox",
            &[
                "/outbox/0/to",
                "/outbox/0/id",
                "/outbox/0/text",
                "/outbox/0/at",
            ],
        ),
        (
            "history",
            &[
                "/history/0/dir",
                "/history/0/text",
                "/history/0/at",
                "/history/0/status",
            ],
        ),
        (
            "verify",
            &["/verify/user", "/verify/safety_number", "/verify/verified"],
        ),
    ];
    for (name, pointers) in required {
        let doc = load(name);
        for p in *pointers {
            assert!(doc.pointer(p).is_some(), "{name}: {p} is missing");
        }
    }
    assert_eq!(load("status")["server"]["next_retry_ms"], Value::Null);
    assert_eq!(load("event-message")["event"], "message");
}
