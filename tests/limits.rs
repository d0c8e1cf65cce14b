//! The connection limit over real sockets: past `max_conns` a new connection, on either
//! transport, is closed at once while the ones already held keep being served, and a freed
//! place is given to the next client.

mod common;

use std::io::Write;
use std::time::Duration;

use switchboard::gateway::GatewayConfig;

use common::{connect, test_config, upgrade_request, TcpClient, TestGateway, WsClient};

const MAX_CONNS: usize = 10;

/// Past the limit a connection is closed without a byte of answer, within this time.
const AT_ONCE: Duration = Duration::from_secs(1);

#[test]
fn connections_past_max_conns_are_closed_at_once_and_the_held_ones_keep_echoing() {
    let gateway = TestGateway::echo(GatewayConfig {
        max_conns: MAX_CONNS,
        ..test_config()
    });
    let mut tcp: Vec<TcpClient> = (0..MAX_CONNS / 2)
        .map(|_| TcpClient::connect(gateway.tcp_addr()))
        .collect();
    let mut ws: Vec<WsClient> = (0..MAX_CONNS / 2)
        .map(|_| WsClient::connect(gateway.ws_addr()))
        .collect();
    for (i, client) in tcp.iter_mut().enumerate() {
        client.echo(i as u16, b"admitted");
    }
    for client in &mut ws {
        client.echo_binary(b"admitted");
    }
    gateway.wait_for_open_connections(MAX_CONNS, Duration::from_secs(2));

    for attempt in 0..3 {
        let mut extra = TcpClient::connect(gateway.tcp_addr());
        extra.send_packet(1, b"let me in");
        let ending = extra.read_until_closed(AT_ONCE);
        assert_eq!(ending.discarded, 0, "TCP attempt {attempt} was served");

        let mut extra_ws = connect(gateway.ws_addr());
        // The request may be refused before it is read; a reset then is fine.
        let _ = extra_ws.write_all(&upgrade_request(gateway.ws_addr()));
        let ending = common::read_until_closed(&mut extra_ws, AT_ONCE);
        assert_eq!(
            ending.discarded, 0,
            "WebSocket attempt {attempt} was answered"
        );
    }
    assert_eq!(gateway.open_connections(), MAX_CONNS);

    for (i, client) in tcp.iter_mut().enumerate() {
        client.echo(i as u16, b"still served");
    }
    for client in &mut ws {
        client.echo_binary(b"still served");
    }

    // A place freed is a place given.
    drop(tcp.pop());
    gateway.wait_for_open_connections(MAX_CONNS - 1, Duration::from_secs(3));
    WsClient::connect(gateway.ws_addr()).echo_binary(b"my turn");
}
