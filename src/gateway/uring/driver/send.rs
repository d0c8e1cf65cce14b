//! The send stage that ends every pass: each connection with bytes to send and no send in
//! flight gets one send submission (submitted with the next wait, so a pass's sends cost one
//! `io_uring_enter` together); one with a send in flight is sent again when it completes.
//! Then the process-wide budget of queued bytes (`--max-queued-bytes`), as on epoll.

use std::sync::atomic::Ordering;

use tracing::warn;

use super::super::super::handler::{Disconnect, Handler};
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
        let Some(fd) = self.fd(key) else {
            return;
        };
        let conn = &mut self.conns[key];
        if self.ring.sending(key) {
            conn.machine.defer_send(&mut self.ws, key);
            return;
        }
        let mut out = std::mem::take(&mut self.send_scratch);
        conn.machine.transmit(&mut self.ws, key, MAX_IOV, &mut out);
        if out.is_empty() {
            // Nothing to send is everything sent: a closing connection moves on to its FIN.
            conn.machine.on_sent(&mut self.ws, key, Ok(0));
        } else {
            self.ring.send(key, fd, &mut out, user_data(Op::Send, key));
        }
        self.send_scratch = out;
        self.send_scratch.clear();
    }

    fn publish_queued(&mut self) {
        let queued = &self.shared.queued_bytes;
        let here = self.ws.queued();
        if here > self.queued_published {
            queued.fetch_add(here - self.queued_published, Ordering::AcqRel);
        } else if here < self.queued_published {
            queued.fetch_sub(self.queued_published - here, Ordering::AcqRel);
        }
        self.queued_published = here;
    }

    fn over_budget(&self) -> bool {
        self.ws.queued() > 0
            && self.shared.queued_bytes.load(Ordering::Acquire)
                > self.shared.config.max_queued_bytes
    }

    /// Closes this reactor's connections with the largest backlogs until the process is
    /// under `--max-queued-bytes` (see `epoll/write.rs`).
    fn shed_largest_queues(&mut self) {
        let mut largest: Vec<(usize, usize)> = self
            .ws
            .backlogged()
            .filter(|&key| self.is_live(key))
            .map(|key| (self.conns[key].machine.backlog_bytes(), key))
            .collect();
        largest.sort_unstable_by(|a, b| b.cmp(a));
        let budget = self.shared.config.max_queued_bytes;
        let mut total = self.shared.queued_bytes.load(Ordering::Acquire);
        for (queued, key) in largest {
            if total <= budget {
                break;
            }
            let closes = self.shared.budget_closes.fetch_add(1, Ordering::Relaxed) + 1;
            let machine = &mut self.conns[key].machine;
            warn!(
                peer = %machine.peer(),
                queued,
                total,
                budget,
                closes,
                "closing the largest write queue: the process is over --max-queued-bytes"
            );
            machine.abort(&mut self.ws, key, Disconnect::SlowConsumer { queued });
            total = total.saturating_sub(queued);
        }
    }
}
