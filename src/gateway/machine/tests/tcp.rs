//! Framed TCP, the PROXY header phase, the end of stream, the read-wait, and the decode budget.

use bytes::BytesMut;
use switchboard_codec::packet::PacketEncoder;

use super::super::workspace::FRAME_BUDGET;
use super::*;
use crate::gateway::TrustedProxies;

fn packet(payload: &[u8]) -> Vec<u8> {
    let mut dst = BytesMut::new();
    PacketEncoder::new()
        .encode_into(1, payload, &mut dst)
        .unwrap();
    dst.to_vec()
}

fn proxied() -> GatewayConfig {
    GatewayConfig {
        proxy_protocol: Some("127.0.0.0/8".parse::<TrustedProxies>().unwrap()),
        ..config()
    }
}

#[test]
fn a_tcp_connection_is_admitted_at_once_and_echoes_packets() {
    let mut h = Harness::new(Transport::Tcp);
    assert_eq!(h.opened, 1);
    assert_eq!(h.machine.phase(), Phase::Open);
    assert_eq!(h.deadline, Some(START + 18_000));
    let one = packet(b"hello");
    let mut bytes = one.clone();
    bytes.extend(packet(b"world"));
    h.read(&bytes[..7]);
    assert!(h.messages.is_empty());
    h.read(&bytes[7..]);
    assert_eq!(h.messages.len(), 2);
    assert_eq!(h.messages[0].payload()[..], one[..], "a packet comes whole");
    h.end_pass();
    assert_eq!(h.take_wire(), bytes, "the echo, as it came");
}

#[test]
fn a_refused_tcp_connection_is_closed_before_anything_is_read() {
    let mut config = config();
    config.read_wait = Duration::from_secs(1);
    let mut ws = Workspace::new(Limits::new(&config), START);
    let mut machine = Machine::new(&mut ws, KEY, peer(), Transport::Tcp);
    let (_, deadline) = ws.next_event().unwrap();
    assert!(matches!(deadline, Event::Deadline(_)));
    let (_, open) = ws.next_event().unwrap();
    assert!(matches!(open, Event::Open(None)));
    let refuse = Admission::Refuse {
        status: 403,
        reason: "no",
    };
    machine.on_admission(&mut ws, KEY, None, Some(refuse));
    assert!(matches!(ws.next_event(), Some((KEY, Event::Close))));
    assert!(ws.next_event().is_none(), "never admitted: no disconnect");
}

#[test]
fn bad_framing_tells_the_handler_and_ends_with_fin() {
    let mut h = Harness::new(Transport::Tcp);
    let mut bytes = packet(b"fine");
    bytes.extend(b"GET / HTTP/1.1\r\n\r\n");
    h.read(&bytes);
    assert_eq!(h.messages.len(), 1);
    assert!(matches!(&h.disconnects[..], [Disconnect::Protocol(_)]));
    h.end_pass();
    assert_eq!(h.take_wire(), packet(b"fine"), "the echo before the FIN");
    assert!(h.fin);
}

#[test]
fn an_oversized_packet_is_refused_from_its_header() {
    let mut h = Harness::with_config(
        &GatewayConfig {
            max_packet: 100,
            ..config()
        },
        Transport::Tcp,
    );
    h.read(&packet(&[0u8; 1000])[..20]);
    assert!(matches!(&h.disconnects[..], [Disconnect::Protocol(_)]));
    assert_eq!(h.machine.held_bytes(), 0);
}

#[test]
fn the_end_of_stream_flushes_what_is_owed_then_fin() {
    let mut h = Harness::new(Transport::Tcp);
    h.read(&packet(b"last"));
    h.eof();
    assert_eq!(h.disconnects, [Disconnect::PeerClosed(None)]);
    h.end_pass();
    assert_eq!(h.take_wire(), packet(b"last"));
    assert!(h.fin);
    h.fire(false);
    assert!(h.closed, "the linger ends it if the peer never closes");
}

#[test]
fn a_silent_connection_is_closed_at_the_read_wait() {
    let mut h = Harness::new(Transport::Tcp);
    // A read half-way re-arms the wait from that read.
    h.at(START + 9_000);
    h.read(&packet(b"alive"));
    h.fire(false);
    assert!(!h.closed);
    assert_eq!(h.deadline, Some(START + 9_000 + 18_000));
    // Input the driver holds unread (its handler was full) is not silence.
    h.fire(true);
    assert!(!h.closed);
    h.fire(false);
    assert!(h.closed);
    assert_eq!(h.disconnects, [Disconnect::ReadTimeout]);
}

#[test]
fn one_turn_decodes_at_most_the_frame_budget() {
    let mut h = Harness::new(Transport::Tcp);
    h.echo = false;
    let mut bytes = Vec::new();
    for _ in 0..FRAME_BUDGET + 10 {
        bytes.extend(packet(b"x"));
    }
    h.read(&bytes);
    assert_eq!(h.messages.len(), FRAME_BUDGET);
    assert!(h.ws.budget_spent());
    assert!(h.machine.has_input(), "the rest waits in the connection");
    // The next turn takes the rest, before any new read.
    h.ws.start_turn();
    h.decode();
    assert_eq!(h.messages.len(), FRAME_BUDGET + 10);
    assert!(!h.machine.has_input());
}

#[test]
fn a_proxy_header_names_the_client_before_the_handler_is_asked() {
    let mut h = Harness::with_config(&proxied(), Transport::Tcp);
    assert_eq!(h.machine.phase(), Phase::ProxyHeader);
    assert_eq!(h.opened, 0);
    assert_eq!(h.deadline, Some(START + 1000), "the handshake deadline");
    let mut bytes = b"PROXY TCP4 10.1.2.3 10.0.0.2 4567 443\r\n".to_vec();
    bytes.extend(packet(b"first"));
    h.read(&bytes[..10]);
    assert_eq!(h.opened, 0);
    h.read(&bytes[10..]);
    assert_eq!(h.opened, 1);
    assert_eq!(h.machine.peer(), "10.1.2.3:4567".parse().unwrap());
    assert_eq!(
        h.messages.len(),
        1,
        "the bytes after the header are the client's"
    );
}

#[test]
fn a_proxy_header_then_a_websocket_upgrade() {
    let mut h = Harness::with_config(&proxied(), Transport::WebSocket);
    let mut bytes = b"PROXY TCP4 10.1.2.3 10.0.0.2 4567 443\r\n".to_vec();
    bytes.extend(UPGRADE);
    h.read(&bytes);
    assert_eq!(h.machine.phase(), Phase::Open);
    h.end_pass();
    assert!(h.take_wire().starts_with(b"HTTP/1.1 101"));
}

#[test]
fn a_bad_or_missing_proxy_header_drops_the_connection_unheard() {
    let mut h = Harness::with_config(&proxied(), Transport::Tcp);
    h.read(b"SWB1 not a proxy header at all\r\n");
    assert!(h.closed);
    assert_eq!(h.opened, 0);
    assert!(h.wire.is_empty());

    let mut h = Harness::with_config(&proxied(), Transport::Tcp);
    h.read(b"PROXY TCP4 10.1.");
    h.fire(false);
    assert!(h.closed, "the handshake deadline");
    assert_eq!(h.opened, 0);
}

/// The old reactor dropped the rest of a read when the frame that used up the turn's decode
/// budget was the one that emptied the connection's own buffer (the stream misframed after
/// it). The machine hands that rest to `end_input` through the scratch buffer: kept.
#[test]
fn the_rest_of_a_read_survives_the_frame_that_spends_the_budget_from_the_own_buffer() {
    let mut h = Harness::new(Transport::Tcp);
    h.echo = false;
    let first = packet(b"first, split across two reads");
    let second = packet(b"second");
    h.read(&first[..10]);
    assert!(
        h.machine.inbound.is_some(),
        "the start of the first packet is held"
    );
    h.ws.start_turn();
    h.ws.frames_left = 1; // the budget of the turn is down to this one frame
    let mut rest = first[10..].to_vec();
    rest.extend_from_slice(&second);
    h.machine.on_bytes(&mut h.ws, &rest);
    h.decode();
    assert_eq!(h.messages.len(), 1, "the budget stops after the first");
    assert!(h.machine.has_input(), "the second waits for the next turn");
    h.read(&[]);
    assert_eq!(h.messages.len(), 2);
    assert_eq!(h.messages[1].payload()[..], second[..]);
    assert!(h.disconnects.is_empty());
}
