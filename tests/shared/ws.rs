//! The client side of WebSocket for both suites, on the codec's client role: the opening
//! handshake, masked frames, the reader of the server's messages, and `WsClient`, a blocking
//! client that fails the test on anything unexpected. The chat client upgrades, frames and
//! reads through the same pieces; it keeps its own read loop because it must report a closed
//! or silent connection to the test rather than fail on it.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use switchboard_codec::ws::handshake::{ClientRequest, UpgradeResponse};
use switchboard_codec::ws::{
    self as ws, Client, ClientHandshake, CloseCode, FrameEncoder, MessageReader, OpCode,
    ReaderConfig, Server,
};
use switchboard_codec::Decoded;

use super::socket::{connect, read_more, read_until_closed, Closed, Ending};
use super::{random_u64, IO_TIMEOUT};

/// A fresh masking key.
pub fn mask_key() -> [u8; 4] {
    (random_u64() as u32).to_ne_bytes()
}

/// The reader of a server's messages, with room for the largest payloads the tests send.
pub fn message_reader() -> MessageReader<Client> {
    MessageReader::new(ReaderConfig {
        max_message: 16 << 20,
        ..ReaderConfig::default()
    })
}

/// `request` with a fresh nonce, and the validator of its answer.
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
    let host = addr.to_string();
    start_request(&ClientRequest::new(&host, "/")).1.to_vec()
}

/// Runs the opening handshake with `request` on a connected stream; returns the validated 101
/// and the bytes that came after it. Panics if the server refuses, closes or stays silent.
pub fn upgrade(stream: &mut TcpStream, request: &ClientRequest<'_>) -> (UpgradeResponse, BytesMut) {
    let (mut handshake, request) = start_request(request);
    stream
        .write_all(&request)
        .expect("send the upgrade request");
    let mut inbound = BytesMut::new();
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        match handshake.decode(&mut inbound) {
            Ok(Decoded::Complete(response)) => return (response, inbound),
            Ok(Decoded::NeedMore) => {}
            Err(e) => panic!(
                "upgrade refused ({e}): {}",
                String::from_utf8_lossy(&inbound)
            ),
        }
        assert!(Instant::now() < deadline, "no 101 within {IO_TIMEOUT:?}");
        read_more(stream, &mut inbound);
    }
}

/// A blocking WebSocket client.
pub struct WsClient {
    pub stream: TcpStream,
    inbound: BytesMut,
    reader: MessageReader<Client>,
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
        let (response, inbound) = upgrade(&mut stream, request);
        let mut client = WsClient::adopt(stream);
        client.inbound = inbound;
        (client, response)
    }

    /// A client over a stream whose handshake the caller completed (no bytes past the 101 read).
    pub fn adopt(stream: TcpStream) -> WsClient {
        WsClient {
            stream,
            inbound: BytesMut::new(),
            reader: message_reader(),
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
            match self.reader.read(&mut self.inbound) {
                Ok(Decoded::Complete(message)) => return message,
                Ok(Decoded::NeedMore) => {}
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
