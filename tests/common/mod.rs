//! Shared pieces of the loopback integration tests: a gateway that shuts itself down when
//! dropped, blocking framed-TCP and WebSocket clients built on the codec, and bounded waits.
//! Every socket has read and write timeouts and every loop a deadline, so a broken gateway
//! fails a test instead of hanging it. Only 127.0.0.1 is ever used.

#![allow(dead_code)] // each test binary uses its own subset of these helpers

pub mod process;
#[path = "../shared/mod.rs"]
mod shared;

#[allow(unused_imports)] // not every test binary names them
pub use shared::{random_u64, wait_until};

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use switchboard::echo::EchoHandler;
use switchboard::gateway::{Gateway, GatewayConfig, GatewayHandle, Handler, SocketOptions};
use switchboard_codec::packet::{PacketDecoder, PacketHeader};
use switchboard_codec::ws::handshake::{ClientRequest, UpgradeResponse};
use switchboard_codec::ws::{
    self as ws, Client, ClientHandshake, CloseCode, FrameEncoder, MessageReader, OpCode,
    ReaderConfig, Server,
};
use switchboard_codec::Decoded;

/// How long one blocking read or write may wait before the test fails.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// `127.0.0.1:0`: the kernel picks a free port.
pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A configuration for tests: both transports on free loopback ports, two reactors, text
/// echoed, short linger and drain so a test's teardown takes milliseconds, and no kernel
/// keepalive (tests are much shorter than its timers).
pub fn test_config() -> GatewayConfig {
    GatewayConfig {
        tcp: Some(loopback()),
        ws: Some(loopback()),
        workers: 2,
        ws_text: true,
        close_linger: Duration::from_millis(500),
        drain_timeout: Duration::from_secs(2),
        socket: SocketOptions {
            keepalive: None,
            user_timeout: None,
            ..SocketOptions::default()
        },
        ..GatewayConfig::default()
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
        let gateway = Gateway::start(config, make_handler).expect("gateway starts");
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

    /// Connections the gateway holds right now.
    pub fn open_connections(&self) -> usize {
        self.inner().open_connections()
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

/// A fresh masking key.
pub fn mask_key() -> [u8; 4] {
    (random_u64() as u32).to_ne_bytes()
}

/// `len` bytes of a pattern that differs per `seed`, so a payload swapped with another or
/// shifted by a byte is caught.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// One whole Switchboard packet: header then payload.
pub fn packet(command: u16, payload: &[u8]) -> Vec<u8> {
    let header = PacketHeader::for_payload(command, payload.len()).expect("payload fits u32");
    let mut bytes = header.to_bytes().to_vec();
    bytes.extend_from_slice(payload);
    bytes
}

/// How a peer ended the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// An orderly FIN: `read` returned 0.
    Eof,
    /// A reset.
    Reset,
}

/// What reading a stream to its end found.
#[derive(Debug, Clone, Copy)]
pub struct Ending {
    /// How it ended.
    pub how: Closed,
    /// Bytes that arrived before the end (and were discarded).
    pub discarded: usize,
    /// Time from the call until the end.
    pub after: Duration,
}

/// Connects to `addr` with TCP_NODELAY and the test timeouts.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect to the gateway");
    configure(&stream);
    stream
}

/// Applies TCP_NODELAY (so split writes leave as separate segments) and the test timeouts.
pub fn configure(stream: &TcpStream) {
    stream.set_nodelay(true).expect("TCP_NODELAY");
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .expect("write timeout");
}

/// Reads `stream` until the peer closes it, discarding what arrives; panics if it is still
/// open after `within`.
pub fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Ending {
    let start = Instant::now();
    let deadline = start + within;
    let mut buf = [0u8; 16 << 10];
    let mut discarded = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "connection still open after {within:?} ({discarded} bytes read meanwhile)"
        );
        stream.set_read_timeout(Some(left)).expect("read timeout");
        let how = match stream.read(&mut buf) {
            Ok(0) => Closed::Eof,
            Ok(n) => {
                discarded += n;
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Closed::Reset,
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("read failed: {e}"),
        };
        return Ending {
            how,
            discarded,
            after: start.elapsed(),
        };
    }
}

/// Whether a blocking read or write gave up on its timeout.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
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

/// One read onto the end of `inbound`; panics on end of stream, an error or a timeout.
fn read_more(stream: &mut TcpStream, inbound: &mut BytesMut) {
    let mut buf = [0u8; 64 << 10];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => panic!("the gateway closed the connection"),
            Ok(n) => {
                inbound.extend_from_slice(&buf[..n]);
                return;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("read from the gateway failed: {e}"),
        }
    }
}

// ---- WebSocket -------------------------------------------------------------------------------

/// A blocking WebSocket client on the codec's client role.
pub struct WsClient {
    pub stream: TcpStream,
    inbound: BytesMut,
    reader: MessageReader<Client>,
}

/// A valid upgrade request for `addr` and the validator of its answer.
fn start_handshake(addr: SocketAddr) -> (ClientHandshake, BytesMut) {
    let host = addr.to_string();
    start_request(&ClientRequest::new(&host, "/"))
}

fn start_request(request: &ClientRequest<'_>) -> (ClientHandshake, BytesMut) {
    let mut bytes = BytesMut::new();
    let nonce = [random_u64().to_ne_bytes(), random_u64().to_ne_bytes()].concat();
    let handshake =
        ClientHandshake::start(request, nonce.try_into().expect("16 bytes"), &mut bytes)
            .expect("a valid client request");
    (handshake, bytes)
}

/// The bytes of a valid upgrade request for `addr`, for tests that send it their own way.
pub fn upgrade_request(addr: SocketAddr) -> Vec<u8> {
    start_handshake(addr).1.to_vec()
}

impl WsClient {
    /// Connects and completes the opening handshake; panics if it is refused.
    pub fn connect(addr: SocketAddr) -> WsClient {
        WsClient::handshake(connect(addr), addr)
    }

    /// Runs the opening handshake on a connected stream.
    pub fn handshake(stream: TcpStream, addr: SocketAddr) -> WsClient {
        let host = addr.to_string();
        WsClient::handshake_with(stream, &ClientRequest::new(&host, "/")).0
    }

    /// Connects with `request` (path, subprotocols, headers) and returns the validated 101.
    pub fn connect_with(
        addr: SocketAddr,
        request: &ClientRequest<'_>,
    ) -> (WsClient, UpgradeResponse) {
        WsClient::handshake_with(connect(addr), request)
    }

    fn handshake_with(
        mut stream: TcpStream,
        request: &ClientRequest<'_>,
    ) -> (WsClient, UpgradeResponse) {
        let (mut handshake, request) = start_request(request);
        stream
            .write_all(&request)
            .expect("send the upgrade request");
        let mut inbound = BytesMut::new();
        let deadline = Instant::now() + IO_TIMEOUT;
        let response = loop {
            match handshake.decode(&mut inbound) {
                Ok(Decoded::Complete(response)) => break response,
                Ok(Decoded::NeedMore) => {}
                Err(e) => panic!(
                    "upgrade refused ({e}): {}",
                    String::from_utf8_lossy(&inbound)
                ),
            }
            assert!(Instant::now() < deadline, "no 101 within {IO_TIMEOUT:?}");
            read_more(&mut stream, &mut inbound);
        };
        let mut client = WsClient::adopt(stream);
        client.inbound = inbound;
        (client, response)
    }

    /// A client over a stream whose handshake the caller completed (no bytes past the 101 read).
    pub fn adopt(stream: TcpStream) -> WsClient {
        WsClient {
            stream,
            inbound: BytesMut::new(),
            reader: MessageReader::new(ReaderConfig {
                max_message: 16 << 20,
                ..ReaderConfig::default()
            }),
        }
    }

    /// One masked frame with a fresh key.
    pub fn frame(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut dst = BytesMut::new();
        FrameEncoder::<Client>::new().encode_masked(opcode, fin, payload, mask_key(), &mut dst);
        dst.to_vec()
    }

    /// One frame without a mask, as only a server may send it.
    pub fn unmasked_frame(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut dst = BytesMut::new();
        FrameEncoder::<Server>::new().encode_frame(opcode, fin, payload, &mut dst);
        dst.to_vec()
    }

    /// Writes raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to the gateway");
    }

    /// Writes one masked frame.
    pub fn send_frame(&mut self, opcode: OpCode, fin: bool, payload: &[u8]) {
        self.send_raw(&WsClient::frame(opcode, fin, payload));
    }

    /// Sends a close frame with `code`.
    pub fn send_close(&mut self, code: CloseCode) {
        self.send_frame(OpCode::Close, true, &ws::close_payload(code, ""));
    }

    /// Reads the next message or control frame; panics on a timeout, end of stream or a frame
    /// that breaks the protocol.
    pub fn read_message(&mut self) -> ws::Message {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            match self.reader.read(&mut self.inbound) {
                Ok(Decoded::Complete(message)) => return message,
                Ok(Decoded::NeedMore) => {}
                Err(e) => panic!("the gateway broke the protocol: {e}"),
            }
            assert!(
                Instant::now() < deadline,
                "no whole message in {IO_TIMEOUT:?}"
            );
            read_more(&mut self.stream, &mut self.inbound);
        }
    }

    /// Reads messages until a close frame and returns its code (`None`: empty close), then
    /// checks the gateway ends the stream with a FIN. Data messages before it are skipped.
    pub fn expect_close(&mut self) -> Option<CloseCode> {
        let code = self.read_close();
        let ending = self.read_until_closed(IO_TIMEOUT);
        assert_eq!(ending.discarded, 0, "bytes after the close frame");
        assert_eq!(ending.how, Closed::Eof, "a reset after the close frame");
        code
    }

    /// Reads messages until a close frame and returns its code, leaving the stream open.
    pub fn read_close(&mut self) -> Option<CloseCode> {
        for _ in 0..100_000 {
            if let ws::Message::Close(frame) = self.read_message() {
                return frame.map(|f| f.code);
            }
        }
        panic!("no close frame among 100,000 messages");
    }

    /// Reads until the gateway closes the connection; panics after `within`.
    pub fn read_until_closed(&mut self, within: Duration) -> Ending {
        let mut ending = read_until_closed(&mut self.stream, within);
        ending.discarded += self.inbound.len();
        self.inbound.clear();
        ending
    }

    /// Sends a binary message and checks it comes back as binary with the same payload.
    pub fn echo_binary(&mut self, payload: &[u8]) {
        self.send_frame(OpCode::Binary, true, payload);
        assert_eq!(
            self.read_message(),
            ws::Message::Binary(Bytes::copy_from_slice(payload))
        );
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
