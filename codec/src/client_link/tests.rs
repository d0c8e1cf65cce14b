//! The link driven with bytes a codec server writes: no socket.

use bytes::{Bytes, BytesMut};

use super::*;
use crate::ws::{FrameDecoder, Server, ServerHandshake};

pub(super) const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

pub(super) fn packet_bytes(command: u16, payload: &[u8]) -> Vec<u8> {
    let header = PacketHeader {
        command,
        payload_len: payload.len() as u32,
    };
    [&header.to_bytes()[..], payload].concat()
}

pub(super) fn server_frame(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut dst = BytesMut::new();
    FrameEncoder::<Server>::new().encode_frame(opcode, fin, payload, &mut dst);
    dst.to_vec()
}

/// A WebSocket link whose upgrade request a codec server accepted (choosing `protocol`), and
/// that server's answer.
pub(super) fn upgraded_with(messages: WsMessages, protocol: Option<&str>) -> (ClientLink, Vec<u8>) {
    let mut request = BytesMut::new();
    let offered = ["chat.v1"];
    let client_request = ClientRequest::new("127.0.0.1:9", "/chat").subprotocols(&offered);
    let link = ClientLink::ws(&client_request, [7; 16], messages, &mut request).unwrap();
    let upgrade = ServerHandshake::new()
        .decode(&mut request)
        .unwrap()
        .complete()
        .expect("the whole request is written");
    assert!(request.is_empty(), "nothing but the request");
    assert_eq!((upgrade.path(), upgrade.host()), ("/chat", "127.0.0.1:9"));
    let mut answer = BytesMut::new();
    upgrade.write_accept(protocol, &mut answer).unwrap();
    (link, answer.to_vec())
}

fn upgraded(messages: WsMessages) -> (ClientLink, BytesMut) {
    let (mut link, answer) = upgraded_with(messages, None);
    let mut input = BytesMut::from(&answer[..]);
    let event = link.read(&mut input, KEY, &mut BytesMut::new()).unwrap();
    assert!(matches!(event, Some(LinkEvent::Upgraded(_))), "{event:?}");
    (link, input)
}

const PACKETS: WsMessages = WsMessages::Packets { max_payload: 1024 };
const ANY: WsMessages = WsMessages::Any { max_len: 1024 };

/// Every event `input` holds, and what the link wrote meanwhile.
fn drain(link: &mut ClientLink, input: &mut BytesMut) -> (Vec<LinkEvent>, BytesMut) {
    let mut out = BytesMut::new();
    let mut events = Vec::new();
    while let Some(event) = link.read(input, KEY, &mut out).unwrap() {
        events.push(event);
    }
    (events, out)
}

/// The frames a client wrote, read back by a codec server.
fn client_frames(mut out: BytesMut) -> Vec<(OpCode, Bytes)> {
    let mut frames = FrameDecoder::<Server>::new(1 << 20);
    let mut got = Vec::new();
    while let Some(frame) = frames.decode(&mut out).unwrap().complete() {
        got.push((frame.opcode, frame.payload));
    }
    assert!(out.is_empty(), "a partial frame written");
    got
}

fn packet(command: u16, payload: &'static [u8]) -> LinkEvent {
    LinkEvent::Packet(Packet {
        command,
        payload: Bytes::from_static(payload),
    })
}

#[test]
fn the_link_state_is_two_words() {
    assert_eq!(std::mem::size_of::<ClientLink>(), 16);
}

#[test]
fn tcp_sends_packets_as_they_are_and_reads_them_back() {
    let link = ClientLink::tcp(1024);
    let mut out = BytesMut::new();
    link.send(&packet_bytes(1, b"abc"), KEY, &mut out);
    assert_eq!(&out[..], &packet_bytes(1, b"abc")[..]);
    assert!(!link.send_ping(b"p", KEY, &mut out), "no ping on TCP");
    assert!(!link.is_ws());

    let mut link = ClientLink::tcp(1024);
    let stream = [packet_bytes(0x8001, b"xy"), packet_bytes(0x4001, b"")].concat();
    let (events, out) = drain(&mut link, &mut BytesMut::from(&stream[..]));
    assert_eq!(events, [packet(0x8001, b"xy"), packet(0x4001, b"")]);
    assert!(out.is_empty());
}

#[test]
fn tcp_refuses_a_stray_stream_and_a_packet_over_the_limit() {
    let mut input = BytesMut::from(&b"HTTP/1.1 400"[..]);
    let got = ClientLink::tcp(1024).read(&mut input, KEY, &mut BytesMut::new());
    assert!(matches!(
        got,
        Err(StreamError::Packet(PacketError::BadMagic { .. }))
    ));
    let mut input = BytesMut::from(&packet_bytes(1, &[0; 1025])[..]);
    let got = ClientLink::tcp(1024).read(&mut input, KEY, &mut BytesMut::new());
    assert!(matches!(
        got,
        Err(StreamError::Packet(PacketError::TooLong { .. }))
    ));
}

#[test]
fn ws_reports_the_upgrade_with_the_chosen_subprotocol() {
    let (mut link, answer) = upgraded_with(PACKETS, Some("chat.v1"));
    assert!(link.is_ws());
    let mut input = BytesMut::from(&answer[..]);
    match link.read(&mut input, KEY, &mut BytesMut::new()).unwrap() {
        Some(LinkEvent::Upgraded(response)) => assert_eq!(response.protocol(), Some("chat.v1")),
        other => panic!("{other:?}"),
    }
    assert!(input.is_empty());
}

#[test]
fn ws_refuses_an_answer_that_is_not_a_101() {
    let mut link = ClientLink::ws(
        &ClientRequest::new("h:1", "/"),
        [1; 16],
        PACKETS,
        &mut BytesMut::new(),
    )
    .unwrap();
    let mut input = BytesMut::from(&b"HTTP/1.1 404 Not Found\r\n\r\n"[..]);
    let got = link.read(&mut input, KEY, &mut BytesMut::new());
    assert!(matches!(
        got,
        Err(StreamError::Handshake(ResponseError::Status { code: 404 }))
    ));
}

#[test]
fn ws_writes_nothing_for_a_refused_request() {
    let mut out = BytesMut::new();
    let got = ClientLink::ws(
        &ClientRequest::new("h:1", "no-slash"),
        [1; 16],
        PACKETS,
        &mut out,
    );
    assert!(matches!(got, Err(ClientRequestError::InvalidPath)));
    assert!(out.is_empty());
}

#[test]
fn ws_sends_one_masked_binary_message_per_unit_and_pings() {
    let (link, _) = upgraded(PACKETS);
    let mut out = BytesMut::new();
    link.send(&packet_bytes(1, b"ping"), KEY, &mut out);
    assert!(link.send_ping(b"hb", KEY, &mut out));
    assert_eq!(out[1] & 0x80, 0x80, "a client frame is masked");
    assert_eq!(&out[2..6], KEY, "with the key given");
    assert_eq!(
        client_frames(out),
        [
            (OpCode::Binary, Bytes::from(packet_bytes(1, b"ping"))),
            (OpCode::Ping, Bytes::from_static(b"hb")),
        ]
    );
}

#[test]
fn ws_answers_a_ping_with_its_payload_and_reports_it() {
    let (mut link, mut input) = upgraded(PACKETS);
    input.extend_from_slice(&server_frame(OpCode::Ping, true, b"p"));
    input.extend_from_slice(&server_frame(OpCode::Pong, true, b"q"));
    input.extend_from_slice(&server_frame(
        OpCode::Binary,
        true,
        &packet_bytes(0x8010, b"ok"),
    ));
    let (events, out) = drain(&mut link, &mut input);
    assert_eq!(
        events,
        [
            LinkEvent::Ping(Bytes::from_static(b"p")),
            LinkEvent::Pong(Bytes::from_static(b"q")),
            packet(0x8010, b"ok"),
        ]
    );
    assert_eq!(
        client_frames(out),
        [(OpCode::Pong, Bytes::from_static(b"p"))]
    );
}

#[test]
fn ws_echoes_the_servers_close_code_and_reads_nothing_after_it() {
    let (mut link, mut input) = upgraded(PACKETS);
    input.extend_from_slice(&server_frame(
        OpCode::Close,
        true,
        &[0x03, 0xe9, b'b', b'y'],
    ));
    input.extend_from_slice(&server_frame(
        OpCode::Binary,
        true,
        &packet_bytes(1, b"late"),
    ));
    let (events, out) = drain(&mut link, &mut input);
    match &events[..] {
        [LinkEvent::Close(Some(frame))] => {
            assert_eq!(
                (frame.code, &frame.reason[..]),
                (CloseCode::GOING_AWAY, &b"by"[..])
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        client_frames(out),
        [(OpCode::Close, Bytes::from_static(&[0x03, 0xe9]))]
    );
    assert_eq!(
        input.len(),
        2 + 10 + 4,
        "bytes after the close stay in the input"
    );

    // An empty close is answered with 1000.
    let (mut link, mut input) = upgraded(PACKETS);
    input.extend_from_slice(&server_frame(OpCode::Close, true, b""));
    let (events, out) = drain(&mut link, &mut input);
    assert_eq!(events, [LinkEvent::Close(None)]);
    assert_eq!(
        client_frames(out),
        [(OpCode::Close, Bytes::from_static(&[0x03, 0xe8]))]
    );
}

#[test]
fn ws_after_its_own_close_sends_no_echo_and_no_pong() {
    let (mut link, mut input) = upgraded(PACKETS);
    let mut out = BytesMut::new();
    link.send_close(CloseCode::NORMAL, "bye", KEY, &mut out);
    link.send_close(CloseCode::NORMAL, "again", KEY, &mut out);
    assert!(!link.send_ping(b"x", KEY, &mut out));
    assert_eq!(
        client_frames(out),
        [(
            OpCode::Close,
            Bytes::from_static(&[0x03, 0xe8, b'b', b'y', b'e'])
        )]
    );
    input.extend_from_slice(&server_frame(OpCode::Ping, true, b"p"));
    input.extend_from_slice(&server_frame(OpCode::Close, true, &[0x03, 0xe8]));
    let (events, out) = drain(&mut link, &mut input);
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(out.is_empty(), "nothing follows a close: {out:?}");
}

#[test]
fn tcp_has_no_close_frame() {
    let mut link = ClientLink::tcp(10);
    let mut out = BytesMut::new();
    link.send_close(CloseCode::NORMAL, "", KEY, &mut out);
    assert!(out.is_empty());
}

#[test]
fn ws_packets_reassemble_fragments_and_refuse_what_is_not_one_packet() {
    let (mut link, mut input) = upgraded(PACKETS);
    let whole = packet_bytes(0x8002, b"fragmented");
    input.extend_from_slice(&server_frame(OpCode::Binary, false, &whole[..4]));
    input.extend_from_slice(&server_frame(OpCode::Ping, true, b""));
    input.extend_from_slice(&server_frame(OpCode::Continuation, true, &whole[4..]));
    let (events, _) = drain(&mut link, &mut input);
    assert_eq!(
        events,
        [LinkEvent::Ping(Bytes::new()), packet(0x8002, b"fragmented")]
    );

    let (mut link, mut input) = upgraded(PACKETS);
    let two = [packet_bytes(1, b""), packet_bytes(2, b"")].concat();
    input.extend_from_slice(&server_frame(OpCode::Binary, true, &two));
    let got = link.read(&mut input, KEY, &mut BytesMut::new());
    assert_eq!(got, Err(StreamError::NotOnePacket { len: 20 }));

    let (mut link, mut input) = upgraded(PACKETS);
    input.extend_from_slice(&server_frame(OpCode::Binary, true, b"garbage!!!!!"));
    let got = link.read(&mut input, KEY, &mut BytesMut::new());
    assert!(matches!(
        got,
        Err(StreamError::Packet(PacketError::BadMagic { .. }))
    ));

    let (mut link, mut input) = upgraded(PACKETS);
    input.extend_from_slice(&server_frame(OpCode::Text, true, b"hi"));
    let got = link.read(&mut input, KEY, &mut BytesMut::new());
    assert_eq!(got, Err(StreamError::TextMessage));
}

#[test]
fn both_transports_take_a_payload_of_exactly_max_payload_and_refuse_one_more() {
    // docs/protocol.md §1: one limit on the payload; a WebSocket message is one packet, so it
    // may be the limit plus the 10-byte header, refused with 1009 beyond.
    let at_limit = packet_bytes(0x8031, &[0; 1024]);
    let over = packet_bytes(0x8031, &[0; 1025]);
    let (events, _) = drain(
        &mut ClientLink::tcp(1024),
        &mut BytesMut::from(&at_limit[..]),
    );
    assert!(matches!(&events[..], [LinkEvent::Packet(p)] if p.payload.len() == 1024));

    let (mut link, mut input) = upgraded(PACKETS);
    input.extend_from_slice(&server_frame(OpCode::Binary, true, &at_limit));
    let (events, _) = drain(&mut link, &mut input);
    assert!(matches!(&events[..], [LinkEvent::Packet(p)] if p.payload.len() == 1024));
    let (mut link, mut input) = upgraded(PACKETS);
    input.extend_from_slice(&server_frame(OpCode::Binary, true, &over));
    match link.read(&mut input, KEY, &mut BytesMut::new()) {
        Err(StreamError::WebSocket(e)) => assert_eq!(e.close_code(), CloseCode::MESSAGE_TOO_BIG),
        other => panic!("{other:?}"),
    }
}

#[test]
fn ws_any_passes_binary_and_text_messages_up_to_its_limit() {
    let (mut link, mut input) = upgraded(ANY);
    input.extend_from_slice(&server_frame(OpCode::Binary, true, b"not a packet"));
    input.extend_from_slice(&server_frame(OpCode::Text, true, "café".as_bytes()));
    let (events, _) = drain(&mut link, &mut input);
    assert_eq!(
        events,
        [
            LinkEvent::Binary(Bytes::from_static(b"not a packet")),
            LinkEvent::Text(Bytes::from("café")),
        ]
    );
    let (mut link, mut input) = upgraded(ANY);
    input.extend_from_slice(&server_frame(OpCode::Binary, true, &[0; 1025]));
    let got = link.read(&mut input, KEY, &mut BytesMut::new());
    assert!(matches!(got, Err(StreamError::WebSocket(_))), "{got:?}");
}

#[test]
fn ws_refuses_a_masked_server_frame() {
    let (mut link, mut input) = upgraded(ANY);
    let mut masked_frame = BytesMut::new();
    FrameEncoder::<Client>::new().encode_masked(OpCode::Binary, true, b"x", KEY, &mut masked_frame);
    input.extend_from_slice(&masked_frame);
    let got = link.read(&mut input, KEY, &mut BytesMut::new());
    assert_eq!(
        got,
        Err(StreamError::WebSocket(ProtocolError::MaskedServerFrame))
    );
}

#[test]
fn ws_upgraded_reads_frames_at_once() {
    let mut link = ClientLink::ws_upgraded(ANY);
    let mut input = BytesMut::from(&server_frame(OpCode::Binary, true, b"x")[..]);
    let (events, _) = drain(&mut link, &mut input);
    assert_eq!(events, [LinkEvent::Binary(Bytes::from_static(b"x"))]);
}
