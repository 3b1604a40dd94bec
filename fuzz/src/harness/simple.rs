//! Targets without shared state: the preamble, control answers as p2pctl
//! decodes them, p2pd's state files, durations and p2pd.toml.

use std::time::Duration;

use p2p_proto::codec;
use p2p_proto::ctl::{self, Event, Greeting, Response};
use p2p_proto::time::{human_duration, parse_duration};
use p2p_proto::wire::{Preamble, PREAMBLE_LEN};
use p2pd::backoff::Backoff;
use p2pd::config::{DaemonConfig, Overrides};
use p2pd::state::StateDir;
use tokio_util::bytes::BytesMut;
use tokio_util::codec::Decoder;

use super::MAX_ITEMS_PER_INPUT;

/// The server's 8-byte greeting: what decodes re-encodes to the same bytes
/// (but for the retry-after field, which `Ready` ignores).
pub fn preamble(data: &[u8]) {
    for chunk in data.chunks_exact(PREAMBLE_LEN).take(MAX_ITEMS_PER_INPUT) {
        let b: [u8; PREAMBLE_LEN] = chunk.try_into().expect("8 bytes");
        match Preamble::decode(&b) {
            Ok(p @ Preamble::Busy { .. }) => assert_eq!(p.encode(), b, "preamble round trip"),
            Ok(p @ Preamble::Ready) => assert_eq!(p.encode()[..6], b[..6], "preamble round trip"),
            Err(_) => {}
        }
    }
}

/// Lines from the daemon, as a control client (p2pctl) decodes them: the
/// greeting, responses and their result documents, events.
pub fn ctl_response(data: &[u8]) {
    let mut rx = codec::ctl_client_side::<serde_json::Value, ()>();
    let mut buf = BytesMut::from(data);
    for _ in 0..MAX_ITEMS_PER_INPUT {
        let v = match rx.decode_eof(&mut buf) {
            Ok(Some(Ok(v))) => v,
            Ok(Some(Err(_))) => continue,
            Ok(None) | Err(_) => return,
        };
        let _ = serde_json::from_value::<Greeting>(v.clone());
        let _ = serde_json::from_value::<Event>(v.clone());
        // The envelope first, then the result as each command's type.
        if let Ok(r) = serde_json::from_value::<Response<serde_json::Value>>(v) {
            if let Some(result) = r.result {
                let _ = serde_json::from_value::<ctl::StatusReport>(result.clone());
                let _ = serde_json::from_value::<ctl::InboxList>(result.clone());
                let _ = serde_json::from_value::<ctl::UserList>(result.clone());
                let _ = serde_json::from_value::<ctl::SentList>(result);
            }
        }
    }
}

/// The daemon's state files, as p2pd reads them at start and at login:
/// the input is `identity.json`, `session.json`, `known_servers.json` and
/// `known_peers.json` separated by NUL bytes (a missing part is a missing
/// file).
pub fn state_files(data: &[u8]) {
    let dir = super::scratch();
    let names = [
        "identity.json",
        "session.json",
        "known_servers.json",
        "known_peers.json",
    ];
    for (name, part) in names.iter().zip(data.split(|&b| b == 0)) {
        std::fs::write(dir.path().join(name), part).expect("write");
    }
    let state = StateDir::open(dir.path()).expect("state dir");
    if let Ok(id) = state.identity() {
        // As `p2pd::run` uses it.
        let _ = hex::decode(id.private.expose());
    }
    let _ = state.session();
    let server = "server.example:4400";
    let pin = state.pin(server);
    let set = state.set_pin(server, "SHA256:00");
    if pin.is_err() {
        // A pin file that cannot be read must never be replaced silently.
        assert!(
            set.is_err(),
            "an unreadable known_servers.json was overwritten"
        );
    }
    let _ = state.known_key("bob");
}

/// A duration as people write it (flags, p2pd.toml), then used as the
/// daemon uses one (backoff); the same bytes also as a whole `p2pd.toml`.
pub fn durations(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = parse_duration(s) {
        let _ = human_duration(d);
        backoff(d, d);
    }
    let dir = super::scratch();
    let path = dir.path().join("p2pd.toml");
    std::fs::write(&path, data).expect("write");
    let cfg = DaemonConfig::resolve(Overrides {
        config: Some(path),
        state_dir: Some(dir.path().join("state")),
        socket: Some(dir.path().join("ctl.sock")),
        ..Default::default()
    });
    if let Ok(cfg) = cfg {
        backoff(cfg.reconnect_min, cfg.reconnect_max);
    }
}

fn backoff(min: Duration, max: Duration) {
    let b = Backoff { min, max };
    for attempt in [0, 1, 2, 20, u32::MAX] {
        for jitter in [0.0, 0.5, 0.999_999] {
            assert!(b.delay(attempt, jitter) <= max.max(min));
        }
    }
}
