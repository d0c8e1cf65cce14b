//! systemd socket activation, on the real `switchboard echo` binary: the test binds the
//! listening sockets itself, as systemd does, and starts the process with them at descriptors
//! 3 and 4 and LISTEN_PID, LISTEN_FDS (and LISTEN_FDNAMES) set. The process serves on those
//! very sockets (placed by name, or by the --tcp/--ws address when unnamed), binds none of its
//! own, and refuses descriptors it cannot place. Since the sockets outlive the process, a
//! client that connects while no process runs (between a stop and the next start, as in
//! `systemctl restart`) waits in the backlog and is served by the next process.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::process::Stdio;
use std::time::Duration;

use common::process::{activated_command, EchoProcess};
use common::{TcpClient, WsClient};

fn bound() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("bind a loopback socket")
}

fn addr(listener: &TcpListener) -> SocketAddr {
    listener.local_addr().expect("local address")
}

fn echoes_on_both(server: &EchoProcess) {
    TcpClient::connect(server.tcp).echo(1, b"framed over the passed socket");
    WsClient::connect(server.ws).echo_binary(b"websocket over the passed socket");
}

#[test]
fn named_sockets_are_served_and_none_is_bound() {
    let (tcp, ws) = (bound(), bound());
    // Names in the other order than the descriptors: the names decide. The --tcp/--ws
    // arguments (any free port) are ignored: the process binds nothing.
    let server = EchoProcess::spawn_activated(
        &ws,
        &tcp,
        Some("ws:tcp"),
        &[
            "--tcp",
            "127.0.0.1:0",
            "--ws",
            "127.0.0.1:0",
            "--workers",
            "2",
        ],
    );
    assert_eq!((server.tcp, server.ws), (addr(&tcp), addr(&ws)));
    for _ in 0..4 {
        echoes_on_both(&server);
    }
}

#[test]
fn unnamed_sockets_are_placed_by_their_address() {
    let (tcp, ws) = (bound(), bound());
    let (tcp_at, ws_at) = (addr(&tcp).to_string(), addr(&ws).to_string());
    let server = EchoProcess::spawn_activated(&tcp, &ws, None, &["--tcp", &tcp_at, "--ws", &ws_at]);
    assert_eq!((server.tcp, server.ws), (addr(&tcp), addr(&ws)));
    echoes_on_both(&server);
}

#[test]
fn a_socket_at_no_configured_address_is_refused() {
    let (tcp, ws) = (bound(), bound());
    let tcp_at = addr(&tcp).to_string();
    // The WebSocket socket is unnamed and --ws names another address.
    let output = activated_command(&tcp, &ws, None)
        .args(["echo", "--tcp", &tcp_at, "--ws", "127.0.0.1:1"])
        .stdin(Stdio::null())
        .output()
        .expect("run switchboard echo");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "started: {stderr}");
    assert!(
        stderr.contains(&format!("descriptor 4 ({})", addr(&ws))),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "announced listeners");
}

#[test]
fn a_client_that_connects_between_two_processes_is_served_by_the_second() {
    let (tcp, ws) = (bound(), bound());
    let args = [
        "--drain-grace",
        "0s",
        "--drain-period",
        "0s",
        "--workers",
        "1",
    ];
    let mut first = EchoProcess::spawn_activated(&tcp, &ws, Some("tcp:ws"), &args);
    echoes_on_both(&first);
    first.signal(libc::SIGTERM);
    let status = first.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "the first process exited with {status}");
    // No process: the socket (held here, as systemd holds it) still completes the handshake
    // and queues the connection.
    let mut waiting = TcpClient::connect(addr(&tcp));
    waiting.send_packet(3, b"sent while no process ran");
    let second = EchoProcess::spawn_activated(&tcp, &ws, Some("tcp:ws"), &args);
    assert_eq!(
        &waiting.read_packet()[..],
        &common::packet(3, b"sent while no process ran")[..]
    );
    echoes_on_both(&second);
}
