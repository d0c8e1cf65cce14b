//! Every close the server makes on its own, over real sockets on both transports, against the
//! table "Which closes carry KICKED" in docs/protocol.md §5: what arrives before the close (a
//! KICKED and its reason, a response, or nothing) and the WebSocket close code (or none).

mod chat_common;

use std::time::Duration;

use chat_common::{token, unique_user, ChatClient, ServerOptions, TestServer, Transport, BOTH};
use switchboard_codec::ws::CloseCode;
use switchboard_protocol::{Command, KickReason, Push, Request, ServerPacket, Status};

/// What the document says arrives before a close.
#[derive(Debug, Clone, Copy)]
enum Before {
    Kicked(KickReason),
    Answer(u16, Result<(), Status>),
    Nothing,
}

/// Reads until the close and checks it against one row of the table.
fn assert_closed(client: &mut ChatClient, what: &str, before: Before, ws_code: Option<u16>) {
    let transport = client.transport();
    let (packets, closure) = client.expect_closed(Duration::from_secs(5));
    let fits = match (before, packets.as_slice()) {
        (Before::Kicked(want), [ServerPacket::Push(Push::Kicked { reason, .. })]) => {
            *reason == want
        }
        (Before::Answer(command, want), [ServerPacket::Response(r)]) => {
            r.command == command && r.result.clone().map(|_| ()) == want
        }
        (Before::Nothing, []) => true,
        _ => false,
    };
    assert!(
        fits,
        "{transport:?} {what}: expected {before:?} before the close, got {packets:?}"
    );
    if transport == Transport::Ws {
        assert_eq!(
            closure.ws_close,
            ws_code.map(CloseCode),
            "{what}: {closure:?}"
        );
    }
}

#[test]
fn the_chat_layers_closes_match_the_table() {
    let server = TestServer::start();
    for transport in BOTH {
        // Logged in elsewhere with the same device kind: KICKED 1, 4003.
        let user = unique_user("alice");
        let mut old = server.login(transport, &user, Some("phone"));
        let _new = server.login(transport, &user, Some("phone"));
        let elsewhere = Before::Kicked(KickReason::LOGGED_IN_ELSEWHERE);
        assert_closed(&mut old, "logged in elsewhere", elsewhere, Some(4003));

        // LOGOUT: its OK, 1000.
        let mut client = server.login(transport, &unique_user("alice"), None);
        client.send_request(&Request::Logout);
        let ok = Before::Answer(Command::Logout.code(), Ok(()));
        assert_closed(&mut client, "LOGOUT", ok, Some(1000));

        // A refused LOGIN, and another request before login: the status, 4001.
        let mut client = server.connect(transport);
        client.send_login("not-a-token");
        let refused = Before::Answer(Command::Login.code(), Err(Status::INVALID_TOKEN));
        assert_closed(&mut client, "a refused LOGIN", refused, Some(4001));
        let mut client = server.connect(transport);
        client.send_request(&Request::Ping);
        let early = Before::Answer(Command::Ping.code(), Err(Status::NOT_LOGGED_IN));
        assert_closed(&mut client, "PING before login", early, Some(4001));

        // A malformed request before login: MALFORMED, 1002.
        let mut client = server.connect(transport);
        client.send_packet(Command::Ping.code(), &[0, 0, 0, 1, 0]);
        let malformed = Before::Answer(Command::Ping.code(), Err(Status::MALFORMED));
        assert_closed(&mut client, "malformed before login", malformed, Some(1002));

        // A command outside the request range, logged in: KICKED 2, 1002.
        let mut client = server.login(transport, &unique_user("alice"), None);
        client.send_packet(0x8001, &[0, 0, 0, 1]);
        let violation = Before::Kicked(KickReason::PROTOCOL_VIOLATION);
        assert_closed(&mut client, "a response number", violation, Some(1002));

        // A framing error on a logged-in connection: nothing, 1002.
        let mut client = server.login(transport, &unique_user("alice"), None);
        let _ = client.send_unit(b"SWB2\x00\x01\x00\x00\x00\x04\x00\x00\x00\x01");
        assert_closed(&mut client, "a wrong magic", Before::Nothing, Some(1002));
    }
}

#[test]
fn the_timers_closes_match_the_table() {
    let server = TestServer::with_options(ServerOptions {
        login_timeout: Duration::from_millis(400),
        read_wait: Duration::from_secs(1),
        ..ServerOptions::default()
    });
    for transport in BOTH {
        // No LOGIN within the deadline: nothing, 4002.
        let mut client = server.connect(transport);
        assert_closed(
            &mut client,
            "the login deadline",
            Before::Nothing,
            Some(4002),
        );

        // Silence past the read-wait, logged in: nothing, and no close frame either.
        let mut client = server.connect(transport);
        client
            .login(&token(&unique_user("alice"), None))
            .expect("logged in");
        assert_closed(&mut client, "the read-wait", Before::Nothing, None);
    }
}

#[test]
fn the_shutdown_close_matches_the_table() {
    let server = TestServer::start();
    let mut clients: Vec<ChatClient> = BOTH
        .iter()
        .map(|&t| server.login(t, &unique_user("alice"), None))
        .collect();
    let stopper = std::thread::spawn(move || server.stop());
    for client in &mut clients {
        let shutdown = Before::Kicked(KickReason::SERVER_SHUTDOWN);
        assert_closed(client, "a shutdown", shutdown, Some(1001));
    }
    stopper.join().expect("the server stops");
}

crate::on_postgres_too!(
    the_chat_layers_closes_match_the_table,
    the_timers_closes_match_the_table,
    the_shutdown_close_matches_the_table,
);
