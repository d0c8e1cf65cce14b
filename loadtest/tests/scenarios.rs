//! The load generator against in-process servers on 127.0.0.1: `switchboard`'s gateway with
//! the echo handler (idle and echo, WebSocket and framed TCP), the chat server (chat, group),
//! and targets that refuse, drop or close connections. Every run is 2 s and stops by itself.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use switchboard::echo::EchoHandler;
use switchboard::gateway::{Gateway, GatewayConfig};
use switchboard::logic::LogicConfig;
use switchboard::serve::{ChatServer, StoreConfigPatch};
use switchboard_codec::ws::{
    FrameEncoder, Message, MessageReader, OpCode, ReaderConfig, Server, ServerHandshake,
};
use switchboard_codec::Decoded;
use switchboard_loadtest::pacer::Arrivals;
use switchboard_loadtest::{run, RunConfig, Scenario, Summary, Target};

const SECRET: &[u8] = b"loadtest-test-secret";

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn gateway_config() -> GatewayConfig {
    GatewayConfig {
        tcp: Some(loopback()),
        ws: Some(loopback()),
        workers: 1,
        drain_timeout: Duration::from_secs(1),
        close_linger: Duration::from_millis(100),
        ..GatewayConfig::default()
    }
}

fn echo_gateway() -> Gateway {
    Gateway::start(gateway_config(), |_, _| EchoHandler).expect("the echo gateway starts")
}

fn config(scenario: Scenario, target: &str, conns: usize) -> RunConfig {
    let mut c = RunConfig::new(scenario, Target::parse(target).unwrap());
    c.conns = conns;
    c.duration = Duration::from_secs(2);
    // A whole second for answers in flight: lost must be 0 even on a busy shared machine.
    c.drain = Duration::from_secs(1);
    c.heartbeat = Duration::from_millis(200);
    c.source_ips = switchboard_loadtest::parse_source_ips("127.0.0.1-127.0.0.4").unwrap();
    c.server_pid = Some(std::process::id());
    c
}

fn assert_clean(s: &Summary, conns: u64) {
    assert_eq!(s.connected, conns, "failed: {:?}", s.failed);
    assert!(s.failed.is_empty(), "{:?}", s.failed);
    assert_eq!(s.lost, 0, "sent {} received {}", s.sent, s.received);
    assert!(s.received > 0);
    assert!(!s.latency.is_empty());
    let json = s.to_json();
    assert!(json["latency_us"]["p99"].as_u64().unwrap() > 0);
    assert!(json["server_rss_bytes"].as_u64().unwrap() > 0);
    assert!(s.duration_s <= 2.5, "ran {} s", s.duration_s);
}

#[test]
fn idle_over_websocket_holds_every_connection_and_heartbeats() {
    let gateway = echo_gateway();
    let target = format!("ws://{}/idle", gateway.ws_addr().unwrap());
    let summary = run(config(Scenario::Idle, &target, 300)).unwrap();
    assert_clean(&summary, 300);
    assert_eq!(summary.sent, summary.received);
    // Idle holds to the end of its duration.
    assert!(summary.duration_s >= 1.9);
    gateway.shutdown();
}

#[test]
fn idle_with_websocket_pings_logged_in_to_a_chat_server() {
    let data = tempfile::tempdir().unwrap();
    let server = chat_server(data.path());
    let target = format!("ws://{}/", server.gateway().ws_addr().unwrap());
    let mut c = config(Scenario::Idle, &target, 100);
    c.jwt_secret = Some(SECRET.to_vec());
    c.ws_ping = true;
    let summary = run(c).unwrap();
    assert_clean(&summary, 100);
    assert_eq!(summary.sent, summary.received);
    server.shutdown();
}

#[test]
fn echo_over_tcp_and_websocket_times_every_message() {
    let gateway = echo_gateway();
    let tcp = format!("tcp://{}", gateway.tcp_addr().unwrap());
    let mut c = config(Scenario::Echo, &tcp, 200);
    c.inflight = 4;
    let summary = run(c).unwrap();
    assert_clean(&summary, 200);
    assert!(summary.msgs_per_sec() > 0.0);
    // The "server" is this test process: its reactor thread shows up by name, and no part of
    // the CPU time is larger than the whole (to a clock tick of rounding).
    let total = summary.server_cpu_s.expect("sampled");
    let user = summary.server_user_cpu_s.expect("sampled");
    assert!(
        (0.0..=total + 0.011).contains(&user),
        "user {user} of {total}"
    );
    let threads = &summary.server_threads_cpu_s;
    assert!(
        threads.iter().any(|(name, _)| name == "reactor-0"),
        "{threads:?}"
    );
    let sum: f64 = threads.iter().map(|(_, cpu)| cpu).sum();
    assert!(
        sum <= total + 0.011 * threads.len() as f64,
        "{threads:?} vs {total}"
    );
    assert!(summary.to_json()["server_threads_cpu_s"]["reactor-0"].is_number());

    let ws = format!("ws://{}/", gateway.ws_addr().unwrap());
    let mut c = config(Scenario::Echo, &ws, 100);
    c.size = 1024;
    c.rate = 2_000.0;
    let summary = run(c).unwrap();
    assert_clean(&summary, 100);
    // Paced: at most 2,000/s over the (at most) 1 s of sending.
    assert!(
        (200..=2_500).contains(&summary.sent),
        "sent {}",
        summary.sent
    );
    // Random (Poisson) times by default; the old evenly owed bunches on request. Both keep the
    // rate: the same window sends about as many.
    assert_eq!(default_arrivals(&ws), Arrivals::Poisson);
    let mut c = config(Scenario::Echo, &ws, 100);
    c.rate = 2_000.0;
    c.arrivals = Arrivals::Even;
    let even = run(c).unwrap();
    assert_clean(&even, 100);
    let ratio = summary.sent as f64 / even.sent as f64;
    assert!(
        (0.75..1.33).contains(&ratio),
        "poisson {} even {}",
        summary.sent,
        even.sent
    );
    gateway.shutdown();
}

fn default_arrivals(target: &str) -> Arrivals {
    config(Scenario::Echo, target, 1).arrivals
}

fn chat_server(data: &std::path::Path) -> ChatServer {
    let logic = LogicConfig {
        jwt_secret: SECRET.to_vec(),
        ..LogicConfig::default()
    };
    ChatServer::start(
        gateway_config(),
        logic,
        data.to_path_buf(),
        StoreConfigPatch::default(),
    )
    .expect("the chat server starts")
}

#[test]
fn chat_and_group_deliver_every_message_to_its_recipients() {
    let data = tempfile::tempdir().unwrap();
    let server = chat_server(data.path());
    let tcp = format!("tcp://{}", server.gateway().tcp_addr().unwrap());
    let mut c = config(Scenario::Chat, &tcp, 100);
    c.jwt_secret = Some(SECRET.to_vec());
    c.rate = 1_000.0;
    let summary = run(c).unwrap();
    assert_clean(&summary, 100);

    let ws = format!("ws://{}/", server.gateway().ws_addr().unwrap());
    let mut c = config(Scenario::Group, &ws, 60);
    c.jwt_secret = Some(SECRET.to_vec());
    c.group_size = 20;
    c.rate = 200.0;
    c.user_prefix = "g".into();
    let summary = run(c).unwrap();
    assert_clean(&summary, 60);
    // Every group message reaches the group's 19 other members.
    assert_eq!(summary.received, summary.sent * 19);
    server.shutdown();
}

#[test]
fn a_refusing_target_is_counted_and_never_hangs() {
    let addr = TcpListener::bind(loopback()).unwrap().local_addr().unwrap();
    // The listener is closed: every connect is refused.
    let started = Instant::now();
    let mut c = config(Scenario::Echo, &format!("tcp://{addr}"), 50);
    c.server_pid = None;
    let summary = run(c).unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(summary.connected, 0);
    assert_eq!(summary.failed.get("refused"), Some(&50));
}

#[test]
fn a_target_that_drops_connections_is_counted_by_kind() {
    let listener = TcpListener::bind(loopback()).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        // Accepts and closes at once, for as long as the test process lives.
        for stream in listener.incoming() {
            drop(stream);
        }
    });
    let started = Instant::now();
    let mut c = config(Scenario::Idle, &format!("ws://{addr}/"), 40);
    c.server_pid = None;
    let summary = run(c).unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(summary.connected, 0);
    let failed: u64 = summary.failed.values().sum();
    assert_eq!(failed, 40, "{:?}", summary.failed);
}

/// A WebSocket target's side of one connection: accepts the upgrade, and with `close_at_once`
/// sends a close (1001) behind its 101. Returns whether the client sent a close frame, or bytes
/// that are not WebSocket, before the stream ended.
fn serve_ws(mut stream: TcpStream, close_at_once: bool) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut input = BytesMut::new();
    let mut chunk = [0u8; 4096];
    let mut read_more = |stream: &mut TcpStream, input: &mut BytesMut| match stream.read(&mut chunk)
    {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            input.extend_from_slice(&chunk[..n]);
            true
        }
    };
    let mut handshake = ServerHandshake::new();
    let request = loop {
        match handshake.decode(&mut input) {
            Ok(Decoded::Complete(request)) => break request,
            Ok(Decoded::NeedMore) if read_more(&mut stream, &mut input) => {}
            _ => return true, // not an upgrade request: stray bytes before it
        }
    };
    let mut answer = BytesMut::new();
    request.write_accept(None, &mut answer).unwrap();
    if close_at_once {
        FrameEncoder::<Server>::new().encode_frame(OpCode::Close, true, &[0x03, 0xe9], &mut answer);
    }
    stream.write_all(&answer).unwrap();
    let mut reader = MessageReader::<Server>::new(ReaderConfig::default());
    loop {
        match reader.read(&mut input) {
            Ok(Decoded::Complete(Message::Close(_))) | Err(_) => return true,
            Ok(Decoded::Complete(_)) => {}
            Ok(Decoded::NeedMore) if read_more(&mut stream, &mut input) => {}
            Ok(Decoded::NeedMore) => return false,
        }
    }
}

#[test]
fn a_close_is_echoed_on_its_own_connection_and_on_no_other() {
    let listener = TcpListener::bind(loopback()).unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // The first connection is closed by the target at once, the others are left alone.
        for (index, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { continue };
            let tx = tx.clone();
            std::thread::spawn(move || tx.send((index, serve_ws(stream, index == 0))));
        }
    });
    let mut c = config(Scenario::Idle, &format!("ws://{addr}/"), 4);
    c.server_pid = None;
    let summary = run(c).unwrap();
    assert_eq!(summary.connected, 4, "{:?}", summary.failed);
    assert_eq!(
        summary.failed.get("dropped_ws_close_1001"),
        Some(&1),
        "{:?}",
        summary.failed
    );
    let mut closes: Vec<(usize, bool)> = rx.iter().take(4).collect();
    closes.sort_unstable();
    assert_eq!(
        closes,
        [(0, true), (1, false), (2, false), (3, false)],
        "(connection, whether the client sent it a close)"
    );
}

/// `wss://` and `tls://` targets: the echo scenario over TLS against the gateway with a
/// certificate made for the test (for 127.0.0.1), trusted through `RunConfig::tls`.
#[test]
fn echo_over_wss_and_tls() {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let (cert, key, ca) = (
        dir.path().join("c.pem"),
        dir.path().join("k.pem"),
        dir.path().join("ca.pem"),
    );
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    std::fs::write(&ca, certified.cert.pem()).unwrap();
    let gateway = Gateway::start(
        GatewayConfig {
            tls: Some(switchboard::gateway::TlsAcceptor::from_pem_files(&cert, &key).unwrap()),
            ..gateway_config()
        },
        |_, _| EchoHandler,
    )
    .expect("the TLS echo gateway starts");
    for target in [
        format!("wss://{}/", gateway.ws_addr().unwrap()),
        format!("tls://{}", gateway.tcp_addr().unwrap()),
    ] {
        let mut c = config(Scenario::Echo, &target, 20);
        c.tls = Some(switchboard_loadtest::tls::trust(&ca).unwrap());
        let summary = run(c).unwrap();
        assert_clean(&summary, 20);
    }
    assert_eq!(gateway.probe().totals().tls_handshakes[0], 40);
    gateway.shutdown();
}
