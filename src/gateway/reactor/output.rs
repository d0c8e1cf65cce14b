//! The write and close path of a reactor: framing pushes for the connection's transport,
//! gathering them per connection, one `writev` per connection per pass, the slow-consumer
//! cap, and the FIN that ends a closing connection.

use bytes::Bytes;
use switchboard_codec::ws::{self as ws, CloseCode, OpCode};
use tracing::{debug, warn};

use super::super::config::GatewayConfig;
use super::super::conn::Phase;
use super::super::handler::{Disconnect, Handler, Transport};
use super::super::outgoing::Flushed;
use super::Reactor;

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
            self.send_frame(key, OpCode::Close, ws::close_payload(code, ""));
        }
    }

    pub(super) fn queue(&mut self, key: usize, bytes: Bytes) {
        let conn = &mut self.conns[key];
        conn.outgoing.push(&mut self.arena, bytes);
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(key);
        }
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
        self.wheel.insert(key, u64::from(linger));
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

    pub(super) fn flush(&mut self, key: usize) {
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
}

/// The slow-consumer cap. A cap below the largest message would close every client that is
/// sent one, however fast it reads; two of them leave room for one in flight and one queued.
pub(super) fn write_cap(config: &GatewayConfig) -> usize {
    let largest = config
        .max_message
        .max(config.max_packet + switchboard_codec::packet::HEADER_LEN);
    config.write_queue_cap.max(largest.saturating_mul(2))
}
