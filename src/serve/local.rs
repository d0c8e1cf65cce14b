//! The logic core on the reactor's thread (one reactor: the default, `--logic-thread auto`): the
//! reactor's [`ChatHandler`](super::ChatHandler) owns the core and hands it each pass's events
//! itself, then takes its turn in the same pass ([`Handler::poll`]), so a SEND crosses no
//! thread on its way in and its answers no eventfd on their way out.
//!
//! What still comes from other threads wakes the reactor: the store's completions (a
//! `store::CompletionWake` calling the gateway handle's `wake`, once per commit) and the
//! events of the admin API, the shutdown notice and a handover (the core's queue wakes the
//! reactor on every send, `CoreQueue::core_on_reactor`).
//!
//! Backpressure keeps its rules (`bridge`'s doc) with one queue fewer on each side: the way
//! in is the reactor's own batch, handled before the pass reads more, so input waits in the
//! kernel's receive queues while the core works; the way out is [`ReactorOutlet`], whose
//! pushes go into this pass's machines, each bounded by its connection's write cap (a client
//! that does not read is cut as a slow consumer, as it is when the reactor applies its inbox).
//! Nothing is dropped on the way: there is no inbox to be full.
//!
//! [`Handler::poll`]: crate::gateway::Handler::poll

use std::time::Duration;

use bytes::Bytes;
use crossbeam_channel::Receiver;
use switchboard_codec::ws::CloseCode;

use crate::core_queue::CoreBatch;
use crate::gateway::{ConnId, Outbox};
use crate::logic::snowflake::unix_now_ms;
use crate::logic::{CloseWhy, Inbound, LogicCore, Outlet};
use crate::store::{Completion, Engine};

/// The logic core as one reactor's handler holds it, with the inputs other threads fill.
pub struct ReactorCore {
    core: LogicCore<Engine, ReactorOutlet>,
    completions: Receiver<Completion>,
    /// Events from other threads: the admin API's calls, the shutdown notice, a handover's.
    others: Receiver<CoreBatch>,
}

impl ReactorCore {
    pub(super) fn new(
        core: LogicCore<Engine, ReactorOutlet>,
        completions: Receiver<Completion>,
        others: Receiver<CoreBatch>,
    ) -> ReactorCore {
        ReactorCore {
            core,
            completions,
            others,
        }
    }

    /// Handles the reactor's events of this pass (what they push waits in the outlet for
    /// the next [`ReactorCore::deliver`]).
    pub(super) fn handle(&mut self, events: Vec<Inbound>) {
        let now = unix_now_ms();
        for event in events {
            self.core.handle_inbound(event, now);
        }
    }

    /// The core's turn at the end of a pass: other threads' events, the completions, the
    /// timers; what it pushed goes into this pass. Returns how long the reactor may wait
    /// (`None`: until it is woken).
    pub(super) fn poll(&mut self, out: &mut Outbox<'_>) -> Option<Duration> {
        let now = unix_now_ms();
        while let Ok(batch) = self.others.try_recv() {
            for event in batch {
                self.core.handle_inbound(event, now);
            }
        }
        let wait = self.core.turn(&self.completions, now);
        self.deliver(out);
        wait
    }

    /// What the core pushed and closed since the last call, into this pass, in order.
    pub(super) fn deliver(&mut self, out: &mut Outbox<'_>) {
        self.core.outlet_mut().deliver(out);
    }
}

/// The core's outlet on the reactor's thread: pushes and closes wait here, in order, for the
/// handler's next call with an [`Outbox`] in the same pass (the core also runs where there is
/// none: a batch handed over in the middle of a pass). Never holds: the machines take every
/// push, each bounded by its connection's write cap.
pub struct ReactorOutlet {
    reactor: usize,
    pending: Vec<(ConnId, Pending)>,
}

enum Pending {
    Push(Bytes),
    Close(CloseCode),
}

impl ReactorOutlet {
    /// The outlet for the connections of reactor `reactor` (the only one).
    pub(super) fn new(reactor: usize) -> ReactorOutlet {
        ReactorOutlet {
            reactor,
            pending: Vec::new(),
        }
    }

    fn deliver(&mut self, out: &mut Outbox<'_>) {
        for (conn, pending) in self.pending.drain(..) {
            match pending {
                Pending::Push(packet) => out.push(conn, packet),
                Pending::Close(code) => out.close(conn, code),
            }
        }
    }

    /// A command for `conn`, if it is one of this reactor's (an id naming another reactor
    /// names nobody: there is only this one).
    fn add(&mut self, conn: u64, pending: Pending) {
        let conn = ConnId::from_u64(conn);
        if conn.reactor() == self.reactor {
            self.pending.push((conn, pending));
        }
    }
}

impl Outlet for ReactorOutlet {
    fn push(&mut self, conn: u64, packet: Bytes) {
        self.add(conn, Pending::Push(packet));
    }

    fn close(&mut self, conn: u64, why: CloseWhy) {
        self.add(conn, Pending::Close(super::bridge::close_code(why)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outlet_keeps_pushes_and_closes_in_order_for_its_reactor_only() {
        let mut outlet = ReactorOutlet::new(0);
        let (a, b) = (ConnId::new(0, 1, 0), ConnId::new(0, 2, 0));
        outlet.push(a.as_u64(), Bytes::from_static(b"1"));
        outlet.close(b.as_u64(), CloseWhy::Kicked);
        outlet.push(
            ConnId::new(1, 1, 0).as_u64(),
            Bytes::from_static(b"elsewhere"),
        );
        outlet.push(a.as_u64(), Bytes::from_static(b"2"));
        assert!(!outlet.holding());
        let order: Vec<String> = outlet
            .pending
            .iter()
            .map(|(conn, pending)| match pending {
                Pending::Push(packet) => format!("push {:?} to {}", packet, conn.key()),
                Pending::Close(code) => format!("close {} with {}", conn.key(), code.0),
            })
            .collect();
        assert_eq!(
            order,
            ["push b\"1\" to 1", "close 2 with 4003", "push b\"2\" to 1"]
        );
    }
}
