//! TLS on both listeners, over real loopback sockets, with a certificate each test generates
//! (rcgen) and rustls as the client: framed TCP and WebSocket echo over TLS 1.3 and 1.2,
//! records cut at every byte, session resumption, a PROXY header before the ClientHello, the
//! handshake deadline, garbage instead of TLS, and a certificate reload that new handshakes
//! see while open connections stay.

mod common;

use common::process::EchoProcess;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::Resumption;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, HandshakeKind, RootCertStore, StreamOwned};
use switchboard::gateway::{GatewayConfig, TlsAcceptor, TrustedProxies};

use common::{packet, pattern, test_config, wait_until, TestGateway};

/// A self-signed certificate for `localhost`, written as PEM files into `dir` under `name`.
struct TestCert {
    der: CertificateDer<'static>,
    cert_path: std::path::PathBuf,
    key_path: std::path::PathBuf,
}

fn make_cert(dir: &Path, name: &str) -> TestCert {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("rcgen");
    let cert_path = dir.join(format!("{name}.crt"));
    let key_path = dir.join(format!("{name}.key"));
    std::fs::write(&cert_path, certified.cert.pem()).unwrap();
    std::fs::write(&key_path, certified.key_pair.serialize_pem()).unwrap();
    TestCert {
        der: certified.cert.der().clone(),
        cert_path,
        key_path,
    }
}

fn tls_config(cert: &TestCert) -> GatewayConfig {
    let acceptor = TlsAcceptor::from_pem_files(&cert.cert_path, &cert.key_path).expect("loads");
    GatewayConfig {
        tls: Some(acceptor),
        handshake_timeout: Duration::from_secs(2),
        ..test_config()
    }
}

fn client_config(
    cert: &TestCert,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(cert.der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = Resumption::in_memory_sessions(16);
    Arc::new(config)
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

fn connect_tls(addr: SocketAddr, config: &Arc<ClientConfig>) -> Tls {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(config.clone(), name).unwrap();
    let mut tls = StreamOwned::new(conn, stream);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).expect("TLS handshake");
    }
    tls
}

fn read_exact(tls: &mut Tls, len: usize) -> Vec<u8> {
    let mut got = vec![0; len];
    tls.read_exact(&mut got).expect("read over TLS");
    got
}

fn echo_packet(tls: &mut Tls, payload: &[u8]) {
    let sent = packet(7, payload);
    tls.write_all(&sent).unwrap();
    tls.flush().unwrap();
    assert_eq!(read_exact(tls, sent.len()), sent, "echo over TLS differs");
}

/// The upgrade over TLS, then one masked binary frame each way.
fn ws_echo(tls: &mut Tls, addr: SocketAddr, payload: &[u8]) {
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tls.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.extend(read_exact(tls, 1));
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    assert!(payload.len() < 126);
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x82, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    tls.write_all(&frame).unwrap();
    let header = read_exact(tls, 2);
    assert_eq!(header, [0x82, payload.len() as u8]);
    assert_eq!(read_exact(tls, payload.len()), payload);
}

fn tls_handshakes(gateway: &TestGateway) -> [u64; 2] {
    gateway.probe().totals().tls_handshakes
}

#[test]
fn framed_tcp_and_websocket_echo_over_tls_1_3_and_1_2() {
    let dir = tempfile::tempdir().unwrap();
    let cert = make_cert(dir.path(), "a");
    let gateway = TestGateway::echo(tls_config(&cert));
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let config = client_config(&cert, &[version]);
        let mut tcp = connect_tls(gateway.tcp_addr(), &config);
        assert_eq!(tcp.conn.protocol_version(), Some(version.version));
        echo_packet(&mut tcp, b"hello over tls");
        // Larger than one record (16 KiB): several records each way.
        echo_packet(&mut tcp, &pattern(100_000, 3));
        let mut ws = connect_tls(gateway.ws_addr(), &config);
        ws_echo(&mut ws, gateway.ws_addr(), b"hello over wss");
    }
    assert!(wait_until(Duration::from_secs(2), || tls_handshakes(
        &gateway
    )[0] == 4));
    assert_eq!(tls_handshakes(&gateway), [4, 0]);
}

#[test]
fn records_cut_at_every_byte_still_decrypt() {
    let dir = tempfile::tempdir().unwrap();
    let cert = make_cert(dir.path(), "a");
    let gateway = TestGateway::echo(tls_config(&cert));
    let config = client_config(&cert, &[&rustls::version::TLS13]);
    let mut tls = connect_tls(gateway.tcp_addr(), &config);
    // Encrypt one packet, then write its records a byte at a time.
    let sent = packet(9, &pattern(300, 5));
    tls.conn.writer().write_all(&sent).unwrap();
    let mut records = Vec::new();
    while tls.conn.wants_write() {
        tls.conn.write_tls(&mut records).unwrap();
    }
    for byte in &records {
        tls.sock.write_all(std::slice::from_ref(byte)).unwrap();
        std::thread::sleep(Duration::from_micros(200));
    }
    assert_eq!(read_exact(&mut tls, sent.len()), sent);
}

#[test]
fn a_second_connection_resumes_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let cert = make_cert(dir.path(), "a");
    let gateway = TestGateway::echo(tls_config(&cert));
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let config = client_config(&cert, &[version]);
        let mut first = connect_tls(gateway.tcp_addr(), &config);
        // TLS 1.3 tickets come after the handshake: an echo makes sure the client read them.
        echo_packet(&mut first, b"first");
        assert_eq!(first.conn.handshake_kind(), Some(HandshakeKind::Full));
        let mut second = connect_tls(gateway.tcp_addr(), &config);
        echo_packet(&mut second, b"second");
        assert_eq!(
            second.conn.handshake_kind(),
            Some(HandshakeKind::Resumed),
            "{version:?}"
        );
    }
}

#[test]
fn a_proxy_header_before_the_client_hello_is_read_in_the_clear() {
    let dir = tempfile::tempdir().unwrap();
    let cert = make_cert(dir.path(), "a");
    let gateway = TestGateway::echo(GatewayConfig {
        proxy_protocol: Some("127.0.0.0/8".parse::<TrustedProxies>().unwrap()),
        ..tls_config(&cert)
    });
    let mut stream = TcpStream::connect(gateway.tcp_addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"PROXY TCP4 192.0.2.10 127.0.0.1 40000 443\r\n")
        .unwrap();
    let config = client_config(&cert, &[&rustls::version::TLS13]);
    let conn = ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut tls = StreamOwned::new(conn, stream);
    echo_packet(&mut tls, b"behind a balancer");
}

/// Reads until the server closes; returns whether it did within `within`.
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 1024];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => {}
        }
    }
    false
}

#[test]
fn garbage_instead_of_tls_is_closed_with_an_alert_and_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let cert = make_cert(dir.path(), "a");
    let gateway = TestGateway::echo(tls_config(&cert));
    let config = client_config(&cert, &[&rustls::version::TLS13]);
    let mut good = connect_tls(gateway.tcp_addr(), &config);
    let mut bad = TcpStream::connect(gateway.ws_addr()).unwrap();
    bad.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    // The alert comes first: a TLS record of type 21.
    bad.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut first = [0u8; 1];
    bad.read_exact(&mut first)
        .expect("an alert before the close");
    assert_eq!(first[0], 21, "a TLS alert record");
    assert!(closed_within(&mut bad, Duration::from_secs(5)));
    echo_packet(&mut good, b"still served");
    assert!(wait_until(Duration::from_secs(2), || tls_handshakes(
        &gateway
    )[1] == 1));
}

#[test]
fn a_handshake_that_never_finishes_is_closed_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let cert = make_cert(dir.path(), "a");
    let gateway = TestGateway::echo(GatewayConfig {
        handshake_timeout: Duration::from_millis(300),
        ..tls_config(&cert)
    });
    let mut silent = TcpStream::connect(gateway.tcp_addr()).unwrap();
    // Half a ClientHello: a record header announcing more than is sent.
    silent.write_all(&[22, 3, 1, 0, 200, 1, 0]).unwrap();
    let started = Instant::now();
    assert!(closed_within(&mut silent, Duration::from_secs(5)));
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert!(wait_until(Duration::from_secs(2), || tls_handshakes(
        &gateway
    )[1] == 1));
}

#[test]
fn a_reload_serves_the_new_certificate_to_new_handshakes_only() {
    let dir = tempfile::tempdir().unwrap();
    let old = make_cert(dir.path(), "live");
    let config = tls_config(&old);
    let acceptor = config.tls.clone().unwrap();
    let gateway = TestGateway::echo(config);
    let trusts_old = client_config(&old, &[&rustls::version::TLS13]);
    let mut open = connect_tls(gateway.tcp_addr(), &trusts_old);

    // A bad file: the reload fails and the old certificate stays.
    std::fs::write(&old.key_path, "not a key").unwrap();
    assert!(acceptor.reload().is_err());
    echo_packet(
        &mut connect_tls(gateway.tcp_addr(), &trusts_old),
        b"old still",
    );

    // New files in place (same paths): new handshakes get the new certificate.
    let new = make_cert(dir.path(), "live");
    acceptor.reload().expect("the new files load");
    let trusts_new = client_config(&new, &[&rustls::version::TLS13]);
    echo_packet(&mut connect_tls(gateway.tcp_addr(), &trusts_new), b"new");
    let stream = TcpStream::connect(gateway.tcp_addr()).unwrap();
    // A fresh client: one with a cached session would resume without seeing a certificate.
    let conn = ClientConnection::new(
        client_config(&old, &[&rustls::version::TLS13]),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let mut refused = StreamOwned::new(conn, stream);
    let mut failed = false;
    while refused.conn.is_handshaking() {
        if refused.conn.complete_io(&mut refused.sock).is_err() {
            failed = true;
            break;
        }
    }
    assert!(
        failed,
        "a client trusting only the old certificate must not verify the new one"
    );
    // The connection from before the reload is untouched.
    echo_packet(&mut open, b"open across the reload");
}

/// The binary itself: `--tls-cert`/`--tls-key`, SIGHUP with a bad file (kept serving the old
/// certificate), SIGHUP with a new one (new handshakes get it, the open connection stays).
#[test]
fn sighup_reloads_the_certificate_of_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let old = make_cert(dir.path(), "live");
    let (cert, key) = (
        old.cert_path.to_str().unwrap(),
        old.key_path.to_str().unwrap(),
    );
    let process = EchoProcess::spawn(&["--tls-cert", cert, "--tls-key", key]);
    let trusts_old = client_config(&old, &[&rustls::version::TLS13]);
    let mut open = connect_tls(process.tcp, &trusts_old);
    echo_packet(&mut open, b"before");

    std::fs::write(&old.cert_path, "garbage").unwrap();
    process.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    let fresh_old = client_config(&old, &[&rustls::version::TLS13]);
    echo_packet(
        &mut connect_tls(process.tcp, &fresh_old),
        b"old certificate kept",
    );

    let new = make_cert(dir.path(), "live");
    process.signal(libc::SIGHUP);
    let trusts_new = client_config(&new, &[&rustls::version::TLS13]);
    let reloaded = wait_until(Duration::from_secs(5), || {
        let stream = TcpStream::connect(process.tcp).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = StreamOwned::new(
            ClientConnection::new(trusts_new.clone(), name).unwrap(),
            stream,
        );
        (0..10).all(|_| !tls.conn.is_handshaking() || tls.conn.complete_io(&mut tls.sock).is_ok())
            && !tls.conn.is_handshaking()
    });
    assert!(
        reloaded,
        "new handshakes present the new certificate after SIGHUP"
    );
    echo_packet(&mut open, b"open across the reload");
}

/// An outside client: Python's `ssl` module, trusting the test's certificate, over framed TCP.
#[test]
fn python_ssl_client_echoes_a_packet() {
    let dir = tempfile::tempdir().unwrap();
    let cert = make_cert(dir.path(), "a");
    let gateway = TestGateway::echo(tls_config(&cert));
    let script = r#"
import socket, ssl, struct, sys
port, cafile = int(sys.argv[1]), sys.argv[2]
context = ssl.create_default_context(cafile=cafile)
with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
    with context.wrap_socket(raw, server_hostname="localhost") as tls:
        packet = bytes.fromhex(sys.argv[3])
        tls.sendall(packet)
        got = b""
        while len(got) < len(packet):
            chunk = tls.recv(65536)
            if not chunk:
                break
            got += chunk
        print(tls.version(), got.hex())
"#;
    let sent = packet(3, b"from python");
    let hex: String = sent.iter().map(|b| format!("{b:02x}")).collect();
    let output = std::process::Command::new("python3")
        .args(["-c", script, &gateway.tcp_addr().port().to_string()])
        .arg(&cert.cert_path)
        .arg(&hex)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.trim(), format!("TLSv1.3 {hex}"));
}

/// Asks for a TLS 1.2 renegotiation with openssl s_client's `R` command and returns what
/// s_client printed (its messages on stdout, RENEGOTIATING on stderr), once it gave up.
fn renegotiate_with_s_client(addr: SocketAddr, cert: &TestCert) -> String {
    let mut client = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-tls1_2",
            "-msg",
            "-servername",
            "localhost",
            "-connect",
        ])
        .arg(addr.to_string())
        .arg("-CAfile")
        .arg(&cert.cert_path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl runs");
    let mut stdin = client.stdin.take().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // "R" at the start of a line asks s_client to renegotiate.
    let _ = stdin.write_all(b"R\n");
    std::thread::sleep(Duration::from_millis(500));
    drop(stdin);
    let finished = wait_until(Duration::from_secs(10), || {
        client
            .try_wait()
            .map(|status| status.is_some())
            .unwrap_or(true)
    });
    if !finished {
        let _ = client.kill();
    }
    let output = client.wait_with_output().unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

/// A TLS 1.2 renegotiation (openssl s_client's `R` command) is refused with rustls's
/// `no_renegotiation` warning; OpenSSL gives up at it, and the server serves the next client.
#[test]
fn renegotiation_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cert = make_cert(dir.path(), "a");
    let gateway = TestGateway::echo(tls_config(&cert));
    let said = renegotiate_with_s_client(gateway.tcp_addr(), &cert);
    assert!(said.contains("RENEGOTIATING"), "{said}");
    assert!(said.contains("warning no_renegotiation"), "{said}");
    // The handshake was never redone: one ServerHello only.
    assert_eq!(
        said.matches("ServerHello\n").count() + said.matches("ServerHello\r").count(),
        1,
        "{said}"
    );
    let config = client_config(&cert, &[&rustls::version::TLS12]);
    echo_packet(
        &mut connect_tls(gateway.tcp_addr(), &config),
        b"next client",
    );
}

/// rustls logs the warning alert it answers a renegotiation with, knowing nothing of sockets:
/// the line carries the peer's address all the same (the machine's span around the records).
#[test]
fn a_refused_renegotiation_is_logged_with_the_peer() {
    let dir = tempfile::tempdir().unwrap();
    let cert = make_cert(dir.path(), "a");
    let log = dir.path().join("stderr.log");
    let cert_path = cert.cert_path.to_str().unwrap();
    let key_path = cert.key_path.to_str().unwrap();
    let server = EchoProcess::spawn_logging_to(
        &log,
        "warn",
        &["--tls-cert", cert_path, "--tls-key", key_path],
    );
    let said = renegotiate_with_s_client(server.tcp, &cert);
    assert!(said.contains("warning no_renegotiation"), "{said}");
    let mut line = None;
    assert!(wait_until(Duration::from_secs(5), || {
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        line = logged
            .lines()
            .find(|line| line.contains("NoRenegotiation"))
            .map(str::to_owned);
        line.is_some()
    }));
    let line = line.unwrap();
    assert!(line.contains("peer=127.0.0.1:"), "{line}");
    assert!(!line.contains(&format!("peer={}", server.tcp)), "{line}");
}
