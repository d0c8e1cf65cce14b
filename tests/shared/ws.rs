//! The client side of WebSocket for both suites, on the codec's `ClientLink` (the same client
//! half the SDK and the load generator use): the opening handshake over a blocking socket,
//! masked frames, and `WsClient`, a blocking client that fails the test on anything
//! unexpected. The chat client upgrades and reads through the same link; it keeps its own read
//! loop because it must report a closed or silent connection to the test rather than fail on it.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use switchboard_codec::client_link::{ClientLink, LinkEvent, WsMessages};
use switchboard_codec::ws::handshake::{ClientRequest, UpgradeResponse};
use switchboard_codec::ws::{self as ws, Client, CloseCode, FrameEncoder, OpCode, Server};

use super::socket::{connect, read_more, read_until_closed, Closed, Ending};
use super::{random_u64, IO_TIMEOUT};

/// A fresh masking key.
pub fn mask_key() -> [u8; 4] {
    (random_u64() as u32).to_ne_bytes()
}

/// Any message up to 16 MiB: room for the largest payloads the tests send.
pub const ANY_MESSAGE: WsMessages = WsMessages::Any { max_len: 16 << 20 };

/// A link that wrote `request`, with a fresh nonce, and the request's bytes.
fn start_request(request: &ClientRequest<'_>, messages: WsMessages) -> (ClientLink, BytesMut) {
    let mut bytes = BytesMut::new();
    let nonce = [random_u64().to_ne_bytes(), random_u64().to_ne_bytes()].concat();
    let nonce = nonce.try_into().expect("16 bytes");
    let link = ClientLink::ws(request, nonce, messages, &mut bytes).expect("a valid request");
    (link, bytes)
}

/// The bytes of a valid upgrade request for `addr`, for tests that send it their own way.
pub fn upgrade_request(addr: SocketAddr) -> Vec<u8> {
    let host = addr.to_string();
    start_request(&ClientRequest::new(&host, "/"), ANY_MESSAGE)
        .1
        .to_vec()
}

/// Runs the opening handshake with `request` on a connected stream; returns the link reading
/// `messages`, the validated 101 and the bytes that came after it. Panics if the server
/// refuses, closes or stays silent.
pub fn upgrade(
    stream: &mut TcpStream,
    request: &ClientRequest<'_>,
    messages: WsMessages,
) -> (ClientLink, UpgradeResponse, BytesMut) {
    let (mut link, request) = start_request(request, messages);
    stream
        .write_all(&request)
        .expect("send the upgrade request");
    let mut inbound = BytesMut::new();
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        // Nothing is written before the 101: the link answers only frames.
        match link.read(&mut inbound, mask_key(), &mut BytesMut::new()) {
            Ok(Some(LinkEvent::Upgraded(response))) => return (link, response, inbound),
            Ok(other) => assert!(other.is_none(), "{other:?} before the 101"),
            Err(e) => panic!(
                "upgrade refused ({e}): {}",
                String::from_utf8_lossy(&inbound)
            ),
        }
        assert!(Instant::now() < deadline, "no 101 within {IO_TIMEOUT:?}");
        read_more(stream, &mut inbound);
    }
}

/// A blocking WebSocket client. A probe: it answers nothing by itself (the pongs and close
/// echoes its link prepares are dropped), so each test sees the server's own timing and
/// sends exactly the frames it chooses.
pub struct WsClient {
    pub stream: TcpStream,
    inbound: BytesMut,
    link: ClientLink,
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
        let (link, response, inbound) = upgrade(&mut stream, request, ANY_MESSAGE);
        let client = WsClient {
            stream,
            inbound,
            link,
        };
        (client, response)
    }

    /// A client over a stream whose handshake the caller completed (no bytes past the 101 read).
    pub fn adopt(stream: TcpStream) -> WsClient {
        WsClient {
            stream,
            inbound: BytesMut::new(),
            link: ClientLink::ws_upgraded(ANY_MESSAGE),
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
        self.stream.write_all(bytes).expect("write to the server");
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
            let replies = &mut BytesMut::new(); // dropped: see the type's comment
            match self.link.read(&mut self.inbound, mask_key(), replies) {
                Ok(Some(LinkEvent::Binary(payload))) => return ws::Message::Binary(payload),
                Ok(Some(LinkEvent::Text(text))) => return ws::Message::Text(text),
                Ok(Some(LinkEvent::Ping(payload))) => return ws::Message::Ping(payload),
                Ok(Some(LinkEvent::Pong(payload))) => return ws::Message::Pong(payload),
                Ok(Some(LinkEvent::Close(frame))) => return ws::Message::Close(frame),
                Ok(Some(other)) => panic!("{other:?} on an upgraded connection"),
                Ok(None) => {}
                Err(e) => panic!("the server broke the protocol: {e}"),
            }
            assert!(
                Instant::now() < deadline,
                "no whole message in {IO_TIMEOUT:?}"
            );
            read_more(&mut self.stream, &mut self.inbound);
        }
    }

    /// Reads messages until a close frame and returns its code (`None`: empty close), then
    /// checks the server ends the stream with a FIN. Data messages before it are skipped.
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

    /// Reads until the server closes the connection; panics after `within`.
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
