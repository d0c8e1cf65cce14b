//! Draining, as on epoll (`epoll/mod.rs`): `Command::Shutdown` closes every connection at
//! once (1001); `Command::Drain` hands the connections open when it began to the handler's
//! `drain` evenly over its period (`gateway/drain.rs` keeps the pace). Both stop accepting
//! first.
//!
//! Stopping accepting differs from epoll in one way: closing a listener's descriptor does not
//! stop its multishot accept (the ring holds its own reference to the socket), and after a
//! handover the socket lives on in the new process. So the accept is cancelled by descriptor
//! before the descriptor closes; otherwise this reactor would go on taking the new process's
//! connections. A connection the accept returned before the cancel took effect (or one held
//! while input was paused) is closed cleanly, as a drain closes one still in its handshake:
//! dropping it with the client's bytes unread would reset it.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use switchboard_codec::ws::CloseCode;
use tracing::{debug, warn};

use super::super::super::clock::ticks;
use super::super::super::conn_id::ConnId;
use super::super::super::drain::DrainSpread;
use super::super::super::handler::{Disconnect, Handler, Transport};
use super::{user_data, Op, Reactor};

impl<H: Handler> Reactor<H> {
    /// `Command::Shutdown`: stop accepting and close every connection now (1001). After a
    /// spread drain, closes what it has not reached yet.
    pub(super) fn begin_drain(&mut self) {
        if self.draining_until.is_some() && self.spread.is_none() {
            return;
        }
        self.spread = None;
        let deadline = self.now + ticks(self.shared.config.drain_timeout);
        self.draining_until = Some(self.draining_until.map_or(deadline, |d| d.min(deadline)));
        self.stop_accepting();
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            if let Some(conn) = self.conns.get_mut(key).filter(|c| !c.retired) {
                let reason = Disconnect::Shutdown;
                conn.machine
                    .close(&mut self.ws, key, CloseCode::GOING_AWAY, reason);
                self.settle();
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
        // The schedule first: the sockets `stop_accepting` closes late are not part of it.
        let conns: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, conn)| !conn.retired)
            .map(|(key, _)| self.id(key))
            .collect();
        debug!(
            reactor = self.index,
            conns = conns.len(),
            "drain: spreading closes"
        );
        self.spread = Some(DrainSpread::new(conns, self.now, period));
        self.stop_accepting();
        self.drain_due();
    }

    /// Hands the connections due by now in a spread drain to the handler's `drain` (one it
    /// has not admitted, still in its handshake, is closed here with 1012).
    pub(super) fn drain_due(&mut self) {
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
            if self.conns[key].machine.is_admitted() {
                if self.call_handler(|h, out| h.drain(out, id)).is_none() {
                    warn!("handler panicked in drain");
                    let reason = Disconnect::HandlerPanic;
                    let code = CloseCode::SERVICE_RESTART;
                    self.conns[key]
                        .machine
                        .close(&mut self.ws, key, code, reason);
                }
                self.apply_local();
            } else {
                let reason = Disconnect::Shutdown;
                let code = CloseCode::SERVICE_RESTART;
                self.conns[key]
                    .machine
                    .close(&mut self.ws, key, code, reason);
            }
            self.settle();
        }
    }

    /// Stops accepting: each armed multishot accept is cancelled (by descriptor, submitted
    /// while the descriptor is still open) and this reactor's listeners closed. Sockets held
    /// while input was paused are closed cleanly.
    fn stop_accepting(&mut self) {
        for listener in [self.tcp_listener.take(), self.ws_listener.take()]
            .into_iter()
            .flatten()
        {
            if listener.armed {
                let fd = listener.socket.as_raw_fd();
                self.ring.cancel_fd(fd, user_data(Op::Other, 0));
                // Submitted before the listener closes: the cancel finds the file by its fd.
                let _ = self.ring.submit_and_wait(Some(Duration::ZERO));
            }
        }
        for (fd, transport) in std::mem::take(&mut self.accept_held) {
            self.close_late(fd, transport);
        }
    }

    /// A socket accepted after the drain began stopping accepts: opened and closed at once,
    /// with 1012 in a spread drain and 1001 in a shutdown.
    pub(super) fn close_late(&mut self, fd: OwnedFd, transport: Transport) {
        let code = if self.spread.is_some() {
            CloseCode::SERVICE_RESTART
        } else {
            CloseCode::GOING_AWAY
        };
        self.open_socket(fd, transport, Some(code));
    }
}
