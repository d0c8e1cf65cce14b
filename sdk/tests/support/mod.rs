//! Shared pieces of the SDK's end-to-end tests: the real chat server in this process, or in a
//! child process (this test binary re-executed) that can be SIGKILLed and restarted on the same
//! ports and data; tokens; configs with short timers; and bounded waits for events.
//! Only 127.0.0.1 is used, every wait has a deadline, and every child is killed when dropped.

#![allow(dead_code)] // each test binary uses its own subset

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use switchboard::gateway::{GatewayConfig, SocketOptions};
use switchboard::logic::LogicConfig;
use switchboard::serve::{ChatServer, StoreConfigPatch};
use switchboard_sdk::{Backoff, ClientConfig, Event};

/// The secret every test server and token shares.
pub const SECRET: &[u8] = b"switchboard-sdk-tests";

/// How long a test waits for one expected thing.
pub const WAIT: Duration = Duration::from_secs(10);

/// The two transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Ws,
}

pub const BOTH: [Transport; 2] = [Transport::Tcp, Transport::Ws];

/// A token for `user` on `device`, valid for `ttl` from `now_secs` (or an hour from now).
pub fn token(user: &str, device: Option<&str>) -> String {
    token_at(SECRET, user, device, Duration::from_secs(3600), now_secs())
}

pub fn token_at(
    secret: &[u8],
    user: &str,
    device: Option<&str>,
    ttl: Duration,
    now: u64,
) -> String {
    switchboard::logic::token::mint(secret, user, device, ttl, now).expect("a token")
}

pub fn now_secs() -> u64 {
    switchboard::logic::token::unix_now_secs()
}

/// The endpoint string of `addr` over `transport`.
pub fn endpoint(transport: Transport, addr: SocketAddr) -> String {
    match transport {
        Transport::Tcp => format!("tcp://{addr}"),
        Transport::Ws => format!("ws://{addr}/"),
    }
}

/// A client config for `endpoints` with short timers, so failures show within seconds.
pub fn config(endpoints: &[String], token: String) -> ClientConfig {
    let mut config = ClientConfig::new(endpoints, token).expect("valid endpoints");
    config.connect_timeout = Duration::from_secs(2);
    config.request_timeout = Duration::from_secs(5);
    config.initial_connect_timeout = Duration::from_secs(10);
    config.backoff = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(500),
        multiplier: 2.0,
    };
    config
}

/// A loopback port nobody listens on (bound, then released).
pub fn dead_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// The gateway every SDK test starts: both listeners, one worker, short linger and drain,
/// no keepalive probes.
pub fn gateway_config(tcp: SocketAddr, ws: SocketAddr) -> GatewayConfig {
    GatewayConfig {
        tcp: Some(tcp),
        ws: Some(ws),
        workers: 1,
        close_linger: Duration::from_millis(200),
        drain_timeout: Duration::from_secs(2),
        socket: SocketOptions {
            keepalive: None,
            user_timeout: None,
            ..SocketOptions::default()
        },
        ..GatewayConfig::default()
    }
}

fn start_chat_server(data: &Path, tcp: SocketAddr, ws: SocketAddr) -> ChatServer {
    let logic = LogicConfig {
        jwt_secret: SECRET.to_vec(),
        ..LogicConfig::default()
    };
    ChatServer::start(
        gateway_config(tcp, ws),
        logic,
        data.to_path_buf(),
        StoreConfigPatch::default(),
    )
    .expect("the chat server starts")
}

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// The chat server in this process, on free ports and a fresh data directory; dropping it
/// drains and joins its threads.
pub struct TestServer {
    server: Option<ChatServer>,
    pub tcp: SocketAddr,
    pub ws: SocketAddr,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub fn start() -> TestServer {
        let dir = tempfile::tempdir().expect("a temp dir");
        let server = start_chat_server(dir.path(), any_port(), any_port());
        TestServer {
            tcp: server.gateway().tcp_addr().expect("tcp"),
            ws: server.gateway().ws_addr().expect("ws"),
            server: Some(server),
            _dir: dir,
        }
    }

    pub fn addr(&self, transport: Transport) -> SocketAddr {
        match transport {
            Transport::Tcp => self.tcp,
            Transport::Ws => self.ws,
        }
    }

    pub fn endpoint(&self, transport: Transport) -> String {
        endpoint(transport, self.addr(transport))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
    }
}

/// The environment variables that turn [`serve_child_main`] on, and carry its settings.
const CHILD_DATA: &str = "SDK_E2E_SERVE_DATA";
const CHILD_TCP: &str = "SDK_E2E_SERVE_TCP";
const CHILD_WS: &str = "SDK_E2E_SERVE_WS";
const ANNOUNCE: &str = "sdk-e2e-server:";

/// The body of the ignored `serve_child` test: when this binary is re-executed with the
/// settings in its environment, runs the chat server until its stdin closes (the parent died
/// or dropped it) or it is killed. Without them it does nothing.
pub fn serve_child_main() {
    let (Ok(data), Ok(tcp), Ok(ws)) = (
        std::env::var(CHILD_DATA),
        std::env::var(CHILD_TCP),
        std::env::var(CHILD_WS),
    ) else {
        return;
    };
    let server = start_chat_server(
        Path::new(&data),
        tcp.parse().expect("tcp addr"),
        ws.parse().expect("ws addr"),
    );
    let tcp = server.gateway().tcp_addr().expect("tcp");
    let ws = server.gateway().ws_addr().expect("ws");
    println!("{ANNOUNCE} {tcp} {ws}");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    server.shutdown();
}

/// The chat server in a child process, which a test can SIGKILL and start again on the same
/// ports and data directory.
pub struct ChildServer {
    child: Child,
    pub tcp: SocketAddr,
    pub ws: SocketAddr,
    pub data: PathBuf,
}

impl ChildServer {
    /// Starts the server on `tcp`/`ws` (port 0: free ones) with its data in `data`.
    pub fn spawn(data: &Path, tcp: SocketAddr, ws: SocketAddr) -> ChildServer {
        let exe = std::env::current_exe().expect("the test binary");
        let child = Command::new(exe)
            .args([
                "serve_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DATA, data)
            .env(CHILD_TCP, tcp.to_string())
            .env(CHILD_WS, ws.to_string())
            .env("RUST_LOG", "error")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("re-execute the test binary as a server");
        // Owned by the value from here on, so a panic below still kills and reaps the child.
        let mut server = ChildServer {
            child,
            tcp,
            ws,
            data: data.to_path_buf(),
        };
        let stdout = server.child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .expect("the child server announces its ports");
            // libtest may have written "test serve_child ... " on the same line first.
            if let Some(rest) = line.find(ANNOUNCE).map(|at| &line[at + ANNOUNCE.len()..]) {
                let mut addrs = rest.split_whitespace().map(|a| a.parse().expect("an addr"));
                server.tcp = addrs.next().expect("tcp");
                server.ws = addrs.next().expect("ws");
                return server;
            }
        }
    }

    pub fn addr(&self, transport: Transport) -> SocketAddr {
        match transport {
            Transport::Tcp => self.tcp,
            Transport::Ws => self.ws,
        }
    }

    /// SIGSTOP: the process holds its sockets but answers nothing until killed.
    pub fn freeze(&self) {
        let status = Command::new("kill")
            .args(["-STOP", &self.child.id().to_string()])
            .status()
            .expect("run kill -STOP");
        assert!(status.success(), "kill -STOP failed");
        // The signal is asynchronous: wait until every thread is seen stopped.
        let deadline = Instant::now() + WAIT;
        let tasks = format!("/proc/{}/task", self.child.id());
        loop {
            let all_stopped = std::fs::read_dir(&tasks)
                .expect("the child's threads")
                .map_while(Result::ok)
                .all(|task| {
                    let stat =
                        std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
                    // The state follows the parenthesised command name, which may hold spaces.
                    let state = stat
                        .rfind(')')
                        .and_then(|at| stat[at + 1..].split_whitespace().next());
                    state == Some("T") || state == Some("t")
                });
            if all_stopped {
                return;
            }
            assert!(Instant::now() < deadline, "the child never stopped");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGCONT after [`freeze`](Self::freeze).
    pub fn thaw(&self) {
        let status = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status()
            .expect("run kill -CONT");
        assert!(status.success(), "kill -CONT failed");
    }

    /// SIGKILL and reap: nothing is drained or flushed.
    pub fn kill(mut self) -> (SocketAddr, SocketAddr) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
        (self.tcp, self.ws)
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits for the first event `pick` accepts, skipping the others; panics after [`WAIT`].
pub fn wait_for<T>(
    events: &crossbeam_channel::Receiver<Event>,
    what: &str,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(event) => {
                if let Some(found) = pick(&event) {
                    return found;
                }
            }
            Err(_) => panic!("no {what} within {WAIT:?}"),
        }
    }
}

/// Every event that arrives within `window`.
pub fn drain_for(events: &crossbeam_channel::Receiver<Event>, window: Duration) -> Vec<Event> {
    let deadline = Instant::now() + window;
    let mut got = Vec::new();
    while let Ok(event) = events.recv_deadline(deadline) {
        got.push(event);
    }
    got
}
