//! gRPC message framing: the 5-byte prefix, per-message compression and its negotiation.

use std::io::Read as _;

use bytes::{BufMut, Bytes, BytesMut};
use flate2::Compression;
use flate2::read::{GzEncoder, MultiGzDecoder};
use http::{HeaderMap, HeaderName};
use tonic::{Code, Status};

/// The flag byte and the 4-byte length before every message.
pub const PREFIX_LEN: usize = 5;
// Header names as constants: looking one up by string parses the name on every call.
pub const GRPC_ENCODING: HeaderName = HeaderName::from_static("grpc-encoding");
pub const GRPC_ACCEPT_ENCODING: HeaderName = HeaderName::from_static("grpc-accept-encoding");
/// The encodings the proxy reads; it always writes identity-encoded messages.
pub const SUPPORTED_ENCODINGS: &str = "gzip";

/// How the messages of one direction of a call are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageEncoding {
    Identity,
    Gzip,
}

impl MessageEncoding {
    /// Reads `grpc-encoding`; an encoding the proxy cannot read is `UNIMPLEMENTED`, as gRPC asks.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, Status> {
        match headers.get(GRPC_ENCODING).map(|v| v.as_bytes()) {
            None | Some(b"identity") => Ok(Self::Identity),
            Some(b"gzip") => Ok(Self::Gzip),
            Some(other) => Err(Status::new(
                Code::Unimplemented,
                format!(
                    "message encoding {:?} is not supported; supported: identity, {SUPPORTED_ENCODINGS}",
                    String::from_utf8_lossy(other)
                ),
            )),
        }
    }
}

/// Why a body could not be read as gRPC messages.
#[derive(Debug)]
pub enum FrameError {
    Malformed(String),
    TooLarge { limit: usize },
}

/// Splits a complete body into its messages, decompressing them.
pub fn decode_messages(body: &[u8], encoding: MessageEncoding, limit: usize) -> Result<Vec<Vec<u8>>, FrameError> {
    let mut messages = Vec::with_capacity(1);
    let mut rest = body;
    while !rest.is_empty() {
        let prefix = read_prefix(rest, encoding, limit)?.ok_or_else(|| ends_inside_a_frame(rest.len()))?;
        let frame = rest
            .get(..prefix.frame_len())
            .ok_or_else(|| ends_inside_a_frame(rest.len()))?;
        let payload = &frame[PREFIX_LEN..];
        let message = if prefix.compressed {
            let mut inflater = Inflater::new(payload, limit);
            let mut out = Vec::new();
            while !inflater.step(&mut out, limit)? {}
            out
        } else {
            payload.to_vec()
        };
        messages.push(message);
        rest = &rest[prefix.frame_len()..];
    }
    Ok(messages)
}

/// The error for a body that stops part of the way through a frame.
pub fn ends_inside_a_frame(left_over: usize) -> FrameError {
    FrameError::Malformed(format!(
        "body ends inside a message frame ({left_over} bytes left over)"
    ))
}

/// What a frame's 5-byte prefix says about the message after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramePrefix {
    pub compressed: bool,
    /// Bytes of the message as sent, before any decompression.
    pub len: usize,
}

impl FramePrefix {
    /// Bytes of the whole frame, prefix included.
    pub fn frame_len(&self) -> usize {
        PREFIX_LEN + self.len
    }
}

/// Reads and checks the prefix at the start of `buf`, or `None` while fewer than 5 bytes
/// are in. A message declared larger than `limit` is refused before any of it is read.
pub fn read_prefix(buf: &[u8], encoding: MessageEncoding, limit: usize) -> Result<Option<FramePrefix>, FrameError> {
    if buf.len() < PREFIX_LEN {
        return Ok(None);
    }
    let compressed = match buf[0] {
        0 => false,
        1 => true,
        flag => return Err(FrameError::Malformed(format!("invalid message flag {flag}"))),
    };
    if compressed && encoding == MessageEncoding::Identity {
        return Err(FrameError::Malformed(
            "message is flagged compressed but no grpc-encoding was given".into(),
        ));
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len > limit {
        return Err(FrameError::TooLarge { limit });
    }
    Ok(Some(FramePrefix { compressed, len }))
}

/// Inflates one gzip message a step at a time, so the caller can account for memory before
/// each step, and stops as soon as the output passes `limit`: a bomb costs the limit, no more.
pub struct Inflater<'a> {
    // A gzip stream may hold several members one after another (RFC 1952 §2.2), and all of
    // them are the message. One byte past the limit tells "at the limit" from "over it".
    decoder: std::io::Take<MultiGzDecoder<&'a [u8]>>,
    limit: usize,
}

impl<'a> Inflater<'a> {
    pub fn new(compressed: &'a [u8], limit: usize) -> Self {
        Self {
            decoder: MultiGzDecoder::new(compressed).take(limit as u64 + 1),
            limit,
        }
    }

    /// Appends up to `step` (more than zero) bytes of the message to `out`; true once it is complete.
    pub fn step(&mut self, out: &mut Vec<u8>, step: usize) -> Result<bool, FrameError> {
        let read = (&mut self.decoder)
            .take(step as u64)
            .read_to_end(out)
            .map_err(|e| FrameError::Malformed(format!("gzip message does not decompress: {e}")))?;
        if out.len() > self.limit {
            return Err(FrameError::TooLarge { limit: self.limit });
        }
        Ok(read < step)
    }
}

/// Messages below this are copied behind their prefix into one buffer, which goes out as
/// one DATA frame; larger ones go out after a separate prefix rather than be copied.
const COPIED_BEHIND_PREFIX: usize = 64 * 1024;

/// One message framed as the pieces of a body, uncompressed, without copying a large message.
pub fn frame_pieces(message: Vec<u8>) -> Vec<Bytes> {
    if message.len() < COPIED_BEHIND_PREFIX {
        return vec![encode_frame(&message)];
    }
    let mut prefix = BytesMut::with_capacity(PREFIX_LEN);
    prefix.put_u8(0);
    prefix.put_u32(message.len() as u32);
    vec![prefix.freeze(), Bytes::from(message)]
}

/// Frames one message, uncompressed.
pub fn encode_frame(message: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(PREFIX_LEN + message.len());
    frame.put_u8(0);
    frame.put_u32(message.len() as u32);
    frame.put_slice(message);
    frame.freeze()
}

/// Frames one message, gzip-compressed (for clients and tests that exercise compression).
pub fn encode_frame_gzip(message: &[u8]) -> Bytes {
    let mut compressed = Vec::new();
    GzEncoder::new(message, Compression::fast())
        .read_to_end(&mut compressed)
        .expect("compressing an in-memory buffer cannot fail");
    let mut frame = BytesMut::with_capacity(PREFIX_LEN + compressed.len());
    frame.put_u8(1);
    frame.put_u32(compressed.len() as u32);
    frame.put_slice(&compressed);
    frame.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gzip_message_of_several_members_is_read_whole() {
        let member = |text: &[u8]| {
            let mut compressed = Vec::new();
            GzEncoder::new(text, Compression::fast())
                .read_to_end(&mut compressed)
                .unwrap();
            compressed
        };
        let compressed = [member(b"first half, "), member(b"second half")].concat();
        let mut frame = vec![1];
        frame.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
        frame.extend_from_slice(&compressed);
        let messages = decode_messages(&frame, MessageEncoding::Gzip, 1024).unwrap();
        assert_eq!(messages, vec![b"first half, second half".to_vec()]);
        assert!(matches!(
            decode_messages(&frame, MessageEncoding::Gzip, 15),
            Err(FrameError::TooLarge { limit: 15 })
        ));
    }

    #[test]
    fn large_messages_are_framed_without_a_copy_and_small_ones_in_one_piece() {
        let small = frame_pieces(vec![1; 100]);
        assert_eq!(small, vec![encode_frame(&[1; 100])]);
        let large = vec![2; 100_000];
        let address = large.as_ptr();
        let pieces = frame_pieces(large);
        assert_eq!(pieces.concat(), encode_frame(&[2; 100_000]).to_vec());
        assert_eq!(pieces[1].as_ptr(), address, "the message was copied");
    }

    #[test]
    fn splits_identity_and_gzip_frames() {
        let body = [encode_frame(b"first"), encode_frame_gzip(b"second")].concat();
        let messages = decode_messages(&body, MessageEncoding::Gzip, 1024).unwrap();
        assert_eq!(messages, vec![b"first".to_vec(), b"second".to_vec()]);
        assert!(
            decode_messages(&[], MessageEncoding::Identity, 1024)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn rejects_truncated_frames_bad_flags_and_undeclared_compression() {
        let frame = encode_frame(b"message");
        assert!(matches!(
            decode_messages(&frame[..frame.len() - 1], MessageEncoding::Identity, 1024),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            decode_messages(&[2, 0, 0, 0, 0], MessageEncoding::Identity, 1024),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            decode_messages(&encode_frame_gzip(b"x"), MessageEncoding::Identity, 1024),
            Err(FrameError::Malformed(_))
        ));
        let mut garbage = encode_frame(b"not gzip").to_vec();
        garbage[0] = 1;
        assert!(matches!(
            decode_messages(&garbage, MessageEncoding::Gzip, 1024),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn limits_apply_to_declared_and_decompressed_sizes() {
        assert!(matches!(
            decode_messages(&encode_frame(&[0; 2048]), MessageEncoding::Identity, 1024),
            Err(FrameError::TooLarge { limit: 1024 })
        ));
        // A small compressed frame that inflates past the limit (a gzip bomb) is refused.
        let bomb = encode_frame_gzip(&vec![0; 1 << 20]);
        assert!(bomb.len() < 64 * 1024);
        assert!(matches!(
            decode_messages(&bomb, MessageEncoding::Gzip, 64 * 1024),
            Err(FrameError::TooLarge { .. })
        ));
        assert_eq!(
            decode_messages(&encode_frame_gzip(&[7; 1024]), MessageEncoding::Gzip, 1024).unwrap(),
            vec![vec![7; 1024]]
        );
    }

    #[test]
    fn unknown_message_encodings_are_unimplemented() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            MessageEncoding::from_headers(&headers).unwrap(),
            MessageEncoding::Identity
        );
        headers.insert(GRPC_ENCODING, "gzip".parse().unwrap());
        assert_eq!(MessageEncoding::from_headers(&headers).unwrap(), MessageEncoding::Gzip);
        headers.insert(GRPC_ENCODING, "snappy".parse().unwrap());
        assert_eq!(
            MessageEncoding::from_headers(&headers).unwrap_err().code(),
            Code::Unimplemented
        );
    }
}
