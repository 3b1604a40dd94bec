//! A TLS stream over rustls' unbuffered API that holds no buffer while the
//! session is idle.
//!
//! tokio-rustls' stream wraps rustls' buffered connection, which keeps a
//! 4 KiB read buffer allocated for the connection's whole life: most of an
//! idle session's memory. Here ciphertext is read into a per-thread scratch
//! buffer and processed there; a connection keeps only what it must between
//! calls (a partial record, plaintext the caller has not taken yet,
//! ciphertext the socket has not taken yet), each freed once consumed.
//! rustls does all the TLS (parsing, keys, records, alerts); this module
//! only moves bytes between the socket, rustls and the caller.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::EncryptError;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use records::{append, drive, encrypt, invalid, write_traffic, Kept, Short, ALERT_GUESS};

#[path = "tls_records.rs"]
mod records;

/// Bytes asked of the socket per read: two full TLS records (16 KiB of
/// plaintext plus overhead each), so a bulk transfer (a relay) takes few
/// reads, while the buffer is per thread, not per session.
const READ_CHUNK: usize = 2 * MAX_RECORD;

/// The largest TLS record on the wire: 16 KiB of plaintext, 256 bytes of
/// expansion allowed by RFC 8446 §5.2, the 5-byte header. rustls refuses
/// larger ones.
const MAX_RECORD: usize = 16 * 1024 + 256 + 5;

/// Input a connection may keep unprocessed between reads. rustls keeps
/// partial records (at most one) and the records of a handshake message
/// still incomplete (at most 64 KiB, rustls' bound) in the caller's
/// buffer; this bound is ours on top of theirs, so a peer can never make
/// the kept input grow without limit whatever rustls does.
const MAX_KEPT_INPUT: usize = 0x1_0000 + 2 * MAX_RECORD;

/// Ciphertext accepted but not yet taken by the socket beyond which
/// `poll_write` waits: a slow reader holds at most this much (plus one
/// write's worth) of the server's memory.
const MAX_UNSENT: usize = 64 * 1024;

/// Plaintext encrypted per `poll_write` call, so one call's ciphertext
/// (and the per-thread scratch buffer) stays bounded.
const MAX_PLAIN_PER_WRITE: usize = 64 * 1024;

thread_local! {
    /// Where received ciphertext is decrypted: per thread, so an idle
    /// session holds none of it.
    static READ_SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// Where a write's ciphertext goes before the socket: only what the
    /// socket does not take is copied into the connection.
    static WRITE_SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A server-side TLS connection over TCP (after [`accept`]).
pub(crate) struct TlsStream {
    tcp: TcpStream,
    tls: UnbufferedServerConnection,
    /// Received ciphertext rustls has not finished with: a partial record,
    /// or the records of an incomplete handshake message.
    incoming: Vec<u8>,
    kept: Kept,
}

/// Runs the server side of the TLS handshake on `tcp`: the same effect as
/// tokio-rustls' `TlsAcceptor::accept` (session tickets sent and flushed
/// included). Without a deadline: the caller puts one around it.
pub(crate) async fn accept(config: Arc<ServerConfig>, tcp: TcpStream) -> io::Result<TlsStream> {
    let tls = UnbufferedServerConnection::new(config).map_err(invalid)?;
    let mut s = TlsStream {
        tcp,
        tls,
        incoming: Vec::new(),
        kept: Kept::default(),
    };
    loop {
        poll_fn(|cx| s.poll_send(cx)).await?;
        if !s.tls.is_handshaking() {
            return Ok(s);
        }
        if !poll_fn(|cx| s.poll_receive(cx, None)).await? {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "tls handshake eof",
            ));
        }
    }
}

/// Writes `buf` to `tcp` until done or the socket is full; returns how much
/// it took.
fn write_some(tcp: &mut TcpStream, cx: &mut Context<'_>, buf: &[u8]) -> io::Result<usize> {
    let mut at = 0;
    while at < buf.len() {
        match Pin::new(&mut *tcp).poll_write(cx, &buf[at..]) {
            Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
            Poll::Ready(Ok(n)) => at += n,
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => break,
        }
    }
    Ok(at)
}

impl TlsStream {
    /// The negotiated session (suite, version, handshake kind).
    #[cfg(test)]
    pub(crate) fn tls(&self) -> &rustls::CommonState {
        &self.tls
    }

    /// Bytes of buffer this connection holds (capacity, not contents): 0
    /// once everything received was read and everything written was sent.
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        self.incoming.capacity() + self.kept.plain.capacity() + self.kept.outgoing.capacity()
    }

    /// Sends `kept.outgoing` until the socket has all of it, then frees it.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let k = &mut self.kept;
        while k.out_at < k.outgoing.len() {
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, &k.outgoing[k.out_at..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            k.out_at += n;
        }
        if k.outgoing.capacity() != 0 {
            k.outgoing = Vec::new();
            k.out_at = 0;
        }
        Poll::Ready(Ok(()))
    }

    /// Sends what of `kept.outgoing` the socket takes now, without
    /// registering for writability.
    fn try_send(&mut self) -> io::Result<()> {
        let k = &mut self.kept;
        while k.out_at < k.outgoing.len() {
            match self.tcp.try_write(&k.outgoing[k.out_at..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => k.out_at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        k.outgoing = Vec::new();
        k.out_at = 0;
        Ok(())
    }

    /// Reads what the socket has (after any input kept from before) into
    /// the thread's scratch buffer and has rustls process it, plaintext
    /// going to `out` as far as it fits. `Ready(Ok(false))`: the peer
    /// closed the TCP connection.
    fn poll_receive(
        &mut self,
        cx: &mut Context<'_>,
        mut out: Option<&mut ReadBuf<'_>>,
    ) -> Poll<io::Result<bool>> {
        loop {
            ready!(self.tcp.poll_read_ready(cx))?;
            let got = READ_SCRATCH.with_borrow_mut(|scratch| -> io::Result<Option<bool>> {
                let kept = self.incoming.len();
                let end = kept + READ_CHUNK;
                if scratch.len() < end {
                    scratch.resize(end, 0);
                }
                scratch[..kept].copy_from_slice(&self.incoming);
                let n = match self.tcp.try_read(&mut scratch[kept..end]) {
                    Ok(0) => return Ok(Some(false)),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                    Err(e) => return Err(e),
                };
                let filled = &mut scratch[..kept + n];
                let used = drive(&mut self.tls, filled, &mut self.kept, out.as_deref_mut())?;
                let left = &filled[used..];
                if left.len() > MAX_KEPT_INPUT {
                    return Err(invalid("TLS input kept beyond its bound"));
                }
                self.incoming = left.to_vec();
                Ok(Some(true))
            });
            let got = match got {
                Ok(got) => got,
                Err(e) => {
                    // The alert rustls queued, if the socket takes it.
                    let _ = self.try_send();
                    return Poll::Ready(Err(e));
                }
            };
            if let Some(got) = got {
                return Poll::Ready(Ok(got));
            }
        }
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            let k = &mut this.kept;
            if k.plain_at < k.plain.len() {
                let n = buf.remaining().min(k.plain.len() - k.plain_at);
                buf.put_slice(&k.plain[k.plain_at..k.plain_at + n]);
                k.plain_at += n;
                if k.plain_at == k.plain.len() {
                    k.plain = Vec::new();
                    k.plain_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if k.peer_closed {
                return Poll::Ready(Ok(()));
            }
            let before = buf.filled().len();
            if !ready!(this.poll_receive(cx, Some(buf)))? {
                let why = if this.incoming.is_empty() {
                    "peer closed connection without sending TLS close_notify"
                } else {
                    "peer closed connection in the middle of a TLS record"
                };
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::UnexpectedEof, why)));
            }
            // What rustls answered on its own (a KeyUpdate's reply) goes
            // out now if the socket takes it, else with the next write.
            // Not through `poll_send`: that would put this reader's waker
            // in place of a writer's (one waker per direction, and a split
            // stream's halves run in different tasks).
            let _ = this.try_send();
            if buf.filled().len() > before {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.kept.close_sent {
            // rustls would still encrypt, but nothing may follow our
            // close_notify.
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // Sending what waits registers for writability; past the bound,
        // the caller waits for it.
        if this.kept.unsent() > 0
            && this.poll_send(cx)?.is_pending()
            && this.kept.unsent() >= MAX_UNSENT
        {
            return Poll::Pending;
        }
        let data = &data[..data.len().min(MAX_PLAIN_PER_WRITE)];
        let tcp = &mut this.tcp;
        write_traffic(
            &mut this.tls,
            &mut this.incoming,
            &mut this.kept,
            |w, kept| {
                if kept.unsent() > 0 {
                    // Behind what is waiting already.
                    return encrypt(w, data, &mut kept.outgoing);
                }
                WRITE_SCRATCH.with_borrow_mut(|scratch| {
                    scratch.clear();
                    encrypt(w, data, scratch)?;
                    let sent = write_some(tcp, cx, scratch)?;
                    if sent < scratch.len() {
                        kept.outgoing = scratch[sent..].to_vec();
                        kept.out_at = 0;
                    }
                    Ok(())
                })
            },
        )?;
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.kept.close_sent {
            write_traffic(
                &mut this.tls,
                &mut this.incoming,
                &mut this.kept,
                |w, kept| {
                    append(&mut kept.outgoing, ALERT_GUESS, |b| {
                        match w.queue_close_notify(b) {
                            Ok(n) => Ok(n),
                            Err(EncryptError::InsufficientSize(s)) => {
                                Err(Short::Need(s.required_size))
                            }
                            Err(e) => Err(Short::Fail(io::Error::other(e))),
                        }
                    })
                },
            )?;
            this.kept.close_sent = true;
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[path = "tls_stream_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "tls_attack_tests.rs"]
mod attack_tests;
