//! The read path of a reactor: socket bytes into the scratch buffer, then into frames,
//! handshakes and messages for the handler. Only the start of an unfinished frame leaves the
//! scratch buffer (into the connection); a connection that used its read budget waits for the
//! next pass, so one flooding client cannot starve the others.

use std::io::{self, Read};

use bytes::{Bytes, BytesMut};
use switchboard_codec::ws::handshake;
use switchboard_codec::ws::{self as ws, CloseCode, MessageReader, OpCode, ReaderConfig};
use switchboard_codec::Decoded;
use tracing::{debug, info, warn};

use super::super::conn::{Phase, Protocol};
use super::super::handler::{Admission, ConnInfo, Disconnect, Handler, Message, Transport};
use super::{Reactor, ACCEPT_RETRY_TICKS, MIN_PARTIAL, READ_BUDGET, SCRATCH_CHUNK};

impl<H: Handler> Reactor<H> {
    // ---- reading ---------------------------------------------------------------------------

    /// Reads what the connection has. A read that returns less than it asked for emptied the
    /// socket's receive queue, and edge-triggered epoll reports the next arrival, so the read
    /// that would only say "would block" is skipped: one system call per message saved. Not
    /// when `until_eof`: the peer's FIN came with the event and must be read to be seen.
    pub(super) fn conn_readable(&mut self, key: usize, until_eof: bool) {
        for _ in 0..READ_BUDGET {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            let use_own = conn.inbound.is_some();
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
                    // Copy what arrived into the buffer frames are split from: `n` bytes,
                    // where reading straight into it would first zero the whole window.
                    let buf = if use_own {
                        conn.inbound.as_mut().expect("checked")
                    } else {
                        if self.scratch.capacity() - self.scratch.len() < n {
                            self.scratch.reserve(SCRATCH_CHUNK);
                        }
                        &mut self.scratch
                    };
                    buf.extend_from_slice(&window[..n]);
                    let short = n < window.len();
                    conn.last_read = self.now;
                    self.process_input(key, use_own);
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
        self.again.push(key);
    }

    pub(super) fn revisit(&mut self) {
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
            self.conn_readable(key, false);
        }
    }

    /// Turns the bytes just read into events. `own`: they are in the connection's buffer
    /// rather than the shared scratch.
    pub(super) fn process_input(&mut self, key: usize, own: bool) {
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
                    let mut own = BytesMut::with_capacity(src.len().max(MIN_PARTIAL));
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
    pub(super) fn decode_packet(&mut self, key: usize, src: &mut BytesMut) -> bool {
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

    pub(super) fn decode_ws(&mut self, key: usize, src: &mut BytesMut) -> bool {
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

    pub(super) fn peer_eof(&mut self, key: usize) {
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
}
