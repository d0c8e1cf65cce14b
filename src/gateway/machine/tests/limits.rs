//! The limits the machine applies itself: the message rate at decode (with its grace), the
//! Origin allowlist of an upgrade, and the per-IP table after a PROXY header.

use std::sync::Arc;

use bytes::BytesMut;
use switchboard_codec::packet::PacketEncoder;

use super::*;
use crate::gateway::clock::TICK_MS;
use crate::gateway::limits::per_ip::PerIpTable;
use crate::gateway::limits::{AllowedOrigins, PerIpLimit, RateLimit};
use crate::gateway::metrics::Refusal;
use crate::gateway::TrustedProxies;

fn packets(count: usize) -> Vec<u8> {
    let mut dst = BytesMut::new();
    let mut encoder = PacketEncoder::new();
    for i in 0..count {
        encoder.encode_into(1, &[i as u8], &mut dst).unwrap();
    }
    dst.to_vec()
}

fn rated() -> GatewayConfig {
    GatewayConfig {
        message_limit: RateLimit {
            burst: 2,
            per_second: 1,
            grace: 1,
        },
        ..config()
    }
}

#[test]
fn messages_past_the_rate_go_to_the_grace_then_close_the_connection() {
    let mut h = Harness::with_config(&rated(), Transport::Tcp);
    h.read(&packets(5));
    assert_eq!(h.messages.len(), 2, "the burst");
    assert_eq!(h.over_rate.len(), 1, "the grace");
    assert!(matches!(h.disconnects[..], [Disconnect::Protocol(_)]));
    assert_eq!(
        h.machine.phase(),
        Phase::Flushing,
        "the one past the grace closes"
    );
    let refused = h.ws.take_refused();
    assert_eq!(refused[Refusal::MessageOverRate as usize], 1);
    assert_eq!(refused[Refusal::MessageRateClose as usize], 1);
    h.end_pass();
    assert!(h.fin, "what was queued goes out, then FIN");
}

#[test]
fn a_client_that_waits_is_served_again() {
    let mut h = Harness::with_config(&rated(), Transport::Tcp);
    h.read(&packets(3));
    assert_eq!((h.messages.len(), h.over_rate.len()), (2, 1));
    // One message per second, and the one over the rate counted too: two seconds (200
    // ticks of 10 ms) later the next is due.
    assert_eq!(TICK_MS, 10);
    h.at(START + 200);
    h.read(&packets(1));
    assert_eq!((h.messages.len(), h.over_rate.len()), (3, 1));
    assert!(h.disconnects.is_empty());
}

#[test]
fn websocket_messages_are_rated_and_the_close_is_1008() {
    let config = GatewayConfig {
        message_limit: RateLimit {
            burst: 1,
            per_second: 1,
            grace: 0,
        },
        ..config()
    };
    let mut h = Harness::open_ws(&config);
    let mut bytes = client_frame(OpCode::Binary, true, b"one");
    bytes.extend(client_frame(OpCode::Binary, true, b"two"));
    h.read(&bytes);
    assert_eq!(h.messages, vec![binary(b"one")]);
    assert!(h.over_rate.is_empty());
    h.end_pass();
    let frames = h.frames();
    assert_eq!(frames.len(), 2, "the echo, then the close");
    assert_eq!(close_code(&frames[1]), Some(CloseCode::POLICY_VIOLATION));
}

#[test]
fn an_upgrade_from_an_origin_not_allowed_gets_403_and_no_handler_call() {
    let config = GatewayConfig {
        allowed_origins: Some(
            "https://chat.example.com"
                .parse::<AllowedOrigins>()
                .unwrap(),
        ),
        ..config()
    };
    let with_origin = |origin: &str| {
        let text = std::str::from_utf8(UPGRADE).unwrap();
        text.replace("\r\n\r\n", &format!("\r\nOrigin: {origin}\r\n\r\n"))
    };
    let mut h = Harness::with_config(&config, Transport::WebSocket);
    h.read(with_origin("https://evil.example").as_bytes());
    h.end_pass();
    assert!(h.take_wire().starts_with(b"HTTP/1.1 403"));
    assert_eq!(h.opened, 0);
    assert_eq!(h.ws.take_refused()[Refusal::Origin as usize], 1);

    let mut h = Harness::with_config(&config, Transport::WebSocket);
    h.read(with_origin("https://chat.example.com").as_bytes());
    h.end_pass();
    assert!(h.take_wire().starts_with(b"HTTP/1.1 101"));

    let mut h = Harness::with_config(&config, Transport::WebSocket);
    h.read(UPGRADE);
    h.end_pass();
    assert!(
        h.take_wire().starts_with(b"HTTP/1.1 101"),
        "no Origin header: not a browser, let through"
    );
}

#[test]
fn per_ip_limits_apply_to_the_client_the_proxy_header_names() {
    let config = GatewayConfig {
        proxy_protocol: Some("127.0.0.0/8".parse::<TrustedProxies>().unwrap()),
        per_ip: PerIpLimit {
            max_conns: 1,
            ..PerIpLimit::default()
        },
        ..config()
    };
    let table = Arc::new(PerIpTable::new(config.per_ip, TICK_MS));
    let header = b"PROXY TCP4 10.1.2.3 10.0.0.2 4567 443\r\n";

    let mut first = Harness::with_config(&config, Transport::Tcp);
    first.ws.share_per_ip(table.clone());
    first.read(header);
    assert_eq!(first.opened, 1);
    assert!(first.machine.ip_counted());

    let mut second = Harness::with_config(&config, Transport::Tcp);
    second.ws.share_per_ip(table.clone());
    second.read(header);
    assert!(second.closed, "the client holds its one connection already");
    assert_eq!(second.opened, 0);
    assert!(!second.machine.ip_counted(), "nothing to release");
    assert_eq!(second.ws.take_refused()[Refusal::IpConnections as usize], 1);

    let mut other = Harness::with_config(&config, Transport::Tcp);
    other.ws.share_per_ip(table.clone());
    other.read(b"PROXY TCP4 10.1.2.4 10.0.0.2 4567 443\r\n");
    assert_eq!(
        other.opened, 1,
        "another client behind the same balancer is served"
    );

    table.release("10.1.2.3".parse().unwrap(), START);
    let mut again = Harness::with_config(&config, Transport::Tcp);
    again.ws.share_per_ip(table);
    again.read(header);
    assert_eq!(again.opened, 1, "served once the first connection is gone");
}
