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

use bytes::{Buf, BufMut, BytesMut};
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
    encode: LengthDelimitedCodec,
    max_in: usize,
    _types: PhantomData<fn(Out) -> In>,
}

impl<In, Out> FrameCodec<In, Out> {
    /// A codec that refuses incoming frames over `max_in` bytes and will not
    /// send frames over `max_out`.
    pub fn new(max_in: usize, max_out: usize) -> Self {
        let build = |max| {
            LengthDelimitedCodec::builder()
                .length_field_type::<u32>()
                .max_frame_length(max)
                .new_codec()
        };
        FrameCodec {
            decode: build(max_in),
            encode: build(max_out),
            max_in,
            _types: PhantomData,
        }
    }
}

/// The server's side of a client connection.
pub fn server_side() -> FrameCodec<ClientMsg, ServerMsg> {
    FrameCodec::new(MAX_CLIENT_FRAME, MAX_SERVER_FRAME)
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

    fn encode(&mut self, item: Out, dst: &mut BytesMut) -> Result<(), ProtoError> {
        let body = serde_json::to_vec(&item).map_err(|e| ProtoError::Malformed(e.to_string()))?;
        self.encode
            .encode(bytes::Bytes::from(body), dst)
            .map_err(|e: std::io::Error| {
                if e.kind() == std::io::ErrorKind::InvalidInput {
                    ProtoError::TooLarge {
                        limit: MAX_SERVER_FRAME,
                    }
                } else {
                    ProtoError::Io(e)
                }
            })
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
