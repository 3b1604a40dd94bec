//! Property tests (stable, in CI): arbitrary in-range and out-of-range
//! values — times over all of i64, huge ids and counts, long texts, names
//! with control characters and any Unicode — through the same functions the
//! fuzz targets run (`fuzz/src/harness`: decode → validate → store →
//! format). Nothing may panic, and a value out of range gets a clear error.
//!
//! `out_of_range_times_do_not_panic` is its own test: it covers the RFC 3339
//! formatting of network times, which panics for times before 1970 or after
//! year 9999 until that range check lands (issue 14, item 3).

#[allow(dead_code)]
#[path = "../../../fuzz/src/harness/mod.rs"]
mod harness;

use std::time::Duration;

use p2p_proto::codec;
use p2p_proto::ctl::{self, Command, ErrorCode, LoginArgs};
use p2p_proto::limits::{MAX_BROADCAST_BYTES, MAX_MESSAGE_BYTES};
use p2p_proto::names::validate_username;
use p2p_proto::peer::PeerMsg;
use p2p_proto::wire::{
    Auth, ClientMsg, OnlineUser, PeerInfo, Reply, Request, ServerEvent, ServerMsg,
};
use p2p_proto::Secret;
use p2pd::inbox::{Incoming, Kind};
use proptest::prelude::*;
use tokio_util::bytes::{BufMut, BytesMut};
use tokio_util::codec::Encoder;

/// Last millisecond RFC 3339 (four-digit years) can show: 9999-12-31T23:59:59.999Z.
const MAX_RFC3339_MS: i64 = 253_402_300_799_999;

/// Times a peer or server can claim: in range, just outside, and extremes.
fn any_time() -> impl Strategy<Value = i64> {
    prop_oneof![
        0..=MAX_RFC3339_MS,
        i64::MIN..0,
        (MAX_RFC3339_MS + 1)..=i64::MAX,
        Just(-1i64),
        Just(i64::MIN),
        Just(i64::MAX),
        Just(MAX_RFC3339_MS + 1),
    ]
}

/// Names as a hostile peer or user picks them: valid ones, control
/// characters, escapes, any Unicode, too long.
fn any_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9][a-z0-9_.-]{0,31}",
        "[a-z]{1,8}[\\x00-\\x1f\\x7f][a-z]{0,8}",
        "\\PC{0,40}",
        ".{0,40}",
        "\x1b\\]52;c;[A-Za-z0-9+/=]{0,16}\x07",
        "[a-z]{33,64}",
    ]
}

/// Texts with control characters and any Unicode, sometimes past a limit.
fn any_text(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,64}",
        "[\\x00-\\x7f]{0,64}",
        "\x1b\\[2J\x1b\\]0;[a-z ]{0,10}\x07",
        (0..3usize).prop_map(move |extra| "x".repeat(max + extra)),
    ]
}

fn frame<T, C: Encoder<T>>(mut c: C, v: T) -> Vec<u8>
where
    C::Error: std::fmt::Debug,
{
    let mut buf = BytesMut::new();
    c.encode(v, &mut buf).expect("encodes");
    buf.to_vec()
}

fn peer_frame(m: &PeerMsg) -> Vec<u8> {
    let body = serde_json::to_vec(m).unwrap();
    let mut buf = BytesMut::new();
    buf.put_u32(body.len() as u32);
    buf.put_slice(&body);
    buf.to_vec()
}

/// Runs a control command through the real handlers of an offline daemon.
fn handle(cmd: Command) -> Result<ctl::Reply, ctl::CtlError> {
    let f = harness::daemon::fixture();
    let d = f.daemon.clone();
    f.rt.block_on(async move {
        tokio::time::timeout(
            harness::daemon::HANDLER_DEADLINE,
            p2pd::handlers::handle(&d, cmd),
        )
        .await
    })
    .expect("handlers of an offline daemon answer at once")
}

fn code(r: Result<ctl::Reply, ctl::CtlError>) -> Option<ErrorCode> {
    r.err().map(|e| {
        assert!(!e.message.is_empty(), "an error says what went wrong");
        e.code
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        // A failure is printed with its minimal input; nothing is written
        // into the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Network times: messages from a peer, broadcasts, invitations and the
    /// online list from the server, and their formatting. Depends on the
    /// range check of issue 14 item 3 (`p2p_proto::time`, `p2pd::inbox`).
    #[test]
    fn out_of_range_times_do_not_panic(at_ms in any_time(), id: u64) {
        let _ = p2p_proto::time::rfc3339(at_ms);
        let msg = PeerMsg::Message { id, text: "t".into(), at_ms, mid: None };
        harness::daemon::peer_frames(&peer_frame(&msg));
        let events = [
            ServerEvent::Broadcast {
                id, from: "bob".into(), text: "b".into(), sent_ms: at_ms, expires_ms: at_ms,
            },
            ServerEvent::Invitation { invite: id, from: "carol".into(), expires_ms: at_ms },
        ];
        for event in events {
            harness::daemon::client_frames(&frame(codec::server_side(), ServerMsg::Event { event }));
        }
        let replies = [
            Reply::Users { users: vec![OnlineUser { user: "bob".into(), since_ms: at_ms }] },
            Reply::Invited { invite: id, expires_ms: at_ms },
            Reply::BroadcastStored { id, expires_ms: at_ms },
        ];
        for reply in replies {
            harness::daemon::client_frames(&frame(codec::server_side(), ServerMsg::Reply { id, reply }));
        }
        // Whatever was stored can still be read.
        let inbox = &harness::daemon::fixture().daemon.inbox;
        prop_assert!(inbox.page(true, None, 0, 1 << 20).is_ok());
    }

    /// In-range messages are stored exactly (huge ids, control characters
    /// and all: the JSON keeps the exact text) and read back in order.
    #[test]
    fn in_range_messages_are_stored_exactly(
        msgs in proptest::collection::vec((any::<u64>(), any_text(64), 0..=MAX_RFC3339_MS), 1..8),
        peer in "[a-z]{1,12}",
    ) {
        let inbox = &harness::daemon::fixture().daemon.inbox;
        let batch: Vec<Incoming> = msgs
            .iter()
            .map(|(id, text, at_ms)| Incoming { id: *id, text: text.clone(), at_ms: *at_ms, mid: None })
            .collect();
        let stored = inbox.store(Kind::Message, &peer, &batch).unwrap();
        let after = stored[0].seq - 1;
        let (page, _) = inbox.page(true, Some(&peer), after, usize::MAX).unwrap();
        prop_assert_eq!(page.len(), batch.len());
        for (e, m) in page.iter().zip(&batch) {
            prop_assert_eq!(e.id, m.id);
            prop_assert_eq!(&e.text, &m.text);
            let at = p2p_proto::ctl::InboxEntry::from(e.clone()).at;
            prop_assert_eq!(at.len(), "2026-11-30T12:00:00Z".len());
        }
        let frames: Vec<u8> = batch
            .iter()
            .flat_map(|m| peer_frame(&PeerMsg::Message { id: m.id, text: m.text.clone(), at_ms: m.at_ms, mid: None }))
            .collect();
        harness::daemon::peer_frames(&frames);
    }

    /// Control requests with hostile arguments get a clear error from the
    /// handlers, never a panic or a hang.
    #[test]
    fn hostile_control_requests_get_clear_errors(
        user in any_name(),
        text in any_text(MAX_BROADCAST_BYTES),
        texts in proptest::collection::vec(any_text(MAX_MESSAGE_BYTES), 0..3),
        timeout_ms: Option<u64>,
        after: Option<u64>,
        fingerprint in proptest::option::of(".{0,80}"),
        no_wait: bool,
    ) {
        let bad_name = validate_username(&user).is_err();
        let c = code(handle(Command::Connect { user: user.clone(), timeout_ms, no_wait }));
        if bad_name {
            prop_assert_eq!(c, Some(ErrorCode::BadRequest));
        } else {
            prop_assert!(c.is_some(), "offline: no invitation can be sent");
        }
        let too_long = text.len() > MAX_BROADCAST_BYTES;
        let c = code(handle(Command::Broadcast { text }));
        if too_long {
            prop_assert_eq!(c, Some(ErrorCode::TooLarge));
        } else {
            prop_assert!(c.is_some());
        }
        let c = code(handle(Command::Send { user: user.clone(), texts: texts.clone(), now: false }));
        // Blank messages are refused before anything else (SPEC §11).
        if bad_name || texts.is_empty() || texts.iter().any(|t| t.trim().is_empty()) {
            prop_assert_eq!(c, Some(ErrorCode::BadRequest));
        } else if texts.iter().any(|t| t.len() > MAX_MESSAGE_BYTES) {
            prop_assert_eq!(c, Some(ErrorCode::TooLarge));
        } else {
            prop_assert_eq!(c, Some(ErrorCode::NoSession));
        }
        let inbox = handle(Command::Inbox { all: true, from: Some(user.clone()), follow: false, after });
        prop_assert!(inbox.is_ok(), "inbox: {:?}", inbox);
        let accept = code(handle(Command::Accept { user: user.clone() }));
        prop_assert!(accept.is_some(), "accept without an invitation");
        let disconnect = code(handle(Command::Disconnect { user: user.clone() }));
        prop_assert!(disconnect.is_some(), "disconnect without a session");
        let bad_fp = fingerprint
            .as_deref()
            .is_some_and(|f| p2p_proto::Fingerprint::parse(f).is_none());
        let args = LoginArgs {
            server: harness::daemon::CLOSED_SERVER.into(),
            user,
            password: Secret::new("correct horse"),
            fingerprint,
        };
        let c = code(handle(Command::Login(args)));
        if bad_name || bad_fp {
            prop_assert_eq!(c, Some(ErrorCode::BadRequest));
        }
        // And the same requests as bytes on the control socket.
        let line = frame(
            codec::LineCodec::<(), ctl::Request>::new(usize::MAX),
            ctl::Request { id: u64::MAX, cmd: Command::Sessions },
        );
        harness::daemon::ctl_request(&line);
    }

    /// Client frames with hostile names, texts and ids: refused with the
    /// right login error or request error by the server's own checks.
    #[test]
    fn hostile_client_frames_get_clear_errors(
        user in any_name(),
        token in ".{0,80}",
        text in any_text(MAX_BROADCAST_BYTES),
        id: u64,
        port: u16,
        advertise in proptest::option::of(".{0,40}"),
    ) {
        let peer = PeerInfo { port, advertise, public_key: "ab".repeat(32), lan: Vec::new() };
        let msgs = [
            ClientMsg::Login {
                version: p2p_proto::limits::WIRE_VERSION,
                user: user.clone(),
                auth: Auth::Token { token: Secret::new(token) },
                peer,
            },
            ClientMsg::Request { id, req: Request::Broadcast { text } },
            ClientMsg::Request { id, req: Request::Invite { to: user } },
            ClientMsg::Request { id, req: Request::Answer { invite: id, accept: true } },
            ClientMsg::BroadcastAck { upto: id },
        ];
        for m in msgs {
            // The harness asserts the refusals (bad user name, unknown
            // token, oversize broadcast).
            harness::server::server_frames(&frame(codec::client_side(), m));
        }
    }

    /// Durations as people write them (and p2pd.toml) parse or say why.
    #[test]
    fn durations_parse_or_say_why(s in prop_oneof![
        "[0-9]{1,30}(ns|us|ms|s|m|h|d|w|M|y)",
        "([0-9]{1,6}[smhd] ?){1,4}",
        ".{0,30}",
    ]) {
        match p2p_proto::time::parse_duration(&s) {
            Ok(d) => { let _ = p2p_proto::time::human_duration(d); }
            Err(e) => prop_assert!(e.contains("write durations like"), "{e}"),
        }
        harness::simple::durations(s.as_bytes());
        let toml = format!("reconnect_min = {s:?}\nreconnect_max = {s:?}\n");
        harness::simple::durations(toml.as_bytes());
    }

    /// Any bytes as p2pd's state files or the server's users.csv: read or
    /// refused with a message, never a panic.
    #[test]
    fn damaged_files_are_refused_not_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
        secs: u64,
        nanos in 0u32..1_000_000_000,
    ) {
        harness::simple::state_files(&bytes);
        harness::server::users_csv(&bytes);
        harness::simple::preamble(&bytes);
        harness::simple::ctl_response(&bytes);
        let _ = p2p_proto::time::human_duration(Duration::new(secs, nanos));
    }
}
