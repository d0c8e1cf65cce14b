//! The read side of a machine: bytes into the shared scratch buffer (or the connection's own
//! buffer, for the rest of an unfinished frame), then one frame, header or handshake per
//! [`Machine::poll_input`] into events, and the protocol rules on what was read: the PROXY
//! header, TCP framing, the upgrade, WebSocket messages, ping → pong, the control-frame rate,
//! the close echo, and the end of stream.
//!
//! Never copies a whole frame that arrived in one read: it is split off the scratch buffer.
//! Only the start of an unfinished frame (or what the decode budget left) moves into the
//! connection, into a buffer sized for exactly that frame when its length is known.

use bytes::{Buf, Bytes, BytesMut};
use switchboard_codec::packet::{PacketHeader, HEADER_LEN};
use switchboard_codec::proxy::ProxyHeaderParser;
use switchboard_codec::ws::handshake::{self, UpgradeRequest};
use switchboard_codec::ws::{self as ws, CloseCode, OpCode};
use switchboard_codec::Decoded;
use tracing::info;

use super::super::clock::{stamp, TICK_MS};
use super::super::handler::{Disconnect, Message};
use super::super::limits::Verdict;
use super::super::metrics::Refusal;
use super::state::{Phase, Protocol};
use super::tls::TlsStep;
use super::{Event, Machine, Workspace};

/// Capacity given to a connection's partial-frame buffer when the frame's length is unknown.
const MIN_PARTIAL: usize = 4 << 10;
/// The scratch buffer grows in chunks of this size (one largest read of the epoll driver):
/// frames split off keep their chunk alive, and a bigger chunk is touched page by page as
/// reads walk through it, resident memory for nothing (measured: 256 KiB chunks were).
const SCRATCH_CHUNK: usize = 64 << 10;

impl Machine {
    /// Bytes arrived at the current tick. They are only stored here; decode them with
    /// [`Machine::poll_input`] and finish the turn with [`Machine::end_input`]. When the
    /// connection holds the start of a frame whose length is known, only the rest of that
    /// frame joins its buffer (sized for exactly that frame, so the message split off it holds
    /// no spare capacity) and what follows goes through the shared scratch buffer.
    ///
    /// On a TLS connection (past any PROXY header) `bytes` are records: they are decrypted
    /// here and what they carry is stored the same way; what the TLS layer has to say (records
    /// to send, the end of its handshake, an error) is acted on by the next `poll_input`.
    pub(crate) fn on_bytes(&mut self, ws: &mut Workspace, bytes: &[u8]) {
        self.last_read = stamp(ws.now);
        ws.churn += bytes.len();
        if !self.reads_frames() {
            return; // lingering or flushing: input is discarded
        }
        if self.phase != Phase::ProxyHeader {
            if let Some(tls) = self.tls.as_mut() {
                let mut plain = std::mem::take(&mut ws.tls_plain);
                // A close_notify needs nothing of its own: the peer's FIN follows it.
                tls.read(self.peer, bytes, &mut ws.tls_records, &mut plain);
                self.store_plaintext(ws, &plain);
                plain.clear();
                ws.tls_plain = plain;
                return;
            }
        }
        self.store_plaintext(ws, bytes);
    }

    fn store_plaintext(&mut self, ws: &mut Workspace, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut start = 0;
        if let Some(own) = self.inbound.as_mut() {
            let room = partial_frame_len(&self.protocol, own, ws.limits.max_packet)
                .map_or(bytes.len(), |len| {
                    len.saturating_sub(own.len()).min(bytes.len())
                });
            own.extend_from_slice(&bytes[..room]);
            start = room;
        }
        let rest = &bytes[start..];
        if ws.scratch.capacity() - ws.scratch.len() < rest.len() {
            ws.scratch.reserve(SCRATCH_CHUNK.max(rest.len()));
        }
        ws.scratch.extend_from_slice(rest);
    }

    /// Decodes the next frame (or header, or handshake) of what [`Machine::on_bytes`] stored,
    /// queuing what it means. Returns false when nothing more can be decoded now: more input
    /// is needed, the decode budget of the turn is spent, the connection holds more than the
    /// slow-consumer cap, or it stopped reading. Deliver the queued events before calling it
    /// again.
    pub(crate) fn poll_input(&mut self, ws: &mut Workspace, key: usize) -> bool {
        debug_assert!(
            ws.events.is_empty(),
            "events not delivered before the next frame"
        );
        if self.tls.is_some() {
            match self.tls_step(ws, key) {
                TlsStep::Continue => {}
                TlsStep::Progressed => return true,
                TlsStep::Stop => return false,
            }
        }
        if !self.reads_frames() || ws.frames_left == 0 || self.over_cap(ws) {
            return false;
        }
        if let Some(mut own) = self.inbound.take() {
            let mut progressed = self.decode_one(ws, key, &mut own);
            if !progressed && self.reads_frames() && !own.is_empty() && !ws.scratch.is_empty() {
                // Nothing whole in the connection's own buffer (its frame's length was not
                // known): what came after it in this read joins it.
                own.extend_from_slice(&ws.scratch);
                ws.scratch.clear();
                progressed = self.decode_one(ws, key, &mut own);
            }
            if !own.is_empty() {
                if self.reads_frames() {
                    self.inbound = Some(own);
                }
                return progressed;
            }
            if progressed {
                return true;
            }
        }
        let mut src = std::mem::take(&mut ws.scratch);
        let progressed = !src.is_empty() && self.decode_one(ws, key, &mut src);
        ws.scratch = src;
        progressed
    }

    /// Ends the connection's turn to read: what is left undecoded in the scratch buffer moves
    /// into the connection's own buffer, sized for the frame it starts.
    pub(crate) fn end_input(&mut self, ws: &mut Workspace) {
        if ws.scratch.is_empty() {
            return;
        }
        if self.reads_frames() {
            let src = &ws.scratch;
            if let Some(own) = self.inbound.as_mut() {
                own.extend_from_slice(src);
            } else {
                let frame = partial_frame_len(&self.protocol, src, ws.limits.max_packet);
                let capacity = frame.unwrap_or(MIN_PARTIAL).max(src.len());
                let mut own = BytesMut::with_capacity(capacity);
                own.extend_from_slice(src);
                self.inbound = Some(Box::new(own));
            }
        }
        ws.scratch.clear();
    }

    /// Whether undecoded input is held (the last turn stopped on its budget or the cap).
    pub(crate) fn has_input(&self) -> bool {
        self.reads_frames() && self.inbound.as_ref().is_some_and(|own| !own.is_empty())
    }

    /// The peer's end of stream.
    pub(crate) fn on_eof(&mut self, ws: &mut Workspace, key: usize) {
        match self.phase {
            Phase::Open | Phase::Flushing => {
                self.notify(ws, key, Disconnect::PeerClosed(None));
                // The peer may have only half-closed: what we owe it still goes out.
                self.start_flushing(ws, key);
            }
            Phase::TlsHandshake => {
                self.tls_handshake_cut(ws, "end of stream");
                self.finish(ws, key, None);
            }
            Phase::ProxyHeader
            | Phase::Handshake
            | Phase::AwaitingCloseReply
            | Phase::Lingering => self.finish(ws, key, None),
            Phase::Closed => {}
        }
    }

    /// Reading the socket failed.
    pub(crate) fn on_read_error(
        &mut self,
        ws: &mut Workspace,
        key: usize,
        kind: std::io::ErrorKind,
    ) {
        if self.phase == Phase::TlsHandshake {
            self.tls_handshake_cut(ws, "read error");
        }
        self.finish(ws, key, Some(Disconnect::Io(kind)));
    }

    fn decode_one(&mut self, ws: &mut Workspace, key: usize, src: &mut BytesMut) -> bool {
        match self.protocol {
            Protocol::ProxyHeader => self.decode_proxy_header(ws, key, src),
            Protocol::TlsHandshake => false,
            Protocol::Tcp => self.decode_packet(ws, key, src),
            Protocol::WsHandshake(_) => self.decode_handshake(ws, key, src),
            Protocol::Ws(_) => self.decode_ws(ws, key, src),
        }
    }

    /// The PROXY header that must open the connection (`--proxy-protocol`). The bytes after
    /// it are the client's first: they stay in `src` for the transport's own phase. A refusal
    /// closes the connection at once, before the handler ever hears of it.
    fn decode_proxy_header(&mut self, ws: &mut Workspace, key: usize, src: &mut BytesMut) -> bool {
        match ProxyHeaderParser::new().parse(src) {
            Ok(Decoded::Complete((header, consumed))) => {
                src.advance(consumed);
                self.proxy_header_read(ws, key, header);
                if let Some(tls) = self.tls.as_mut() {
                    // What followed the header is the start of the TLS handshake. No
                    // plaintext can come out of a first flight; should any, it is kept.
                    let records = src.split();
                    let mut plain = std::mem::take(&mut ws.tls_plain);
                    tls.read(self.peer, &records, &mut ws.tls_records, &mut plain);
                    src.extend_from_slice(&plain);
                    plain.clear();
                    ws.tls_plain = plain;
                }
                true
            }
            Ok(Decoded::NeedMore) => false,
            Err(e) => {
                info!(peer = %self.peer, error = %e, "closing connection: bad PROXY header");
                ws.refuse(Refusal::BadProxyHeader);
                self.finish(ws, key, None);
                false
            }
        }
    }

    fn decode_packet(&mut self, ws: &mut Workspace, key: usize, src: &mut BytesMut) -> bool {
        match ws.packets.decode_raw(src) {
            Ok(Decoded::Complete(packet)) => {
                ws.frames_left = ws.frames_left.saturating_sub(1);
                self.message_within_rate(ws, key, Message::Binary(packet));
                true
            }
            Ok(Decoded::NeedMore) => false,
            Err(e) => {
                info!(peer = %self.peer, error = %e, "closing TCP connection: bad framing");
                self.notify(ws, key, Disconnect::Protocol(e.to_string()));
                self.start_flushing(ws, key);
                false
            }
        }
    }

    fn decode_handshake(&mut self, ws: &mut Workspace, key: usize, src: &mut BytesMut) -> bool {
        let Protocol::WsHandshake(parser) = &mut self.protocol else {
            return false;
        };
        match parser.parse(src) {
            Ok(Decoded::Complete((request, consumed))) => {
                src.advance(consumed);
                if self.origin_refused(ws, key, &request) {
                    return false;
                }
                ws.push(key, Event::Open(Some(Box::new(request))));
                true
            }
            Ok(Decoded::NeedMore) => false,
            Err(e) => {
                info!(peer = %self.peer, error = %e, "refusing WebSocket upgrade");
                ws.refuse(Refusal::BadUpgrade);
                e.write_response(&mut ws.responses);
                let response = ws.responses.split().freeze();
                self.queue(ws, key, response);
                self.start_flushing(ws, key);
                false
            }
        }
    }

    fn decode_ws(&mut self, ws: &mut Workspace, key: usize, src: &mut BytesMut) -> bool {
        let Protocol::Ws(reader) = &mut self.protocol else {
            return false;
        };
        match reader.read(src) {
            Ok(Decoded::Complete(message)) => {
                ws.frames_left = ws.frames_left.saturating_sub(1);
                self.ws_message(ws, key, message);
                true
            }
            Ok(Decoded::NeedMore) => false,
            Err(e) => {
                info!(peer = %self.peer, error = %e, "closing WebSocket: protocol violation");
                self.notify(ws, key, Disconnect::Protocol(e.to_string()));
                self.send_close(ws, key, e.close_code());
                self.start_flushing(ws, key);
                false
            }
        }
    }

    fn ws_message(&mut self, ws: &mut Workspace, key: usize, message: ws::Message) {
        let open = self.phase == Phase::Open;
        match message {
            ws::Message::Binary(payload) if open => {
                self.message_within_rate(ws, key, Message::Binary(payload));
            }
            ws::Message::Text(payload) if open => {
                if ws.limits.ws_text {
                    self.message_within_rate(ws, key, Message::Text(payload));
                } else {
                    info!(peer = %self.peer, "closing WebSocket: text messages are not part of the protocol");
                    self.protocol_close(ws, key, "text message", CloseCode::UNSUPPORTED_DATA);
                }
            }
            ws::Message::Ping(payload) if open => self.ping(ws, key, payload),
            ws::Message::Pong(_) if open => {
                self.control_frame_admitted(ws, key);
            }
            ws::Message::Close(frame) => {
                let code = frame.as_ref().map(|f| f.code);
                if open {
                    self.notify(ws, key, Disconnect::PeerClosed(code));
                    // Echo the peer's code (RFC 6455 §5.5.1); an empty close gets an empty one.
                    let payload = code.map_or_else(Bytes::new, |code| ws::close_payload(code, ""));
                    self.send_frame(ws, key, OpCode::Close, payload);
                }
                self.start_flushing(ws, key);
            }
            // Data while awaiting the close reply is discarded; pongs need nothing.
            _ => {}
        }
    }

    fn ping(&mut self, ws: &mut Workspace, key: usize, payload: Bytes) {
        if self.control_frame_admitted(ws, key) {
            self.answer_ping(ws, key, payload);
        }
    }

    /// Counts a control frame against the connection's [`ControlLimit`]; over it, the
    /// connection is closed with 1008 and this returns false.
    ///
    /// [`ControlLimit`]: super::ControlLimit
    fn control_frame_admitted(&mut self, ws: &mut Workspace, key: usize) -> bool {
        let limit = ws.limits.control;
        if self.control.judge(limit.rate(), ws.now, TICK_MS) == Verdict::Admit {
            return true;
        }
        info!(
            peer = %self.peer,
            burst = limit.burst,
            per_second = limit.per_second,
            "closing WebSocket: control frames over the limit"
        );
        self.protocol_close(
            ws,
            key,
            "control frames over the limit",
            CloseCode::POLICY_VIOLATION,
        );
        false
    }

    /// A whole message from an open connection, judged against its message rate: for the
    /// handler, for the handler as over the rate, or, past the grace, the end of the
    /// connection (1008 on WebSocket, a FIN after what is queued on TCP).
    fn message_within_rate(&mut self, ws: &mut Workspace, key: usize, message: Message) {
        let limit = ws.limits.messages;
        match self.messages.judge(limit, ws.now, TICK_MS) {
            Verdict::Admit => ws.push(key, Event::Message(message)),
            Verdict::OverRate => {
                ws.refuse(Refusal::MessageOverRate);
                ws.push(key, Event::OverRate(message));
            }
            Verdict::Close => {
                ws.refuse(Refusal::MessageRateClose);
                info!(
                    peer = %self.peer, burst = limit.burst, per_second = limit.per_second,
                    grace = limit.grace, "closing connection: messages over the rate limit (--message-rate on echo, --request-rate on serve)"
                );
                self.protocol_close(
                    ws,
                    key,
                    "messages over the rate limit",
                    CloseCode::POLICY_VIOLATION,
                );
            }
        }
    }

    /// Refuses an upgrade from a page whose Origin is not allowed (403, then close). True
    /// when refused.
    fn origin_refused(&mut self, ws: &mut Workspace, key: usize, request: &UpgradeRequest) -> bool {
        let Some(allowed) = &ws.limits.allowed_origins else {
            return false;
        };
        if allowed.allows(request.origin()) {
            return false;
        }
        ws.refuse(Refusal::Origin);
        info!(
            peer = %self.peer, origin = request.origin().unwrap_or_default(),
            "WebSocket upgrade refused: Origin not in --allowed-origins"
        );
        handshake::write_refusal(403, "origin not allowed", &mut ws.responses);
        let response = ws.responses.split().freeze();
        self.queue(ws, key, response);
        self.start_flushing(ws, key);
        true
    }

    fn protocol_close(&mut self, ws: &mut Workspace, key: usize, rule: &str, code: CloseCode) {
        self.notify(ws, key, Disconnect::Protocol(rule.into()));
        self.send_close(ws, key, code);
        self.start_flushing(ws, key);
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
        Protocol::ProxyHeader | Protocol::TlsHandshake | Protocol::WsHandshake(_) => None,
    }
}
