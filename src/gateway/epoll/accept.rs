//! New connections: accepting within a budget per pass, and pausing on EMFILE/ENFILE. The
//! checks made before a connection gets a slot are the shared ones (`Reactor::open_slot`).

use std::io;
use std::net::SocketAddr;

use mio::net::TcpStream;

use super::super::handler::{Handler, Transport};
use super::Reactor;

/// Accepts per readiness event before the connections already open get their turn.
const ACCEPT_BUDGET: usize = 256;

impl<H: Handler> Reactor<H> {
    pub(super) fn accept_ready(&mut self, transport: Transport) {
        if !self.input_allowed() {
            // A new connection is input too (its handshake, its open event): it waits in the
            // kernel's backlog.
            self.io.accept_unread = true;
            return;
        }
        for _ in 0..ACCEPT_BUDGET {
            let listener = match transport {
                Transport::Tcp => self.io.tcp_listener.as_ref(),
                Transport::WebSocket => self.io.ws_listener.as_ref(),
            };
            let Some(listener) = listener else { return };
            match listener.accept() {
                Ok((stream, peer)) => {
                    self.accept_paused_warned = false;
                    self.admit_socket(stream, peer, transport);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    if self.accept_failed(&e) {
                        return;
                    }
                }
            }
        }
        self.io.accept_again = true;
    }

    /// Accepts that were cut short, and those paused by EMFILE once the retry time passed.
    pub(super) fn accept_pending(&mut self) {
        if self.io.accept_again {
            self.io.accept_again = false;
            self.accept_ready(Transport::Tcp);
            self.accept_ready(Transport::WebSocket);
        }
        if self.accept_retry_due() {
            self.accept_ready(Transport::Tcp);
            self.accept_ready(Transport::WebSocket);
        }
    }

    fn admit_socket(&mut self, stream: TcpStream, peer: SocketAddr, transport: Transport) {
        let draining = self.draining_until.is_some();
        self.open_slot(stream, peer, transport, draining);
    }
}
