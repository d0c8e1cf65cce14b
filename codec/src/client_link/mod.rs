//! `ClientLink`: the client's half of one connection, framed TCP or WebSocket, sans-I/O.
//!
//! One implementation of what every client of the gateway needs (the SDK, the load generator,
//! the end-to-end tests): the WebSocket upgrade, the reader of the server's frames, masked
//! frames out, a pong for every ping and the echo of the server's close. Bytes read go in,
//! [`LinkEvent`]s come out; whatever the link must send (a pong, a close echo, a message) is
//! appended to the caller's output buffer, which the caller writes when and how it likes. No
//! socket, no clock, no randomness: the caller supplies nonces and masking keys.
//!
//! Invariants:
//! - the link owns no byte buffer: the caller lends its input buffer to each [`ClientLink::read`]
//!   and the link splits whole items off its front, so an idle link holds only its small state;
//! - each `read` writes at most one frame to the output (the pong or close echo of the event it
//!   returns), so one masking key per call is enough;
//! - sizes are judged from headers before a body is buffered: a packet over `max_payload`, or a
//!   WebSocket message over its limit, is refused on its header;
//! - an error is final (the stream lost its framing): the caller drops the connection;
//! - after the server's close frame nothing more is decoded (RFC 6455 §5.5.1): later bytes stay
//!   in the input, where the caller may count them.

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use bytes::{Bytes, BytesMut};
use thiserror::Error;

use crate::packet::{Packet, PacketDecoder, PacketError, PacketHeader, HEADER_LEN};
use crate::ws::handshake::{ClientRequest, ClientRequestError, ResponseError, UpgradeResponse};
use crate::ws::{
    close_payload, Client, ClientHandshake, CloseCode, CloseFrame, FrameEncoder, Message,
    MessageReader, OpCode, ProtocolError, ReaderConfig,
};
use crate::Decoded;

/// What a WebSocket link's binary messages carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsMessages {
    /// Switchboard packets, exactly one per binary message, payloads of at most `max_payload`
    /// bytes (so messages of at most that plus the 10-byte header, docs/protocol.md §1). A text
    /// message is refused.
    Packets {
        /// The longest packet payload accepted.
        max_payload: u32,
    },
    /// Any binary or text message of at most `max_len` bytes (a generic WebSocket peer, such
    /// as `switchboard echo`).
    Any {
        /// The longest message accepted.
        max_len: usize,
    },
}

impl WsMessages {
    fn max_message(self) -> usize {
        match self {
            WsMessages::Packets { max_payload } => HEADER_LEN + max_payload as usize,
            WsMessages::Any { max_len } => max_len,
        }
    }
}

/// What the server sent, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// The server accepted the WebSocket upgrade; what it chose.
    Upgraded(UpgradeResponse),
    /// One whole packet (framed TCP, or a binary message in [`WsMessages::Packets`]).
    Packet(Packet),
    /// A binary message ([`WsMessages::Any`]).
    Binary(Bytes),
    /// A text message, valid UTF-8 ([`WsMessages::Any`]).
    Text(Bytes),
    /// A ping; its pong is already in the output.
    Ping(Bytes),
    /// A pong.
    Pong(Bytes),
    /// The server's close frame (`None`: it gave no code). Its echo is in the output, unless
    /// this client had sent a close first. Nothing more is read after it.
    Close(Option<CloseFrame>),
}

/// Why a link gave up on the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum StreamError {
    /// The WebSocket upgrade was refused or its answer is malformed.
    #[error("websocket handshake: {0}")]
    Handshake(#[from] ResponseError),
    /// The server's frames broke RFC 6455 (or a message passed the size limit).
    #[error("websocket: {0}")]
    WebSocket(#[from] ProtocolError),
    /// A packet header was refused (bad magic, payload over the limit).
    #[error("framing: {0}")]
    Packet(#[from] PacketError),
    /// A binary message that is not exactly one whole packet.
    #[error("websocket message of {len} bytes is not one whole packet")]
    NotOnePacket {
        /// The message's length.
        len: usize,
    },
    /// A text message where the protocol sends only packets.
    #[error("websocket: unexpected text message")]
    TextMessage,
}

/// The client side of one connection. 16 bytes for framed TCP and WebSocket alike (the
/// WebSocket state is boxed), so a load generator can hold a million of them.
#[derive(Debug)]
pub struct ClientLink {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Tcp(PacketDecoder),
    Ws(Box<WsLink>),
}

#[derive(Debug)]
struct WsLink {
    /// Until the server's 101 has been read.
    handshake: Option<ClientHandshake>,
    reader: MessageReader<Client>,
    messages: WsMessages,
    /// This client sent a close: it sends nothing more, not even the echo of the server's.
    close_sent: bool,
    /// The server's close came: nothing more is read.
    close_received: bool,
}

impl ClientLink {
    /// Framed TCP, refusing packets whose payload is over `max_payload`.
    pub fn tcp(max_payload: u32) -> ClientLink {
        ClientLink {
            inner: Inner::Tcp(PacketDecoder::new(max_payload)),
        }
    }

    /// WebSocket: appends the upgrade `request` to `out` (the server accepts frames pipelined
    /// behind it). `nonce` must be fresh for each connection (RFC 6455 §4.1). Nothing is
    /// written when the request is refused.
    pub fn ws(
        request: &ClientRequest<'_>,
        nonce: [u8; 16],
        messages: WsMessages,
        out: &mut BytesMut,
    ) -> Result<ClientLink, ClientRequestError> {
        let handshake = ClientHandshake::start(request, nonce, out)?;
        Ok(ClientLink::ws_link(Some(handshake), messages))
    }

    /// WebSocket on a stream whose upgrade the caller completed itself.
    pub fn ws_upgraded(messages: WsMessages) -> ClientLink {
        ClientLink::ws_link(None, messages)
    }

    fn ws_link(handshake: Option<ClientHandshake>, messages: WsMessages) -> ClientLink {
        let config = ReaderConfig {
            max_message: messages.max_message(),
            ..ReaderConfig::default()
        };
        ClientLink {
            inner: Inner::Ws(Box::new(WsLink {
                handshake,
                reader: MessageReader::new(config),
                messages,
                close_sent: false,
                close_received: false,
            })),
        }
    }

    /// Whether this is a WebSocket link.
    pub fn is_ws(&self) -> bool {
        matches!(self.inner, Inner::Ws(_))
    }

    /// Appends one unit: `bytes` as they are on TCP (a whole packet), one binary message
    /// masked with `key` on WebSocket. Call it only before [`send_close`](Self::send_close).
    pub fn send(&self, bytes: &[u8], key: [u8; 4], out: &mut BytesMut) {
        match &self.inner {
            Inner::Tcp(_) => out.extend_from_slice(bytes),
            Inner::Ws(_) => masked(OpCode::Binary, bytes, key, out),
        }
    }

    /// Appends a WebSocket ping (at most 125 bytes of `payload`); `false` on TCP, which has
    /// none, or once a close was sent.
    pub fn send_ping(&self, payload: &[u8], key: [u8; 4], out: &mut BytesMut) -> bool {
        match &self.inner {
            Inner::Ws(ws) if !ws.close_sent => {
                masked(OpCode::Ping, payload, key, out);
                true
            }
            _ => false,
        }
    }

    /// Appends a WebSocket close with `code` and `reason` (cut to fit a control frame), once;
    /// nothing on TCP, which ends by closing the socket.
    pub fn send_close(&mut self, code: CloseCode, reason: &str, key: [u8; 4], out: &mut BytesMut) {
        if let Inner::Ws(ws) = &mut self.inner {
            if !ws.close_sent {
                ws.close_sent = true;
                masked(OpCode::Close, &close_payload(code, reason), key, out);
            }
        }
    }

    /// The next event from the front of `input`, or `None` until more bytes arrive (or for
    /// good, after [`LinkEvent::Close`]). What it splits off `input` is gone from it; bytes of
    /// an unfinished item stay. The reply an event needs (a pong, the close echo) is appended
    /// to `out`, masked with `key`.
    pub fn read(
        &mut self,
        input: &mut BytesMut,
        key: [u8; 4],
        out: &mut BytesMut,
    ) -> Result<Option<LinkEvent>, StreamError> {
        match &mut self.inner {
            Inner::Tcp(decoder) => Ok(decoder.decode(input)?.complete().map(LinkEvent::Packet)),
            Inner::Ws(ws) => ws.read(input, key, out),
        }
    }
}

impl WsLink {
    fn read(
        &mut self,
        input: &mut BytesMut,
        key: [u8; 4],
        out: &mut BytesMut,
    ) -> Result<Option<LinkEvent>, StreamError> {
        if self.close_received {
            return Ok(None);
        }
        if let Some(handshake) = &mut self.handshake {
            let Decoded::Complete(response) = handshake.decode(input)? else {
                return Ok(None);
            };
            self.handshake = None;
            return Ok(Some(LinkEvent::Upgraded(response)));
        }
        let Decoded::Complete(message) = self.reader.read(input)? else {
            return Ok(None);
        };
        let event = match (message, self.messages) {
            (Message::Binary(bytes), WsMessages::Packets { max_payload }) => {
                LinkEvent::Packet(one_packet(bytes, max_payload)?)
            }
            (Message::Binary(bytes), WsMessages::Any { .. }) => LinkEvent::Binary(bytes),
            (Message::Text(_), WsMessages::Packets { .. }) => return Err(StreamError::TextMessage),
            (Message::Text(text), WsMessages::Any { .. }) => LinkEvent::Text(text),
            (Message::Ping(payload), _) => {
                if !self.close_sent {
                    masked(OpCode::Pong, &payload, key, out);
                }
                LinkEvent::Ping(payload)
            }
            (Message::Pong(payload), _) => LinkEvent::Pong(payload),
            (Message::Close(frame), _) => {
                self.close_received = true;
                if !self.close_sent {
                    // RFC 6455 §5.5.1: echo the status code received (1000 for none).
                    self.close_sent = true;
                    let code = frame.as_ref().map_or(CloseCode::NORMAL, |f| f.code);
                    masked(OpCode::Close, &close_payload(code, ""), key, out);
                }
                LinkEvent::Close(frame)
            }
        };
        Ok(Some(event))
    }
}

/// The one packet a binary message holds.
fn one_packet(bytes: Bytes, max_payload: u32) -> Result<Packet, StreamError> {
    let len = bytes.len();
    match PacketHeader::parse(&bytes, max_payload)? {
        Decoded::Complete(header) if HEADER_LEN + header.payload_len as usize == len => {
            Ok(Packet {
                command: header.command,
                payload: bytes.slice(HEADER_LEN..),
            })
        }
        _ => Err(StreamError::NotOnePacket { len }),
    }
}

/// One whole frame with its payload masked by `key`. The client encoder keeps no state (it
/// allocates nothing until a server header), so one made here costs nothing.
fn masked(opcode: OpCode, payload: &[u8], key: [u8; 4], out: &mut BytesMut) {
    FrameEncoder::<Client>::new().encode_masked(opcode, true, payload, key, out);
}
