//! WebSocket through real loopback sockets: frames come back with their opcode however the
//! client's writes split or coalesce them; handshake errors get their HTTP status; protocol
//! violations get the close code RFC 6455 gives them, and only that connection ends.

mod common;

use std::time::Duration;

use bytes::Bytes;
use switchboard::gateway::GatewayConfig;
use switchboard_codec::ws::{CloseCode, Message, OpCode};

use common::{has_header, http_exchange, pattern, status_of, test_config, TestGateway, WsClient};

fn binary(payload: &[u8]) -> Message {
    Message::Binary(Bytes::copy_from_slice(payload))
}

fn text(payload: &str) -> Message {
    Message::Text(Bytes::copy_from_slice(payload.as_bytes()))
}

#[test]
fn frames_split_at_every_byte_boundary_come_back_whole() {
    let gateway = TestGateway::echo(test_config());
    let mut client = WsClient::connect(gateway.ws_addr());
    // An empty message, a 7-bit length, a 16-bit length, and a text message: every header
    // form short of 64-bit, and boundaries at different offsets.
    let mut sent = WsClient::frame(OpCode::Binary, true, b"");
    sent.extend(WsClient::frame(OpCode::Binary, true, &pattern(5, 1)));
    sent.extend(WsClient::frame(OpCode::Binary, true, &pattern(200, 2)));
    sent.extend(WsClient::frame(OpCode::Text, true, "héllo".as_bytes()));
    let expected = [
        binary(b""),
        binary(&pattern(5, 1)),
        binary(&pattern(200, 2)),
        text("héllo"),
    ];
    for split in 1..sent.len() {
        client.send_raw(&sent[..split]);
        std::thread::sleep(Duration::from_millis(1));
        client.send_raw(&sent[split..]);
        for want in &expected {
            assert_eq!(&client.read_message(), want, "split at byte {split}");
        }
    }
}

#[test]
fn a_message_with_a_64_bit_length_dripped_in_pieces_comes_back_whole() {
    let gateway = TestGateway::echo(test_config());
    let mut client = WsClient::connect(gateway.ws_addr());
    let payload = pattern(70_000, 9);
    let frame = WsClient::frame(OpCode::Binary, true, &payload);
    // Splits inside the 14-byte header, then pieces that straddle read sizes.
    for piece in frame[..14].chunks(1).chain(frame[14..].chunks(7_001)) {
        client.send_raw(piece);
        std::thread::sleep(Duration::from_micros(500));
    }
    assert_eq!(client.read_message(), binary(&payload));
}

#[test]
fn a_thousand_frames_in_one_write_come_back_in_order() {
    let gateway = TestGateway::echo(test_config());
    let mut client = WsClient::connect(gateway.ws_addr());
    let mut sent = Vec::new();
    let mut expected = Vec::new();
    for i in 0..1000usize {
        let payload = pattern(i % 131, i as u8);
        if i % 3 == 0 {
            let line = format!("message {i}");
            sent.extend(WsClient::frame(OpCode::Text, true, line.as_bytes()));
            expected.push(text(&line));
        } else {
            sent.extend(WsClient::frame(OpCode::Binary, true, &payload));
            expected.push(binary(&payload));
        }
    }
    client.send_raw(&sent);
    for (i, want) in expected.iter().enumerate() {
        assert_eq!(&client.read_message(), want, "message {i}");
    }
}

#[test]
fn fragmented_messages_come_back_as_one_message_with_their_opcode() {
    let gateway = TestGateway::echo(test_config());
    let mut client = WsClient::connect(gateway.ws_addr());
    // A text message whose "é" is split between two fragments, with a ping between fragments.
    let word = "caféine".as_bytes();
    let cut = 4; // inside the two bytes of "é"
    client.send_frame(OpCode::Text, false, &word[..cut]);
    client.send_frame(OpCode::Ping, true, b"between");
    client.send_frame(OpCode::Continuation, false, b"");
    client.send_frame(OpCode::Continuation, true, &word[cut..]);
    // The pong answers the ping at once; the message comes back when it is whole.
    assert_eq!(
        client.read_message(),
        Message::Pong(Bytes::from_static(b"between"))
    );
    assert_eq!(client.read_message(), text("caféine"));

    // A binary message in three fragments, all in one write.
    let mut sent = WsClient::frame(OpCode::Binary, false, &pattern(10, 1));
    sent.extend(WsClient::frame(
        OpCode::Continuation,
        false,
        &pattern(300, 2),
    ));
    sent.extend(WsClient::frame(OpCode::Continuation, true, &pattern(3, 3)));
    client.send_raw(&sent);
    let whole = [pattern(10, 1), pattern(300, 2), pattern(3, 3)].concat();
    assert_eq!(client.read_message(), binary(&whole));
}

#[test]
fn ping_gets_a_pong_with_the_same_payload() {
    let gateway = TestGateway::echo(test_config());
    let mut client = WsClient::connect(gateway.ws_addr());
    for payload in [&b""[..], b"p", &pattern(125, 4)] {
        client.send_frame(OpCode::Ping, true, payload);
        assert_eq!(
            client.read_message(),
            Message::Pong(Bytes::copy_from_slice(payload))
        );
    }
}

#[test]
fn a_client_close_is_echoed_and_the_stream_ends() {
    let gateway = TestGateway::echo(test_config());
    let mut client = WsClient::connect(gateway.ws_addr());
    client.echo_binary(b"hello");
    client.send_close(CloseCode::NORMAL);
    assert_eq!(client.expect_close(), Some(CloseCode::NORMAL));
    gateway.wait_for_open_connections(0, Duration::from_secs(3));
}

// ---- handshake refusals ----------------------------------------------------------------------

fn upgrade_request(key: Option<&str>, version: &str) -> Vec<u8> {
    let mut request = String::from(
        "GET /chat HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
    );
    if let Some(key) = key {
        request.push_str(&format!("Sec-WebSocket-Key: {key}\r\n"));
    }
    request.push_str(&format!("Sec-WebSocket-Version: {version}\r\n\r\n"));
    request.into_bytes()
}

#[test]
fn a_request_without_a_key_is_answered_400_and_closed() {
    let gateway = TestGateway::echo(test_config());
    let response = http_exchange(gateway.ws_addr(), &upgrade_request(None, "13"));
    assert_eq!(status_of(&response), 400, "{response}");
    assert!(has_header(&response, "Connection", "close"), "{response}");
}

#[test]
fn a_bad_key_is_answered_400_and_closed() {
    let gateway = TestGateway::echo(test_config());
    // Base64 of 15 bytes, not 16.
    let request = upgrade_request(Some("AAAAAAAAAAAAAAAAAAAA"), "13");
    let response = http_exchange(gateway.ws_addr(), &request);
    assert_eq!(status_of(&response), 400, "{response}");
}

#[test]
fn version_8_is_answered_426_with_the_version_we_speak() {
    let gateway = TestGateway::echo(test_config());
    let request = upgrade_request(Some("dGhlIHNhbXBsZSBub25jZQ=="), "8");
    let response = http_exchange(gateway.ws_addr(), &request);
    assert_eq!(status_of(&response), 426, "{response}");
    assert!(
        has_header(&response, "Sec-WebSocket-Version", "13"),
        "{response}"
    );
}

#[test]
fn an_oversized_request_head_is_answered_431() {
    let gateway = TestGateway::echo(test_config());
    let mut request = upgrade_request(Some("dGhlIHNhbXBsZSBub25jZQ=="), "13");
    let padding = format!("X-Padding: {}\r\n\r\n", "p".repeat(9000));
    request.truncate(request.len() - 2); // reopen the head
    request.extend_from_slice(padding.as_bytes());
    let response = http_exchange(gateway.ws_addr(), &request);
    assert_eq!(status_of(&response), 431, "{response}");
}

#[test]
fn a_valid_request_is_answered_101_after_refusals_on_other_connections() {
    let gateway = TestGateway::echo(test_config());
    let refused = http_exchange(gateway.ws_addr(), b"GET / HTTP/1.0\r\n\r\n");
    assert!(status_of(&refused) >= 400, "{refused}");
    WsClient::connect(gateway.ws_addr()).echo_binary(b"served");
}

// ---- protocol violations ---------------------------------------------------------------------

/// Opens a second connection first, breaks the protocol on the first, and checks the close
/// code, the end of the stream, and that the bystander is still served.
fn assert_violation_closes_with(config: GatewayConfig, violation: &[u8], code: CloseCode) {
    let gateway = TestGateway::echo(config);
    let mut bystander = WsClient::connect(gateway.ws_addr());
    bystander.echo_binary(b"before");
    let mut client = WsClient::connect(gateway.ws_addr());
    client.echo_binary(b"in step");
    client.send_raw(violation);
    assert_eq!(client.expect_close(), Some(code));
    bystander.echo_binary(b"after");
}

#[test]
fn an_unmasked_client_frame_is_closed_with_1002() {
    let violation = WsClient::unmasked_frame(OpCode::Binary, true, b"bare");
    assert_violation_closes_with(test_config(), &violation, CloseCode::PROTOCOL_ERROR);
}

#[test]
fn a_reserved_bit_is_closed_with_1002() {
    let mut violation = WsClient::frame(OpCode::Binary, true, b"rsv1");
    violation[0] |= 0x40; // RSV1, with no extension negotiated
    assert_violation_closes_with(test_config(), &violation, CloseCode::PROTOCOL_ERROR);
}

#[test]
fn a_continuation_without_a_message_is_closed_with_1002() {
    let violation = WsClient::frame(OpCode::Continuation, true, b"orphan");
    assert_violation_closes_with(test_config(), &violation, CloseCode::PROTOCOL_ERROR);
}

#[test]
fn invalid_utf8_text_is_closed_with_1007() {
    let violation = WsClient::frame(OpCode::Text, true, &[0x68, 0xC3, 0x28]);
    assert_violation_closes_with(test_config(), &violation, CloseCode::INVALID_PAYLOAD);
}

#[test]
fn a_message_over_max_message_is_closed_with_1009() {
    let config = GatewayConfig {
        max_message: 1024,
        ..test_config()
    };
    let violation = WsClient::frame(OpCode::Binary, true, &pattern(1025, 1));
    assert_violation_closes_with(config, &violation, CloseCode::MESSAGE_TOO_BIG);
}

#[test]
fn text_is_refused_with_1003_when_text_is_off() {
    let config = GatewayConfig {
        ws_text: false,
        ..test_config()
    };
    let gateway = TestGateway::echo(config);
    let mut client = WsClient::connect(gateway.ws_addr());
    client.echo_binary(b"binary is fine");
    client.send_frame(OpCode::Text, true, b"text is not");
    assert_eq!(client.expect_close(), Some(CloseCode::UNSUPPORTED_DATA));
}

#[test]
fn frames_pipelined_behind_the_upgrade_request_are_served() {
    let gateway = TestGateway::echo(test_config());
    let mut stream = common::connect(gateway.ws_addr());
    let mut bytes = common::upgrade_request(gateway.ws_addr());
    bytes.extend(WsClient::frame(OpCode::Binary, true, b"right behind"));
    bytes.extend(WsClient::frame(OpCode::Text, true, b"and another"));
    std::io::Write::write_all(&mut stream, &bytes).unwrap();
    // The frames after the 101 head stay in the socket for the client.
    let head = common::read_http_head(&mut stream);
    assert_eq!(status_of(&head), 101, "{head}");
    let mut client = WsClient::adopt(stream);
    assert_eq!(client.read_message(), binary(b"right behind"));
    assert_eq!(client.read_message(), text("and another"));
}

#[test]
fn messages_before_a_close_in_the_same_write_are_all_echoed_first() {
    let gateway = TestGateway::echo(test_config());
    let mut client = WsClient::connect(gateway.ws_addr());
    let mut bytes = Vec::new();
    for i in 0..100u8 {
        bytes.extend(WsClient::frame(
            OpCode::Binary,
            true,
            &pattern(usize::from(i), i),
        ));
    }
    bytes.extend(WsClient::frame(
        OpCode::Close,
        true,
        &switchboard_codec::ws::close_payload(CloseCode::NORMAL, "bye"),
    ));
    client.send_raw(&bytes);
    for i in 0..100u8 {
        assert_eq!(client.read_message(), binary(&pattern(usize::from(i), i)));
    }
    assert_eq!(client.expect_close(), Some(CloseCode::NORMAL));
}

#[test]
fn fragments_that_add_up_past_max_message_are_closed_with_1009() {
    let config = GatewayConfig {
        max_message: 1024,
        ..test_config()
    };
    let mut violation = WsClient::frame(OpCode::Binary, false, &pattern(600, 1));
    violation.extend(WsClient::frame(
        OpCode::Continuation,
        true,
        &pattern(600, 2),
    ));
    assert_violation_closes_with(config, &violation, CloseCode::MESSAGE_TOO_BIG);
}
