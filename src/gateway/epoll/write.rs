//! The send stage that ends every pass: each connection with bytes to send gets one `writev`
//! (more only while the kernel takes all it is offered), whatever the sends cause is carried
//! out in the same loop (a connection cut as a slow consumer tells the handler, which may push
//! to others: they are sent at once), then the process-wide budget of queued bytes
//! (`--max-queued-bytes`) is enforced, and the allocator trimmed after much churn.

use std::sync::atomic::Ordering;

use tracing::{debug, warn};

use super::super::handler::{Disconnect, Handler};
use super::events::write_vectored;
use super::{memory, Reactor, TRIM_AFTER_CHURN, TRIM_EVERY_TICKS};

impl<H: Handler> Reactor<H> {
    pub(super) fn send_stage(&mut self) {
        self.sending = true;
        let mut dirty = std::mem::take(&mut self.dirty);
        for key in dirty.drain(..) {
            self.send(key);
            self.settle();
        }
        self.dirty = dirty; // keep the allocation
        self.publish_queued();
        if self.over_budget() {
            self.shed_largest_queues();
            self.settle();
            self.publish_queued();
        }
        self.sending = false;
        self.ws.end_pass();
    }

    /// Writes what the connection has queued, as far as the kernel takes it.
    pub(super) fn send(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let stream = &mut conn.stream;
        let metrics = &self.shared.metrics[self.index];
        conn.machine.send_with(&mut self.ws, key, |slices| {
            let written = write_vectored(stream, slices);
            if let Ok(n) = written {
                metrics.bytes_out.add(n as u64);
            }
            written
        });
        // Under the cap again: input waiting in the socket is read on the next pass.
        if !self.read_paused.is_empty()
            && !conn.machine.over_cap(&self.ws)
            && self.read_paused.remove(&key)
        {
            self.again.push(key);
        }
    }

    pub(super) fn conn_writable(&mut self, key: usize) {
        if self
            .conns
            .get(key)
            .is_some_and(|c| c.machine.backlog_bytes() > 0)
        {
            self.send(key);
            self.settle();
        }
    }

    /// Adds what this reactor's backlogs grew or shrank by since its last pass to the total
    /// of the process.
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

    /// The process holds more queued bytes than `--max-queued-bytes`: closes this reactor's
    /// connections with the largest backlogs, largest first, until the total is under it.
    /// (Each reactor sheds its own, so no lock is shared; the largest queues of the process
    /// are among the largest of some reactor.)
    fn shed_largest_queues(&mut self) {
        let mut largest: Vec<(usize, usize)> = self
            .ws
            .backlogged()
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

    /// Hands freed memory back to the kernel once enough went through (see `memory`).
    /// Called when the reactor is about to wait for events.
    pub(super) fn trim_after_churn(&mut self) {
        let now = self.clock.now();
        if self.ws.churn() >= TRIM_AFTER_CHURN
            && now.saturating_sub(self.last_trim) >= TRIM_EVERY_TICKS
        {
            let churn = self.ws.take_churn();
            debug!(
                reactor = self.index,
                churn, "returning freed memory to the kernel"
            );
            memory::release_free_memory();
            self.last_trim = now;
        }
    }
}
