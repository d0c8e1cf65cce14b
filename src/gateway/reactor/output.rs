//! The write and close path of a reactor: framing pushes for the connection's transport,
//! gathering them per connection, one `writev` per connection per pass, owed pongs, the
//! slow-consumer cap, the process-wide budget of queued bytes (`--max-queued-bytes`), and the
//! FIN that ends a closing connection.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use switchboard_codec::ws::{self as ws, CloseCode, OpCode};
use tracing::{debug, warn};

use super::super::config::GatewayConfig;
use super::super::conn::Phase;
use super::super::handler::{Disconnect, Handler, Transport};
use super::super::outgoing::Flushed;
use super::{memory, Reactor, TRIM_AFTER_CHURN, TRIM_EVERY_TICKS};

impl<H: Handler> Reactor<H> {
    // ---- writing ---------------------------------------------------------------------------

    /// Queues a data message framed for the connection's transport.
    pub(super) fn send_data(&mut self, key: usize, opcode: OpCode, payload: Bytes) {
        match self.conns[key].transport {
            Transport::Tcp => self.queue(key, payload),
            Transport::WebSocket => self.send_frame(key, opcode, payload),
        }
    }

    pub(super) fn send_frame(&mut self, key: usize, opcode: OpCode, payload: Bytes) {
        let header = self.frames.encode_header(opcode, true, payload.len());
        self.queue(key, header);
        if !payload.is_empty() {
            self.queue(key, payload);
        }
    }

    pub(super) fn send_close(&mut self, key: usize, code: CloseCode) {
        if self.conns[key].transport == Transport::WebSocket {
            // A pong owed goes before the close: nothing may follow a close frame.
            self.send_owed_pong(key);
            self.send_frame(key, OpCode::Close, ws::close_payload(code, ""));
        }
    }

    /// Answers a ping of an open WebSocket: the first few of the pass at once, later ones
    /// with one pong for the latest at the end of the pass (§5.5.3: when several pings arrive
    /// before the server can reply, answering the last one is enough).
    pub(super) fn answer_ping(&mut self, key: usize, payload: Bytes) {
        if self.pongs.answer_now(key, &payload) {
            self.send_frame(key, OpCode::Pong, payload);
            return;
        }
        let conn = &mut self.conns[key];
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(key);
        }
    }

    fn send_owed_pong(&mut self, key: usize) {
        if self.pongs.is_empty() {
            return;
        }
        if let Some(payload) = self.pongs.take(key) {
            if self.conns[key].phase == Phase::Open {
                self.send_frame(key, OpCode::Pong, payload);
            }
        }
    }

    pub(super) fn queue(&mut self, key: usize, bytes: Bytes) {
        let conn = &mut self.conns[key];
        let before = conn.outgoing.backlog_bytes();
        conn.outgoing.push(&mut self.arena, bytes);
        let after = conn.outgoing.backlog_bytes();
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(key);
        }
        if before != after {
            self.account_backlog(key, before, after);
        }
    }

    /// Keeps this reactor's total of backlog bytes, and the set of backlogged connections,
    /// up to date with one connection's backlog going from `before` to `after` bytes.
    pub(super) fn account_backlog(&mut self, key: usize, before: usize, after: usize) {
        self.queued_here = self.queued_here + after - before;
        if before == 0 && after > 0 {
            self.backlogged.insert(key);
        } else if before > 0 && after == 0 {
            self.backlogged.remove(&key);
        }
        if after > before {
            self.churn += after - before;
        }
    }

    /// Whether the connection holds more than the slow-consumer cap allows.
    pub(super) fn over_cap(&self, key: usize) -> bool {
        self.conns
            .get(key)
            .is_some_and(|c| c.outgoing.backlog_bytes() > 0 && c.held_bytes() > self.write_cap)
    }

    /// Stops reading; what is queued goes out, then FIN, within the close linger.
    pub(super) fn start_flushing(&mut self, key: usize) {
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
        self.wheel.insert(key, linger);
    }

    pub(super) fn conn_writable(&mut self, key: usize) {
        if self
            .conns
            .get(key)
            .is_some_and(|c| c.outgoing.backlog_bytes() > 0)
        {
            self.flush(key);
        }
    }

    pub(super) fn flush_dirty(&mut self) {
        // A flush can close a connection, which tells the handler, which can push to other
        // connections: keep going until no connection is dirty, so no chain outlives the arena.
        loop {
            while !self.dirty.is_empty() {
                let mut dirty = std::mem::take(&mut self.dirty);
                for key in dirty.drain(..) {
                    if let Some(conn) = self.conns.get_mut(key) {
                        conn.dirty = false;
                        self.send_owed_pong(key);
                        self.flush(key);
                    }
                }
                if self.dirty.is_empty() {
                    self.dirty = dirty; // keep the allocation
                }
            }
            self.publish_queued();
            if !self.over_budget() {
                break;
            }
            self.shed_largest_queues();
        }
        self.pongs.clear();
        self.arena.clear();
    }

    pub(super) fn flush(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        let before = conn.outgoing.backlog_bytes();
        let flushed = conn.outgoing.flush(&mut conn.stream, &mut self.arena);
        let after = conn.outgoing.backlog_bytes();
        if before != after {
            self.account_backlog(key, before, after);
        }
        let conn = &mut self.conns[key];
        match flushed {
            Ok(Flushed::All) => {
                if conn.phase == Phase::Flushing {
                    // FIN; then read until the peer's FIN so our last bytes are not reset away.
                    let _ = conn.stream.shutdown(std::net::Shutdown::Write);
                    conn.phase = Phase::Lingering;
                }
            }
            Ok(Flushed::Backlogged(queued)) => {
                let held = conn.held_bytes();
                if held > self.write_cap {
                    warn!(peer = %conn.peer, queued, held, "closing slow consumer: write queue over the cap");
                    self.remove(key, Some(Disconnect::SlowConsumer { queued: held }));
                    return;
                }
            }
            Err(e) => {
                debug!(peer = %conn.peer, error = %e, "write failed");
                self.remove(key, Some(Disconnect::Io(e.kind())));
                return;
            }
        }
        // Under the cap again: input waiting in the socket is read on the next pass.
        if !self.read_paused.is_empty() && self.read_paused.remove(&key) {
            self.again.push(key);
        }
    }

    /// Adds what this reactor's backlogs grew or shrank by since its last pass to the total
    /// of the process.
    fn publish_queued(&mut self) {
        let queued = &self.shared.queued_bytes;
        if self.queued_here > self.queued_published {
            queued.fetch_add(self.queued_here - self.queued_published, Ordering::AcqRel);
        } else if self.queued_here < self.queued_published {
            queued.fetch_sub(self.queued_published - self.queued_here, Ordering::AcqRel);
        }
        self.queued_published = self.queued_here;
    }

    fn over_budget(&self) -> bool {
        self.queued_here > 0
            && self.shared.queued_bytes.load(Ordering::Acquire)
                > self.shared.config.max_queued_bytes
    }

    /// The process holds more queued bytes than `--max-queued-bytes`: closes this reactor's
    /// connections with the largest backlogs, largest first, until the total is under it.
    /// (Each reactor sheds its own, so no lock is shared; the largest queues of the process
    /// are among the largest of some reactor.)
    fn shed_largest_queues(&mut self) {
        let mut largest: Vec<(usize, usize)> = self
            .backlogged
            .iter()
            .map(|&key| (self.conns[key].outgoing.backlog_bytes(), key))
            .collect();
        largest.sort_unstable_by(|a, b| b.cmp(a));
        let budget = self.shared.config.max_queued_bytes;
        let mut total = self.shared.queued_bytes.load(Ordering::Acquire);
        for (queued, key) in largest {
            if total <= budget {
                break;
            }
            let closes = self.shared.budget_closes.fetch_add(1, Ordering::Relaxed) + 1;
            warn!(
                peer = %self.conns[key].peer,
                queued,
                total,
                budget,
                closes,
                "closing the largest write queue: the process is over --max-queued-bytes"
            );
            self.remove(key, Some(Disconnect::SlowConsumer { queued }));
            total = total.saturating_sub(queued);
        }
        self.publish_queued();
    }

    /// Hands freed memory back to the kernel once enough went through (see `memory`).
    /// Called when the reactor is about to wait for events.
    pub(super) fn trim_after_churn(&mut self) {
        let now = self.tick();
        if self.churn >= TRIM_AFTER_CHURN && now.saturating_sub(self.last_trim) >= TRIM_EVERY_TICKS
        {
            debug!(
                reactor = self.index,
                churn = self.churn,
                "returning freed memory to the kernel"
            );
            memory::release_free_memory();
            self.churn = 0;
            self.last_trim = now;
        }
    }
}

/// The slow-consumer cap. A cap below the largest message would close every client that is
/// sent one, however fast it reads; two of them leave room for one in flight and one queued.
pub(super) fn write_cap(config: &GatewayConfig) -> usize {
    let largest = config
        .max_message
        .max(config.max_packet + switchboard_codec::packet::HEADER_LEN);
    config.write_queue_cap.max(largest.saturating_mul(2))
}
