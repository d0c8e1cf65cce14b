//! The read path of a reactor: socket bytes into the scratch buffer, then into frames,
//! handshakes and messages for the handler. Only the start of an unfinished frame leaves the
//! scratch buffer (into the connection); a connection that used its read budget waits for the
//! next pass, so one flooding client cannot starve the others.

use std::io::{self, Read};

use bytes::{Buf, Bytes, BytesMut};
use switchboard_codec::packet::{PacketHeader, HEADER_LEN};
use switchboard_codec::proxy::ProxyHeaderParser;
use switchboard_codec::ws::handshake;
use switchboard_codec::ws::{self as ws, CloseCode, MessageReader, OpCode, ReaderConfig};
use switchboard_codec::Decoded;
use tracing::{debug, info, warn};

use super::super::clock::{stamp, TICK_MS};
use super::super::conn::{Phase, Protocol};
use super::super::handler::{Admission, ConnInfo, Disconnect, Handler, Message, Transport};
use super::{
    Reactor, ACCEPT_RETRY_TICKS, FRAME_BUDGET, MIN_PARTIAL, READ_BUDGET, READ_BYTES_BUDGET,
    READ_WINDOW, SCRATCH_CHUNK,
};

impl<H: Handler> Reactor<H> {
    // ---- reading ---------------------------------------------------------------------------

    /// Reads what the connection has, within its share of the pass: [`READ_BUDGET`] reads,
    /// [`READ_BYTES_BUDGET`] bytes and [`FRAME_BUDGET`] decoded frames; a connection that used
    /// its share waits for the next turn (frames already read but not decoded wait in its
    /// buffer). A connection that holds more than the slow-consumer cap is not read until a
    /// flush brings it back under (or cuts it).
    ///
    /// A read that returns less than it asked for emptied the socket's receive queue, and
    /// edge-triggered epoll reports the next arrival, so the read that would only say "would
    /// block" is skipped: one system call per message saved. Not when `until_eof`: the peer's
    /// FIN came with the event and must be read to be seen.
    pub(super) fn conn_readable(&mut self, key: usize, until_eof: bool) {
        self.frames_left = FRAME_BUDGET;
        if !self.conns.contains(key) {
            return;
        }
        if !self.input_allowed() {
            // Read when the handler has room; an end of stream is seen then too.
            self.unread.insert(key);
            return;
        }
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        if conn.inbound.is_some() && conn.reads_frames() {
            // Frames left undecoded by the last turn's budget go first.
            self.process_input(key, true);
            if self.frames_left == 0 {
                self.again.push(key);
                return;
            }
        }
        let mut bytes = 0;
        for _ in 0..READ_BUDGET {
            if self.over_cap(key) {
                // The flush at the end of this pass judges it (and most likely cuts it).
                self.read_paused.insert(key);
                let conn = &mut self.conns[key];
                if !conn.dirty {
                    conn.dirty = true;
                    self.dirty.push(key);
                }
                return;
            }
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            let window = &mut self.read_window[..];
            let read = loop {
                match conn.stream.read(window) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other,
                }
            };
            match read {
                Ok(0) => {
                    self.peer_eof(key);
                    return;
                }
                Ok(n) => {
                    conn.last_read = stamp(self.now);
                    bytes += n;
                    self.churn += n;
                    let short = n < READ_WINDOW;
                    self.take_read(key, n);
                    if self.frames_left == 0 || bytes >= READ_BYTES_BUDGET {
                        break;
                    }
                    if short && !until_eof {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    let peer = conn.peer;
                    debug!(%peer, error = %e, "read failed");
                    self.remove(key, Some(Disconnect::Io(e.kind())));
                    return;
                }
            }
        }
        if self.conns.contains(key) {
            self.again.push(key);
        }
    }

    /// Decodes the `n` bytes that arrived in the read window. When the connection holds the
    /// start of a frame whose length is known, only the rest of that frame joins its buffer
    /// (sized for exactly that frame, so the message split off it later holds no spare
    /// capacity) and what follows goes through the shared scratch buffer like any read.
    fn take_read(&mut self, key: usize, n: usize) {
        let conn = &mut self.conns[key];
        let mut start = 0;
        if let Some(own) = conn.inbound.as_mut() {
            let room = partial_frame_len(&conn.protocol, own, self.shared.config.max_packet)
                .map_or(n, |len| len.saturating_sub(own.len()).min(n));
            own.extend_from_slice(&self.read_window[..room]);
            start = room;
            self.process_input(key, true);
            if start == n || self.frames_left == 0 {
                // A budget stop leaves input undecoded; anything after it waits its turn.
                if start < n {
                    if let Some(own) = self.conns.get_mut(key).and_then(|c| c.inbound.as_mut()) {
                        own.extend_from_slice(&self.read_window[start..n]);
                    }
                }
                return;
            }
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if let Some(own) = conn.inbound.as_mut() {
                // The frame is still unfinished (its length was not known): keep appending.
                own.extend_from_slice(&self.read_window[start..n]);
                self.process_input(key, true);
                return;
            }
        }
        // Copy what arrived into the buffer frames are split from: `n` bytes, where reading
        // straight into it would first zero the whole window.
        let len = n - start;
        if self.scratch.capacity() - self.scratch.len() < len {
            self.scratch.reserve(SCRATCH_CHUNK);
        }
        self.scratch.extend_from_slice(&self.read_window[start..n]);
        self.process_input(key, false);
    }

    /// Accepts that were cut short, and a second turn for the connections that used their
    /// share last pass (`waiting`, taken before this pass's events). A connection that used its
    /// share again in this pass's events is already waiting for the next pass and gets no
    /// second turn now: one busy connection gets at most two turns per pass, however long it
    /// stays busy (without this, each pass queued it once more, and its turns per pass grew
    /// without bound).
    pub(super) fn revisit(&mut self, mut waiting: Vec<usize>) {
        if self.accept_again {
            self.accept_again = false;
            self.accept_ready(Transport::Tcp);
            self.accept_ready(Transport::WebSocket);
        }
        if let Some(paused_at) = self.accept_paused_at {
            if self.now.saturating_sub(paused_at) >= ACCEPT_RETRY_TICKS {
                self.accept_paused_at = None;
                self.accept_ready(Transport::Tcp);
                self.accept_ready(Transport::WebSocket);
            }
        }
        if waiting.is_empty() {
            return;
        }
        waiting.sort_unstable();
        waiting.dedup();
        // Taken out, not copied, for the loop (its reads may queue keys again); put back after.
        let mut turned = std::mem::take(&mut self.again);
        turned.sort_unstable();
        for key in waiting {
            if turned.binary_search(&key).is_err() {
                self.conn_readable(key, false);
            }
        }
        turned.append(&mut self.again);
        self.again = turned;
    }

    /// Turns the bytes just read into events. `own`: they are in the connection's buffer
    /// rather than the shared scratch.
    pub(super) fn process_input(&mut self, key: usize, own: bool) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let mut src = if own {
            match conn.inbound.take() {
                Some(own) => *own,
                None => return,
            }
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
                    // Only the start of an unfinished frame (or what the frame budget left)
                    // leaves the scratch buffer, into a buffer sized for that frame.
                    let frame =
                        partial_frame_len(&conn.protocol, &src, self.shared.config.max_packet);
                    let capacity = frame.unwrap_or(MIN_PARTIAL).max(src.len());
                    let mut own = BytesMut::with_capacity(capacity);
                    own.extend_from_slice(&src);
                    conn.inbound = Some(Box::new(own));
                }
            }
            src.clear();
            self.scratch = src;
        }
    }

    pub(super) fn decode_all(&mut self, key: usize, src: &mut BytesMut) {
        loop {
            let stop = self.frames_left == 0 || self.over_cap(key);
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if !conn.reads_frames() || src.is_empty() {
                src.clear();
                return;
            }
            if stop {
                return; // the rest waits in the connection's buffer
            }
            let progressed = match &mut conn.protocol {
                Protocol::ProxyHeader => self.decode_proxy_header(key, src),
                Protocol::Tcp => self.decode_packet(key, src),
                Protocol::WsHandshake(_) => self.decode_handshake(key, src),
                Protocol::Ws(_) => self.decode_ws(key, src),
            };
            if !progressed {
                return;
            }
        }
    }

    /// The PROXY header that must open the connection (`--proxy-protocol`). Once it is whole,
    /// the client it names is the connection's peer from then on, and the bytes after it are
    /// the client's first: they stay in `src` for the transport's own phase. A refusal closes
    /// the connection at once, before the handler ever hears of it.
    fn decode_proxy_header(&mut self, key: usize, src: &mut BytesMut) -> bool {
        let conn = &mut self.conns[key];
        match ProxyHeaderParser::new().parse(src) {
            Ok(Decoded::Complete((header, consumed))) => {
                src.advance(consumed);
                let real = conn.proxy_header_read(header);
                debug!(peer = %conn.peer, balancer = %real, ?header, "PROXY header read");
                if conn.transport == Transport::Tcp {
                    self.open_tcp(key);
                }
                self.conns.get(key).is_some_and(|conn| conn.reads_frames())
            }
            Ok(Decoded::NeedMore) => false,
            Err(e) => {
                info!(peer = %conn.peer, error = %e, "closing connection: bad PROXY header");
                self.remove(key, None);
                false
            }
        }
    }

    /// One packet from a TCP connection. Returns false when more input is needed (or the
    /// connection stopped reading).
    pub(super) fn decode_packet(&mut self, key: usize, src: &mut BytesMut) -> bool {
        match self.packets.decode_raw(src) {
            Ok(Decoded::Complete(packet)) => {
                self.frames_left = self.frames_left.saturating_sub(1);
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

    pub(super) fn decode_handshake(&mut self, key: usize, src: &mut BytesMut) -> bool {
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
                        self.wheel.insert(key, self.now + read_wait);
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

    pub(super) fn decode_ws(&mut self, key: usize, src: &mut BytesMut) -> bool {
        let conn = &mut self.conns[key];
        let Protocol::Ws(reader) = &mut conn.protocol else {
            return false;
        };
        match reader.read(src) {
            Ok(Decoded::Complete(message)) => {
                self.frames_left = self.frames_left.saturating_sub(1);
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

    pub(super) fn ws_message(&mut self, key: usize, message: ws::Message) {
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
            ws::Message::Ping(payload) if phase == Phase::Open => self.ping(key, payload),
            ws::Message::Pong(_) if phase == Phase::Open => {
                self.control_frame_admitted(key);
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

    fn ping(&mut self, key: usize, payload: Bytes) {
        if self.control_frame_admitted(key) {
            self.answer_ping(key, payload);
        }
    }

    /// Counts a control frame against the connection's [`ControlLimit`]; over it, the
    /// connection is closed with 1008 and this returns false.
    ///
    /// [`ControlLimit`]: super::super::control::ControlLimit
    fn control_frame_admitted(&mut self, key: usize) -> bool {
        let limit = self.shared.config.control_limit;
        let conn = &mut self.conns[key];
        if conn.control.admit(limit, stamp(self.now), TICK_MS) {
            return true;
        }
        info!(
            peer = %conn.peer,
            burst = limit.burst,
            per_second = limit.per_second,
            "closing WebSocket: control frames over the limit"
        );
        self.notify(
            key,
            Disconnect::Protocol("control frames over the limit".into()),
        );
        self.send_close(key, CloseCode::POLICY_VIOLATION);
        self.start_flushing(key);
        false
    }

    pub(super) fn peer_eof(&mut self, key: usize) {
        let conn = &self.conns[key];
        match conn.phase {
            Phase::Open | Phase::Flushing => {
                self.notify(key, Disconnect::PeerClosed(None));
                // The peer may have only half-closed: what we owe it still goes out.
                self.start_flushing(key);
            }
            Phase::ProxyHeader
            | Phase::Handshake
            | Phase::AwaitingCloseReply
            | Phase::Lingering => self.remove(key, None),
        }
    }
}

/// The length of the frame (or packet) that starts `src`, header included, once its header is
/// in: what a buffer holding its start needs, exactly. `None` while the header is incomplete,
/// for a handshake, or for a header that is about to be refused anyway.
fn partial_frame_len(protocol: &Protocol, src: &[u8], max_packet: usize) -> Option<usize> {
    match protocol {
        Protocol::Ws(reader) => reader.frame_len(),
        Protocol::Tcp => {
            let max = u32::try_from(max_packet).unwrap_or(u32::MAX);
            match PacketHeader::parse(src, max) {
                Ok(Decoded::Complete(header)) => Some(HEADER_LEN + header.payload_len as usize),
                _ => None,
            }
        }
        Protocol::ProxyHeader | Protocol::WsHandshake(_) => None,
    }
}
