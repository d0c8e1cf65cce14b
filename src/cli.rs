//! The `switchboard` command line: subcommands, the options they share, and signal handling.
//!
//! Every option of `serve` and `echo` can also come from a TOML file (`--config`, see
//! [`config_file`]); `switchboard config` prints one holding every default.
//!
//! SIGINT and SIGTERM (or `POST /admin/drain` on `serve`) start a drain without a reconnect
//! storm: `/readyz` turns 503 at once; after `--drain-grace` the listeners stop accepting;
//! then the connections are closed evenly over `--drain-period` (WebSocket with 1012; on
//! `serve`, logged-in clients first get RECONNECT_AFTER and KICKED), and the process exits
//! when every connection is gone or `--drain-timeout` after the period. A second signal exits
//! at once.

mod config_file;
mod echo;
mod lifecycle;
mod serve;
#[cfg(test)]
mod tests;
mod token;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::gateway::{
    AllowedOrigins, ControlLimit, GatewayConfig, Keepalive, PerIpLimit, ProxyListeners, RateLimit,
    SocketOptions, SynFilterConfig, TlsAcceptor, TrustedProxies,
};

use echo::run_echo;
use serve::run_serve;
use token::run_token;

/// Where the gateway listens when neither `--ws` nor `--tcp` is given: loopback only, so a
/// first run exposes nothing to the network.
pub const DEFAULT_WS: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    9001,
));
/// The framed-TCP default, beside [`DEFAULT_WS`].
pub const DEFAULT_TCP: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    9000,
));

#[derive(Parser, Debug)]
#[command(
    name = "switchboard",
    version,
    about = "An instant-messaging gateway for a million connections per node"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Echo's and serve's options are boxed: hundreds of bytes apart, they would size every
/// variant to the largest (clippy::large_enum_variant).
#[derive(Subcommand, Debug)]
enum Command {
    /// Run the gateway with an echo handler: every message comes back unchanged.
    Echo(Box<EchoArgs>),
    /// Print a login token (an HS256 JWT) for a user, as the application's backend mints them.
    Token(TokenArgs),
    /// Run the chat server: gateway, logic core and the store (embedded SQLite, or
    /// PostgreSQL with --store).
    Serve(Box<ServeArgs>),
    /// Print every option of `serve` set to its default, as a commented TOML file that
    /// `serve --config` (and `echo --config`) accepts.
    Config,
}

/// Options of a running server that are about the process rather than the gateway or chat.
#[derive(Args, Debug, Clone)]
struct ProcessArgs {
    /// Read options from this TOML file (`switchboard config` prints one with every default);
    /// options on the command line and environment variables win over it.
    #[arg(long, value_name = "FILE", env = "SWITCHBOARD_CONFIG")]
    config: Option<PathBuf>,
    /// Log as human-readable text, or as one JSON object per line (for log collectors). The
    /// level comes from RUST_LOG (default: warn).
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Restart with no refused connection: listen on this unix socket for a newer process;
    /// started with the same path, a new process first takes the listening sockets over from
    /// the one running there (then that one drains, at once: no grace). Without a process
    /// there, it starts as usual. With --handover the new process runs one reactor per
    /// socket it took over, whatever --workers says.
    #[arg(long, value_name = "PATH")]
    handover: Option<PathBuf>,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per event: timestamp, level, target, fields.
    Json,
}

#[derive(Args, Debug)]
struct ServeArgs {
    #[command(flatten)]
    process: ProcessArgs,
    #[command(flatten)]
    gateway: GatewayArgs,
    /// Where the store keeps its database (and, without --jwt-secret, the generated secret).
    #[arg(long, value_name = "DIR", default_value = "data")]
    data: PathBuf,
    /// The HS256 secret login tokens are signed with [default: DIR/jwt-secret, created on
    /// first start]. Prefer the environment variable: arguments show in `ps`.
    #[arg(
        long,
        value_name = "SECRET",
        env = "SWITCHBOARD_JWT_SECRET",
        hide_env_values = true
    )]
    jwt_secret: Option<String>,
    /// Snowflake node id (0..=1023): distinct for every node that shares a store.
    #[arg(long, value_name = "N", default_value_t = 1)]
    node_id: u16,
    /// Stored messages older than this are purged and never synced.
    #[arg(long, value_name = "DURATION", default_value = "7days", value_parser = humantime::parse_duration)]
    retention: Duration,
    /// A new connection must log in within this time.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    login_timeout: Duration,
    /// Largest message body, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = switchboard_protocol::limits::DEFAULT_MAX_BODY)]
    max_body: u32,
    /// Largest group.
    #[arg(long, value_name = "N", default_value_t = switchboard_protocol::limits::DEFAULT_GROUP_MEMBER_LIMIT)]
    group_member_limit: usize,
    /// SQLite synchronous mode: `full` survives power loss, `normal` (faster) survives a
    /// process crash (WAL).
    #[arg(long, value_name = "MODE", default_value = "full", value_parser = ["full", "normal"])]
    synchronous: String,
    /// How long the store lets a small batch of requests gather before committing it (one
    /// fsync on SQLite, one transaction on PostgreSQL, for all of them), at most 10ms: every
    /// SEND's ack may wait this long, pushes to recipients do not. 0 commits at once.
    #[arg(long, value_name = "DURATION", default_value = "2ms", value_parser = parse_commit_delay)]
    commit_delay: Duration,
    /// SQLite: the WAL's size in pages (4 KiB each) at which a thread of its own copies it
    /// back into the database, beside the commits rather than inside one. 0 leaves it to
    /// SQLite's own checkpoint at 1,000 pages, inside the commit that crosses it.
    #[arg(long, value_name = "PAGES", default_value_t = crate::store::sqlite::DEFAULT_CHECKPOINT_PAGES)]
    checkpoint_pages: u32,
    /// Which thread runs the logic core. `reactor`: the reactor's own thread, which needs one
    /// reactor (--workers 1); a message crosses no thread on its way in and its answers wake
    /// no thread on their way out (about a quarter less CPU per message at 3,000/s). `own`: a
    /// thread of its own. `auto`: `reactor` with one reactor, `own` with more. `reactor` with
    /// more reactors runs as `own`, with a warning.
    #[arg(long, value_name = "auto|own|reactor", default_value = "auto", value_parser = ["auto", "own", "reactor"])]
    logic_thread: String,
    /// The admin HTTP listener (/healthz, /readyz, /metrics, /router and the backend API), or
    /// `off`. Keep it on the operator's network: only the API needs a token.
    #[arg(long, value_name = "ADDR|off", default_value = "127.0.0.1:9090")]
    admin: AdminListen,
    /// The bearer token of the backend API on the admin listener (at least 16 characters);
    /// without one the API is off. Prefer the environment variable: arguments show in `ps`.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "SWITCHBOARD_ADMIN_TOKEN",
        hide_env_values = true
    )]
    admin_token: Option<String>,
    /// The gateway addresses /router gives clients, in the order to try them, as the clients
    /// write them (ws://chat.example.com/,tcp://203.0.113.7:9000) [default: this node's
    /// listeners].
    #[arg(long, value_name = "URL,...", value_delimiter = ',', value_parser = parse_endpoint)]
    advertise: Vec<String>,
    /// In a drain, each logged-in client is told to wait a delay drawn evenly from zero to
    /// this before reconnecting (RECONNECT_AFTER, docs/protocol.md §8), on top of the spread
    /// of the closes over --drain-period.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = humantime::parse_duration)]
    drain_reconnect_delay: Duration,
    /// Requests a connection may send at once; see --request-rate.
    #[arg(long, value_name = "N", default_value_t = 500)]
    request_burst: u32,
    /// Requests (packets) per second a connection may send on average (0: no limit). Past the
    /// burst and this rate a request is answered RATE_LIMITED and not carried out; a
    /// connection that sends another burst's worth past it is closed (1008 on WebSocket).
    #[arg(long, value_name = "N", default_value_t = 50)]
    request_rate: u32,
    /// Where messages, inboxes, positions and groups are kept: `sqlite` (a database in
    /// --data, embedded) or a PostgreSQL location, `postgres://USER:PASSWORD@HOST:PORT/DB`
    /// (or libpq's `host=... dbname=...`). Prefer the environment variable when the location
    /// holds a password: arguments show in `ps`.
    #[arg(
        long,
        value_name = "STORE",
        default_value = "sqlite",
        env = "SWITCHBOARD_STORE",
        hide_env_values = true,
        value_parser = parse_store
    )]
    store: StoreLocation,
}

/// `--commit-delay`: a duration of at most [`MAX_COMMIT_DELAY`] (every ack may wait it).
fn parse_commit_delay(text: &str) -> Result<Duration, String> {
    let delay = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if delay > MAX_COMMIT_DELAY {
        return Err(format!(
            "at most {} (every acknowledgement may wait this long)",
            humantime::format_duration(MAX_COMMIT_DELAY)
        ));
    }
    Ok(delay)
}

const MAX_COMMIT_DELAY: Duration = Duration::from_millis(10);

/// `--store`: the embedded SQLite database, or a PostgreSQL location.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StoreLocation {
    Sqlite,
    Postgres(String),
}

fn parse_store(value: &str) -> Result<StoreLocation, String> {
    if value == "sqlite" {
        return Ok(StoreLocation::Sqlite);
    }
    let is_url = value.starts_with("postgres://") || value.starts_with("postgresql://");
    if !is_url && !value.contains('=') {
        return Err("expected `sqlite`, a postgres:// URL or libpq's `key=value` form".into());
    }
    value
        .parse::<tokio_postgres::Config>()
        .map_err(|e| format!("not a PostgreSQL location: {e}"))?;
    Ok(StoreLocation::Postgres(value.to_owned()))
}

/// `--admin`: an address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AdminListen(Option<SocketAddr>);

impl std::str::FromStr for AdminListen {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text == "off" {
            return Ok(AdminListen(None));
        }
        text.parse()
            .map(|addr| AdminListen(Some(addr)))
            .map_err(|e| format!("{e}: expected ADDR:PORT or off"))
    }
}

/// An `--advertise` entry: a gateway address in the SDK's syntax.
fn parse_endpoint(text: &str) -> Result<String, String> {
    let schemes = ["ws://", "wss://", "tcp://", "tls://"];
    match schemes.iter().find(|scheme| text.starts_with(**scheme)) {
        Some(scheme) if text.len() > scheme.len() => Ok(text.to_owned()),
        _ => Err(format!(
            "expected ws://host[:port][/path] or tcp://host:port, got {text:?}"
        )),
    }
}

/// The shortest backend API token accepted: a guessable token is worse than none.
const MIN_ADMIN_TOKEN: usize = 16;

#[derive(Args, Debug)]
struct EchoArgs {
    #[command(flatten)]
    process: ProcessArgs,
    #[command(flatten)]
    gateway: GatewayArgs,
    /// Largest WebSocket message, in bytes, after reassembly. Echo only: the chat server's
    /// WebSocket limit is one packet, --max-packet plus its 10-byte header.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    max_message: usize,
    /// Messages a connection may send at once; see --message-rate.
    #[arg(long, value_name = "N", default_value_t = 500)]
    message_burst: u32,
    /// Messages per second a connection may send on average; the message past the burst and
    /// this rate closes the connection (1008 on WebSocket). 0, the default here: no limit, as
    /// echo serves load generators; set it where echo faces clients you do not run.
    #[arg(long, value_name = "N", default_value_t = 0)]
    message_rate: u32,
}

impl ServeArgs {
    /// docs/protocol.md §4, RATE_LIMITED: past the burst and rate a request is answered
    /// RATE_LIMITED, for another burst's worth; the request after that closes the connection.
    fn request_limit(&self) -> RateLimit {
        RateLimit {
            burst: self.request_burst,
            per_second: self.request_rate,
            grace: self.request_burst,
        }
    }
}

impl EchoArgs {
    /// Echo has no way to say "slow down": the message past the rate closes the connection.
    fn message_limit(&self) -> RateLimit {
        RateLimit {
            burst: self.message_burst,
            per_second: self.message_rate,
            grace: 0,
        }
    }
}

#[derive(Args, Debug)]
struct TokenArgs {
    /// The user id the token names (its `sub`).
    #[arg(long, value_name = "USER")]
    user: String,
    /// How long the token stays valid (whole seconds count).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
    ttl: Duration,
    /// The device kind (`dev`): one login per user and device kind [default: "default"].
    #[arg(long, value_name = "KIND")]
    device: Option<String>,
    /// The secret shared with the gateways (prefer the environment variable: arguments show in `ps`).
    #[arg(
        long,
        value_name = "SECRET",
        env = "SWITCHBOARD_JWT_SECRET",
        hide_env_values = true
    )]
    jwt_secret: Option<String>,
    /// Without a secret, use the one `switchboard serve --data DIR` generated in DIR.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
}

/// Options of the gateway tier, shared by every subcommand that runs it.
#[derive(Args, Debug, Clone)]
pub struct GatewayArgs {
    /// Framed-TCP listen address [default, when neither --ws nor --tcp is given: 127.0.0.1:9000].
    #[arg(long, value_name = "ADDR")]
    tcp: Option<SocketAddr>,
    /// WebSocket listen address [default, when neither --ws nor --tcp is given: 127.0.0.1:9001].
    #[arg(long, value_name = "ADDR")]
    ws: Option<SocketAddr>,
    /// Reactor threads [default: the number of cores].
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// How the reactors drive sockets: `epoll`, or `uring` (io_uring; where the kernel
    /// refuses it, the gateway runs on epoll and logs why).
    #[arg(
        long,
        value_name = "epoll|uring",
        default_value = "epoll",
        env = "SWITCHBOARD_BACKEND"
    )]
    backend: crate::gateway::Backend,
    /// io_uring's receive levers (`all`, `none`, or a list of incremental, bundle, shrink):
    /// for measuring each apart.
    #[arg(
        long,
        value_name = "LEVERS",
        default_value = "incremental,shrink",
        env = "SWITCHBOARD_URING_RECV",
        hide = true
    )]
    uring_recv: crate::gateway::UringRecv,
    /// Connections held at most; further ones are accepted and closed at once.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    max_conns: usize,
    /// Largest packet payload, in bytes (the 10-byte header not counted), in both directions
    /// on both transports: a WebSocket message, one packet, is at most this plus 10.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    max_packet: usize,
    /// Bytes held for a client (write queue, unfinished inbound frame) before it is closed as a
    /// slow consumer; never less than twice the largest message.
    #[arg(long, value_name = "BYTES", default_value_t = 4 << 20)]
    write_queue_cap: usize,
    /// Bytes queued for writing across all connections of the process; when a pass ends over
    /// it, the connections with the largest queues are closed first (counted in the log).
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 30)]
    max_queued_bytes: usize,
    /// WebSocket control frames (ping, pong) a connection may send at once; see --control-rate.
    /// `serve` applies the same limit to PING packets on both transports.
    #[arg(long, value_name = "N", default_value_t = 20)]
    control_burst: u32,
    /// WebSocket control frames per second a connection may send on average; the frame past
    /// the burst and this rate closes it with 1008 (policy violation). 0: no limit.
    #[arg(long, value_name = "N", default_value_t = 5)]
    control_rate: u32,
    /// Close a connection that sends nothing for this long (heartbeat read-wait).
    #[arg(long, value_name = "DURATION", default_value = "3m", value_parser = humantime::parse_duration)]
    read_wait: Duration,
    /// A WebSocket client must complete its upgrade request within this time.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    handshake_timeout: Duration,
    /// In a drain (SIGTERM, SIGINT, `POST /admin/drain`), /readyz says 503 this long before
    /// the listeners stop accepting: at least the load balancer's health check interval, so
    /// it sends new connections elsewhere first.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    drain_grace: Duration,
    /// In a drain, the open connections are closed evenly over this period after the grace,
    /// so their clients do not all reconnect at once (0: all at once).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    drain_period: Duration,
    /// In a drain, after the period, wait at most this long for the last connections to
    /// finish closing before exiting.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,
    /// Disable TCP_NODELAY (Nagle's algorithm back on).
    #[arg(long)]
    no_nodelay: bool,
    /// Idle time before the first keepalive probe (0 disables keepalive). Keep it under the
    /// shortest NAT timeout of your clients' carriers (one minute on some mobile networks).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    keepalive_idle: Duration,
    /// Time between keepalive probes.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    keepalive_interval: Duration,
    /// Unanswered keepalive probes before the kernel drops the connection.
    #[arg(long, value_name = "N", default_value_t = 3)]
    keepalive_probes: u32,
    /// TCP_USER_TIMEOUT [default: keepalive idle + interval × probes; 0 leaves the kernel's].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    user_timeout: Option<Duration>,
    /// SO_RCVBUF in bytes (unset: kernel autotuning).
    #[arg(long, value_name = "BYTES")]
    rcvbuf: Option<usize>,
    /// SO_SNDBUF in bytes (unset: kernel autotuning).
    #[arg(long, value_name = "BYTES")]
    sndbuf: Option<usize>,
    /// Listen backlog (capped by net.core.somaxconn).
    #[arg(long, value_name = "N", default_value_t = 4096)]
    backlog: i32,
    /// Every connection on these listeners (alone: both) must open with a PROXY protocol header
    /// (v1 or v2, what haproxy's send-proxy and send-proxy-v2 send) from a peer in
    /// --trusted-proxies; the client address it carries is the one logged and given to the
    /// application. Connections without a valid header, or from other peers, are closed.
    /// LISTENERS: all, tcp, ws (or tcp,ws), none.
    #[arg(long, value_name = "LISTENERS", num_args = 0..=1, default_missing_value = "all")]
    proxy_protocol: Option<ProxyListeners>,
    /// The load balancers allowed to send a PROXY header, as a comma-separated list of CIDR
    /// networks or addresses (10.0.0.0/8,192.0.2.7); required with --proxy-protocol.
    #[arg(long, value_name = "CIDR,...")]
    trusted_proxies: Option<TrustedProxies>,
    /// Connections one client address may hold at once (0: no limit); more are closed at
    /// accept. The address is the PROXY header's with --proxy-protocol; IPv6 counts by /64.
    /// Off by default: behind a balancer without the PROXY protocol every client has the
    /// balancer's address, and carrier NAT puts many phones behind one address.
    #[arg(long, value_name = "N", default_value_t = 0)]
    max_conns_per_ip: u32,
    /// New connections one client address may open at once; see --ip-connect-rate.
    #[arg(long, value_name = "N", default_value_t = 100)]
    ip_connect_burst: u32,
    /// New connections per second one client address may open on average (0: no limit);
    /// past the burst and this rate a connection is closed at accept.
    #[arg(long, value_name = "N", default_value_t = 0)]
    ip_connect_rate: u32,
    /// A client address refused by the per-IP limits 20 times within a second has its SYNs
    /// dropped by the kernel (a socket filter on the listeners) for --syn-filter-penalty,
    /// doubled on each repeat up to 32×, instead of costing an accept and a close per attempt.
    /// Never an address of --trusted-proxies, never after a PROXY header; acts only when the
    /// per-IP limits are on. on or off.
    #[arg(long, value_name = "on|off", default_value = "on", value_parser = parse_on_off, action = clap::ArgAction::Set)]
    syn_filter: bool,
    /// How long a first block of --syn-filter lasts.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    syn_filter_penalty: Duration,
    /// Origins whose web pages may open WebSockets, comma-separated
    /// (https://chat.example.com,http://localhost:8080); an upgrade with any other Origin
    /// header gets 403. An upgrade without an Origin header (an app, not a browser) is let
    /// through. Unset: every origin.
    #[arg(long, value_name = "ORIGIN,...")]
    allowed_origins: Option<AllowedOrigins>,
    /// Both listeners speak TLS (wss:// and TLS-framed TCP) with this certificate chain (PEM,
    /// leaf first); needs --tls-key. SIGHUP reads both files again: new handshakes use the new
    /// certificate, open connections stay, and a bad file keeps the old one (logged).
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1); needs --tls-cert.
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

/// Gateway options that make no sense together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayArgsError {
    /// `--proxy-protocol` without a trusted balancer: every connection would be refused.
    #[error(
        "--proxy-protocol needs --trusted-proxies CIDR,... naming the load balancers that may \
         send a PROXY header (every connection would be refused without it)"
    )]
    NoTrustedProxies,
    /// The certificate or key of `--tls-cert`/`--tls-key` cannot be used.
    #[error("TLS: {0}")]
    Tls(String),
}

impl GatewayArgs {
    /// The gateway configuration these options describe.
    pub fn to_config(&self) -> Result<GatewayConfig, GatewayArgsError> {
        let proxy_listeners = self.proxy_protocol.unwrap_or(ProxyListeners::NONE);
        let proxy_protocol = match (proxy_listeners, &self.trusted_proxies) {
            (ProxyListeners::NONE, _) => None,
            (_, Some(trusted)) if !trusted.is_empty() => Some(trusted.clone()),
            _ => return Err(GatewayArgsError::NoTrustedProxies),
        };
        let keepalive = (!self.keepalive_idle.is_zero()).then_some(Keepalive {
            idle: self.keepalive_idle,
            interval: self.keepalive_interval,
            probes: self.keepalive_probes,
        });
        let user_timeout = match self.user_timeout {
            Some(timeout) if timeout.is_zero() => None,
            Some(timeout) => Some(timeout),
            None => keepalive.map(|k| k.idle + k.interval * k.probes),
        };
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(
                TlsAcceptor::from_pem_files(cert, key)
                    .map_err(|e| GatewayArgsError::Tls(e.to_string()))?,
            ),
            _ => None,
        };
        let defaults = GatewayConfig::default();
        Ok(GatewayConfig {
            tls,
            tcp: self.tcp,
            ws: self.ws,
            workers: self.workers.unwrap_or(defaults.workers),
            backend: self.backend,
            uring_recv: self.uring_recv,
            socket: SocketOptions {
                nodelay: !self.no_nodelay,
                keepalive,
                user_timeout,
                recv_buffer: self.rcvbuf,
                send_buffer: self.sndbuf,
                backlog: self.backlog,
            },
            max_conns: self.max_conns,
            max_packet: self.max_packet,
            write_queue_cap: self.write_queue_cap,
            max_queued_bytes: self.max_queued_bytes,
            control_limit: ControlLimit {
                burst: self.control_burst,
                per_second: self.control_rate,
            },
            handshake_timeout: self.handshake_timeout,
            read_wait: self.read_wait,
            drain_timeout: self.drain_timeout,
            proxy_protocol,
            proxy_listeners,
            per_ip: PerIpLimit {
                max_conns: self.max_conns_per_ip,
                connect_burst: self.ip_connect_burst,
                connect_per_second: self.ip_connect_rate,
            },
            allowed_origins: self.allowed_origins.clone(),
            syn_filter: SynFilterConfig {
                enabled: self.syn_filter,
                penalty: self.syn_filter_penalty,
                exempt: self.trusted_proxies.clone(),
            },
            ..defaults
        })
    }
}

/// `on` or `off` (also `true`/`false`), for switches that default to on.
fn parse_on_off(text: &str) -> Result<bool, String> {
    match text {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        _ => Err(format!("expected `on` or `off`, got {text:?}")),
    }
}

/// Runs the command line; the binary's `main`.
pub fn main() -> ExitCode {
    let cli = match parse(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(CliError::Arguments(e)) => e.exit(),
        Err(CliError::FileValue { path, source }) => {
            eprintln!("switchboard: with the options from {}:", path.display());
            source.exit()
        }
        Err(CliError::ConfigFile(e)) => {
            eprintln!("switchboard: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Echo(args) => {
            init_logging(args.process.log_format);
            run_echo(*args)
        }
        Command::Token(args) => {
            init_logging(LogFormat::Text);
            run_token(args)
        }
        Command::Serve(args) => {
            init_logging(args.process.log_format);
            run_serve(*args)
        }
        Command::Config => {
            let root = Cli::command();
            let serve = root
                .find_subcommand("serve")
                .expect("serve is a subcommand");
            print!("{}", config_file::defaults(serve));
            ExitCode::SUCCESS
        }
    }
}

/// Why the command line could not be turned into a [`Cli`].
#[derive(Debug, thiserror::Error)]
enum CliError {
    /// clap's own refusal (or `--help`/`--version`), printed and exited on by clap.
    #[error(transparent)]
    Arguments(#[from] clap::Error),
    /// clap's refusal of a value the `--config` file gave.
    #[error("with the options from {}: {source}", path.display())]
    FileValue {
        /// The file.
        path: PathBuf,
        /// The refusal.
        source: clap::Error,
    },
    /// The `--config` file was unreadable or held a key or value no option takes.
    #[error(transparent)]
    ConfigFile(#[from] config_file::ConfigFileError),
}

/// Parses `argv` (program name first), then, if the subcommand was given `--config FILE`,
/// parses it again with the file's values added for the options it did not set itself.
fn parse(argv: Vec<OsString>) -> Result<Cli, CliError> {
    let root = command();
    let matches = root.clone().try_get_matches_from(&argv)?;
    let config = matches.subcommand().and_then(|(name, given)| {
        let path = given.try_get_one::<PathBuf>("config").ok().flatten()?;
        Some((name, given, path))
    });
    let Some((name, given, path)) = config else {
        return Ok(Cli::from_arg_matches(&matches)?);
    };
    let subcommand = root.find_subcommand(name).expect("clap matched it");
    let from_file = config_file::arguments(&root, subcommand, given, path)?;
    let argv: Vec<OsString> = argv.into_iter().chain(from_file).collect();
    let in_file = |source| CliError::FileValue {
        path: path.clone(),
        source,
    };
    let matches = root.try_get_matches_from(argv).map_err(in_file)?;
    Cli::from_arg_matches(&matches).map_err(in_file)
}

/// The command line as clap sees it: the derived one, with every on/off flag also taking an
/// explicit `--flag=false`, so a flag a `--config` file turns on can be turned off by the
/// command line, which always wins.
fn command() -> clap::Command {
    let names: Vec<String> = Cli::command()
        .get_subcommands()
        .map(|sub| sub.get_name().to_owned())
        .collect();
    names.iter().fold(Cli::command(), |root, name| {
        root.mut_subcommand(name, |sub| {
            let flags: Vec<clap::Id> = sub
                .get_arguments()
                .filter(|arg| matches!(arg.get_action(), clap::ArgAction::SetTrue))
                .map(|arg| arg.get_id().clone())
                .collect();
            flags.iter().fold(sub, |sub, id| {
                sub.mut_arg(id, |arg| {
                    arg.action(clap::ArgAction::Set)
                        .num_args(0..=1)
                        .require_equals(true)
                        .value_name("BOOL")
                        .default_missing_value("true")
                        .default_value("false")
                        .value_parser(clap::value_parser!(bool))
                })
            })
        })
    })
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour codes only for a person at a terminal, not in a file or a journal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
