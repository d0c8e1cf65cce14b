//! Stopping accepting when a drain begins (`driver_core/drain.rs` runs the drain itself).
//!
//! It differs from epoll in two ways. Closing a listener's descriptor does not stop its
//! multishot accept (the ring holds its own reference to the socket), and after a handover
//! the socket lives on in the new process: so the accept is cancelled by descriptor, or this
//! reactor would go on taking the new process's connections. And an io_uring accept waits on
//! the socket exclusively: a new connection wakes one waiter, not every process waiting on
//! the shared socket. A wake-up our accept took just before its cancel is lost to the new
//! process, and the connection it announced would wait in the queue until the next one
//! arrives (a client that connects once waits forever). So the listener stays open until the
//! accept's last completion; then this reactor takes what is queued itself, and only then
//! closes its descriptor: every connection that arrives later wakes the new process.
//!
//! A connection accepted after the drain began (the accept's completion was on its way, or
//! it was left in the queue, or held while input was paused) is one the kernel gave this
//! reactor: in a spread drain it is served and closed with the others by the end of the
//! period; in a shutdown it is closed cleanly at once (dropping it with the client's bytes
//! unread would reset it).

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use socket2::SockRef;
use switchboard_codec::ws::CloseCode;
use tracing::debug;

use super::super::super::handler::{Handler, Transport};
use super::accept::Opening;
use super::{user_data, Op, Reactor};

impl<H: Handler> Reactor<H> {
    /// Stops accepting: each armed multishot accept is cancelled (by descriptor, submitted
    /// while the descriptor is still open) and its listener kept until the accept's last
    /// completion ([`Reactor::accept_ended`]); a listener with no accept armed closes now.
    /// Sockets held while input was paused are accepted late.
    pub(super) fn stop_accepting(&mut self) {
        let io = &mut self.io;
        let listeners = [
            (io.tcp_listener.take(), Transport::Tcp),
            (io.ws_listener.take(), Transport::WebSocket),
        ];
        for (listener, transport) in listeners {
            let Some(listener) = listener else { continue };
            if listener.armed {
                let fd = listener.socket.as_raw_fd();
                io.ring.cancel_fd(fd, user_data(Op::Other, 0));
                // Submitted before anything else: the cancel finds the file by its fd.
                let _ = io.ring.submit_and_wait(Some(Duration::ZERO));
                io.stopping.push((listener.socket, transport));
            }
        }
        for (fd, transport) in std::mem::take(&mut self.io.accept_held) {
            self.accepted_late(fd, transport);
        }
    }

    /// The last completion of a `transport` accept came: if a drain stopped accepting, the
    /// connections still queued on its listener are taken and closed, and the listener
    /// closes.
    pub(super) fn accept_ended(&mut self, transport: Transport) {
        let Some(at) = self.io.stopping.iter().position(|(_, t)| *t == transport) else {
            return;
        };
        let (listener, _) = self.io.stopping.swap_remove(at);
        self.take_queued(&listener, transport);
    }

    /// Whether every listener a drain stopped is closed, or the drain's deadline passed (then
    /// what is still queued is taken now).
    pub(super) fn stopped_accepting(&mut self) -> bool {
        let overdue = self.draining_until.is_some_and(|d| self.now >= d);
        if overdue {
            for (listener, transport) in std::mem::take(&mut self.io.stopping) {
                self.take_queued(&listener, transport);
            }
        }
        self.io.stopping.is_empty()
    }

    /// Accepts (non-blocking) what waits on `listener`, late.
    fn take_queued(&mut self, listener: &std::net::TcpListener, transport: Transport) {
        let mut taken = 0u32;
        while let Ok((socket, _)) = SockRef::from(listener).accept() {
            if socket.set_nonblocking(true).is_err() {
                continue; // dropped: closing it is all we can do
            }
            taken += 1;
            self.accepted_late(OwnedFd::from(socket), transport);
        }
        if taken > 0 {
            debug!(
                reactor = self.index,
                taken, "drain: connections left in a stopped listener's queue accepted late"
            );
        }
    }

    /// A socket accepted after the drain began stopping accepts: served until the spread
    /// drain's period ends, or in a shutdown opened and closed at once (1001).
    pub(super) fn accepted_late(&mut self, fd: OwnedFd, transport: Transport) {
        let opening = if self.spreading() {
            Opening::DrainLater
        } else {
            Opening::Closing(CloseCode::GOING_AWAY)
        };
        self.open_socket(fd, transport, opening);
    }
}
