//! One reactor thread: a `mio::Poll`, its own listeners, a slab of connections, a timer wheel,
//! one scratch read buffer, and an inbox. The event loop below is the table of contents:
//! `accept_ready`, `conn_readable`, `conn_writable`, `inbox_ready`, `timers_due`, `flush_dirty`.
//!
//! Never blocks except in `poll`. Reads land in the shared scratch buffer and whole frames are
//! split off it without copying; only the bytes of an unfinished frame move into the
//! connection. Handler commands for this reactor's connections are applied right after the
//! handler returns; writes are gathered per connection and flushed once per pass.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use switchboard_codec::packet::PacketDecoder;
use switchboard_codec::ws::handshake;

use switchboard_codec::ws::{
    self as ws, CloseCode, FrameEncoder, MessageReader, OpCode, ReaderConfig, Server,
};
use switchboard_codec::Decoded;
use tracing::{debug, info, warn};

use super::config::GatewayConfig;
use super::conn::{Conn, Phase, Protocol};
use super::conn_id::{next_generation, ConnId};
use super::handle::{Command, GatewayHandle, InboxReceiver};
use super::handler::{Admission, ConnInfo, Disconnect, Handler, Message, Outbox, Transport};
use super::outgoing::{Flushed, PushArena};
use super::timer_wheel::TimerWheel;

pub(crate) const TCP_LISTENER: Token = Token(usize::MAX - 1);
pub(crate) const WS_LISTENER: Token = Token(usize::MAX - 2);
pub(crate) const WAKER: Token = Token(usize::MAX - 3);

/// Milliseconds per timer tick: deadlines are seconds long, 10 ms is plenty of precision.
const TICK_MS: u64 = 10;
/// Reads per readiness event before other connections get their turn.
const READ_BUDGET: usize = 16;
/// Accepts per readiness event before the connections already open get their turn.
const ACCEPT_BUDGET: usize = 256;
const MIN_READ: usize = 4 << 10;
const MAX_READ: usize = 64 << 10;
/// The scratch buffer grows in chunks this size; frames split off it keep their chunk alive.
/// One largest read: a bigger chunk is touched page by page as reads walk through it, which
/// costs resident memory per reactor for nothing (measured: 256 KiB chunks were fully resident).
const SCRATCH_CHUNK: usize = MAX_READ;
/// After EMFILE/ENFILE, retry accepting this often instead of spinning on the listener.
const ACCEPT_RETRY_TICKS: u32 = 10;

/// State shared by the reactors of one gateway.
pub(crate) struct Shared {
    pub(crate) config: GatewayConfig,
    pub(crate) open_conns: AtomicUsize,
}

pub(crate) struct Reactor<H: Handler> {
    index: usize,
    poll: Poll,
    tcp_listener: Option<TcpListener>,
    ws_listener: Option<TcpListener>,
    conns: Slab<Conn>,
    /// Generation of each slab slot, kept across reuse.
    generations: Vec<u32>,
    wheel: TimerWheel,
    fired: Vec<usize>,
    scratch: BytesMut,
    read_size: usize,
    inbox: InboxReceiver,
    local: Vec<Command>,
    applying: bool,
    arena: PushArena,
    dirty: Vec<usize>,
    /// Connections that used up their read budget and may still have input.
    again: Vec<usize>,
    accept_again: bool,
    accept_paused_at: Option<u32>,
    /// Warned about this pause already (reset by the next successful accept).
    accept_paused_warned: bool,
    handler: H,
    handle: GatewayHandle,
    shared: Arc<Shared>,
    epoch: Instant,
    now: u32,
    packets: PacketDecoder,
    frames: FrameEncoder<Server>,
    responses: BytesMut,
    /// The slow-consumer cap actually applied: never below two of the largest messages.
    write_cap: usize,
    draining_until: Option<u32>,
}

impl<H: Handler> Reactor<H> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        index: usize,
        poll: Poll,
        mut tcp_listener: Option<TcpListener>,
        mut ws_listener: Option<TcpListener>,
        inbox: InboxReceiver,
        handler: H,
        handle: GatewayHandle,
        shared: Arc<Shared>,
    ) -> io::Result<Self> {
        if let Some(listener) = tcp_listener.as_mut() {
            poll.registry()
                .register(listener, TCP_LISTENER, Interest::READABLE)?;
        }
        if let Some(listener) = ws_listener.as_mut() {
            poll.registry()
                .register(listener, WS_LISTENER, Interest::READABLE)?;
        }
        let max_packet = u32::try_from(shared.config.max_packet).unwrap_or(u32::MAX);
        let write_cap = write_cap(&shared.config);
        Ok(Reactor {
            index,
            poll,
            tcp_listener,
            ws_listener,
            conns: Slab::new(),
            generations: Vec::new(),
            wheel: TimerWheel::new(),
            fired: Vec::new(),
            scratch: BytesMut::new(),
            read_size: MIN_READ,
            inbox,
            local: Vec::new(),
            applying: false,
            arena: PushArena::default(),
            dirty: Vec::new(),
            again: Vec::new(),
            accept_again: false,
            accept_paused_at: None,
            accept_paused_warned: false,
            handler,
            handle,
            shared,
            epoch: Instant::now(),
            now: 0,
            packets: PacketDecoder::new(max_packet),
            frames: FrameEncoder::new(),
            responses: BytesMut::new(),
            write_cap,
            draining_until: None,
        })
    }

    /// Runs until a shutdown has drained every connection (or its deadline passed).
    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    warn!(reactor = self.index, error = %e, "poll failed; reactor exits");
                    return;
                }
            }
            self.now = self.tick();
            for event in events.iter() {
                match event.token() {
                    TCP_LISTENER => self.accept_ready(Transport::Tcp),
                    WS_LISTENER => self.accept_ready(Transport::WebSocket),
                    WAKER => {} // the inbox is drained below on every pass
                    Token(key) => {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.conn_readable(key);
                        }
                        if event.is_writable() {
                            self.conn_writable(key);
                        }
                    }
                }
            }
            self.revisit();
            self.inbox_ready();
            self.timers_due();
            self.end_of_batch();
            self.flush_dirty();
            if self.drained() {
                return;
            }
        }
    }

    fn tick(&self) -> u32 {
        (self.epoch.elapsed().as_millis() as u64 / TICK_MS) as u32
    }

    fn ticks(duration: Duration) -> u32 {
        (duration.as_millis() as u64).div_ceil(TICK_MS).max(1) as u32
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if !self.again.is_empty() || self.accept_again {
            return Some(Duration::ZERO);
        }
        let mut timeout = self.wheel.next_deadline().map(|deadline| {
            Duration::from_millis(deadline.saturating_sub(u64::from(self.tick())) * TICK_MS)
        });
        if self.draining_until.is_some() || self.accept_paused_at.is_some() {
            let cap = Duration::from_millis(u64::from(ACCEPT_RETRY_TICKS) * TICK_MS);
            timeout = Some(timeout.map_or(cap, |t| t.min(cap)));
        }
        timeout
    }

    // ---- accepting -------------------------------------------------------------------------

    fn accept_ready(&mut self, transport: Transport) {
        for _ in 0..ACCEPT_BUDGET {
            let listener = match transport {
                Transport::Tcp => self.tcp_listener.as_ref(),
                Transport::WebSocket => self.ws_listener.as_ref(),
            };
            let Some(listener) = listener else { return };
            match listener.accept() {
                Ok((stream, peer)) => {
                    self.accept_paused_warned = false;
                    self.admit_socket(stream, peer, transport);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if is_resource_exhaustion(&e) => {
                    // The backlog stays full and the listener stays readable; spinning on it
                    // would starve the connections we already serve. Retry on a timer.
                    if !self.accept_paused_warned {
                        self.accept_paused_warned = true;
                        warn!(reactor = self.index, error = %e, "accept paused: out of descriptors or memory");
                    }
                    self.accept_paused_at = Some(self.now);
                    return;
                }
                Err(e) => debug!(reactor = self.index, error = %e, "accept failed"),
            }
        }
        self.accept_again = true;
    }

    fn admit_socket(
        &mut self,
        mut stream: mio::net::TcpStream,
        peer: SocketAddr,
        transport: Transport,
    ) {
        let shared = &self.shared;
        if self.draining_until.is_some()
            || shared.open_conns.fetch_add(1, Ordering::AcqRel) >= shared.config.max_conns
        {
            if self.draining_until.is_none() {
                shared.open_conns.fetch_sub(1, Ordering::AcqRel);
            }
            debug!(%peer, "connection refused: at --max-conns");
            return; // dropping the stream closes it
        }
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if key >= u32::MAX as usize {
            shared.open_conns.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            shared.open_conns.fetch_sub(1, Ordering::AcqRel);
            warn!(%peer, error = %e, "could not register connection");
            return;
        }
        if self.generations.len() <= key {
            self.generations.resize(key + 1, 0);
        }
        let generation = self.generations[key];
        entry.insert(Conn::new(stream, peer, transport, generation, self.now));
        match transport {
            Transport::Tcp => {
                self.wheel
                    .insert(key, u64::from(self.now + self.read_wait_ticks()));
                let id = self.id(key);
                let info = ConnInfo {
                    transport,
                    peer,
                    upgrade: None,
                };
                match self.call_handler_deferred(key, |h, out| h.open(out, id, &info)) {
                    Some(Admission::Accept { .. }) => {
                        self.conns[key].admitted = true;
                        self.apply_local();
                    }
                    Some(Admission::Refuse { reason, .. }) => {
                        debug!(%peer, reason, "TCP connection refused by the handler");
                        self.remove(key, None);
                        self.apply_local();
                    }
                    None => {
                        self.remove(key, None);
                        self.apply_local();
                    }
                }
            }
            Transport::WebSocket => {
                let deadline = self.now + Self::ticks(self.shared.config.handshake_timeout);
                self.wheel.insert(key, u64::from(deadline));
            }
        }
    }

    // ---- reading ---------------------------------------------------------------------------

    fn conn_readable(&mut self, key: usize) {
        for _ in 0..READ_BUDGET {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            let use_own = conn.inbound.is_some();
            let want = self.read_size;
            let buf = if use_own {
                conn.inbound.as_mut().expect("checked")
            } else {
                if self.scratch.capacity() - self.scratch.len() < want {
                    self.scratch.reserve(SCRATCH_CHUNK);
                }
                &mut self.scratch
            };
            match read_into(&mut conn.stream, buf, want) {
                Ok(0) => {
                    self.peer_eof(key);
                    return;
                }
                Ok(n) => {
                    self.read_size = if n == want {
                        (want * 2).min(MAX_READ)
                    } else if n < want / 4 {
                        (want / 2).max(MIN_READ)
                    } else {
                        want
                    };
                    conn.last_read = self.now;
                    self.process_input(key, use_own);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let peer = conn.peer;
                    debug!(%peer, error = %e, "read failed");
                    self.remove(key, Some(Disconnect::Io(e.kind())));
                    return;
                }
            }
        }
        self.again.push(key);
    }

    fn revisit(&mut self) {
        if self.accept_again {
            self.accept_again = false;
            self.accept_ready(Transport::Tcp);
            self.accept_ready(Transport::WebSocket);
        }
        if let Some(paused_at) = self.accept_paused_at {
            if self.now.wrapping_sub(paused_at) >= ACCEPT_RETRY_TICKS {
                self.accept_paused_at = None;
                self.accept_ready(Transport::Tcp);
                self.accept_ready(Transport::WebSocket);
            }
        }
        let again = std::mem::take(&mut self.again);
        for key in again {
            self.conn_readable(key);
        }
    }

    /// Turns the bytes just read into events. `own`: they are in the connection's buffer
    /// rather than the shared scratch.
    fn process_input(&mut self, key: usize, own: bool) {
        let mut src = if own {
            *self.conns[key].inbound.take().expect("caller checked")
        } else {
            std::mem::take(&mut self.scratch)
        };
        self.decode_all(key, &mut src);
        if own {
            if let Some(conn) = self.conns.get_mut(key) {
                if !src.is_empty() && conn.reads_frames() {
                    conn.inbound = Some(Box::new(src));
                }
            }
        } else {
            if let Some(conn) = self.conns.get_mut(key) {
                if !src.is_empty() && conn.reads_frames() {
                    // Only the start of an unfinished frame leaves the scratch buffer.
                    let mut own = BytesMut::with_capacity(src.len().max(MIN_READ));
                    own.extend_from_slice(&src);
                    conn.inbound = Some(Box::new(own));
                }
            }
            src.clear();
            self.scratch = src;
        }
    }

    fn decode_all(&mut self, key: usize, src: &mut BytesMut) {
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if !conn.reads_frames() || src.is_empty() {
                src.clear();
                return;
            }
            let progressed = match &mut conn.protocol {
                Protocol::Tcp => self.decode_packet(key, src),
                Protocol::WsHandshake(_) => self.decode_handshake(key, src),
                Protocol::Ws(_) => self.decode_ws(key, src),
            };
            if !progressed {
                return;
            }
        }
    }

    /// One packet from a TCP connection. Returns false when more input is needed (or the
    /// connection stopped reading).
    fn decode_packet(&mut self, key: usize, src: &mut BytesMut) -> bool {
        match self.packets.decode_raw(src) {
            Ok(Decoded::Complete(packet)) => {
                if self.conns[key].phase == Phase::Open {
                    self.deliver(key, Message::Binary(packet));
                }
                true
            }
            Ok(Decoded::NeedMore) => false,
            Err(e) => {
                info!(peer = %self.conns[key].peer, error = %e, "closing TCP connection: bad framing");
                self.notify(key, Disconnect::Protocol(e.to_string()));
                self.start_flushing(key);
                false
            }
        }
    }

    fn decode_handshake(&mut self, key: usize, src: &mut BytesMut) -> bool {
        let conn = &mut self.conns[key];
        let Protocol::WsHandshake(parser) = &mut conn.protocol else {
            return false;
        };
        match parser.parse(src) {
            Ok(Decoded::Complete((request, consumed))) => {
                let _ = src.split_to(consumed);
                let id = self.id(key);
                let peer = self.conns[key].peer;
                let info = ConnInfo {
                    transport: Transport::WebSocket,
                    peer,
                    upgrade: Some(&request),
                };
                match self.call_handler_deferred(key, |h, out| h.open(out, id, &info)) {
                    Some(Admission::Accept { protocol }) => {
                        if request
                            .write_accept(protocol.as_deref(), &mut self.responses)
                            .is_err()
                        {
                            // The handler chose a subprotocol the client did not offer: a bug
                            // above us, answered the safe way (no subprotocol).
                            warn!(%peer, ?protocol, "handler chose a subprotocol the client did not offer");
                            self.responses.clear();
                            let _ = request.write_accept(None, &mut self.responses);
                        }
                        let response = self.responses.split().freeze();
                        let config = &self.shared.config;
                        let reader = MessageReader::new(ReaderConfig {
                            max_message: config.max_message,
                            ..ReaderConfig::default()
                        });
                        let read_wait = self.read_wait_ticks();
                        let conn = &mut self.conns[key];
                        conn.protocol = Protocol::Ws(reader);
                        conn.phase = Phase::Open;
                        conn.admitted = true;
                        self.wheel.insert(key, u64::from(self.now + read_wait));
                        self.queue(key, response);
                        // Now the handler's greeting follows the 101, and its close is a
                        // WebSocket close of an open connection.
                        self.apply_local();
                        self.conns.contains(key)
                    }
                    Some(Admission::Refuse { status, reason }) => {
                        debug!(%peer, status, reason, "WebSocket upgrade refused by the handler");
                        handshake::write_refusal(status, reason, &mut self.responses);
                        let response = self.responses.split().freeze();
                        self.queue(key, response);
                        self.start_flushing(key);
                        self.apply_local();
                        false
                    }
                    None => {
                        self.apply_local();
                        false
                    }
                }
            }
            Ok(Decoded::NeedMore) => false,
            Err(e) => {
                info!(peer = %conn.peer, error = %e, "refusing WebSocket upgrade");
                e.write_response(&mut self.responses);
                let response = self.responses.split().freeze();
                self.queue(key, response);
                self.start_flushing(key);
                false
            }
        }
    }

    fn decode_ws(&mut self, key: usize, src: &mut BytesMut) -> bool {
        let conn = &mut self.conns[key];
        let Protocol::Ws(reader) = &mut conn.protocol else {
            return false;
        };
        match reader.read(src) {
            Ok(Decoded::Complete(message)) => {
                self.ws_message(key, message);
                true
            }
            Ok(Decoded::NeedMore) => false,
            Err(e) => {
                info!(peer = %conn.peer, error = %e, "closing WebSocket: protocol violation");
                let code = e.close_code();
                self.notify(key, Disconnect::Protocol(e.to_string()));
                self.send_close(key, code);
                self.start_flushing(key);
                false
            }
        }
    }

    fn ws_message(&mut self, key: usize, message: ws::Message) {
        let phase = self.conns[key].phase;
        match message {
            ws::Message::Binary(payload) if phase == Phase::Open => {
                self.deliver(key, Message::Binary(payload));
            }
            ws::Message::Text(payload) if phase == Phase::Open => {
                if self.shared.config.ws_text {
                    self.deliver(key, Message::Text(payload));
                } else {
                    info!(peer = %self.conns[key].peer, "closing WebSocket: text messages are not part of the protocol");
                    self.notify(key, Disconnect::Protocol("text message".into()));
                    self.send_close(key, CloseCode::UNSUPPORTED_DATA);
                    self.start_flushing(key);
                }
            }
            ws::Message::Ping(payload) if phase == Phase::Open => {
                self.send_frame(key, OpCode::Pong, payload);
            }
            ws::Message::Close(frame) => {
                let code = frame.as_ref().map(|f| f.code);
                if phase == Phase::Open {
                    self.notify(key, Disconnect::PeerClosed(code));
                    // Echo the peer's code (RFC 6455 §5.5.1); an empty close gets an empty one.
                    let payload = code.map_or_else(Bytes::new, |code| ws::close_payload(code, ""));
                    self.send_frame(key, OpCode::Close, payload);
                }
                self.start_flushing(key);
            }
            // Data while awaiting the close reply is discarded; pongs need nothing.
            _ => {}
        }
    }

    fn peer_eof(&mut self, key: usize) {
        let conn = &self.conns[key];
        match conn.phase {
            Phase::Open | Phase::Flushing => {
                self.notify(key, Disconnect::PeerClosed(None));
                // The peer may have only half-closed: what we owe it still goes out.
                self.start_flushing(key);
            }
            Phase::Handshake | Phase::AwaitingCloseReply | Phase::Lingering => {
                self.remove(key, None)
            }
        }
    }

    // ---- handler calls and commands --------------------------------------------------------

    fn id(&self, key: usize) -> ConnId {
        ConnId::new(self.index, key as u32, self.conns[key].generation)
    }

    fn read_wait_ticks(&self) -> u32 {
        Self::ticks(self.shared.config.read_wait)
    }

    /// Runs a handler callback, containing a panic to the connection it was about.
    fn call_handler<R>(
        &mut self,
        key: usize,
        f: impl FnOnce(&mut H, &mut Outbox<'_>) -> R,
    ) -> Option<R> {
        let result = self.call_handler_deferred(key, f);
        // Apply what the handler asked for now, before this connection's next frame, so an
        // echo queued before a protocol error still goes out ahead of the close.
        self.apply_local();
        result
    }

    /// Runs a handler callback without applying its commands: for `open`, whose commands
    /// must wait until the connection is admitted (and, for WebSocket, its 101 is queued).
    /// A panic is contained to the connection the call was about.
    fn call_handler_deferred<R>(
        &mut self,
        key: usize,
        f: impl FnOnce(&mut H, &mut Outbox<'_>) -> R,
    ) -> Option<R> {
        let mut out = Outbox {
            reactor: self.index,
            local: &mut self.local,
            handle: &self.handle,
        };
        let handler = &mut self.handler;
        match catch_unwind(AssertUnwindSafe(|| f(handler, &mut out))) {
            Ok(result) => Some(result),
            Err(_) => {
                let Some(conn) = self.conns.get(key) else {
                    warn!("handler panicked");
                    return None;
                };
                warn!(peer = %conn.peer, "handler panicked; closing its connection");
                if conn.phase == Phase::Handshake {
                    // No 101 went out: the client still speaks HTTP.
                    handshake::write_refusal(500, "internal error", &mut self.responses);
                    let response = self.responses.split().freeze();
                    self.queue(key, response);
                } else {
                    self.notify(key, Disconnect::HandlerPanic);
                    self.send_close(key, CloseCode::INTERNAL_ERROR);
                }
                self.start_flushing(key);
                None
            }
        }
    }

    fn deliver(&mut self, key: usize, message: Message) {
        let id = self.id(key);
        self.call_handler(key, |h, out| h.message(out, id, message));
    }

    /// Tells the handler an admitted connection ended; at most once per connection.
    fn notify(&mut self, key: usize, reason: Disconnect) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if !std::mem::replace(&mut conn.admitted, false) {
            return;
        }
        let id = self.id(key);
        self.call_handler(usize::MAX, |h, out| h.disconnect(out, id, &reason));
    }

    fn apply_local(&mut self) {
        // A command can call the handler again (a close tells it of the disconnect), which
        // queues more commands; they run after this batch, in the order they were made.
        if self.applying {
            return;
        }
        self.applying = true;
        while !self.local.is_empty() {
            let mut commands = std::mem::take(&mut self.local);
            for command in commands.drain(..) {
                self.apply(command);
            }
            if self.local.is_empty() {
                self.local = commands; // keep the allocation
            }
        }
        self.applying = false;
    }

    fn inbox_ready(&mut self) {
        self.inbox.rearm();
        while let Ok(command) = self.inbox.receiver.try_recv() {
            self.apply(command);
        }
        self.apply_local();
    }

    fn apply(&mut self, command: Command) {
        match command {
            Command::Push(id, message) => {
                let Some(key) = self.live_key(id) else { return };
                if self.conns[key].phase != Phase::Open {
                    return;
                }
                match message {
                    Message::Binary(payload) => self.send_data(key, OpCode::Binary, payload),
                    Message::Text(payload) => self.send_data(key, OpCode::Text, payload),
                }
            }
            Command::Close(id, code) => {
                let Some(key) = self.live_key(id) else { return };
                self.close_by_server(key, code, Disconnect::ClosedByServer(code));
            }
            Command::Shutdown => self.begin_drain(),
        }
    }

    fn live_key(&self, id: ConnId) -> Option<usize> {
        let conn = self.conns.get(id.key())?;
        (conn.generation == id.generation()).then_some(id.key())
    }

    fn close_by_server(&mut self, key: usize, code: CloseCode, reason: Disconnect) {
        match self.conns[key].phase {
            Phase::Open => {
                self.notify(key, reason);
                match self.conns[key].transport {
                    Transport::WebSocket => {
                        self.send_close(key, code);
                        self.conns[key].phase = Phase::AwaitingCloseReply;
                        let linger = self.now + Self::ticks(self.shared.config.close_linger);
                        self.wheel.insert(key, u64::from(linger));
                    }
                    Transport::Tcp => self.start_flushing(key),
                }
            }
            Phase::Handshake => self.remove(key, None),
            Phase::AwaitingCloseReply | Phase::Flushing | Phase::Lingering => {}
        }
    }

    fn end_of_batch(&mut self) {
        self.call_handler(usize::MAX, |h, out| h.end_of_batch(out));
    }

    // ---- writing ---------------------------------------------------------------------------

    /// Queues a data message framed for the connection's transport.
    fn send_data(&mut self, key: usize, opcode: OpCode, payload: Bytes) {
        match self.conns[key].transport {
            Transport::Tcp => self.queue(key, payload),
            Transport::WebSocket => self.send_frame(key, opcode, payload),
        }
    }

    fn send_frame(&mut self, key: usize, opcode: OpCode, payload: Bytes) {
        let header = self.frames.encode_header(opcode, true, payload.len());
        self.queue(key, header);
        if !payload.is_empty() {
            self.queue(key, payload);
        }
    }

    fn send_close(&mut self, key: usize, code: CloseCode) {
        if self.conns[key].transport == Transport::WebSocket {
            self.send_frame(key, OpCode::Close, ws::close_payload(code, ""));
        }
    }

    fn queue(&mut self, key: usize, bytes: Bytes) {
        let conn = &mut self.conns[key];
        conn.outgoing.push(&mut self.arena, bytes);
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(key);
        }
    }

    /// Stops reading; what is queued goes out, then FIN, within the close linger.
    fn start_flushing(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if matches!(conn.phase, Phase::Flushing | Phase::Lingering) {
            return;
        }
        conn.phase = Phase::Flushing;
        conn.inbound = None;
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(key);
        }
        let linger = self.now + Self::ticks(self.shared.config.close_linger);
        self.wheel.insert(key, u64::from(linger));
    }

    fn conn_writable(&mut self, key: usize) {
        if self
            .conns
            .get(key)
            .is_some_and(|c| c.outgoing.backlog_bytes() > 0)
        {
            self.flush(key);
        }
    }

    fn flush_dirty(&mut self) {
        // A flush can close a connection, which tells the handler, which can push to other
        // connections: keep going until no connection is dirty, so no chain outlives the arena.
        while !self.dirty.is_empty() {
            let mut dirty = std::mem::take(&mut self.dirty);
            for key in dirty.drain(..) {
                if let Some(conn) = self.conns.get_mut(key) {
                    conn.dirty = false;
                    self.flush(key);
                }
            }
            if self.dirty.is_empty() {
                self.dirty = dirty; // keep the allocation
            }
        }
        self.arena.clear();
    }

    fn flush(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        match conn.outgoing.flush(&mut conn.stream, &mut self.arena) {
            Ok(Flushed::All) => {
                if conn.phase == Phase::Flushing {
                    // FIN; then read until the peer's FIN so our last bytes are not reset away.
                    let _ = conn.stream.shutdown(std::net::Shutdown::Write);
                    conn.phase = Phase::Lingering;
                }
            }
            Ok(Flushed::Backlogged(queued)) => {
                if queued > self.write_cap {
                    warn!(peer = %conn.peer, queued, "closing slow consumer: write queue over the cap");
                    self.remove(key, Some(Disconnect::SlowConsumer { queued }));
                }
            }
            Err(e) => {
                debug!(peer = %conn.peer, error = %e, "write failed");
                self.remove(key, Some(Disconnect::Io(e.kind())));
            }
        }
    }

    // ---- timers, closing, draining ---------------------------------------------------------

    fn timers_due(&mut self) {
        self.wheel.advance(u64::from(self.now), &mut self.fired);
        let fired = std::mem::take(&mut self.fired);
        for &key in &fired {
            let Some(conn) = self.conns.get(key) else {
                continue;
            };
            match conn.phase {
                Phase::Handshake => {
                    info!(peer = %conn.peer, "closing WebSocket: no upgrade request within the handshake timeout");
                    self.remove(key, None);
                }
                Phase::Open => {
                    let read_wait = self.read_wait_ticks();
                    let due = conn.last_read.wrapping_add(read_wait);
                    if self.now.wrapping_sub(conn.last_read) >= read_wait {
                        info!(peer = %conn.peer, "closing silent connection: read-wait passed");
                        self.remove(key, Some(Disconnect::ReadTimeout));
                    } else {
                        self.wheel.insert(key, u64::from(due));
                    }
                }
                Phase::AwaitingCloseReply | Phase::Flushing | Phase::Lingering => {
                    self.remove(key, None)
                }
            }
        }
        self.fired = fired;
        self.fired.clear();
    }

    fn begin_drain(&mut self) {
        if self.draining_until.is_some() {
            return;
        }
        self.draining_until = Some(self.now + Self::ticks(self.shared.config.drain_timeout));
        // Stop accepting first, so the kernel sends new clients to no one (or a new process).
        for listener in [self.tcp_listener.take(), self.ws_listener.take()]
            .into_iter()
            .flatten()
        {
            let mut listener = listener;
            let _ = self.poll.registry().deregister(&mut listener);
        }
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.close_by_server(key, CloseCode::GOING_AWAY, Disconnect::Shutdown);
        }
    }

    fn drained(&self) -> bool {
        match self.draining_until {
            Some(deadline) => self.conns.is_empty() || self.now >= deadline,
            None => false,
        }
    }

    /// Drops a connection now. `reason`: tell the handler, if it has not been told yet.
    fn remove(&mut self, key: usize, reason: Option<Disconnect>) {
        if let Some(reason) = reason {
            self.notify(key, reason);
        }
        let Some(mut conn) = self.conns.try_remove(key) else {
            return;
        };
        conn.outgoing.discard();
        self.wheel.cancel(key);
        self.generations[key] = next_generation(conn.generation);
        self.shared.open_conns.fetch_sub(1, Ordering::AcqRel);
        let _ = self.poll.registry().deregister(&mut conn.stream);
    }
}

impl<H: Handler> Drop for Reactor<H> {
    fn drop(&mut self) {
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.remove(key, Some(Disconnect::Shutdown));
        }
    }
}

/// The slow-consumer cap. A cap below the largest message would close every client that is
/// sent one, however fast it reads; two of them leave room for one in flight and one queued.
fn write_cap(config: &GatewayConfig) -> usize {
    let largest = config
        .max_message
        .max(config.max_packet + switchboard_codec::packet::HEADER_LEN);
    config.write_queue_cap.max(largest.saturating_mul(2))
}

/// Whether `accept` failed because the process or the system ran out of descriptors or memory.
fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Reads at most `want` bytes onto the end of `buf`.
///
/// Safe code must hand `read` initialised memory, so the new room is zeroed first. That is
/// a memset of at most `want` bytes next to a system call; `want` adapts to the traffic, so
/// an idle chat connection zeroes 4 KiB per read, not 64 KiB.
fn read_into(
    stream: &mut mio::net::TcpStream,
    buf: &mut BytesMut,
    want: usize,
) -> io::Result<usize> {
    let start = buf.len();
    buf.resize(start + want, 0);
    let result = stream.read(&mut buf[start..]);
    let got = *result.as_ref().unwrap_or(&0);
    buf.truncate(start + got);
    result
}
