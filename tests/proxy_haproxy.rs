//! A real haproxy in TCP mode in front of `switchboard serve --proxy-protocol`: `send-proxy`
//! (v1) to the framed-TCP listener, `send-proxy-v2` to the WebSocket listener, and health
//! checks that carry a header too (`check-send-proxy`). A client on 127.0.0.2 reaches the
//! server through haproxy, whose own connections come from 127.0.0.3, the one trusted address:
//! the logic core logs the client's address (its "connection opened" line at info level, the
//! `ConnInfo.peer` the chat handler passed on), and its requests are answered. The same client
//! connecting straight to the server with a header is refused, and the log names its real
//! address. Also: `--proxy-protocol` without `--trusted-proxies` refuses to start. And with
//! two nodes behind haproxy, its health checks on each node's `/readyz`: draining one node
//! (`POST /admin/drain`) sends every new connection to the other before the drained node's
//! listeners close. With TLS on both listeners (`--tls-cert`), the same haproxy in TCP mode
//! passes the client's TLS through untouched after its PROXY header: the header is read in the
//! clear before the ClientHello, the client's handshake ends at the server, and the server
//! still sees the client's own address; haproxy's header-only health checks are no failed
//! handshakes.
//!
//! haproxy comes from the Debian package (`.ci/run` installs it). Without the binary the test
//! says so and passes, unless `CI` is set: in CI it must run.

#[allow(dead_code)] // this binary uses a few of the shared helpers
#[path = "shared/mod.rs"]
mod shared;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use switchboard_codec::packet::{PacketDecoder, PacketHeader};
use switchboard_codec::ws::{self as ws, OpCode};
use switchboard_codec::Decoded;
use switchboard_protocol::command::Command as Request;

use shared::http::{get, prometheus, request};
use shared::process::{read_listeners, signal, stdout_lines, wait_exit};
use shared::socket::{configure, read_more, read_until_closed};
use shared::ws::WsClient;
use shared::IO_TIMEOUT;

/// The address haproxy's connections to the server come from (`source` in its config).
const BALANCER: [u8; 4] = [127, 0, 0, 3];
/// The address the test's clients connect from.
const CLIENT: [u8; 4] = [127, 0, 0, 2];
/// The backend API's token on the nodes.
const ADMIN_TOKEN: &str = "proxy-test-admin-token";

/// A child process killed and reaped when the test ends, however it ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn haproxy_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("haproxy"))
        .find(|candidate| candidate.is_file())
}

/// haproxy's path, or None (the test is skipped) when it is not installed; under CI (where
/// `.ci/run` installs it) a missing haproxy fails the test instead.
fn haproxy_or_skip() -> Option<PathBuf> {
    let binary = haproxy_binary();
    if binary.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "haproxy is not installed, and CI must run this test (.ci/run installs it)"
        );
        eprintln!("SKIPPED: no haproxy binary (apt-get install haproxy); CI is not set");
    }
    binary
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// A stream from `CLIENT` to `to`, with the test timeouts.
fn connect_from_client(to: SocketAddr) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("a socket");
    socket
        .bind(&SocketAddr::from((CLIENT, 0)).into())
        .expect("bind 127.0.0.2");
    socket.connect(&to.into()).expect("connect");
    let stream: TcpStream = socket.into();
    configure(&stream);
    stream
}

/// `switchboard serve` on free loopback ports with JSON logs at info level on a channel.
struct Server {
    child: Reaped,
    tcp: SocketAddr,
    ws: SocketAddr,
    admin: SocketAddr,
    log: mpsc::Receiver<String>,
    _data: tempfile::TempDir,
}

impl Server {
    fn start(trusted: &str) -> Server {
        Server::start_with(trusted, &["--drain-grace", "0s"])
    }

    fn start_with(trusted: &str, args: &[&str]) -> Server {
        let data = tempfile::tempdir().expect("a data directory");
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["serve", "--ws", "127.0.0.1:0", "--tcp", "127.0.0.1:0"])
            .args(["--admin", "127.0.0.1:0"])
            .args(["--proxy-protocol", "--trusted-proxies", trusted])
            .args(["--log-format", "json", "--data"])
            .arg(data.path())
            .args(args)
            .env("SWITCHBOARD_JWT_SECRET", "proxy-test-secret")
            .env("SWITCHBOARD_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn switchboard serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let (log_tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if log_tx.send(line).is_err() {
                    return;
                }
            }
        });
        let lines = stdout_lines(&mut child);
        let listeners = read_listeners(&lines, "serve", &["data in "]);
        Server {
            child: Reaped(child),
            tcp: listeners.tcp,
            ws: listeners.ws,
            admin: listeners.admin.expect("an admin listener"),
            log,
            _data: data,
        }
    }

    /// The first log line holding every one of `parts`; panics after five seconds.
    fn expect_log(&self, parts: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(line) = self.log.recv_timeout(left) else {
                break;
            };
            if parts.iter().all(|part| line.contains(part)) {
                eprintln!("log: {line}");
                return line;
            }
            seen.push(line);
        }
        panic!("no log line with {parts:?}; the log:\n{}", seen.join("\n"));
    }

    fn stop(mut self) {
        signal(&self.child.0, libc::SIGTERM);
        let status = wait_exit(&mut self.child.0, Duration::from_secs(10));
        assert!(status.success(), "serve exited with {status}");
    }
}

/// haproxy in TCP mode: `tcp_front` to the server's framed-TCP listener with a v1 header,
/// `ws_front` to its WebSocket listener with a v2 header.
fn start_haproxy(
    binary: &PathBuf,
    server: &Server,
    dir: &std::path::Path,
) -> (Reaped, SocketAddr, SocketAddr) {
    let tcp_front = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let ws_front = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let balancer = std::net::Ipv4Addr::from(BALANCER);
    let config = format!(
        "global\n    maxconn 200\n\
         defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 20s\n    timeout server 20s\n\
         frontend tcp_front\n    bind {tcp_front}\n    default_backend tcp_back\n\
         backend tcp_back\n    server node1 {} send-proxy source {balancer} check inter 300ms check-send-proxy\n\
         frontend ws_front\n    bind {ws_front}\n    default_backend ws_back\n\
         backend ws_back\n    server node1 {} send-proxy-v2 source {balancer} check inter 300ms check-send-proxy\n",
        server.tcp, server.ws
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, config).expect("write haproxy.cfg");
    let check = Command::new(binary)
        .args(["-c", "-f"])
        .arg(&path)
        .output()
        .expect("run haproxy -c");
    assert!(
        check.status.success(),
        "haproxy refuses the generated config: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let child = Command::new(binary)
        .args(["-db", "-f"])
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn haproxy");
    let haproxy = Reaped(child);
    for front in [tcp_front, ws_front] {
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(front).is_err() {
            assert!(
                Instant::now() < deadline,
                "haproxy does not listen on {front}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    (haproxy, tcp_front, ws_front)
}

/// A PING before LOGIN: answered (NOT_LOGGED_IN) by the logic core, under PING's response code.
fn ping_packet() -> Vec<u8> {
    let mut bytes = BytesMut::new();
    switchboard_protocol::Request::Ping
        .encode(1, &mut bytes)
        .expect("encode PING");
    bytes.to_vec()
}

fn response_command(packet: &[u8]) -> u16 {
    match PacketHeader::parse(packet, u32::MAX) {
        Ok(Decoded::Complete(header)) => header.command,
        other => panic!("not a packet: {other:?}"),
    }
}

#[test]
fn haproxy_clients_are_seen_with_their_own_address() {
    let Some(binary) = haproxy_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().expect("a directory for haproxy.cfg");
    let server = Server::start(&std::net::Ipv4Addr::from(BALANCER).to_string());
    let (haproxy, tcp_front, ws_front) = start_haproxy(&binary, &server, dir.path());

    // Framed TCP through haproxy's v1 header.
    let client = ping_through(tcp_front);
    server.expect_log(&["connection opened", &format!("\"peer\":\"{client}\"")]);

    // WebSocket through haproxy's v2 header.
    let stream = connect_from_client(ws_front);
    let client = stream.local_addr().expect("local address");
    let mut ws = WsClient::handshake(stream, ws_front);
    ws.send_frame(OpCode::Binary, true, &ping_packet());
    match ws.read_message() {
        ws::Message::Binary(packet) => {
            assert_eq!(response_command(&packet), Request::Ping.response_code())
        }
        other => panic!("PING answered with {other:?}"),
    }
    server.expect_log(&["connection opened", &format!("\"peer\":\"{client}\"")]);

    // The same client, straight to the server with a header of its own.
    a_header_from_an_untrusted_peer_is_refused(&server);
    drop(haproxy); // first, so its health checks do not report the server going away
    server.stop();
}

#[test]
fn proxy_protocol_without_trusted_proxies_refuses_to_start() {
    for subcommand in ["serve", "echo"] {
        let data = tempfile::tempdir().expect("a data directory");
        let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args([subcommand, "--ws", "127.0.0.1:0", "--proxy-protocol"])
            .args(if subcommand == "serve" {
                vec!["--data".to_owned(), data.path().display().to_string()]
            } else {
                vec![]
            })
            .stdin(Stdio::null())
            .output()
            .expect("run switchboard");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{subcommand}: {stderr}");
        assert!(
            stderr.contains("--proxy-protocol needs --trusted-proxies"),
            "{subcommand}: {stderr}"
        );
        assert!(output.stdout.is_empty(), "{subcommand} announced listeners");
    }
}

/// Connections a node admitted on framed TCP so far (its `/metrics`).
/// A client that sends its own PROXY header straight to the server's framed-TCP listener
/// (not through the trusted haproxy) is closed unanswered and logged with its real address.
fn a_header_from_an_untrusted_peer_is_refused(server: &Server) {
    let mut stream = connect_from_client(server.tcp);
    let client = stream.local_addr().expect("local address");
    let _ = stream.write_all(b"PROXY TCP4 198.51.100.1 192.0.2.1 1234 9000\r\n");
    let ending = read_until_closed(&mut stream, IO_TIMEOUT);
    assert_eq!(ending.discarded, 0, "answered an untrusted peer");
    server.expect_log(&[
        "not in --trusted-proxies",
        &format!("\"peer\":\"{client}\""),
    ]);
}

fn accepted(server: &Server) -> f64 {
    let page = get(server.admin, "/metrics").body;
    prometheus(&page)
        .get("switchboard_connections_accepted_total{transport=\"tcp\"}")
        .copied()
        .unwrap_or(0.0)
}

/// One connection through haproxy's framed-TCP front: a PING answered, then closed. Returns
/// the client's own address (what the server should log as the peer).
fn ping_through(front: SocketAddr) -> SocketAddr {
    let mut stream = connect_from_client(front);
    let client = stream.local_addr().expect("local address");
    stream.write_all(&ping_packet()).expect("send PING");
    let mut inbound = BytesMut::new();
    let mut decoder = PacketDecoder::new(u32::MAX);
    let answer = loop {
        match decoder.decode_raw(&mut inbound).expect("a valid packet") {
            Decoded::Complete(packet) => break packet,
            Decoded::NeedMore => read_more(&mut stream, &mut inbound),
        }
    };
    assert_eq!(response_command(&answer), Request::Ping.response_code());
    client
}

/// haproxy in TCP mode over two nodes' framed-TCP listeners (v1 header), round robin, with
/// HTTP health checks on each node's `/readyz` (its admin port) every 200 ms.
fn start_haproxy_over(
    binary: &PathBuf,
    nodes: [&Server; 2],
    dir: &std::path::Path,
) -> (Reaped, SocketAddr) {
    let front = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let balancer = std::net::Ipv4Addr::from(BALANCER);
    let mut config = format!(
        "global\n    maxconn 200\n\
         defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 20s\n    timeout server 20s\n    timeout check 1s\n\
         frontend front\n    bind {front}\n    default_backend nodes\n\
         backend nodes\n    balance roundrobin\n    option httpchk GET /readyz\n    http-check expect status 200\n"
    );
    for (i, node) in nodes.iter().enumerate() {
        config.push_str(&format!(
            "    server node{i} {} send-proxy source {balancer} check port {} inter 200ms fall 2 rise 2\n",
            node.tcp,
            node.admin.port()
        ));
    }
    let path = dir.join("haproxy-two.cfg");
    std::fs::write(&path, config).expect("write haproxy.cfg");
    let child = Command::new(binary)
        .args(["-db", "-f"])
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn haproxy");
    let haproxy = Reaped(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(front).is_err() {
        assert!(
            Instant::now() < deadline,
            "haproxy does not listen on {front}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (haproxy, front)
}

#[test]
fn haproxy_stops_routing_to_a_draining_node_before_its_listeners_close() {
    const GRACE: Duration = Duration::from_secs(4);
    let Some(binary) = haproxy_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().expect("a directory for haproxy.cfg");
    let trusted = std::net::Ipv4Addr::from(BALANCER).to_string();
    let drain = ["--drain-grace", "4s", "--drain-period", "1s"];
    let nodes = [
        Server::start_with(&trusted, &drain),
        Server::start_with(&trusted, &drain),
    ];
    let (haproxy, front) = start_haproxy_over(&binary, [&nodes[0], &nodes[1]], dir.path());

    // Both nodes take connections once haproxy's checks found them up.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        ping_through(front);
        if nodes.iter().all(|node| accepted(node) >= 2.0) {
            break;
        }
        assert!(Instant::now() < deadline, "haproxy never used both nodes");
        std::thread::sleep(Duration::from_millis(50));
    }

    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let drained = request(
        nodes[0].admin,
        "POST",
        "/admin/drain",
        &[("Authorization", &bearer)],
        b"",
    );
    let drain_at = Instant::now();
    assert_eq!(drained.status, 202, "{}", drained.body);
    // haproxy sees /readyz fail twice 200 ms apart and takes the node out.
    std::thread::sleep(Duration::from_millis(1500));
    let before = [accepted(&nodes[0]), accepted(&nodes[1])];
    const AFTER: usize = 20;
    for _ in 0..AFTER {
        ping_through(front);
    }
    let after = [accepted(&nodes[0]), accepted(&nodes[1])];
    // The drained node's listener is still open now: it was not closing that kept clients away.
    let still_listening = TcpStream::connect(nodes[0].tcp).is_ok();
    let checked_at = drain_at.elapsed();
    assert!(checked_at < GRACE, "the check took until {checked_at:?}");
    assert!(
        still_listening,
        "the draining node closed its listener within the grace"
    );
    assert_eq!(
        after[0], before[0],
        "haproxy still sent connections to the draining node"
    );
    assert_eq!(after[1] - before[1], AFTER as f64, "connections lost");

    // After the grace the drained node refuses connections; the other still serves.
    std::thread::sleep(GRACE.saturating_sub(drain_at.elapsed()) + Duration::from_millis(500));
    let refused = TcpStream::connect(nodes[0].tcp).err().map(|e| e.kind());
    assert_eq!(refused, Some(std::io::ErrorKind::ConnectionRefused));
    ping_through(front);
    drop(haproxy);
    let [mut first, second] = nodes;
    // Empty, the drained node exits by itself once its listeners closed.
    let status = wait_exit(&mut first.child.0, Duration::from_secs(10));
    assert!(status.success(), "the drained node exited with {status}");
    second.stop();
}

/// A rustls client of a certificate made for the test (rcgen), trusting only it.
fn tls_client_config(cert: &rcgen::CertifiedKey) -> std::sync::Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).expect("a CA");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    std::sync::Arc::new(config)
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS session from `CLIENT` through `front`, its handshake finished.
fn tls_from_client(front: SocketAddr, config: &std::sync::Arc<rustls::ClientConfig>) -> TlsStream {
    let stream = connect_from_client(front);
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("a name");
    let conn = rustls::ClientConnection::new(config.clone(), name).expect("a client session");
    let mut tls = rustls::StreamOwned::new(conn, stream);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .expect("the TLS handshake through haproxy");
    }
    tls
}

fn read_exact_tls(tls: &mut TlsStream, len: usize) -> Vec<u8> {
    let mut got = vec![0; len];
    std::io::Read::read_exact(tls, &mut got).expect("read over TLS");
    got
}

#[test]
fn haproxy_in_front_of_tls_passes_the_client_address_and_its_handshake() {
    let Some(binary) = haproxy_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().expect("a directory for haproxy.cfg and the certificate");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("rcgen");
    let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let server = Server::start_with(
        &std::net::Ipv4Addr::from(BALANCER).to_string(),
        &[
            "--drain-grace",
            "0s",
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
        ],
    );
    let (haproxy, tcp_front, ws_front) = start_haproxy(&binary, &server, dir.path());
    let config = tls_client_config(&cert);

    // TLS-framed TCP through haproxy's v1 header: a PING answered by the logic core.
    let mut tls = tls_from_client(tcp_front, &config);
    let client = tls.sock.local_addr().expect("local address");
    let ping = ping_packet();
    tls.write_all(&ping).expect("send PING");
    let head = read_exact_tls(&mut tls, switchboard_codec::packet::HEADER_LEN);
    assert_eq!(response_command(&head), Request::Ping.response_code());
    server.expect_log(&["connection opened", &format!("\"peer\":\"{client}\"")]);

    // wss:// through haproxy's v2 header: the upgrade, then a PING in a binary message.
    let mut tls = tls_from_client(ws_front, &config);
    let client = tls.sock.local_addr().expect("local address");
    let upgrade =
        "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    tls.write_all(upgrade.as_bytes()).expect("send the upgrade");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.extend(read_exact_tls(&mut tls, 1));
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mask = [7u8, 1, 3, 5];
    let mut frame = vec![0x82, 0x80 | ping.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(ping.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    tls.write_all(&frame).expect("send the PING frame");
    let frame_head = read_exact_tls(&mut tls, 2);
    assert_eq!(frame_head[0], 0x82, "a binary message");
    let answer = read_exact_tls(&mut tls, usize::from(frame_head[1] & 0x7f));
    assert_eq!(response_command(&answer), Request::Ping.response_code());
    server.expect_log(&["connection opened", &format!("\"peer\":\"{client}\"")]);

    // The client straight to the TLS listener with a header of its own: refused before any TLS.
    a_header_from_an_untrusted_peer_is_refused(&server);

    // Two handshakes done; haproxy's checks (a header, then a close: no TLS byte) failed none.
    let page = get(server.admin, "/metrics").body;
    let metrics = prometheus(&page);
    let handshakes = |result: &str| {
        metrics
            .get(&format!(
                "switchboard_tls_handshakes_total{{result=\"{result}\"}}"
            ))
            .copied()
            .unwrap_or(0.0)
    };
    assert_eq!(handshakes("ok"), 2.0, "{page}");
    assert_eq!(handshakes("failed"), 0.0, "{page}");
    drop(haproxy);
    server.stop();
}
