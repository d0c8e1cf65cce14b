//! `--proxy-protocol` over real loopback sockets, on both listeners: v1 and v2 headers make the
//! header's client the peer the handler sees (in `ConnInfo.peer`), also when the header arrives
//! one byte at a time, and the bytes after it are the client's first; LOCAL and UNKNOWN keep the
//! real peer; a connection without a header, with garbage, an oversized or lying header, or
//! from a peer outside `--trusted-proxies` is closed before the handler hears of it, without a
//! byte of answer; a header that never finishes is cut at the handshake deadline.
//! (`tests/proxy_haproxy.rs` puts a real haproxy in front of the binary.)

mod common;

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchboard::gateway::{
    Admission, ConnId, ConnInfo, Disconnect, GatewayConfig, Handler, Message, Outbox, Transport,
};

use common::{
    connect, packet, read_http_head, read_until_closed, status_of, test_config, upgrade_request,
    wait_until, Closed, TcpClient, TestGateway, WsClient,
};

/// The peers the handlers were given at `open`, in order.
#[derive(Clone, Default)]
struct Opens(Arc<Mutex<Vec<(Transport, SocketAddr)>>>);

impl Opens {
    fn all(&self) -> Vec<(Transport, SocketAddr)> {
        self.0.lock().unwrap().clone()
    }

    /// Waits up to two seconds for an open of `transport` with `peer`.
    fn expect(&self, transport: Transport, peer: SocketAddr) {
        let seen = wait_until(Duration::from_secs(2), || {
            self.all().contains(&(transport, peer))
        });
        assert!(
            seen,
            "no {transport:?} open from {peer}; opens: {:?}",
            self.all()
        );
    }
}

/// Echoes, and records the peer of every connection it is asked to admit.
struct PeerRecorder(Opens);

impl Handler for PeerRecorder {
    fn open(&mut self, _out: &mut Outbox<'_>, _conn: ConnId, info: &ConnInfo<'_>) -> Admission {
        self.0 .0.lock().unwrap().push((info.transport, info.peer));
        Admission::ACCEPT
    }

    fn message(&mut self, out: &mut Outbox<'_>, conn: ConnId, message: Message) {
        out.send(conn, message);
    }

    fn disconnect(&mut self, _out: &mut Outbox<'_>, _conn: ConnId, _reason: &Disconnect) {}
}

fn config(trusted: &str) -> GatewayConfig {
    GatewayConfig {
        proxy_protocol: Some(trusted.parse().expect("a trusted list")),
        ..test_config()
    }
}

fn start(config: GatewayConfig) -> (TestGateway, Opens) {
    let opens = Opens::default();
    let handlers = opens.clone();
    let gateway = TestGateway::start(config, move |_, _| PeerRecorder(handlers.clone()));
    (gateway, opens)
}

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("a socket address")
}

// ---- headers -------------------------------------------------------------------------------

fn v1(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        source.ip(),
        destination.ip(),
        source.port(),
        destination.port()
    )
    .into_bytes()
}

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// A v2 header: `command` 0 (LOCAL) or 1 (PROXY), the addresses, then `tlvs` verbatim.
fn v2(command: u8, source: SocketAddr, destination: SocketAddr, tlvs: &[u8]) -> Vec<u8> {
    let mut addresses = Vec::new();
    let family = match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            addresses.extend_from_slice(&s.octets());
            addresses.extend_from_slice(&d.octets());
            0x11
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            addresses.extend_from_slice(&s.octets());
            addresses.extend_from_slice(&d.octets());
            0x21
        }
        _ => panic!("one family"),
    };
    addresses.extend_from_slice(&source.port().to_be_bytes());
    addresses.extend_from_slice(&destination.port().to_be_bytes());
    addresses.extend_from_slice(tlvs);
    let mut header = V2_SIGNATURE.to_vec();
    header.push(0x20 | command);
    header.push(family);
    header.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
    header.extend_from_slice(&addresses);
    header
}

/// The headers every transport is tried with, each with the client it names.
fn headers(destination: SocketAddr) -> Vec<(&'static str, Vec<u8>, SocketAddr)> {
    let v4 = addr("203.0.113.7:40001");
    let v6 = addr("[2001:db8::7]:40002");
    let destination6 = addr("[2001:db8::1]:443");
    // A TLV the gateway must skip: PP2_TYPE_AUTHORITY (0x02), "chat.example".
    let mut authority = vec![0x02, 0x00, 12];
    authority.extend_from_slice(b"chat.example");
    vec![
        ("v1 TCP4", v1(v4, destination), v4),
        ("v1 TCP6", v1(v6, destination6), v6),
        ("v2 IPv4 with a TLV", v2(1, v4, destination, &authority), v4),
        ("v2 IPv6", v2(1, v6, destination6, &[]), v6),
    ]
}

// ---- clients -------------------------------------------------------------------------------

/// Writes `bytes` in one write, or one byte per write with a pause between, so each byte
/// reaches the server in a read of its own.
fn send(stream: &mut TcpStream, bytes: &[u8], byte_by_byte: bool) {
    if !byte_by_byte {
        stream.write_all(bytes).expect("write");
        return;
    }
    for byte in bytes {
        stream.write_all(&[*byte]).expect("write one byte");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Sends `header` and the client's first bytes (a packet, or the upgrade request), then shows
/// the connection works: the packet comes back; a message comes back after the 101. Returns
/// the client's real address.
fn proxied_client_works(
    gateway: &TestGateway,
    transport: Transport,
    header: &[u8],
    split: bool,
) -> SocketAddr {
    match transport {
        Transport::Tcp => {
            let mut stream = connect(gateway.tcp_addr());
            let real = stream.local_addr().expect("local address");
            let first = packet(1, b"after the header");
            send(&mut stream, &[header, &first[..]].concat(), split);
            let mut client = TcpClient::from_stream(stream);
            assert_eq!(&client.read_packet()[..], &first[..]);
            client.echo(2, b"and more");
            real
        }
        Transport::WebSocket => {
            let addr = gateway.ws_addr();
            let mut stream = connect(addr);
            let real = stream.local_addr().expect("local address");
            send(
                &mut stream,
                &[header, &upgrade_request(addr)[..]].concat(),
                split,
            );
            let head = read_http_head(&mut stream);
            assert_eq!(status_of(&head), 101, "{head}");
            WsClient::adopt(stream).echo_binary(b"after the upgrade");
            real
        }
    }
}

const TRANSPORTS: [Transport; 2] = [Transport::Tcp, Transport::WebSocket];

#[test]
fn the_headers_client_is_the_peer_on_both_transports() {
    let (gateway, opens) = start(config("127.0.0.0/8"));
    for transport in TRANSPORTS {
        for (name, header, client) in headers(addr("192.0.2.1:9000")) {
            proxied_client_works(&gateway, transport, &header, false);
            opens.expect(transport, client);
            eprintln!("{transport:?}, {name}: seen as {client}");
        }
    }
}

#[test]
fn a_header_split_into_single_bytes_works() {
    let (gateway, opens) = start(config("127.0.0.1"));
    for transport in TRANSPORTS {
        for (_, header, client) in headers(addr("192.0.2.1:9000")).into_iter().step_by(2) {
            proxied_client_works(&gateway, transport, &header, true);
            opens.expect(transport, client);
        }
    }
}

#[test]
fn local_and_unknown_keep_the_real_peer() {
    let (gateway, opens) = start(config("127.0.0.1/32"));
    // What haproxy sends for its own health checks: LOCAL, family UNSPEC, no addresses.
    let local = [&V2_SIGNATURE[..], &[0x20, 0x00, 0x00, 0x00]].concat();
    let unknown = b"PROXY UNKNOWN ignored by the receiver\r\n".to_vec();
    for transport in TRANSPORTS {
        for header in [&local, &unknown] {
            let real = proxied_client_works(&gateway, transport, header, false);
            opens.expect(transport, real);
        }
    }
    assert!(
        opens
            .all()
            .iter()
            .all(|(_, peer)| peer.ip() == IpAddr::from([127, 0, 0, 1])),
        "only real peers: {:?}",
        opens.all()
    );
}

/// Connects to `transport`'s listener, sends `bytes`, and checks the gateway closes the
/// connection within a second without a byte of answer (no HTTP response either).
fn refused(gateway: &TestGateway, transport: Transport, bytes: &[u8]) {
    let listener = match transport {
        Transport::Tcp => gateway.tcp_addr(),
        Transport::WebSocket => gateway.ws_addr(),
    };
    let mut stream = connect(listener);
    stream.write_all(bytes).expect("write");
    let ending = read_until_closed(&mut stream, Duration::from_secs(2));
    assert_eq!(ending.discarded, 0, "the gateway answered {bytes:?}");
    assert!(
        ending.after < Duration::from_secs(1),
        "closed only after {:?}",
        ending.after
    );
}

#[test]
fn bad_headers_are_closed_before_the_handler_hears_of_them() {
    let (gateway, opens) = start(config("127.0.0.0/8"));
    let client = addr("203.0.113.7:40001");
    let front = addr("192.0.2.1:443");
    let mut oversized_v2 = v2(1, client, front, &[]);
    oversized_v2[14..16].copy_from_slice(&5000u16.to_be_bytes());
    // TLV type 0x04 (NOOP) declaring 200 bytes where the header ends after 3.
    let lying_tlv = v2(1, client, front, &[0x04, 0x00, 200]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("no header: a packet", packet(1, b"hello")),
        ("garbage", b"\x16\x03\x01\x02\x00garbage".to_vec()),
        ("v1 without its CRLF within 107 bytes", {
            let mut line = b"PROXY TCP4 203.0.113.7 192.0.2.1 40001 443".to_vec();
            line.resize(120, b' ');
            line
        }),
        ("v2 longer than 4 KiB", oversized_v2),
        (
            "v1 TCP4 naming an IPv6 client",
            b"PROXY TCP4 2001:db8::7 192.0.2.1 40001 443\r\n".to_vec(),
        ),
        (
            "v1 port out of range",
            b"PROXY TCP4 203.0.113.7 192.0.2.1 70000 443\r\n".to_vec(),
        ),
        ("v2 TLV past the header's end", lying_tlv),
    ];
    for transport in TRANSPORTS {
        let mut cases = cases.clone();
        if transport == Transport::WebSocket {
            cases.push((
                "no header: an upgrade request",
                upgrade_request(gateway.ws_addr()),
            ));
        }
        for (name, bytes) in &cases {
            eprintln!("{transport:?}: {name}");
            refused(&gateway, transport, bytes);
        }
    }
    assert_eq!(
        opens.all(),
        vec![],
        "the handler was asked to admit a refused connection"
    );
    gateway.wait_for_open_connections(0, Duration::from_secs(2));
}

#[test]
fn a_peer_outside_the_trusted_networks_is_closed() {
    let (gateway, opens) = start(config("10.0.0.0/8,::1"));
    for transport in TRANSPORTS {
        for (_, header, _) in headers(addr("192.0.2.1:9000")) {
            refused(&gateway, transport, &header);
        }
    }
    assert_eq!(opens.all(), vec![]);
}

#[test]
fn a_header_that_never_finishes_is_cut_at_the_handshake_deadline() {
    let handshake_timeout = Duration::from_millis(300);
    let (gateway, opens) = start(GatewayConfig {
        handshake_timeout,
        ..config("127.0.0.1")
    });
    for transport in TRANSPORTS {
        let listener = match transport {
            Transport::Tcp => gateway.tcp_addr(),
            Transport::WebSocket => gateway.ws_addr(),
        };
        // Silent, half a v1 line, and the fixed part of a v2 header that promises more.
        let mut v2_start = v2(1, addr("203.0.113.7:1"), addr("192.0.2.1:2"), &[]);
        v2_start.truncate(20);
        for start in [&b""[..], b"PROXY TCP4 203.0.113.7 ", &v2_start] {
            let mut stream = connect(listener);
            let began = Instant::now();
            stream.write_all(start).expect("write");
            let ending = read_until_closed(&mut stream, Duration::from_secs(3));
            assert_eq!(ending.discarded, 0);
            assert_eq!(ending.how, Closed::Eof);
            assert!(
                began.elapsed() >= handshake_timeout - Duration::from_millis(20),
                "{transport:?} {start:?}: closed after {:?}, before the deadline",
                began.elapsed()
            );
        }
    }
    assert_eq!(opens.all(), vec![]);
}

/// `--proxy-protocol ws` (or `tcp`): the header is expected on that listener only; the other
/// serves clients that send none, from any peer, as without the option.
#[test]
fn a_header_is_expected_only_on_the_listeners_named() {
    use switchboard::gateway::ProxyListeners;
    let client = addr("203.0.113.7:40001");
    for (proxied, direct) in [
        (Transport::WebSocket, Transport::Tcp),
        (Transport::Tcp, Transport::WebSocket),
    ] {
        let listeners = ProxyListeners {
            tcp: proxied == Transport::Tcp,
            ws: proxied == Transport::WebSocket,
        };
        let (gateway, opens) = start(GatewayConfig {
            proxy_listeners: listeners,
            ..config("127.0.0.1")
        });
        proxied_client_works(&gateway, proxied, &v1(client, addr("192.0.2.1:443")), false);
        opens.expect(proxied, client);
        let real = proxied_client_works(&gateway, direct, b"", false);
        opens.expect(direct, real);
        let headerless = match proxied {
            Transport::Tcp => packet(1, b"hello"),
            Transport::WebSocket => upgrade_request(gateway.ws_addr()),
        };
        refused(&gateway, proxied, &headerless);
        assert_eq!(opens.all().len(), 2, "{:?}", opens.all());
        drop(gateway);
        // Loopback is no trusted proxy here: the proxied listener refuses it, the direct
        // one does not ask.
        let (gateway, opens) = start(GatewayConfig {
            proxy_listeners: listeners,
            ..config("10.0.0.0/8")
        });
        refused(&gateway, proxied, &v1(client, addr("192.0.2.1:443")));
        let real = proxied_client_works(&gateway, direct, b"", false);
        assert_eq!(opens.all(), vec![(direct, real)]);
    }
}
