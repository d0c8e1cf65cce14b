//! Completions into machines: accepted sockets, received bytes (decoded one frame at a time,
//! each frame's events carried out before the next, within the same per-turn decode budget as
//! on epoll), finished sends, cancels, and the wake-up read.
//!
//! A receive that ends (ENOBUFS, or a bundle that took the last buffer: the buffer ring ran
//! dry; a full completion queue; a cancel; its byte limit) is re-armed after the batch, once
//! the buffers of the batch went back into the ring: an empty ring slows reading, and the
//! bytes wait in the socket. Every completion that carries buffers is accounted through
//! `BufRing::filled` before anything else, whoever it is for: the ring's order depends on it.

use std::io;
use std::os::fd::AsRawFd;

use io_uring::cqueue;
use tracing::{debug, warn};

use super::super::super::handler::{Handler, Transport};
use super::{decode_user_data, user_data, Op, Reactor, Recv};

impl<H: Handler> Reactor<H> {
    /// Reaps and carries out every completion waiting, then re-arms the receives that ended.
    pub(super) fn complete_all(&mut self) {
        loop {
            let mut cqes = std::mem::take(&mut self.io.cqes);
            self.io.ring.completions(&mut cqes);
            if cqes.is_empty() {
                self.io.cqes = cqes;
                #[cfg(debug_assertions)]
                self.check_buffer_ring();
                break;
            }
            for cqe in cqes.drain(..) {
                self.complete(cqe);
            }
            self.io.cqes = cqes;
            if let Some(bufs) = self.io.bufs.as_mut() {
                bufs.end_batch();
            }
        }
        if std::mem::take(&mut self.io.grow_buffers) {
            if let Some(bufs) = self.io.bufs.as_mut() {
                bufs.grow();
            }
        }
        let rearm = std::mem::take(&mut self.io.rearm);
        for &key in &rearm {
            self.ensure_recv(key);
        }
        self.io.rearm = rearm;
        self.io.rearm.clear();
        if self.accept_paused_at.is_none() {
            self.arm_accepts();
        } else {
            self.accept_retry();
        }
    }

    /// Tests run debug builds: there, every pass checks that each completion's buffer was
    /// accounted (see `BufRing::head_mismatch`), so a stream cannot be garbled silently.
    #[cfg(debug_assertions)]
    fn check_buffer_ring(&mut self) {
        if !self.io.ring.no_completions_waiting() {
            return; // completions held back on overflow were committed but not read yet
        }
        if let Some(mismatch) = self.io.bufs.as_ref().and_then(|b| b.head_mismatch()) {
            panic!(
                "reactor {}: receive buffers out of step: {mismatch}",
                self.index
            );
        }
    }

    fn complete(&mut self, cqe: cqueue::Entry) {
        let (op, key) = decode_user_data(cqe.user_data());
        match op {
            Op::AcceptTcp => self.accepted(Transport::Tcp, &cqe),
            Op::AcceptWs => self.accepted(Transport::WebSocket, &cqe),
            Op::Recv => self.received(key, &cqe),
            Op::Send => self.sent(key, cqe.result()),
            Op::Cancel => {
                if let Some(conn) = self.conns.get_mut(key) {
                    conn.cancels -= 1;
                }
                self.free_if_done(key);
            }
            Op::Wake => {
                // The inbox is drained every pass; this only ended the wait.
                self.io.ring.wake_read();
                if self.draining_until.is_none() || !self.drained() {
                    self.io
                        .ring
                        .read_wake(self.io.wake_fd.as_raw_fd(), user_data(Op::Wake, 0));
                }
            }
            Op::Files => {
                // Only a failed update completes. The connection's operations then fail
                // on an empty slot, and the connection closes as on any socket error.
                let error = io::Error::from_raw_os_error(-cqe.result());
                warn!(reactor = self.index, key, error = %error, "io_uring: file table update failed");
            }
            Op::Other => {}
        }
    }

    fn received(&mut self, key: usize, cqe: &cqueue::Entry) {
        let flags = cqe.flags();
        let result = cqe.result();
        let more = cqueue::more(flags);
        tracing::trace!(key, result, more, "recv completion");
        let Some(conn) = self.conns.get_mut(key) else {
            // No connection holds the key (nothing in flight should reach a freed slot), but
            // the completion moved the kernel's buffer ring all the same: account it, or every
            // later completion is read from the wrong buffer or offset.
            if let (true, Some(bufs), Some(bid)) = (
                result > 0,
                self.io.bufs.as_mut(),
                cqueue::buffer_select(flags),
            ) {
                drop(bufs.filled(bid, result as usize));
            }
            return;
        };
        if !more {
            conn.recv = Recv::Off;
        }
        if result > 0 {
            let bid = cqueue::buffer_select(flags).expect("a receive selects a buffer");
            let bufs = self
                .io
                .bufs
                .as_mut()
                .expect("buffers live while receives do");
            // One slice per buffer the bytes landed in (several for a bundle).
            let filled = bufs.filled(bid, result as usize);
            if !more && self.io.recv_bundle && filled.left_in_ring() < self.io.bundle_reach {
                // A bundle maps as many buffers as its byte limit needs, and ends its receive
                // (with its bytes, not with ENOBUFS) when that reaches the ring's tail: with
                // fewer buffers in the ring than one bundle may map, every receive ends and
                // is armed again. The ring is too small all the same.
                self.shared.metrics[self.index].recv_buffers_empty.inc();
                self.io.buffers_dry_at = self.clock.now();
                self.io.grow_buffers = true;
            }
            if conn.retired {
                drop(filled); // the buffer goes back; the bytes are for no one
                self.free_if_done(key);
                return;
            }
            self.shared.metrics[self.index].bytes_in.add(result as u64);
            // Input held from an earlier turn stays first: these bytes join it.
            self.ws.start_turn();
            for bytes in filled.slices() {
                conn.machine.on_bytes(&mut self.ws, bytes);
            }
            drop(filled);
            if self.read_paused.contains(&key) {
                // Over the cap with its receive cancelled, and more had landed: judged now,
                // so what a multishot receive delivers past the cancel cannot pile up.
                conn.machine.end_input(&mut self.ws);
                self.ws.end_turn();
                conn.machine.defer_send(&mut self.ws, key);
                self.settle();
            } else {
                self.take_input(key);
            }
        } else if conn.retired {
            self.free_if_done(key);
            return;
        } else {
            match result {
                0 if self.again.contains(&key) || self.unread.contains(&key) => {
                    conn.recv = Recv::Eof; // told once what came before it is decoded
                }
                0 => {
                    conn.recv = Recv::Ended;
                    conn.machine.on_eof(&mut self.ws, key);
                    self.settle();
                }
                e if e == -libc::ENOBUFS => {
                    // Backpressure: the bytes wait in the socket; re-armed after the batch,
                    // once its buffers went back into the ring, which grows (up to its size)
                    // so that a busy reactor does not run dry again.
                    self.shared.metrics[self.index].recv_buffers_empty.inc();
                    if let Some(bufs) = self.io.bufs.as_mut() {
                        bufs.grow();
                    }
                    self.io.buffers_dry_at = self.clock.now();
                }
                e if e == -libc::ECANCELED => {}
                e if e == -libc::EINVAL && self.io.recv_limit.is_some() => {
                    // A kernel before 6.17 has no total limit for a multishot receive:
                    // receive without one (re-armed below), and say what that costs.
                    warn!(
                        reactor = self.index,
                        "this kernel refuses a multishot receive's byte limit (Linux 6.17+): \
                         a connection over the slow-consumer cap may be cut later than on epoll"
                    );
                    self.io.recv_limit = None;
                }
                e => {
                    let error = io::Error::from_raw_os_error(-e);
                    debug!(peer = %conn.machine.peer(), error = %error, "receive failed");
                    conn.machine.on_read_error(&mut self.ws, key, error.kind());
                    self.settle();
                }
            }
        }
        if !more && self.is_live(key) {
            self.io.rearm.push(key);
        }
        if !more {
            self.free_if_done(key);
        }
    }

    /// Decodes what the machine now holds, or keeps it there while input is paused. A
    /// connection left holding input (budget spent) or over the cap stops receiving.
    fn take_input(&mut self, key: usize) {
        if !self.input_allowed() {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.machine.end_input(&mut self.ws);
            }
            self.ws.end_turn();
            self.unread.insert(key);
            self.stop_recv(key);
            return;
        }
        self.decode(key);
        self.after_turn(key);
    }

    /// Decodes what the machine holds, one frame at a time, carrying out each frame's events.
    pub(super) fn decode(&mut self, key: usize) {
        while let Some(conn) = self.conns.get_mut(key).filter(|c| !c.retired) {
            if !conn.machine.poll_input(&mut self.ws, key) {
                break;
            }
            self.settle();
        }
        if let Some(conn) = self.conns.get_mut(key).filter(|c| !c.retired) {
            conn.machine.end_input(&mut self.ws);
        }
        self.ws.end_turn();
        self.settle();
    }

    /// After a turn: input left over waits for the next pass (receiving stopped meanwhile);
    /// a connection over the cap stops receiving until a send brings it under.
    fn after_turn(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key).filter(|c| !c.retired) else {
            return;
        };
        tracing::trace!(
            key,
            over_cap = conn.machine.over_cap(&self.ws),
            spent = self.ws.budget_spent(),
            input = conn.machine.has_input(),
            held = conn.machine.held_bytes(),
            "after turn"
        );
        if conn.machine.over_cap(&self.ws) {
            self.read_paused.insert(key);
            if self.io.ring.sending(key) {
                // Judged now: the send in flight may wait for the peer forever.
                conn.machine.defer_send(&mut self.ws, key);
            } else {
                conn.machine.mark_dirty(&mut self.ws, key);
            }
            self.stop_recv(key);
            self.settle();
        } else if self.ws.budget_spent() && conn.machine.has_input() {
            self.again.push(key);
            self.stop_recv(key);
        }
    }

    /// A second turn for the connections that used their share last pass.
    pub(super) fn revisit(&mut self, mut waiting: Vec<usize>) {
        waiting.sort_unstable();
        waiting.dedup();
        for key in waiting {
            if !self.is_live(key) {
                continue;
            }
            if self.input_paused {
                self.unread.insert(key);
                continue;
            }
            self.ws.start_turn();
            self.decode(key);
            self.after_turn(key);
            self.ensure_recv(key);
            self.eof_after_input(key);
        }
    }

    /// Tells the machine the end of stream that arrived behind held input, once that input
    /// is decoded.
    fn eof_after_input(&mut self, key: usize) {
        if self.again.contains(&key) {
            return;
        }
        if let Some(conn) = self.conns.get_mut(key).filter(|c| !c.retired) {
            if conn.recv == Recv::Eof {
                conn.recv = Recv::Ended;
                conn.machine.on_eof(&mut self.ws, key);
                self.settle();
            }
        }
    }

    fn sent(&mut self, key: usize, result: i32) {
        let mut held = std::mem::take(&mut self.io.send_scratch);
        let offered = self.io.ring.sent(key, &mut held);
        tracing::trace!(key, result, offered, "send completion");
        let Some(conn) = self.conns.get_mut(key).filter(|c| !c.retired) else {
            held.clear();
            self.io.send_scratch = held;
            self.free_if_done(key);
            return;
        };
        let result = match result {
            n if n > 0 => {
                self.shared.metrics[self.index].bytes_out.add(n as u64);
                Ok(n as usize)
            }
            0 if offered > 0 => Err(io::ErrorKind::WriteZero.into()),
            0 => Ok(0),
            e if e == -libc::EAGAIN || e == -libc::EINTR => Ok(0),
            e => Err(io::Error::from_raw_os_error(-e)),
        };
        conn.machine.on_sent(&mut self.ws, key, result, &mut held);
        self.io.send_scratch = held;
        // Bytes queued meanwhile (or left by a short send) go out in this pass's send stage.
        if conn.machine.backlog_bytes() > 0 {
            self.dirty.push(key);
        }
        if !self.read_paused.is_empty()
            && !conn.machine.over_cap(&self.ws)
            && self.read_paused.remove(&key)
        {
            self.again.push(key);
        }
        self.settle();
    }
}
