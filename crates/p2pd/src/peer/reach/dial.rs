//! Direct paths: TCP connects from the peer listener's port (so a NAT with
//! endpoint-independent mapping uses the mapping the server saw, and two
//! such NATs let a simultaneous open through), retried quickly until the
//! setup deadline: through a NAT the first SYNs are dropped until the other
//! side's SYN has opened its router.

use std::fmt;
use std::io;
use std::net::SocketAddr;
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

/// A socket for a connect to `to`, bound to `from` (the listener's port,
/// shared with it: SO_REUSEADDR + SO_REUSEPORT) when it can be; an
/// ephemeral port otherwise (logged at debug: the path still works without
/// a NAT).
fn socket_from(to: SocketAddr, from: Option<SocketAddr>) -> io::Result<TcpSocket> {
    let fresh = || {
        if to.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
    };
    let Some(from) = from else {
        return fresh();
    };
    let socket = fresh()?;
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

/// One TCP connect to `to` from `from` (`None`: any port), within
/// [`CONNECT_ATTEMPT_TIMEOUT`].
pub(crate) async fn connect_from(
    to: SocketAddr,
    from: Option<SocketAddr>,
) -> Result<TcpStream, Failed> {
    let socket = socket_from(to, from).map_err(Failed::Io)?;
    let connected = timeout(CONNECT_ATTEMPT_TIMEOUT, socket.connect(to))
        .await
        .map_err(|_| Failed::TimedOut)?;
    let stream = match connected {
        // The pair (our port, this path) is still taken by an earlier link
        // (or its TIME_WAIT): the path may still work from another port.
        Err(e) if from.is_some() && e.kind() == io::ErrorKind::AddrNotAvailable => {
            debug!(%to, cause = %e, "dialling from another port");
            let socket = socket_from(to, None).map_err(Failed::Io)?;
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

    /// Which source a dial (or the server link) takes for each listener.
    #[test]
    fn sources_follow_the_listener() {
        use crate::peer::source_for;
        let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
        let v4 = sa("198.51.100.7:443");
        let v6 = sa("[2001:db8::7]:443");
        let any4 = Some(sa("0.0.0.0:4401"));
        assert_eq!(source_for(any4, v4), Some(sa("0.0.0.0:4401")));
        assert_eq!(source_for(any4, v6), Some(sa("[::]:4401")));
        let one = Some(sa("192.168.1.20:4401"));
        assert_eq!(source_for(one, v4), one);
        assert_eq!(source_for(one, v6), None, "another family: any port");
        assert_eq!(source_for(Some(sa("[::1]:4401")), v4), None);
        assert_eq!(source_for(None, v4), None);
        assert_eq!(source_for(Some(sa("0.0.0.0:0")), v4), None);
    }

    /// A dial leaves from the listener's port while the listener is bound
    /// to it (both with SO_REUSEPORT), and another address's port is free.
    #[tokio::test]
    async fn a_dial_shares_the_listeners_port() {
        let listener = crate::peer::bind_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let listen = listener.local_addr().unwrap();
        let port = listen.port();
        let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let to = target.local_addr().unwrap();
        let from = crate::peer::source_for(Some(listen), to);
        assert_eq!(from, Some(listen));
        let (dialled, accepted) = tokio::join!(connect_from(to, from), target.accept());
        assert_eq!(dialled.unwrap().local_addr().unwrap().port(), port);
        assert_eq!(accepted.unwrap().1.port(), port);
        // A refused path says so in one word.
        drop(target);
        let err = connect_from(to, None).await.err().unwrap();
        assert_eq!(err.to_string(), "refused");
    }
}
