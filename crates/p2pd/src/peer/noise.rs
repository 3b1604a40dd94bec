//! The encrypted link between two daemons (see [`p2p_proto::peer`]): a
//! Noise XX handshake in which each side checks the other's static key, then
//! length-prefixed [`PeerMsg`] frames carried in Noise transport messages.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use p2p_proto::limits::{MAX_NOISE_PLAINTEXT, MAX_PEER_FRAME, PEER_HANDSHAKE_TIMEOUT};
use p2p_proto::names::validate_username;
use p2p_proto::peer::{PeerHello, PeerMsg, NOISE_PARAMS, NOISE_PROLOGUE};
use snow::{HandshakeState, TransportState};
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::time::timeout;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

/// Largest Noise message on the wire.
const MAX_NOISE_MESSAGE: usize = 65535;

/// The listening side waits this long for the first handshake message. A
/// dialler sends it as soon as the connection is up, so it arrives within
/// a round trip; a link that stays silent only holds a handshake slot
/// (see `listener`), and should not for the whole handshake timeout.
pub(crate) const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(2);

/// The error of a link that sent nothing within [`FIRST_MESSAGE_TIMEOUT`].
pub(crate) const SILENT_LINK: &str = "no handshake message in time";

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

fn builder(private: &[u8]) -> Result<snow::Builder<'_>, String> {
    let params = NOISE_PARAMS
        .parse()
        .map_err(|e| format!("noise params: {e}"))?;
    snow::Builder::new(params)
        .local_private_key(private)
        .and_then(|b| b.prologue(NOISE_PROLOGUE))
        .map_err(|e| format!("noise setup: {e}"))
}

async fn write_hs(
    hs: &mut HandshakeState,
    w: &mut FramedWrite<OwnedWriteHalf, LengthDelimitedCodec>,
    payload: &[u8],
) -> Result<(), String> {
    let mut buf = vec![0u8; MAX_NOISE_MESSAGE];
    let n = hs
        .write_message(payload, &mut buf)
        .map_err(|e| format!("handshake: {e}"))?;
    buf.truncate(n);
    w.send(Bytes::from(buf))
        .await
        .map_err(|e| format!("handshake write: {e}"))
}

async fn read_hs(
    hs: &mut HandshakeState,
    r: &mut FramedRead<OwnedReadHalf, LengthDelimitedCodec>,
) -> Result<Vec<u8>, String> {
    let msg = r
        .next()
        .await
        .ok_or("peer closed during the handshake")?
        .map_err(|e| format!("handshake read: {e}"))?;
    let mut payload = vec![0u8; MAX_NOISE_MESSAGE];
    let n = hs
        .read_message(&msg, &mut payload)
        .map_err(|e| format!("handshake: {e}"))?;
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
) -> Result<NoiseLink, String> {
    let (mut r, mut w) = split(stream);
    let run = async {
        let mut hs = builder(private)?
            .build_initiator()
            .map_err(|e| e.to_string())?;
        write_hs(&mut hs, &mut w, &[]).await?;
        read_hs(&mut hs, &mut r).await?;
        let remote = hs.get_remote_static().ok_or("peer sent no static key")?;
        if remote != expected {
            return Err(format!(
                "peer key {} is not the key the server gave ({}); refusing the link",
                hex::encode(remote),
                hex::encode(expected)
            ));
        }
        let payload = serde_json::to_vec(hello).expect("hello serialises");
        write_hs(&mut hs, &mut w, &payload).await?;
        hs.into_transport_mode().map_err(|e| e.to_string())
    };
    let transport = timeout(PEER_HANDSHAKE_TIMEOUT, run)
        .await
        .map_err(|_| "handshake timed out".to_string())??;
    Ok(NoiseLink {
        reader: r,
        writer: w,
        transport,
        plain: BytesMut::new(),
    })
}

/// Listening side: runs the handshake and returns the peer's static key
/// and identity claim, for the caller to check against accepted invitations.
pub async fn respond(
    stream: impl Transport,
    private: &[u8],
) -> Result<(NoiseLink, Vec<u8>, PeerHello), String> {
    let (mut r, mut w) = split(stream);
    let run = async {
        let mut hs = builder(private)?
            .build_responder()
            .map_err(|e| e.to_string())?;
        timeout(FIRST_MESSAGE_TIMEOUT, read_hs(&mut hs, &mut r))
            .await
            .map_err(|_| SILENT_LINK.to_string())??;
        write_hs(&mut hs, &mut w, &[]).await?;
        let payload = read_hs(&mut hs, &mut r).await?;
        let hello: PeerHello =
            serde_json::from_slice(&payload).map_err(|e| format!("bad hello: {e}"))?;
        // Anyone can get this far: a claimed name no account can have (up
        // to 64 KiB, control characters) must not reach the logs.
        validate_username(&hello.user).map_err(|e| format!("bad hello: {e}"))?;
        let remote = hs
            .get_remote_static()
            .ok_or("peer sent no static key")?
            .to_vec();
        let transport = hs.into_transport_mode().map_err(|e| e.to_string())?;
        Ok::<_, String>((transport, remote, hello))
    };
    let (transport, remote, hello) = timeout(PEER_HANDSHAKE_TIMEOUT, run)
        .await
        .map_err(|_| "handshake timed out".to_string())??;
    Ok((
        NoiseLink {
            reader: r,
            writer: w,
            transport,
            plain: BytesMut::new(),
        },
        remote,
        hello,
    ))
}

impl NoiseLink {
    /// Encrypts and sends `msgs` in order, packed into as few Noise messages
    /// as fit.
    pub async fn send(&mut self, msgs: &[PeerMsg]) -> Result<(), String> {
        let mut plain = BytesMut::new();
        for m in msgs {
            let body = serde_json::to_vec(m).expect("peer messages serialise");
            plain.put_u32(body.len() as u32);
            plain.put_slice(&body);
        }
        let mut cipher = vec![0u8; MAX_NOISE_MESSAGE];
        for chunk in plain.chunks(MAX_NOISE_PLAINTEXT) {
            let n = self
                .transport
                .write_message(chunk, &mut cipher)
                .map_err(|e| format!("encrypt: {e}"))?;
            self.writer
                .feed(Bytes::copy_from_slice(&cipher[..n]))
                .await
                .map_err(|e| format!("write: {e}"))?;
        }
        SinkExt::<Bytes>::flush(&mut self.writer)
            .await
            .map_err(|e| format!("write: {e}"))
    }

    /// Waits for the next Noise message and returns the frames it completed
    /// (possibly none). `Ok(None)` when the peer closed. Cancel-safe.
    pub async fn recv(&mut self) -> Result<Option<Vec<PeerMsg>>, String> {
        let Some(msg) = self.reader.next().await else {
            return Ok(None);
        };
        let msg = msg.map_err(|e| format!("read: {e}"))?;
        let mut buf = vec![0u8; MAX_NOISE_MESSAGE];
        let n = self
            .transport
            .read_message(&msg, &mut buf)
            .map_err(|e| format!("decrypt: {e}"))?;
        self.plain.put_slice(&buf[..n]);
        let mut out = Vec::new();
        while self.plain.len() >= 4 {
            let len = u32::from_be_bytes(self.plain[..4].try_into().expect("4 bytes")) as usize;
            if len > MAX_PEER_FRAME {
                return Err(format!("peer frame of {len} bytes is over the limit"));
            }
            if self.plain.len() < 4 + len {
                break;
            }
            self.plain.advance(4);
            let body = self.plain.split_to(len);
            out.push(serde_json::from_slice(&body).map_err(|e| format!("bad peer message: {e}"))?);
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
        assert_eq!(err, SILENT_LINK);
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
        let err = answered.err().expect("refused");
        assert!(err.starts_with("bad hello"), "{err}");
    }
}
