//! The send side of a machine: framing pushes for the connection's transport, the pongs of a
//! pass (the first few in place, the latest owed one at the end), the close frame, and what
//! a send did: all out (then FIN if closing), some left (then the slow-consumer cap judges
//! what the connection holds), or an error.
//!
//! Two ways to send, for two kinds of driver: [`Machine::send_with`] runs a readiness
//! driver's `writev` until the kernel is full; [`Machine::transmit`] hands a completion-based
//! driver owned `Bytes` to hold until [`Machine::on_sent`] reports the completion and gives
//! back what the kernel did not take. Bytes in flight count against the slow-consumer cap
//! like the backlog: they are held in memory until the completion, as a backlog is.

use std::io::{self, IoSlice};

use bytes::Bytes;
use switchboard_codec::ws::{self as ws, CloseCode, OpCode};
use tracing::{debug, warn};

use super::super::handler::{Disconnect, Transport};
use super::outgoing::Flushed;
use super::state::{Flags, Phase, Protocol};
use super::{Event, Machine, Workspace};

impl Machine {
    /// Queues a data message framed for the connection's transport.
    pub(super) fn send_data(
        &mut self,
        ws: &mut Workspace,
        key: usize,
        opcode: OpCode,
        payload: Bytes,
    ) {
        match self.transport {
            Transport::Tcp => self.queue(ws, key, payload),
            Transport::WebSocket => self.send_frame(ws, key, opcode, payload),
        }
    }

    pub(super) fn send_frame(
        &mut self,
        ws: &mut Workspace,
        key: usize,
        opcode: OpCode,
        payload: Bytes,
    ) {
        let header = ws.frames.encode_header(opcode, true, payload.len());
        self.queue(ws, key, header);
        if !payload.is_empty() {
            self.queue(ws, key, payload);
        }
    }

    pub(super) fn send_close(&mut self, ws: &mut Workspace, key: usize, code: CloseCode) {
        if self.transport == Transport::WebSocket {
            // A pong owed goes before the close: nothing may follow a close frame.
            self.send_owed_pong(ws, key);
            self.send_frame(ws, key, OpCode::Close, ws::close_payload(code, ""));
        }
    }

    /// Answers a ping of an open WebSocket: the first few of the pass at once, later ones
    /// with one pong for the latest at the end of the pass (§5.5.3: when several pings arrive
    /// before the server can reply, answering the last one is enough).
    pub(super) fn answer_ping(&mut self, ws: &mut Workspace, key: usize, payload: Bytes) {
        if ws.pongs.answer_now(key, &payload) {
            self.send_frame(ws, key, OpCode::Pong, payload);
        } else {
            self.mark_dirty(ws, key);
        }
    }

    fn send_owed_pong(&mut self, ws: &mut Workspace, key: usize) {
        if ws.pongs.is_empty() {
            return;
        }
        if let Some(payload) = ws.pongs.take(key) {
            if self.phase == Phase::Open {
                self.send_frame(ws, key, OpCode::Pong, payload);
            }
        }
    }

    /// Queues bytes of the transport (encrypted first on a TLS connection).
    pub(super) fn queue(&mut self, ws: &mut Workspace, key: usize, bytes: Bytes) {
        let bytes = match self.tls.as_mut() {
            Some(tls) => match tls.seal(&bytes) {
                Some(records) => records,
                // A session that cannot send (it failed) sends nothing more in the clear.
                None => return,
            },
            None => bytes,
        };
        self.queue_raw(ws, key, bytes);
    }

    /// Queues bytes as they go on the wire.
    pub(super) fn queue_raw(&mut self, ws: &mut Workspace, key: usize, bytes: Bytes) {
        let before = self.outgoing.queued_bytes();
        self.outgoing.push(&mut ws.arena, bytes);
        ws.account(key, before, self.outgoing.queued_bytes());
        self.mark_dirty(ws, key);
    }

    /// Asks the driver to send (or, for a connection over the cap, to judge it) this pass.
    pub(crate) fn mark_dirty(&mut self, ws: &mut Workspace, key: usize) {
        if !self.flags.has(Flags::DIRTY) {
            self.flags.set(Flags::DIRTY, true);
            ws.push(key, Event::Transmit);
        }
    }

    /// Bytes waiting in the write backlog, and in a completion driver's send in flight.
    pub(crate) fn backlog_bytes(&self) -> usize {
        self.outgoing.queued_bytes()
    }

    /// Every byte the server holds for this connection: the write backlog, the unfinished
    /// inbound frame and the fragments of an unfinished message. (This pass's pushes are not
    /// counted: they are bounded by the per-pass read budget and gone by the end of the pass.)
    pub(crate) fn held_bytes(&self) -> usize {
        let inbound = self.inbound.as_ref().map_or(0, |b| b.capacity());
        let reassembly = match &self.protocol {
            Protocol::Ws(reader) => reader.held_bytes(),
            Protocol::ProxyHeader
            | Protocol::TlsHandshake
            | Protocol::Tcp
            | Protocol::WsHandshake(_) => 0,
        };
        let tls = self.tls.as_ref().map_or(0, |tls| tls.held_bytes());
        self.outgoing.queued_bytes() + inbound + reassembly + tls
    }

    /// Whether the connection holds more than the slow-consumer cap allows (it is then not
    /// read until a send brings it back under, or cuts it).
    pub(crate) fn over_cap(&self, ws: &Workspace) -> bool {
        self.outgoing.queued_bytes() > 0 && self.held_bytes() > ws.limits.write_cap
    }

    // ---- a readiness driver ----------------------------------------------------------------

    /// Sends what waits through `write` (one `writev` of the given slices, returning what the
    /// kernel took, or `WouldBlock`) until all is out or the kernel is full, then applies the
    /// outcome: FIN for a closing connection, the slow-consumer cap, or the error.
    pub(crate) fn send_with(
        &mut self,
        ws: &mut Workspace,
        key: usize,
        write: impl FnMut(&[IoSlice<'_>]) -> io::Result<usize>,
    ) {
        if !self.begin_send(ws, key) {
            return;
        }
        let before = self.outgoing.backlog_bytes();
        let sent = self.outgoing.send_with(&mut ws.arena, write);
        ws.account(key, before, self.outgoing.backlog_bytes());
        self.sent(ws, key, sent);
    }

    // ---- a completion driver ---------------------------------------------------------------

    /// The bytes to send now, as owned `Bytes` appended to `out` (at most `max` slices), to
    /// be held until the send completes. Send nothing else for this connection until then.
    pub(crate) fn transmit(
        &mut self,
        ws: &mut Workspace,
        key: usize,
        max: usize,
        out: &mut Vec<Bytes>,
    ) {
        if !self.begin_send(ws, key) {
            return;
        }
        let before = self.outgoing.queued_bytes();
        self.outgoing.hand_over(&mut ws.arena, max, out);
        // Moved, not copied: no churn for the allocator's sake.
        ws.account_held(key, before, self.outgoing.queued_bytes());
    }

    /// The send of what [`Machine::transmit`] gave out completed: `result` is the bytes the
    /// kernel took, or its error; `held` is what the driver held for it (left empty).
    pub(crate) fn on_sent(
        &mut self,
        ws: &mut Workspace,
        key: usize,
        result: io::Result<usize>,
        held: &mut Vec<Bytes>,
    ) {
        if self.phase == Phase::Closed {
            held.clear();
            return;
        }
        let before = self.outgoing.queued_bytes();
        let sent = match result {
            Ok(n) => {
                self.outgoing.completed(&mut ws.arena, n, held);
                Ok(match self.outgoing.queued_bytes() {
                    0 => Flushed::All,
                    left => Flushed::Backlogged(left),
                })
            }
            Err(e) => {
                held.clear();
                self.outgoing.send_failed();
                Err(e)
            }
        };
        ws.account_held(key, before, self.outgoing.queued_bytes());
        self.sent(ws, key, sent);
    }

    /// The driver cannot send now (its last send is still in flight, waiting for room in the
    /// kernel): the pong owed this pass joins the queue behind it (the pass's pong slots are
    /// cleared at its end), and what waits is judged against the slow-consumer cap as a short
    /// write would be on a readiness driver. The send request is cleared, so the next push
    /// asks again (and is judged again); the driver sends the rest once the completion comes.
    pub(crate) fn defer_send(&mut self, ws: &mut Workspace, key: usize) {
        if !self.begin_send(ws, key) {
            return;
        }
        // The arena is cleared at the end of the pass, the completion comes later.
        let before = self.outgoing.queued_bytes();
        self.outgoing.park(&mut ws.arena);
        let queued = self.outgoing.queued_bytes();
        ws.account(key, before, queued);
        if queued > 0 {
            self.sent(ws, key, Ok(Flushed::Backlogged(queued)));
        }
    }

    /// Clears the send request and adds the pong owed this pass. False: nothing to do.
    fn begin_send(&mut self, ws: &mut Workspace, key: usize) -> bool {
        self.flags.set(Flags::DIRTY, false);
        if self.phase == Phase::Closed {
            return false;
        }
        self.send_owed_pong(ws, key);
        true
    }

    fn sent(&mut self, ws: &mut Workspace, key: usize, sent: io::Result<Flushed>) {
        match sent {
            Ok(Flushed::All) => {
                if self.phase == Phase::Flushing {
                    // FIN; then read until the peer's FIN so our last bytes are not reset away.
                    self.phase = Phase::Lingering;
                    ws.push(key, Event::Fin);
                }
            }
            Ok(Flushed::Backlogged(queued)) => {
                let held = self.held_bytes();
                if held > ws.limits.write_cap {
                    warn!(peer = %self.peer, queued, held, "closing slow consumer: write queue over the cap");
                    self.finish(ws, key, Some(Disconnect::SlowConsumer { queued: held }));
                }
            }
            Err(e) => {
                debug!(peer = %self.peer, error = %e, "write failed");
                self.finish(ws, key, Some(Disconnect::Io(e.kind())));
            }
        }
    }
}
