//! The load generator's choices for the codec's [`ClientLink`]: the limits it reads with and
//! the short names its failures get in the summary's `failed` object. The link itself (the
//! upgrade, frames, pongs, the close echo) is the codec's, shared with the SDK and the tests.

use bytes::BytesMut;
use switchboard_codec::client_link::{ClientLink, StreamError, WsMessages};
use switchboard_codec::packet::HEADER_LEN;
use switchboard_codec::ws::handshake::{ClientRequest, ClientRequestError};
use switchboard_codec::ws::CloseFrame;

/// Largest packet payload accepted from a target: the server's default `--max-packet`. Over
/// WebSocket a message of this plus the 10-byte header is accepted (docs/protocol.md §1).
pub const MAX_INCOMING: u32 = 1 << 20;

/// A framed-TCP link.
pub fn tcp() -> ClientLink {
    ClientLink::tcp(MAX_INCOMING)
}

/// A WebSocket link: writes the upgrade request for `authority` and `path` to `out`. With
/// `packets`, binary messages carry Switchboard packets (a chat server); without, anything
/// (the echo of a generic WebSocket server).
pub fn ws(
    authority: &str,
    path: &str,
    nonce: [u8; 16],
    packets: bool,
    out: &mut BytesMut,
) -> Result<ClientLink, ClientRequestError> {
    let messages = if packets {
        WsMessages::Packets {
            max_payload: MAX_INCOMING,
        }
    } else {
        WsMessages::Any {
            max_len: MAX_INCOMING as usize + HEADER_LEN,
        }
    };
    ClientLink::ws(&ClientRequest::new(authority, path), nonce, messages, out)
}

/// The summary's name for a stream the link gave up on.
pub fn failure_kind(error: &StreamError) -> String {
    match error {
        StreamError::Handshake(_) => "handshake",
        StreamError::WebSocket(_) => "ws_protocol",
        StreamError::Packet(_) => "framing",
        StreamError::NotOnePacket { .. } => "not_one_packet",
        StreamError::TextMessage => "ws_text",
    }
    .into()
}

/// The summary's name for the server's close frame (its echo is already queued): `ws_close_`
/// and its code, 1000 when it gave none.
pub fn close_kind(frame: Option<&CloseFrame>) -> String {
    format!("ws_close_{}", frame.map_or(1000, |f| f.code.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_codec::client_link::LinkEvent;
    use switchboard_codec::ws::{CloseCode, FrameEncoder, OpCode, Server, ServerHandshake};
    use switchboard_codec::Decoded;

    /// A link whose upgrade a codec server accepted, with the server's answer as input.
    fn upgraded(packets: bool) -> (ClientLink, BytesMut) {
        let mut request = BytesMut::new();
        let mut link = ws("127.0.0.1:1", "/p", [3; 16], packets, &mut request).unwrap();
        let upgrade = match ServerHandshake::new().decode(&mut request).unwrap() {
            Decoded::Complete(r) => r,
            Decoded::NeedMore => panic!("whole request"),
        };
        assert_eq!(upgrade.path(), "/p");
        let mut input = BytesMut::new();
        upgrade.write_accept(None, &mut input).unwrap();
        let event = link.read(&mut input, [0; 4], &mut BytesMut::new()).unwrap();
        assert!(matches!(event, Some(LinkEvent::Upgraded(_))));
        (link, input)
    }

    fn server_frame(opcode: OpCode, payload: &[u8], dst: &mut BytesMut) {
        FrameEncoder::<Server>::new().encode_frame(opcode, true, payload, dst);
    }

    #[test]
    fn echo_mode_passes_any_binary_message_and_chat_mode_wants_packets() {
        let (mut link, mut input) = upgraded(false);
        server_frame(OpCode::Binary, b"not a packet", &mut input);
        let got = link.read(&mut input, [0; 4], &mut BytesMut::new());
        assert!(matches!(got, Ok(Some(LinkEvent::Binary(_)))), "{got:?}");

        let (mut link, mut input) = upgraded(true);
        server_frame(OpCode::Binary, b"garbage!!!!!", &mut input);
        let err = link
            .read(&mut input, [0; 4], &mut BytesMut::new())
            .unwrap_err();
        assert_eq!(failure_kind(&err), "framing");
    }

    #[test]
    fn failures_have_kinds() {
        let mut link = ws("h:1", "/", [1; 16], true, &mut BytesMut::new()).unwrap();
        let mut input = BytesMut::from(&b"HTTP/1.1 404 Not Found\r\n\r\n"[..]);
        let err = link
            .read(&mut input, [0; 4], &mut BytesMut::new())
            .unwrap_err();
        assert_eq!(failure_kind(&err), "handshake");

        let mut input = BytesMut::from(&b"HTTP/1.1 200 OK\r\n\r\n"[..]);
        let err = tcp()
            .read(&mut input, [0; 4], &mut BytesMut::new())
            .unwrap_err();
        assert_eq!(failure_kind(&err), "framing");

        let (mut link, mut input) = upgraded(true);
        server_frame(OpCode::Close, &[0x03, 0xe9], &mut input);
        match link.read(&mut input, [0; 4], &mut BytesMut::new()) {
            Ok(Some(LinkEvent::Close(frame))) => {
                assert_eq!(close_kind(frame.as_ref()), "ws_close_1001")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            close_kind(None),
            format!("ws_close_{}", CloseCode::NORMAL.0)
        );
    }
}
