//! The process-wide budget of queued bytes (`--max-queued-bytes`), enforced at the end of
//! each send stage: each reactor publishes what its backlogs grew or shrank by, and one over
//! the budget closes its own largest queues (so no lock is shared; the largest queues of the
//! process are among the largest of some reactor).

use std::sync::atomic::Ordering;

use tracing::warn;

use super::super::handler::{Disconnect, Handler};
use super::{Driver, DriverConn, Reactor};

impl<H: Handler, D: Driver> Reactor<H, D> {
    /// Adds what this reactor's backlogs grew or shrank by since its last pass to the total
    /// of the process.
    pub(crate) fn publish_queued(&mut self) {
        let queued = &self.shared.queued_bytes;
        let here = self.ws.queued();
        if here > self.queued_published {
            queued.fetch_add(here - self.queued_published, Ordering::AcqRel);
        } else if here < self.queued_published {
            queued.fetch_sub(self.queued_published - here, Ordering::AcqRel);
        }
        self.queued_published = here;
    }

    pub(crate) fn over_budget(&self) -> bool {
        self.ws.queued() > 0
            && self.shared.queued_bytes.load(Ordering::Acquire)
                > self.shared.config.max_queued_bytes
    }

    /// The process holds more queued bytes than `--max-queued-bytes`: closes this reactor's
    /// connections with the largest backlogs, largest first, until the total is under it.
    pub(crate) fn shed_largest_queues(&mut self) {
        let mut largest: Vec<(usize, usize)> = self
            .ws
            .backlogged()
            .filter(|&key| self.is_live(key))
            .map(|key| (self.conns[key].machine().backlog_bytes(), key))
            .collect();
        largest.sort_unstable_by(|a, b| b.cmp(a));
        let budget = self.shared.config.max_queued_bytes;
        let mut total = self.shared.queued_bytes.load(Ordering::Acquire);
        for (queued, key) in largest {
            if total <= budget {
                break;
            }
            let closes = self.shared.budget_closes.fetch_add(1, Ordering::Relaxed) + 1;
            let machine = self.conns[key].machine_mut();
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
