//! The limits on what one client may take, over real sockets (issue #12 item 6, issue #10):
//! each refuses what it should and nothing else. A message rate per connection (the message
//! past the burst and rate closes a flooding connection, 1008 on WebSocket; within a grace the
//! handler sees it marked instead), connections and connects per client address (refused at
//! accept, or after the PROXY header naming the client when the PROXY protocol is on; other
//! addresses in 127.0.0.0/8 are still served), and the WebSocket Origin allowlist (403 for
//! other pages, no Origin let through). Each refusal is counted by reason.

mod common;

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use socket2::{Domain, Socket, Type};
use switchboard::gateway::{
    Admission, AllowedOrigins, ConnId, ConnInfo, Disconnect, GatewayConfig, Handler, Message,
    Outbox, PerIpLimit, RateLimit, Refusal, TrustedProxies,
};
use switchboard_codec::ws::handshake::ClientRequest;
use switchboard_codec::ws::{self, CloseCode, OpCode};

use common::{
    configure, http_exchange, packet, read_until_closed, status_of, test_config, wait_until,
    TcpClient, TestGateway, WsClient,
};

/// A refused or cut connection is closed within this time.
const AT_ONCE: Duration = Duration::from_secs(2);

/// A TCP connection to `addr` from the loopback address `from` (127.0.0.2, ...).
fn connect_from(from: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::from((from, 0)).into())
        .expect("bind the client's address");
    socket.connect(&addr.into()).expect("connect");
    let stream: TcpStream = socket.into();
    configure(&stream);
    stream
}

fn tcp_from(from: [u8; 4], addr: SocketAddr) -> TcpClient {
    TcpClient::from_stream(connect_from(from, addr))
}

/// Whether a fresh connection from `from` is served (a packet echoed) or closed unanswered.
fn tcp_served(from: [u8; 4], addr: SocketAddr) -> bool {
    let mut stream = connect_from(from, addr);
    // A refused connection may be reset before the write lands; that is a refusal too.
    if stream.write_all(&packet(7, b"knock")).is_err() {
        return false;
    }
    let ending = read_until_closed_or_echo(&mut stream);
    ending > 0
}

/// Bytes read before the server closed the connection or 15 bytes (one echo) arrived.
fn read_until_closed_or_echo(stream: &mut TcpStream) -> usize {
    use std::io::Read;
    let mut got = 0;
    let mut buf = [0u8; 64];
    stream.set_read_timeout(Some(AT_ONCE)).unwrap();
    while got < 15 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    got
}

fn flood_config(limit: RateLimit) -> GatewayConfig {
    GatewayConfig {
        message_limit: limit,
        ..test_config()
    }
}

#[test]
fn a_connection_past_the_message_rate_is_closed_and_the_others_are_served() {
    let limit = RateLimit {
        burst: 20,
        per_second: 10,
        grace: 0,
    };
    let (gateway, ends) = TestGateway::recording_ends(flood_config(limit));

    // Exactly the burst at once, and a client at half the rate: served in full.
    let mut burst = TcpClient::connect(gateway.tcp_addr());
    let mut all = Vec::new();
    for i in 0..20u16 {
        all.extend_from_slice(&packet(i, b"burst"));
    }
    burst.send(&all);
    for i in 0..20u16 {
        assert_eq!(burst.read_packet().as_ref(), packet(i, b"burst"));
    }
    let mut steady = WsClient::connect(gateway.ws_addr());
    for _ in 0..6 {
        steady.echo_binary(b"steady");
        std::thread::sleep(Duration::from_millis(200));
    }

    // 200 at once on TCP: the 21st closes the connection; no more than the burst came back.
    let mut flooder = TcpClient::connect(gateway.tcp_addr());
    let mut flood = Vec::new();
    for i in 0..200u16 {
        flood.extend_from_slice(&packet(i, b"flood"));
    }
    flooder.send(&flood);
    let ending = flooder.read_until_closed(AT_ONCE);
    assert!(
        ending.discarded <= 20 * packet(0, b"flood").len(),
        "{} bytes echoed to a flooder",
        ending.discarded
    );
    // The same on WebSocket, with 1008.
    let mut ws_flooder = WsClient::connect(gateway.ws_addr());
    let mut frames = Vec::new();
    for _ in 0..100 {
        frames.extend_from_slice(&WsClient::frame(OpCode::Binary, true, b"flood"));
    }
    ws_flooder.send_raw(&frames);
    let mut echoed = 0;
    let code = loop {
        match ws_flooder.read_message() {
            ws::Message::Binary(_) => echoed += 1,
            ws::Message::Close(frame) => break frame.map(|f| f.code),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(code, Some(CloseCode::POLICY_VIOLATION));
    assert!(echoed <= 20, "{echoed} messages echoed to a flooder");

    // Everyone else is still served.
    burst.echo(1, b"still served");
    steady.echo_binary(b"still served");
    let refusals = gateway.refusals_reaching(Refusal::MessageRateClose, 2);
    assert_eq!(refusals.get(Refusal::MessageRateClose), 2);
    assert_eq!(refusals.get(Refusal::MessageOverRate), 0, "no grace");
    let ends = ends.ends.lock().unwrap().clone();
    let rate_ends = ends
        .iter()
        .filter(|e| matches!(e, Disconnect::Protocol(why) if why.contains("rate")))
        .count();
    assert_eq!(rate_ends, 2, "{ends:?}");
}

/// Echoes; a message over the rate is answered `over` instead.
#[derive(Clone, Default)]
struct Marking;

impl Handler for Marking {
    fn open(&mut self, _out: &mut Outbox<'_>, _conn: ConnId, _info: &ConnInfo<'_>) -> Admission {
        Admission::ACCEPT
    }

    fn message(&mut self, out: &mut Outbox<'_>, conn: ConnId, message: Message) {
        out.send(conn, message);
    }

    fn over_rate(&mut self, out: &mut Outbox<'_>, conn: ConnId, _message: Message) {
        out.push(conn, packet(99, b"over").into());
    }

    fn disconnect(&mut self, _out: &mut Outbox<'_>, _conn: ConnId, _reason: &Disconnect) {}
}

#[test]
fn within_the_grace_messages_past_the_rate_reach_the_handler_marked_then_the_connection_closes() {
    let limit = RateLimit {
        burst: 5,
        per_second: 1,
        grace: 5,
    };
    let gateway = TestGateway::start(flood_config(limit), |_, _| Marking);
    let mut client = TcpClient::connect(gateway.tcp_addr());
    let mut all = Vec::new();
    for i in 0..12u16 {
        all.extend_from_slice(&packet(i, b"m"));
    }
    client.send(&all);
    for i in 0..5u16 {
        assert_eq!(client.read_packet().as_ref(), packet(i, b"m"), "admitted");
    }
    for _ in 0..5 {
        assert_eq!(client.read_packet().as_ref(), packet(99, b"over"), "marked");
    }
    let ending = client.read_until_closed(AT_ONCE);
    assert_eq!(ending.discarded, 0, "nothing after the grace");
    let refusals = gateway.refusals_reaching(Refusal::MessageRateClose, 1);
    assert_eq!(refusals.get(Refusal::MessageOverRate), 5);
    assert_eq!(refusals.get(Refusal::MessageRateClose), 1);
}

#[test]
fn an_address_past_its_connections_is_refused_at_accept_and_other_addresses_are_served() {
    let config = GatewayConfig {
        per_ip: PerIpLimit {
            max_conns: 3,
            ..PerIpLimit::default()
        },
        ..test_config()
    };
    let gateway = TestGateway::echo(config);
    let mut held: Vec<TcpClient> = (0..3)
        .map(|_| tcp_from([127, 0, 0, 2], gateway.tcp_addr()))
        .collect();
    for (i, client) in held.iter_mut().enumerate() {
        client.echo(i as u16, b"held");
    }
    // A fourth from the same address, on either listener: closed without an answer.
    assert!(!tcp_served([127, 0, 0, 2], gateway.tcp_addr()));
    let mut ws = connect_from([127, 0, 0, 2], gateway.ws_addr());
    let _ = ws.write_all(&common::upgrade_request(gateway.ws_addr()));
    assert_eq!(read_until_closed(&mut ws, AT_ONCE).discarded, 0);
    // Other addresses are other clients.
    for from in [[127, 0, 0, 3], [127, 0, 0, 1]] {
        let mut other = tcp_from(from, gateway.tcp_addr());
        other.echo(1, b"another address");
        let mut other_ws =
            WsClient::handshake(connect_from(from, gateway.ws_addr()), gateway.ws_addr());
        other_ws.echo_binary(b"another address");
    }
    // A place freed is given again (once the server has seen the close: attempts before that
    // are refused, and counted); the held ones were served throughout.
    drop(held.pop());
    let mut refused_meanwhile = 0;
    assert!(wait_until(AT_ONCE, || {
        let served = tcp_served([127, 0, 0, 2], gateway.tcp_addr());
        refused_meanwhile += u64::from(!served);
        served
    }));
    for (i, client) in held.iter_mut().enumerate() {
        client.echo(i as u16, b"still held");
    }
    assert_eq!(
        gateway.refusals().get(Refusal::IpConnections),
        2 + refused_meanwhile
    );
}

#[test]
fn an_address_connecting_past_its_rate_is_refused_and_other_addresses_are_served() {
    let config = GatewayConfig {
        per_ip: PerIpLimit {
            max_conns: 0,
            connect_burst: 5,
            connect_per_second: 1,
        },
        ..test_config()
    };
    let gateway = TestGateway::echo(config);
    for _ in 0..5 {
        assert!(
            tcp_served([127, 0, 0, 4], gateway.tcp_addr()),
            "within the burst"
        );
    }
    assert!(
        !tcp_served([127, 0, 0, 4], gateway.tcp_addr()),
        "past the burst"
    );
    let mut ws = connect_from([127, 0, 0, 4], gateway.ws_addr());
    let _ = ws.write_all(&common::upgrade_request(gateway.ws_addr()));
    assert_eq!(read_until_closed(&mut ws, AT_ONCE).discarded, 0);
    assert!(
        tcp_served([127, 0, 0, 5], gateway.tcp_addr()),
        "another address"
    );
    // One a second: the next place comes within about a second.
    assert!(wait_until(Duration::from_secs(3), || tcp_served(
        [127, 0, 0, 4],
        gateway.tcp_addr()
    )));
    assert!(gateway.refusals().get(Refusal::IpConnectRate) >= 2);
}

/// PROXY v1 naming `client` as the source.
fn proxy_v1(client: IpAddr) -> Vec<u8> {
    format!("PROXY TCP4 {client} 127.0.0.1 40001 9000\r\n").into_bytes()
}

#[test]
fn with_the_proxy_protocol_the_limit_counts_the_client_the_header_names() {
    let config = GatewayConfig {
        proxy_protocol: Some("127.0.0.0/8".parse::<TrustedProxies>().unwrap()),
        per_ip: PerIpLimit {
            max_conns: 1,
            ..PerIpLimit::default()
        },
        ..test_config()
    };
    let gateway = TestGateway::echo(config);
    let a: IpAddr = "203.0.113.7".parse().unwrap();
    let b: IpAddr = "203.0.113.8".parse().unwrap();
    // Both come through the one balancer address: per balancer, the second would be refused.
    let mut first = TcpClient::connect(gateway.tcp_addr());
    first.send(&proxy_v1(a));
    first.echo(1, b"client a");
    let mut second = TcpClient::connect(gateway.tcp_addr());
    second.send(&proxy_v1(b));
    second.echo(2, b"client b");
    // A second connection of client a, on either listener, is refused after its header.
    let mut again = TcpClient::connect(gateway.tcp_addr());
    let _ = again.stream.write_all(&proxy_v1(a));
    let _ = again.stream.write_all(&packet(3, b"again"));
    assert_eq!(again.read_until_closed(AT_ONCE).discarded, 0);
    let mut again_ws = common::connect(gateway.ws_addr());
    let mut request = proxy_v1(a);
    request.extend_from_slice(&common::upgrade_request(gateway.ws_addr()));
    let _ = again_ws.write_all(&request);
    assert_eq!(read_until_closed(&mut again_ws, AT_ONCE).discarded, 0);
    first.echo(4, b"still served");
    second.echo(5, b"still served");
    let refusals = gateway.refusals_reaching(Refusal::IpConnections, 2);
    assert_eq!(refusals.get(Refusal::IpConnections), 2);
}

#[test]
fn an_upgrade_from_a_page_not_allowed_gets_403_and_no_origin_or_an_allowed_one_is_served() {
    let config = GatewayConfig {
        allowed_origins: Some(
            "https://chat.example.com"
                .parse::<AllowedOrigins>()
                .unwrap(),
        ),
        ..test_config()
    };
    let gateway = TestGateway::echo(config);
    let addr = gateway.ws_addr();
    let host = addr.to_string();
    let refused = http_exchange(
        addr,
        format!(
            "GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Origin: https://evil.example\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(status_of(&refused), 403, "{refused}");
    let (mut allowed, _) = WsClient::connect_with(
        addr,
        &ClientRequest::new(&host, "/").origin("https://chat.example.com"),
    );
    allowed.echo_binary(b"allowed page");
    let mut app = WsClient::connect(addr);
    app.echo_binary(b"no Origin: not a browser");
    let refusals = gateway.refusals_reaching(Refusal::Origin, 1);
    assert_eq!(refusals.get(Refusal::Origin), 1);
}
