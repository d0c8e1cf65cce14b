//! Login over real sockets, on both transports: a good token, a wrong signature, an expired
//! token, a request before LOGIN, no LOGIN within the deadline, a second LOGIN, LOGOUT, and
//! the kick rule (same user and device kind: the older connection is kicked; different
//! device kinds stay online together and all get pushes).

mod chat_common;

use std::time::{Duration, Instant};

use chat_common::{
    now_ms, now_secs, token, token_signed, unique_user, ServerOptions, TestServer, Transport, BOTH,
    IO_TIMEOUT, SECRET,
};
use switchboard_protocol::{Command, KickReason, Push, Request, ServerPacket, Status};

/// The only packet before the close is a refusal of `command` with `status` under `seq`.
fn assert_refused_then_closed(
    client: &mut chat_common::ChatClient,
    command: Command,
    seq: u32,
    status: Status,
) {
    let (before, _closure) = client.expect_closed(IO_TIMEOUT);
    match before.as_slice() {
        [ServerPacket::Response(r)] => {
            assert_eq!(r.command, command.code());
            assert_eq!(r.seq, seq, "the refusal carries the request's seq");
            assert_eq!(r.result, Err(status));
        }
        other => panic!("expected one {status:?} response before the close, got {other:?}"),
    }
}

#[test]
fn good_token_logs_in_with_the_tokens_user_and_device() {
    let server = TestServer::start();
    for transport in BOTH {
        let user = unique_user("alice");
        let mut client = server.connect(transport);
        let before = now_ms();
        let ok = client
            .login(&token(&user, Some("phone")))
            .expect("login accepted");
        assert_eq!(ok.user.as_str(), user);
        assert_eq!(ok.device.as_str(), "phone");
        assert!(
            ok.server_time_ms + 5_000 >= before && ok.server_time_ms <= now_ms() + 5_000,
            "server clock {} far from ours {before}",
            ok.server_time_ms
        );
        assert_eq!(ok.idle_timeout_ms, 180_000, "the default read-wait");
        assert_eq!(ok.max_body, 65_536, "the default body limit");
        assert!(client.is_open(), "{transport:?}: logged in and usable");

        let mut default = server.connect(transport);
        let ok = default.login(&token(&user, None)).expect("login accepted");
        assert_eq!(
            ok.device.as_str(),
            "default",
            "no dev claim: the default kind"
        );
    }
}

#[test]
fn wrong_signature_is_refused_then_closed() {
    let server = TestServer::start();
    for transport in BOTH {
        let mut client = server.connect(transport);
        let forged = token_signed(
            b"not-the-server-secret",
            "mallory",
            None,
            Duration::from_secs(3600),
            now_secs(),
        );
        let seq = client.send_login(&forged);
        assert_refused_then_closed(&mut client, Command::Login, seq, Status::INVALID_TOKEN);
    }
}

#[test]
fn garbage_token_is_refused_then_closed() {
    let server = TestServer::start();
    for transport in BOTH {
        let mut client = server.connect(transport);
        let seq = client.send_login("not.a.jwt");
        assert_refused_then_closed(&mut client, Command::Login, seq, Status::INVALID_TOKEN);
    }
}

#[test]
fn expired_token_is_refused_then_closed() {
    let server = TestServer::start();
    for transport in BOTH {
        let mut client = server.connect(transport);
        // Issued two hours ago for one hour.
        let expired = token_signed(
            SECRET,
            "alice",
            None,
            Duration::from_secs(3600),
            now_secs() - 7200,
        );
        let seq = client.send_login(&expired);
        assert_refused_then_closed(&mut client, Command::Login, seq, Status::TOKEN_EXPIRED);
    }
}

#[test]
fn empty_token_is_malformed_then_closed() {
    let server = TestServer::start();
    for transport in BOTH {
        let mut client = server.connect(transport);
        // The encoder refuses an empty token, so the payload is written by hand:
        // seq 9, token of length 0, client_version of length 0.
        let seq = 9;
        client.send_packet(Command::Login.code(), &[0, 0, 0, 9, 0, 0, 0, 0]);
        assert_refused_then_closed(&mut client, Command::Login, seq, Status::MALFORMED);
    }
}

#[test]
fn a_request_before_login_is_refused_then_closed() {
    let server = TestServer::start();
    for transport in BOTH {
        let mut client = server.connect(transport);
        let seq = client.send_request(&Request::Ping);
        assert_refused_then_closed(&mut client, Command::Ping, seq, Status::NOT_LOGGED_IN);

        let mut client = server.connect(transport);
        let seq = client.send_request(&chat_common::client::direct("bob", 1, b"hi"));
        assert_refused_then_closed(&mut client, Command::Send, seq, Status::NOT_LOGGED_IN);
    }
}

#[test]
fn no_login_within_the_deadline_is_closed() {
    let server = TestServer::with_options(ServerOptions {
        login_timeout: Duration::from_millis(500),
        ..ServerOptions::default()
    });
    for transport in BOTH {
        let started = Instant::now();
        let mut client = server.connect(transport);
        let (before, _closure) = client.expect_closed(Duration::from_secs(5));
        let after = started.elapsed();
        assert!(
            before.is_empty(),
            "nothing is sent before the close: {before:?}"
        );
        assert!(
            after >= Duration::from_millis(450),
            "{transport:?}: closed after {after:?}, before the 500 ms deadline"
        );
        assert!(
            after < Duration::from_secs(3),
            "{transport:?}: closed only after {after:?}"
        );
    }
    // A login inside the deadline keeps the connection past it.
    let mut client = server.login(Transport::Tcp, &unique_user("punctual"), None);
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        client.is_open(),
        "a logged-in connection outlives the login deadline"
    );
}

#[test]
fn a_second_login_on_one_connection_is_refused_and_changes_nothing() {
    let server = TestServer::start();
    for transport in BOTH {
        let user = unique_user("alice");
        let mut client = server.login(transport, &user, None);
        let other = unique_user("eve");
        assert_eq!(
            client.login(&token(&other, None)).err(),
            Some(Status::ALREADY_LOGGED_IN)
        );
        assert!(client.is_open());
        // Still the first user: a message sent now comes from it.
        let peer_name = unique_user("peer");
        let mut peer = server.login(Transport::Tcp, &peer_name, None);
        client
            .send_direct(&peer_name, 7, b"who am i")
            .expect("sent");
        let message = peer.expect_message();
        assert_eq!(
            message.from.as_str(),
            user,
            "the session is still the first user"
        );
    }
}

#[test]
fn logout_answers_then_closes_and_other_devices_stay() {
    let server = TestServer::start();
    for transport in BOTH {
        let user = unique_user("alice");
        let mut phone = server.login(transport, &user, Some("phone"));
        let mut desktop = server.login(transport, &user, Some("desktop"));
        let seq = phone.send_request(&Request::Logout);
        let (before, _closure) = phone.expect_closed(IO_TIMEOUT);
        match before.as_slice() {
            [ServerPacket::Response(r)] => {
                assert_eq!((r.command, r.seq), (Command::Logout.code(), seq));
                assert!(r.result.is_ok(), "LOGOUT answered {:?}", r.result);
            }
            other => panic!("expected LOGOUT's OK before the close, got {other:?}"),
        }
        assert!(desktop.is_open(), "the other device stays logged in");
        let mut bob = server.login(Transport::Tcp, &unique_user("bob"), None);
        bob.send_direct(&user, 1, b"still there?").expect("sent");
        assert_eq!(desktop.expect_message().body.as_ref(), b"still there?");
    }
}

#[test]
fn same_device_kind_kicks_the_older_connection() {
    let server = TestServer::start();
    for (first, second) in [
        (Transport::Tcp, Transport::Ws),
        (Transport::Ws, Transport::Tcp),
        (Transport::Tcp, Transport::Tcp),
        (Transport::Ws, Transport::Ws),
    ] {
        let user = unique_user("alice");
        let mut old = server.login(first, &user, Some("phone"));
        let mut new = server.login(second, &user, Some("phone"));
        let (before, closure) = old.expect_closed(IO_TIMEOUT);
        match before.as_slice() {
            [ServerPacket::Push(Push::Kicked { reason, .. })] => {
                assert_eq!(*reason, KickReason::LOGGED_IN_ELSEWHERE)
            }
            other => panic!("{first:?}: expected one KICKED before the close, got {other:?}"),
        }
        if first == Transport::Ws {
            assert!(closure.ws_close.is_some(), "a close frame after KICKED");
        }
        assert!(new.is_open(), "the newer connection proceeds");
        // Messages now reach the new connection only.
        let mut bob = server.login(Transport::Tcp, &unique_user("bob"), None);
        let ack = bob
            .send_direct(&user, 1, b"to the new phone")
            .expect("sent");
        assert_eq!(new.expect_message().msg_id, ack.msg_id);
    }
}

#[test]
fn different_device_kinds_stay_online_together_and_all_get_pushes() {
    let server = TestServer::start();
    let user = unique_user("alice");
    let mut phone = server.login(Transport::Tcp, &user, Some("phone"));
    let mut desktop = server.login(Transport::Ws, &user, Some("desktop"));
    let mut web = server.login(Transport::Ws, &user, Some("web"));
    let mut bob = server.login(Transport::Tcp, &unique_user("bob"), None);
    let ack = bob.send_direct(&user, 11, b"everyone").expect("sent");
    for device in [&mut phone, &mut desktop, &mut web] {
        let message = device.expect_message();
        assert_eq!(message.msg_id, ack.msg_id);
        assert_eq!(message.body.as_ref(), b"everyone");
        device.assert_no_push();
    }
}

/// A token with any claims, signed like the backend signs them (or with another algorithm).
fn token_with(claims: serde_json::Value, algorithm: jsonwebtoken::Algorithm) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(algorithm),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .expect("sign a token")
}

#[test]
fn tokens_whose_claims_break_the_rules_are_invalid() {
    let server = TestServer::start();
    let exp = now_secs() + 3600;
    let long_user = "u".repeat(65);
    let cases = [
        ("no sub", serde_json::json!({ "exp": exp })),
        ("no exp", serde_json::json!({ "sub": "alice" })),
        ("empty sub", serde_json::json!({ "sub": "", "exp": exp })),
        (
            "65-byte sub",
            serde_json::json!({ "sub": long_user, "exp": exp }),
        ),
        (
            "control character in sub",
            serde_json::json!({ "sub": "al\u{7}ice", "exp": exp }),
        ),
        (
            "upper-case dev",
            serde_json::json!({ "sub": "alice", "exp": exp, "dev": "Phone" }),
        ),
        (
            "empty dev",
            serde_json::json!({ "sub": "alice", "exp": exp, "dev": "" }),
        ),
        (
            "sub not a string",
            serde_json::json!({ "sub": 42, "exp": exp }),
        ),
    ];
    for (i, (what, claims)) in cases.into_iter().enumerate() {
        let transport = BOTH[i % 2];
        let mut client = server.connect(transport);
        let seq = client.send_login(&token_with(claims, jsonwebtoken::Algorithm::HS256));
        let (before, _) = client.expect_closed(IO_TIMEOUT);
        match before.as_slice() {
            [ServerPacket::Response(r)] => {
                assert_eq!(
                    (r.seq, r.result.clone()),
                    (seq, Err(Status::INVALID_TOKEN)),
                    "{what}"
                )
            }
            other => panic!("{what}: expected INVALID_TOKEN then the close, got {other:?}"),
        }
    }
    // The same secret under another algorithm is not accepted either.
    let mut client = server.connect(Transport::Tcp);
    let hs512 = token_with(
        serde_json::json!({ "sub": "alice", "exp": exp }),
        jsonwebtoken::Algorithm::HS512,
    );
    let seq = client.send_login(&hs512);
    assert_refused_then_closed(&mut client, Command::Login, seq, Status::INVALID_TOKEN);
    // And a well-formed token with extra claims is fine.
    let mut client = server.connect(Transport::Ws);
    let extra = token_with(
        serde_json::json!({ "sub": "alice", "exp": exp, "dev": "web-2", "iss": "backend" }),
        jsonwebtoken::Algorithm::HS256,
    );
    let ok = client.login(&extra).expect("accepted");
    assert_eq!((ok.user.as_str(), ok.device.as_str()), ("alice", "web-2"));
}

crate::on_postgres_too!(
    good_token_logs_in_with_the_tokens_user_and_device,
    wrong_signature_is_refused_then_closed,
    garbage_token_is_refused_then_closed,
    expired_token_is_refused_then_closed,
    empty_token_is_malformed_then_closed,
    a_request_before_login_is_refused_then_closed,
    no_login_within_the_deadline_is_closed,
    a_second_login_on_one_connection_is_refused_and_changes_nothing,
    logout_answers_then_closes_and_other_devices_stay,
    same_device_kind_kicks_the_older_connection,
    different_device_kinds_stay_online_together_and_all_get_pushes,
    tokens_whose_claims_break_the_rules_are_invalid,
);
