//! The one loop that carries out what the machines ask for, and the handler calls it makes,
//! for both drivers: a send, a FIN and a finished machine are the driver's to carry out
//! (`Driver::transmit`, `fin`, `close`).
//!
//! `settle` drains the workspace's queue in order. A handler call runs with an `Outbox`; the
//! commands it makes for this reactor's connections are applied as soon as it returns, before
//! the next event, and applying a command only changes a machine (which may queue more
//! events at the back): no handler call is ever made from inside another, so no flag guards
//! re-entry and no connection key stands in for "none". A panic in the handler is contained
//! to the connection the call was about.

use std::panic::{catch_unwind, AssertUnwindSafe};

use switchboard_codec::ws::handshake::UpgradeRequest;
use switchboard_codec::ws::CloseCode;
use tracing::warn;

use super::super::handle::Command;
use super::super::handler::{Admission, ConnInfo, Disconnect, Handler, Message, Outbox};
use super::super::machine::Event;
use super::{Driver, DriverConn, Reactor};

impl<H: Handler, D: Driver> Reactor<H, D> {
    /// Carries out every queued event, including those the carrying out queues.
    pub(crate) fn settle(&mut self) {
        while let Some((key, event)) = self.ws.next_event() {
            if self.is_live(key) {
                self.perform(key, event);
            }
        }
    }

    fn perform(&mut self, key: usize, event: Event) {
        match event {
            Event::Open(upgrade) => self.open(key, upgrade),
            Event::Message(message) => self.deliver(key, message, false),
            Event::OverRate(message) => self.deliver(key, message, true),
            Event::Disconnect(reason) => {
                self.shared.metrics[self.index].closed(&reason);
                let id = self.id(key);
                if self
                    .call_handler(|h, out| h.disconnect(out, id, &reason))
                    .is_none()
                {
                    warn!("handler panicked in disconnect");
                }
                self.apply_local();
            }
            Event::Deadline(deadline) => {
                self.wheel.insert(key, deadline);
            }
            Event::Transmit => D::transmit(self, key),
            Event::Fin => D::fin(self, key),
            Event::Close => D::close(self, key),
        }
    }

    /// Asks the handler to admit a connection; what it pushes in `open` follows the answer
    /// (for WebSocket, the 101).
    fn open(&mut self, key: usize, upgrade: Option<Box<UpgradeRequest>>) {
        let id = self.id(key);
        let machine = self.conns[key].machine();
        let info = ConnInfo {
            transport: machine.transport(),
            peer: machine.peer(),
            upgrade: upgrade.as_deref(),
        };
        let answer = self.call_handler(|h, out| h.open(out, id, &info));
        if let Some(Admission::Accept { .. }) = answer {
            self.shared.metrics[self.index].admitted(info.transport);
        }
        self.conns[key]
            .machine_mut()
            .on_admission(&mut self.ws, key, upgrade.as_deref(), answer);
        self.apply_local();
    }

    /// Hands the handler a message: `over_rate` when it came past the connection's message
    /// rate (within its grace).
    fn deliver(&mut self, key: usize, message: Message, over_rate: bool) {
        let id = self.id(key);
        self.shared.metrics[self.index].messages_in.inc();
        let handled = if over_rate {
            self.call_handler(|h, out| h.over_rate(out, id, message))
        } else {
            self.call_handler(|h, out| h.message(out, id, message))
        };
        if handled.is_none() {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.machine_mut().on_handler_panic(&mut self.ws, key);
            }
        }
        self.apply_local();
    }

    pub(crate) fn end_of_batch(&mut self) {
        if self.call_handler(|h, out| h.end_of_batch(out)).is_none() {
            warn!("handler panicked in end_of_batch");
        }
        self.apply_local();
        self.settle();
    }

    /// Asks the handler for its own work of this pass ([`Handler::poll`]) and applies what it
    /// pushed; keeps the wait it asked for.
    pub(crate) fn poll_handler(&mut self) {
        match self.call_handler(|h, out| h.poll(out)) {
            Some(wait) => self.handler_wait = wait,
            None => {
                warn!("handler panicked in poll");
                self.handler_wait = None;
            }
        }
        self.apply_local();
        self.settle();
    }

    /// Runs a handler callback; `None` if it panicked. Its commands wait in `local`.
    pub(crate) fn call_handler<R>(
        &mut self,
        f: impl FnOnce(&mut H, &mut Outbox<'_>) -> R,
    ) -> Option<R> {
        let mut out = Outbox {
            reactor: self.index,
            local: &mut self.local,
            handle: &self.handle,
        };
        let handler = &mut self.handler;
        catch_unwind(AssertUnwindSafe(|| f(handler, &mut out))).ok()
    }

    /// Applies the commands of the handler call that just returned, in the order made.
    pub(crate) fn apply_local(&mut self) {
        if self.local.is_empty() {
            return;
        }
        let mut commands = std::mem::take(&mut self.local);
        for command in commands.drain(..) {
            self.apply(command);
        }
        debug_assert!(
            self.local.is_empty(),
            "applying a command called the handler"
        );
        self.local = commands; // keep the allocation
    }

    pub(crate) fn inbox_ready(&mut self) {
        self.inbox.rearm();
        // Connections whose pushes did not fit go first, so nothing queued after the gap
        // reaches them (see `handle`).
        for id in self.inbox.take_overflowed() {
            let Some(key) = self.live_key(id) else {
                continue;
            };
            let machine = self.conns[key].machine_mut();
            warn!(peer = %machine.peer(), "closing connection: its pushes overflowed the reactor's inbox");
            self.shared.metrics[self.index].inbox_overflow_closes.inc();
            let queued = machine.backlog_bytes();
            let reason = Disconnect::SlowConsumer { queued };
            machine.close(&mut self.ws, key, CloseCode::TRY_AGAIN_LATER, reason);
            self.settle();
        }
        while let Some(command) = self.inbox.take() {
            self.apply(command);
            self.settle();
        }
    }

    fn apply(&mut self, command: Command) {
        match command {
            Command::Push(id, message) => {
                let Some(key) = self.live_key(id) else { return };
                self.shared.metrics[self.index].messages_out.inc();
                self.conns[key]
                    .machine_mut()
                    .send(&mut self.ws, key, message);
            }
            Command::Close(id, code) => {
                let Some(key) = self.live_key(id) else { return };
                let reason = Disconnect::ClosedByServer(code);
                self.conns[key]
                    .machine_mut()
                    .close(&mut self.ws, key, code, reason);
            }
            Command::Shutdown => self.begin_drain(),
            Command::Drain(period) => self.begin_spread_drain(period),
        }
    }
}
