//! Targets for what p2pd decodes: frames from the server, peer messages
//! inside a Noise session, and control requests; each decoded value goes
//! where the daemon sends it (inbox, peer registry, handlers) and the
//! results are formatted as the control protocol sends them.

use std::sync::Arc;
use std::time::Duration;

use p2p_proto::codec::{self, LineCodec};
use p2p_proto::ctl::{self, Command, Event};
use p2p_proto::limits::{MAX_INBOX_PAGE_BYTES, MAX_MESSAGE_BYTES, MAX_PEER_FRAME};
use p2p_proto::peer::{PeerHello, PeerMsg};
use p2p_proto::time::rfc3339;
use p2p_proto::wire::{PeerInfo, Reply, ServerEvent, ServerMsg};
use p2pd::backoff::Backoff;
use p2pd::inbox::{Incoming, Kind};
use p2pd::link::{self, LinkConfig};
use p2pd::peer::Peers;
use p2pd::state::StateDir;
use p2pd::Daemon;
use tokio_util::bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};
use tokio_util::sync::CancellationToken;

use super::MAX_ITEMS_PER_INPUT;

/// Longest a handler may take on one request before the target reports a
/// hang. Nothing here waits on the network (the link is offline and logins
/// go to a closed loopback port), so an answer is immediate.
pub const HANDLER_DEADLINE: Duration = Duration::from_secs(20);

/// Where `login` requests are pointed: a closed loopback port, so a login
/// fails at once without reaching anything.
pub const CLOSED_SERVER: &str = "127.0.0.1:1";

/// Invitations from this user are auto-accepted, so that path runs too.
pub const AUTO_ACCEPT: &str = "carol";

/// A real daemon (state dir, inbox, peer registry, link), offline, shared by
/// every run of a process.
pub struct Fixture {
    /// Runs the link task and the handlers.
    pub rt: tokio::runtime::Runtime,
    /// What handlers get.
    pub daemon: Arc<Daemon>,
}

/// The process-wide daemon fixture, one per thread: a test that panics
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
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let daemon = rt.block_on(async {
            let state = StateDir::open(&dir.as_path().join("state")).expect("state dir");
            let identity = state.identity().expect("identity");
            let inbox = p2pd::inbox::Inbox::open(&dir.as_path().join("state")).expect("inbox");
            let (events, _) = tokio::sync::broadcast::channel(p2pd::EVENT_BUFFER);
            let shutdown = CancellationToken::new();
            let private = hex::decode(identity.private.expose()).expect("hex key");
            let (to_peers, from_link) = tokio::sync::mpsc::channel(link::EVENT_QUEUE);
            let cfg = LinkConfig {
                // Retries far apart: a failed login must not loop meanwhile.
                backoff: Backoff {
                    min: Duration::from_secs(3600),
                    max: Duration::from_secs(3600),
                },
                peer: PeerInfo {
                    port: 1,
                    advertise: None,
                    public_key: identity.public.clone(),
                    lan: Vec::new(),
                },
                inbox: inbox.clone(),
                to_peers,
                failpoint: None,
                listen: None,
                default_server: None,
            };
            let (link, _task) = link::spawn(cfg, state.clone(), events.clone(), shutdown.clone());
            let contacts = p2pd::contacts::Contacts::open(&inbox).expect("contacts");
            let peers = Peers::new(
                private,
                p2pd::peer::LocalPeer::default(),
                state,
                inbox.clone(),
                contacts.clone(),
                events.clone(),
                vec![AUTO_ACCEPT.to_string()],
                link.clone(),
                shutdown.clone(),
            );
            tokio::spawn(peers.clone().run(from_link));
            let outbox =
                p2pd::outbox::Outbox::open(&inbox, contacts, events.clone()).expect("outbox");
            peers.set_outbox(outbox.clone());
            Arc::new(Daemon {
                link,
                peers,
                inbox,
                outbox,
                peer_listen: "127.0.0.1:1".parse().expect("addr"),
                public_key: identity.public,
                events,
                shutdown,
                tasks: tokio_util::task::TaskTracker::new(),
                notify: p2pd::notify::Switch::new(false),
            })
        });
        Fixture { rt, daemon }
    }
}

/// A control-protocol line as the daemon writes it (serialised, one line).
fn ctl_line<T: serde::Serialize>(v: T) -> Vec<u8> {
    let mut buf = BytesMut::new();
    LineCodec::<(), T>::new(usize::MAX)
        .encode(v, &mut buf)
        .expect("control output serialises");
    assert_eq!(
        buf.iter().filter(|&&b| b == b'\n').count(),
        1,
        "one control line per value"
    );
    buf.to_vec()
}

/// Server → daemon frames, as the link decodes them and handles them when
/// online (`link/online.rs`): broadcasts into the inbox, other events to the
/// peer registry, replies mapped as the handlers map them.
pub fn client_frames(data: &[u8]) {
    let f = fixture();
    let mut rx = codec::client_side();
    let mut buf = BytesMut::from(&*super::framed(data));
    for _ in 0..MAX_ITEMS_PER_INPUT {
        let msg = match rx.decode(&mut buf) {
            Ok(Some(m)) => m,
            // A bad frame ends the connection; an incomplete one waits.
            Ok(None) | Err(_) => return,
        };
        round_trip_server_msg(&msg);
        match msg {
            ServerMsg::Event {
                event:
                    ServerEvent::Broadcast {
                        id,
                        from,
                        text,
                        sent_ms,
                        ..
                    },
            } => {
                // As `link/online.rs`: a broadcast no server may send is
                // acknowledged and dropped.
                if p2pd::inbox::refuse_broadcast(&from, &text).is_some() {
                    continue;
                }
                let m = Incoming {
                    id,
                    text,
                    at_ms: sent_ms,
                    mid: None,
                };
                if let Ok(Some(entry)) = f.daemon.inbox.store_broadcast(&from, &m) {
                    ctl_line(Event::Broadcast(entry.into()));
                }
            }
            // As `link/online.rs`: impossible events are dropped at entry.
            ServerMsg::Event { event } if link::check_server_event(&event).is_err() => {}
            ServerMsg::Event { event } => {
                let d = f.daemon.clone();
                f.rt.block_on(async move { d.peers.server_event(event) });
            }
            ServerMsg::Reply { reply, .. } => handle_reply(reply),
            // Login answers, keepalives and closing are handled inside the
            // link's private connect/online code (not reachable from here).
            _ => {}
        }
    }
}

/// What the handlers make of each reply (`handlers/list.rs`,
/// `broadcast.rs`, `peer/invite.rs`, `handlers::reply_error`).
fn handle_reply(reply: Reply) {
    match reply {
        Reply::Users { users } => {
            for u in users {
                ctl_line(ctl::UserEntry {
                    user: u.user,
                    since: rfc3339(u.since_ms),
                });
            }
        }
        Reply::Invited { expires_ms, .. } | Reply::BroadcastStored { expires_ms, .. } => {
            ctl_line(rfc3339(expires_ms));
        }
        other => {
            let e = p2pd::handlers::reply_error(other);
            ctl_line(p2p_proto::ctl::CtlError::from(e));
        }
    }
}

fn round_trip_server_msg(msg: &ServerMsg) {
    let mut buf = BytesMut::new();
    if codec::server_side().encode(msg.clone(), &mut buf).is_ok() {
        let back = codec::client_side().decode(&mut buf).expect("re-decodes");
        assert_eq!(back.as_ref(), Some(msg), "server message round trip");
    }
}

/// The plaintext of a peer session: as `peer/noise.rs` `recv` cuts it into
/// frames (4-byte length, at most `MAX_PEER_FRAME`) and decodes each, then
/// as `peer/session.rs` handles the batch (size check, store in the inbox,
/// `message` events), then an `inbox` page as `handlers/inbox.rs` takes it.
/// An input that opens with `{` is first tried as the handshake's
/// `PeerHello` payload, then as frames (see [`super::framed`]).
pub fn peer_frames(data: &[u8]) {
    if data.first() == Some(&b'{') {
        if let Ok(hello) = serde_json::from_slice::<PeerHello>(data) {
            let _ = p2p_proto::names::validate_username(&hello.user);
        }
    }
    let f = fixture();
    let data = super::framed(data);
    let mut plain = &*data;
    let mut batch = Vec::new();
    for _ in 0..MAX_ITEMS_PER_INPUT {
        if plain.len() < 4 {
            break;
        }
        let len = u32::from_be_bytes(plain[..4].try_into().expect("4 bytes")) as usize;
        if len > MAX_PEER_FRAME || plain.len() < 4 + len {
            break;
        }
        let body = &plain[4..4 + len];
        plain = &plain[4 + len..];
        let Ok(msg) = serde_json::from_slice::<PeerMsg>(body) else {
            break;
        };
        if let PeerMsg::Message {
            id,
            text,
            at_ms,
            mid,
        } = msg
        {
            if text.len() > MAX_MESSAGE_BYTES {
                break;
            }
            batch.push(Incoming {
                id,
                text,
                at_ms,
                mid,
            });
        }
    }
    if batch.is_empty() {
        return;
    }
    let inbox = &f.daemon.inbox;
    if let Ok(entries) = inbox.store(Kind::Message, "bob", &batch) {
        // One entry per message stored now, in order: a message whose
        // (sender, mid) is stored already (a resend) gets none.
        assert!(entries.len() <= batch.len(), "more entries than messages");
        let mut rest = batch.iter();
        for e in &entries {
            let same = |m: &Incoming| (m.id, m.text.as_str()) == (e.id, e.text.as_str());
            assert!(rest.any(same), "an entry for no message of the batch");
            ctl_line(Event::Message(e.clone().into()));
        }
    }
    if let Ok((page, _more)) = inbox.page(false, Some("bob"), 0, MAX_INBOX_PAGE_BYTES) {
        ctl_line(ctl::InboxList {
            messages: page.into_iter().map(Into::into).collect(),
            more: false,
        });
    }
}

/// Control-socket bytes, as the daemon's line codec cuts and decodes them,
/// each request run by the real handlers (`handlers::handle`) of an offline
/// daemon, and the answer written as a response line.
pub fn ctl_request(data: &[u8]) {
    let mut rx = codec::daemon_side::<ctl::Request, ()>();
    let mut buf = BytesMut::from(data);
    let mut requests = Vec::new();
    while requests.len() < MAX_ITEMS_PER_INPUT {
        match rx.decode_eof(&mut buf) {
            Ok(Some(Ok(r))) => requests.push(r),
            // A bad line is answered with an error; the connection goes on.
            Ok(Some(Err(e))) => {
                ctl_line(ctl::Response::<ctl::Reply> {
                    id: 0,
                    result: None,
                    error: Some(ctl::CtlError::new(
                        ctl::ErrorCode::BadRequest,
                        e.to_string(),
                    )),
                });
            }
            Ok(None) | Err(_) => break,
        }
    }
    for r in requests {
        run_command(r);
    }
}

/// Runs one decoded control request through the handlers.
pub fn run_command(r: ctl::Request) {
    let cmd = match r.cmd {
        // Owned by the connection, not a handler.
        Command::Watch => return,
        // Never dial what the input names.
        Command::Login(mut a) => {
            a.server = CLOSED_SERVER.into();
            Command::Login(a)
        }
        Command::Register(mut a) => {
            a.server = CLOSED_SERVER.into();
            Command::Register(a)
        }
        Command::Probe { .. } => Command::Probe {
            server: CLOSED_SERVER.into(),
        },
        other => other,
    };
    let f = fixture();
    let d = f.daemon.clone();
    let result =
        f.rt.block_on(async move {
            tokio::time::timeout(HANDLER_DEADLINE, p2pd::handlers::handle(&d, cmd)).await
        })
        .expect("a handler of an offline daemon answers at once");
    let (result, error) = match result {
        Ok(v) => (Some(v), None),
        Err(e) => (None, Some(e)),
    };
    ctl_line(ctl::Response {
        id: r.id,
        result,
        error,
    });
}
