//! Direct paths: TCP connects from the peer listener's port (so a NAT with
//! endpoint-independent mapping uses the mapping the server saw, and two
//! such NATs let a simultaneous open through), retried quickly until the
//! setup deadline: through a NAT the first SYNs are dropped until the other
//! side's SYN has opened its router.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;
use tracing::debug;

/// One TCP connect attempt gives up after this: on any working path the
/// answer comes within a round trip; a dropped SYN is better retried soon
/// (the other side's SYN may have opened its NAT meanwhile) than waited on.
pub(crate) const CONNECT_ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1500);

/// Pause before trying a refused or unreachable path again: short, so a
/// peer whose listener or NAT opens a moment later is reached well within
/// the setup deadline, long enough not to spin.
pub(crate) const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// How one attempt on a path failed.
#[derive(Debug)]
pub(crate) enum Failed {
    /// The connect did not finish within [`CONNECT_ATTEMPT_TIMEOUT`].
    TimedOut,
    /// The connect failed.
    Io(io::Error),
    /// TCP was up, the link setup failed (preamble, roles, Noise).
    Setup(String),
    /// Whoever answers there is not the peer (it proved another key): not
    /// worth another try.
    WrongKey(String),
}

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failed::TimedOut => f.write_str("timed out"),
            Failed::Io(e) if e.kind() == io::ErrorKind::ConnectionRefused => f.write_str("refused"),
            Failed::Io(e) => write!(f, "{e}"),
            Failed::Setup(e) | Failed::WrongKey(e) => write!(f, "{e}"),
        }
    }
}

fn unspecified(of: SocketAddr) -> IpAddr {
    match of {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// A socket for a connect to `to`, bound to `port` (shared with the
/// listener: SO_REUSEADDR + SO_REUSEPORT) when it can be; an ephemeral
/// port otherwise (logged at debug: the path still works without a NAT).
fn socket_from(to: SocketAddr, port: u16) -> io::Result<TcpSocket> {
    let fresh = || {
        if to.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
    };
    if port == 0 {
        return fresh();
    }
    let socket = fresh()?;
    let from = SocketAddr::new(unspecified(to), port);
    let bound = socket
        .set_reuseaddr(true)
        .and_then(|()| socket.set_reuseport(true))
        .and_then(|()| socket.bind(from));
    match bound {
        Ok(()) => Ok(socket),
        Err(e) => {
            debug!(%from, cause = %e, "cannot dial from the listener's port; using another");
            fresh()
        }
    }
}

/// One TCP connect to `to` from `port` (0: any), within
/// [`CONNECT_ATTEMPT_TIMEOUT`].
pub(crate) async fn connect_from(to: SocketAddr, port: u16) -> Result<TcpStream, Failed> {
    let socket = socket_from(to, port).map_err(Failed::Io)?;
    let connected = timeout(CONNECT_ATTEMPT_TIMEOUT, socket.connect(to))
        .await
        .map_err(|_| Failed::TimedOut)?;
    let stream = match connected {
        // The pair (our port, this path) is still taken by an earlier link
        // (or its TIME_WAIT): the path may still work from another port.
        Err(e) if port != 0 && e.kind() == io::ErrorKind::AddrNotAvailable => {
            debug!(%to, cause = %e, "dialling from another port");
            let socket = socket_from(to, 0).map_err(Failed::Io)?;
            timeout(CONNECT_ATTEMPT_TIMEOUT, socket.connect(to))
                .await
                .map_err(|_| Failed::TimedOut)?
                .map_err(Failed::Io)?
        }
        other => other.map_err(Failed::Io)?,
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dial leaves from the listener's port while the listener is bound
    /// to it (both with SO_REUSEPORT), and another address's port is free.
    #[tokio::test]
    async fn a_dial_shares_the_listeners_port() {
        let listener = crate::peer::bind_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = listener.local_addr().unwrap().port();
        let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let to = target.local_addr().unwrap();
        let (dialled, accepted) = tokio::join!(connect_from(to, port), target.accept());
        assert_eq!(dialled.unwrap().local_addr().unwrap().port(), port);
        assert_eq!(accepted.unwrap().1.port(), port);
        // A refused path says so in one word.
        drop(target);
        let err = connect_from(to, 0).await.err().unwrap();
        assert_eq!(err.to_string(), "refused");
    }
}
