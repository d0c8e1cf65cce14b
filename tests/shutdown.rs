//! Graceful drain of the real `switchboard echo` binary: on SIGTERM it stops accepting once
//! `--drain-grace` has passed, closes its connections evenly over `--drain-period` (WebSocket
//! clients get a 1012 close frame, TCP clients a FIN), and exits with status 0 within the
//! drain timeout after that; a second signal exits at once.

mod common;

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use switchboard_codec::ws::CloseCode;

use common::process::EchoProcess;
use common::{Closed, TcpClient, WsClient};

const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);
const ECHO_ARGS: &[&str] = &[
    "--workers",
    "2",
    "--drain-timeout",
    "3s",
    "--drain-grace",
    "0s",
    "--drain-period",
    "0s",
];

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
fn sigterm_closes_websockets_with_1012_ends_tcp_refuses_newcomers_and_exits_0() {
    let mut process = EchoProcess::spawn(ECHO_ARGS);
    let mut ws = WsClient::connect(process.ws);
    ws.echo_binary(b"before the signal");
    let mut tcp = TcpClient::connect(process.tcp);
    tcp.echo(1, b"before the signal");

    process.signal(libc::SIGTERM);
    let signalled = Instant::now();

    assert_eq!(ws.read_close(), Some(CloseCode::SERVICE_RESTART));
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
    assert_eq!(ws.read_close(), Some(CloseCode::SERVICE_RESTART));
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

/// The drain without a storm, in echo mode: newcomers are still served during the grace,
/// then refused; the connections open then are closed spread over the period, not at once
/// (the close times, read by one thread per client, fall in every part of it).
#[test]
fn a_drain_accepts_during_the_grace_then_spreads_closes_over_the_period() {
    const CLIENTS: usize = 24;
    const GRACE: Duration = Duration::from_secs(1);
    const PERIOD: Duration = Duration::from_millis(3000);
    let mut process = EchoProcess::spawn(&[
        "--workers",
        "2",
        "--drain-grace",
        "1s",
        "--drain-period",
        "3s",
        "--drain-timeout",
        "3s",
    ]);
    let clients: Vec<WsClient> = (0..CLIENTS)
        .map(|i| {
            let mut ws = WsClient::connect(process.ws);
            ws.echo_binary(format!("client {i}").as_bytes());
            ws
        })
        .collect();
    process.signal(libc::SIGTERM);
    let signalled = Instant::now();
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut ws| {
            std::thread::spawn(move || {
                let code = ws.read_close();
                let at = signalled.elapsed();
                ws.send_close(CloseCode::NORMAL);
                (code, at)
            })
        })
        .collect();
    // In the grace a newcomer is served as usual.
    std::thread::sleep(GRACE / 4);
    TcpClient::connect(process.tcp).echo(1, b"in the grace");
    let closes: Vec<(Option<CloseCode>, Duration)> = readers
        .into_iter()
        .map(|reader| reader.join().expect("a reader"))
        .collect();
    assert!(refused_within(process.tcp, Duration::from_secs(1)));
    let status = process.wait_exit(Duration::from_secs(5));
    assert!(status.success(), "exit status {status}");

    let mut times: Vec<Duration> = closes
        .iter()
        .map(|(code, at)| {
            assert_eq!(*code, Some(CloseCode::SERVICE_RESTART));
            *at
        })
        .collect();
    times.sort();
    eprintln!("close times after SIGTERM: {times:?}");
    let early = GRACE - Duration::from_millis(100);
    assert!(times[0] >= early, "closed in the grace: {times:?}");
    // Thirds of the period: each holds about a third of the closes.
    let third = PERIOD / 3;
    for part in 0..3u32 {
        let from = GRACE + third * part;
        let to = from + third;
        let within = times
            .iter()
            .filter(|&&t| {
                t >= from.saturating_sub(Duration::from_millis(100))
                    && t < to + Duration::from_millis(300)
            })
            .count();
        assert!(
            (CLIENTS / 6..=CLIENTS / 2 + 2).contains(&within),
            "{within} of {CLIENTS} closes in part {part} of the period: {times:?}"
        );
    }
}

#[test]
fn a_second_signal_exits_at_once() {
    let mut process = EchoProcess::spawn(&["--drain-grace", "30s"]);
    let _held = TcpClient::connect(process.tcp);
    process.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    assert!(process.is_running(), "exited in the grace");
    process.signal(libc::SIGTERM);
    let status = process.wait_exit(Duration::from_secs(2));
    assert_eq!(status.code(), Some(130), "exit status {status}");
}

/// `switchboard echo` hands its sockets over the same way: the old process's client is
/// closed with 1012 in its drain, a newcomer on the same address is served by the new one,
/// and the old one exits.
#[test]
fn echo_hands_its_sockets_over_and_drains_with_1012() {
    // The whole exchange with the chat server is in tests/handover.rs.
    let dir = tempfile::tempdir().expect("a temp dir");
    let socket = dir.path().join("handover.sock");
    let socket = socket.to_str().expect("a UTF-8 path");
    let args = [
        "--workers",
        "2",
        "--handover",
        socket,
        "--drain-period",
        "1s",
    ];
    let mut old = EchoProcess::spawn(&args);
    let mut held = WsClient::connect(old.ws);
    held.echo_binary(b"on the old process");
    let new = EchoProcess::spawn(&args);
    assert_eq!((new.ws, new.tcp), (old.ws, old.tcp), "the same sockets");
    assert_eq!(held.read_close(), Some(CloseCode::SERVICE_RESTART));
    held.send_close(CloseCode::NORMAL);
    let status = old.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "the old process exited with {status:?}");
    let mut newcomer = WsClient::connect(new.ws);
    newcomer.echo_binary(b"on the new process");
}
