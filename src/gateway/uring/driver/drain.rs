//! Stopping accepting when a drain begins (`driver_core/drain.rs` runs the drain itself).
//!
//! It differs from epoll in one way: closing a listener's descriptor does not stop its
//! multishot accept (the ring holds its own reference to the socket), and after a handover
//! the socket lives on in the new process. So the accept is cancelled by descriptor before the
//! descriptor closes; otherwise this reactor would go on taking the new process's
//! connections. A connection the accept returned before the cancel took effect (or one held
//! while input was paused) is closed cleanly, as a drain closes one still in its handshake:
//! dropping it with the client's bytes unread would reset it.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use switchboard_codec::ws::CloseCode;

use super::super::super::handler::{Handler, Transport};
use super::{user_data, Op, Reactor};

impl<H: Handler> Reactor<H> {
    /// Stops accepting: each armed multishot accept is cancelled (by descriptor, submitted
    /// while the descriptor is still open) and this reactor's listeners closed. Sockets held
    /// while input was paused are closed cleanly.
    pub(super) fn stop_accepting(&mut self) {
        let io = &mut self.io;
        for listener in [io.tcp_listener.take(), io.ws_listener.take()]
            .into_iter()
            .flatten()
        {
            if listener.armed {
                let fd = listener.socket.as_raw_fd();
                io.ring.cancel_fd(fd, user_data(Op::Other, 0));
                // Submitted before the listener closes: the cancel finds the file by its fd.
                let _ = io.ring.submit_and_wait(Some(Duration::ZERO));
            }
        }
        for (fd, transport) in std::mem::take(&mut self.io.accept_held) {
            self.close_late(fd, transport);
        }
    }

    /// A socket accepted after the drain began stopping accepts: opened and closed at once,
    /// with 1012 in a spread drain and 1001 in a shutdown.
    pub(super) fn close_late(&mut self, fd: OwnedFd, transport: Transport) {
        let code = if self.spreading() {
            CloseCode::SERVICE_RESTART
        } else {
            CloseCode::GOING_AWAY
        };
        self.open_socket(fd, transport, Some(code));
    }
}
