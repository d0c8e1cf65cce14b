//! What an operator can tune in the gateway tier, with defaults chosen for mobile clients.
//!
//! Keepalive defaults come from the NAT aging table of the design document: some mobile
//! carriers drop an idle NAT mapping after one minute, so the kernel probes an idle
//! connection after 30 s, well inside that window, and gives up on a dead peer after
//! 30 s + 3 × 10 s = 60 s. TCP_USER_TIMEOUT matches that total, so unacknowledged data cannot
//! hold a dead connection open longer than keepalive would (the advice of the Linux TCP
//! maintainers: set both, consistently).

use std::net::SocketAddr;
use std::time::Duration;

use super::limits::{AllowedOrigins, PerIpLimit, RateLimit, SynFilterConfig};
pub use super::machine::ControlLimit;
use super::tls::TlsAcceptor;
use super::trusted_proxies::{ProxyListeners, TrustedProxies};

/// Kernel socket options applied to the listeners (and inherited by accepted sockets).
#[derive(Debug, Clone)]
pub struct SocketOptions {
    /// TCP_NODELAY: IM traffic is small messages that must not wait for Nagle.
    pub nodelay: bool,
    /// SO_KEEPALIVE with these timings, or `None` to leave keepalive off.
    pub keepalive: Option<Keepalive>,
    /// TCP_USER_TIMEOUT: how long sent data may stay unacknowledged before the kernel drops
    /// the connection. `None` leaves the kernel default.
    pub user_timeout: Option<Duration>,
    /// SO_RCVBUF, only when asked: setting it disables the kernel's receive autotuning.
    pub recv_buffer: Option<usize>,
    /// SO_SNDBUF, only when asked: setting it disables the kernel's send autotuning.
    pub send_buffer: Option<usize>,
    /// The listen backlog (the kernel caps it at net.core.somaxconn).
    pub backlog: i32,
}

/// Kernel keepalive timings.
#[derive(Debug, Clone, Copy)]
pub struct Keepalive {
    /// Idle time before the first probe (TCP_KEEPIDLE).
    pub idle: Duration,
    /// Time between probes (TCP_KEEPINTVL).
    pub interval: Duration,
    /// Unanswered probes before the connection is dropped (TCP_KEEPCNT).
    pub probes: u32,
}

impl Default for Keepalive {
    fn default() -> Self {
        Keepalive {
            idle: Duration::from_secs(30),
            interval: Duration::from_secs(10),
            probes: 3,
        }
    }
}

impl Default for SocketOptions {
    fn default() -> Self {
        let keepalive = Keepalive::default();
        SocketOptions {
            nodelay: true,
            keepalive: Some(keepalive),
            user_timeout: Some(keepalive.idle + keepalive.interval * keepalive.probes),
            recv_buffer: None,
            send_buffer: None,
            backlog: 4096,
        }
    }
}

/// How the reactors drive their sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// Readiness through mio (epoll): a `read` and a `writev` per message.
    #[default]
    Epoll,
    /// Completions through one io_uring per reactor (multishot accept and receive from a
    /// shared buffer ring, sends submitted together). Where the kernel refuses io_uring the
    /// gateway runs on epoll and logs why, once.
    Uring,
}

impl std::str::FromStr for Backend {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "epoll" => Ok(Backend::Epoll),
            "uring" | "io_uring" => Ok(Backend::Uring),
            _ => Err(format!("expected `epoll` or `uring`, got {text:?}")),
        }
    }
}

/// io_uring only: the receive side's levers, each used where the kernel has it (else the
/// plain way, silently: none changes what a client sees). Incremental buffers and shrinking
/// are on by default, bundles off (they cost 1.4x the CPU per 64 KiB echo at one in flight:
/// docs/performance.md); `--uring-recv` (hidden) picks them for measuring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UringRecv {
    /// Incremental buffer consumption (`IOU_PBUF_RING_INC`, Linux 6.12): a receive takes
    /// only the bytes it needs of a buffer, so small reads share one buffer.
    pub incremental: bool,
    /// Receive bundles (`IORING_RECVSEND_BUNDLE`, Linux 6.10): one completion for a read
    /// that spans several buffers.
    pub bundle: bool,
    /// The buffer ring goes back toward its initial size after a burst.
    pub shrink: bool,
}

impl UringRecv {
    pub const ALL: UringRecv = UringRecv {
        incremental: true,
        bundle: true,
        shrink: true,
    };
    pub const NONE: UringRecv = UringRecv {
        incremental: false,
        bundle: false,
        shrink: false,
    };
}

impl Default for UringRecv {
    fn default() -> Self {
        UringRecv {
            incremental: true,
            bundle: false,
            shrink: true,
        }
    }
}

impl std::str::FromStr for UringRecv {
    type Err = String;

    /// `all`, `none`, or a comma-separated list of `incremental`, `bundle`, `shrink`.
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "all" => return Ok(UringRecv::ALL),
            "none" | "" => return Ok(UringRecv::NONE),
            _ => {}
        }
        let mut levers = UringRecv::NONE;
        for word in text.split(',') {
            match word.trim() {
                "incremental" => levers.incremental = true,
                "bundle" => levers.bundle = true,
                "shrink" => levers.shrink = true,
                other => {
                    return Err(format!(
                        "expected `all`, `none` or a list of incremental, bundle, shrink; got {other:?}"
                    ))
                }
            }
        }
        Ok(levers)
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Epoll => "epoll",
            Backend::Uring => "uring",
        })
    }
}

/// Everything the reactors need to run.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Address of the framed-TCP listener, if any.
    pub tcp: Option<SocketAddr>,
    /// Address of the WebSocket listener, if any.
    pub ws: Option<SocketAddr>,
    /// Reactor threads, each with its own SO_REUSEPORT listeners.
    pub workers: usize,
    /// epoll or io_uring.
    pub backend: Backend,
    /// Kernel socket options.
    pub socket: SocketOptions,
    /// Connections the whole process holds at most; further ones are accepted and closed.
    pub max_conns: usize,
    /// Largest packet payload accepted on the TCP transport.
    pub max_packet: usize,
    /// Largest WebSocket message accepted (after reassembly). The chat server sets it to
    /// `max_packet` plus the packet header: one limit, on the payload, on both transports.
    pub max_message: usize,
    /// Whether WebSocket text messages reach the handler; when false they are refused with
    /// close code 1003 (the chat protocol is binary; the echo mode accepts text).
    pub ws_text: bool,
    /// Bytes a connection may have queued for writing before it counts as a slow consumer
    /// and is closed. Never less than twice the largest message, whatever is set here.
    pub write_queue_cap: usize,
    /// Bytes queued for writing across every connection of the process. When a pass of a
    /// reactor ends with more queued than this, that reactor closes its connections with the
    /// largest queues (as slow consumers) until the total is back under it.
    pub max_queued_bytes: usize,
    /// Bytes of pushes other threads may have waiting in one reactor's inbox. A push that
    /// does not fit is dropped and its connection closed as a slow consumer (1013, try again
    /// later): the sender never blocks, and the client's reconnect syncs what it missed.
    pub inbox_bytes: usize,
    /// Control frames (ping, pong) a WebSocket connection may send, as a burst and a rate;
    /// the frame past it closes the connection with 1008 (policy violation).
    pub control_limit: ControlLimit,
    /// Messages (framed packets, WebSocket data messages) a connection may send: a burst, a
    /// rate, and a grace of messages past it that the handler sees marked as over the rate
    /// ([`Handler::over_rate`](super::Handler::over_rate)); the message past the grace closes
    /// the connection (1008 on WebSocket). Off by default here: `serve` and `echo` set their
    /// own documented defaults.
    pub message_limit: RateLimit,
    /// Connections per client address, at once and per second (off by default: behind a
    /// balancer without the PROXY protocol every client has the balancer's address).
    pub per_ip: PerIpLimit,
    /// Sources that keep going over `per_ip`'s limits lose their SYNs in the kernel for a
    /// while (a socket filter on the listeners), instead of costing an accept and a close each.
    pub syn_filter: SynFilterConfig,
    /// Origins whose pages may open WebSockets; `None`: any. An upgrade with another Origin
    /// header gets 403; one without an Origin header is let through (not a browser).
    pub allowed_origins: Option<AllowedOrigins>,
    /// When set, every connection on the listeners of `proxy_listeners` must open with a PROXY
    /// protocol header (v1 or v2) and come from one of these networks; the client address the
    /// header carries replaces the peer's. A connection from elsewhere, or without a valid
    /// header, is closed.
    pub proxy_protocol: Option<TrustedProxies>,
    /// With `proxy_protocol`, the listeners it applies to (both by default); the others take
    /// connections from anyone, with no header.
    pub proxy_listeners: ProxyListeners,
    /// When set, both listeners speak TLS (wss:// and TLS-framed TCP) with this certificate,
    /// reloadable in place ([`TlsAcceptor::reload`]).
    pub tls: Option<TlsAcceptor>,
    /// A WebSocket client must finish its upgrade request (and, with `proxy_protocol`, any
    /// client its PROXY header) within this time.
    pub handshake_timeout: Duration,
    /// A connection that sends nothing for this long is closed (heartbeat).
    pub read_wait: Duration,
    /// How long a closing connection may take to finish its close handshake and flush.
    pub close_linger: Duration,
    /// How long a shutdown waits for connections to close before exiting anyway.
    pub drain_timeout: Duration,
    /// Where the reactors' count of 10 ms ticks starts: 0 in service. Tests start it near
    /// the point where a 32-bit count would wrap (497 days of uptime) to show nothing does.
    #[doc(hidden)]
    pub clock_start_ticks: u64,
    /// io_uring only: receive buffers per reactor (a power of two) and their size, when not
    /// the driver's defaults. Tests shrink them to run the buffer ring dry.
    #[doc(hidden)]
    pub uring_recv_buffers: Option<u16>,
    #[doc(hidden)]
    pub uring_recv_buffer_len: Option<u32>,
    /// io_uring only: which receive levers the driver uses.
    #[doc(hidden)]
    pub uring_recv: UringRecv,
}

impl GatewayConfig {
    /// The listeners whose connections must open with a PROXY header: `proxy_listeners` when
    /// `proxy_protocol` is on, none otherwise.
    pub(crate) fn proxy_header_listeners(&self) -> ProxyListeners {
        if self.proxy_protocol.is_some() {
            self.proxy_listeners
        } else {
            ProxyListeners::NONE
        }
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            tcp: None,
            ws: None,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            backend: Backend::Epoll,
            socket: SocketOptions::default(),
            max_conns: 1_000_000,
            max_packet: switchboard_codec::packet::DEFAULT_MAX_PAYLOAD as usize,
            max_message: 1 << 20,
            ws_text: false,
            write_queue_cap: 4 << 20,
            max_queued_bytes: 1 << 30,
            inbox_bytes: 64 << 20,
            control_limit: ControlLimit::default(),
            message_limit: RateLimit::OFF,
            per_ip: PerIpLimit::default(),
            syn_filter: SynFilterConfig::default(),
            allowed_origins: None,
            proxy_protocol: None,
            proxy_listeners: ProxyListeners::ALL,
            tls: None,
            handshake_timeout: Duration::from_secs(10),
            read_wait: Duration::from_secs(180),
            close_linger: Duration::from_secs(2),
            drain_timeout: Duration::from_secs(10),
            clock_start_ticks: 0,
            uring_recv_buffers: None,
            uring_recv_buffer_len: None,
            uring_recv: UringRecv::default(),
        }
    }
}
