//! Shared pieces of the loopback gateway tests: a gateway that shuts itself down when dropped,
//! a blocking framed-TCP client, raw HTTP exchanges, and this process's resources. The
//! WebSocket client, sockets and waits come from `tests/shared`, which the chat tests use too.
//! Every socket has read and write timeouts and every loop a deadline, so a broken gateway
//! fails a test instead of hanging it. Only 127.0.0.1 is ever used.

#![allow(dead_code)] // each test binary uses its own subset of these helpers

pub mod process;
#[path = "../shared/mod.rs"]
mod shared;

#[allow(unused_imports)] // not every test binary names them
pub use shared::socket::{configure, connect, is_timeout, read_until_closed, Closed, Ending};
#[allow(unused_imports)] // not every test binary names them
pub use shared::ws::{mask_key, upgrade_request, WsClient};
#[allow(unused_imports)] // not every test binary names them
pub use shared::{loopback, packet, random_u64, wait_until, IO_TIMEOUT};

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use std::sync::{Arc, Mutex};
use switchboard::echo::EchoHandler;

use switchboard::gateway::{
    Admission, ConnId, ConnInfo, Disconnect, Gateway, GatewayConfig, GatewayHandle, Handler,
    Message, Outbox,
};
use switchboard_codec::packet::PacketDecoder;
use switchboard_codec::Decoded;

use shared::socket::read_more;

/// The tests' gateway configuration (see [`shared::gateway_config`]) with two reactors and
/// text echoed, as the echo tests send text too.
pub fn test_config() -> GatewayConfig {
    GatewayConfig {
        ws_text: true,
        ..shared::gateway_config(2)
    }
}

/// An echo handler that records how each connection ended.
#[derive(Clone, Default)]
pub struct EndRecorder {
    pub ends: Arc<Mutex<Vec<Disconnect>>>,
}

impl Handler for EndRecorder {
    fn open(&mut self, _out: &mut Outbox<'_>, _conn: ConnId, _info: &ConnInfo<'_>) -> Admission {
        Admission::ACCEPT
    }

    fn message(&mut self, out: &mut Outbox<'_>, conn: ConnId, message: Message) {
        out.send(conn, message);
    }

    fn disconnect(&mut self, _out: &mut Outbox<'_>, _conn: ConnId, reason: &Disconnect) {
        self.ends.lock().unwrap().push(reason.clone());
    }
}

impl TestGateway {
    /// Starts a gateway whose handlers echo and record every connection's end.
    pub fn recording_ends(config: GatewayConfig) -> (TestGateway, EndRecorder) {
        let recorder = EndRecorder::default();
        let handlers = recorder.clone();
        let gateway = TestGateway::start(config, move |_, _| handlers.clone());
        (gateway, recorder)
    }
}

/// A running gateway that drains and joins its reactors when dropped, even when the test
/// panics, so no test leaves threads or sockets behind.
pub struct TestGateway {
    gateway: Option<Gateway>,
}

impl TestGateway {
    /// Starts an echo gateway.
    pub fn echo(config: GatewayConfig) -> TestGateway {
        TestGateway::start(config, |_, _| EchoHandler)
    }

    /// Starts a gateway with one handler per reactor from `make_handler`.
    pub fn start<H, F>(config: GatewayConfig, make_handler: F) -> TestGateway
    where
        H: Handler,
        F: FnMut(usize, GatewayHandle) -> H,
    {
        let wanted = config.backend;
        let gateway = Gateway::start(config, make_handler).expect("gateway starts");
        // These machines have io_uring: a fallback here would test epoll twice, unseen.
        assert_eq!(
            gateway.backend(),
            wanted,
            "the gateway fell back to another backend"
        );
        TestGateway {
            gateway: Some(gateway),
        }
    }

    fn inner(&self) -> &Gateway {
        self.gateway.as_ref().expect("running until dropped")
    }

    /// The framed-TCP address.
    pub fn tcp_addr(&self) -> SocketAddr {
        self.inner().tcp_addr().expect("TCP listener configured")
    }

    /// The WebSocket address.
    pub fn ws_addr(&self) -> SocketAddr {
        self.inner()
            .ws_addr()
            .expect("WebSocket listener configured")
    }

    /// The gateway's counters.
    pub fn probe(&self) -> switchboard::gateway::GatewayProbe {
        self.inner().probe()
    }

    /// Connections the gateway holds right now.
    pub fn open_connections(&self) -> usize {
        self.inner().open_connections()
    }

    /// Connections closed because the process went over `max_queued_bytes`.
    pub fn budget_closes(&self) -> u64 {
        self.inner().budget_closes()
    }

    /// What the limits refused so far, by reason.
    pub fn refusals(&self) -> switchboard::gateway::RefusalCounts {
        self.inner().refusals()
    }

    /// The refusals once `why` reached `count` (or after 5 s, whatever they are then): a
    /// reactor publishes what its connection machines refused at the end of its pass, just
    /// after the pass's writes, so a client can see its close a moment before the count.
    pub fn refusals_reaching(
        &self,
        why: switchboard::gateway::Refusal,
        count: u64,
    ) -> switchboard::gateway::RefusalCounts {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let refusals = self.refusals();
            if refusals.get(why) >= count || std::time::Instant::now() >= deadline {
                return refusals;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Bytes queued for writing across the gateway, as of each reactor's last pass.
    pub fn queued_bytes(&self) -> usize {
        self.inner().queued_bytes()
    }

    /// The handle that reaches every reactor.
    pub fn handle(&self) -> GatewayHandle {
        self.inner().handle()
    }

    /// Waits until the gateway holds exactly `count` connections; panics after `within`.
    pub fn wait_for_open_connections(&self, count: usize, within: Duration) {
        let reached = wait_until(within, || self.open_connections() == count);
        assert!(
            reached,
            "gateway holds {} connections, expected {count} within {within:?}",
            self.open_connections()
        );
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(gateway) = self.gateway.take() {
            gateway.shutdown();
        }
    }
}

/// `len` bytes of a pattern that differs per `seed`, so a payload swapped with another or
/// shifted by a byte is caught.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Sends `request` on a fresh connection and reads the answer to the end of the stream:
/// for handshake refusals, which are answered and then closed.
pub fn http_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = connect(addr);
    stream.write_all(request).expect("send the request");
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        assert!(
            Instant::now() < deadline,
            "no end of stream after the response: {}",
            String::from_utf8_lossy(&response)
        );
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!(
                "reading the response failed ({e}); got so far: {}",
                String::from_utf8_lossy(&response)
            ),
        }
    }
    String::from_utf8(response).expect("an HTTP response head is ASCII")
}

/// Reads an HTTP response head byte by byte, so whatever follows it stays in the socket.
pub fn read_http_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert!(head.len() < 8192, "no end of the response head");
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            Ok(_) => panic!("closed inside the response head"),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("reading the response head failed: {e}"),
        }
    }
    String::from_utf8(head).expect("an HTTP response head is ASCII")
}

/// The status code of an HTTP response.
pub fn status_of(response: &str) -> u16 {
    response
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP/1.1 response: {response:?}"))
}

/// Whether the head of `response` has a header `name: value` (name case-insensitive).
pub fn has_header(response: &str, name: &str, value: &str) -> bool {
    let head = response.split("\r\n\r\n").next().unwrap_or_default();
    head.lines().skip(1).any(|line| {
        line.split_once(':').is_some_and(|(n, v)| {
            n.trim().eq_ignore_ascii_case(name) && v.trim().eq_ignore_ascii_case(value)
        })
    })
}

// ---- framed TCP ------------------------------------------------------------------------------

/// A blocking framed-TCP client.
pub struct TcpClient {
    pub stream: TcpStream,
    inbound: BytesMut,
    decoder: PacketDecoder,
}

impl TcpClient {
    /// Connects to the gateway's framed-TCP listener.
    pub fn connect(addr: SocketAddr) -> TcpClient {
        TcpClient::from_stream(connect(addr))
    }

    /// Wraps a connected stream (already configured by the caller).
    pub fn from_stream(stream: TcpStream) -> TcpClient {
        TcpClient {
            stream,
            inbound: BytesMut::new(),
            decoder: PacketDecoder::new(u32::MAX),
        }
    }

    /// Writes raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to the gateway");
    }

    /// Writes one packet.
    pub fn send_packet(&mut self, command: u16, payload: &[u8]) {
        self.send(&packet(command, payload));
    }

    /// Reads the next whole packet, header included; panics on a timeout or end of stream.
    pub fn read_packet(&mut self) -> Bytes {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            match self.decoder.decode_raw(&mut self.inbound) {
                Ok(Decoded::Complete(packet)) => return packet,
                Ok(Decoded::NeedMore) => {}
                Err(e) => panic!("the gateway sent a bad packet: {e}"),
            }
            assert!(
                Instant::now() < deadline,
                "no whole packet in {IO_TIMEOUT:?}"
            );
            read_more(&mut self.stream, &mut self.inbound);
        }
    }

    /// Sends a packet and checks the same bytes come back.
    pub fn echo(&mut self, command: u16, payload: &[u8]) {
        let sent = packet(command, payload);
        self.send(&sent);
        let got = self.read_packet();
        assert_eq!(&got[..], &sent[..], "echo differs from what was sent");
    }

    /// Reads until the gateway closes the connection; panics after `within`.
    pub fn read_until_closed(&mut self, within: Duration) -> Ending {
        let mut ending = read_until_closed(&mut self.stream, within);
        ending.discarded += self.inbound.len();
        self.inbound.clear();
        ending
    }
}

// ---- process ---------------------------------------------------------------------------------

/// This process's resident set size in bytes, from /proc/self/status.
pub fn vm_rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS line");
    let kib: usize = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmRSS value in kB");
    kib * 1024
}

/// Raises the soft limit on open descriptors to the hard limit and returns the new soft limit.
pub fn raise_fd_limit() -> libc::rlim_t {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the valid, exclusively borrowed struct.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(got, 0, "getrlimit: {}", io::Error::last_os_error());
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: setrlimit only reads the valid struct it is given.
        let set = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
        assert_eq!(set, 0, "setrlimit: {}", io::Error::last_os_error());
    }
    limit.rlim_cur
}
