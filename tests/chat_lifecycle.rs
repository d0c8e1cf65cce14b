//! Heartbeats and the end of connections over real sockets: PING answered with the server's
//! clock, a silent logged-in connection closed after the read-wait while one that pings (or
//! sends WebSocket pings) stays, and a server shutdown telling logged-in clients why.

mod chat_common;

use std::time::{Duration, Instant};

use chat_common::{now_ms, unique_user, ServerOptions, TestServer, Transport, BOTH, IO_TIMEOUT};
use switchboard_codec::ws::OpCode;
use switchboard_protocol::{Command, KickReason, Push, Request, ResponseBody, ServerPacket};

#[test]
fn ping_gets_pong_with_the_server_time_on_its_seq() {
    let server = TestServer::start();
    for transport in BOTH {
        let mut client = server.login(transport, &unique_user("alice"), None);
        let before = now_ms();
        client.send_request_seq(0xfeed_beef, &Request::Ping);
        let response = client.response(0xfeed_beef);
        let after = now_ms();
        assert_eq!(response.command, Command::Ping.code());
        let Ok(ResponseBody::Pong(pong)) = response.result else {
            panic!("PING answered {:?}", response.result);
        };
        // The server's clock, give or take scheduling: within a second of ours.
        assert!(
            pong.server_time_ms + 1_000 >= before && pong.server_time_ms <= after + 1_000,
            "{transport:?}: server time {} outside [{before}, {after}]",
            pong.server_time_ms
        );
        let later = client.ping();
        assert!(
            later >= pong.server_time_ms,
            "the server clock does not go back"
        );
    }
}

#[test]
fn a_silent_connection_is_closed_after_the_read_wait() {
    let server = TestServer::with_options(ServerOptions {
        read_wait: Duration::from_secs(1),
        ..ServerOptions::default()
    });
    for transport in BOTH {
        let mut client = server.connect(transport);
        let ok = client
            .login(&chat_common::token(&unique_user("alice"), None))
            .expect("logged in");
        assert_eq!(ok.idle_timeout_ms, 1_000, "LOGIN tells the read-wait");
        let silent_since = Instant::now();
        let (before, _closure) = client.expect_closed(Duration::from_secs(5));
        let after = silent_since.elapsed();
        assert!(
            before
                .iter()
                .all(|p| !matches!(p, ServerPacket::Response(_))),
            "{before:?}"
        );
        assert!(
            after >= Duration::from_millis(900),
            "{transport:?}: closed after {after:?}, before the 1 s read-wait"
        );
        assert!(
            after < Duration::from_secs(3),
            "{transport:?}: still open {after:?} after going silent"
        );
    }
}

#[test]
fn pings_keep_a_connection_open_past_the_read_wait() {
    let server = TestServer::with_options(ServerOptions {
        read_wait: Duration::from_secs(1),
        ..ServerOptions::default()
    });
    let mut tcp = server.login(Transport::Tcp, &unique_user("alice"), None);
    let mut ws = server.login(Transport::Ws, &unique_user("bob"), None);
    let mut ws_pinger = server.login(Transport::Ws, &unique_user("carol"), None);
    let until = Instant::now() + Duration::from_millis(2_500);
    while Instant::now() < until {
        tcp.ping();
        ws.ping();
        // A WebSocket ping resets the timer too (docs/protocol.md §5).
        ws_pinger.send_ws(OpCode::Ping, b"hb").expect("send a ping");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(tcp.is_open() && ws.is_open());
    assert!(ws_pinger.is_open(), "WebSocket pings count as traffic");
}

#[test]
fn a_shutdown_kicks_logged_in_clients_with_server_shutdown() {
    let server = TestServer::start();
    let mut clients: Vec<_> = BOTH
        .iter()
        .map(|&t| server.login(t, &unique_user("alice"), None))
        .collect();
    let stopper = std::thread::spawn(move || server.stop());
    for client in &mut clients {
        let transport = client.transport();
        let (before, _closure) = client.expect_closed(IO_TIMEOUT);
        // docs/protocol.md §8: reason 3 tells the client to reconnect, elsewhere if it can.
        match before.last() {
            Some(ServerPacket::Push(Push::Kicked { reason, .. })) => {
                assert_eq!(*reason, KickReason::SERVER_SHUTDOWN, "{transport:?}")
            }
            other => panic!("{transport:?}: expected KICKED (SERVER_SHUTDOWN), got {other:?}"),
        }
    }
    stopper.join().expect("the server stops");
}

crate::on_postgres_too!(
    ping_gets_pong_with_the_server_time_on_its_seq,
    a_silent_connection_is_closed_after_the_read_wait,
    pings_keep_a_connection_open_past_the_read_wait,
    a_shutdown_kicks_logged_in_clients_with_server_shutdown,
);
