//! Hostile peers against the unbuffered TLS stream: cut, corrupted or
//! out-of-protocol input must end the connection with an `io::Error`
//! (never a panic, a hang or unbounded buffering), and legal but odd
//! traffic (KeyUpdate storms, data after close_notify, a split stream)
//! must keep working.

use std::io::{ErrorKind, Write};
use std::time::Duration;

use futures::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream as ClientStream;

use super::tests::{pattern, round_trip, Server};
use super::*;

/// How long one step may take before the test calls it a hang: far above
/// what a debug build needs, only there so a hang fails instead of
/// blocking the suite.
const HANG: Duration = Duration::from_secs(20);

/// Waits for `f` within [`HANG`], failing the test with `what` otherwise.
async fn within<T>(what: impl std::fmt::Display, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(HANG, f)
        .await
        .unwrap_or_else(|_| panic!("hang: {what}"))
}

/// The first flight of the daemon's real TLS client: its ClientHello
/// record, as sent on the wire.
async fn client_hello(s: &Server) -> Vec<u8> {
    let (mut server, client) = s.raw().await;
    let pin = p2pd::tlsclient::PinVerifier::with_client(s.client());
    let task = tokio::spawn(p2pd::tlsclient::handshake(client, pin));
    let mut hello = vec![0u8; 5];
    server.read_exact(&mut hello).await.unwrap();
    assert_eq!(hello[0], 0x16, "a handshake record");
    let len = u16::from_be_bytes([hello[3], hello[4]]) as usize;
    hello.resize(5 + len, 0);
    server.read_exact(&mut hello[5..]).await.unwrap();
    drop(server);
    task.abort();
    hello
}

/// The server answered a ClientHello with its flight; this is no client,
/// so the handshake cannot finish, and ends when it goes away.
async fn answered(
    mut client: TcpStream,
    accepting: tokio::task::JoinHandle<io::Result<TlsStream>>,
) {
    let mut first = [0u8; 5];
    within("the server's flight", client.read_exact(&mut first))
        .await
        .unwrap();
    assert_eq!(first[0], 0x16, "a ServerHello record: {first:?}");
    drop(client);
    let err = within("the end", accepting).await.unwrap().err().unwrap();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
        ),
        "{err}"
    );
}

/// Sends `bytes` then a FIN to a fresh server-side handshake; the error
/// it must end with (`what` names the case).
async fn refused(s: &Server, bytes: &[u8], what: usize) -> io::Error {
    let (server, mut client) = s.raw().await;
    client.write_all(bytes).await.unwrap();
    client.shutdown().await.unwrap();
    within(what, accept(s.config.clone(), server))
        .await
        .err()
        .unwrap_or_else(|| panic!("handshake done: case {what}"))
}

/// The peer's FIN at every byte of its ClientHello: the handshake fails
/// with an unexpected EOF each time, never hangs or panics.
#[tokio::test]
async fn a_fin_at_any_byte_of_the_client_hello_fails_the_handshake() {
    let s = Server::new().await;
    let hello = client_hello(&s).await;
    for cut in 0..=hello.len() {
        let err = refused(&s, &hello[..cut], cut).await;
        assert_eq!(err.kind(), ErrorKind::UnexpectedEof, "cut {cut}: {err}");
    }
}

/// One flipped bit anywhere in a ClientHello (then a FIN): an error,
/// whichever field it hits (a length, a type, a key share, padding).
#[tokio::test]
async fn a_flipped_bit_anywhere_in_the_client_hello_fails_the_handshake() {
    let s = Server::new().await;
    let hello = client_hello(&s).await;
    for at in 0..hello.len() {
        let mut bad = hello.clone();
        bad[at] ^= 1 << (at % 8);
        let err = refused(&s, &bad, at).await;
        assert!(
            matches!(
                err.kind(),
                ErrorKind::InvalidData | ErrorKind::UnexpectedEof
            ),
            "flip at {at}: {err}"
        );
    }
}

/// A ClientHello one byte per write, the server looking at each byte on
/// its own: put back together and answered with the server's flight.
#[tokio::test]
async fn a_client_hello_one_byte_per_write_is_answered() {
    let s = Server::new().await;
    let hello = client_hello(&s).await;
    let (server, mut client) = s.raw().await;
    client.set_nodelay(true).unwrap();
    let accepting = tokio::spawn(accept(s.config.clone(), server));
    for byte in hello.chunks(1) {
        client.write_all(byte).await.unwrap();
        tokio::task::yield_now().await;
        assert!(!accepting.is_finished(), "the handshake ended early");
    }
    answered(client, accepting).await;
}

/// The client's next record, encrypted but not yet sent: `data` as
/// application data.
fn sealed(client: &mut ClientStream<TcpStream>, data: &[u8]) -> Vec<u8> {
    let tls = client.get_mut().1;
    tls.writer().write_all(data).unwrap();
    let mut wire = Vec::new();
    while tls.wants_write() {
        tls.write_tls(&mut wire).unwrap();
    }
    wire
}

/// One flipped bit anywhere in an application-data record after the
/// handshake (then a FIN): the read fails, and what comes out before is
/// either nothing or exactly what was sent. rustls takes the outer
/// record type and the version's low byte without checking them (its
/// AEAD's additional data is built from fixed values, RFC 8446 §5.2),
/// so a flip there still reads as the true plaintext; anywhere else the
/// record is refused or never completes.
#[tokio::test]
async fn a_flipped_bit_anywhere_in_a_record_fails_the_read() {
    let s = Server::new().await;
    let (_, mut probe) = s.pair().await;
    let len = sealed(&mut probe, b"sixteen bytes!!!").len();
    for at in 0..len {
        let (mut server, mut client) = s.pair().await;
        let mut wire = sealed(&mut client, b"sixteen bytes!!!");
        assert_eq!(wire.len(), len);
        wire[at] ^= 1 << (at % 8);
        let tcp = &mut client.get_mut().0;
        tcp.write_all(&wire).await.unwrap();
        tcp.shutdown().await.unwrap();
        let mut got = Vec::new();
        let err = within(at, server.read_to_end(&mut got))
            .await
            .err()
            .unwrap_or_else(|| panic!("flip at {at} read as {got:?}"));
        assert!(
            got.is_empty() || got == b"sixteen bytes!!!",
            "flip at {at}: {got:?}"
        );
        assert!(
            matches!(
                err.kind(),
                ErrorKind::InvalidData | ErrorKind::UnexpectedEof
            ),
            "flip at {at}: {err}"
        );
    }
}

/// KeyUpdates (each asking for the server's) between one-byte records,
/// while the server only reads and the client never does: the server's
/// answers do not pile up, and both directions work afterwards.
#[tokio::test]
async fn a_key_update_storm_neither_piles_up_nor_breaks_the_stream() {
    let s = Server::new().await;
    let (mut server, mut client) = s.pair().await;
    const ROUNDS: usize = 500;
    let sent = pattern(ROUNDS);
    let (w, r) = tokio::join!(
        async {
            for byte in sent.chunks(1) {
                client.write_all(byte).await?;
                client.get_mut().1.refresh_traffic_keys().unwrap();
                client.flush().await?;
            }
            std::io::Result::Ok(())
        },
        async {
            let mut got = Vec::new();
            let mut buf = [0u8; 64];
            let mut most = 0;
            while got.len() < ROUNDS {
                let n = server.read(&mut buf).await.unwrap();
                assert_ne!(n, 0);
                got.extend_from_slice(&buf[..n]);
                most = most.max(server.buffered());
            }
            (got, most)
        }
    );
    w.unwrap();
    let (got, most) = r;
    assert!(got == sent);
    assert!(most <= MAX_KEPT_INPUT, "{most} bytes held");
    round_trip(&mut server, &mut client, 40_000).await;
    assert_eq!(server.buffered(), 0);
}

/// KeyUpdates with no data between them: rustls' bound on them ends the
/// connection with an error, not a loop.
#[tokio::test]
async fn key_updates_without_data_end_the_connection() {
    let s = Server::new().await;
    let (mut server, mut client) = s.pair().await;
    round_trip(&mut server, &mut client, 5).await;
    for _ in 0..64 {
        client.get_mut().1.refresh_traffic_keys().unwrap();
        let wire = sealed(&mut client, b"");
        client.get_mut().0.write_all(&wire).await.unwrap();
    }
    let err = within("the read", server.read(&mut [0; 16]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidData, "{err}");
}

/// A client that sends close_notify and then keeps sending: the server
/// reads up to the close_notify, then EOF; what follows is neither read
/// nor kept beyond the input bound, and the server may still answer.
#[tokio::test]
async fn data_after_close_notify_is_ignored_and_bounded() {
    let s = Server::new().await;
    let (mut server, mut client) = s.pair().await;
    let mut wire = sealed(&mut client, b"before");
    let tls = client.get_mut().1;
    tls.send_close_notify();
    while tls.wants_write() {
        tls.write_tls(&mut wire).unwrap();
    }
    for _ in 0..10 {
        wire.extend(sealed(&mut client, &pattern(10_000)));
    }
    let tcp = &mut client.get_mut().0;
    let (w, r) = tokio::join!(tcp.write_all(&wire), async {
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        // EOF stays EOF.
        assert_eq!(server.read(&mut [0; 8]).await.unwrap(), 0);
        got
    });
    w.unwrap();
    assert_eq!(r, b"before");
    assert!(server.buffered() <= MAX_KEPT_INPUT, "{}", server.buffered());
    server.write_all(b"bye").await.unwrap();
    server.shutdown().await.unwrap();
    let mut got = Vec::new();
    within("the answer", client.read_to_end(&mut got))
        .await
        .unwrap();
    assert_eq!(got, b"bye");
}

/// `shutdown` while the socket is full and ciphertext waits: it waits
/// too, and the peer gets everything, then a clean close.
#[tokio::test]
async fn a_shutdown_behind_a_full_socket_sends_everything_then_closes() {
    let s = Server::new().await;
    let (mut server, mut client) = s.pair().await;
    let chunk = pattern(MAX_PLAIN_PER_WRITE);
    let mut accepted = 0usize;
    while let Some(n) = server.write(&chunk).now_or_never() {
        accepted += n.unwrap();
        assert!(accepted < 256 << 20, "the writer never had to wait");
    }
    assert!(server.shutdown().now_or_never().is_none(), "waits");
    let (shut, read) = tokio::join!(server.shutdown(), async {
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.map(|_| got.len())
    });
    shut.unwrap();
    assert_eq!(read.unwrap(), accepted);
    let err = server.write_all(b"late").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BrokenPipe, "{err}");
}

/// The relay's use: halves of a `tokio::io::split` stream in two tasks
/// (an echo) on two worker threads, with a client sending and reading at
/// once. Everything comes back, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_stream_echoes_in_two_tasks() {
    let s = Server::new().await;
    let (server, client) = s.pair().await;
    let (mut rd, mut wr) = tokio::io::split(server);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 7000];
        loop {
            let n = rd.read(&mut buf).await.unwrap();
            if n == 0 || tx.send(buf[..n].to_vec()).await.is_err() {
                return;
            }
        }
    });
    let writer = tokio::spawn(async move {
        while let Some(chunk) = rx.recv().await {
            wr.write_all(&chunk).await.unwrap();
        }
        wr.shutdown().await.unwrap();
    });
    let want = pattern(1 << 20);
    let (mut c_rd, mut c_wr) = tokio::io::split(client);
    let up = async {
        for (i, piece) in want.chunks(50_000).enumerate() {
            c_wr.write_all(piece).await.unwrap();
            if i % 3 == 0 {
                c_wr.flush().await.unwrap();
            }
        }
        c_wr.shutdown().await.unwrap();
        c_wr
    };
    let down = async {
        let mut got = Vec::new();
        c_rd.read_to_end(&mut got).await.unwrap();
        got
    };
    let (_, got) = within("the echo", async { tokio::join!(up, down) }).await;
    assert!(got == want, "{} of {} bytes", got.len(), want.len());
    reader.await.unwrap();
    writer.await.unwrap();
}

/// `hello`'s handshake bytes again, in records of `size` bytes of payload.
fn reframed(hello: &[u8], size: usize) -> Vec<u8> {
    let mut wire = Vec::new();
    for piece in hello[5..].chunks(size) {
        wire.extend_from_slice(&[0x16, 0x03, 0x01, 0, piece.len() as u8]);
        wire.extend_from_slice(piece);
    }
    wire
}

/// A ClientHello cut into one-byte records (TLS lets a handshake message
/// span records): put back together and answered.
#[tokio::test]
async fn a_client_hello_in_one_byte_records_is_answered() {
    let s = Server::new().await;
    let hello = client_hello(&s).await;
    let (server, mut client) = s.raw().await;
    let accepting = tokio::spawn(accept(s.config.clone(), server));
    client.write_all(&reframed(&hello, 1)).await.unwrap();
    answered(client, accepting).await;
}

/// A handshake message announced at the largest size, then sent one byte
/// per record (six bytes on the wire per byte of it) and never finished:
/// refused before the server keeps more than its input bound.
#[tokio::test]
async fn an_endless_handshake_message_in_tiny_records_is_refused() {
    let s = Server::new().await;
    let (server, mut client) = s.raw().await;
    let accepting = tokio::spawn(accept(s.config.clone(), server));
    // A ClientHello header announcing 64 KiB, behind a record header
    // `reframed` skips.
    let mut message = vec![0; 5];
    message.extend_from_slice(&[0x01, 0x00, 0xff, 0xff, 0x03, 0x03]);
    message.resize(5 + 4 + 0xffff, 0x41);
    let wire = reframed(&message, 1);
    let mut sent = 0;
    for piece in wire.chunks(6 * 1024) {
        if client.write_all(piece).await.is_err() || accepting.is_finished() {
            break;
        }
        sent += piece.len();
        tokio::task::yield_now().await;
    }
    drop(client);
    let err = within("the refusal", accepting)
        .await
        .unwrap()
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidData, "{err}");
    // Ours, not rustls' (which would take all of it first).
    assert!(err.to_string().contains("bound"), "{err}");
    assert!(sent < wire.len() / 2, "{sent} of {} bytes", wire.len());
}

/// A small seeded generator, so every run tries the same cases.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as usize % n
    }
}

/// Several records, one corrupted at a random byte (a flipped bit, bytes
/// of garbage put in, or the rest cut off), sent in random pieces while
/// the server reads: the server reads a prefix of what was sent (every
/// record before the damage, never a changed byte) and then fails.
#[tokio::test]
async fn seeded_damage_anywhere_in_a_stream_yields_a_prefix_then_an_error() {
    let s = Server::new().await;
    for seed in 1..=40u64 {
        let mut rng = Lcg(seed);
        let (mut server, mut client) = s.pair().await;
        let mut plain = Vec::new();
        let mut wire = Vec::new();
        // Where each record's plaintext ends, by where its ciphertext ends.
        let mut ends = Vec::new();
        for _ in 0..1 + rng.below(4) {
            let data: Vec<u8> = (0..1 + rng.below(20_000))
                .map(|_| rng.below(256) as u8)
                .collect();
            wire.extend(sealed(&mut client, &data));
            plain.extend_from_slice(&data);
            ends.push((wire.len(), plain.len()));
        }
        let at = rng.below(wire.len());
        let how = rng.below(3);
        match how {
            0 => wire[at] ^= 1 << rng.below(8),
            1 => {
                let junk: Vec<u8> = (0..1 + rng.below(40))
                    .map(|_| rng.below(256) as u8)
                    .collect();
                wire.splice(at..at, junk);
            }
            _ => wire.truncate(at),
        }
        // Records wholly before the damage must come through.
        let whole = ends
            .iter()
            .filter(|(wire_end, _)| *wire_end <= at)
            .map(|(_, plain_end)| *plain_end)
            .max()
            .unwrap_or(0);
        let mut pieces = Vec::new();
        let mut from = 0;
        while from < wire.len() {
            let n = (1 + rng.below(3000)).min(wire.len() - from);
            pieces.push(wire[from..from + n].to_vec());
            from += n;
        }
        let tcp = &mut client.get_mut().0;
        tcp.set_nodelay(true).unwrap();
        let (w, (got, r)) = within(seed, async {
            tokio::join!(
                async {
                    for piece in &pieces {
                        tcp.write_all(piece).await?;
                        tokio::task::yield_now().await;
                    }
                    tcp.shutdown().await
                },
                async {
                    let mut got = Vec::new();
                    let r = server.read_to_end(&mut got).await;
                    (got, r)
                }
            )
        })
        .await;
        let case = format!("seed {seed}: damage {how} at {at} of {}", wire.len());
        w.unwrap();
        let err = r.err().unwrap_or_else(|| panic!("{case}: no error"));
        assert!(
            matches!(
                err.kind(),
                ErrorKind::InvalidData | ErrorKind::UnexpectedEof
            ),
            "{case}: {err}"
        );
        assert!(got.len() >= whole, "{case}: {} of {whole}", got.len());
        assert!(plain.starts_with(&got), "{case}: changed plaintext");
    }
}

/// A close_notify alert in the middle of the handshake, then more bytes:
/// the handshake ends with an error, not a wait for input rustls would
/// never take (it takes none after a close_notify).
#[tokio::test]
async fn a_close_notify_in_the_handshake_ends_it() {
    let s = Server::new().await;
    let mut wire = client_hello(&s).await;
    wire.extend_from_slice(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0x00]);
    wire.extend_from_slice(&[0x17; 8 * 1024]);
    let (server, mut client) = s.raw().await;
    client.write_all(&wire).await.unwrap();
    let err = within("the end", accept(s.config.clone(), server))
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidData, "{err}");
}
