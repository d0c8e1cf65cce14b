//! The WebSocket side: the upgrade and its refusals, frames, pings and their bounds, the
//! control-frame rate, the closing handshake and the protocol's close codes.

use super::super::super::metrics::Refusal;
use super::super::control::PONGS_IN_PLACE;
use super::super::ControlLimit;
use super::*;

#[test]
fn an_upgrade_gets_its_101_and_the_handler_sees_the_request() {
    let mut h = Harness::new(Transport::WebSocket);
    // In two reads: the parser keeps its place.
    h.read(&UPGRADE[..20]);
    assert_eq!(h.opened, 0);
    h.read(&UPGRADE[20..]);
    assert_eq!(h.opened, 1);
    h.end_pass();
    let response = String::from_utf8(h.take_wire()).unwrap();
    assert!(response.starts_with("HTTP/1.1 101"), "{response}");
    assert!(
        response.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{response}"
    );
}

#[test]
fn frames_pipelined_behind_the_upgrade_are_read_after_the_admission() {
    let mut h = Harness::new(Transport::WebSocket);
    let mut bytes = UPGRADE.to_vec();
    bytes.extend(client_frame(OpCode::Binary, true, b"first"));
    h.read(&bytes);
    assert_eq!(h.messages, [binary(b"first")]);
    h.end_pass();
    let wire = h.take_wire();
    let at = wire.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    h.wire = wire[at..].to_vec();
    assert!(matches!(&h.frames()[..], [ws::Message::Binary(b)] if b == "first"));
}

#[test]
fn a_refused_upgrade_gets_its_status_then_fin() {
    let mut h = Harness::new(Transport::WebSocket);
    h.answer = Answer::Refuse(403);
    h.read(UPGRADE);
    assert_eq!(h.machine.phase(), Phase::Flushing);
    assert_eq!(h.deadline, Some(START + 200), "the close linger: 2 s");
    h.end_pass();
    assert_eq!(h.ws.take_refused()[Refusal::Handler as usize], 1);
    assert!(h.take_wire().starts_with(b"HTTP/1.1 403"));
    assert!(h.fin);
    assert!(h.disconnects.is_empty(), "never admitted, never told");
    h.fire(false);
    assert!(h.closed, "the linger ends it");
}

#[test]
fn a_malformed_upgrade_is_answered_with_400() {
    let mut h = Harness::new(Transport::WebSocket);
    h.read(b"GET /chat HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(h.opened, 0);
    h.end_pass();
    let response = String::from_utf8(h.take_wire()).unwrap();
    assert!(response.starts_with("HTTP/1.1 4"), "{response}");
    assert!(h.fin);
    let refused = h.ws.take_refused();
    assert_eq!(
        refused[Refusal::BadUpgrade as usize],
        1,
        "counted for /metrics"
    );
    assert_eq!(h.ws.take_refused(), [0; Refusal::ALL.len()], "taken once");
}

#[test]
fn an_oversized_upgrade_is_refused_without_waiting_for_its_end() {
    let mut h = Harness::new(Transport::WebSocket);
    let mut head = b"GET /chat HTTP/1.1\r\nHost: example.com\r\nX-Pad: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', 64 << 10));
    h.read(&head);
    assert_eq!(h.machine.phase(), Phase::Flushing);
    h.end_pass();
    let response = String::from_utf8(h.take_wire()).unwrap();
    assert!(response.starts_with("HTTP/1.1 431"), "{response}");
    assert_eq!(h.machine.held_bytes(), 0);
}

#[test]
fn an_upgrade_that_never_completes_is_dropped_at_the_deadline() {
    let mut h = Harness::new(Transport::WebSocket);
    h.read(&UPGRADE[..30]);
    h.fire(false);
    assert!(h.closed);
    assert!(
        h.wire.is_empty(),
        "no response: the client never finished asking"
    );
    assert!(h.disconnects.is_empty());
}

#[test]
fn a_handler_panic_in_the_admission_is_a_500() {
    let mut h = Harness::new(Transport::WebSocket);
    h.answer = Answer::Panic;
    h.read(UPGRADE);
    h.end_pass();
    assert!(h.take_wire().starts_with(b"HTTP/1.1 500"));
    assert!(h.fin);
}

#[test]
fn a_handler_panic_on_a_message_closes_with_1011() {
    let mut h = Harness::open_ws(&config());
    h.machine.on_handler_panic(&mut h.ws, KEY);
    h.settle();
    h.end_pass();
    let frames = h.frames();
    assert_eq!(close_code(&frames[0]), Some(CloseCode::INTERNAL_ERROR));
    assert_eq!(h.disconnects, [Disconnect::HandlerPanic]);
}

#[test]
fn messages_in_one_read_and_across_reads() {
    let mut h = Harness::open_ws(&config());
    let mut bytes = client_frame(OpCode::Binary, true, b"one");
    bytes.extend(client_frame(OpCode::Binary, true, b"two"));
    let third = client_frame(OpCode::Binary, true, &[7u8; 3000]);
    bytes.extend(&third[..100]);
    h.read(&bytes);
    assert_eq!(h.messages, [binary(b"one"), binary(b"two")]);
    // The start of the third waits in a buffer sized for exactly that frame.
    assert_eq!(h.machine.held_bytes(), third.len());
    h.read(&third[100..]);
    assert_eq!(h.messages.len(), 3);
    assert_eq!(h.messages[2].payload().len(), 3000);
    assert_eq!(h.machine.held_bytes(), 0);
}

#[test]
fn a_whole_frame_in_one_read_is_not_copied_out_of_the_read_buffer() {
    let mut h = Harness::open_ws(&config());
    h.echo = false;
    let mut bytes = client_frame(OpCode::Binary, true, &[1u8; 500]);
    bytes.extend(client_frame(OpCode::Binary, true, &[2u8; 500]));
    h.read(&bytes);
    let (a, b) = (h.messages[0].payload(), h.messages[1].payload());
    // Both payloads were split off the one scratch buffer: the second follows the first's
    // payload and the second frame's header in the same allocation.
    let gap = b.as_ptr() as usize - a.as_ptr() as usize;
    assert_eq!(gap, 500 + 8, "payload, then an 8-byte masked header");
}

#[test]
fn text_is_refused_with_1003_unless_enabled() {
    let mut h = Harness::open_ws(&config());
    h.read(&client_frame(OpCode::Text, true, b"hello"));
    h.end_pass();
    assert_eq!(
        close_code(&h.frames()[0]),
        Some(CloseCode::UNSUPPORTED_DATA)
    );
    assert!(matches!(&h.disconnects[..], [Disconnect::Protocol(_)]));

    let mut h = Harness::open_ws(&GatewayConfig {
        ws_text: true,
        ..config()
    });
    h.read(&client_frame(OpCode::Text, true, b"hello"));
    assert!(matches!(&h.messages[..], [Message::Text(t)] if t == "hello"));
}

#[test]
fn bad_utf8_closes_with_1007_and_an_oversized_message_with_1009() {
    let mut h = Harness::open_ws(&GatewayConfig {
        ws_text: true,
        ..config()
    });
    h.read(&client_frame(OpCode::Text, true, &[0xc3, 0x28]));
    h.end_pass();
    assert_eq!(close_code(&h.frames()[0]), Some(CloseCode::INVALID_PAYLOAD));
    assert!(h.fin);

    let mut h = Harness::open_ws(&GatewayConfig {
        max_message: 1000,
        ..config()
    });
    // Refused from its header: the payload never arrives, nothing is buffered for it.
    let frame = client_frame(OpCode::Binary, true, &[0u8; 5000]);
    h.read(&frame[..20]);
    h.end_pass();
    assert_eq!(close_code(&h.frames()[0]), Some(CloseCode::MESSAGE_TOO_BIG));
    assert_eq!(h.machine.held_bytes(), 0);
}

#[test]
fn an_echo_goes_out_before_the_close_of_an_error_behind_it() {
    let mut h = Harness::open_ws(&config());
    let mut bytes = client_frame(OpCode::Binary, true, b"kept");
    bytes.extend([0x82, 0x01, b'x']); // unmasked: a protocol error (1002)
    h.read(&bytes);
    h.end_pass();
    let frames = h.frames();
    assert!(matches!(&frames[0], ws::Message::Binary(b) if b == "kept"));
    assert_eq!(close_code(&frames[1]), Some(CloseCode::PROTOCOL_ERROR));
}

#[test]
fn pings_are_answered_in_place_then_only_the_latest_once() {
    let mut h = Harness::open_ws(&GatewayConfig {
        control_limit: ControlLimit {
            burst: 1000,
            per_second: 1000,
        },
        ..config()
    });
    let mut bytes = Vec::new();
    let pings = PONGS_IN_PLACE as usize + 10;
    for i in 0..pings {
        bytes.extend(client_frame(OpCode::Ping, true, format!("{i}").as_bytes()));
    }
    bytes.extend(client_frame(OpCode::Binary, true, b"after"));
    h.read(&bytes);
    h.end_pass();
    let frames = h.frames();
    let pongs: Vec<_> = frames
        .iter()
        .filter_map(|m| match m {
            ws::Message::Pong(p) => Some(String::from_utf8(p.to_vec()).unwrap()),
            _ => None,
        })
        .collect();
    assert_eq!(pongs.len(), PONGS_IN_PLACE as usize + 1);
    assert_eq!(pongs[0], "0");
    assert_eq!(
        pongs.last().unwrap(),
        &format!("{}", pings - 1),
        "the latest ping"
    );
    // The next pass answers in place again.
    h.read(&client_frame(OpCode::Ping, true, b"next"));
    h.end_pass();
    assert!(matches!(&h.frames()[..], [ws::Message::Pong(p)] if p == "next"));
}

#[test]
fn control_frames_past_the_limit_close_with_1008() {
    let mut h = Harness::open_ws(&GatewayConfig {
        control_limit: ControlLimit {
            burst: 3,
            per_second: 1,
        },
        ..config()
    });
    let mut bytes = Vec::new();
    for _ in 0..4 {
        bytes.extend(client_frame(OpCode::Pong, true, b""));
    }
    h.read(&bytes);
    h.end_pass();
    assert_eq!(
        close_code(&h.frames()[0]),
        Some(CloseCode::POLICY_VIOLATION)
    );
    assert!(matches!(&h.disconnects[..], [Disconnect::Protocol(r)] if r.contains("control")));
}

#[test]
fn control_credit_comes_back_with_time() {
    let mut h = Harness::open_ws(&GatewayConfig {
        control_limit: ControlLimit {
            burst: 2,
            per_second: 1,
        },
        ..config()
    });
    let ping = client_frame(OpCode::Ping, true, b"p");
    h.read(&ping);
    h.read(&ping);
    h.end_pass();
    assert_eq!(h.frames().len(), 2, "the burst");
    // A second later: credit for one frame, not two.
    h.at(START + 100);
    h.read(&ping);
    h.read(&ping);
    h.end_pass();
    let frames = h.frames();
    assert!(matches!(frames[0], ws::Message::Pong(_)));
    assert_eq!(close_code(&frames[1]), Some(CloseCode::POLICY_VIOLATION));
}

#[test]
fn a_peer_close_is_echoed_with_its_code() {
    let mut h = Harness::open_ws(&config());
    h.read(&client_frame(OpCode::Close, true, &4000u16.to_be_bytes()));
    h.end_pass();
    assert_eq!(close_code(&h.frames()[0]), Some(CloseCode(4000)));
    assert_eq!(
        h.disconnects,
        [Disconnect::PeerClosed(Some(CloseCode(4000)))]
    );
    assert!(h.fin);
    assert_eq!(h.machine.phase(), Phase::Lingering);
    // Input while lingering is discarded; the peer's FIN ends it.
    h.read(b"late bytes");
    assert_eq!(h.machine.held_bytes(), 0);
    h.eof();
    assert!(h.closed);

    let mut h = Harness::open_ws(&config());
    h.read(&client_frame(OpCode::Close, true, b""));
    h.end_pass();
    assert!(
        matches!(&h.frames()[..], [ws::Message::Close(None)]),
        "empty for empty"
    );
}

#[test]
fn a_server_close_waits_for_the_reply_within_the_linger() {
    let mut h = Harness::open_ws(&config());
    h.machine.close(
        &mut h.ws,
        KEY,
        CloseCode::NORMAL,
        Disconnect::ClosedByServer(CloseCode::NORMAL),
    );
    h.settle();
    h.end_pass();
    assert_eq!(close_code(&h.frames()[0]), Some(CloseCode::NORMAL));
    // Data while awaiting the reply is not delivered.
    h.read(&client_frame(OpCode::Binary, true, b"late"));
    assert!(h.messages.is_empty());
    assert!(!h.closed);
    h.fire(false);
    assert!(h.closed, "no reply within the linger");
    assert_eq!(
        h.disconnects,
        [Disconnect::ClosedByServer(CloseCode::NORMAL)]
    );
}

#[test]
fn pushes_to_a_closing_connection_are_dropped() {
    let mut h = Harness::open_ws(&config());
    h.read(&client_frame(OpCode::Close, true, b""));
    h.machine.send(&mut h.ws, KEY, binary(b"too late"));
    h.end_pass();
    assert!(matches!(&h.frames()[..], [ws::Message::Close(None)]));
}
