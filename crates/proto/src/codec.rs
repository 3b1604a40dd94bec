//! Framing for both protocols.
//!
//! - [`FrameCodec`]: wire protocol frames, a 4-byte big-endian length then
//!   one JSON message. The length is checked against the limit for that
//!   direction before a byte of the body is buffered; an oversize or
//!   malformed frame is an error that ends the connection.
//! - [`LineCodec`]: control protocol, one JSON object per line. A bad or
//!   oversize line is handed up as an `Err` *item*, not a stream error, so
//!   the daemon answers it and keeps the connection.

use std::marker::PhantomData;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec, LinesCodec, LinesCodecError};

use crate::limits::{MAX_CLIENT_FRAME, MAX_CTL_REQUEST, MAX_CTL_RESPONSE, MAX_SERVER_FRAME};
use crate::wire::{ClientMsg, ServerMsg};
use crate::ProtoError;

/// Length-prefixed JSON frames, decoding `In` and encoding `Out`.
#[derive(Debug)]
pub struct FrameCodec<In, Out> {
    decode: LengthDelimitedCodec,
    max_in: usize,
    max_out: usize,
    _types: PhantomData<fn(Out) -> In>,
}

impl<In, Out> FrameCodec<In, Out> {
    /// A codec that refuses incoming frames over `max_in` bytes and will not
    /// send frames over `max_out`.
    pub fn new(max_in: usize, max_out: usize) -> Self {
        FrameCodec {
            decode: LengthDelimitedCodec::builder()
                .length_field_type::<u32>()
                .max_frame_length(max_in)
                .new_codec(),
            max_in,
            max_out,
            _types: PhantomData,
        }
    }

    /// Appends one frame (length, then `body`) to `dst`.
    fn put_frame(&self, body: &[u8], dst: &mut BytesMut) -> Result<(), ProtoError> {
        if body.len() > self.max_out {
            return Err(ProtoError::TooLarge {
                limit: self.max_out,
            });
        }
        dst.reserve(FRAME_HEADER + body.len());
        dst.put_u32(body.len() as u32);
        dst.put_slice(body);
        Ok(())
    }
}

/// Bytes of the length in front of every frame.
const FRAME_HEADER: usize = 4;

/// A message serialised once, to be sent as it is on many connections (a
/// broadcast goes to every online session with the same bytes; only the
/// encryption differs per session).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared<Out> {
    body: Bytes,
    _type: PhantomData<fn(Out)>,
}

impl<Out: Serialize> Prepared<Out> {
    /// Serialises `msg` once.
    pub fn new(msg: &Out) -> Result<Self, ProtoError> {
        let body = serde_json::to_vec(msg).map_err(|e| ProtoError::Malformed(e.to_string()))?;
        Ok(Prepared {
            body: Bytes::from(body),
            _type: PhantomData,
        })
    }
}

impl<Out> Prepared<Out> {
    /// The frame's body (the message's JSON).
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

/// The server's side of a client connection.
pub fn server_side() -> FanoutCodec<ClientMsg, ServerMsg> {
    FanoutCodec(FrameCodec::new(MAX_CLIENT_FRAME, MAX_SERVER_FRAME))
}

/// The daemon's side of its server connection.
pub fn client_side() -> FrameCodec<ServerMsg, ClientMsg> {
    FrameCodec::new(MAX_SERVER_FRAME, MAX_CLIENT_FRAME)
}

impl<In: DeserializeOwned, Out> Decoder for FrameCodec<In, Out> {
    type Item = In;
    type Error = ProtoError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<In>, ProtoError> {
        let frame = self.decode.decode(src).map_err(|e| {
            if e.kind() == std::io::ErrorKind::InvalidData {
                ProtoError::TooLarge { limit: self.max_in }
            } else {
                ProtoError::Io(e)
            }
        })?;
        match frame {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| ProtoError::Malformed(e.to_string())),
        }
    }
}

impl<In, Out: Serialize> Encoder<Out> for FrameCodec<In, Out> {
    type Error = ProtoError;

    /// Serialises straight into `dst` behind a length filled in afterwards:
    /// no intermediate buffer per frame.
    fn encode(&mut self, item: Out, dst: &mut BytesMut) -> Result<(), ProtoError> {
        let start = dst.len();
        dst.put_u32(0);
        let written = serde_json::to_writer((&mut *dst).writer(), &item);
        let len = dst.len() - start - FRAME_HEADER;
        if let Err(e) = written {
            dst.truncate(start);
            return Err(ProtoError::Malformed(e.to_string()));
        }
        if len > self.max_out {
            dst.truncate(start);
            return Err(ProtoError::TooLarge {
                limit: self.max_out,
            });
        }
        dst[start..start + FRAME_HEADER].copy_from_slice(&(len as u32).to_be_bytes());
        Ok(())
    }
}

/// The server's codec: a [`FrameCodec`] that can also send [`Prepared`]
/// frames. A separate type, so that code sending only messages (the
/// daemon) never has two encoders to choose from.
#[derive(Debug)]
pub struct FanoutCodec<In, Out>(FrameCodec<In, Out>);

impl<In: DeserializeOwned, Out> Decoder for FanoutCodec<In, Out> {
    type Item = In;
    type Error = ProtoError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<In>, ProtoError> {
        self.0.decode(src)
    }
}

impl<In, Out: Serialize> Encoder<Out> for FanoutCodec<In, Out> {
    type Error = ProtoError;

    fn encode(&mut self, item: Out, dst: &mut BytesMut) -> Result<(), ProtoError> {
        self.0.encode(item, dst)
    }
}

impl<In, Out> Encoder<Prepared<Out>> for FanoutCodec<In, Out> {
    type Error = ProtoError;

    fn encode(&mut self, item: Prepared<Out>, dst: &mut BytesMut) -> Result<(), ProtoError> {
        self.0.put_frame(&item.body, dst)
    }
}

/// Newline-delimited JSON, decoding `In` and encoding `Out`.
#[derive(Debug)]
pub struct LineCodec<In, Out> {
    lines: LinesCodec,
    max_in: usize,
    _types: PhantomData<fn(Out) -> In>,
}

impl<In, Out> LineCodec<In, Out> {
    /// A codec that refuses incoming lines over `max_in` bytes.
    pub fn new(max_in: usize) -> Self {
        LineCodec {
            lines: LinesCodec::new_with_max_length(max_in),
            max_in,
            _types: PhantomData,
        }
    }
}

/// The daemon's side of a control connection: reads requests.
pub fn daemon_side<In, Out>() -> LineCodec<In, Out> {
    LineCodec::new(MAX_CTL_REQUEST)
}

/// A control client's side: reads responses and events.
pub fn ctl_client_side<In, Out>() -> LineCodec<In, Out> {
    LineCodec::new(MAX_CTL_RESPONSE)
}

impl<In: DeserializeOwned, Out> Decoder for LineCodec<In, Out> {
    /// A bad line is an item, so the connection survives it.
    type Item = Result<In, ProtoError>;
    type Error = ProtoError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, ProtoError> {
        loop {
            return match self.lines.decode(src) {
                Ok(None) => Ok(None),
                // Blank lines (an extra Enter in socat) are not requests.
                Ok(Some(line)) if line.trim().is_empty() => continue,
                Ok(Some(line)) => Ok(Some(
                    serde_json::from_str(&line).map_err(|e| ProtoError::Malformed(e.to_string())),
                )),
                Err(LinesCodecError::MaxLineLengthExceeded) => {
                    Ok(Some(Err(ProtoError::TooLarge { limit: self.max_in })))
                }
                // LinesCodec's only decode-time I/O error: the line (already
                // taken off the buffer) is not UTF-8. A bad line, not a dead
                // stream, so it is answered and the connection goes on.
                Err(LinesCodecError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                    Ok(Some(Err(ProtoError::Malformed(
                        "the line is not valid UTF-8".into(),
                    ))))
                }
                Err(LinesCodecError::Io(e)) => Err(ProtoError::Io(e)),
            };
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, ProtoError> {
        match self.decode(src)? {
            Some(item) => Ok(Some(item)),
            None => {
                // A final line without a newline still counts.
                if src.has_remaining() {
                    src.put_u8(b'\n');
                    self.decode(src)
                } else {
                    Ok(None)
                }
            }
        }
    }
}

impl<In, Out: Serialize> Encoder<Out> for LineCodec<In, Out> {
    type Error = ProtoError;

    fn encode(&mut self, item: Out, dst: &mut BytesMut) -> Result<(), ProtoError> {
        // Compact serde_json output never contains a raw newline.
        let line = serde_json::to_vec(&item).map_err(|e| ProtoError::Malformed(e.to_string()))?;
        dst.reserve(line.len() + 1);
        dst.put_slice(&line);
        dst.put_u8(b'\n');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl;
    use crate::wire::Request;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn frames_round_trip(m in any::<ClientMsg>()) {
            let mut buf = BytesMut::new();
            let mut tx = client_side();
            tx.encode(m.clone(), &mut buf).unwrap();
            let mut rx = server_side();
            prop_assert_eq!(rx.decode(&mut buf).unwrap(), Some(m));
            prop_assert!(buf.is_empty());
        }

        /// A length over the limit is refused from the 4-byte header alone:
        /// nothing of the claimed size is allocated.
        #[test]
        fn oversize_frames_rejected_before_allocation(len in (MAX_CLIENT_FRAME as u32 + 1)..=u32::MAX) {
            let mut buf = BytesMut::with_capacity(16);
            buf.put_u32(len);
            buf.put_slice(b"{}");
            let err = server_side().decode(&mut buf).unwrap_err();
            prop_assert!(matches!(err, ProtoError::TooLarge { .. }), "{err:?}");
            prop_assert!(buf.capacity() < 1024);
        }

        #[test]
        fn garbage_frames_are_malformed_not_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut buf = BytesMut::new();
            buf.put_u32(body.len() as u32);
            buf.put_slice(&body);
            // Either a valid message by chance, or an error: never a panic.
            let _ = server_side().decode(&mut buf);
        }

        #[test]
        fn lines_round_trip(r in any::<ctl::Request>()) {
            let mut buf = BytesMut::new();
            LineCodec::<(), ctl::Request>::new(1 << 20).encode(r.clone(), &mut buf).unwrap();
            let mut rx = daemon_side::<ctl::Request, ()>();
            prop_assert_eq!(rx.decode(&mut buf).unwrap().unwrap().unwrap(), r);
        }
    }

    /// A prepared message goes out as the same bytes as the message itself,
    /// and a frame over the sending limit is refused, leaving `dst` as it was.
    #[test]
    fn prepared_frames_match_and_oversize_is_refused() {
        let msg = ServerMsg::Pong { nonce: 9 };
        let (mut direct, mut prepared) = (BytesMut::new(), BytesMut::new());
        server_side().encode(msg.clone(), &mut direct).unwrap();
        let p = Prepared::new(&msg).unwrap();
        server_side().encode(p.clone(), &mut prepared).unwrap();
        assert_eq!(direct, prepared);
        assert_eq!(client_side().decode(&mut prepared).unwrap(), Some(msg));

        let mut small = FanoutCodec(FrameCodec::<ClientMsg, ServerMsg>::new(16, 8));
        let mut dst = BytesMut::from(&b"kept"[..]);
        let err = small
            .encode(ServerMsg::Pong { nonce: 1 }, &mut dst)
            .unwrap_err();
        assert!(matches!(err, ProtoError::TooLarge { limit: 8 }), "{err:?}");
        let err = small.encode(p, &mut dst).unwrap_err();
        assert!(matches!(err, ProtoError::TooLarge { limit: 8 }), "{err:?}");
        assert_eq!(&dst[..], b"kept");
    }

    #[test]
    fn a_partial_frame_waits_for_more() {
        let mut buf = BytesMut::new();
        client_side()
            .encode(
                ClientMsg::Request {
                    id: 7,
                    req: Request::List,
                },
                &mut buf,
            )
            .unwrap();
        let mut tail = buf.split_off(5);
        let mut rx = server_side();
        assert_eq!(rx.decode(&mut buf).unwrap(), None);
        buf.unsplit(tail.split());
        assert!(rx.decode(&mut buf).unwrap().is_some());
    }

    #[test]
    fn bad_lines_are_items_and_the_stream_goes_on() {
        let mut rx = LineCodec::<ctl::Request, ()>::new(64);
        let mut buf = BytesMut::new();
        buf.put_slice(b"not json\n\n");
        buf.put_slice(&[b'x'; 100]);
        buf.put_slice(b"\n\xff\xfe not utf-8\n{\"id\":3,\"cmd\":\"status\"}\n");
        assert!(matches!(
            rx.decode(&mut buf),
            Ok(Some(Err(ProtoError::Malformed(_))))
        ));
        assert!(matches!(
            rx.decode(&mut buf),
            Ok(Some(Err(ProtoError::TooLarge { .. })))
        ));
        assert!(matches!(
            rx.decode(&mut buf),
            Ok(Some(Err(ProtoError::Malformed(_))))
        ));
        let ok = rx.decode(&mut buf).unwrap().unwrap().unwrap();
        assert_eq!(ok.id, 3);
        assert_eq!(ok.cmd, ctl::Command::Status);
    }
}
