//! New connections from the listeners' multishot accepts: the same checks and slot as on
//! epoll (`Reactor::open_slot`), and a receive. While the handler can take no
//! input, accepted sockets wait in `accept_held` and the accepts are cancelled; on EMFILE or
//! ENFILE the accept is re-armed on a timer instead of spinning.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use io_uring::cqueue;
use switchboard_codec::ws::CloseCode;

use super::super::super::handler::{Disconnect, Handler, Transport};
use super::super::ring::accepted_socket;
use super::{user_data, Op, Reactor};

impl<H: Handler> Reactor<H> {
    /// Arms the multishot accept of each listener that has none, unless input is paused or
    /// accepting is paused after EMFILE.
    pub(super) fn arm_accepts(&mut self) {
        if self.input_paused || self.accept_paused_at.is_some() {
            return;
        }
        let io = &mut self.io;
        let ring = &mut io.ring;
        if let Some(listener) = io.tcp_listener.as_mut().filter(|l| !l.armed) {
            ring.accept(listener.socket.as_raw_fd(), user_data(Op::AcceptTcp, 0));
            listener.armed = true;
        }
        if let Some(listener) = io.ws_listener.as_mut().filter(|l| !l.armed) {
            ring.accept(listener.socket.as_raw_fd(), user_data(Op::AcceptWs, 0));
            listener.armed = true;
        }
    }

    /// After EMFILE/ENFILE: accept again once the retry time passed.
    pub(super) fn accept_retry(&mut self) {
        if self.accept_retry_due() {
            self.arm_accepts();
        }
    }

    fn cancel_accepts(&mut self) {
        let io = &mut self.io;
        for listener in [io.tcp_listener.as_mut(), io.ws_listener.as_mut()]
            .into_iter()
            .flatten()
        {
            if listener.armed {
                let fd = listener.socket.as_raw_fd();
                io.ring.cancel_fd(fd, user_data(Op::Other, 0));
            }
        }
    }

    pub(super) fn accepted(&mut self, transport: Transport, cqe: &cqueue::Entry) {
        let listener = match transport {
            Transport::Tcp => self.io.tcp_listener.as_mut(),
            Transport::WebSocket => self.io.ws_listener.as_mut(),
        };
        let ended = !cqueue::more(cqe.flags());
        if ended {
            if let Some(listener) = listener {
                listener.armed = false; // re-armed at the end of the batch
            }
        }
        let result = cqe.result();
        if result < 0 {
            if result != -libc::ECANCELED {
                self.accept_failed(&std::io::Error::from_raw_os_error(-result));
            }
            if ended {
                self.accept_ended(transport);
            }
            return;
        }
        let fd = accepted_socket(result);
        if ended {
            self.accept_ended(transport); // after this connection, which came first
        }
        self.accept_paused_warned = false;
        if self.draining_until.is_some() {
            // Its completion was on its way when the drain cancelled the accept.
            self.accepted_late(fd, transport);
            return;
        }
        if !self.input_allowed() {
            // A new connection is input too: it waits until the handler has room.
            self.io.accept_held.push((fd, transport));
            self.cancel_accepts();
            return;
        }
        self.admit_socket(fd, transport);
    }

    pub(super) fn admit_socket(&mut self, fd: OwnedFd, transport: Transport) {
        self.open_socket(fd, transport, Opening::Now);
    }

    /// Gives an accepted socket a slot, a machine and a receive, unless the admission checks
    /// refuse it (a drain refuses what opens `Now`); see [`Opening`] for the late ones.
    pub(super) fn open_socket(&mut self, fd: OwnedFd, transport: Transport, opening: Opening) {
        let peer: SocketAddr = match socket2::SockRef::from(&fd)
            .peer_addr()
            .ok()
            .and_then(|a| a.as_socket())
        {
            Some(peer) => peer,
            None => return, // gone already (reset before we looked): closing it is all
        };
        let draining = self.draining_until.is_some() && opening == Opening::Now;
        let Some(key) = self.open_slot(fd, peer, transport, draining) else {
            return;
        };
        // Before anything that uses the slot is queued (entries are issued in order). A
        // connection the handler refused in `open` is gone already: nothing to install.
        if let Some(conn) = self.conns.get_mut(key).filter(|c| !c.retired) {
            let (fd, op) = (conn.fd.as_raw_fd(), user_data(Op::Files, key));
            conn.fixed = self.io.ring.install_file(key, fd, op);
        }
        match opening {
            Opening::Now => {}
            Opening::DrainLater => self.drain_later(key),
            Opening::Closing(code) => {
                if let Some(conn) = self.conns.get_mut(key).filter(|c| !c.retired) {
                    conn.machine
                        .close(&mut self.ws, key, code, Disconnect::Shutdown);
                    self.settle();
                }
            }
        }
        self.ensure_recv(key);
    }
}

/// How [`Reactor::open_socket`] opens a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Opening {
    /// An ordinary accept: refused while draining.
    Now,
    /// Accepted after a spread drain began (see `drain.rs`): served, and closed with the others
    /// by the end of the drain's period.
    DrainLater,
    /// Accepted after a shutdown began: closed at once with this code.
    Closing(CloseCode),
}
