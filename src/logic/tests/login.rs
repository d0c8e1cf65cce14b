//! LOGIN, PING, LOGOUT, the login deadline, kicks, shutdown and the garbage rule.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use switchboard_protocol::{
    limits, Command, KickReason, Push, Request, ResponseBody, Status, Text,
};

use super::{config, Harness, Sent};
use crate::logic::CloseWhy;

fn ping() -> Request {
    Request::Ping
}

#[test]
fn login_answers_with_the_identity_the_clock_and_the_limits() {
    let mut h = Harness::new();
    let conn = h.open();
    let login = h.login_request("alice", "phone");
    let seq = h.request(conn, &login);
    match h.ok(conn, seq) {
        ResponseBody::Login(ok) => {
            assert_eq!((ok.user.as_str(), ok.device.as_str()), ("alice", "phone"));
            assert_eq!(ok.server_time_ms, h.now_ms);
            assert_eq!(ok.max_body, config().max_body);
            let idle = config().idle_timeout.as_millis() as u32;
            assert_eq!(ok.idle_timeout_ms, idle);
        }
        other => panic!("{other:?}"),
    }
    h.expect_nothing();
    assert_eq!(h.core.sessions.devices("alice").len(), 1);
}

#[test]
fn ping_answers_with_the_time_passed_in() {
    let mut h = Harness::new();
    let conn = h.login("alice", "phone");
    h.advance(Duration::from_millis(1234));
    let seq = h.request(conn, &ping());
    match h.ok(conn, seq) {
        ResponseBody::Pong(pong) => assert_eq!(pong.server_time_ms, h.now_ms),
        other => panic!("{other:?}"),
    }
    h.expect_nothing();
}

#[test]
fn a_request_before_login_is_refused_and_the_connection_closed() {
    let mut h = Harness::new();
    let conn = h.open();
    let seq = h.request(conn, &ping());
    h.refused(conn, Command::Ping, seq, Status::NOT_LOGGED_IN);
    h.closed(conn, CloseWhy::LoginFailed);
    // Whatever was already on its way from the closed connection means nothing.
    let login = h.login_request("alice", "phone");
    h.request(conn, &login);
    h.expect_nothing();
}

#[test]
fn a_bad_token_is_refused_invalid_and_the_connection_closed() {
    let mut h = Harness::new();
    let conn = h.open();
    let login = Request::Login {
        token: Text::from("not.a.token"),
        client_version: Text::from(""),
    };
    let seq = h.request(conn, &login);
    h.refused(conn, Command::Login, seq, Status::INVALID_TOKEN);
    h.closed(conn, CloseWhy::LoginFailed);
    h.expect_nothing();
}

#[test]
fn an_expired_token_is_refused_expired_by_the_clock_passed_in() {
    let mut h = Harness::new();
    let token = h.token("alice", None, Duration::from_secs(60));
    h.advance(Duration::from_secs(60));
    let conn = h.open();
    let login = Request::Login {
        token,
        client_version: Text::from(""),
    };
    let seq = h.request(conn, &login);
    h.refused(conn, Command::Login, seq, Status::TOKEN_EXPIRED);
    h.closed(conn, CloseWhy::LoginFailed);
}

#[test]
fn a_second_login_on_one_connection_is_refused_and_changes_nothing() {
    let mut h = Harness::new();
    let conn = h.login("alice", "phone");
    let again = h.login_request("bob", "phone");
    let seq = h.request(conn, &again);
    h.refused(conn, Command::Login, seq, Status::ALREADY_LOGGED_IN);
    h.expect_nothing();
    assert!(h.core.sessions.devices("bob").is_empty());
    let seq = h.request(conn, &ping());
    h.ok(conn, seq);
}

#[test]
fn logout_answers_then_closes_and_later_packets_mean_nothing() {
    let mut h = Harness::new();
    let conn = h.login("alice", "phone");
    let seq = h.request(conn, &Request::Logout);
    assert_eq!(h.ok(conn, seq), ResponseBody::Logout);
    h.closed(conn, CloseWhy::Logout);
    h.request(conn, &ping());
    h.expect_nothing();
    assert!(h.core.sessions.devices("alice").is_empty());
}

#[test]
fn the_login_deadline_closes_only_connections_that_did_not_log_in() {
    let mut h = Harness::new();
    let timeout = config().login_timeout;
    let idle = h.open();
    let opened_at = h.now_ms;
    let active = h.login("alice", "phone");
    assert_eq!(
        h.core.next_timeout(),
        Some(opened_at + timeout.as_millis() as u64)
    );
    h.advance(timeout - Duration::from_millis(1));
    h.expect_nothing();
    h.advance(Duration::from_millis(1));
    h.closed(idle, CloseWhy::LoginTimeout);
    h.expect_nothing();
    let seq = h.request(active, &ping());
    h.ok(active, seq);
    h.advance(timeout);
    h.expect_nothing();
    assert_eq!(h.core.next_timeout(), None);
}

#[test]
fn the_same_device_kind_kicks_the_older_connection_and_others_stay() {
    let mut h = Harness::new();
    let old = h.login("alice", "phone");
    let desktop = h.login("alice", "desktop");
    let new = h.open();
    let login = h.login_request("alice", "phone");
    let seq = h.request(new, &login);
    h.kicked(old, KickReason::LOGGED_IN_ELSEWHERE, CloseWhy::Kicked);
    h.ok(new, seq);
    h.expect_nothing();
    // The kicked connection's close, arriving later, takes nobody else offline.
    h.close(old);
    let conns: Vec<u64> = h
        .core
        .sessions
        .devices("alice")
        .iter()
        .map(|d| d.conn)
        .collect();
    assert_eq!(conns, vec![new, desktop]);
    h.request(old, &ping());
    h.expect_nothing();
}

#[test]
fn shutdown_kicks_every_logged_in_connection_and_answers() {
    let mut h = Harness::new();
    let waiting = h.open();
    let alice = h.login("alice", "phone");
    let bob = h.login("bob", "phone");
    let (done, answered) = crossbeam_channel::bounded(1);
    let now = h.now_ms;
    h.core
        .handle_inbound(crate::logic::Inbound::Shutdown(done), now);
    let mut kicked: Vec<u64> = h
        .drain_sent()
        .into_iter()
        .map(|sent| match sent {
            Sent::Packet(
                conn,
                switchboard_protocol::ServerPacket::Push(Push::Kicked { reason, .. }),
            ) if reason == KickReason::SERVER_SHUTDOWN => conn,
            other => panic!("{other:?}"),
        })
        .collect();
    kicked.sort_unstable();
    assert_eq!(kicked, vec![alice, bob]);
    assert!(!kicked.contains(&waiting));
    assert_eq!(answered.try_recv(), Ok(()));
}

/// A SEND whose payload stops after the seq: a PING packet with its command (bytes 4..6 of
/// the header, after the magic) rewritten to SEND.
fn malformed_send() -> Bytes {
    let mut packet = BytesMut::new();
    Request::Ping.encode(7, &mut packet).unwrap();
    packet[4..6].copy_from_slice(&Command::Send.code().to_be_bytes());
    packet.freeze()
}

#[test]
fn malformed_before_login_is_answered_and_closed_at_once() {
    let mut h = Harness::new();
    let conn = h.open();
    h.deliver(conn, malformed_send());
    h.refused(conn, Command::Send, 7, Status::MALFORMED);
    h.closed(conn, CloseWhy::Garbage);
    h.expect_nothing();
}

#[test]
fn malformed_requests_in_a_row_kick_a_logged_in_connection_at_the_limit() {
    let limit = limits::MALFORMED_IN_A_ROW_LIMIT;
    let mut h = Harness::new();
    let conn = h.login("alice", "phone");
    for _ in 1..limit {
        h.deliver(conn, malformed_send());
        h.refused(conn, Command::Send, 7, Status::MALFORMED);
    }
    // A request that parses starts the count again.
    let seq = h.request(conn, &ping());
    h.ok(conn, seq);
    for _ in 1..limit {
        h.deliver(conn, malformed_send());
        h.refused(conn, Command::Send, 7, Status::MALFORMED);
    }
    h.expect_nothing();
    h.deliver(conn, malformed_send());
    h.refused(conn, Command::Send, 7, Status::MALFORMED);
    h.kicked(conn, KickReason::PROTOCOL_VIOLATION, CloseWhy::Garbage);
    h.expect_nothing();
    assert!(h.core.sessions.devices("alice").is_empty());
}

/// A PING packet under another command number.
fn with_command(code: u16) -> Bytes {
    let mut packet = BytesMut::new();
    Request::Ping.encode(9, &mut packet).unwrap();
    packet[4..6].copy_from_slice(&code.to_be_bytes());
    packet.freeze()
}

#[test]
fn unknown_commands_are_answered_and_never_count_toward_a_kick() {
    let unknown = 0x3F00;
    let mut h = Harness::new();
    let waiting = h.open();
    h.deliver(waiting, with_command(unknown));
    let response = h.response(waiting);
    assert_eq!(
        (response.command, response.seq, response.result),
        (unknown, 9, Err(Status::UNKNOWN_COMMAND))
    );
    h.expect_nothing();
    let conn = h.login("alice", "phone");
    for _ in 0..2 * limits::MALFORMED_IN_A_ROW_LIMIT {
        h.deliver(conn, with_command(unknown));
        assert_eq!(h.response(conn).result, Err(Status::UNKNOWN_COMMAND));
    }
    h.expect_nothing();
    // Nor do they break a run of malformed ones: the limit still counts only those.
    for _ in 1..limits::MALFORMED_IN_A_ROW_LIMIT {
        h.deliver(conn, malformed_send());
        h.refused(conn, Command::Send, 7, Status::MALFORMED);
        h.deliver(conn, with_command(unknown));
        h.response(conn);
    }
    h.deliver(conn, malformed_send());
    h.refused(conn, Command::Send, 7, Status::MALFORMED);
    h.kicked(conn, KickReason::PROTOCOL_VIOLATION, CloseWhy::Garbage);
}

#[test]
fn a_command_outside_the_request_range_is_dropped_unanswered() {
    let mut h = Harness::new();
    let waiting = h.open();
    h.deliver(waiting, with_command(0x0000));
    h.closed(waiting, CloseWhy::Garbage);
    let conn = h.login("alice", "phone");
    h.deliver(conn, with_command(0x4001)); // a push number
    h.kicked(conn, KickReason::PROTOCOL_VIOLATION, CloseWhy::Garbage);
    let other = h.login("bob", "phone");
    h.deliver(other, with_command(0x8001)); // a response number
    h.kicked(other, KickReason::PROTOCOL_VIOLATION, CloseWhy::Garbage);
    h.expect_nothing();
}

#[test]
fn a_message_that_is_not_exactly_one_packet_closes_the_connection() {
    let mut h = Harness::new();
    let conn = h.login("alice", "phone");
    let mut two = BytesMut::new();
    Request::Ping.encode(1, &mut two).unwrap();
    Request::Ping.encode(2, &mut two).unwrap();
    h.deliver(conn, two.freeze());
    h.closed(conn, CloseWhy::Garbage);
    let other = h.login("bob", "phone");
    let mut short = BytesMut::new();
    Request::Ping.encode(1, &mut short).unwrap();
    short.put_u8(0);
    let mut cut = short.freeze();
    cut.truncate(cut.len() - 2);
    h.deliver(other, cut);
    h.closed(other, CloseWhy::Garbage);
    h.expect_nothing();
}

/// A drain reaching a logged-in connection: RECONNECT_AFTER within the configured delay,
/// KICKED(SERVER_SHUTDOWN), then the close; one not logged in is only closed.
#[test]
fn a_drain_tells_a_logged_in_client_when_to_come_back_then_kicks_and_closes_it() {
    let mut h = Harness::new();
    let waiting = h.open();
    let alice = h.login("alice", "phone");
    let now = h.now_ms;
    h.core
        .handle_inbound(crate::logic::Inbound::Drain(alice), now);
    match h.push(alice) {
        Push::ReconnectAfter { delay_ms } => assert!(delay_ms <= 1000, "{delay_ms}"),
        other => panic!("expected RECONNECT_AFTER, got {other:?}"),
    }
    h.kicked(alice, KickReason::SERVER_SHUTDOWN, CloseWhy::Draining);
    h.core
        .handle_inbound(crate::logic::Inbound::Drain(waiting), now);
    h.closed(waiting, CloseWhy::Draining);
    h.expect_nothing();
}
