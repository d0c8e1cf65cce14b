//! New connections from the listeners' multishot accepts: the same checks as on epoll
//! (`epoll::admission_checks`), a slot, a machine, and a receive. While the handler can take no
//! input, accepted sockets wait in `accept_held` and the accepts are cancelled; on EMFILE or
//! ENFILE the accept is re-armed on a timer instead of spinning.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;

use io_uring::cqueue;
use switchboard_codec::ws::CloseCode;
use tracing::{debug, warn};

use super::super::super::epoll::{admission_checks, is_resource_exhaustion};
use super::super::super::handler::{Disconnect, Handler, Transport};
use super::super::super::machine::Machine;
use super::super::ring::accepted_socket;
use super::{user_data, Conn, Op, Reactor, Recv, ACCEPT_RETRY_TICKS};

impl<H: Handler> Reactor<H> {
    /// Arms the multishot accept of each listener that has none, unless input is paused or
    /// accepting is paused after EMFILE.
    pub(super) fn arm_accepts(&mut self) {
        if self.input_paused || self.accept_paused_at.is_some() {
            return;
        }
        let ring = &mut self.ring;
        if let Some(listener) = self.tcp_listener.as_mut().filter(|l| !l.armed) {
            ring.accept(listener.socket.as_raw_fd(), user_data(Op::AcceptTcp, 0));
            listener.armed = true;
        }
        if let Some(listener) = self.ws_listener.as_mut().filter(|l| !l.armed) {
            ring.accept(listener.socket.as_raw_fd(), user_data(Op::AcceptWs, 0));
            listener.armed = true;
        }
    }

    /// After EMFILE/ENFILE: accept again once the retry time passed.
    pub(super) fn accept_retry(&mut self) {
        if let Some(paused_at) = self.accept_paused_at {
            if self.now.saturating_sub(paused_at) >= ACCEPT_RETRY_TICKS {
                self.accept_paused_at = None;
                self.arm_accepts();
            }
        }
    }

    fn cancel_accepts(&mut self) {
        for listener in [self.tcp_listener.as_mut(), self.ws_listener.as_mut()]
            .into_iter()
            .flatten()
        {
            if listener.armed {
                let fd = listener.socket.as_raw_fd();
                self.ring.cancel_fd(fd, user_data(Op::Other, 0));
            }
        }
    }

    pub(super) fn accepted(&mut self, transport: Transport, cqe: &cqueue::Entry) {
        let listener = match transport {
            Transport::Tcp => self.tcp_listener.as_mut(),
            Transport::WebSocket => self.ws_listener.as_mut(),
        };
        if !cqueue::more(cqe.flags()) {
            if let Some(listener) = listener {
                listener.armed = false; // re-armed at the end of the batch
            }
        }
        let result = cqe.result();
        if result < 0 {
            let error = std::io::Error::from_raw_os_error(-result);
            if is_resource_exhaustion(&error) {
                if !self.accept_paused_warned {
                    self.accept_paused_warned = true;
                    warn!(reactor = self.index, error = %error, "accept paused: out of descriptors or memory");
                }
                self.accept_paused_at = Some(self.now);
            } else if result != -libc::ECANCELED {
                debug!(reactor = self.index, error = %error, "accept failed");
            }
            return;
        }
        let fd = accepted_socket(result);
        self.accept_paused_warned = false;
        if self.draining_until.is_some() {
            // Its completion was on its way when the drain cancelled the accept.
            self.close_late(fd, transport);
            return;
        }
        if !self.input_allowed() {
            // A new connection is input too: it waits until the handler has room.
            self.accept_held.push((fd, transport));
            self.cancel_accepts();
            return;
        }
        self.admit_socket(fd, transport);
    }

    pub(super) fn admit_socket(&mut self, fd: OwnedFd, transport: Transport) {
        self.open_socket(fd, transport, None);
    }

    /// Gives an accepted socket a slot, a machine and a receive, unless the admission checks
    /// refuse it; when `closing`, the machine is closed with that code at once (a socket
    /// accepted during a drain, see `drain.rs`), which a drain does not refuse.
    pub(super) fn open_socket(
        &mut self,
        fd: OwnedFd,
        transport: Transport,
        closing: Option<CloseCode>,
    ) {
        let peer: SocketAddr = match socket2::SockRef::from(&fd)
            .peer_addr()
            .ok()
            .and_then(|a| a.as_socket())
        {
            Some(peer) => peer,
            None => return, // gone already (reset before we looked): closing it is all
        };
        let shared = &self.shared;
        let draining = self.draining_until.is_some() && closing.is_none();
        let Some(ip_counted) = admission_checks(shared, self.index, peer, draining, self.now)
        else {
            return;
        };
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if key >= u32::MAX as usize {
            shared.open_conns.fetch_sub(1, Ordering::AcqRel);
            if ip_counted {
                shared.per_ip.release(peer.ip(), self.now);
            }
            return;
        }
        if self.generations.len() <= key {
            self.generations.resize(key + 1, 0);
        }
        let generation = self.generations[key];
        let mut machine = Machine::new(&mut self.ws, key, peer, transport);
        if ip_counted {
            machine.set_ip_counted();
        }
        entry.insert(Conn {
            fd,
            generation,
            machine,
            recv: Recv::Off,
            cancels: 0,
            retired: false,
        });
        self.settle();
        if let Some(code) = closing {
            if let Some(conn) = self.conns.get_mut(key).filter(|c| !c.retired) {
                conn.machine
                    .close(&mut self.ws, key, code, Disconnect::Shutdown);
                self.settle();
            }
        }
        self.ensure_recv(key);
    }
}
