//! What a handler may do when a connection opens, over real sockets: push a greeting (it
//! arrives first, after the 101 on WebSocket), refuse (403 on WebSocket, a close on TCP),
//! close at once through the `Outbox`, or panic. Whatever it does, the reactor keeps serving
//! its other connections and the handler hears of each admitted connection's end once.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use switchboard::gateway::{
    Admission, ConnId, ConnInfo, Disconnect, GatewayConfig, Handler, Message, Outbox, Transport,
};
use switchboard_codec::ws::handshake::ClientRequest;
use switchboard_codec::ws::{self as ws, CloseCode};

use common::{
    connect, has_header, http_exchange, packet, status_of, test_config, upgrade_request, TcpClient,
    TestGateway, WsClient,
};

/// What the handler does in `open` for every TCP connection and every WebSocket upgrade to
/// `/`; upgrades to `/bystander` are plainly accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnOpen {
    Greet,
    Refuse,
    Close,
    Panic,
}

const GREETING: &[u8] = b"welcome";

#[derive(Clone)]
struct Opener {
    on_open: OnOpen,
    /// Every connection admitted (open returned Accept) and every end reported.
    admitted: Arc<Mutex<Vec<ConnId>>>,
    ends: Arc<Mutex<Vec<(ConnId, Disconnect)>>>,
}

impl Opener {
    fn applies(info: &ConnInfo<'_>) -> bool {
        match info.upgrade {
            Some(request) => request.path() == "/",
            None => true,
        }
    }
}

impl Handler for Opener {
    fn open(&mut self, out: &mut Outbox<'_>, conn: ConnId, info: &ConnInfo<'_>) -> Admission {
        // Connections from the bystander client (path "/bystander") are simply served.
        if !Opener::applies(info) {
            self.admitted.lock().unwrap().push(conn);
            return Admission::ACCEPT;
        }
        match self.on_open {
            OnOpen::Greet => out.push(conn, Bytes::from(packet(0, GREETING))),
            OnOpen::Refuse => {
                return Admission::Refuse {
                    status: 403,
                    reason: "not today",
                }
            }
            OnOpen::Close => out.close(conn, CloseCode(4001)),
            OnOpen::Panic => panic!("the test asked open to panic"),
        }
        self.admitted.lock().unwrap().push(conn);
        Admission::ACCEPT
    }

    fn message(&mut self, out: &mut Outbox<'_>, conn: ConnId, message: Message) {
        out.send(conn, message);
    }

    fn disconnect(&mut self, _out: &mut Outbox<'_>, conn: ConnId, reason: &Disconnect) {
        self.ends.lock().unwrap().push((conn, reason.clone()));
    }
}

/// One reactor, so a failure in one connection's open would show on every other connection.
fn start(on_open: OnOpen) -> (TestGateway, Opener) {
    let opener = Opener {
        on_open,
        admitted: Arc::default(),
        ends: Arc::default(),
    };
    let handlers = opener.clone();
    let gateway = TestGateway::start(
        GatewayConfig {
            workers: 1,
            ..test_config()
        },
        move |_, _| handlers.clone(),
    );
    (gateway, opener)
}

/// A WebSocket client on the path the handler leaves alone.
fn bystander(gateway: &TestGateway) -> WsClient {
    let addr = gateway.ws_addr();
    let request = format!(
        "GET /bystander HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let mut stream = connect(addr);
    std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
    let head = common::read_http_head(&mut stream);
    assert_eq!(status_of(&head), 101, "{head}");
    WsClient::adopt(stream)
}

/// The handler heard of the end of each connection it admitted exactly once.
fn assert_each_admitted_ended_once(gateway: &TestGateway, opener: &Opener) {
    gateway.wait_for_open_connections(0, Duration::from_secs(3));
    let admitted = opener.admitted.lock().unwrap().clone();
    let ends = opener.ends.lock().unwrap().clone();
    for conn in &admitted {
        let count = ends.iter().filter(|(c, _)| c == conn).count();
        assert_eq!(count, 1, "{conn} ended {count} times: {ends:?}");
    }
    assert_eq!(
        ends.len(),
        admitted.len(),
        "ends of unknown connections: {ends:?}"
    );
}

#[test]
fn a_greeting_pushed_in_open_arrives_first_on_both_transports() {
    let (gateway, opener) = start(OnOpen::Greet);
    let mut tcp = TcpClient::connect(gateway.tcp_addr());
    assert_eq!(&tcp.read_packet()[..], &packet(0, GREETING)[..]);
    tcp.echo(1, b"after the greeting");

    let mut ws = WsClient::connect(gateway.ws_addr());
    assert_eq!(
        ws.read_message(),
        ws::Message::Binary(Bytes::from(packet(0, GREETING))),
        "the greeting must follow the 101"
    );
    ws.echo_binary(b"after the greeting");
    drop((tcp, ws));
    assert_each_admitted_ended_once(&gateway, &opener);
}

#[test]
fn a_refusal_in_open_is_a_403_on_websocket_and_a_close_on_tcp() {
    let (gateway, opener) = start(OnOpen::Refuse);
    let mut served = bystander(&gateway);
    let response = http_exchange(gateway.ws_addr(), &upgrade_request(gateway.ws_addr()));
    assert_eq!(status_of(&response), 403, "{response}");
    assert!(has_header(&response, "Connection", "close"), "{response}");

    let mut tcp = TcpClient::connect(gateway.tcp_addr());
    let ending = tcp.read_until_closed(Duration::from_secs(2));
    assert_eq!(ending.discarded, 0);

    served.echo_binary(b"unaffected");
    drop(served);
    assert_each_admitted_ended_once(&gateway, &opener);
}

#[test]
fn a_close_in_open_ends_a_tcp_connection_and_the_handler_hears_of_it_once() {
    let (gateway, opener) = start(OnOpen::Close);
    let mut tcp = TcpClient::connect(gateway.tcp_addr());
    let ending = tcp.read_until_closed(Duration::from_secs(2));
    assert_eq!(ending.discarded, 0);
    drop(tcp);
    assert_each_admitted_ended_once(&gateway, &opener);
    let ends = opener.ends.lock().unwrap().clone();
    assert!(
        matches!(ends[..], [(_, Disconnect::ClosedByServer(CloseCode(4001)))]),
        "{ends:?}"
    );
}

#[test]
fn a_close_in_open_ends_a_websocket_and_the_reactor_serves_on() {
    let (gateway, opener) = start(OnOpen::Close);
    let mut served = bystander(&gateway);

    let mut stream = connect(gateway.ws_addr());
    std::io::Write::write_all(&mut stream, &upgrade_request(gateway.ws_addr())).unwrap();
    common::read_until_closed(&mut stream, Duration::from_secs(2));

    served.echo_binary(b"the reactor is alive");
    bystander(&gateway).echo_binary(b"and accepts");
    drop(served);
    assert_each_admitted_ended_once(&gateway, &opener);
}

#[test]
fn a_panic_in_open_closes_a_tcp_connection_and_the_reactor_serves_on() {
    let (gateway, opener) = start(OnOpen::Panic);
    let mut served = bystander(&gateway);
    let mut tcp = TcpClient::connect(gateway.tcp_addr());
    let ending = tcp.read_until_closed(Duration::from_secs(2));
    assert_eq!(ending.discarded, 0);
    served.echo_binary(b"the reactor is alive");
    drop(served);
    assert_each_admitted_ended_once(&gateway, &opener);
}

#[test]
fn a_panic_in_open_answers_a_websocket_upgrade_with_http_not_frames() {
    let (gateway, opener) = start(OnOpen::Panic);
    let mut served = bystander(&gateway);
    // The client never got a 101, so it must not be sent WebSocket frames: an HTTP error
    // (5xx), or nothing at all.
    let mut stream = connect(gateway.ws_addr());
    std::io::Write::write_all(&mut stream, &upgrade_request(gateway.ws_addr())).unwrap();
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut stream, &mut answer);
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 5"),
        "answer to an upgrade whose open panicked: {answer:?}"
    );
    served.echo_binary(b"the reactor is alive");
    drop(served);
    assert_each_admitted_ended_once(&gateway, &opener);
}

#[test]
fn the_transport_is_reported_to_open() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    struct Reporter(Arc<Mutex<Vec<Transport>>>);
    impl Handler for Reporter {
        fn open(&mut self, _: &mut Outbox<'_>, _: ConnId, info: &ConnInfo<'_>) -> Admission {
            self.0.lock().unwrap().push(info.transport);
            assert_eq!(
                info.upgrade.is_some(),
                info.transport == Transport::WebSocket
            );
            Admission::ACCEPT
        }
        fn message(&mut self, out: &mut Outbox<'_>, conn: ConnId, message: Message) {
            out.send(conn, message);
        }
        fn disconnect(&mut self, _: &mut Outbox<'_>, _: ConnId, _: &Disconnect) {}
    }
    let for_handlers = seen.clone();
    let gateway = TestGateway::start(test_config(), move |_, _| Reporter(for_handlers.clone()));
    TcpClient::connect(gateway.tcp_addr()).echo(1, b"tcp");
    WsClient::connect(gateway.ws_addr()).echo_binary(b"ws");
    assert_eq!(
        *seen.lock().unwrap(),
        [Transport::Tcp, Transport::WebSocket]
    );
}

/// What an upgrade request asked for, as the handler saw it.
#[derive(Debug, PartialEq, Eq)]
struct Asked {
    path: String,
    query: Option<String>,
    offered: Vec<String>,
}

/// Records what each WebSocket upgrade asked for, and picks the last subprotocol offered.
struct UpgradeReader(Arc<Mutex<Vec<Asked>>>);

impl Handler for UpgradeReader {
    fn open(&mut self, _: &mut Outbox<'_>, _: ConnId, info: &ConnInfo<'_>) -> Admission {
        let request = info.upgrade.expect("a WebSocket connection");
        let offered: Vec<String> = request.subprotocols().map(str::to_owned).collect();
        self.0.lock().unwrap().push(Asked {
            path: request.path().to_owned(),
            query: request.query().map(str::to_owned),
            offered: offered.clone(),
        });
        Admission::Accept {
            protocol: offered.last().cloned(),
        }
    }
    fn message(&mut self, out: &mut Outbox<'_>, conn: ConnId, message: Message) {
        out.send(conn, message);
    }
    fn disconnect(&mut self, _: &mut Outbox<'_>, _: ConnId, _: &Disconnect) {}
}

#[test]
fn open_sees_the_upgrade_request_and_chooses_the_subprotocol() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let for_handlers = seen.clone();
    let gateway = TestGateway::start(test_config(), move |_, _| {
        UpgradeReader(for_handlers.clone())
    });
    let host = gateway.ws_addr().to_string();
    let protocols = ["v2.switchboard", "v1.switchboard"];
    let request = ClientRequest::new(&host, "/chat?token=abc").subprotocols(&protocols);
    let (mut client, response) = WsClient::connect_with(gateway.ws_addr(), &request);
    assert_eq!(response.protocol(), Some("v1.switchboard"));
    client.echo_binary(b"negotiated");
    assert_eq!(
        *seen.lock().unwrap(),
        [Asked {
            path: "/chat".to_owned(),
            query: Some("token=abc".to_owned()),
            offered: vec!["v2.switchboard".to_owned(), "v1.switchboard".to_owned()],
        }]
    );
}
