//! Graceful drain of the real `switchboard echo` binary: on SIGTERM it stops accepting,
//! sends WebSocket clients a 1001 close frame and TCP clients a FIN, and exits with status 0
//! within the drain timeout. The child is killed if a test fails, so none outlives the run.

mod common;

use std::io::{self, BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use switchboard_codec::ws::CloseCode;

use common::{Closed, TcpClient, WsClient};

const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

/// The echo binary, killed (SIGKILL) and reaped when dropped if it is still running.
struct EchoProcess {
    child: Child,
    ws: SocketAddr,
    tcp: SocketAddr,
}

impl EchoProcess {
    fn spawn() -> EchoProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["echo", "--ws", "127.0.0.1:0", "--tcp", "127.0.0.1:0"])
            .args(["--workers", "2", "--drain-timeout", "3s"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn switchboard echo");
        let stdout = child.stdout.take().expect("piped stdout");
        let (lines_tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut process = EchoProcess {
            child,
            ws: SocketAddr::from(([0, 0, 0, 0], 0)),
            tcp: SocketAddr::from(([0, 0, 0, 0], 0)),
        };
        let (mut ws, mut tcp) = (None, None);
        while ws.is_none() || tcp.is_none() {
            let line: String = lines
                .recv_timeout(Duration::from_secs(10))
                .expect("the binary announces its listeners");
            if let Some(rest) = line.strip_prefix("switchboard echo: WebSocket on ws://") {
                ws = Some(
                    rest.trim_end_matches('/')
                        .parse()
                        .expect("a WebSocket address"),
                );
            } else if let Some(rest) = line.strip_prefix("switchboard echo: framed TCP on ") {
                tcp = Some(rest.parse().expect("a TCP address"));
            }
        }
        process.ws = ws.expect("seen");
        process.tcp = tcp.expect("seen");
        process
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid fits pid_t");
        // SAFETY: kill(2) takes plain integers; the pid is our own child, not yet reaped
        // (it is reaped only in wait_exit or Drop), so it cannot name another process.
        let sent = unsafe { libc::kill(pid, signal) };
        assert_eq!(sent, 0, "kill: {}", io::Error::last_os_error());
    }

    /// Waits for the exit; panics if the process is still running after `within`.
    fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running {within:?} after the signal"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }
}

impl Drop for EchoProcess {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Whether connecting to `addr` is refused within `within` (an accepted connection in the
/// moment before every reactor closed its listener is dropped and retried).
fn refused_within(addr: SocketAddr, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return true,
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    false
}

#[test]
fn sigterm_closes_websockets_with_1001_ends_tcp_refuses_newcomers_and_exits_0() {
    let mut process = EchoProcess::spawn();
    let mut ws = WsClient::connect(process.ws);
    ws.echo_binary(b"before the signal");
    let mut tcp = TcpClient::connect(process.tcp);
    tcp.echo(1, b"before the signal");

    process.signal(libc::SIGTERM);
    let signalled = Instant::now();

    assert_eq!(ws.read_close(), Some(CloseCode::GOING_AWAY));
    let ending = tcp.read_until_closed(Duration::from_secs(2));
    assert_eq!(ending.how, Closed::Eof, "{ending:?}");

    // Our WebSocket has not answered the close yet, so the process is still draining.
    assert!(refused_within(process.tcp, Duration::from_secs(1)));
    assert!(refused_within(process.ws, Duration::from_secs(1)));
    assert!(process.is_running(), "exited before the drain finished");

    ws.send_close(CloseCode::GOING_AWAY);
    let ending = ws.read_until_closed(Duration::from_secs(2));
    assert_eq!(ending.how, Closed::Eof, "{ending:?}");

    // Our FINs end the gateway's linger on both connections; the process can exit now.
    drop((ws, tcp));
    let left = DRAIN_TIMEOUT.saturating_sub(signalled.elapsed());
    let status = process.wait_exit(left);
    assert!(status.success(), "exit status {status}");
}

#[test]
fn sigint_with_no_clients_exits_0_at_once() {
    let mut process = EchoProcess::spawn();
    TcpClient::connect(process.tcp).echo(1, b"served, then gone");
    process.signal(libc::SIGINT);
    let status = process.wait_exit(Duration::from_secs(1));
    assert!(status.success(), "exit status {status}");
}

#[test]
fn clients_that_never_answer_do_not_hold_the_drain_past_its_timeout() {
    let mut process = EchoProcess::spawn();
    let mut ws = WsClient::connect(process.ws);
    ws.echo_binary(b"I will not answer the close");
    let mut tcp = TcpClient::connect(process.tcp);
    tcp.echo(1, b"I will not send my FIN");

    process.signal(libc::SIGTERM);
    let signalled = Instant::now();
    assert_eq!(ws.read_close(), Some(CloseCode::GOING_AWAY));
    // Both clients stay silent and keep their sockets open until the process is gone.
    let status = process.wait_exit(DRAIN_TIMEOUT + Duration::from_millis(500));
    assert!(status.success(), "exit status {status}");
    assert!(
        signalled.elapsed() <= DRAIN_TIMEOUT + Duration::from_millis(500),
        "the drain took {:?}",
        signalled.elapsed()
    );
    drop((ws, tcp));
}
