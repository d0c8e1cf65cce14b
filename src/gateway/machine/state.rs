//! One connection's machine: its phase, protocol state, unfinished input and outgoing bytes,
//! and the rules that move it between phases: admission, commands from the handler, the one
//! timer (handshake deadline, read-wait, close linger), and the ways it ends.
//!
//! Invariants: `inbound` is `Some` only while it holds the start of a frame (an idle
//! connection holds no read buffer); `outgoing` holds no queue while idle; the handler is told
//! of the end of an admitted connection exactly once (`admitted` is cleared when it is).

use std::net::SocketAddr;

use bytes::BytesMut;
use switchboard_codec::proxy::ProxyHeader;
use switchboard_codec::ws::handshake::{self, ServerHandshake, UpgradeRequest};
use switchboard_codec::ws::{CloseCode, MessageReader, OpCode, ReaderConfig, Server};
use tracing::{debug, info, warn};

use super::super::clock::{since, stamp, Stamp};
use super::super::handler::{Admission, Disconnect, Message, Transport};
use super::super::limits::rate::RateCell;
use super::super::limits::IpRefusal;
use super::super::metrics::Refusal;
use super::outgoing::Outgoing;
use super::tls::TlsSession;
use super::workspace::TLS_FAILED;
use super::{Event, Workspace};

/// Where a connection is in its life. Each phase gives the connection's one timer its
/// meaning: the handshake deadline, the read-wait (heartbeat), or the close linger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// `--proxy-protocol`: waiting for the PROXY header that must open the connection, under
    /// the handshake deadline. Nothing else is read and the handler has not been asked yet.
    ProxyHeader,
    /// TLS listeners: the TLS handshake, under the handshake deadline (after any PROXY
    /// header, which is plaintext before the ClientHello).
    TlsHandshake,
    /// WebSocket: waiting for the complete upgrade request (and then the handler's answer).
    Handshake,
    /// Serving messages.
    Open,
    /// WebSocket: we sent a close frame and read on until the peer's close frame arrives.
    AwaitingCloseReply,
    /// Not reading any more; writing what is queued, then FIN.
    Flushing,
    /// FIN sent; discarding input until the peer's FIN, so the kernel never answers our last
    /// bytes with a reset.
    Lingering,
    /// Finished: [`Event::Close`] is queued and nothing else will be.
    Closed,
}

/// The per-transport parser state.
pub(super) enum Protocol {
    /// Before the PROXY header: the codec's parser keeps no state between reads (the bytes so
    /// far wait in `inbound`), so this needs none either.
    ProxyHeader,
    /// During the TLS handshake no plaintext arrives, so there is nothing to parse.
    TlsHandshake,
    /// Framed packets; the workspace's `PacketDecoder` needs no per-connection state.
    Tcp,
    /// WebSocket before the 101: the incremental request parser (boxed: short-lived).
    WsHandshake(Box<ServerHandshake>),
    /// WebSocket after the 101: frames, reassembly and UTF-8 state.
    Ws(MessageReader<Server>),
}

/// A connection's yes/no facts, packed into one byte.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Flags(u8);

impl Flags {
    /// [`Event::Transmit`] is queued and the bytes not yet sent.
    pub(super) const DIRTY: u8 = 1;
    /// Its client address holds a place in the per-IP table (the driver frees it at removal).
    pub(super) const IP_COUNTED: u8 = 2;

    pub(super) fn has(self, flag: u8) -> bool {
        self.0 & flag != 0
    }

    pub(super) fn set(&mut self, flag: u8, on: bool) {
        if on {
            self.0 |= flag;
        } else {
            self.0 &= !flag;
        }
    }
}

/// One connection, as bytes and time in, events out.
pub(crate) struct Machine {
    /// Tick of the last read (the read-wait needs no timer operation per read).
    pub(super) last_read: Stamp,
    pub(super) phase: Phase,
    pub(super) transport: Transport,
    /// The handler accepted it and has not yet been told it ended.
    pub(super) admitted: bool,
    /// [`Flags::DIRTY`] and [`Flags::IP_COUNTED`], in one byte: a separate `bool` for the
    /// second would cost 8 bytes per connection in padding.
    pub(super) flags: Flags,
    /// When its next WebSocket control frame is due (`--control-rate`).
    pub(super) control: RateCell,
    /// When its next message is due (`--message-rate`).
    pub(super) messages: RateCell,
    /// Boxed: a `BytesMut` is 32 bytes, and most connections are idle most of the time.
    pub(super) inbound: Option<Box<BytesMut>>,
    pub(super) outgoing: Outgoing,
    pub(super) protocol: Protocol,
    pub(super) peer: SocketAddr,
    /// The TLS session when the listeners speak TLS (boxed: 8 bytes here for plain ones).
    pub(super) tls: Option<Box<TlsSession>>,
}

impl Machine {
    /// A connection just accepted from `peer` on `transport`, known to its driver as `key`.
    /// Queues its first deadline and, for framed TCP without a PROXY header, its admission.
    pub(crate) fn new(
        ws: &mut Workspace,
        key: usize,
        peer: SocketAddr,
        transport: Transport,
    ) -> Machine {
        let proxy_header = ws.limits.proxy_header.covers(transport);
        let mut machine = Machine {
            last_read: stamp(ws.now),
            phase: Phase::ProxyHeader,
            transport,
            admitted: false,
            flags: Flags::default(),
            control: RateCell::new(ws.now),
            messages: RateCell::new(ws.now),
            inbound: None,
            outgoing: Outgoing::default(),
            protocol: Protocol::ProxyHeader,
            peer,
            tls: None,
        };
        let tls = ws.limits.tls.is_some();
        if proxy_header || tls || transport == Transport::WebSocket {
            // The PROXY header, the TLS handshake and the upgrade request share the one
            // handshake deadline.
            ws.push(key, Event::Deadline(ws.now + ws.limits.handshake_ticks));
        }
        if !proxy_header {
            machine.begin_tls_or_transport(ws, key);
        }
        machine
    }

    /// Whether the handler admitted the connection and has not been told of its end: a
    /// drain hands such a connection to the handler, and closes any other itself.
    pub(crate) fn is_admitted(&self) -> bool {
        self.admitted
    }

    #[cfg(test)]
    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    pub(crate) fn peer(&self) -> SocketAddr {
        self.peer
    }

    pub(crate) fn transport(&self) -> Transport {
        self.transport
    }

    /// Whether its client address holds a place in the per-IP table, to be released when
    /// the connection goes.
    pub(crate) fn ip_counted(&self) -> bool {
        self.flags.has(Flags::IP_COUNTED)
    }

    /// The driver counted its client address at accept.
    pub(crate) fn set_ip_counted(&mut self) {
        self.flags.set(Flags::IP_COUNTED, true);
    }

    /// Whether input still means something (as opposed to being discarded while closing).
    pub(crate) fn reads_frames(&self) -> bool {
        matches!(
            self.phase,
            Phase::ProxyHeader
                | Phase::TlsHandshake
                | Phase::Handshake
                | Phase::Open
                | Phase::AwaitingCloseReply
        )
    }

    /// After any PROXY header: the TLS handshake on TLS listeners, else the transport.
    pub(super) fn begin_tls_or_transport(&mut self, ws: &mut Workspace, key: usize) {
        let Some(config) = ws.limits.tls.clone() else {
            self.begin_transport(ws, key);
            return;
        };
        match TlsSession::new(config) {
            Ok(session) => {
                self.tls = Some(Box::new(session));
                self.phase = Phase::TlsHandshake;
                self.protocol = Protocol::TlsHandshake;
            }
            Err(e) => {
                warn!(peer = %self.peer, error = %e, "cannot start a TLS session");
                self.finish(ws, key, None);
            }
        }
    }

    /// Starts the transport's own first phase, once any PROXY header is read: framed TCP is
    /// open at once (the handler is asked to admit it), WebSocket waits for its upgrade.
    pub(super) fn begin_transport(&mut self, ws: &mut Workspace, key: usize) {
        match self.transport {
            Transport::Tcp => {
                self.phase = Phase::Open;
                self.protocol = Protocol::Tcp;
                ws.push(key, Event::Deadline(ws.now + ws.limits.read_wait_ticks));
                ws.push(key, Event::Open(None));
            }
            Transport::WebSocket => {
                self.phase = Phase::Handshake;
                self.protocol = Protocol::WsHandshake(Box::new(ServerHandshake::new()));
            }
        }
    }

    /// Ends the PROXY phase with the `header` that opened the connection: the client it names
    /// becomes the peer (a LOCAL or UNKNOWN header keeps the real one, as the spec asks).
    pub(super) fn proxy_header_read(
        &mut self,
        ws: &mut Workspace,
        key: usize,
        header: ProxyHeader,
    ) {
        let balancer = self.peer;
        if let ProxyHeader::Proxied { source, .. } = header {
            self.peer = source;
        }
        debug!(peer = %self.peer, %balancer, ?header, "PROXY header read");
        if let Some(table) = &ws.per_ip {
            // Only now is the client's address known: behind a balancer every connection
            // comes from the balancer's.
            match table.admit(self.peer.ip(), ws.now) {
                Ok(()) => self.flags.set(Flags::IP_COUNTED, true),
                Err(refusal) => {
                    info!(peer = %self.peer, %balancer, "connection refused: {refusal}");
                    ws.refuse(match refusal {
                        IpRefusal::TooManyConnections => Refusal::IpConnections,
                        IpRefusal::ConnectRate => Refusal::IpConnectRate,
                    });
                    self.finish(ws, key, None);
                    return;
                }
            }
        }
        self.begin_tls_or_transport(ws, key);
    }

    // ---- the handler's answers and commands -----------------------------------------------

    /// The handler's answer to [`Event::Open`] (`None`: it panicked). `upgrade` is the request
    /// the event carried.
    pub(crate) fn on_admission(
        &mut self,
        ws: &mut Workspace,
        key: usize,
        upgrade: Option<&UpgradeRequest>,
        answer: Option<Admission>,
    ) {
        if self.phase == Phase::Closed {
            return;
        }
        match (answer, upgrade) {
            (Some(Admission::Accept { protocol }), Some(request)) => {
                self.upgraded(ws, key, request, protocol.as_deref())
            }
            (Some(Admission::Accept { .. }), None) => self.admitted = true,
            (Some(Admission::Refuse { status, reason }), Some(_)) => {
                debug!(peer = %self.peer, status, reason, "WebSocket upgrade refused by the handler");
                ws.refuse(Refusal::Handler);
                handshake::write_refusal(status, reason, &mut ws.responses);
                let response = ws.responses.split().freeze();
                self.queue(ws, key, response);
                self.start_flushing(ws, key);
            }
            (Some(Admission::Refuse { reason, .. }), None) => {
                debug!(peer = %self.peer, reason, "TCP connection refused by the handler");
                ws.refuse(Refusal::Handler);
                self.finish(ws, key, None);
            }
            (None, Some(_)) => self.on_handler_panic(ws, key),
            (None, None) => self.finish(ws, key, None),
        }
    }

    /// The 101 goes out and frames are read from now on.
    fn upgraded(
        &mut self,
        ws: &mut Workspace,
        key: usize,
        request: &UpgradeRequest,
        protocol: Option<&str>,
    ) {
        if request.write_accept(protocol, &mut ws.responses).is_err() {
            // The handler chose a subprotocol the client did not offer: a bug above us,
            // answered the safe way (no subprotocol).
            warn!(peer = %self.peer, ?protocol, "handler chose a subprotocol the client did not offer");
            ws.responses.clear();
            let _ = request.write_accept(None, &mut ws.responses);
        }
        let response = ws.responses.split().freeze();
        self.protocol = Protocol::Ws(MessageReader::new(ReaderConfig {
            max_message: ws.limits.max_message,
            ..ReaderConfig::default()
        }));
        self.phase = Phase::Open;
        self.admitted = true;
        ws.push(key, Event::Deadline(ws.now + ws.limits.read_wait_ticks));
        self.queue(ws, key, response);
    }

    /// The handler panicked while handling this connection: it is closed, with a 500 if it
    /// still speaks HTTP, with 1011 if it is an open WebSocket.
    pub(crate) fn on_handler_panic(&mut self, ws: &mut Workspace, key: usize) {
        warn!(peer = %self.peer, "handler panicked; closing its connection");
        match self.phase {
            Phase::Handshake => {
                handshake::write_refusal(500, "internal error", &mut ws.responses);
                let response = ws.responses.split().freeze();
                self.queue(ws, key, response);
                self.start_flushing(ws, key);
            }
            Phase::Closed => {}
            _ => {
                self.notify(ws, key, Disconnect::HandlerPanic);
                self.send_close(ws, key, CloseCode::INTERNAL_ERROR);
                self.start_flushing(ws, key);
            }
        }
    }

    /// A message the handler pushed; dropped unless the connection is open.
    pub(crate) fn send(&mut self, ws: &mut Workspace, key: usize, message: Message) {
        if self.phase != Phase::Open {
            return;
        }
        match message {
            Message::Binary(payload) => self.send_data(ws, key, OpCode::Binary, payload),
            Message::Text(payload) => self.send_data(ws, key, OpCode::Text, payload),
        }
    }

    /// The server ends the connection, after what was queued before: a WebSocket gets a
    /// close frame with `code` and waits for the reply; framed TCP flushes and sends FIN.
    /// The handler is told `reason`. Before admission the connection is simply dropped.
    pub(crate) fn close(
        &mut self,
        ws: &mut Workspace,
        key: usize,
        code: CloseCode,
        reason: Disconnect,
    ) {
        match self.phase {
            Phase::Open => {
                self.notify(ws, key, reason);
                match self.transport {
                    Transport::WebSocket => {
                        self.send_close(ws, key, code);
                        self.phase = Phase::AwaitingCloseReply;
                        ws.push(key, Event::Deadline(ws.now + ws.limits.linger_ticks));
                    }
                    Transport::Tcp => self.start_flushing(ws, key),
                }
            }
            Phase::ProxyHeader | Phase::TlsHandshake | Phase::Handshake => {
                self.finish(ws, key, None)
            }
            Phase::AwaitingCloseReply | Phase::Flushing | Phase::Lingering | Phase::Closed => {}
        }
    }

    /// Drops the connection at once, telling the handler `reason` if it was admitted.
    pub(crate) fn abort(&mut self, ws: &mut Workspace, key: usize, reason: Disconnect) {
        self.finish(ws, key, Some(reason));
    }

    // ---- time ------------------------------------------------------------------------------

    /// The deadline last queued with [`Event::Deadline`] passed. `input_waiting`: the driver
    /// holds input it has not read yet (its handler was full), which is not silence.
    pub(crate) fn on_timer(&mut self, ws: &mut Workspace, key: usize, input_waiting: bool) {
        match self.phase {
            Phase::ProxyHeader => {
                info!(peer = %self.peer, "closing connection: no PROXY header within the handshake timeout");
                ws.refuse(Refusal::HandshakeTimeout);
                self.finish(ws, key, None);
            }
            Phase::TlsHandshake => {
                info!(peer = %self.peer, "closing connection: TLS handshake not finished within the handshake timeout");
                ws.refuse(Refusal::HandshakeTimeout);
                ws.tls_handshakes[TLS_FAILED] += 1;
                self.finish(ws, key, None);
            }
            Phase::Handshake => {
                info!(peer = %self.peer, "closing WebSocket: no upgrade request within the handshake timeout");
                ws.refuse(Refusal::HandshakeTimeout);
                self.finish(ws, key, None);
            }
            Phase::Open => {
                let read_wait = ws.limits.read_wait_ticks;
                let silent = since(ws.now, self.last_read);
                if silent >= read_wait && input_waiting {
                    ws.push(key, Event::Deadline(ws.now + read_wait));
                } else if silent >= read_wait {
                    info!(peer = %self.peer, "closing silent connection: read-wait passed");
                    self.finish(ws, key, Some(Disconnect::ReadTimeout));
                } else {
                    ws.push(key, Event::Deadline(ws.now + (read_wait - silent)));
                }
            }
            Phase::AwaitingCloseReply | Phase::Flushing | Phase::Lingering => {
                self.finish(ws, key, None)
            }
            Phase::Closed => {}
        }
    }

    // ---- ending ----------------------------------------------------------------------------

    /// Tells the handler an admitted connection ended; at most once per connection.
    pub(super) fn notify(&mut self, ws: &mut Workspace, key: usize, reason: Disconnect) {
        if std::mem::replace(&mut self.admitted, false) {
            ws.push(key, Event::Disconnect(reason));
        }
    }

    /// Stops reading; what is queued goes out, then FIN, within the close linger.
    pub(super) fn start_flushing(&mut self, ws: &mut Workspace, key: usize) {
        if matches!(
            self.phase,
            Phase::Flushing | Phase::Lingering | Phase::Closed
        ) {
            return;
        }
        if let Some(tls) = self.tls.as_mut() {
            // close_notify: the peer can tell our end from a truncation.
            if let Some(alert) = tls.close_notify() {
                self.queue_raw(ws, key, alert);
            }
        }
        self.phase = Phase::Flushing;
        self.inbound = None;
        self.mark_dirty(ws, key);
        ws.push(key, Event::Deadline(ws.now + ws.limits.linger_ticks));
    }

    /// Ends the machine: `reason` goes to the handler if it was admitted, the backlog is
    /// dropped, and the driver is asked to close the socket.
    pub(super) fn finish(&mut self, ws: &mut Workspace, key: usize, reason: Option<Disconnect>) {
        if self.phase == Phase::Closed {
            return;
        }
        if let Some(reason) = reason {
            self.notify(ws, key, reason);
        }
        self.admitted = false;
        self.phase = Phase::Closed;
        self.inbound = None;
        ws.account(key, self.outgoing.queued_bytes(), 0);
        ws.pongs.forget(key);
        self.outgoing.discard();
        ws.push(key, Event::Close);
    }
}
