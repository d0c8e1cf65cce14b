//! `Link`: the client-side framing of one connection, framed TCP or WebSocket, on the codec's
//! client side. Sans-I/O: bytes read go in, whole items come out; what to send is appended to
//! the caller's buffer. A link holds no buffer of its own (the engine lends one per read), so
//! an idle connection costs only this small state. WebSocket pings are answered here.

use bytes::{Bytes, BytesMut};
use switchboard_codec::packet::{PacketDecoder, PacketHeader, HEADER_LEN};
use switchboard_codec::ws::handshake::{ClientRequest, ClientRequestError};
use switchboard_codec::ws::{
    close_payload, Client, ClientHandshake, CloseCode, FrameEncoder, Message, MessageReader,
    OpCode, ReaderConfig,
};
use switchboard_codec::Decoded;

/// Largest packet payload accepted from a target: the server's default `--max-packet`. Over
/// WebSocket a message of this plus the 10-byte header is accepted (docs/protocol.md §1).
pub const MAX_INCOMING: u32 = 1 << 20;

/// What a link delivers.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// The server accepted the WebSocket upgrade.
    Upgraded,
    /// A whole Switchboard packet (framed TCP, or one WebSocket binary message in packet mode).
    Packet {
        /// Its command.
        command: u16,
        /// Its payload.
        payload: Bytes,
    },
    /// A WebSocket binary message in raw mode (echo of a generic WebSocket server).
    Raw(Bytes),
    /// A WebSocket pong.
    Pong(Bytes),
}

/// Why a link gave up; [`LinkError::kind`] names it in the summary's `failed` object.
#[derive(Debug, PartialEq, Eq)]
pub enum LinkError {
    /// The 101 answer was refused.
    Handshake(String),
    /// A WebSocket framing rule was broken.
    WebSocket(String),
    /// A Switchboard packet header was refused.
    Framing(String),
    /// A binary message that is not exactly one packet.
    NotOnePacket,
    /// A text message from a binary protocol.
    Text,
    /// The server sent a WebSocket close (echoed into the output).
    Closed(u16),
}

impl LinkError {
    /// A short name for the summary.
    pub fn kind(&self) -> String {
        match self {
            LinkError::Handshake(_) => "handshake".into(),
            LinkError::WebSocket(_) => "ws_protocol".into(),
            LinkError::Framing(_) => "framing".into(),
            LinkError::NotOnePacket => "not_one_packet".into(),
            LinkError::Text => "ws_text".into(),
            LinkError::Closed(code) => format!("ws_close_{code}"),
        }
    }
}

/// The framing state of one connection.
#[derive(Debug)]
pub enum Link {
    /// Framed TCP.
    Tcp(PacketDecoder),
    /// WebSocket.
    Ws(Box<WsLink>),
}

/// The WebSocket side of a [`Link`].
#[derive(Debug)]
pub struct WsLink {
    handshake: Option<ClientHandshake>,
    reader: MessageReader<Client>,
    /// Whether binary messages carry Switchboard packets (a chat server) or anything (echo).
    packets: bool,
}

impl Link {
    /// A framed-TCP link.
    pub fn tcp() -> Link {
        Link::Tcp(PacketDecoder::new(MAX_INCOMING))
    }

    /// A WebSocket link: writes the upgrade request for `authority` and `path` to `out`.
    pub fn ws(
        authority: &str,
        path: &str,
        nonce: [u8; 16],
        packets: bool,
        out: &mut BytesMut,
    ) -> Result<Link, ClientRequestError> {
        let handshake = ClientHandshake::start(&ClientRequest::new(authority, path), nonce, out)?;
        let config = ReaderConfig {
            max_message: MAX_INCOMING as usize + HEADER_LEN,
            ..ReaderConfig::default()
        };
        Ok(Link::Ws(Box::new(WsLink {
            handshake: Some(handshake),
            reader: MessageReader::new(config),
            packets,
        })))
    }

    /// Appends one message: `bytes` as they are on TCP, one masked binary message on WebSocket.
    pub fn encode(
        &self,
        bytes: &[u8],
        encoder: &mut FrameEncoder<Client>,
        key: [u8; 4],
        out: &mut BytesMut,
    ) {
        match self {
            Link::Tcp(_) => out.extend_from_slice(bytes),
            Link::Ws(_) => encoder.encode_masked(OpCode::Binary, true, bytes, key, out),
        }
    }

    /// Appends a WebSocket ping; `false` on TCP, which has none.
    pub fn encode_ping(
        &self,
        payload: &[u8],
        encoder: &mut FrameEncoder<Client>,
        key: [u8; 4],
        out: &mut BytesMut,
    ) -> bool {
        match self {
            Link::Tcp(_) => false,
            Link::Ws(_) => {
                encoder.encode_masked(OpCode::Ping, true, payload, key, out);
                true
            }
        }
    }

    /// The next item from the front of `input`, `None` until more bytes arrive. Control frames
    /// are answered into `out`.
    pub fn decode(
        &mut self,
        input: &mut BytesMut,
        encoder: &mut FrameEncoder<Client>,
        key: [u8; 4],
        out: &mut BytesMut,
    ) -> Result<Option<Incoming>, LinkError> {
        let ws = match self {
            Link::Tcp(decoder) => {
                return match decoder.decode(input) {
                    Ok(Decoded::Complete(p)) => Ok(Some(Incoming::Packet {
                        command: p.command,
                        payload: p.payload,
                    })),
                    Ok(Decoded::NeedMore) => Ok(None),
                    Err(e) => Err(LinkError::Framing(e.to_string())),
                }
            }
            Link::Ws(ws) => ws,
        };
        if let Some(handshake) = &mut ws.handshake {
            return match handshake.decode(input) {
                Ok(Decoded::Complete(_)) => {
                    ws.handshake = None;
                    Ok(Some(Incoming::Upgraded))
                }
                Ok(Decoded::NeedMore) => Ok(None),
                Err(e) => Err(LinkError::Handshake(e.to_string())),
            };
        }
        loop {
            let message = match ws.reader.read(input) {
                Ok(Decoded::Complete(message)) => message,
                Ok(Decoded::NeedMore) => return Ok(None),
                Err(e) => return Err(LinkError::WebSocket(e.to_string())),
            };
            match message {
                Message::Binary(bytes) if ws.packets => return one_packet(bytes).map(Some),
                Message::Binary(bytes) => return Ok(Some(Incoming::Raw(bytes))),
                Message::Ping(payload) => {
                    encoder.encode_masked(OpCode::Pong, true, &payload, key, out)
                }
                Message::Pong(payload) => return Ok(Some(Incoming::Pong(payload))),
                Message::Text(_) => return Err(LinkError::Text),
                Message::Close(frame) => {
                    let code = frame.map_or(CloseCode::NORMAL, |f| f.code);
                    let payload = close_payload(code, "");
                    encoder.encode_masked(OpCode::Close, true, &payload, key, out);
                    return Err(LinkError::Closed(code.0));
                }
            }
        }
    }
}

/// The one packet a binary message holds.
fn one_packet(bytes: Bytes) -> Result<Incoming, LinkError> {
    match PacketHeader::parse(&bytes, MAX_INCOMING) {
        Ok(Decoded::Complete(h)) if HEADER_LEN + h.payload_len as usize == bytes.len() => {
            Ok(Incoming::Packet {
                command: h.command,
                payload: bytes.slice(HEADER_LEN..),
            })
        }
        Ok(_) => Err(LinkError::NotOnePacket),
        Err(e) => Err(LinkError::Framing(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_codec::ws::{FrameDecoder, Server, ServerHandshake};

    fn packet(command: u16, payload: &[u8]) -> Vec<u8> {
        let h = PacketHeader {
            command,
            payload_len: payload.len() as u32,
        };
        [&h.to_bytes()[..], payload].concat()
    }

    fn server_frame(opcode: OpCode, payload: &[u8]) -> BytesMut {
        let mut dst = BytesMut::new();
        FrameEncoder::<Server>::new().encode_frame(opcode, true, payload, &mut dst);
        dst
    }

    /// A link whose upgrade a codec server accepted; returns it and the server's answer.
    fn upgraded(packets: bool) -> (Link, BytesMut) {
        let mut request = BytesMut::new();
        let link = Link::ws("127.0.0.1:1", "/p", [3; 16], packets, &mut request).unwrap();
        let upgrade = match ServerHandshake::new().decode(&mut request).unwrap() {
            Decoded::Complete(r) => r,
            Decoded::NeedMore => panic!("whole request"),
        };
        assert_eq!(upgrade.path(), "/p");
        let mut answer = BytesMut::new();
        upgrade.write_accept(None, &mut answer).unwrap();
        (link, answer)
    }

    fn next(link: &mut Link, input: &mut BytesMut, out: &mut BytesMut) -> Option<Incoming> {
        let mut enc = FrameEncoder::new();
        link.decode(input, &mut enc, [1, 2, 3, 4], out).unwrap()
    }

    #[test]
    fn tcp_packets_split_anywhere() {
        let stream = [packet(0x8001, b"abc"), packet(1, b"")].concat();
        for cut in 0..=stream.len() {
            let mut link = Link::tcp();
            let mut input = BytesMut::from(&stream[..cut]);
            let mut got = Vec::new();
            let mut out = BytesMut::new();
            while let Some(item) = next(&mut link, &mut input, &mut out) {
                got.push(item);
            }
            input.extend_from_slice(&stream[cut..]);
            while let Some(item) = next(&mut link, &mut input, &mut out) {
                got.push(item);
            }
            assert_eq!(got.len(), 2, "cut {cut}");
        }
    }

    #[test]
    fn ws_upgrades_then_reads_packets_and_answers_pings() {
        let (mut link, mut input) = upgraded(true);
        input.extend_from_slice(&server_frame(OpCode::Ping, b"hb"));
        input.extend_from_slice(&server_frame(OpCode::Binary, &packet(0x8001, b"x")));
        let mut out = BytesMut::new();
        assert_eq!(
            next(&mut link, &mut input, &mut out),
            Some(Incoming::Upgraded)
        );
        assert_eq!(
            next(&mut link, &mut input, &mut out),
            Some(Incoming::Packet {
                command: 0x8001,
                payload: Bytes::from_static(b"x")
            })
        );
        let mut frames = FrameDecoder::<Server>::new(1024);
        let pong = frames.decode(&mut out).unwrap().complete().expect("pong");
        assert_eq!(pong.opcode, OpCode::Pong);
        assert_eq!(&pong.payload[..], b"hb");
    }

    #[test]
    fn ws_raw_mode_passes_any_binary_message() {
        let (mut link, mut input) = upgraded(false);
        input.extend_from_slice(&server_frame(OpCode::Binary, b"not a packet"));
        let mut out = BytesMut::new();
        assert_eq!(
            next(&mut link, &mut input, &mut out),
            Some(Incoming::Upgraded)
        );
        assert_eq!(
            next(&mut link, &mut input, &mut out),
            Some(Incoming::Raw(Bytes::from_static(b"not a packet")))
        );
    }

    #[test]
    fn refusals_have_kinds() {
        let mut enc = FrameEncoder::new();
        let mut out = BytesMut::new();
        let (mut link, mut input) = upgraded(true);
        input.extend_from_slice(&server_frame(OpCode::Binary, b"garbage!!!!!"));
        assert_eq!(
            next(&mut link, &mut input, &mut out),
            Some(Incoming::Upgraded)
        );
        let err = link
            .decode(&mut input, &mut enc, [0; 4], &mut out)
            .unwrap_err();
        assert_eq!(err.kind(), "framing");

        let (mut link, mut input) = upgraded(true);
        input.extend_from_slice(&server_frame(OpCode::Close, &[0x03, 0xe9]));
        next(&mut link, &mut input, &mut out);
        let err = link
            .decode(&mut input, &mut enc, [0; 4], &mut out)
            .unwrap_err();
        assert_eq!(err.kind(), "ws_close_1001");

        let mut link = Link::ws("h:1", "/", [1; 16], true, &mut BytesMut::new()).unwrap();
        let mut input = BytesMut::from(&b"HTTP/1.1 404 Not Found\r\n\r\n"[..]);
        let err = link
            .decode(&mut input, &mut enc, [0; 4], &mut out)
            .unwrap_err();
        assert_eq!(err.kind(), "handshake");

        let mut input = BytesMut::from(&b"HTTP/1.1 200 OK\r\n\r\n"[..]);
        let err = Link::tcp()
            .decode(&mut input, &mut enc, [0; 4], &mut out)
            .unwrap_err();
        assert_eq!(err.kind(), "framing");
    }
}
