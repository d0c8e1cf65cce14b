//! The checks a new connection passes before it gets a slot, on both drivers.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use tracing::{debug, info};

use super::super::handler::Transport;
use super::super::limits::IpRefusal;
use super::super::metrics::Refusal;
use super::Shared;

/// The checks a new connection passes before it gets a slot: on a listener that expects a
/// PROXY header, its sender among the trusted proxies, `--max-conns`, not draining, the per-IP limits. `None`:
/// refused (counted and logged), close it. `Some(ip_counted)`: admitted and counted in
/// `open_conns` (and, if `ip_counted`, in the per-IP table).
pub(super) fn admission_checks(
    shared: &Shared,
    reactor: usize,
    peer: SocketAddr,
    transport: Transport,
    draining: bool,
    now: u64,
) -> Option<bool> {
    let proxied = shared.config.proxy_header_listeners().covers(transport);
    if let Some(trusted) = shared.config.proxy_protocol.as_ref().filter(|_| proxied) {
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
    let ip_counted = !proxied && shared.per_ip.is_on();
    if ip_counted {
        if let Err(refusal) = shared.per_ip.admit(peer.ip(), now) {
            shared.open_conns.fetch_sub(1, Ordering::AcqRel);
            info!(%peer, "connection refused: {refusal}");
            // Refused on its own address (not a PROXY header's): the kernel can tell it apart.
            shared.syn_filter.refused(peer, now);
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
