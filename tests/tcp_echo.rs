//! Framed TCP through real loopback sockets: packets come back byte for byte however the
//! client's writes split or coalesce them, and a client that breaks the framing is cut off
//! alone while the others keep being served.

mod common;

use std::time::Duration;

use switchboard::gateway::GatewayConfig;

use common::{packet, pattern, test_config, Closed, TcpClient, TestGateway};

/// Three packets whose boundaries fall at different offsets: header only, one payload byte,
/// and a payload long enough to need several reads when dripped.
fn three_packets() -> Vec<u8> {
    let mut bytes = packet(1, b"");
    bytes.extend(packet(2, b"x"));
    bytes.extend(packet(0xFFFF, &pattern(100, 7)));
    bytes
}

fn read_packets(client: &mut TcpClient, count: usize) -> Vec<u8> {
    let mut got = Vec::new();
    for _ in 0..count {
        got.extend_from_slice(&client.read_packet());
    }
    got
}

#[test]
fn packets_split_at_every_byte_boundary_come_back_whole() {
    let gateway = TestGateway::echo(test_config());
    let mut client = TcpClient::connect(gateway.tcp_addr());
    let sent = three_packets();
    for split in 1..sent.len() {
        client.send(&sent[..split]);
        // Long enough for the gateway to read the first part on its own.
        std::thread::sleep(Duration::from_millis(1));
        client.send(&sent[split..]);
        assert_eq!(read_packets(&mut client, 3), sent, "split at byte {split}");
    }
}

#[test]
fn packets_dripped_one_byte_at_a_time_come_back_whole() {
    let gateway = TestGateway::echo(test_config());
    let mut client = TcpClient::connect(gateway.tcp_addr());
    let sent = three_packets();
    for byte in &sent {
        client.send(std::slice::from_ref(byte));
        std::thread::sleep(Duration::from_micros(300));
    }
    assert_eq!(read_packets(&mut client, 3), sent);
}

#[test]
fn a_thousand_packets_in_one_write_come_back_in_order() {
    let gateway = TestGateway::echo(test_config());
    let mut client = TcpClient::connect(gateway.tcp_addr());
    let mut sent = Vec::new();
    for i in 0..1000u16 {
        sent.extend(packet(i, &pattern(usize::from(i % 97), i as u8)));
    }
    client.send(&sent);
    assert_eq!(read_packets(&mut client, 1000), sent);
}

#[test]
fn a_packet_larger_than_one_read_comes_back_whole() {
    let gateway = TestGateway::echo(test_config());
    let mut client = TcpClient::connect(gateway.tcp_addr());
    let payload = pattern(300 << 10, 3);
    client.echo(9, &payload);
    // And the connection is still in step afterwards.
    client.echo(10, b"after");
}

#[test]
fn a_wrong_magic_closes_only_that_connection() {
    let gateway = TestGateway::echo(test_config());
    let mut good = TcpClient::connect(gateway.tcp_addr());
    good.echo(1, b"before");

    // An HTTP client on the TCP port: refused on the first byte that cannot begin the magic.
    let mut stray = TcpClient::connect(gateway.tcp_addr());
    stray.send(b"G");
    let ending = stray.read_until_closed(Duration::from_secs(2));
    assert_eq!(ending.how, Closed::Eof, "an orderly close: {ending:?}");
    assert_eq!(ending.discarded, 0, "nothing is sent to a stray client");

    // A full header with a wrong magic, after a good packet on the same connection.
    let mut bad = TcpClient::connect(gateway.tcp_addr());
    bad.echo(2, b"fine so far");
    let mut wrong = packet(3, b"payload");
    wrong[3] ^= 0xFF;
    bad.send(&wrong);
    let ending = bad.read_until_closed(Duration::from_secs(2));
    assert_eq!(ending.how, Closed::Eof, "{ending:?}");
    assert_eq!(ending.discarded, 0, "the bad packet is not echoed");

    good.echo(1, b"after");
    gateway.wait_for_open_connections(1, Duration::from_secs(3));
}

#[test]
fn an_oversized_length_closes_only_that_connection() {
    let gateway = TestGateway::echo(GatewayConfig {
        max_packet: 1024,
        ..test_config()
    });
    let mut good = TcpClient::connect(gateway.tcp_addr());
    good.echo(1, &pattern(1024, 1)); // the largest packet allowed still echoes

    let mut big = TcpClient::connect(gateway.tcp_addr());
    // Only the header: the refusal must not wait for a body it will never buffer.
    big.send(&packet(2, &pattern(1025, 2))[..10]);
    let ending = big.read_until_closed(Duration::from_secs(2));
    assert_eq!(ending.how, Closed::Eof, "{ending:?}");
    assert_eq!(ending.discarded, 0);

    good.echo(1, b"still served");
}

#[test]
fn a_half_closed_client_still_gets_every_echo_it_is_owed() {
    let gateway = TestGateway::echo(test_config());
    let mut client = TcpClient::connect(gateway.tcp_addr());
    let mut sent = Vec::new();
    for i in 0..100u16 {
        sent.extend(packet(i, &pattern(usize::from(i), i as u8)));
    }
    client.send(&sent);
    client.stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(read_packets(&mut client, 100), sent);
    let ending = client.read_until_closed(Duration::from_secs(2));
    assert_eq!(ending.how, Closed::Eof, "{ending:?}");
    assert_eq!(ending.discarded, 0);
    gateway.wait_for_open_connections(0, Duration::from_secs(3));
}
