//! `ServerPacket`: the client's view of what the server sends, a response or a push.
//!
//! Responses are told apart by the command's high bit, pushes by the 0x4000..=0x7FFF range.
//! An unknown push is an error the client may ignore (newer servers may add pushes); nothing
//! here panics on any input.

use bytes::Bytes;

use crate::command::{is_push, is_response};
use crate::response::{Response, ResponseBody};
use crate::wire::Reader;
use crate::{Command, DecodeError, Push, PushCommand, Status, RESPONSE_BIT};

/// A packet from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerPacket {
    /// The answer to one of this client's requests, matched by `seq`.
    Response(Response),
    /// A packet the server sent unasked.
    Push(Push),
}

/// Why a server packet could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ServerPacketError {
    /// Not a response to a known request nor a known push. A client ignores unknown pushes.
    #[error("unknown server command {command:#06x}")]
    UnknownCommand {
        /// The packet's command.
        command: u16,
    },
    /// The payload does not parse.
    #[error("malformed server packet {command:#06x}: {error}")]
    Malformed {
        /// The packet's command.
        command: u16,
        /// What was wrong.
        error: DecodeError,
    },
}

impl ServerPacketError {
    /// Whether this is a push this crate does not know (safe to skip) rather than a fault.
    pub fn is_unknown_push(&self) -> bool {
        matches!(*self, ServerPacketError::UnknownCommand { command } if is_push(command))
    }
}

impl ServerPacket {
    /// Decodes the payload of a packet with `command` sent by the server.
    pub fn decode(command: u16, payload: Bytes) -> Result<ServerPacket, ServerPacketError> {
        let unknown = ServerPacketError::UnknownCommand { command };
        let malformed = |error| ServerPacketError::Malformed { command, error };
        if is_response(command) {
            let request = command & !RESPONSE_BIT;
            let mut r = Reader::new(payload);
            let seq = r.u32("seq").map_err(malformed)?;
            let status = Status::from_code(r.u16("status").map_err(malformed)?);
            let result = if status.is_ok() {
                let known = Command::from_code(request).ok_or(unknown)?;
                Ok(ResponseBody::read(known, &mut r).map_err(malformed)?)
            } else {
                Err(status)
            };
            r.finish().map_err(malformed)?;
            let response = Response {
                command: request,
                seq,
                result,
            };
            return Ok(ServerPacket::Response(response));
        }
        let push = PushCommand::from_code(command).ok_or(unknown)?;
        Push::decode(push, payload)
            .map(ServerPacket::Push)
            .map_err(malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::{encode_error, SendOk};
    use crate::test_support::split_packet;
    use crate::KickReason;
    use bytes::BytesMut;
    use proptest::prelude::*;

    fn decode_packet(packet: &[u8]) -> Result<ServerPacket, ServerPacketError> {
        let (command, payload) = split_packet(packet);
        ServerPacket::decode(command, payload)
    }

    #[test]
    fn ok_response_decodes_to_its_body() {
        let mut dst = BytesMut::new();
        let body = ResponseBody::Send(SendOk {
            msg_id: 5,
            server_time_ms: 6,
        });
        body.encode(42, &mut dst).unwrap();
        let expected = Response {
            command: Command::Send.code(),
            seq: 42,
            result: Ok(body),
        };
        assert_eq!(decode_packet(&dst), Ok(ServerPacket::Response(expected)));
    }

    #[test]
    fn error_response_to_an_unknown_command_still_decodes() {
        let mut dst = BytesMut::new();
        encode_error(0x0777, 9, Status::UNKNOWN_COMMAND, &mut dst).unwrap();
        let expected = Response {
            command: 0x0777,
            seq: 9,
            result: Err(Status::UNKNOWN_COMMAND),
        };
        assert_eq!(decode_packet(&dst), Ok(ServerPacket::Response(expected)));
    }

    #[test]
    fn ok_response_to_an_unknown_command_is_refused() {
        let got = ServerPacket::decode(0x8777, Bytes::from_static(b"\0\0\0\x01\0\0"));
        assert_eq!(
            got,
            Err(ServerPacketError::UnknownCommand { command: 0x8777 })
        );
    }

    #[test]
    fn error_response_with_a_body_has_trailing_bytes() {
        let got = ServerPacket::decode(0x8020, Bytes::from_static(b"\0\0\0\x01\0\x0b!"));
        assert_eq!(
            got,
            Err(ServerPacketError::Malformed {
                command: 0x8020,
                error: DecodeError::TrailingBytes { count: 1 }
            })
        );
    }

    #[test]
    fn short_response_names_the_missing_field() {
        let got = ServerPacket::decode(0x8001, Bytes::from_static(b"\0\0\0\x01\0"));
        assert_eq!(
            got,
            Err(ServerPacketError::Malformed {
                command: 0x8001,
                error: DecodeError::Truncated {
                    field: "status",
                    need: 2,
                    left: 1
                }
            })
        );
    }

    #[test]
    fn pushes_decode_and_unknown_pushes_are_skippable() {
        let mut dst = BytesMut::new();
        let kicked = Push::Kicked {
            reason: KickReason::SERVER_SHUTDOWN,
            text: crate::Text::from("draining"),
        };
        kicked.encode(&mut dst).unwrap();
        assert_eq!(decode_packet(&dst), Ok(ServerPacket::Push(kicked)));
        let unknown = ServerPacket::decode(0x4fff, Bytes::new()).unwrap_err();
        assert!(unknown.is_unknown_push());
        let request = ServerPacket::decode(0x0001, Bytes::new()).unwrap_err();
        assert!(!request.is_unknown_push(), "a request number is a fault");
    }

    /// Decodes, and checks that whatever decodes encodes back to the same packet: the decoder
    /// guessed nothing and dropped nothing.
    fn decode_and_reencode(command: u16, payload: Vec<u8>) -> Result<(), TestCaseError> {
        let Ok(packet) = ServerPacket::decode(command, Bytes::from(payload.clone())) else {
            return Ok(());
        };
        let mut dst = BytesMut::new();
        match &packet {
            ServerPacket::Response(response) => response.encode(&mut dst).unwrap(),
            ServerPacket::Push(push) => push.encode(&mut dst).unwrap(),
        }
        prop_assert_eq!(split_packet(&dst), (command, Bytes::from(payload)));
        Ok(())
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            command: u16,
            payload in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            decode_and_reencode(command, payload)?;
        }

        #[test]
        fn known_commands_with_arbitrary_payloads_never_panic(
            pick in 0usize..16,
            status in prop_oneof![Just(0u16), any::<u16>()],
            payload in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let (command, payload) = match pick {
                14 => (PushCommand::Message.code(), payload),
                15 => (PushCommand::Kicked.code(), payload),
                n => {
                    // A plausible prefix (seq, a status that is mostly OK) reaches the bodies.
                    let mut with_prefix = vec![0, 0, 0, 1];
                    with_prefix.extend(status.to_be_bytes());
                    with_prefix.extend(payload);
                    (Command::ALL[n].response_code(), with_prefix)
                }
            };
            decode_and_reencode(command, payload)?;
        }
    }
}
