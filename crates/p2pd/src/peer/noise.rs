//! The encrypted link between two daemons (see [`p2p_proto::peer`]): a
//! Noise XX handshake in which each side checks the other's static key, then
//! length-prefixed [`PeerMsg`] frames carried in Noise transport messages.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::{FutureExt, SinkExt, StreamExt};
use p2p_proto::limits::{MAX_NOISE_PLAINTEXT, MAX_PEER_FRAME, PEER_HANDSHAKE_TIMEOUT};
use p2p_proto::names::validate_username;
use p2p_proto::peer::{PeerHello, PeerMsg, NOISE_PARAMS, NOISE_PROLOGUE};
use snow::{HandshakeState, TransportState};
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::time::timeout;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

/// Largest Noise message on the wire.
const MAX_NOISE_MESSAGE: usize = 65535;

/// Most Noise messages one [`NoiseLink::recv`] returns the frames of: it
/// takes, after the first, those already received (never waiting for more),
/// so a session stores them in one commit and acknowledges them with one
/// `Ack` — one disk sync per burst instead of one per 64 KiB. 64 of them
/// bound what one call holds to 4 MiB of plaintext.
pub(crate) const RECV_GATHER: usize = 64;

/// The listening side waits this long for the first handshake message. A
/// dialler sends it as soon as the connection is up, so it arrives within
/// a round trip; a link that stays silent only holds a handshake slot
/// (see `listener`), and should not for the whole handshake timeout.
pub(crate) const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a Noise handshake or link failed. The messages are what the logs
/// and (wrapped with the peer's name) the control errors show.
#[derive(Debug, thiserror::Error)]
pub enum NoiseError {
    /// The Noise library refused its parameters or keys (a local problem).
    #[error("noise setup: {0}")]
    Setup(snow::Error),
    /// A handshake message did not decrypt or could not be made.
    #[error("handshake: {0}")]
    Handshake(snow::Error),
    /// Reading or writing the stream during the handshake failed.
    #[error("handshake {op}: {source}")]
    HandshakeIo {
        /// "read" or "write".
        op: &'static str,
        /// The stream's error.
        source: std::io::Error,
    },
    /// The peer closed the stream before the handshake was done.
    #[error("peer closed during the handshake")]
    ClosedInHandshake,
    /// The handshake ended without the peer's static key.
    #[error("peer sent no static key")]
    NoStaticKey,
    /// The dialled peer's key is not the one the server handed out.
    #[error("peer key {} is not the key the server gave ({}); refusing the link", hex::encode(.got), hex::encode(.expected))]
    WrongKey {
        /// The key the peer proved.
        got: Vec<u8>,
        /// The key the server gave.
        expected: Vec<u8>,
    },
    /// An incoming link sent nothing within [`FIRST_MESSAGE_TIMEOUT`].
    #[error("no handshake message in time")]
    Silent,
    /// The whole handshake took longer than `PEER_HANDSHAKE_TIMEOUT`.
    #[error("handshake timed out")]
    TimedOut,
    /// The dialler's hello did not parse or names no possible account.
    #[error("bad hello: {0}")]
    BadHello(String),
    /// A transport message could not be encrypted.
    #[error("encrypt: {0}")]
    Encrypt(snow::Error),
    /// A transport message did not decrypt (tampered or out of order).
    #[error("decrypt: {0}")]
    Decrypt(snow::Error),
    /// The stream failed after the handshake.
    #[error("{op}: {source}")]
    Io {
        /// "read" or "write".
        op: &'static str,
        /// The stream's error.
        source: std::io::Error,
    },
    /// A frame announced more than `MAX_PEER_FRAME` bytes.
    #[error("peer frame of {0} bytes is over the limit")]
    FrameTooLarge(usize),
    /// A frame is not a peer message.
    #[error("bad peer message: {0}")]
    BadMessage(serde_json::Error),
}

/// Any byte stream a Noise link can run over (a TCP stream today; a
/// relayed or hole-punched one later).
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Transport for T {}

/// The stream under a [`NoiseLink`], whatever it is.
type BoxedTransport = Box<dyn Transport>;
type OwnedReadHalf = ReadHalf<BoxedTransport>;
type OwnedWriteHalf = WriteHalf<BoxedTransport>;

/// An established, authenticated, encrypted link.
pub struct NoiseLink {
    reader: FramedRead<OwnedReadHalf, LengthDelimitedCodec>,
    writer: FramedWrite<OwnedWriteHalf, LengthDelimitedCodec>,
    transport: TransportState,
    plain: BytesMut,
    /// Where a transport message is decrypted (kept: one allocation per
    /// link, not per message).
    scratch: Vec<u8>,
    /// How the link ended, when that was found while gathering messages
    /// already received (`Ok` for a close): returned by the next `recv`.
    end: Option<Result<(), NoiseError>>,
    /// The peer's static public key, as the handshake proved it.
    remote: Vec<u8>,
}

impl std::fmt::Debug for NoiseLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoiseLink")
            .field("remote", &hex::encode(&self.remote))
            .finish_non_exhaustive()
    }
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_type::<u16>()
        .max_frame_length(MAX_NOISE_MESSAGE)
        .new_codec()
}

fn split(
    stream: impl Transport,
) -> (
    FramedRead<OwnedReadHalf, LengthDelimitedCodec>,
    FramedWrite<OwnedWriteHalf, LengthDelimitedCodec>,
) {
    let boxed: BoxedTransport = Box::new(stream);
    let (r, w) = tokio::io::split(boxed);
    (FramedRead::new(r, codec()), FramedWrite::new(w, codec()))
}

fn builder(private: &[u8]) -> Result<snow::Builder<'_>, NoiseError> {
    let params = NOISE_PARAMS.parse().map_err(NoiseError::Setup)?;
    snow::Builder::new(params)
        .local_private_key(private)
        .and_then(|b| b.prologue(NOISE_PROLOGUE))
        .map_err(NoiseError::Setup)
}

async fn write_hs(
    hs: &mut HandshakeState,
    w: &mut FramedWrite<OwnedWriteHalf, LengthDelimitedCodec>,
    payload: &[u8],
) -> Result<(), NoiseError> {
    let mut buf = vec![0u8; MAX_NOISE_MESSAGE];
    let n = hs
        .write_message(payload, &mut buf)
        .map_err(NoiseError::Handshake)?;
    buf.truncate(n);
    w.send(Bytes::from(buf))
        .await
        .map_err(|source| NoiseError::HandshakeIo {
            op: "write",
            source,
        })
}

async fn read_hs(
    hs: &mut HandshakeState,
    r: &mut FramedRead<OwnedReadHalf, LengthDelimitedCodec>,
) -> Result<Vec<u8>, NoiseError> {
    let msg = r
        .next()
        .await
        .ok_or(NoiseError::ClosedInHandshake)?
        .map_err(|source| NoiseError::HandshakeIo { op: "read", source })?;
    let mut payload = vec![0u8; MAX_NOISE_MESSAGE];
    let n = hs
        .read_message(&msg, &mut payload)
        .map_err(NoiseError::Handshake)?;
    payload.truncate(n);
    Ok(payload)
}

/// Dials side: runs the handshake, refusing the peer unless its static key
/// is `expected` (before our identity is revealed), then sends `hello`.
pub async fn initiate(
    stream: impl Transport,
    private: &[u8],
    expected: &[u8],
    hello: &PeerHello,
) -> Result<NoiseLink, NoiseError> {
    let (mut r, mut w) = split(stream);
    let run = async {
        let mut hs = builder(private)?
            .build_initiator()
            .map_err(NoiseError::Setup)?;
        write_hs(&mut hs, &mut w, &[]).await?;
        read_hs(&mut hs, &mut r).await?;
        let remote = hs.get_remote_static().ok_or(NoiseError::NoStaticKey)?;
        if remote != expected {
            return Err(NoiseError::WrongKey {
                got: remote.to_vec(),
                expected: expected.to_vec(),
            });
        }
        let payload = serde_json::to_vec(hello).expect("hello serialises");
        write_hs(&mut hs, &mut w, &payload).await?;
        hs.into_transport_mode().map_err(NoiseError::Handshake)
    };
    let transport = timeout(PEER_HANDSHAKE_TIMEOUT, run)
        .await
        .map_err(|_| NoiseError::TimedOut)??;
    Ok(NoiseLink {
        reader: r,
        writer: w,
        transport,
        plain: BytesMut::new(),
        scratch: Vec::new(),
        end: None,
        remote: expected.to_vec(),
    })
}

/// Listening side: runs the handshake and returns the peer's static key
/// and identity claim, for the caller to check against accepted invitations.
pub async fn respond(
    stream: impl Transport,
    private: &[u8],
) -> Result<(NoiseLink, Vec<u8>, PeerHello), NoiseError> {
    let (mut r, mut w) = split(stream);
    let run = async {
        let mut hs = builder(private)?
            .build_responder()
            .map_err(NoiseError::Setup)?;
        timeout(FIRST_MESSAGE_TIMEOUT, read_hs(&mut hs, &mut r))
            .await
            .map_err(|_| NoiseError::Silent)??;
        write_hs(&mut hs, &mut w, &[]).await?;
        let payload = read_hs(&mut hs, &mut r).await?;
        let hello: PeerHello =
            serde_json::from_slice(&payload).map_err(|e| NoiseError::BadHello(e.to_string()))?;
        // Anyone can get this far: a claimed name no account can have (up
        // to 64 KiB, control characters) must not reach the logs.
        validate_username(&hello.user).map_err(|e| NoiseError::BadHello(e.to_string()))?;
        let remote = hs
            .get_remote_static()
            .ok_or(NoiseError::NoStaticKey)?
            .to_vec();
        let transport = hs.into_transport_mode().map_err(NoiseError::Handshake)?;
        Ok::<_, NoiseError>((transport, remote, hello))
    };
    let (transport, remote, hello) = timeout(PEER_HANDSHAKE_TIMEOUT, run)
        .await
        .map_err(|_| NoiseError::TimedOut)??;
    Ok((
        NoiseLink {
            reader: r,
            writer: w,
            transport,
            plain: BytesMut::new(),
            scratch: Vec::new(),
            end: None,
            remote: remote.clone(),
        },
        remote,
        hello,
    ))
}

impl NoiseLink {
    /// The peer's static public key (checked in the handshake).
    pub fn remote_key(&self) -> &[u8] {
        &self.remote
    }

    /// Encrypts and sends `msgs` in order, packed into as few Noise messages
    /// as fit.
    pub async fn send(&mut self, msgs: &[PeerMsg]) -> Result<(), NoiseError> {
        let mut plain = BytesMut::new();
        for m in msgs {
            // Written in place behind a length filled in after.
            let at = plain.len();
            plain.put_u32(0);
            serde_json::to_writer((&mut plain).writer(), m).expect("peer messages serialise");
            let len = (plain.len() - at - 4) as u32;
            plain[at..at + 4].copy_from_slice(&len.to_be_bytes());
        }
        for chunk in plain.chunks(MAX_NOISE_PLAINTEXT) {
            // Encrypted straight into the buffer the writer takes: the
            // ciphertext is the plaintext plus the 16-byte tag.
            let mut cipher = BytesMut::zeroed(chunk.len() + 16);
            let n = self
                .transport
                .write_message(chunk, &mut cipher)
                .map_err(NoiseError::Encrypt)?;
            cipher.truncate(n);
            self.writer
                .feed(cipher.freeze())
                .await
                .map_err(|source| NoiseError::Io {
                    op: "write",
                    source,
                })?;
        }
        SinkExt::<Bytes>::flush(&mut self.writer)
            .await
            .map_err(|source| NoiseError::Io {
                op: "write",
                source,
            })
    }

    /// Waits for the next Noise message and returns the frames it completed
    /// (possibly none), with those of the messages already received after it
    /// (up to [`RECV_GATHER`] in all). `Ok(None)` when the peer closed; a
    /// close or error found while gathering is returned by the next call,
    /// after the frames before it. Cancel-safe.
    pub async fn recv(&mut self) -> Result<Option<Vec<PeerMsg>>, NoiseError> {
        if let Some(end) = self.end.take() {
            return end.map(|()| None);
        }
        let Some(mut out) = self.recv_one().await? else {
            return Ok(None);
        };
        for _ in 1..RECV_GATHER {
            match self.recv_one().now_or_never() {
                None => break,
                Some(Ok(Some(more))) => out.extend(more),
                Some(Ok(None)) => {
                    self.end = Some(Ok(()));
                    break;
                }
                Some(Err(e)) => {
                    self.end = Some(Err(e));
                    break;
                }
            }
        }
        Ok(Some(out))
    }

    /// The frames one Noise message completed. Cancel-safe: the only await
    /// is the framed read.
    async fn recv_one(&mut self) -> Result<Option<Vec<PeerMsg>>, NoiseError> {
        let Some(msg) = self.reader.next().await else {
            return Ok(None);
        };
        let msg = msg.map_err(|source| NoiseError::Io { op: "read", source })?;
        self.scratch.resize(MAX_NOISE_MESSAGE, 0);
        let n = self
            .transport
            .read_message(&msg, &mut self.scratch)
            .map_err(NoiseError::Decrypt)?;
        self.plain.put_slice(&self.scratch[..n]);
        let mut out = Vec::new();
        while self.plain.len() >= 4 {
            let len = u32::from_be_bytes(self.plain[..4].try_into().expect("4 bytes")) as usize;
            if len > MAX_PEER_FRAME {
                return Err(NoiseError::FrameTooLarge(len));
            }
            if self.plain.len() < 4 + len {
                break;
            }
            self.plain.advance(4);
            let body = self.plain.split_to(len);
            out.push(PeerMsg::from_json(&body).map_err(NoiseError::BadMessage)?);
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpStream;

    fn keypair() -> snow::Keypair {
        snow::Builder::new(NOISE_PARAMS.parse().unwrap())
            .generate_keypair()
            .unwrap()
    }

    /// The handshake and the link run over any byte stream, not only TCP
    /// (here an in-memory pipe): the seam for relayed or punched paths.
    #[tokio::test]
    async fn a_link_runs_over_any_stream() {
        let (a, b) = tokio::io::duplex(4096);
        let (alice, bob) = (keypair(), keypair());
        let hello = PeerHello {
            user: "alice".into(),
            invite: 7,
        };
        let (dialled, answered) = tokio::join!(
            initiate(a, &alice.private, &bob.public, &hello),
            respond(b, &bob.private)
        );
        let mut dialled = dialled.unwrap();
        let (mut answered, key, got) = answered.unwrap();
        assert_eq!(key, alice.public);
        assert_eq!((got.user.as_str(), got.invite), ("alice", 7));
        dialled.send(&[PeerMsg::Ping]).await.unwrap();
        let msgs = answered.recv().await.unwrap().unwrap();
        assert!(matches!(msgs.as_slice(), [PeerMsg::Ping]));
    }

    /// alice's and bob's ends of a link over a 1 MiB in-memory pipe.
    async fn linked() -> (NoiseLink, NoiseLink) {
        let (a, b) = tokio::io::duplex(1 << 20);
        let (alice, bob) = (keypair(), keypair());
        let hello = PeerHello {
            user: "alice".into(),
            invite: 7,
        };
        let (dialled, answered) = tokio::join!(
            initiate(a, &alice.private, &bob.public, &hello),
            respond(b, &bob.private)
        );
        (dialled.unwrap(), answered.unwrap().0)
    }

    /// Noise messages already received come back from one `recv`, in order
    /// (so the session stores them in one commit); a close right after them
    /// is reported by the next call, after their frames.
    #[tokio::test]
    async fn recv_gathers_what_already_arrived_and_reports_the_close_after_it() {
        let (mut dialled, mut answered) = linked().await;
        let msg = |id| PeerMsg::Message {
            id,
            text: format!("m{id}"),
            at_ms: 1,
            mid: Some(id),
        };
        // Three separate Noise messages, all written before the first read.
        for id in 1..=3 {
            dialled.send(&[msg(id)]).await.unwrap();
        }
        drop(dialled);
        let got = answered.recv().await.unwrap().unwrap();
        assert_eq!(got, [msg(1), msg(2), msg(3)]);
        assert!(answered.recv().await.unwrap().is_none(), "then the close");
    }

    /// More than [`RECV_GATHER`] messages waiting: one call returns that
    /// many, the next the rest; none is lost or reordered.
    #[tokio::test]
    async fn recv_gathers_at_most_recv_gather_messages() {
        let (mut dialled, mut answered) = linked().await;
        let total = RECV_GATHER as u64 + 5;
        for id in 1..=total {
            dialled.send(&[PeerMsg::Ack { upto: id }]).await.unwrap();
        }
        let first = answered.recv().await.unwrap().unwrap();
        assert_eq!(first.len(), RECV_GATHER);
        let second = answered.recv().await.unwrap().unwrap();
        let ids: Vec<u64> = first
            .iter()
            .chain(&second)
            .map(|m| match m {
                PeerMsg::Ack { upto } => *upto,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ids, (1..=total).collect::<Vec<_>>());
    }

    async fn pair() -> (TcpStream, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dial = TcpStream::connect(l.local_addr().unwrap());
        let (dialled, accepted) = tokio::join!(dial, l.accept());
        (dialled.unwrap(), accepted.unwrap().0)
    }

    /// A link that never sends the first message is given up on after
    /// FIRST_MESSAGE_TIMEOUT, not after the whole handshake timeout.
    #[tokio::test]
    async fn a_silent_link_is_dropped_after_the_first_message_timeout() {
        assert!(FIRST_MESSAGE_TIMEOUT < PEER_HANDSHAKE_TIMEOUT);
        let (_silent, accepted) = pair().await;
        let key = snow::Builder::new(NOISE_PARAMS.parse().unwrap())
            .generate_keypair()
            .unwrap();
        // The error names which deadline ended it (the whole-handshake one
        // says "handshake timed out").
        let err = respond(accepted, &key.private).await.err().unwrap();
        assert!(matches!(err, NoiseError::Silent), "{err}");
    }

    /// A hello claiming a name no account can have is refused in the
    /// handshake, so the name never reaches the "refused peer link" log.
    #[tokio::test]
    async fn a_hello_with_an_impossible_name_is_refused() {
        let keys = || {
            snow::Builder::new(NOISE_PARAMS.parse().unwrap())
                .generate_keypair()
                .unwrap()
        };
        let (ours, theirs) = (keys(), keys());
        let (dialled, accepted) = pair().await;
        let hello = PeerHello {
            user: format!("\u{1b}]0;owned\u{7}\n{}", "x".repeat(60_000)),
            invite: 1,
        };
        let dial = initiate(dialled, &theirs.private, &ours.public, &hello);
        let (_, answered) = tokio::join!(dial, respond(accepted, &ours.private));
        let err = answered.expect_err("refused");
        assert!(matches!(err, NoiseError::BadHello(_)), "{err}");
        assert!(err.to_string().starts_with("bad hello"), "{err}");
    }
}
