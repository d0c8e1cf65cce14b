//! New connections: accepting within a budget per pass, the checks made before a connection
//! gets a slot (trusted proxies, `--max-conns`, draining), and pausing on EMFILE/ENFILE.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use mio::net::TcpStream;
use mio::{Interest, Token};
use tracing::{debug, info, warn};

use super::super::handler::{Handler, Transport};
use super::super::limits::IpRefusal;
use super::super::machine::Machine;
use super::super::metrics::Refusal;
use super::{Conn, Reactor, Shared, ACCEPT_RETRY_TICKS};

/// Accepts per readiness event before the connections already open get their turn.
const ACCEPT_BUDGET: usize = 256;

impl<H: Handler> Reactor<H> {
    pub(super) fn accept_ready(&mut self, transport: Transport) {
        if !self.input_allowed() {
            // A new connection is input too (its handshake, its open event): it waits in the
            // kernel's backlog.
            self.accept_unread = true;
            return;
        }
        for _ in 0..ACCEPT_BUDGET {
            let listener = match transport {
                Transport::Tcp => self.tcp_listener.as_ref(),
                Transport::WebSocket => self.ws_listener.as_ref(),
            };
            let Some(listener) = listener else { return };
            match listener.accept() {
                Ok((stream, peer)) => {
                    self.accept_paused_warned = false;
                    self.admit_socket(stream, peer, transport);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if is_resource_exhaustion(&e) => {
                    // The backlog stays full and the listener stays readable; spinning on it
                    // would starve the connections we already serve. Retry on a timer.
                    if !self.accept_paused_warned {
                        self.accept_paused_warned = true;
                        warn!(reactor = self.index, error = %e, "accept paused: out of descriptors or memory");
                    }
                    self.accept_paused_at = Some(self.now);
                    return;
                }
                Err(e) => debug!(reactor = self.index, error = %e, "accept failed"),
            }
        }
        self.accept_again = true;
    }

    /// Accepts that were cut short, and those paused by EMFILE once the retry time passed.
    pub(super) fn accept_pending(&mut self) {
        if self.accept_again {
            self.accept_again = false;
            self.accept_ready(Transport::Tcp);
            self.accept_ready(Transport::WebSocket);
        }
        if let Some(paused_at) = self.accept_paused_at {
            if self.now.saturating_sub(paused_at) >= ACCEPT_RETRY_TICKS {
                self.accept_paused_at = None;
                self.accept_ready(Transport::Tcp);
                self.accept_ready(Transport::WebSocket);
            }
        }
    }

    fn admit_socket(&mut self, mut stream: TcpStream, peer: SocketAddr, transport: Transport) {
        let shared = &self.shared;
        let draining = self.draining_until.is_some();
        let Some(ip_counted) = admission_checks(shared, self.index, peer, draining, self.now)
        else {
            return; // dropping the stream closes it
        };
        let unadmit = |shared: &Shared| {
            shared.open_conns.fetch_sub(1, Ordering::AcqRel);
            if ip_counted {
                shared.per_ip.release(peer.ip(), self.now);
            }
        };
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if key >= u32::MAX as usize {
            unadmit(shared);
            return;
        }
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            unadmit(shared);
            warn!(%peer, error = %e, "could not register connection");
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
            stream,
            generation,
            machine,
        });
        self.settle();
    }
}

/// The checks a new connection passes before it gets a slot (both drivers): a PROXY header's
/// sender among the trusted proxies, `--max-conns`, not draining, the per-IP limits. `None`:
/// refused (counted and logged), close it. `Some(ip_counted)`: admitted and counted in
/// `open_conns` (and, if `ip_counted`, in the per-IP table).
pub(crate) fn admission_checks(
    shared: &Shared,
    reactor: usize,
    peer: SocketAddr,
    draining: bool,
    now: u64,
) -> Option<bool> {
    if let Some(trusted) = &shared.config.proxy_protocol {
        if !trusted.contains(peer.ip()) {
            info!(%peer, "closing connection: PROXY header expected, peer not in --trusted-proxies");
            shared.metrics[reactor].refused(Refusal::UntrustedProxy);
            return None;
        }
    }
    if draining || shared.open_conns.fetch_add(1, Ordering::AcqRel) >= shared.config.max_conns {
        if !draining {
            shared.open_conns.fetch_sub(1, Ordering::AcqRel);
        }
        debug!(%peer, "connection refused: at --max-conns");
        shared.metrics[reactor].refused(Refusal::MaxConns);
        return None;
    }
    // With PROXY, the client's address is known only once its header is read: the
    // machine asks the per-IP table then.
    let ip_counted = shared.config.proxy_protocol.is_none() && shared.per_ip.is_on();
    if ip_counted {
        if let Err(refusal) = shared.per_ip.admit(peer.ip(), now) {
            shared.open_conns.fetch_sub(1, Ordering::AcqRel);
            info!(%peer, "connection refused: {refusal}");
            shared.metrics[reactor].refused(match refusal {
                IpRefusal::TooManyConnections => Refusal::IpConnections,
                IpRefusal::ConnectRate => Refusal::IpConnectRate,
            });
            return None;
        }
    }
    Some(ip_counted)
}

/// Whether `accept` failed because the process or the system ran out of descriptors or memory.
pub(crate) fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}
