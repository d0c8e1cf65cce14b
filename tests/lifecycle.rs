//! Connection deadlines over real sockets: the read-wait (heartbeat) closes a silent
//! connection on either transport and spares one that keeps talking, and the handshake
//! deadline cuts a WebSocket client that dribbles its upgrade request (slowloris). All of it
//! holds across the point where a 32-bit count of 10 ms ticks would wrap (497 days of uptime).

mod common;

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use bytes::Bytes;
use switchboard::gateway::GatewayConfig;
use switchboard_codec::ws::{Message, OpCode};

use common::{connect, test_config, upgrade_request, TcpClient, TestGateway, WsClient};

const READ_WAIT: Duration = Duration::from_millis(300);

fn heartbeat_config() -> GatewayConfig {
    GatewayConfig {
        read_wait: READ_WAIT,
        ..test_config()
    }
}

/// The close must come after the read-wait (less the echo's round trip, which happened after
/// the gateway's last read) and not much later: the wheel ticks every 10 ms.
fn assert_closed_near_read_wait(after: Duration) {
    assert!(
        after >= READ_WAIT - Duration::from_millis(50),
        "closed after {after:?}, before the read-wait of {READ_WAIT:?}"
    );
    assert!(
        after < READ_WAIT + Duration::from_millis(1200),
        "closed only after {after:?} with a read-wait of {READ_WAIT:?}"
    );
}

#[test]
fn a_silent_tcp_connection_is_closed_after_the_read_wait() {
    let gateway = TestGateway::echo(heartbeat_config());
    let mut client = TcpClient::connect(gateway.tcp_addr());
    client.echo(1, b"then silence");
    let ending = client.read_until_closed(Duration::from_secs(3));
    assert_closed_near_read_wait(ending.after);
    assert_eq!(ending.discarded, 0);
    gateway.wait_for_open_connections(0, Duration::from_secs(2));
}

#[test]
fn a_silent_websocket_connection_is_closed_after_the_read_wait() {
    let gateway = TestGateway::echo(heartbeat_config());
    let mut client = WsClient::connect(gateway.ws_addr());
    client.echo_binary(b"then silence");
    let ending = client.read_until_closed(Duration::from_secs(3));
    assert_closed_near_read_wait(ending.after);
    gateway.wait_for_open_connections(0, Duration::from_secs(2));
}

#[test]
fn a_tcp_connection_that_keeps_sending_stays_open_then_times_out_when_silent() {
    let gateway = TestGateway::echo(heartbeat_config());
    let mut client = TcpClient::connect(gateway.tcp_addr());
    let start = Instant::now();
    for beat in 0..10u16 {
        std::thread::sleep(Duration::from_millis(100));
        client.echo(beat, b"beat");
    }
    assert!(
        start.elapsed() >= 3 * READ_WAIT,
        "the test outlived several read-waits"
    );
    assert_eq!(gateway.open_connections(), 1);
    let ending = client.read_until_closed(Duration::from_secs(3));
    assert_closed_near_read_wait(ending.after);
}

#[test]
fn a_websocket_that_keeps_pinging_stays_open_then_times_out_when_silent() {
    let gateway = TestGateway::echo(heartbeat_config());
    let mut client = WsClient::connect(gateway.ws_addr());
    let start = Instant::now();
    for beat in 0..10u8 {
        std::thread::sleep(Duration::from_millis(100));
        client.send_frame(OpCode::Ping, true, &[beat]);
        assert_eq!(
            client.read_message(),
            Message::Pong(Bytes::from(vec![beat]))
        );
    }
    assert!(start.elapsed() >= 3 * READ_WAIT);
    client.echo_binary(b"still open");
    let ending = client.read_until_closed(Duration::from_secs(3));
    assert_closed_near_read_wait(ending.after);
}

/// 2^32 ticks of 10 ms: where the reactors' clock wrapped when it was a `u32`, making every
/// later deadline already due (and a debug build panic on the addition).
const OLD_WRAP_TICKS: u64 = 1 << 32;

#[test]
fn deadlines_hold_across_the_old_32_bit_wrap_of_the_tick_count() {
    // Half a second before the old wrap: the beats below cross it.
    let gateway = TestGateway::echo(GatewayConfig {
        clock_start_ticks: OLD_WRAP_TICKS - 50,
        ..heartbeat_config()
    });
    let mut tcp = TcpClient::connect(gateway.tcp_addr());
    // Ten beats of 100 ms: the clock is past the old wrap after the fifth.
    for beat in 0..10u16 {
        std::thread::sleep(Duration::from_millis(100));
        tcp.echo(beat, b"beat");
    }
    // A connection made after the wrap gets its whole handshake and read-wait too.
    let mut ws = WsClient::connect(gateway.ws_addr());
    ws.echo_binary(b"after the wrap");
    assert_eq!(gateway.open_connections(), 2);
    let ending = tcp.read_until_closed(Duration::from_secs(3));
    assert_closed_near_read_wait(ending.after);
    let ending = ws.read_until_closed(Duration::from_secs(3));
    assert!(
        ending.after < READ_WAIT + Duration::from_millis(1200),
        "the WebSocket outlived its read-wait: {:?}",
        ending.after
    );
}

#[test]
fn a_slowloris_upgrade_request_is_cut_at_the_handshake_deadline() {
    let deadline = Duration::from_millis(500);
    let gateway = TestGateway::echo(GatewayConfig {
        handshake_timeout: deadline,
        ..test_config()
    });
    let request = upgrade_request(gateway.ws_addr());
    let mut stream = connect(gateway.ws_addr());
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let start = Instant::now();
    let mut sent = 0;
    let cut_after = loop {
        assert!(
            sent < request.len(),
            "the whole request went out a byte at a time without a cut"
        );
        if stream.write_all(&request[sent..sent + 1]).is_err() {
            break start.elapsed(); // reset: the gateway closed, and our byte found no one
        }
        sent += 1;
        // Waiting for the gateway is the pause between bytes.
        let mut buf = [0u8; 256];
        match stream.read(&mut buf) {
            Ok(0) => break start.elapsed(),
            Ok(n) => panic!(
                "the gateway answered an unfinished request: {:?}",
                String::from_utf8_lossy(&buf[..n])
            ),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break start.elapsed(),
            Err(e) if common::is_timeout(&e) => {}
            Err(e) => panic!("read failed: {e}"),
        }
    };
    assert!(
        cut_after >= deadline - Duration::from_millis(50),
        "cut after {cut_after:?}, before the deadline of {deadline:?}"
    );
    assert!(
        cut_after < deadline + Duration::from_millis(1200),
        "cut only after {cut_after:?} ({sent} bytes sent) with a deadline of {deadline:?}"
    );
    gateway.wait_for_open_connections(0, Duration::from_secs(2));
    // A client that sends its request at once is still served.
    WsClient::connect(gateway.ws_addr()).echo_binary(b"prompt");
}
