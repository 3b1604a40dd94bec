//! `netcheck`: what the server sees of this daemon (SPEC §10): the public
//! address of the link, whether the NAT keeps one public mapping per local
//! port (then hole punching can work), whether the server's relay is there,
//! and the round trip to the server. Each probe is a fresh connection to
//! the logged-in server under the session's pin ([`LinkHandle::open_aux`]);
//! a probe that fails is a `problems` line, never an error of the command.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use p2p_proto::ctl::{CtlError, NetcheckReport, ServerState};
use p2p_proto::wire::RelayRefusal;
use p2p_proto::Secret;
use tokio::net::TcpSocket;

use crate::link::{LinkError, LinkHandle};
use crate::relay_client::{self, RelayError};
use crate::Daemon;

/// Runs `netcheck`; `not_logged_in` / `server_unreachable` when offline.
pub(crate) async fn run(daemon: &Daemon) -> Result<NetcheckReport, CtlError> {
    let status = daemon.link.status();
    let report = status.report();
    match report.state {
        ServerState::Online => {}
        ServerState::Connecting => {
            return Err(LinkError::Connecting {
                attempt: report.attempt,
                next_try_s: report.next_retry_ms.unwrap_or(0).div_ceil(1000),
            }
            .into())
        }
        ServerState::Replaced => return Err(LinkError::Replaced.into()),
        ServerState::LoggedOut => return Err(LinkError::NotLoggedIn.into()),
    }
    let mut problems = Vec::new();
    let v6 = status
        .observed
        .as_deref()
        .and_then(|a| a.parse::<SocketAddr>().ok())
        .is_some_and(|a| a.is_ipv6());
    let (endpoint_independent, rtt) = mapping(&daemon.link, v6, &mut problems).await;
    let relay = relay(&daemon.link, &mut problems).await;
    Ok(NetcheckReport {
        server: report.address.unwrap_or_default(),
        public_addr: status.observed,
        peer_listen: daemon.peer_listen.to_string(),
        lan: daemon.peers.local.lan(),
        endpoint_independent,
        relay,
        rtt_ms: rtt.map(|d| d.as_millis() as u64),
        problems,
    })
}

/// Two address probes, one after the other, from one fresh local port: the
/// same public port twice means one mapping per local port (endpoint
/// independent, at least towards this server). Also the first probe's
/// round trip.
async fn mapping(
    link: &LinkHandle,
    v6: bool,
    problems: &mut Vec<String>,
) -> (Option<bool>, Option<Duration>) {
    let any = if v6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    };
    // Held (bound, never listening) for the whole check, so no other
    // program takes the port between the two probes.
    let holder = match reserve(SocketAddr::new(any, 0)) {
        Ok(h) => h,
        Err(e) => {
            problems.push(format!("cannot reserve a local port for the probes: {e}"));
            return (None, None);
        }
    };
    let from = match holder.local_addr() {
        Ok(a) => a,
        Err(e) => {
            problems.push(format!("cannot reserve a local port for the probes: {e}"));
            return (None, None);
        }
    };
    let first = probe(link, from).await;
    let second = probe(link, from).await;
    drop(holder);
    let rtt = first.as_ref().ok().map(|(_, rtt)| *rtt);
    let verdict = match (first, second) {
        (Ok((a, _)), Ok((b, _))) => Some(a.port() == b.port()),
        (Err(e), _) | (_, Err(e)) => {
            problems.push(format!("address probe failed: {e}"));
            None
        }
    };
    (verdict, rtt)
}

/// A socket bound to `addr` with `SO_REUSEADDR` and `SO_REUSEPORT`, so the
/// probes can bind the same port.
fn reserve(addr: SocketAddr) -> std::io::Result<TcpSocket> {
    let s = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    s.set_reuseaddr(true)?;
    s.set_reuseport(true)?;
    s.bind(addr)?;
    Ok(s)
}

/// One address probe from `from`: the public address and the round trip.
async fn probe(link: &LinkHandle, from: SocketAddr) -> Result<(SocketAddr, Duration), String> {
    let conn = link.open_aux(Some(from)).await.map_err(|e| e.to_string())?;
    relay_client::observe_timed(conn)
        .await
        .map_err(|e| e.to_string())
}

/// Asks the relay to pair a token nobody was given: a relay answers
/// "unknown token", a server without one "disabled".
async fn relay(link: &LinkHandle, problems: &mut Vec<String>) -> bool {
    let conn = match link.open_aux(None).await {
        Ok(c) => c,
        Err(e) => {
            problems.push(format!("relay probe: {e}"));
            return false;
        }
    };
    let token = Secret::new(hex::encode(rand::random::<[u8; 32]>()));
    match relay_client::join(conn, token).await {
        Err(RelayError::Refused {
            code: RelayRefusal::Disabled,
            ..
        }) => false,
        // Any other refusal (unknown token, over the cap) is a relay's.
        Err(RelayError::Refused { .. }) | Ok(_) => true,
        Err(e) => {
            problems.push(format!("relay probe: {e}"));
            false
        }
    }
}
