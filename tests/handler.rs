//! The handler interface over real sockets: a recording handler sees every open, message and
//! disconnect with its reason; pushes through the `GatewayHandle` reach the client from any
//! thread; a stale `ConnId` never reaches the connection that reuses its slot; `Outbox::close`
//! closes with the given code; and a handler panic ends only the connection it was about.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use switchboard::gateway::{
    Admission, ConnId, ConnInfo, Disconnect, GatewayConfig, Handler, Message, Outbox, Transport,
};
use switchboard_codec::ws::{self as ws, CloseCode, OpCode};

use common::{packet, test_config, wait_until, Closed, TcpClient, TestGateway, WsClient};

/// Packet commands that tell the recording handler what to do besides echoing.
const ECHO: u16 = 1;
const PANIC: u16 = 0xDEAD;
const CLOSE_4000: u16 = 0xC105;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Open(ConnId, Transport, SocketAddr),
    Message(ConnId, Message),
    Disconnect(ConnId, Disconnect),
}

/// Every event any reactor's handler saw, in the order each reactor saw them.
#[derive(Clone, Default)]
struct Journal(Arc<Mutex<Vec<Event>>>);

impl Journal {
    fn record(&self, event: Event) {
        self.0.lock().unwrap().push(event);
    }

    fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }

    /// The first event `pick` accepts, waiting for it up to two seconds.
    fn wait_for<T>(&self, what: &str, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
        let mut found = None;
        let seen = wait_until(Duration::from_secs(2), || {
            found = self.events().iter().find_map(&mut pick);
            found.is_some()
        });
        assert!(seen, "no {what} event; events: {:#?}", self.events());
        found.expect("seen")
    }

    /// The id the gateway gave the connection whose client end is `local`.
    fn conn_of(&self, local: SocketAddr) -> ConnId {
        self.wait_for("open", |e| match e {
            Event::Open(id, _, peer) if *peer == local => Some(*id),
            _ => None,
        })
    }

    /// The reason the handler was given for the end of `conn`.
    fn disconnect_of(&self, conn: ConnId) -> Disconnect {
        self.wait_for("disconnect", |e| match e {
            Event::Disconnect(id, reason) if *id == conn => Some(reason.clone()),
            _ => None,
        })
    }

    /// Each opened connection was told of its end exactly once, and nothing else ended.
    fn assert_one_disconnect_per_open(&self) {
        let events = self.events();
        let opened: Vec<ConnId> = events
            .iter()
            .filter_map(|e| match e {
                Event::Open(id, ..) => Some(*id),
                _ => None,
            })
            .collect();
        for id in &opened {
            let ends = events
                .iter()
                .filter(|e| matches!(e, Event::Disconnect(d, _) if d == id))
                .count();
            assert_eq!(ends, 1, "{id} was told of its end {ends} times");
        }
        for event in &events {
            if let Event::Disconnect(id, _) = event {
                assert!(opened.contains(id), "{id} ended without having been opened");
            }
        }
    }
}

/// Echoes and records; acts on the packet command (the first 10 bytes of a TCP message or of
/// a WebSocket binary message are a packet header).
struct Recorder {
    journal: Journal,
}

impl Handler for Recorder {
    fn open(&mut self, _out: &mut Outbox<'_>, conn: ConnId, info: &ConnInfo<'_>) -> Admission {
        self.journal
            .record(Event::Open(conn, info.transport, info.peer));
        Admission::ACCEPT
    }

    fn message(&mut self, out: &mut Outbox<'_>, conn: ConnId, message: Message) {
        self.journal.record(Event::Message(conn, message.clone()));
        let command = message
            .payload()
            .get(4..6)
            .map(|c| u16::from_be_bytes([c[0], c[1]]));
        match command {
            Some(PANIC) => panic!("the test asked this handler to panic"),
            Some(CLOSE_4000) => {
                out.send(conn, message);
                out.close(conn, CloseCode(4000));
            }
            _ => out.send(conn, message),
        }
    }

    fn disconnect(&mut self, _out: &mut Outbox<'_>, conn: ConnId, reason: &Disconnect) {
        self.journal.record(Event::Disconnect(conn, reason.clone()));
    }
}

fn start(config: GatewayConfig) -> (TestGateway, Journal) {
    let journal = Journal::default();
    let for_handlers = journal.clone();
    let gateway = TestGateway::start(config, move |_, _| Recorder {
        journal: for_handlers.clone(),
    });
    (gateway, journal)
}

fn local(stream: &std::net::TcpStream) -> SocketAddr {
    stream.local_addr().expect("local address")
}

#[test]
fn peer_closes_reach_the_handler_with_their_reason() {
    let (gateway, journal) = start(test_config());

    let mut ws = WsClient::connect(gateway.ws_addr());
    let ws_id = journal.conn_of(local(&ws.stream));
    ws.echo_binary(&packet(ECHO, b"recorded"));
    assert!(journal.events().contains(&Event::Message(
        ws_id,
        Message::Binary(Bytes::from(packet(ECHO, b"recorded")))
    )));
    ws.send_close(CloseCode::NORMAL);
    assert_eq!(ws.expect_close(), Some(CloseCode::NORMAL));
    assert_eq!(
        journal.disconnect_of(ws_id),
        Disconnect::PeerClosed(Some(CloseCode::NORMAL))
    );

    let mut tcp = TcpClient::connect(gateway.tcp_addr());
    let tcp_id = journal.conn_of(local(&tcp.stream));
    tcp.echo(ECHO, b"recorded");
    tcp.stream.shutdown(std::net::Shutdown::Write).unwrap();
    let ending = tcp.read_until_closed(Duration::from_secs(2));
    assert_eq!(ending.how, Closed::Eof);
    assert_eq!(journal.disconnect_of(tcp_id), Disconnect::PeerClosed(None));

    gateway.wait_for_open_connections(0, Duration::from_secs(3));
    journal.assert_one_disconnect_per_open();
}

#[test]
fn timeouts_and_protocol_errors_reach_the_handler_with_their_reason() {
    let (gateway, journal) = start(GatewayConfig {
        read_wait: Duration::from_millis(300),
        ..test_config()
    });
    let mut idle = TcpClient::connect(gateway.tcp_addr());
    let idle_id = journal.conn_of(local(&idle.stream));
    let mut idle_ws = WsClient::connect(gateway.ws_addr());
    let idle_ws_id = journal.conn_of(local(&idle_ws.stream));

    let mut bad = TcpClient::connect(gateway.tcp_addr());
    let bad_id = journal.conn_of(local(&bad.stream));
    bad.send(b"SSH-2.0-OpenSSH\r\n");
    let mut bad_ws = WsClient::connect(gateway.ws_addr());
    let bad_ws_id = journal.conn_of(local(&bad_ws.stream));
    bad_ws.send_raw(&WsClient::unmasked_frame(OpCode::Binary, true, b"bare"));
    assert_eq!(bad_ws.expect_close(), Some(CloseCode::PROTOCOL_ERROR));
    bad.read_until_closed(Duration::from_secs(2));

    assert!(
        matches!(journal.disconnect_of(bad_id), Disconnect::Protocol(_)),
        "{:?}",
        journal.disconnect_of(bad_id)
    );
    assert!(
        matches!(journal.disconnect_of(bad_ws_id), Disconnect::Protocol(_)),
        "{:?}",
        journal.disconnect_of(bad_ws_id)
    );

    idle.read_until_closed(Duration::from_secs(3));
    idle_ws.read_until_closed(Duration::from_secs(3));
    assert_eq!(journal.disconnect_of(idle_id), Disconnect::ReadTimeout);
    assert_eq!(journal.disconnect_of(idle_ws_id), Disconnect::ReadTimeout);

    gateway.wait_for_open_connections(0, Duration::from_secs(3));
    journal.assert_one_disconnect_per_open();
}

#[test]
fn a_push_from_another_thread_reaches_the_client() {
    let (gateway, journal) = start(test_config());
    let mut tcp = TcpClient::connect(gateway.tcp_addr());
    let mut ws = WsClient::connect(gateway.ws_addr());
    let tcp_id = journal.conn_of(local(&tcp.stream));
    let ws_id = journal.conn_of(local(&ws.stream));

    let handle = gateway.handle();
    let pusher = std::thread::spawn(move || {
        for i in 0..3u8 {
            handle.push(tcp_id, Bytes::from(packet(7, &[i])));
            handle.push(ws_id, Bytes::from(packet(8, &[i])));
        }
    });
    pusher.join().expect("the pushing thread");
    for i in 0..3u8 {
        assert_eq!(&tcp.read_packet()[..], &packet(7, &[i])[..]);
        assert_eq!(
            ws.read_message(),
            ws::Message::Binary(Bytes::from(packet(8, &[i])))
        );
    }
}

#[test]
fn a_stale_conn_id_never_reaches_the_connection_that_reuses_its_slot() {
    // One reactor, so the second connection lands in the slot the first one freed.
    let (gateway, journal) = start(GatewayConfig {
        workers: 1,
        ..test_config()
    });
    let handle = gateway.handle();

    let first = TcpClient::connect(gateway.tcp_addr());
    let old = journal.conn_of(local(&first.stream));
    drop(first);
    journal.disconnect_of(old);
    gateway.wait_for_open_connections(0, Duration::from_secs(3));

    let mut second = TcpClient::connect(gateway.tcp_addr());
    let new = journal.conn_of(local(&second.stream));
    assert_eq!(
        (new.reactor(), new.key()),
        (old.reactor(), old.key()),
        "the test needs the slot reused"
    );
    assert_ne!(new, old, "a reused slot must get a new generation");

    // Same inbox, so if the stale push were delivered it would arrive first.
    handle.push(old, Bytes::from(packet(66, b"for the old connection")));
    handle.close(old, CloseCode::NORMAL);
    handle.push(new, Bytes::from(packet(77, b"for the new connection")));
    assert_eq!(
        &second.read_packet()[..],
        &packet(77, b"for the new connection")[..]
    );
    second.echo(ECHO, b"still open after the stale close");
    assert_eq!(gateway.open_connections(), 1);
}

#[test]
fn outbox_close_sends_what_was_pushed_then_closes_with_the_given_code() {
    let (gateway, journal) = start(test_config());
    let mut ws = WsClient::connect(gateway.ws_addr());
    let ws_id = journal.conn_of(local(&ws.stream));
    let request = packet(CLOSE_4000, b"last words");
    ws.send_frame(OpCode::Binary, true, &request);
    assert_eq!(ws.read_message(), ws::Message::Binary(Bytes::from(request)));
    assert_eq!(ws.read_close(), Some(CloseCode(4000)));
    ws.send_close(CloseCode(4000)); // answer, completing the closing handshake
    let ending = ws.read_until_closed(Duration::from_secs(2));
    assert_eq!(ending.how, Closed::Eof);
    assert_eq!(
        journal.disconnect_of(ws_id),
        Disconnect::ClosedByServer(CloseCode(4000))
    );

    let mut tcp = TcpClient::connect(gateway.tcp_addr());
    let tcp_id = journal.conn_of(local(&tcp.stream));
    tcp.send_packet(CLOSE_4000, b"last words");
    assert_eq!(
        &tcp.read_packet()[..],
        &packet(CLOSE_4000, b"last words")[..]
    );
    let ending = tcp.read_until_closed(Duration::from_secs(2));
    assert_eq!(ending.how, Closed::Eof);
    assert_eq!(
        journal.disconnect_of(tcp_id),
        Disconnect::ClosedByServer(CloseCode(4000))
    );
    gateway.wait_for_open_connections(0, Duration::from_secs(3));
    journal.assert_one_disconnect_per_open();
}

#[test]
fn a_handler_panic_closes_only_its_connection() {
    let (gateway, journal) = start(test_config());
    let mut ws_bystander = WsClient::connect(gateway.ws_addr());
    let mut tcp_bystander = TcpClient::connect(gateway.tcp_addr());

    let mut ws = WsClient::connect(gateway.ws_addr());
    let ws_id = journal.conn_of(local(&ws.stream));
    ws.send_frame(OpCode::Binary, true, &packet(PANIC, b"boom"));
    assert_eq!(ws.expect_close(), Some(CloseCode::INTERNAL_ERROR));
    assert_eq!(journal.disconnect_of(ws_id), Disconnect::HandlerPanic);

    let mut tcp = TcpClient::connect(gateway.tcp_addr());
    let tcp_id = journal.conn_of(local(&tcp.stream));
    tcp.send_packet(PANIC, b"boom");
    let ending = tcp.read_until_closed(Duration::from_secs(2));
    assert_eq!(
        ending.discarded, 0,
        "nothing is echoed for the panicking message"
    );
    assert_eq!(journal.disconnect_of(tcp_id), Disconnect::HandlerPanic);

    ws_bystander.echo_binary(&packet(ECHO, b"unharmed"));
    tcp_bystander.echo(ECHO, b"unharmed");
    WsClient::connect(gateway.ws_addr()).echo_binary(&packet(ECHO, b"later"));
    TcpClient::connect(gateway.tcp_addr()).echo(ECHO, b"later");
}

/// Relays every message to every other connection: pushes cross reactors through their
/// inboxes, as a group chat's fan-out will.
struct Relay {
    members: Arc<Mutex<Vec<ConnId>>>,
}

impl Handler for Relay {
    fn open(&mut self, _out: &mut Outbox<'_>, conn: ConnId, _info: &ConnInfo<'_>) -> Admission {
        self.members.lock().unwrap().push(conn);
        Admission::ACCEPT
    }

    fn message(&mut self, out: &mut Outbox<'_>, conn: ConnId, message: Message) {
        let members = self.members.lock().unwrap().clone();
        for other in members.into_iter().filter(|&m| m != conn) {
            out.push(other, message.payload().clone());
        }
    }

    fn disconnect(&mut self, _out: &mut Outbox<'_>, conn: ConnId, _reason: &Disconnect) {
        self.members.lock().unwrap().retain(|&m| m != conn);
    }
}

#[test]
fn pushes_across_reactors_reach_every_connection() {
    let members = Arc::new(Mutex::new(Vec::new()));
    let for_handlers = members.clone();
    let gateway = TestGateway::start(test_config(), move |_, _| Relay {
        members: for_handlers.clone(),
    });
    let mut tcp: Vec<TcpClient> = (0..10)
        .map(|_| TcpClient::connect(gateway.tcp_addr()))
        .collect();
    let mut ws: Vec<WsClient> = (0..10)
        .map(|_| WsClient::connect(gateway.ws_addr()))
        .collect();
    let all_in = wait_until(Duration::from_secs(2), || {
        members.lock().unwrap().len() == 20
    });
    assert!(all_in, "{} members", members.lock().unwrap().len());
    let reactors: std::collections::BTreeSet<usize> = members
        .lock()
        .unwrap()
        .iter()
        .map(|m| m.reactor())
        .collect();
    assert_eq!(reactors.len(), 2, "the members must span both reactors");

    for (i, client) in tcp.iter_mut().enumerate() {
        client.send_packet(i as u16, b"from tcp");
    }
    for (i, client) in ws.iter_mut().enumerate() {
        client.send_frame(OpCode::Binary, true, &packet(100 + i as u16, b"from ws"));
    }
    let everyone: std::collections::BTreeSet<u16> = (0..10).chain(100..110).collect();
    let command = |packet: &[u8]| u16::from_be_bytes([packet[4], packet[5]]);
    for (i, client) in tcp.iter_mut().enumerate() {
        let got: std::collections::BTreeSet<u16> =
            (0..19).map(|_| command(&client.read_packet())).collect();
        let mut want = everyone.clone();
        want.remove(&(i as u16));
        assert_eq!(got, want, "TCP client {i}");
    }
    for (i, client) in ws.iter_mut().enumerate() {
        let got: std::collections::BTreeSet<u16> = (0..19)
            .map(|_| match client.read_message() {
                ws::Message::Binary(payload) => command(&payload),
                other => panic!("WebSocket client {i} got {other:?}"),
            })
            .collect();
        let mut want = everyone.clone();
        want.remove(&(100 + i as u16));
        assert_eq!(got, want, "WebSocket client {i}");
    }
}

#[test]
fn pushes_and_closes_after_shutdown_are_dropped_quietly() {
    let (gateway, journal) = start(test_config());
    let mut client = TcpClient::connect(gateway.tcp_addr());
    let id = journal.conn_of(local(&client.stream));
    let handle = gateway.handle();
    drop(gateway); // drains and joins the reactors
    let ending = client.read_until_closed(Duration::from_secs(3));
    assert_eq!(ending.how, Closed::Eof);
    assert_eq!(journal.disconnect_of(id), Disconnect::Shutdown);
    // The reactors are gone: nothing to deliver to, and nothing may panic.
    handle.push(id, Bytes::from(packet(ECHO, b"too late")));
    handle.close(id, CloseCode::NORMAL);
    handle.shutdown();
}

/// Does its work in `poll` (as the chat server's logic core on the reactor's thread does):
/// echoes each message `delay` after it came, and pushes what another thread left in its
/// mailbox to every connection (that thread then wakes the reactor). Counts its polls.
struct Poller {
    delay: Duration,
    due: Vec<(std::time::Instant, ConnId, Message)>,
    conns: Vec<ConnId>,
    mailbox: Mailbox,
    polls: Arc<std::sync::atomic::AtomicUsize>,
}

impl Handler for Poller {
    fn open(&mut self, _out: &mut Outbox<'_>, conn: ConnId, _info: &ConnInfo<'_>) -> Admission {
        self.conns.push(conn);
        Admission::ACCEPT
    }

    fn message(&mut self, _out: &mut Outbox<'_>, conn: ConnId, message: Message) {
        self.due
            .push((std::time::Instant::now() + self.delay, conn, message));
    }

    fn disconnect(&mut self, _out: &mut Outbox<'_>, _conn: ConnId, _reason: &Disconnect) {}

    fn poll(&mut self, out: &mut Outbox<'_>) -> Option<Duration> {
        self.polls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        for payload in self.mailbox.lock().unwrap().drain(..) {
            for &conn in &self.conns {
                out.push(conn, payload.clone());
            }
        }
        let now = std::time::Instant::now();
        let (ready, later): (Vec<_>, Vec<_>) = self.due.drain(..).partition(|(at, ..)| *at <= now);
        self.due = later;
        for (_, conn, message) in ready {
            out.send(conn, message);
        }
        self.due.iter().map(|(at, ..)| at.duration_since(now)).min()
    }
}

type Mailbox = Arc<Mutex<Vec<Bytes>>>;

fn start_poller(delay: Duration) -> (TestGateway, Mailbox, Arc<std::sync::atomic::AtomicUsize>) {
    let mailbox = Mailbox::default();
    let polls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (for_handler, counted) = (mailbox.clone(), polls.clone());
    let config = GatewayConfig {
        workers: 1,
        ..test_config()
    };
    let gateway = TestGateway::start(config, move |_, _| Poller {
        delay,
        due: Vec::new(),
        conns: Vec::new(),
        mailbox: for_handler.clone(),
        polls: counted.clone(),
    });
    (gateway, mailbox, polls)
}

#[test]
fn a_wake_from_another_thread_polls_the_handler_whose_pushes_go_out_in_that_pass() {
    let (gateway, mailbox, polls) = start_poller(Duration::ZERO);
    let mut tcp = TcpClient::connect(gateway.tcp_addr());
    tcp.echo(ECHO, b"hello"); // echoed by the poll of the pass that read it
                              // Nothing else happens on this gateway: only the wake makes the reactor look.
    std::thread::sleep(Duration::from_millis(100));
    let before = polls.load(std::sync::atomic::Ordering::SeqCst);
    mailbox
        .lock()
        .unwrap()
        .push(Bytes::from(packet(9, b"from elsewhere")));
    gateway.handle().wake(0);
    assert_eq!(&tcp.read_packet()[..], &packet(9, b"from elsewhere")[..]);
    assert!(polls.load(std::sync::atomic::Ordering::SeqCst) > before);
}

#[test]
fn the_reactor_waits_no_longer_than_the_handler_asks() {
    let delay = Duration::from_millis(300);
    let (gateway, _mailbox, _polls) = start_poller(delay);
    let mut tcp = TcpClient::connect(gateway.tcp_addr());
    let sent = std::time::Instant::now();
    tcp.send_packet(ECHO, b"later");
    // No other traffic and no timer of the gateway's own for a long while: only the wait
    // the handler asked for brings the reactor back in time.
    assert_eq!(&tcp.read_packet()[..], &packet(ECHO, b"later")[..]);
    let took = sent.elapsed();
    assert!(
        took >= delay,
        "echoed after {took:?}, before the handler's delay"
    );
    assert!(
        took < Duration::from_secs(3),
        "echoed only after {took:?}: the reactor slept past the handler's wait"
    );
}
