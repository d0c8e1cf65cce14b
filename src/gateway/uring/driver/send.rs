//! The send stage that ends every pass: each connection with bytes to send and no send in
//! flight gets one send submission (submitted with the next wait, so a pass's sends cost one
//! `io_uring_enter` together); one with a send in flight is sent again when it completes.
//! Then the process-wide budget of queued bytes (`--max-queued-bytes`, `driver_core/budget.rs`).

use super::super::super::handler::Handler;
use super::{user_data, Op, Reactor};

/// Slices per send: as on epoll (`machine::outgoing::MAX_IOV`).
const MAX_IOV: usize = 64;

impl<H: Handler> Reactor<H> {
    pub(super) fn send_stage(&mut self) {
        // Sending may cut a slow consumer, whose handler call may push to others: loop until
        // nothing more asks to send.
        while !self.dirty.is_empty() {
            let mut dirty = std::mem::take(&mut self.dirty);
            for key in dirty.drain(..) {
                self.send(key);
                self.settle();
            }
            if self.dirty.is_empty() {
                self.dirty = dirty; // keep the allocation
            }
        }
        self.publish_queued();
        if self.over_budget() {
            self.shed_largest_queues();
            self.settle();
            self.send_stage_again();
            self.publish_queued();
        }
        self.ws.end_pass();
    }

    /// What the shedding closes queued (close frames to others are not expected, but a
    /// handler may push in `disconnect`).
    fn send_stage_again(&mut self) {
        while let Some(key) = self.dirty.pop() {
            self.send(key);
            self.settle();
        }
    }

    /// Submits what the connection has to send, unless a send is already in flight (then the
    /// completion sends the rest).
    fn send(&mut self, key: usize) {
        let Some(file) = self.file(key) else {
            return;
        };
        let conn = &mut self.conns[key];
        if self.io.ring.sending(key) {
            conn.machine.defer_send(&mut self.ws, key);
            return;
        }
        let mut out = std::mem::take(&mut self.io.send_scratch);
        conn.machine.transmit(&mut self.ws, key, MAX_IOV, &mut out);
        if out.is_empty() {
            // Nothing to send is everything sent: a closing connection moves on to its FIN.
            conn.machine.on_sent(&mut self.ws, key, Ok(0), &mut out);
        } else {
            self.io
                .ring
                .send(key, file, &mut out, user_data(Op::Send, key));
        }
        self.io.send_scratch = out;
        self.io.send_scratch.clear();
    }
}
