//! One reactor thread: a `mio::Poll`, its own listeners, a slab of connections, a timer wheel,
//! one scratch read buffer, and an inbox. The event loop below is the table of contents:
//! `accept_ready`, `conn_readable`, `conn_writable`, `inbox_ready`, `timers_due`, `flush_dirty`.
//!
//! Never blocks except in `poll`. Reads land in the shared scratch buffer and whole frames are
//! split off it without copying; only the bytes of an unfinished frame move into the
//! connection. Handler commands for this reactor's connections are applied right after the
//! handler returns; writes are gathered per connection and flushed once per pass.
//! `input.rs` holds the read path (bytes to events), `output.rs` the write and close path.
//!
//! While the handler says it can take no input (`Handler::wants_input`), the reactor reads and
//! accepts nothing but still runs its inbox, timers and writes; connections that became
//! readable meanwhile are kept in `unread` and read when the handler has room again.

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use switchboard_codec::packet::PacketDecoder;
use switchboard_codec::ws::handshake;
use switchboard_codec::ws::{CloseCode, FrameEncoder, OpCode, Server};
use tracing::{debug, info, warn};

use super::clock::{self, since, stamp, ReactorClock, TICK_MS};
use super::config::GatewayConfig;
use super::conn::{Conn, Phase};
use super::conn_id::{next_generation, ConnId};
use super::control::PongSlots;
use super::handle::{Command, GatewayHandle, InboxReceiver};
use super::handler::{Admission, ConnInfo, Disconnect, Handler, Message, Outbox, Transport};
use super::outgoing::PushArena;
use super::timer_wheel::TimerWheel;

mod input;
mod memory;
mod output;

use output::write_cap;

pub(crate) const TCP_LISTENER: Token = Token(usize::MAX - 1);
pub(crate) const WS_LISTENER: Token = Token(usize::MAX - 2);
pub(crate) const WAKER: Token = Token(usize::MAX - 3);

/// Reads per readiness event before other connections get their turn.
const READ_BUDGET: usize = 16;
/// Bytes per readiness event before other connections get their turn: with the read count
/// alone, a connection that always has input could take 16 × 64 KiB per turn.
const READ_BYTES_BUDGET: usize = 64 << 10;
/// Messages and control frames decoded per readiness event before other connections get
/// their turn: 64 KiB of 14-byte packets would otherwise be 4,700 messages in one turn,
/// against one for each quiet connection (see docs/performance.md, "Hostile clients").
const FRAME_BUDGET: usize = 64;
/// Trim the allocator, when the reactor is about to wait for events, after this many bytes
/// went through its buffers and queues (read, or queued in a backlog) since the last trim...
const TRIM_AFTER_CHURN: usize = 8 << 20;
/// ...at most this often (ticks), so a load that comes and goes does not make the reactor
/// spend its time in `malloc_trim` and in faulting the returned pages back in.
const TRIM_EVERY_TICKS: u64 = 50;
/// Accepts per readiness event before the connections already open get their turn.
const ACCEPT_BUDGET: usize = 256;
/// The most one `read` takes. Reads land in a window of this size, initialised once, and only
/// the bytes that arrived are copied on: zeroing a fresh window per read (what safe code must do
/// to read straight into a `BytesMut`) cost more instructions than everything else the reactor
/// did for a small message (callgrind under loadtest: 77 %).
const READ_WINDOW: usize = 64 << 10;
/// Capacity given to a connection's partial-frame buffer when it is created.
const MIN_PARTIAL: usize = 4 << 10;
/// The scratch buffer grows in chunks this size; frames split off it keep their chunk alive.
/// One largest read: a bigger chunk is touched page by page as reads walk through it, which
/// costs resident memory per reactor for nothing (measured: 256 KiB chunks were fully resident).
const SCRATCH_CHUNK: usize = READ_WINDOW;
/// After EMFILE/ENFILE, retry accepting this often instead of spinning on the listener.
const ACCEPT_RETRY_TICKS: u64 = 10;

/// State shared by the reactors of one gateway.
pub(crate) struct Shared {
    pub(crate) config: GatewayConfig,
    pub(crate) open_conns: AtomicUsize,
    /// Bytes in the write backlogs of every reactor, as each published at the end of its
    /// last pass (see `--max-queued-bytes`).
    pub(crate) queued_bytes: AtomicUsize,
    /// Connections closed because the process went over `--max-queued-bytes`.
    pub(crate) budget_closes: AtomicU64,
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
    /// Where every read lands first (see [`READ_WINDOW`]).
    read_window: Box<[u8]>,
    inbox: InboxReceiver,
    local: Vec<Command>,
    applying: bool,
    arena: PushArena,
    dirty: Vec<usize>,
    /// Connections that used up their read budget and may still have input.
    again: Vec<usize>,
    accept_again: bool,
    accept_paused_at: Option<u64>,
    /// Warned about this pause already (reset by the next successful accept).
    accept_paused_warned: bool,
    handler: H,
    handle: GatewayHandle,
    shared: Arc<Shared>,
    clock: ReactorClock,
    /// The tick this pass runs at (read once per pass).
    now: u64,
    packets: PacketDecoder,
    frames: FrameEncoder<Server>,
    responses: BytesMut,
    /// The slow-consumer cap actually applied: never below two of the largest messages.
    write_cap: usize,
    /// Pongs owed, one per connection at most, sent at the end of the pass.
    pongs: PongSlots,
    /// Connections with a write backlog: where to look for the largest queues.
    backlogged: HashSet<usize>,
    /// Connections not read because they hold more than the slow-consumer cap; the next flush
    /// that leaves one under the cap resumes reading it.
    read_paused: HashSet<usize>,
    /// The handler said it can take no input: nothing is read or accepted until it has room.
    input_paused: bool,
    /// Connections that were readable (or owed a turn) while input was paused.
    unread: HashSet<usize>,
    /// A listener was readable while input was paused.
    accept_unread: bool,
    /// Bytes in this reactor's write backlogs, and what of it is published in `Shared`.
    queued_here: usize,
    queued_published: usize,
    /// Decode budget left to the connection being read (see [`FRAME_BUDGET`]).
    frames_left: usize,
    /// Bytes read or queued in backlogs since the allocator was last trimmed: roughly what
    /// was allocated and freed again (see [`TRIM_AFTER_CHURN`]).
    churn: usize,
    last_trim: u64,
    draining_until: Option<u64>,
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
        let start = shared.config.clock_start_ticks;
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
            read_window: vec![0; READ_WINDOW].into_boxed_slice(),
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
            clock: ReactorClock::new(start),
            now: start,
            packets: PacketDecoder::new(max_packet),
            frames: FrameEncoder::new(),
            responses: BytesMut::new(),
            write_cap,
            pongs: PongSlots::default(),
            backlogged: HashSet::new(),
            read_paused: HashSet::new(),
            input_paused: false,
            unread: HashSet::new(),
            accept_unread: false,
            queued_here: 0,
            queued_published: 0,
            frames_left: FRAME_BUDGET,
            churn: 0,
            last_trim: start,
            draining_until: None,
        })
    }

    /// Runs until a shutdown has drained every connection (or its deadline passed).
    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.poll_timeout();
            if timeout != Some(Duration::ZERO) {
                self.trim_after_churn();
            }
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    warn!(reactor = self.index, error = %e, "poll failed; reactor exits");
                    return;
                }
            }
            self.now = self.tick();
            self.resume_input();
            let waiting = std::mem::take(&mut self.again);
            for event in events.iter() {
                match event.token() {
                    TCP_LISTENER => self.accept_ready(Transport::Tcp),
                    WS_LISTENER => self.accept_ready(Transport::WebSocket),
                    WAKER => {} // the inbox is drained below on every pass
                    Token(key) => {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            let until_eof = event.is_read_closed() || event.is_error();
                            self.conn_readable(key, until_eof);
                        }
                        if event.is_writable() {
                            self.conn_writable(key);
                        }
                    }
                }
            }
            self.revisit(waiting);
            self.inbox_ready();
            self.timers_due();
            self.end_of_batch();
            self.flush_dirty();
            if self.drained() {
                return;
            }
        }
    }

    fn tick(&self) -> u64 {
        self.clock.now()
    }

    fn ticks(duration: Duration) -> u64 {
        clock::ticks(duration)
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if !self.again.is_empty() || self.accept_again {
            return Some(Duration::ZERO);
        }
        let mut timeout = self.wheel.next_deadline().map(|deadline| {
            Duration::from_millis(deadline.saturating_sub(self.tick()).saturating_mul(TICK_MS))
        });
        if self.draining_until.is_some()
            || self.accept_paused_at.is_some()
            || self.churn >= TRIM_AFTER_CHURN
        {
            let cap = Duration::from_millis(ACCEPT_RETRY_TICKS * TICK_MS);
            timeout = Some(timeout.map_or(cap, |t| t.min(cap)));
        }
        timeout
    }

    // ---- pausing input ---------------------------------------------------------------------

    /// Whether input may be read now; if not, the reactor is paused until the handler has room.
    fn input_allowed(&mut self) -> bool {
        if self.input_paused {
            return false;
        }
        let handler = &mut self.handler;
        // A panic here says nothing about any connection: read on.
        let wants = catch_unwind(AssertUnwindSafe(|| handler.wants_input())).unwrap_or(true);
        if !wants {
            debug!(reactor = self.index, "input paused: the handler is full");
            self.input_paused = true;
        }
        wants
    }

    /// Once the handler has room again, gives every connection that was readable meanwhile
    /// (and the listeners) a turn in this pass.
    fn resume_input(&mut self) {
        if !self.input_paused {
            return;
        }
        let handler = &mut self.handler;
        if !catch_unwind(AssertUnwindSafe(|| handler.wants_input())).unwrap_or(true) {
            return;
        }
        debug!(reactor = self.index, "input resumed");
        self.input_paused = false;
        self.again.extend(self.unread.drain());
        if std::mem::take(&mut self.accept_unread) {
            self.accept_again = true;
        }
    }

    // ---- accepting -------------------------------------------------------------------------

    fn accept_ready(&mut self, transport: Transport) {
        if !self.input_allowed() {
            // A new connection is input too (its handshake, its open event): it waits in the
            // kernel's backlog.
            self.accept_unread = true;
            return;
        }
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
        if let Some(trusted) = &shared.config.proxy_protocol {
            if !trusted.contains(peer.ip()) {
                info!(%peer, "closing connection: PROXY header expected, peer not in --trusted-proxies");
                return; // dropping the stream closes it
            }
        }
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
        let control = self.shared.config.control_limit;
        let proxy_header = self.shared.config.proxy_protocol.is_some();
        entry.insert(Conn::new(
            stream,
            peer,
            transport,
            generation,
            stamp(self.now),
            control,
            proxy_header,
        ));
        if proxy_header || transport == Transport::WebSocket {
            // The PROXY header and the upgrade request share the one handshake deadline.
            let deadline = self.now + Self::ticks(self.shared.config.handshake_timeout);
            self.wheel.insert(key, deadline);
        } else {
            self.open_tcp(key);
        }
    }

    /// Asks the handler to admit a TCP connection, once its peer is known (at accept, or after
    /// its PROXY header), and starts its read-wait.
    fn open_tcp(&mut self, key: usize) {
        self.wheel.insert(key, self.now + self.read_wait_ticks());
        let id = self.id(key);
        let peer = self.conns[key].peer;
        let info = ConnInfo {
            transport: Transport::Tcp,
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

    // ---- handler calls and commands --------------------------------------------------------

    fn id(&self, key: usize) -> ConnId {
        ConnId::new(self.index, key as u32, self.conns[key].generation)
    }

    fn read_wait_ticks(&self) -> u64 {
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
        // Connections whose pushes did not fit go first, so nothing queued after the gap
        // reaches them (see `handle`).
        for id in self.inbox.take_overflowed() {
            let Some(key) = self.live_key(id) else {
                continue;
            };
            warn!(peer = %self.conns[key].peer, "closing connection: its pushes overflowed the reactor's inbox");
            let queued = self.conns[key].outgoing.backlog_bytes();
            self.close_by_server(
                key,
                CloseCode::TRY_AGAIN_LATER,
                Disconnect::SlowConsumer { queued },
            );
        }
        while let Some(command) = self.inbox.take() {
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
                        self.wheel.insert(key, linger);
                    }
                    Transport::Tcp => self.start_flushing(key),
                }
            }
            Phase::ProxyHeader | Phase::Handshake => self.remove(key, None),
            Phase::AwaitingCloseReply | Phase::Flushing | Phase::Lingering => {}
        }
    }

    fn end_of_batch(&mut self) {
        self.call_handler(usize::MAX, |h, out| h.end_of_batch(out));
    }

    // ---- timers, closing, draining ---------------------------------------------------------

    fn timers_due(&mut self) {
        self.wheel.advance(self.now, &mut self.fired);
        let fired = std::mem::take(&mut self.fired);
        for &key in &fired {
            let Some(conn) = self.conns.get(key) else {
                continue;
            };
            match conn.phase {
                Phase::ProxyHeader => {
                    info!(peer = %conn.peer, "closing connection: no PROXY header within the handshake timeout");
                    self.remove(key, None);
                }
                Phase::Handshake => {
                    info!(peer = %conn.peer, "closing WebSocket: no upgrade request within the handshake timeout");
                    self.remove(key, None);
                }
                Phase::Open => {
                    let read_wait = self.read_wait_ticks();
                    let silent = since(self.now, conn.last_read);
                    // Input waiting unread because the handler was full is not silence.
                    if silent >= read_wait && self.unread.contains(&key) {
                        self.wheel.insert(key, self.now + read_wait);
                    } else if silent >= read_wait {
                        info!(peer = %conn.peer, "closing silent connection: read-wait passed");
                        self.remove(key, Some(Disconnect::ReadTimeout));
                    } else {
                        self.wheel.insert(key, self.now + (read_wait - silent));
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
        self.account_backlog(key, conn.outgoing.backlog_bytes(), 0);
        self.pongs.forget(key);
        self.read_paused.remove(&key);
        self.unread.remove(&key);
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

/// Whether `accept` failed because the process or the system ran out of descriptors or memory.
fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}
