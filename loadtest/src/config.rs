//! `RunConfig`: everything one engine (one process) needs for a run, already parsed and
//! checked; the command line in main.rs builds it, and tests build it directly.

use std::net::IpAddr;
use std::time::Duration;

use crate::target::Target;

/// What each connection does once ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Connect, log in, heartbeat, hold.
    Idle,
    /// Echo messages of `size` bytes against an echo server.
    Echo,
    /// Pairs of users sending 1:1 messages through a chat server.
    Chat,
    /// Groups of `group_size` users; every member sends to its group.
    Group,
}

impl Scenario {
    /// Its name on the command line and in the summary.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Idle => "idle",
            Scenario::Echo => "echo",
            Scenario::Chat => "chat",
            Scenario::Group => "group",
        }
    }
}

/// One engine's run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// What the connections do.
    pub scenario: Scenario,
    /// Where they connect.
    pub target: Target,
    /// How many connections this engine opens.
    pub conns: usize,
    /// New connections per second.
    pub ramp_per_s: f64,
    /// The whole run, ramp and drain included: the engine stops by itself at this time.
    pub duration: Duration,
    /// The last part of `duration`, with no new messages, for answers still in flight.
    pub drain: Duration,
    /// Local addresses to bind outgoing sockets to, round-robin (empty: the kernel picks).
    pub source_ips: Vec<IpAddr>,
    /// The server process to sample from /proc.
    pub server_pid: Option<u32>,
    /// The secret tokens are minted with; `Some` means the target is a chat server (log in).
    pub jwt_secret: Option<Vec<u8>>,
    /// Message body or echo payload size in bytes (at least 12: timestamp and sender).
    pub size: usize,
    /// Total messages per second over all connections; 0 for as fast as the window allows.
    pub rate: f64,
    /// How a paced run's messages are spread in time (`rate` > 0).
    pub arrivals: crate::pacer::Arrivals,
    /// Messages awaiting their answer per connection.
    pub inflight: u32,
    /// Members per group (scenario `group`).
    pub group_size: usize,
    /// Interval between heartbeats of a ready connection.
    pub heartbeat: Duration,
    /// Heartbeat with a WebSocket ping (timed by its pong) instead of PING or an echo.
    pub ws_ping: bool,
    /// A connection not ready (connected, upgraded, logged in) within this time fails.
    pub setup_timeout: Duration,
    /// User ids are this prefix and the connection's index (distinct per worker process).
    pub user_prefix: String,
    /// Print a progress line to stderr once a second, starting with this label.
    pub progress: Option<String>,
    /// Whom a `tls://` or `wss://` target's certificate must verify with (`--tls-ca`).
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl RunConfig {
    /// A configuration with the defaults of the command line, for `scenario` against `target`.
    pub fn new(scenario: Scenario, target: Target) -> RunConfig {
        RunConfig {
            scenario,
            target,
            conns: 100,
            ramp_per_s: 5_000.0,
            duration: Duration::from_secs(10),
            drain: Duration::from_secs(1),
            source_ips: Vec::new(),
            server_pid: None,
            jwt_secret: None,
            size: 64,
            rate: 0.0,
            arrivals: crate::pacer::Arrivals::Poisson,
            inflight: 1,
            group_size: 10,
            heartbeat: Duration::from_secs(30),
            ws_ping: false,
            setup_timeout: Duration::from_secs(10),
            user_prefix: "lt".into(),
            progress: None,
            tls: None,
        }
    }

    /// Whether connections log in (the target is a chat server).
    pub fn logs_in(&self) -> bool {
        self.jwt_secret.is_some()
    }
}
