//! `Framing`: packets to and from the byte stream of one connection, framed TCP or WebSocket.
//!
//! Sans-I/O: bytes read go in, whole packets come out; packets to send go out as bytes in the
//! caller's buffer (over WebSocket one masked binary message each, behind the upgrade request,
//! which the server accepts pipelined). WebSocket pings are answered and a close is echoed here,
//! so the session above sees only packets. Randomness (nonce, mask keys) comes from the caller.

use bytes::{Bytes, BytesMut};
use rand::Rng;
use switchboard_codec::packet::{Packet, PacketDecoder, PacketHeader, HEADER_LEN};
use switchboard_codec::ws::handshake::{ClientRequest, ClientRequestError};
use switchboard_codec::ws::{
    close_payload, Client, ClientHandshake, CloseCode, FrameEncoder, Message, MessageReader,
    OpCode, ReaderConfig,
};
use switchboard_codec::Decoded;

use crate::error::LinkError;

/// The framing state of one connection.
#[derive(Debug)]
pub enum Framing {
    /// Framed TCP: packets one after another on the stream.
    Tcp(PacketDecoder),
    /// WebSocket: the upgrade, then one binary message per packet.
    Ws(Box<WsFraming>),
}

/// The WebSocket side of [`Framing`].
#[derive(Debug)]
pub struct WsFraming {
    /// Until the server's 101 has been read.
    handshake: Option<ClientHandshake>,
    reader: MessageReader<Client>,
    encoder: FrameEncoder<Client>,
    max_packet: u32,
}

impl Framing {
    /// Framed TCP, refusing payloads over `max_packet`.
    pub fn tcp(max_packet: u32) -> Self {
        Framing::Tcp(PacketDecoder::new(max_packet))
    }

    /// WebSocket to `authority` (`host:port`) and `path`: writes the upgrade request to `out`.
    pub fn ws(
        authority: &str,
        path: &str,
        nonce: [u8; 16],
        max_packet: u32,
        out: &mut BytesMut,
    ) -> Result<Self, ClientRequestError> {
        let handshake = ClientHandshake::start(&ClientRequest::new(authority, path), nonce, out)?;
        let config = ReaderConfig {
            max_message: HEADER_LEN + max_packet as usize,
            ..ReaderConfig::default()
        };
        Ok(Framing::Ws(Box::new(WsFraming {
            handshake: Some(handshake),
            reader: MessageReader::new(config),
            encoder: FrameEncoder::new(),
            max_packet,
        })))
    }

    /// Appends `packet` (a whole encoded packet) to `out`, framed for the wire.
    pub fn encode(&mut self, packet: &[u8], out: &mut BytesMut, rng: &mut impl Rng) {
        match self {
            Framing::Tcp(_) => out.extend_from_slice(packet),
            Framing::Ws(ws) => {
                ws.encoder
                    .encode_masked(OpCode::Binary, true, packet, rng.gen(), out)
            }
        }
    }

    /// Appends a goodbye to `out`: a WebSocket close frame (TCP has none, it just closes).
    pub fn encode_close(&mut self, out: &mut BytesMut, rng: &mut impl Rng) {
        if let Framing::Ws(ws) = self {
            let payload = close_payload(CloseCode::NORMAL, "");
            ws.encoder
                .encode_masked(OpCode::Close, true, &payload, rng.gen(), out);
        }
    }

    /// The next whole packet from the front of `input`, or `None` until more bytes arrive.
    /// Control frames are answered into `out` on the way. A WebSocket close from the server
    /// is echoed and reported as [`LinkError::Closed`].
    pub fn decode(
        &mut self,
        input: &mut BytesMut,
        out: &mut BytesMut,
        rng: &mut impl Rng,
    ) -> Result<Option<Packet>, LinkError> {
        match self {
            Framing::Tcp(decoder) => match decoder.decode(input).map_err(LinkError::Framing)? {
                Decoded::Complete(packet) => Ok(Some(packet)),
                Decoded::NeedMore => Ok(None),
            },
            Framing::Ws(ws) => ws.decode(input, out, rng),
        }
    }
}

impl WsFraming {
    fn decode(
        &mut self,
        input: &mut BytesMut,
        out: &mut BytesMut,
        rng: &mut impl Rng,
    ) -> Result<Option<Packet>, LinkError> {
        if let Some(handshake) = &mut self.handshake {
            match handshake.decode(input).map_err(LinkError::Handshake)? {
                Decoded::Complete(_) => self.handshake = None,
                Decoded::NeedMore => return Ok(None),
            }
        }
        loop {
            let message = match self.reader.read(input).map_err(LinkError::WebSocket)? {
                Decoded::Complete(message) => message,
                Decoded::NeedMore => return Ok(None),
            };
            match message {
                Message::Binary(bytes) => return self.packet(bytes).map(Some),
                Message::Ping(payload) => {
                    self.encoder
                        .encode_masked(OpCode::Pong, true, &payload, rng.gen(), out)
                }
                Message::Pong(_) => {}
                Message::Text(_) => return Err(LinkError::TextMessage),
                Message::Close(frame) => {
                    let code = frame.map_or(CloseCode::NORMAL, |f| f.code);
                    let payload = close_payload(code, "");
                    self.encoder
                        .encode_masked(OpCode::Close, true, &payload, rng.gen(), out);
                    return Err(LinkError::Closed);
                }
            }
        }
    }

    /// The one packet a binary message holds.
    fn packet(&self, bytes: Bytes) -> Result<Packet, LinkError> {
        let len = bytes.len();
        match PacketHeader::parse(&bytes, self.max_packet).map_err(LinkError::Framing)? {
            Decoded::Complete(header) if HEADER_LEN + header.payload_len as usize == len => {
                Ok(Packet {
                    command: header.command,
                    payload: bytes.slice(HEADER_LEN..),
                })
            }
            _ => Err(LinkError::NotOnePacket { len }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use switchboard_codec::ws::{FrameDecoder, Server, ServerHandshake};

    fn packet_bytes(command: u16, payload: &[u8]) -> Vec<u8> {
        let header = PacketHeader {
            command,
            payload_len: payload.len() as u32,
        };
        [&header.to_bytes()[..], payload].concat()
    }

    #[test]
    fn tcp_passes_packets_through_and_splits_them_off_any_split() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut framing = Framing::tcp(1024);
        let mut out = BytesMut::new();
        framing.encode(&packet_bytes(1, b"abc"), &mut out, &mut rng);
        assert_eq!(&out[..], &packet_bytes(1, b"abc")[..]);
        let stream = [packet_bytes(0x8001, b"xy"), packet_bytes(0x4001, b"")].concat();
        for cut in 0..=stream.len() {
            let mut input = BytesMut::from(&stream[..cut]);
            let mut got = Vec::new();
            while let Some(p) = framing.decode(&mut input, &mut out, &mut rng).unwrap() {
                got.push(p.command);
            }
            input.extend_from_slice(&stream[cut..]);
            while let Some(p) = framing.decode(&mut input, &mut out, &mut rng).unwrap() {
                got.push(p.command);
            }
            assert_eq!(got, [0x8001, 0x4001], "cut at {cut}");
        }
    }

    #[test]
    fn tcp_refuses_a_bad_magic() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut input = BytesMut::from(&b"HTTP/1.1 400"[..]);
        let got = Framing::tcp(1024).decode(&mut input, &mut BytesMut::new(), &mut rng);
        assert!(matches!(got, Err(LinkError::Framing(_))));
    }

    /// A server side built from the codec: accepts the upgrade written by `Framing::ws`.
    fn upgrade() -> (Framing, BytesMut, StdRng) {
        let rng = StdRng::seed_from_u64(2);
        let mut out = BytesMut::new();
        let framing = Framing::ws("127.0.0.1:9", "/chat", [7; 16], 1024, &mut out).unwrap();
        let request = match ServerHandshake::new().decode(&mut out).unwrap() {
            Decoded::Complete(request) => request,
            Decoded::NeedMore => panic!("whole request written"),
        };
        assert_eq!(request.path(), "/chat");
        assert_eq!(request.host(), "127.0.0.1:9");
        let mut answer = BytesMut::new();
        request.write_accept(None, &mut answer).unwrap();
        (framing, answer, rng)
    }

    fn server_frame(opcode: OpCode, payload: &[u8]) -> BytesMut {
        let mut dst = BytesMut::new();
        FrameEncoder::<Server>::new().encode_frame(opcode, true, payload, &mut dst);
        dst
    }

    #[test]
    fn ws_reads_packets_behind_the_101_and_answers_pings() {
        let (mut framing, mut input, mut rng) = upgrade();
        input.extend_from_slice(&server_frame(OpCode::Ping, b"p"));
        input.extend_from_slice(&server_frame(OpCode::Binary, &packet_bytes(0x8010, b"ok")));
        let mut out = BytesMut::new();
        let packet = framing.decode(&mut input, &mut out, &mut rng).unwrap();
        assert_eq!(
            packet.map(|p| (p.command, p.payload)),
            Some((0x8010, Bytes::from_static(b"ok")))
        );
        let mut frames = FrameDecoder::<Server>::new(1024);
        let pong = frames.decode(&mut out).unwrap().complete().expect("a pong");
        assert_eq!(pong.opcode, OpCode::Pong);
        assert_eq!(&pong.payload[..], b"p");
    }

    #[test]
    fn ws_encodes_one_masked_binary_message_per_packet() {
        let (mut framing, _, mut rng) = upgrade();
        let mut out = BytesMut::new();
        framing.encode(&packet_bytes(1, b"ping"), &mut out, &mut rng);
        assert_eq!(out[1] & 0x80, 0x80, "a client frame is masked");
        let mut frames = FrameDecoder::<Server>::new(1024);
        let frame = frames
            .decode(&mut out)
            .unwrap()
            .complete()
            .expect("a frame");
        assert_eq!(frame.opcode, OpCode::Binary);
        assert_eq!(&frame.payload[..], &packet_bytes(1, b"ping")[..]);
    }

    #[test]
    fn both_transports_take_a_payload_of_exactly_max_packet_and_refuse_one_more() {
        // docs/protocol.md §1: one limit on the payload; a WebSocket message is one packet,
        // so it may be the limit plus the 10-byte header.
        let at_limit = packet_bytes(0x8031, &[0; 1024]);
        let over = packet_bytes(0x8031, &[0; 1025]);
        let mut rng = StdRng::seed_from_u64(4);
        let mut input = BytesMut::from(&at_limit[..]);
        let got = Framing::tcp(1024).decode(&mut input, &mut BytesMut::new(), &mut rng);
        assert_eq!(got.unwrap().map(|p| p.payload.len()), Some(1024));
        let mut input = BytesMut::from(&over[..]);
        let got = Framing::tcp(1024).decode(&mut input, &mut BytesMut::new(), &mut rng);
        assert!(matches!(got, Err(LinkError::Framing(_))), "{got:?}");

        let (mut framing, mut input, mut rng) = upgrade();
        input.extend_from_slice(&server_frame(OpCode::Binary, &at_limit));
        let got = framing.decode(&mut input, &mut BytesMut::new(), &mut rng);
        assert_eq!(got.unwrap().map(|p| p.payload.len()), Some(1024));
        let (mut framing, mut input, mut rng) = upgrade();
        input.extend_from_slice(&server_frame(OpCode::Binary, &over));
        let got = framing.decode(&mut input, &mut BytesMut::new(), &mut rng);
        assert!(got.is_err(), "{got:?}");
    }

    #[test]
    fn ws_refusals() {
        let (mut framing, mut input, mut rng) = upgrade();
        let mut two = packet_bytes(1, b"");
        two.extend(packet_bytes(2, b""));
        input.extend_from_slice(&server_frame(OpCode::Binary, &two));
        let got = framing.decode(&mut input, &mut BytesMut::new(), &mut rng);
        assert!(matches!(got, Err(LinkError::NotOnePacket { len: 20 })));

        let (mut framing, mut input, mut rng) = upgrade();
        input.extend_from_slice(&server_frame(OpCode::Text, b"hi"));
        let got = framing.decode(&mut input, &mut BytesMut::new(), &mut rng);
        assert!(matches!(got, Err(LinkError::TextMessage)));

        let (mut framing, mut input, mut rng) = upgrade();
        input.extend_from_slice(&server_frame(OpCode::Close, &[0x03, 0xe9]));
        let mut out = BytesMut::new();
        let got = framing.decode(&mut input, &mut out, &mut rng);
        assert!(matches!(got, Err(LinkError::Closed)));
        assert!(!out.is_empty(), "the close is echoed");

        let mut rng = StdRng::seed_from_u64(3);
        let mut framing = Framing::ws("h:1", "/", [1; 16], 1024, &mut BytesMut::new()).unwrap();
        let mut input = BytesMut::from(&b"HTTP/1.1 404 Not Found\r\n\r\n"[..]);
        let got = framing.decode(&mut input, &mut BytesMut::new(), &mut rng);
        assert!(matches!(got, Err(LinkError::Handshake(_))));
    }
}
