//! Draining: `Command::Shutdown` closes every connection at once (1001); `Command::Drain`
//! hands the connections open when it began to the handler's `drain` evenly over its period
//! (`gateway/drain.rs` keeps the pace). Both stop accepting first (`Driver::stop_accepting`),
//! so the kernel sends new clients to the other sockets of the port (another process that
//! took them over, or no one).

use std::time::Duration;

use switchboard_codec::ws::CloseCode;
use tracing::{debug, warn};

use super::super::clock::ticks;
use super::super::conn_id::ConnId;
use super::super::drain::DrainSpread;
use super::super::handler::{Disconnect, Handler};
use super::{Driver, DriverConn, Reactor};

impl<H: Handler, D: Driver> Reactor<H, D> {
    /// `Command::Shutdown`: stop accepting and close every connection now (1001). After a
    /// spread drain, closes what it has not reached yet. The closes' events are carried out
    /// by the caller's `settle`.
    pub(super) fn begin_drain(&mut self) {
        if self.draining_until.is_some() && self.spread.is_none() {
            return;
        }
        self.spread = None;
        let deadline = self.now + ticks(self.shared.config.drain_timeout);
        self.draining_until = Some(self.draining_until.map_or(deadline, |d| d.min(deadline)));
        D::stop_accepting(self);
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            if let Some(conn) = self.conns.get_mut(key).filter(|c| c.is_live()) {
                let reason = Disconnect::Shutdown;
                conn.machine_mut()
                    .close(&mut self.ws, key, CloseCode::GOING_AWAY, reason);
            }
        }
    }

    /// `Command::Drain`: stop accepting, then close the connections open now evenly over
    /// `period` (see `drain_due`); exit when none is left, or the drain timeout after it.
    pub(super) fn begin_spread_drain(&mut self, period: Duration) {
        if self.draining_until.is_some() {
            return;
        }
        let period = if period.is_zero() { 0 } else { ticks(period) };
        let linger = ticks(self.shared.config.drain_timeout);
        self.draining_until = Some(self.now + period + linger);
        // The schedule first: sockets that stopping the accepts opens and closes late (io_uring)
        // are not part of it.
        let conns: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, conn)| conn.is_live())
            .map(|(key, _)| self.id(key))
            .collect();
        debug!(
            reactor = self.index,
            conns = conns.len(),
            "drain: spreading closes"
        );
        self.spread = Some(DrainSpread::new(conns, self.now, period));
        D::stop_accepting(self);
        self.drain_due();
    }

    /// Hands the connections due by now in a spread drain to the handler's `drain` (one it
    /// has not admitted, still in its handshake, is closed here with 1012).
    pub(crate) fn drain_due(&mut self) {
        loop {
            let Some(spread) = self.spread.as_mut() else {
                return;
            };
            let Some(id) = spread.next_due(self.now) else {
                return;
            };
            let Some(key) = self.live_key(id) else {
                continue;
            };
            let code = CloseCode::SERVICE_RESTART;
            if self.conns[key].machine().is_admitted() {
                if self.call_handler(|h, out| h.drain(out, id)).is_none() {
                    warn!("handler panicked in drain");
                    let reason = Disconnect::HandlerPanic;
                    self.conns[key]
                        .machine_mut()
                        .close(&mut self.ws, key, code, reason);
                }
                self.apply_local();
            } else {
                let reason = Disconnect::Shutdown;
                self.conns[key]
                    .machine_mut()
                    .close(&mut self.ws, key, code, reason);
            }
            self.settle();
        }
    }

    /// Whether a spread drain is under way (a socket accepted late is served and closed with
    /// the others, not closed at once as in a shutdown).
    pub(crate) fn spreading(&self) -> bool {
        self.spread.is_some()
    }

    /// A connection opened after a spread drain began: closed by the end of its period.
    pub(crate) fn drain_later(&mut self, key: usize) {
        let id = self.id(key);
        if let Some(spread) = self.spread.as_mut() {
            spread.add(id);
        }
    }
}
