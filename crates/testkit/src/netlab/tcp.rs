//! Plain TCP helpers for lab tests: sockets sharing one local port
//! (SO_REUSEADDR + SO_REUSEPORT, as hole punching needs), and an
//! address-echo listener that tells a client the address it came from
//! (what a NAT made of it). Call the client-side helpers inside the
//! namespace, e.g. in [`super::in_ns`].

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, Type};

/// A TCP socket bound to `local` with SO_REUSEADDR and SO_REUSEPORT, so
/// several sockets (a mapping probe, punch attempts) share one port.
pub fn reuse_socket(local: SocketAddr) -> std::io::Result<Socket> {
    let s = Socket::new(
        Domain::for_address(local),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&local.into())?;
    Ok(s)
}

/// A listener on `local` sharing its port with [`reuse_socket`]s.
pub fn reuse_listener(local: SocketAddr) -> std::io::Result<TcpListener> {
    let s = reuse_socket(local)?;
    s.listen(16)?;
    Ok(s.into())
}

/// Connects from local port `local` (shared, see [`reuse_socket`]) to
/// `remote`, giving up after `timeout`.
pub fn connect_from(
    local: SocketAddr,
    remote: SocketAddr,
    timeout: Duration,
) -> std::io::Result<TcpStream> {
    let s = reuse_socket(local)?;
    s.connect_timeout(&remote.into(), timeout)?;
    Ok(s.into())
}

/// The address `echo` (an [`AddrEcho`]) saw for a connection from local
/// address `local`: the public mapping when behind a NAT.
pub fn observed_from(local: SocketAddr, echo: SocketAddr) -> std::io::Result<SocketAddr> {
    let s = connect_from(local, echo, crate::DEADLINE)?;
    s.set_read_timeout(Some(crate::DEADLINE))?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    line.trim()
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{line:?}: {e}")))
}

/// A listener (in some namespace) that writes each client's address as
/// seen from here, one line, then closes. Stops when dropped.
pub struct AddrEcho {
    /// Where it listens.
    pub addr: SocketAddr,
    listener: TcpListener,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AddrEcho {
    /// Listens on `ip`, an ephemeral port, inside namespace `ns`.
    pub fn start(ns: &str, ip: std::net::Ipv4Addr) -> AddrEcho {
        let listener = super::in_ns(ns, || TcpListener::bind((ip, 0))).expect("echo listener");
        let addr = listener.local_addr().expect("echo address");
        let serving = listener.try_clone().expect("clone listener");
        let thread = std::thread::spawn(move || {
            // accept() fails once drop shuts the listener down.
            while let Ok((mut s, peer)) = serving.accept() {
                let _ = writeln!(s, "{peer}");
            }
        });
        AddrEcho {
            addr,
            listener,
            thread: Some(thread),
        }
    }
}

impl Drop for AddrEcho {
    fn drop(&mut self) {
        // shutdown(2) on a listening socket wakes a blocked accept (Linux).
        let _ = SockRef::from(&self.listener).shutdown(Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
