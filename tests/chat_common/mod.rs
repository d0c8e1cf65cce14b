//! Shared pieces of the chat integration tests: an in-process chat server that shuts itself
//! down when dropped, login tokens, and a blocking protocol client (`client`) over framed TCP
//! or WebSocket. What the gateway tests use too (sockets, WebSocket, the child process, the
//! gateway setup) lives in `tests/shared`. Every socket read has a deadline and every wait a
//! bound, so a broken server fails a test instead of hanging it. Only 127.0.0.1 is used; data
//! lives in temp dirs.

#![allow(dead_code)] // each test binary uses its own subset of these helpers

pub mod client;
#[path = "../shared/postgres.rs"]
pub mod pg_server;
pub mod process;
#[path = "../shared/mod.rs"]
mod shared;

#[allow(unused_imports)] // not every test binary names them
pub use shared::{http, loopback, random_u64, wait_until, IO_TIMEOUT};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use switchboard::admin::AdminConfig;
use switchboard::gateway::{Backend, GatewayConfig, RateLimit};
use switchboard::logic::{LogicConfig, LogicThread};
use switchboard::serve::{ChatServer, StoreConfigPatch};
use switchboard_protocol::limits;

#[allow(unused_imports)] // not every test binary names them
pub use client::{ChatClient, Closure, Event};

thread_local! {
    /// The PostgreSQL database of the test running on this thread; none: SQLite in the data
    /// directory.
    static POSTGRES: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Runs `test` with every server it starts (in process or as a child) on a fresh PostgreSQL
/// database of this binary's server instead of SQLite.
pub fn with_postgres(test: fn()) {
    let url = pg_server::fresh_database();
    POSTGRES.with(|store| *store.borrow_mut() = Some(url));
    test();
}

/// Makes every server this thread starts from now on use the PostgreSQL database at `url`
/// (one the test prepared itself, e.g. in a tablespace of its own).
pub fn use_postgres(url: String) {
    POSTGRES.with(|store| *store.borrow_mut() = Some(url));
}

/// Where the test servers run the logic core: `SWITCHBOARD_LOGIC_THREAD` (`auto`, `own` or
/// `reactor`) if set, else on a thread of its own in the test binaries whose name ends in
/// `_own` (`tests/chat_direct_own.rs`), else `None`: the default, which with the tests' one
/// reactor puts it on the reactor's thread, as a user's `serve --workers 1` does.
pub fn logic_thread() -> Option<LogicThread> {
    if let Ok(name) = std::env::var("SWITCHBOARD_LOGIC_THREAD") {
        return Some(
            name.parse()
                .expect("SWITCHBOARD_LOGIC_THREAD is auto, own or reactor"),
        );
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let name = exe.file_name().and_then(|n| n.to_str()).unwrap_or("");
    // Cargo names a test binary NAME-HASH.
    let target = name.rsplit_once('-').map_or(name, |(target, _)| target);
    target.ends_with("_own").then_some(LogicThread::Own)
}

/// The reactors of a test server in `mode`: two where the core has a thread of its own (so
/// pushes cross between reactors), else one, where the default puts the core on its thread.
pub fn workers_for(mode: Option<LogicThread>) -> usize {
    match mode {
        Some(LogicThread::Own) => 2,
        _ => 1,
    }
}

/// The PostgreSQL location the running test's servers use, if it runs on PostgreSQL.
pub fn postgres() -> Option<String> {
    POSTGRES.with(|store| store.borrow().clone())
}

/// Runs each named test (a `#[test] fn()` of the file) once more on PostgreSQL, as
/// `on_postgres::NAME`: the file's tests run on both stores.
#[macro_export]
macro_rules! on_postgres_too {
    ($($name:ident),* $(,)?) => {
        mod on_postgres {
            $(#[test]
            fn $name() {
                super::chat_common::with_postgres(super::$name)
            })*
        }
    };
}

/// The secret every test server and token shares.
pub const SECRET: &[u8] = b"switchboard-chat-tests";

/// The two transports a client can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Framed TCP: a byte stream of packets.
    Tcp,
    /// WebSocket: one binary message per packet.
    Ws,
}

/// Both transports, for tests that run once over each.
pub const BOTH: [Transport; 2] = [Transport::Tcp, Transport::Ws];

/// What a test may change about a server; the rest are the production defaults.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub login_timeout: Duration,
    pub read_wait: Duration,
    pub group_member_limit: usize,
    pub max_body: u32,
    pub retention: Option<Duration>,
    pub workers: usize,
    pub max_packet: usize,
    /// The admin listener (on a free loopback port) and its API token, if any.
    pub admin: Option<AdminOptions>,
    /// The per-connection request rate (`--request-rate`); off unless a test sets it.
    pub message_limit: RateLimit,
    /// The gateway's backend; `None`: the test binary's (`shared::backend`).
    pub backend: Option<Backend>,
    /// io_uring's receive buffers per reactor and their size; `None`: the defaults.
    pub uring_recv_buffers: Option<(u16, u32)>,
    /// The bound on each reactor's inbox of pushes (`--inbox-bytes`); `None`: the default.
    pub inbox_bytes: Option<usize>,
    /// Where the logic core runs (`--logic-thread`); `Reactor` makes the server one reactor.
    /// `None`: the default (`auto`: with one reactor, the reactor's thread).
    pub logic_thread: Option<LogicThread>,
}

/// The admin listener of a test server.
#[derive(Debug, Clone, Default)]
pub struct AdminOptions {
    /// The API's bearer token; `None` leaves the API off.
    pub token: Option<String>,
    /// What `/router` lists.
    pub advertise: Vec<String>,
}

/// The API token tests use.
pub const ADMIN_TOKEN: &str = "admin-token-for-the-tests";

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            login_timeout: Duration::from_secs(10),
            read_wait: Duration::from_secs(180),
            group_member_limit: limits::DEFAULT_GROUP_MEMBER_LIMIT,
            max_body: limits::DEFAULT_MAX_BODY,
            retention: None,
            workers: workers_for(logic_thread()),
            max_packet: switchboard_codec::packet::DEFAULT_MAX_PAYLOAD as usize,
            admin: None,
            message_limit: RateLimit::OFF,
            backend: None,
            uring_recv_buffers: None,
            inbox_bytes: None,
            logic_thread: logic_thread(),
        }
    }
}

/// A chat server running in this process: both transports on free loopback ports.
/// Dropping it drains and joins every thread, even when the test panics.
pub struct TestServer {
    server: Option<ChatServer>,
    tcp: SocketAddr,
    ws: SocketAddr,
    admin: Option<SocketAddr>,
    data: PathBuf,
    // Declared last: the directory outlives the server that writes into it.
    _dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// A server with default options on a fresh data directory.
    pub fn start() -> TestServer {
        TestServer::with_options(ServerOptions::default())
    }

    /// A server with `options` on a fresh data directory.
    pub fn with_options(options: ServerOptions) -> TestServer {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut server = TestServer::start_in(dir.path(), options);
        server._dir = Some(dir);
        server
    }

    /// A server on `data` (kept by the caller, e.g. across a restart).
    pub fn start_in(data: &Path, options: ServerOptions) -> TestServer {
        let workers = match options.logic_thread {
            Some(LogicThread::Reactor) => 1,
            _ => options.workers,
        };
        let defaults = shared::gateway_config(workers);
        let gateway = GatewayConfig {
            read_wait: options.read_wait,
            max_packet: options.max_packet,
            message_limit: options.message_limit,
            backend: options.backend.unwrap_or(defaults.backend),
            uring_recv_buffers: options.uring_recv_buffers.map(|(count, _)| count),
            uring_recv_buffer_len: options.uring_recv_buffers.map(|(_, len)| len),
            inbox_bytes: options.inbox_bytes.unwrap_or(defaults.inbox_bytes),
            ..defaults
        };
        let logic = LogicConfig {
            jwt_secret: SECRET.to_vec(),
            login_timeout: options.login_timeout,
            max_body: options.max_body,
            group_member_limit: options.group_member_limit,
            thread: options.logic_thread.unwrap_or_default(),
            ..LogicConfig::default()
        };
        let store = StoreConfigPatch {
            retention: options.retention,
            postgres: postgres(),
            ..StoreConfigPatch::default()
        };
        let admin = options.admin.map(|admin| AdminConfig {
            addr: loopback(),
            token: admin.token,
            advertise: admin.advertise,
            max_request_body: switchboard::admin::request_body_limit(options.max_body),
            io_timeout: switchboard::admin::IO_TIMEOUT,
        });
        let server = ChatServer::start_with_admin(gateway, logic, data.to_path_buf(), store, admin)
            .expect("the chat server starts");
        let admin = server.admin_addr();
        let tcp = server.gateway().tcp_addr().expect("a TCP listener");
        let ws = server.gateway().ws_addr().expect("a WebSocket listener");
        TestServer {
            server: Some(server),
            tcp,
            ws,
            admin,
            data: data.to_path_buf(),
            _dir: None,
        }
    }

    /// The listener of `transport`.
    pub fn addr(&self, transport: Transport) -> SocketAddr {
        match transport {
            Transport::Tcp => self.tcp,
            Transport::Ws => self.ws,
        }
    }

    /// The admin listener; panics if the options had none.
    pub fn admin(&self) -> SocketAddr {
        self.admin.expect("a server started with an admin listener")
    }

    /// The chat server itself (readiness, gateway).
    pub fn server(&self) -> &ChatServer {
        self.server.as_ref().expect("running")
    }

    /// The data directory.
    pub fn data(&self) -> &Path {
        &self.data
    }

    /// A connected client that has not logged in.
    pub fn connect(&self, transport: Transport) -> ChatClient {
        ChatClient::connect(transport, self.addr(transport))
    }

    /// A client logged in as `user` on `device` (`None`: the default kind); panics if refused.
    pub fn login(&self, transport: Transport, user: &str, device: Option<&str>) -> ChatClient {
        let mut client = self.connect(transport);
        let ok = client
            .login(&token(user, device))
            .unwrap_or_else(|status| panic!("login of {user} refused: {status:?}"));
        assert_eq!(ok.user.as_str(), user, "LOGIN answers the token's user");
        client
    }

    /// Drains the server and waits for its threads (the data directory stays).
    pub fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    switchboard::logic::token::unix_now_secs()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_millis() as u64
}

/// A token for `user` on `device`, valid for an hour, signed with [`SECRET`].
pub fn token(user: &str, device: Option<&str>) -> String {
    token_signed(SECRET, user, device, Duration::from_secs(3600), now_secs())
}

/// A token signed with `secret`, issued at `now_secs`, expiring `ttl` later.
pub fn token_signed(
    secret: &[u8],
    user: &str,
    device: Option<&str>,
    ttl: Duration,
    now_secs: u64,
) -> String {
    switchboard::logic::token::mint(secret, user, device, ttl, now_secs).expect("a valid token")
}

/// A user id no other test (or earlier run on a kept data dir) uses: `prefix-<random>`.
pub fn unique_user(prefix: &str) -> String {
    format!("{prefix}-{:08x}", random_u64() as u32)
}

/// Logs in many clients at once: connects them all, sends every LOGIN, then reads every
/// answer, so hundreds of logins cost a few round trips rather than hundreds.
pub fn login_many(server: &TestServer, who: &[(Transport, String)]) -> Vec<ChatClient> {
    let mut clients: Vec<ChatClient> = who.iter().map(|(t, _)| server.connect(*t)).collect();
    let seqs: Vec<u32> = clients
        .iter_mut()
        .zip(who)
        .map(|(client, (_, user))| client.send_login(&token(user, None)))
        .collect();
    for ((client, seq), (_, user)) in clients.iter_mut().zip(seqs).zip(who) {
        let response = client.response(seq);
        assert!(
            response.result.is_ok(),
            "login of {user} refused: {:?}",
            response.result
        );
    }
    clients
}
