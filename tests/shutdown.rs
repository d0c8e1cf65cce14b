//! Graceful drain of the real `switchboard echo` binary: on SIGTERM it stops accepting,
//! sends WebSocket clients a 1001 close frame and TCP clients a FIN, and exits with status 0
//! within the drain timeout.

mod common;

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use switchboard_codec::ws::CloseCode;

use common::process::EchoProcess;
use common::{Closed, TcpClient, WsClient};

const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);
const ECHO_ARGS: &[&str] = &["--workers", "2", "--drain-timeout", "3s"];

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
    let mut process = EchoProcess::spawn(ECHO_ARGS);
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
    let mut process = EchoProcess::spawn(ECHO_ARGS);
    TcpClient::connect(process.tcp).echo(1, b"served, then gone");
    process.signal(libc::SIGINT);
    let status = process.wait_exit(Duration::from_secs(1));
    assert!(status.success(), "exit status {status}");
}

#[test]
fn clients_that_never_answer_do_not_hold_the_drain_past_its_timeout() {
    let mut process = EchoProcess::spawn(ECHO_ARGS);
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
