//! The connection machine driven with no socket at all: a harness plays the driver (bytes in,
//! events carried out, sends into a buffer with a chosen appetite) and the handler (admits or
//! refuses, echoes or keeps messages), and the tests read what went out on the wire.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use switchboard_codec::ws::{self as ws, Client, CloseCode, FrameEncoder, MessageReader, OpCode};
use switchboard_codec::Decoded;

use super::super::config::GatewayConfig;
use super::super::handler::{Admission, Disconnect, Message, Transport};
use super::{Event, Limits, Machine, Phase, Workspace};

mod limits;
mod sending;
mod splits;
mod tcp;
mod tls;
mod websocket;

const KEY: usize = 7;
/// A start far from zero, so no test leans on tick 0.
const START: u64 = 1_000_000;

/// What the harness's handler does with an admission request and with messages.
#[derive(Clone)]
enum Answer {
    Accept,
    Refuse(u16),
    Panic,
}

/// The driver and the handler, played by a test.
struct Harness {
    ws: Workspace,
    machine: Machine,
    answer: Answer,
    /// Echo every message back (the echo server's handler).
    echo: bool,
    /// Bytes the kernel takes per send; `usize::MAX`: all of them.
    appetite: usize,
    /// What went out on the wire.
    wire: Vec<u8>,
    messages: Vec<Message>,
    /// Messages handed to the handler as over the rate.
    over_rate: Vec<Message>,
    disconnects: Vec<Disconnect>,
    opened: usize,
    deadline: Option<u64>,
    /// Keys with a send asked for, to send at the end of the pass.
    transmit: bool,
    fin: bool,
    closed: bool,
}

fn config() -> GatewayConfig {
    GatewayConfig {
        handshake_timeout: Duration::from_secs(10),
        read_wait: Duration::from_secs(180),
        close_linger: Duration::from_secs(2),
        ..GatewayConfig::default()
    }
}

fn peer() -> SocketAddr {
    "127.0.0.9:5000".parse().unwrap()
}

impl Harness {
    fn with_config(config: &GatewayConfig, transport: Transport) -> Harness {
        let mut ws = Workspace::new(Limits::new(config), START);
        let machine = Machine::new(&mut ws, KEY, peer(), transport);
        let mut harness = Harness {
            ws,
            machine,
            answer: Answer::Accept,
            echo: true,
            appetite: usize::MAX,
            wire: Vec::new(),
            messages: Vec::new(),
            over_rate: Vec::new(),
            disconnects: Vec::new(),
            opened: 0,
            deadline: None,
            transmit: false,
            fin: false,
            closed: false,
        };
        harness.settle();
        harness
    }

    fn new(transport: Transport) -> Harness {
        Harness::with_config(&config(), transport)
    }

    /// A WebSocket that completed its upgrade; the 101 is taken off the wire.
    fn open_ws(config: &GatewayConfig) -> Harness {
        let mut h = Harness::with_config(config, Transport::WebSocket);
        h.read(UPGRADE);
        h.end_pass();
        assert!(h.take_wire().starts_with(b"HTTP/1.1 101"));
        h
    }

    /// Carries out every queued event, as the driver does.
    fn settle(&mut self) {
        while let Some((key, event)) = self.ws.next_event() {
            assert_eq!(key, KEY);
            assert!(!self.closed, "an event after Close: {event:?}");
            match event {
                Event::Open(upgrade) => {
                    self.opened += 1;
                    let answer = match self.answer {
                        Answer::Accept => Some(Admission::ACCEPT),
                        Answer::Refuse(status) => Some(Admission::Refuse {
                            status,
                            reason: "refused",
                        }),
                        Answer::Panic => None,
                    };
                    let (ws, machine) = (&mut self.ws, &mut self.machine);
                    machine.on_admission(ws, KEY, upgrade.as_deref(), answer);
                }
                Event::Message(message) => {
                    if self.echo {
                        self.machine.send(&mut self.ws, KEY, message.clone());
                    }
                    self.messages.push(message);
                }
                Event::OverRate(message) => self.over_rate.push(message),
                Event::Disconnect(reason) => self.disconnects.push(reason),
                Event::Deadline(tick) => self.deadline = Some(tick),
                Event::Transmit => self.transmit = true,
                Event::Fin => {
                    assert!(!self.fin, "FIN twice");
                    self.fin = true;
                }
                Event::Close => self.closed = true,
            }
        }
    }

    /// One read of `bytes`, decoded frame by frame as the driver does.
    fn read(&mut self, bytes: &[u8]) {
        self.ws.start_turn();
        self.machine.on_bytes(&mut self.ws, bytes);
        self.decode();
    }

    fn decode(&mut self) {
        while !self.closed && self.machine.poll_input(&mut self.ws, KEY) {
            self.settle();
        }
        self.machine.end_input(&mut self.ws);
        self.ws.end_turn();
        self.settle();
    }

    /// The send stage at the end of a pass.
    fn end_pass(&mut self) {
        if std::mem::take(&mut self.transmit) && !self.closed {
            self.send();
        }
        self.ws.end_pass();
    }

    fn send(&mut self) {
        let (wire, appetite) = (&mut self.wire, self.appetite);
        self.machine.send_with(&mut self.ws, KEY, |slices| {
            let mut left = appetite;
            for slice in slices {
                let take = left.min(slice.len());
                wire.extend_from_slice(&slice[..take]);
                left -= take;
            }
            match appetite - left {
                0 => Err(std::io::ErrorKind::WouldBlock.into()),
                n => Ok(n),
            }
        });
        self.settle();
    }

    fn at(&mut self, tick: u64) {
        self.ws.set_now(tick);
    }

    /// The connection's deadline passed.
    fn fire(&mut self, input_waiting: bool) {
        let deadline = self.deadline.take().expect("a deadline was set");
        self.ws.set_now(deadline);
        self.machine.on_timer(&mut self.ws, KEY, input_waiting);
        self.settle();
    }

    fn eof(&mut self) {
        self.machine.on_eof(&mut self.ws, KEY);
        self.settle();
    }

    fn take_wire(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.wire)
    }

    /// The WebSocket frames on the wire (after any HTTP response was taken).
    fn frames(&mut self) -> Vec<ws::Message> {
        let mut src = BytesMut::from(&self.take_wire()[..]);
        let mut reader = MessageReader::<Client>::new(Default::default());
        let mut out = Vec::new();
        while let Ok(Decoded::Complete(message)) = reader.read(&mut src) {
            out.push(message);
        }
        assert!(src.is_empty(), "a partial frame on the wire");
        out
    }
}

const UPGRADE: &[u8] = b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";

/// A client frame, masked as a client must.
fn client_frame(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut dst = BytesMut::new();
    FrameEncoder::<Client>::new().encode_masked(opcode, fin, payload, [1, 2, 3, 4], &mut dst);
    dst.to_vec()
}

fn close_code(message: &ws::Message) -> Option<CloseCode> {
    match message {
        ws::Message::Close(frame) => frame.as_ref().map(|f| f.code),
        other => panic!("not a close frame: {other:?}"),
    }
}

fn binary(payload: &'static [u8]) -> Message {
    Message::Binary(Bytes::from_static(payload))
}

#[test]
fn a_machine_stays_small() {
    // The epoll driver adds a socket and a generation: `Conn` is 168 bytes in a debug build
    // (mio keeps a selector id there), 152 in release. 136 until the TLS session's pointer.
    let size = std::mem::size_of::<Machine>();
    assert!(size <= 144, "Machine grew to {size} bytes");
}

#[test]
fn an_idle_open_connection_holds_no_buffer() {
    let mut h = Harness::open_ws(&config());
    h.read(&client_frame(OpCode::Binary, true, b"hi"));
    h.end_pass();
    assert_eq!(h.machine.held_bytes(), 0);
    assert!(h.machine.inbound.is_none());
    assert!(h.machine.outgoing.is_empty());
    assert_eq!(h.ws.queued(), 0);
}

#[test]
fn the_phases_of_a_websocket_in_order() {
    let mut h = Harness::new(Transport::WebSocket);
    assert_eq!(h.machine.phase(), Phase::Handshake);
    assert_eq!(
        h.deadline,
        Some(START + 1000),
        "the handshake deadline: 10 s"
    );
    h.read(UPGRADE);
    assert_eq!(h.machine.phase(), Phase::Open);
    assert_eq!(h.deadline, Some(START + 18_000), "the read-wait: 180 s");
    h.machine
        .close(&mut h.ws, KEY, CloseCode::NORMAL, Disconnect::Shutdown);
    h.settle();
    assert_eq!(h.machine.phase(), Phase::AwaitingCloseReply);
    h.read(&client_frame(OpCode::Close, true, &1000u16.to_be_bytes()));
    assert_eq!(h.machine.phase(), Phase::Flushing);
    h.end_pass();
    assert_eq!(h.machine.phase(), Phase::Lingering);
    assert!(h.fin);
    h.eof();
    assert_eq!(h.machine.phase(), Phase::Closed);
    assert!(h.closed);
    assert_eq!(h.disconnects, [Disconnect::Shutdown]);
}
