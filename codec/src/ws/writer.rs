//! Frames onto the wire. The server writes only headers: each goes into a shared arena and
//! comes back as `Bytes`, to be sent with the untouched payload `Bytes` in one writev, so a
//! message pushed to many connections is encoded once. The client masks into the caller's
//! buffer with a key the caller supplies (randomness belongs to the caller). Never validates
//! what it is asked to send: the caller keeps control payloads within 125 bytes.

use std::marker::PhantomData;

use bytes::{Bytes, BytesMut};

use super::close::CloseCode;
use super::frame::{FrameHeader, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
use super::mask::apply_mask;
use super::opcode::OpCode;
use super::role::{Client, Role, Server};

/// Bytes reserved at once for server headers: one allocation serves dozens of headers, and a
/// header kept in a slow connection's queue pins at most this much.
const HEADER_ARENA: usize = 512;

/// Encodes frames for role `R`. The server's encoder keeps no per-connection state: one per
/// reactor thread serves all its connections.
#[derive(Debug)]
pub struct FrameEncoder<R: Role> {
    arena: BytesMut,
    role: PhantomData<fn() -> R>,
}

impl<R: Role> FrameEncoder<R> {
    /// An encoder; allocates nothing until its first header.
    pub fn new() -> Self {
        FrameEncoder {
            arena: BytesMut::new(),
            role: PhantomData,
        }
    }
}

impl<R: Role> Default for FrameEncoder<R> {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameEncoder<Server> {
    /// The 2-10 byte unmasked header for a payload of `payload_len` bytes.
    pub fn encode_header(&mut self, opcode: OpCode, fin: bool, payload_len: usize) -> Bytes {
        if self.arena.capacity() < MAX_HEADER_LEN {
            // Reclaims the arena in place when every earlier header has been dropped.
            self.arena.reserve(HEADER_ARENA);
        }
        server_header(opcode, fin, payload_len).write(&mut self.arena);
        self.arena.split().freeze()
    }

    /// Appends a whole unmasked frame to `dst`: for small frames (pongs, closes) where a
    /// separate header buffer is not worth a writev entry.
    pub fn encode_frame(&mut self, opcode: OpCode, fin: bool, payload: &[u8], dst: &mut BytesMut) {
        let header = server_header(opcode, fin, payload.len());
        dst.reserve(header.encoded_len() + payload.len());
        header.write(dst);
        dst.extend_from_slice(payload);
    }
}

impl FrameEncoder<Client> {
    /// Appends a whole frame to `dst`, its payload masked with `key`.
    pub fn encode_masked(
        &mut self,
        opcode: OpCode,
        fin: bool,
        payload: &[u8],
        key: [u8; 4],
        dst: &mut BytesMut,
    ) {
        let header = FrameHeader {
            fin,
            rsv: 0,
            opcode,
            mask: Some(key),
            payload_len: payload.len() as u64,
        };
        dst.reserve(header.encoded_len() + payload.len());
        header.write(dst);
        let start = dst.len();
        dst.extend_from_slice(payload);
        apply_mask(&mut dst[start..], key, 0);
    }
}

fn server_header(opcode: OpCode, fin: bool, payload_len: usize) -> FrameHeader {
    FrameHeader {
        fin,
        rsv: 0,
        opcode,
        mask: None,
        payload_len: payload_len as u64,
    }
}

/// The payload of a close frame: `code` then `reason`, cut at a character boundary so the
/// payload fits a control frame (125 bytes).
pub fn close_payload(code: CloseCode, reason: &str) -> Bytes {
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = BytesMut::with_capacity(2 + end);
    payload.extend_from_slice(&code.0.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    payload.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_5_7_unmasked_hello_header() {
        let mut encoder = FrameEncoder::<Server>::new();
        assert_eq!(
            &encoder.encode_header(OpCode::Text, true, 5)[..],
            [0x81, 0x05]
        );
    }

    #[test]
    fn rfc_5_7_unmasked_ping_hello() {
        let mut dst = BytesMut::new();
        FrameEncoder::<Server>::new().encode_frame(OpCode::Ping, true, b"Hello", &mut dst);
        assert_eq!(&dst[..], [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    }

    #[test]
    fn rfc_5_7_masked_pong_hello() {
        let mut dst = BytesMut::new();
        let key = [0x37, 0xfa, 0x21, 0x3d];
        FrameEncoder::<Client>::new().encode_masked(OpCode::Pong, true, b"Hello", key, &mut dst);
        let expected = [
            0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(&dst[..], expected);
    }

    #[test]
    fn rfc_5_7_masked_hello_text() {
        let mut dst = BytesMut::new();
        let key = [0x37, 0xfa, 0x21, 0x3d];
        FrameEncoder::<Client>::new().encode_masked(OpCode::Text, true, b"Hello", key, &mut dst);
        let expected = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(&dst[..], expected);
    }

    #[test]
    fn rfc_5_7_fragmented_hello_headers() {
        let mut encoder = FrameEncoder::<Server>::new();
        assert_eq!(
            &encoder.encode_header(OpCode::Text, false, 3)[..],
            [0x01, 0x03]
        );
        assert_eq!(
            &encoder.encode_header(OpCode::Continuation, true, 2)[..],
            [0x80, 0x02]
        );
    }

    #[test]
    fn rfc_5_7_256_byte_and_64_kib_binary_headers() {
        let mut encoder = FrameEncoder::<Server>::new();
        assert_eq!(
            &encoder.encode_header(OpCode::Binary, true, 256)[..],
            [0x82, 0x7E, 0x01, 0x00]
        );
        assert_eq!(
            &encoder.encode_header(OpCode::Binary, true, 65536)[..],
            [0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00]
        );
    }

    #[test]
    fn headers_share_one_arena_allocation() {
        let mut encoder = FrameEncoder::<Server>::new();
        let first = encoder.encode_header(OpCode::Binary, true, 1);
        let second = encoder.encode_header(OpCode::Binary, true, 2);
        assert_eq!(second.as_ptr() as usize, first.as_ptr() as usize + 2);
        assert_eq!((&first[..], &second[..]), (&[0x82, 1][..], &[0x82, 2][..]));
    }

    #[test]
    fn arena_refills_when_used_up() {
        let mut encoder = FrameEncoder::<Server>::new();
        let headers: Vec<Bytes> = (0..HEADER_ARENA)
            .map(|len| encoder.encode_header(OpCode::Binary, true, len))
            .collect();
        for (len, header) in headers.iter().enumerate() {
            let mut expected = BytesMut::new();
            server_header(OpCode::Binary, true, len).write(&mut expected);
            assert_eq!(header[..], expected[..], "{len}");
        }
    }

    #[test]
    fn close_payload_is_code_then_reason() {
        assert_eq!(
            &close_payload(CloseCode::GOING_AWAY, "bye")[..],
            [0x03, 0xE9, b'b', b'y', b'e']
        );
    }

    #[test]
    fn close_payload_reason_is_cut_at_a_char_boundary() {
        let reason = "é".repeat(100);
        let payload = close_payload(CloseCode::NORMAL, &reason);
        assert_eq!(payload.len(), 2 + 122);
        assert!(std::str::from_utf8(&payload[2..]).is_ok());
    }
}
