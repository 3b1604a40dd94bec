//! The rustls side of [`super::TlsStream`]: feeding received records to
//! rustls and taking what it produces (plaintext, handshake records,
//! alerts, encrypted application data) into the connection's buffers.

use std::io;

use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, UnbufferedStatus, WriteTraffic,
};
use tokio::io::ReadBuf;

/// Bytes a TLS 1.3 record adds to its plaintext with the suites the server
/// offers: 5 header, 1 content type, 16 AEAD tag. Only a first guess of the
/// room to encrypt into: rustls says exactly how much when it needs more.
const RECORD_OVERHEAD: usize = 5 + 1 + 16;

/// Plaintext bytes per record (rustls' default fragment size).
const RECORD_PLAIN: usize = 16 * 1024;

/// Room offered for a handshake record at first; rustls says how much it
/// needs if that is too little (a certificate chain may be).
const ENCODE_GUESS: usize = 4096;

/// Room offered for a close_notify: its record is 24 bytes.
pub(super) const ALERT_GUESS: usize = 64;

/// What a connection keeps between calls, each empty (no allocation) when
/// idle.
#[derive(Default)]
pub(super) struct Kept {
    /// Decrypted bytes the caller has not read yet, from `plain_at`.
    pub(super) plain: Vec<u8>,
    pub(super) plain_at: usize,
    /// Ciphertext the socket has not taken yet, from `out_at`.
    pub(super) outgoing: Vec<u8>,
    pub(super) out_at: usize,
    /// The peer sent close_notify: after the plaintext before it, EOF.
    pub(super) peer_closed: bool,
    /// We queued our close_notify.
    pub(super) close_sent: bool,
}

impl Kept {
    pub(super) fn unsent(&self) -> usize {
        self.outgoing.len() - self.out_at
    }

    /// Hands `payload` to the caller's buffer as far as it fits, keeping
    /// the rest (behind anything kept before, to keep the order).
    fn take_plain(&mut self, payload: &[u8], out: Option<&mut ReadBuf<'_>>) {
        let direct = match out {
            Some(out) if self.plain.is_empty() => {
                let n = out.remaining().min(payload.len());
                out.put_slice(&payload[..n]);
                n
            }
            _ => 0,
        };
        self.plain.extend_from_slice(&payload[direct..]);
    }
}

pub(super) fn invalid(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Feeds `input` to rustls until it needs more (or the connection is
/// closed both ways): plaintext goes to `out` or `kept`, handshake and
/// alert records to `kept.outgoing`. Returns how many bytes of `input`
/// rustls is done with.
pub(super) fn drive(
    tls: &mut UnbufferedServerConnection,
    input: &mut [u8],
    kept: &mut Kept,
    mut out: Option<&mut ReadBuf<'_>>,
) -> io::Result<usize> {
    let mut used = 0;
    loop {
        let UnbufferedStatus { mut discard, state } = tls.process_tls_records(&mut input[used..]);
        let state = match state {
            Ok(state) => state,
            Err(e) => {
                take_alert(tls, kept);
                return Err(invalid(e));
            }
        };
        let stop = match state {
            ConnectionState::ReadTraffic(mut records) => {
                while let Some(record) = records.next_record() {
                    let record = record.map_err(invalid)?;
                    discard += record.discard;
                    kept.take_plain(record.payload, out.as_deref_mut());
                }
                false
            }
            ConnectionState::EncodeTlsData(mut e) => {
                append(&mut kept.outgoing, ENCODE_GUESS, |b| match e.encode(b) {
                    Ok(n) => Ok(n),
                    Err(EncodeError::InsufficientSize(s)) => Err(Short::Need(s.required_size)),
                    Err(e) => Err(Short::Fail(io::Error::other(e))),
                })?;
                false
            }
            // Sent with the rest of `kept.outgoing`, in order, before the
            // caller waits on the peer (see `accept`, `poll_read`).
            ConnectionState::TransmitTlsData(t) => {
                t.done();
                false
            }
            ConnectionState::PeerClosed => {
                kept.peer_closed = true;
                false
            }
            ConnectionState::Closed => {
                kept.peer_closed = true;
                true
            }
            ConnectionState::BlockedHandshake | ConnectionState::WriteTraffic(_) => true,
            // Early data is off (rustls' default), so nothing else is
            // expected.
            other => return Err(invalid(format!("unexpected TLS state {other:?}"))),
        };
        used += discard;
        if stop {
            return Ok(used);
        }
    }
}

/// After an error rustls has queued a fatal alert for the peer (what
/// tokio-rustls would send before giving up): the next call hands it out
/// before it looks at any input.
pub(super) fn take_alert(tls: &mut UnbufferedServerConnection, kept: &mut Kept) {
    while tls.wants_write() {
        let UnbufferedStatus { state, .. } = tls.process_tls_records(&mut []);
        let Ok(ConnectionState::EncodeTlsData(mut e)) = state else {
            return;
        };
        let encoded = append(&mut kept.outgoing, ALERT_GUESS, |b| match e.encode(b) {
            Ok(n) => Ok(n),
            Err(EncodeError::InsufficientSize(s)) => Err(Short::Need(s.required_size)),
            Err(e) => Err(Short::Fail(io::Error::other(e))),
        });
        if encoded.is_err() {
            return;
        }
    }
}

/// Brings rustls to its "may write" state (encoding whatever it queued
/// first) and runs `write` there.
pub(super) fn write_traffic<R>(
    tls: &mut UnbufferedServerConnection,
    incoming: &mut Vec<u8>,
    kept: &mut Kept,
    write: impl FnOnce(&mut WriteTraffic<'_, ServerConnectionData>, &mut Kept) -> io::Result<R>,
) -> io::Result<R> {
    let used = drive(tls, incoming, kept, None)?;
    incoming.drain(..used);
    let UnbufferedStatus { discard, state } = tls.process_tls_records(incoming);
    let r = match state.map_err(invalid)? {
        ConnectionState::WriteTraffic(mut w) => write(&mut w, kept),
        ConnectionState::Closed => Err(io::ErrorKind::BrokenPipe.into()),
        other => Err(invalid(format!("cannot write in TLS state {other:?}"))),
    };
    incoming.drain(..discard);
    if incoming.is_empty() {
        *incoming = Vec::new();
    }
    r
}

/// Why rustls did not write into the room it was given.
pub(super) enum Short {
    /// Too small: it needs this many bytes.
    Need(usize),
    /// Another error.
    Fail(io::Error),
}

/// Appends what `f` writes to `out`, offering `guess` bytes of room first,
/// then what rustls says it needs.
pub(super) fn append(
    out: &mut Vec<u8>,
    guess: usize,
    mut f: impl FnMut(&mut [u8]) -> Result<usize, Short>,
) -> io::Result<()> {
    let start = out.len();
    let mut room = guess;
    loop {
        out.resize(start + room, 0);
        match f(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(Short::Need(n)) if n > room => room = n,
            Err(Short::Need(_)) => {
                out.truncate(start);
                return Err(io::Error::other("rustls asked for less room than it had"));
            }
            Err(Short::Fail(e)) => {
                out.truncate(start);
                return Err(e);
            }
        }
    }
}

/// Encrypts `data` at the end of `out`.
pub(super) fn encrypt(
    w: &mut WriteTraffic<'_, ServerConnectionData>,
    data: &[u8],
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let guess = data.len() + (data.len() / RECORD_PLAIN + 1) * RECORD_OVERHEAD;
    append(out, guess, |b| match w.encrypt(data, b) {
        Ok(n) => Ok(n),
        Err(EncryptError::InsufficientSize(s)) => Err(Short::Need(s.required_size)),
        Err(e) => Err(Short::Fail(io::Error::other(e))),
    })
}
