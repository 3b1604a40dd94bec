//! The unbuffered TLS stream against the daemon's real TLS client over
//! real TCP on 127.0.0.1.

use std::io::ErrorKind;
use std::sync::Arc;

use futures::FutureExt;
use p2pd::tlsclient::{ClientTls, PinVerifier};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream as ClientStream;

use super::*;

/// A server identity in a temporary directory.
pub(super) struct Server {
    _dir: tempfile::TempDir,
    pub(super) config: Arc<ServerConfig>,
    fingerprint: String,
    pub(super) listener: TcpListener,
}

impl Server {
    pub(super) async fn new() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let id = crate::tls::load(&crate::tls::TlsSource::SelfSigned, dir.path()).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Server {
            _dir: dir,
            config: id.acceptor,
            fingerprint: id.fingerprint,
            listener,
        }
    }

    /// A TLS connection through `client` (its tickets resume).
    pub(super) async fn pair_with(
        &self,
        client: Arc<ClientTls>,
    ) -> (TlsStream, ClientStream<TcpStream>) {
        let addr = self.listener.local_addr().unwrap();
        let (server, client) = tokio::join!(
            async {
                let (tcp, _) = self.listener.accept().await.unwrap();
                accept(self.config.clone(), tcp).await.unwrap()
            },
            async {
                let tcp = TcpStream::connect(addr).await.unwrap();
                let pin = PinVerifier::with_client(client);
                p2pd::tlsclient::handshake(tcp, pin).await.unwrap()
            }
        );
        (server, client)
    }

    pub(super) async fn pair(&self) -> (TlsStream, ClientStream<TcpStream>) {
        self.pair_with(self.client()).await
    }

    pub(super) fn client(&self) -> Arc<ClientTls> {
        ClientTls::new(Some(self.fingerprint.clone())).unwrap()
    }

    /// The server's side of a raw TCP connection, and the client's socket.
    pub(super) async fn raw(&self) -> (TcpStream, TcpStream) {
        let addr = self.listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = self.listener.accept().await.unwrap();
        (server, client)
    }
}

/// `n` bytes that are not all alike, so a reordering would show.
pub(super) fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

pub(super) async fn round_trip(
    server: &mut TlsStream,
    client: &mut ClientStream<TcpStream>,
    n: usize,
) {
    let up = pattern(n);
    let down: Vec<u8> = pattern(n).into_iter().rev().collect();
    let mut got = vec![0; n];
    let (w, r) = tokio::join!(
        async {
            client.write_all(&up).await?;
            client.flush().await
        },
        server.read_exact(&mut got)
    );
    w.unwrap();
    r.unwrap();
    assert!(got == up, "client to server, {n} bytes");
    let mut got = vec![0; n];
    let (w, r) = tokio::join!(
        async {
            server.write_all(&down).await?;
            server.flush().await
        },
        client.read_exact(&mut got)
    );
    w.unwrap();
    r.unwrap();
    assert!(got == down, "server to client, {n} bytes");
}

#[tokio::test]
async fn round_trips_both_ways_and_an_idle_stream_holds_no_buffer() {
    let s = Server::new().await;
    let (mut server, mut client) = s.pair().await;
    assert_eq!(server.buffered(), 0, "after the handshake");
    round_trip(&mut server, &mut client, 10).await;
    assert_eq!(server.buffered(), 0, "after a small round trip");
    // Several records each way, and more than the socket takes at once.
    round_trip(&mut server, &mut client, 300_000).await;
    assert_eq!(server.buffered(), 0, "after a large round trip");
    round_trip(&mut server, &mut client, 1).await;
    assert_eq!(server.buffered(), 0);
}

#[tokio::test]
async fn many_small_writes_arrive_whole_and_in_order() {
    let s = Server::new().await;
    let (mut server, mut client) = s.pair().await;
    let want = pattern(20_000);
    for chunk in want.chunks(7) {
        server.write_all(chunk).await.unwrap();
    }
    server.flush().await.unwrap();
    let mut got = vec![0; want.len()];
    client.read_exact(&mut got).await.unwrap();
    assert!(got == want);

    for chunk in want.chunks(7) {
        client.write_all(chunk).await.unwrap();
    }
    client.flush().await.unwrap();
    // Read in odd sizes: plaintext a read could not take is kept, in order.
    let mut got = Vec::new();
    let mut buf = [0u8; 13];
    while got.len() < want.len() {
        let n = server.read(&mut buf).await.unwrap();
        assert_ne!(n, 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got == want);
    assert_eq!(server.buffered(), 0);
}

/// A reader that does not read: the server's writes wait once a bounded
/// amount is unsent, and everything arrives once it reads.
#[tokio::test]
async fn writes_to_a_reader_that_does_not_read_wait_at_a_bound() {
    let s = Server::new().await;
    let (mut server, mut client) = s.pair().await;
    let chunk = pattern(MAX_PLAIN_PER_WRITE);
    let mut accepted = 0usize;
    // The socket buffers take some megabytes; the bound is far above.
    while accepted < 256 << 20 {
        match server.write(&chunk).now_or_never() {
            Some(n) => accepted += n.unwrap(),
            None => break,
        }
        assert!(server.buffered() <= MAX_UNSENT + 2 * MAX_PLAIN_PER_WRITE);
    }
    assert!(accepted < 256 << 20, "a write waited");
    let (flushed, read) = tokio::join!(server.flush(), async {
        let mut buf = vec![0; 64 * 1024];
        let mut total = 0;
        while total < accepted {
            let n = client.read(&mut buf).await.unwrap();
            assert_ne!(n, 0);
            total += n;
        }
        total
    });
    flushed.unwrap();
    assert_eq!(read, accepted);
    assert_eq!(server.buffered(), 0);
}

#[tokio::test]
async fn close_notify_is_a_clean_end_both_ways() {
    let s = Server::new().await;
    let (mut server, mut client) = s.pair().await;
    client.write_all(b"last words").await.unwrap();
    client.shutdown().await.unwrap();
    let mut got = Vec::new();
    server.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"last words");
    // Half closed: the server may still answer, then closes.
    server.write_all(b"bye").await.unwrap();
    server.shutdown().await.unwrap();
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"bye");
    let err = server.write_all(b"more").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BrokenPipe, "{err}");
}

/// After its close_notify the server sends nothing more, even while the
/// peer still has its side open.
#[tokio::test]
async fn nothing_is_written_after_a_shutdown() {
    let s = Server::new().await;
    let (mut server, mut client) = s.pair().await;
    server.shutdown().await.unwrap();
    let err = server.write_all(b"late").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BrokenPipe, "{err}");
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.unwrap();
    assert!(got.is_empty(), "{got:?}");
    // The client may still speak; the server still reads.
    client.write_all(b"still here").await.unwrap();
    client.flush().await.unwrap();
    let mut buf = [0u8; 10];
    server.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"still here");
}

#[tokio::test]
async fn a_plain_fin_is_an_unexpected_eof() {
    let s = Server::new().await;
    let (mut server, mut client) = s.pair().await;
    round_trip(&mut server, &mut client, 5).await;
    client.get_mut().0.shutdown().await.unwrap();
    let err = server.read(&mut [0; 16]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnexpectedEof, "{err}");
}

#[tokio::test]
async fn a_fin_in_the_middle_of_a_record_is_an_unexpected_eof() {
    let s = Server::new().await;
    let (mut server, mut client) = s.pair().await;
    round_trip(&mut server, &mut client, 5).await;
    // An application-data record header announcing 100 bytes, and 10.
    let tcp = &mut client.get_mut().0;
    tcp.write_all(&[0x17, 0x03, 0x03, 0x00, 100]).await.unwrap();
    tcp.write_all(&[0u8; 10]).await.unwrap();
    tcp.shutdown().await.unwrap();
    let err = server.read(&mut [0; 16]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnexpectedEof, "{err}");
    assert!(err.to_string().contains("middle"), "{err}");
}

/// Bytes that are no TLS after the handshake: an error, no panic.
#[tokio::test]
async fn garbage_or_an_oversize_record_after_the_handshake_is_invalid_data() {
    let s = Server::new().await;
    // The largest record TLS 1.3 allows (16 KiB + 256), whole, of
    // garbage: read to its end, then refused.
    let mut largest = vec![0x17, 0x03, 0x03, 0x41, 0x00];
    largest.resize(MAX_RECORD, 0x5a);
    let records: [&[u8]; 4] = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        // A well-formed header, but a record larger than TLS allows.
        &[0x17, 0x03, 0x03, 0x48, 0x01],
        &largest,
        // The right size, but not encrypted under the session's keys.
        &[
            0x17, 0x03, 0x03, 0x00, 0x20, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
            17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32,
        ],
    ];
    for bad in records {
        let (mut server, mut client) = s.pair().await;
        client.get_mut().0.write_all(bad).await.unwrap();
        let err = server.read(&mut [0; 16]).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidData, "{bad:?}: {err}");
        // The client is told why, as rustls says, before the close.
        drop(server);
        let err = client.read(&mut [0; 16]).await.unwrap_err();
        assert!(err.to_string().contains("alert"), "{bad:?}: {err}");
    }
}

/// A handshake from a peer that is no TLS client, or leaves half-way.
#[tokio::test]
async fn garbage_or_a_truncated_hello_fails_the_handshake() {
    let s = Server::new().await;
    let (server, mut client) = s.raw().await;
    client.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await.unwrap();
    let err = accept(s.config.clone(), server).await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidData, "{err}");
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).await.unwrap();
    assert_eq!(answer.first(), Some(&0x15), "an alert record: {answer:?}");

    // A ClientHello record header announcing 512 bytes, then 20 and a FIN.
    let (server, mut client) = s.raw().await;
    client
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
        .await
        .unwrap();
    client.write_all(&[0x01; 20]).await.unwrap();
    client.shutdown().await.unwrap();
    let err = accept(s.config.clone(), server).await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::UnexpectedEof, "{err}");

    // A TLS client that goes away at once.
    let (server, client) = s.raw().await;
    drop(client);
    let err = accept(s.config.clone(), server).await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::UnexpectedEof, "{err}");
}

/// The ticket the handshake sends lets the next connection resume.
#[tokio::test]
async fn a_session_ticket_lets_the_next_connection_resume() {
    let s = Server::new().await;
    let tickets = s.client();
    let (mut server, mut client) = s.pair_with(tickets.clone()).await;
    assert_eq!(
        client.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Full)
    );
    // The client takes the ticket in with the first data it reads.
    round_trip(&mut server, &mut client, 5).await;
    let (mut server, mut client) = s.pair_with(tickets).await;
    assert_eq!(
        client.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
    assert_eq!(
        server.tls().handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
    round_trip(&mut server, &mut client, 5).await;
}

/// A client's KeyUpdate: the server answers with its own and both
/// directions keep working under the new keys.
#[tokio::test]
async fn a_key_update_from_the_client_is_followed() {
    let s = Server::new().await;
    let (mut server, mut client) = s.pair().await;
    round_trip(&mut server, &mut client, 5).await;
    client.get_mut().1.refresh_traffic_keys().unwrap();
    round_trip(&mut server, &mut client, 5).await;
    round_trip(&mut server, &mut client, 40_000).await;
    assert_eq!(server.buffered(), 0);
}

/// Copies `from` to `to` in pieces of 1 to 3,000 bytes, each sent on its
/// own, so the server sees records (and the handshake) cut anywhere.
async fn trickle_halves(
    mut from: impl tokio::io::AsyncRead + Unpin,
    mut to: impl tokio::io::AsyncWrite + Unpin,
    seed: u64,
) {
    let mut rng = seed;
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut at = 0;
        while at < n {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let piece = ((rng >> 33) as usize % 3000 + 1).min(n - at);
            if to.write_all(&buf[at..at + piece]).await.is_err() {
                return;
            }
            at += piece;
            tokio::task::yield_now().await;
        }
    }
    let _ = to.shutdown().await;
}

/// Records and handshake messages cut at any byte, in both directions.
#[tokio::test]
async fn input_cut_anywhere_is_put_back_together() {
    let s = Server::new().await;
    let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front_addr = front.local_addr().unwrap();
    for seed in 1..=8u64 {
        let (server, client) = tokio::join!(
            async {
                let (tcp, _) = s.listener.accept().await.unwrap();
                accept(s.config.clone(), tcp).await.unwrap()
            },
            async {
                let to_proxy = TcpStream::connect(front_addr).await.unwrap();
                let (from_client, _) = front.accept().await.unwrap();
                let to_server = TcpStream::connect(s.listener.local_addr().unwrap())
                    .await
                    .unwrap();
                from_client.set_nodelay(true).unwrap();
                to_server.set_nodelay(true).unwrap();
                let (c_read, c_write) = from_client.into_split();
                let (s_read, s_write) = to_server.into_split();
                tokio::spawn(trickle_halves(c_read, s_write, seed));
                tokio::spawn(trickle_halves(s_read, c_write, seed + 100));
                let pin = PinVerifier::with_client(s.client());
                p2pd::tlsclient::handshake(to_proxy, pin).await.unwrap()
            }
        );
        let (mut server, mut client) = (server, client);
        round_trip(&mut server, &mut client, 70_000).await;
        round_trip(&mut server, &mut client, 3).await;
        assert_eq!(server.buffered(), 0, "seed {seed}");
    }
}

/// A waker that counts its wakes.
#[derive(Default)]
struct Wakes {
    n: std::sync::atomic::AtomicUsize,
    notify: tokio::sync::Notify,
}

impl futures::task::ArcWake for Wakes {
    fn wake_by_ref(this: &Arc<Self>) {
        this.n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        this.notify.notify_one();
    }
}

impl Wakes {
    fn count(&self) -> usize {
        self.n.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits (within a generous deadline) for a wake after the `seen`th.
    async fn after(&self, seen: usize, what: &str) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        while self.count() <= seen {
            tokio::time::timeout_at(deadline, self.notify.notified())
                .await
                .unwrap_or_else(|_| panic!("{what} never woken"));
        }
    }
}

/// A stream split between a reading and a writing task (the relay's
/// splice): a read must not put the reader's waker in place of a writer
/// waiting for the socket to take more, or that writer is never woken.
#[tokio::test]
async fn a_read_leaves_a_waiting_writers_wakeup_in_place() {
    let s = Server::new().await;
    let (mut server, mut client) = s.pair().await;
    let writer = Arc::new(Wakes::default());
    let reader = Arc::new(Wakes::default());
    let (wake_w, wake_r) = (
        futures::task::waker(writer.clone()),
        futures::task::waker(reader.clone()),
    );
    let mut cx_w = Context::from_waker(&wake_w);
    let mut cx_r = Context::from_waker(&wake_r);

    // The writer fills the socket and what the stream keeps unsent.
    let chunk = pattern(MAX_PLAIN_PER_WRITE);
    let mut accepted = 0usize;
    while let Poll::Ready(n) = Pin::new(&mut server).poll_write(&mut cx_w, &chunk) {
        accepted += n.unwrap();
        assert!(accepted < 256 << 20, "the writer never had to wait");
    }
    let woken = writer.count();

    // The reader gets a few bytes meanwhile.
    client.write_all(b"ping").await.unwrap();
    client.flush().await.unwrap();
    let mut buf = [0u8; 16];
    loop {
        let seen = reader.count();
        let mut rb = ReadBuf::new(&mut buf);
        match Pin::new(&mut server).poll_read(&mut cx_r, &mut rb) {
            Poll::Ready(r) => {
                r.unwrap();
                assert_eq!(rb.filled(), b"ping");
                break;
            }
            Poll::Pending => reader.after(seen, "the reader").await,
        }
    }

    // The client reads: the socket takes more, and the writer hears so.
    tokio::spawn(async move {
        let mut sink = vec![0u8; 64 * 1024];
        while let Ok(n) = client.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    });
    writer.after(woken, "the waiting writer").await;
}
