//! The gateway's counters: one block per reactor, written only by that reactor's thread (see
//! `crate::metrics`: a bump is a relaxed load and store on a cache line no other thread
//! writes), summed by [`GatewayProbe`] when `/metrics` is scraped. Never a shared atomic per
//! message.
//!
//! The epoll driver bumps them at a few one-line call sites (accept, admission, message in and
//! out, bytes read and written, close) and once per pass publishes its loop time and the
//! refusals its connection machines counted in their workspace (sans-I/O, they only count).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::driver_core::Shared;
use super::handle::GatewayHandle;
use super::handler::{Disconnect, Transport};
use crate::metrics::{Counter, Histogram, HistogramSnapshot, SECONDS_BOUNDS};

/// Why a connection was refused before the handler saw it, as `/metrics` labels them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// At `--max-conns`.
    MaxConns,
    /// `--proxy-protocol` and a peer outside `--trusted-proxies`.
    UntrustedProxy,
    /// A missing, malformed or lying PROXY header.
    BadProxyHeader,
    /// The handler refused it (a WebSocket upgrade or a TCP connection).
    Handler,
    /// A WebSocket upgrade request that was not one (bad request line, headers, version).
    BadUpgrade,
    /// No PROXY header or upgrade request within the handshake timeout.
    HandshakeTimeout,
    /// A connection from an address that holds `--max-conns-per-ip` already.
    IpConnections,
    /// A connection from an address opening them faster than `--ip-connect-rate`.
    IpConnectRate,
    /// A WebSocket upgrade whose Origin is not in `--allowed-origins` (403).
    Origin,
    /// A message past the connection's message rate, within its grace (the chat server
    /// answers it RATE_LIMITED). Not a connection refused: a message.
    MessageOverRate,
    /// A connection closed for sending messages past its rate and grace (1008 on WebSocket).
    MessageRateClose,
}

impl Refusal {
    /// Every refusal, in label order.
    pub const ALL: [Refusal; 11] = [
        Refusal::MaxConns,
        Refusal::UntrustedProxy,
        Refusal::BadProxyHeader,
        Refusal::Handler,
        Refusal::BadUpgrade,
        Refusal::HandshakeTimeout,
        Refusal::IpConnections,
        Refusal::IpConnectRate,
        Refusal::Origin,
        Refusal::MessageOverRate,
        Refusal::MessageRateClose,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::MaxConns => "max_conns",
            Refusal::UntrustedProxy => "untrusted_proxy",
            Refusal::BadProxyHeader => "bad_proxy_header",
            Refusal::Handler => "handler",
            Refusal::BadUpgrade => "bad_upgrade",
            Refusal::HandshakeTimeout => "handshake_timeout",
            Refusal::IpConnections => "ip_connections",
            Refusal::IpConnectRate => "ip_connect_rate",
            Refusal::Origin => "origin",
            Refusal::MessageOverRate => "message_over_rate",
            Refusal::MessageRateClose => "message_rate_close",
        }
    }
}

/// The refusals of every reactor summed, by reason ([`Gateway::refusals`](super::Gateway::refusals)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefusalCounts(pub [u64; Refusal::ALL.len()]);

impl RefusalCounts {
    /// The count of one reason.
    pub fn get(&self, why: Refusal) -> u64 {
        self.0[why as usize]
    }
}

/// The `reason` labels of closes, by [`close_reason`].
pub const CLOSE_REASONS: [&str; 8] = [
    "peer_closed",
    "read_timeout",
    "protocol",
    "slow_consumer",
    "io",
    "server",
    "shutdown",
    "handler_panic",
];

/// The index of a disconnect's label in [`CLOSE_REASONS`].
pub fn close_reason(why: &Disconnect) -> usize {
    match why {
        Disconnect::PeerClosed(_) => 0,
        Disconnect::ReadTimeout => 1,
        Disconnect::Protocol(_) => 2,
        Disconnect::SlowConsumer { .. } => 3,
        Disconnect::Io(_) => 4,
        Disconnect::ClosedByServer(_) => 5,
        Disconnect::Shutdown => 6,
        Disconnect::HandlerPanic => 7,
    }
}

/// The label of a transport.
pub fn transport_index(transport: Transport) -> usize {
    match transport {
        Transport::Tcp => 0,
        Transport::WebSocket => 1,
    }
}

/// The labels of TLS handshake results, by index of [`ReactorMetrics::tls_handshakes`].
pub const TLS_RESULTS: [&str; 2] = ["ok", "failed"];

/// One reactor's counters. Aligned so that two reactors' blocks never share a cache line.
#[derive(Debug)]
#[repr(align(128))]
pub struct ReactorMetrics {
    /// Connections accepted and admitted, by transport (`transport_index`).
    pub accepted: [Counter; 2],
    /// WebSocket upgrades completed.
    pub handshakes: Counter,
    /// TLS handshakes finished and failed (timed out included), by `TLS_RESULTS` index.
    pub tls_handshakes: [Counter; 2],
    /// Whole messages (packets, WebSocket messages) read from clients.
    pub messages_in: Counter,
    /// Bytes read from sockets.
    pub bytes_in: Counter,
    /// Messages queued for clients.
    pub messages_out: Counter,
    /// Bytes written to sockets.
    pub bytes_out: Counter,
    /// Closes by reason (`close_reason`).
    pub closes: [Counter; CLOSE_REASONS.len()],
    /// Connections closed because their pushes overflowed this reactor's inbox.
    pub inbox_overflow_closes: Counter,
    /// io_uring only: receives that found the reactor's buffer ring empty (ENOBUFS) and
    /// waited for buffers to come back.
    pub recv_buffers_empty: Counter,
    /// Refusals by reason (`Refusal`, in the order of `Refusal::ALL`).
    pub refusals: [Counter; Refusal::ALL.len()],
    /// The time of one pass of the event loop, polling excluded.
    pub loop_seconds: Histogram,
}

impl Default for ReactorMetrics {
    fn default() -> Self {
        ReactorMetrics {
            accepted: Default::default(),
            handshakes: Counter::default(),
            tls_handshakes: Default::default(),
            messages_in: Counter::default(),
            bytes_in: Counter::default(),
            messages_out: Counter::default(),
            bytes_out: Counter::default(),
            closes: Default::default(),
            inbox_overflow_closes: Counter::default(),
            recv_buffers_empty: Counter::default(),
            refusals: Default::default(),
            loop_seconds: Histogram::new(SECONDS_BOUNDS),
        }
    }
}

impl ReactorMetrics {
    /// Counts a refusal.
    #[inline]
    pub fn refused(&self, why: Refusal) {
        self.refusals[why as usize].inc();
    }

    /// Counts a connection admitted (TCP: opened; WebSocket: upgraded).
    #[inline]
    pub fn admitted(&self, transport: Transport) {
        self.accepted[transport_index(transport)].inc();
        if transport == Transport::WebSocket {
            self.handshakes.inc();
        }
    }

    /// Counts a close.
    #[inline]
    pub fn closed(&self, why: &Disconnect) {
        self.closes[close_reason(why)].inc();
    }
}

/// The gateway's numbers, read from any thread: the reactors' counters summed, and the
/// gauges the gateway keeps anyway.
#[derive(Clone)]
pub struct GatewayProbe {
    pub(crate) shared: Arc<Shared>,
    pub(crate) handle: GatewayHandle,
}

/// The reactors' counters, summed.
#[derive(Debug, Clone)]
pub struct GatewayTotals {
    /// Accepted connections by transport: [tcp, ws].
    pub accepted: [u64; 2],
    /// WebSocket upgrades completed.
    pub handshakes: u64,
    /// TLS handshakes by result, in [`TLS_RESULTS`] order.
    pub tls_handshakes: [u64; 2],
    /// Messages in.
    pub messages_in: u64,
    /// Bytes in.
    pub bytes_in: u64,
    /// Messages out.
    pub messages_out: u64,
    /// Bytes out.
    pub bytes_out: u64,
    /// Closes by reason, in [`CLOSE_REASONS`] order.
    pub closes: [u64; CLOSE_REASONS.len()],
    /// Closes for an overflowing inbox.
    pub inbox_overflow_closes: u64,
    /// Receives that found the buffer ring empty (io_uring).
    pub recv_buffers_empty: u64,
    /// Refusals, in `Refusal::ALL` order.
    pub refusals: [u64; Refusal::ALL.len()],
    /// Loop time of every reactor together.
    pub loop_seconds: HistogramSnapshot,
}

impl GatewayProbe {
    /// Connections open right now.
    pub fn open_connections(&self) -> usize {
        self.shared.open_conns.load(Ordering::Acquire)
    }

    /// Whether the listeners speak TLS (every connection does, then).
    pub fn tls(&self) -> bool {
        self.shared.config.tls.is_some()
    }

    /// Bytes queued for writing, as of each reactor's last pass.
    pub fn queued_bytes(&self) -> usize {
        self.shared.queued_bytes.load(Ordering::Acquire)
    }

    /// Connections closed for the process's queued-bytes budget.
    pub fn budget_closes(&self) -> u64 {
        self.shared.budget_closes.load(Ordering::Relaxed)
    }

    /// Sources whose SYNs the listeners drop now (`--syn-filter`).
    pub fn syn_blocked_sources(&self) -> u64 {
        self.shared.syn_filter.blocked_now()
    }

    /// Sources blocked since the start, each block counted.
    pub fn syn_blocks(&self) -> u64 {
        self.shared.syn_filter.blocks_total()
    }

    /// Bytes of pushes waiting in each reactor's inbox.
    pub fn inbox_bytes(&self) -> Vec<usize> {
        (0..self.handle.reactors())
            .map(|index| self.handle.inbox_bytes(index))
            .collect()
    }

    /// The reactors' counters, summed.
    pub fn totals(&self) -> GatewayTotals {
        let blocks = &self.shared.metrics;
        let sum = |f: &dyn Fn(&ReactorMetrics) -> &Counter| -> u64 {
            blocks.iter().map(|block| f(block).get()).sum()
        };
        let mut loop_seconds = Histogram::new(SECONDS_BOUNDS).snapshot();
        for block in blocks.iter() {
            loop_seconds.merge(&block.loop_seconds.snapshot());
        }
        GatewayTotals {
            accepted: [0, 1].map(|i| sum(&|b| &b.accepted[i])),
            handshakes: sum(&|b| &b.handshakes),
            tls_handshakes: [0, 1].map(|i| sum(&|b| &b.tls_handshakes[i])),
            messages_in: sum(&|b| &b.messages_in),
            bytes_in: sum(&|b| &b.bytes_in),
            messages_out: sum(&|b| &b.messages_out),
            bytes_out: sum(&|b| &b.bytes_out),
            closes: std::array::from_fn(|i| sum(&|b| &b.closes[i])),
            inbox_overflow_closes: sum(&|b| &b.inbox_overflow_closes),
            recv_buffers_empty: sum(&|b| &b.recv_buffers_empty),
            refusals: std::array::from_fn(|i| sum(&|b| &b.refusals[i])),
            loop_seconds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_do_not_share_cache_lines() {
        assert_eq!(std::mem::align_of::<ReactorMetrics>(), 128);
        assert_eq!(std::mem::size_of::<ReactorMetrics>() % 128, 0);
    }

    #[test]
    fn every_refusal_has_its_place_and_a_label() {
        for (i, why) in Refusal::ALL.into_iter().enumerate() {
            assert_eq!(why as usize, i, "ALL is in declaration order");
        }
        let mut labels: Vec<_> = Refusal::ALL.iter().map(|r| r.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Refusal::ALL.len());
    }

    #[test]
    fn every_disconnect_has_a_label() {
        let all = [
            Disconnect::PeerClosed(None),
            Disconnect::ReadTimeout,
            Disconnect::Protocol(String::new()),
            Disconnect::SlowConsumer { queued: 0 },
            Disconnect::Io(std::io::ErrorKind::Other),
            Disconnect::ClosedByServer(switchboard_codec::ws::CloseCode::NORMAL),
            Disconnect::Shutdown,
            Disconnect::HandlerPanic,
        ];
        let mut seen: Vec<usize> = all.iter().map(close_reason).collect();
        seen.dedup();
        assert_eq!(seen, (0..CLOSE_REASONS.len()).collect::<Vec<_>>());
    }
}
