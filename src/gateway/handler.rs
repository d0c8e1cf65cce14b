//! The one interface between the reactors and whatever runs above them (echo, the logic core).
//!
//! After the design document's Acceptor / MessageListener / StateListener: the reactor asks
//! the handler to admit each new connection, gives it every message, and tells it of every
//! disconnect with the reason. Framed TCP and WebSocket look the same from here: a message is
//! a `Bytes` (on TCP, one whole packet, header included), and a push is a `Bytes` the reactor
//! frames for the connection's transport.
//!
//! Each reactor thread owns its own handler value, so a handler needs no lock for state it
//! keeps per reactor. Handler methods run on the reactor thread: they must never block.
//!
//! A handler whose downstream is full (the logic core's queue) does not block and does not
//! grow: it says so through [`Handler::wants_input`]. The reactor then reads no socket and
//! accepts no connection, but keeps running its timers, its inbox and its writes, so pushes
//! still flow; the kernel's receive queues and TCP flow control hold the clients back. The
//! handler wakes the reactor ([`GatewayHandle::wake`]) once it has room, and reading resumes
//! with the connections that became readable meanwhile (epoll is edge-triggered: they are
//! remembered, so no input is stranded).

use std::net::SocketAddr;

use bytes::Bytes;
use switchboard_codec::ws::handshake::UpgradeRequest;
use switchboard_codec::ws::CloseCode;

use super::conn_id::ConnId;
use super::handle::{Command, GatewayHandle};

/// Which listener a connection came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Switchboard packets straight on TCP.
    Tcp,
    /// Switchboard packets in WebSocket binary messages.
    WebSocket,
}

/// What the reactor knows about a connection when it asks the handler to admit it.
#[derive(Debug)]
pub struct ConnInfo<'a> {
    /// The listener it came through.
    pub transport: Transport,
    /// The client's address: the peer's as the kernel reports it or, with `--proxy-protocol`,
    /// the source its load balancer's PROXY header named.
    pub peer: SocketAddr,
    /// The WebSocket upgrade request (path, query, Origin, subprotocols, X-Forwarded-For).
    pub upgrade: Option<&'a UpgradeRequest>,
}

/// The handler's answer to a new connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Serve it; for WebSocket, optionally with the chosen subprotocol.
    Accept {
        /// The subprotocol to confirm in the 101 response (one the client offered).
        protocol: Option<String>,
    },
    /// Refuse it. A WebSocket client gets this HTTP status and reason; a TCP client is closed.
    Refuse {
        /// HTTP status, e.g. 403 or 404.
        status: u16,
        /// A short reason for the response body and the log.
        reason: &'static str,
    },
}

impl Admission {
    /// Accept without a subprotocol.
    pub const ACCEPT: Admission = Admission::Accept { protocol: None };
}

/// One message from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A framed TCP packet (whole, header included) or a WebSocket binary message.
    Binary(Bytes),
    /// A WebSocket text message (valid UTF-8); only when text is enabled.
    Text(Bytes),
}

impl Message {
    /// The bytes of the message.
    pub fn payload(&self) -> &Bytes {
        match self {
            Message::Binary(b) | Message::Text(b) => b,
        }
    }
}

/// Why a connection ended. Given to the handler exactly once per admitted connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disconnect {
    /// The peer closed: TCP end of stream, or a WebSocket close frame with this code.
    PeerClosed(Option<CloseCode>),
    /// Nothing was read for the read-wait (heartbeat) time.
    ReadTimeout,
    /// The peer broke the protocol; the reason names the rule.
    Protocol(String),
    /// The peer did not read: what the server held for it (write queue, unfinished input)
    /// passed the cap, or the process went over its budget of queued bytes and this was one
    /// of the largest queues.
    SlowConsumer {
        /// Bytes held for it when it was cut.
        queued: usize,
    },
    /// A socket error.
    Io(std::io::ErrorKind),
    /// The handler (or another thread through the handle) asked for the close.
    ClosedByServer(CloseCode),
    /// The gateway is shutting down.
    Shutdown,
    /// The handler panicked while handling this connection.
    HandlerPanic,
}

/// Where a handler puts what it wants done: pushes and closes. Commands for connections of
/// this reactor are applied when the handler returns; others go to their reactor's inbox.
pub struct Outbox<'a> {
    pub(crate) reactor: usize,
    pub(crate) local: &'a mut Vec<Command>,
    pub(crate) handle: &'a GatewayHandle,
}

impl Outbox<'_> {
    /// Sends a binary message (on TCP: raw bytes, normally one encoded packet).
    pub fn push(&mut self, conn: ConnId, payload: Bytes) {
        self.command(Command::Push(conn, Message::Binary(payload)));
    }

    /// Sends a message with its kind (text is for WebSocket echo; on TCP it goes out raw).
    pub fn send(&mut self, conn: ConnId, message: Message) {
        self.command(Command::Push(conn, message));
    }

    /// Closes a connection after what was pushed before has been written.
    pub fn close(&mut self, conn: ConnId, code: CloseCode) {
        self.command(Command::Close(conn, code));
    }

    /// A handle that reaches every reactor, to keep for use from other threads.
    pub fn handle(&self) -> &GatewayHandle {
        self.handle
    }

    fn command(&mut self, command: Command) {
        if command.conn().map(ConnId::reactor) == Some(self.reactor) {
            self.local.push(command);
        } else {
            self.handle.send(command);
        }
    }
}

/// What runs above the reactors. One value per reactor thread.
pub trait Handler: Send + 'static {
    /// A connection finished its transport handshake (for TCP: was accepted).
    fn open(&mut self, out: &mut Outbox<'_>, conn: ConnId, info: &ConnInfo<'_>) -> Admission;

    /// A whole message arrived on an admitted connection.
    fn message(&mut self, out: &mut Outbox<'_>, conn: ConnId, message: Message);

    /// A whole message that came past the connection's message rate, within the grace of
    /// [`GatewayConfig::message_limit`](super::GatewayConfig::message_limit): it is not a
    /// [`Handler::message`]. The handler says "slow down" its own way (the chat server answers
    /// RATE_LIMITED) or drops it; the gateway closes the connection itself (1008) once the
    /// grace is spent too. By default the connection is closed at once with 1008.
    fn over_rate(&mut self, out: &mut Outbox<'_>, conn: ConnId, message: Message) {
        let _ = message;
        out.close(conn, CloseCode::POLICY_VIOLATION);
    }

    /// An admitted connection ended. Pushes to it are dropped from now on.
    fn disconnect(&mut self, out: &mut Outbox<'_>, conn: ConnId, reason: &Disconnect);

    /// A drain ([`GatewayHandle::drain`]) reached this connection in its spread of closes:
    /// the handler says goodbye its own way and closes it. The chat server sends KICKED
    /// (SERVER_SHUTDOWN) with a reconnect delay first, through its logic core; by default the
    /// connection is closed at once, with 1012 (service restart) on WebSocket. A connection
    /// the handler leaves open is closed when the drain's deadline passes.
    fn drain(&mut self, out: &mut Outbox<'_>, conn: ConnId) {
        out.close(conn, CloseCode::SERVICE_RESTART);
    }

    /// The reactor finished one pass over its ready events: the place to hand a batch of
    /// events to another thread with one wake-up instead of one per message.
    fn end_of_batch(&mut self, _out: &mut Outbox<'_>) {}

    /// Asked at the end of every pass, after [`Handler::end_of_batch`], a pass that only a
    /// [`GatewayHandle::wake`] caused included: the place for a handler that does work of
    /// its own on the reactor's thread (the chat server's logic core, with one reactor) to
    /// take what other threads left for it and push its answers in this same pass. Returns
    /// how long the reactor may wait for I/O before asking again; `None`: no deadline of its
    /// own (whoever leaves it work wakes the reactor through the handle).
    fn poll(&mut self, _out: &mut Outbox<'_>) -> Option<std::time::Duration> {
        None
    }

    /// Whether the handler can take more input now. Asked before each connection's turn to
    /// read and before accepting. `false` pauses reading and accepting on this reactor (not
    /// timers, inbox or writes) until a later pass gets `true`; a handler that answers
    /// `false` must make sure [`GatewayHandle::wake`] is called for this reactor once it has
    /// room, or the reactor only asks again when something else wakes it.
    ///
    /// Events keep coming while paused, a few: disconnects (timers, closes from the inbox),
    /// and what the turn that was reading when room ran out decoded. At most one per
    /// connection besides that turn, so a handler that keeps them stays bounded.
    fn wants_input(&mut self) -> bool {
        true
    }
}
