//! Server pushes: MESSAGE (a `ChatMessage`) and KICKED, and the `Message` layout they share
//! with SYNC_FETCH's response.
//!
//! A MESSAGE push is encoded once into `Bytes` and the same bytes go to every recipient
//! connection (a reference count each), so the message carries nothing that differs per
//! recipient and nothing here allocates per recipient.

use std::fmt;

use bytes::{Bytes, BytesMut};
use switchboard_codec::packet::HEADER_LEN;

use crate::command::PushCommand;
use crate::limits::MAX_KICK_TEXT_LEN;
use crate::wire::{write_packet, Reader, StrField, Writer};
use crate::{DecodeError, EncodeError, Text};

const FROM: StrField = StrField::user_id("message.from");
const TO: StrField = StrField::user_id("message.to");
const KICK_TEXT: StrField = StrField::new("kicked.text", 0, MAX_KICK_TEXT_LEN);

/// `kind` byte of a direct message: `to str` follows.
pub const KIND_DIRECT: u8 = 1;
/// `kind` byte of a group message: `group_id u64` follows.
pub const KIND_GROUP: u8 = 2;

/// The fewest bytes a `Message` takes (empty body, one-byte ids): bounds a believable count.
pub(crate) const MESSAGE_MIN_LEN: usize = 8 + 8 + 3 + 1 + 3 + 8 + 4;

/// Where a message was sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// To one user (kind 1). On the sender's other devices `from` is the user itself and this
    /// is the peer.
    Direct(Text),
    /// To a group (kind 2).
    Group(u64),
}

/// A stored chat message as clients receive it, pushed live or fetched by SYNC_FETCH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// The server-assigned snowflake id: unique, and ascending in assignment order.
    pub msg_id: u64,
    /// When the server accepted the message, in Unix milliseconds.
    pub server_time_ms: u64,
    /// The sender, taken from its session (never from its payload).
    pub from: Text,
    /// The recipient user or group.
    pub target: Target,
    /// The sender's own id for the message (what made resends idempotent).
    pub client_msg_id: u64,
    /// The body, opaque to the server.
    pub body: Bytes,
}

impl ChatMessage {
    /// The bytes of this `Message` on the wire (the MESSAGE payload; no packet header).
    pub fn encoded_len(&self) -> usize {
        let target = match &self.target {
            Target::Direct(to) => 2 + to.len(),
            Target::Group(_) => 8,
        };
        8 + 8 + 2 + self.from.len() + 1 + target + 8 + 4 + self.body.len()
    }

    /// The whole MESSAGE push packet, to be cloned (a reference count) for every recipient.
    ///
    /// Costs a buffer and, on its first clone, its shared count. A sender of many pushes can
    /// avoid both with [`encode_push_into`](Self::encode_push_into) into a long-lived scratch
    /// `BytesMut` and `scratch.split().freeze()`, which allocates only when the scratch is full.
    pub fn encode_push(&self) -> Result<Bytes, EncodeError> {
        let mut dst = BytesMut::with_capacity(HEADER_LEN + self.encoded_len());
        self.encode_push_into(&mut dst)?;
        Ok(dst.freeze())
    }

    /// Appends the whole MESSAGE push packet to `dst` (for a caller that batches packets in
    /// one buffer and splits it). On error `dst` is left as it was.
    pub fn encode_push_into(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        write_packet(PushCommand::Message.code(), dst, |w| self.write(w))
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.u64(self.msg_id);
        w.u64(self.server_time_ms);
        w.text(FROM, self.from.as_str())?;
        match &self.target {
            Target::Direct(to) => {
                w.u8(KIND_DIRECT);
                w.text(TO, to.as_str())?;
            }
            Target::Group(group_id) => {
                w.u8(KIND_GROUP);
                w.u64(*group_id);
            }
        }
        w.u64(self.client_msg_id);
        w.bytes("message.body", &self.body)
    }

    pub(crate) fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        let msg_id = r.u64("message.msg_id")?;
        let server_time_ms = r.u64("message.server_time_ms")?;
        let from = r.text(FROM)?;
        let target = match r.u8("message.kind")? {
            KIND_DIRECT => Target::Direct(r.text(TO)?),
            KIND_GROUP => Target::Group(r.u64("message.group_id")?),
            got => {
                return Err(DecodeError::UnknownTag {
                    field: "message.kind",
                    got,
                })
            }
        };
        Ok(ChatMessage {
            msg_id,
            server_time_ms,
            from,
            target,
            client_msg_id: r.u64("message.client_msg_id")?,
            body: r.bytes("message.body")?,
        })
    }
}

/// Why the server closes a connection, sent in KICKED.
///
/// A newtype over the wire value, so a client keeps a reason a newer server added.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KickReason(u16);

impl KickReason {
    /// 1: the same user logged in again with the same device kind; the newer connection wins.
    pub const LOGGED_IN_ELSEWHERE: KickReason = KickReason(1);
    /// 2: the connection kept sending malformed or unknown requests.
    pub const PROTOCOL_VIOLATION: KickReason = KickReason(2);
    /// 3: the server is shutting down or draining; reconnect (to another address) with backoff.
    pub const SERVER_SHUTDOWN: KickReason = KickReason(3);
    /// 4: the application's backend ended the session (a ban, a password change, a sign-out
    /// from elsewhere); do not reconnect until the user acts.
    pub const ENDED_BY_SERVICE: KickReason = KickReason(4);

    /// The reason with wire code `code`, known to this crate or not.
    pub const fn from_code(code: u16) -> Self {
        KickReason(code)
    }

    /// The wire code.
    pub const fn code(self) -> u16 {
        self.0
    }

    /// The name used in docs/protocol.md, or `None` for a code this crate does not know.
    pub const fn name(self) -> Option<&'static str> {
        match self.0 {
            1 => Some("LOGGED_IN_ELSEWHERE"),
            2 => Some("PROTOCOL_VIOLATION"),
            3 => Some("SERVER_SHUTDOWN"),
            4 => Some("ENDED_BY_SERVICE"),
            _ => None,
        }
    }
}

impl fmt::Debug for KickReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name}({})", self.0),
            None => write!(f, "KickReason({})", self.0),
        }
    }
}

/// A packet the server sends unasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Push {
    /// 0x4001 MESSAGE: a chat message for this connection's user.
    Message(ChatMessage),
    /// 0x4002 KICKED: the server closes the connection after this packet.
    Kicked {
        /// Why.
        reason: KickReason,
        /// A human-readable explanation, at most 256 bytes, possibly empty.
        text: Text,
    },
    /// 0x4003 RECONNECT_AFTER: sent right before KICKED(SERVER_SHUTDOWN) in a drain; the
    /// server suggests waiting this long before reconnecting (it spreads the suggestions so
    /// the clients one batch of closes sends away do not come back together).
    ReconnectAfter {
        /// The suggested wait, in milliseconds.
        delay_ms: u32,
    },
}

impl Push {
    /// The push's command.
    pub fn command(&self) -> PushCommand {
        match self {
            Push::Message(_) => PushCommand::Message,
            Push::Kicked { .. } => PushCommand::Kicked,
            Push::ReconnectAfter { .. } => PushCommand::ReconnectAfter,
        }
    }

    /// Appends the whole push packet to `dst`. On error `dst` is left as it was.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            Push::Message(message) => message.encode_push_into(dst),
            Push::Kicked { reason, text } => write_packet(PushCommand::Kicked.code(), dst, |w| {
                w.u16(reason.code());
                w.text(KICK_TEXT, text.as_str())
            }),
            Push::ReconnectAfter { delay_ms } => {
                write_packet(PushCommand::ReconnectAfter.code(), dst, |w| {
                    w.u32(*delay_ms);
                    Ok(())
                })
            }
        }
    }

    /// Decodes the payload of a push of `command`.
    pub fn decode(command: PushCommand, payload: Bytes) -> Result<Push, DecodeError> {
        let mut r = Reader::new(payload);
        let push = match command {
            PushCommand::Message => Push::Message(ChatMessage::read(&mut r)?),
            PushCommand::Kicked => Push::Kicked {
                reason: KickReason::from_code(r.u16("kicked.reason")?),
                text: r.text(KICK_TEXT)?,
            },
            PushCommand::ReconnectAfter => Push::ReconnectAfter {
                delay_ms: r.u32("reconnect_after.delay_ms")?,
            },
        };
        r.finish()?;
        Ok(push)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{arb_message, split_packet};
    use proptest::prelude::*;

    fn direct() -> ChatMessage {
        ChatMessage {
            msg_id: 0x0102_0304_0506_0708,
            server_time_ms: 1,
            from: Text::from("al"),
            target: Target::Direct(Text::from("bo")),
            client_msg_id: 9,
            body: Bytes::from_static(b"hi"),
        }
    }

    #[test]
    fn direct_message_push_has_the_documented_bytes() {
        let packet = direct().encode_push().unwrap();
        let expected: &[u8] = b"SWB1\x40\x01\x00\x00\x00\x27\
            \x01\x02\x03\x04\x05\x06\x07\x08\
            \x00\x00\x00\x00\x00\x00\x00\x01\
            \x00\x02al\x01\x00\x02bo\
            \x00\x00\x00\x00\x00\x00\x00\x09\
            \x00\x00\x00\x02hi";
        assert_eq!(&packet[..], expected);
        assert_eq!(packet.len(), HEADER_LEN + direct().encoded_len());
    }

    #[test]
    fn group_message_round_trips() {
        let message = ChatMessage {
            target: Target::Group(77),
            ..direct()
        };
        let (command, payload) = split_packet(&message.encode_push().unwrap());
        assert_eq!(command, 0x4001);
        assert_eq!(payload.len(), message.encoded_len());
        let got = Push::decode(PushCommand::Message, payload);
        assert_eq!(got, Ok(Push::Message(message)));
    }

    #[test]
    fn unknown_kind_is_refused() {
        let mut payload = direct().encode_push().unwrap().slice(HEADER_LEN..).to_vec();
        payload[8 + 8 + 4] = 3;
        assert_eq!(
            Push::decode(PushCommand::Message, payload.into()),
            Err(DecodeError::UnknownTag {
                field: "message.kind",
                got: 3
            })
        );
    }

    #[test]
    fn kicked_round_trips_and_keeps_unknown_reasons() {
        for reason in [KickReason::LOGGED_IN_ELSEWHERE, KickReason::from_code(99)] {
            let push = Push::Kicked {
                reason,
                text: Text::from("logged in on another phone"),
            };
            let mut dst = BytesMut::new();
            push.encode(&mut dst).unwrap();
            let (command, payload) = split_packet(&dst);
            assert_eq!(command, push.command().code());
            assert_eq!(Push::decode(PushCommand::Kicked, payload), Ok(push));
        }
        assert_eq!(
            format!("{:?}", KickReason::SERVER_SHUTDOWN),
            "SERVER_SHUTDOWN(3)"
        );
    }

    #[test]
    fn kicked_text_over_its_limit_is_refused_both_ways() {
        let push = Push::Kicked {
            reason: KickReason::PROTOCOL_VIOLATION,
            text: Text::from("x".repeat(MAX_KICK_TEXT_LEN + 1)),
        };
        let mut dst = BytesMut::new();
        assert!(matches!(
            push.encode(&mut dst),
            Err(EncodeError::BadLength { len: 257, .. })
        ));
        let mut payload = vec![0, 2, 1, 1];
        payload.extend(std::iter::repeat_n(b'x', 257));
        assert!(matches!(
            Push::decode(PushCommand::Kicked, payload.into()),
            Err(DecodeError::BadLength {
                field: "kicked.text",
                ..
            })
        ));
    }

    proptest! {
        #[test]
        fn every_message_round_trips(message in arb_message()) {
            let packet = message.encode_push().unwrap();
            prop_assert_eq!(packet.len(), HEADER_LEN + message.encoded_len());
            let (_, payload) = split_packet(&packet);
            prop_assert_eq!(
                Push::decode(PushCommand::Message, payload),
                Ok(Push::Message(message))
            );
        }

        #[test]
        fn every_kicked_round_trips(reason: u16, text in "\\PC{0,64}") {
            let push = Push::Kicked {
                reason: KickReason::from_code(reason),
                text: Text::from(text),
            };
            let mut dst = BytesMut::new();
            push.encode(&mut dst).unwrap();
            let (_, payload) = split_packet(&dst);
            prop_assert_eq!(Push::decode(PushCommand::Kicked, payload), Ok(push));
        }
    }
}
