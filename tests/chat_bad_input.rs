//! Bad input over real sockets: malformed payloads answered with MALFORMED on the request's
//! own seq while the connection lives on (fewer than `MALFORMED_IN_A_ROW_LIMIT` in a row), that
//! many in a row closing it with a KICKED (PROTOCOL_VIOLATION) first, unknown commands answered
//! and never counted (before login too), commands outside the request range kicked unanswered,
//! WebSocket text, WebSocket messages that are not exactly one packet, broken framing, and
//! bystanders unaffected.

mod chat_common;

use chat_common::{unique_user, ChatClient, TestServer, Transport, BOTH, IO_TIMEOUT};
use switchboard_codec::ws::{CloseCode, OpCode};
use switchboard_protocol::limits::MALFORMED_IN_A_ROW_LIMIT;
use switchboard_protocol::{Command, KickReason, Push, Request, Response, ServerPacket, Status};

/// The kick threshold as a count of requests.
const LIMIT: u32 = MALFORMED_IN_A_ROW_LIMIT as u32;

/// A SEND payload cut off inside its body: seq, to "bob", client_msg_id, then 2 of 9 bytes.
fn truncated_send(seq: u32) -> Vec<u8> {
    let mut payload = seq.to_be_bytes().to_vec();
    payload.extend_from_slice(&[0, 3, b'b', b'o', b'b']);
    payload.extend_from_slice(&1u64.to_be_bytes());
    payload.extend_from_slice(&[0, 0, 0, 9, b'h', b'i']);
    payload
}

/// Payloads that break one rule of docs/protocol.md §2 each, with the command they go under
/// and the seq the answer must carry.
fn malformed_requests() -> Vec<(&'static str, u16, Vec<u8>, u32)> {
    let with_seq = |seq: u32, rest: &[u8]| {
        let mut payload = seq.to_be_bytes().to_vec();
        payload.extend_from_slice(rest);
        payload
    };
    let too_many_ids = {
        let mut rest = 101u16.to_be_bytes().to_vec();
        rest.extend(std::iter::repeat_n(0u8, 101 * 8));
        rest
    };
    vec![
        (
            "a body cut short",
            Command::Send.code(),
            truncated_send(11),
            11,
        ),
        (
            "a byte after the last field",
            Command::Ping.code(),
            with_seq(12, &[0]),
            12,
        ),
        (
            "no room for a seq",
            Command::SyncAck.code(),
            vec![0, 1],
            0, // too short for a seq: answered on seq 0
        ),
        (
            "invalid UTF-8 in a user id",
            Command::Send.code(),
            with_seq(14, &[0, 1, 0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]),
            14,
        ),
        (
            "a control character in a user id",
            Command::Send.code(),
            with_seq(15, &[0, 2, b'b', 0x07, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]),
            15,
        ),
        (
            "an empty user id",
            Command::Send.code(),
            with_seq(16, &[0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]),
            16,
        ),
        (
            "101 ids in one SYNC_FETCH",
            Command::SyncFetch.code(),
            with_seq(17, &too_many_ids),
            17,
        ),
        (
            "a list count past the end",
            Command::GroupCreate.code(),
            with_seq(18, &[0, 1, b'g', 0x03, 0xe8]),
            18,
        ),
        (
            "an empty group name",
            Command::GroupCreate.code(),
            with_seq(19, &[0, 0, 0, 0]),
            19,
        ),
    ]
}

fn expect_refusal(client: &mut ChatClient, seq: u32) -> Response {
    let response = client.response(seq);
    assert!(
        response.result.is_err(),
        "seq {seq}: refused, got {:?}",
        response.result
    );
    response
}

#[test]
fn malformed_payloads_get_malformed_on_their_seq_and_the_connection_lives() {
    let server = TestServer::start();
    for transport in BOTH {
        let mut client = server.login(transport, &unique_user("alice"), None);
        // Two in a row, then a good request, again and again: never the limit in a row.
        for pair in malformed_requests().chunks(2) {
            for (what, command, payload, seq) in pair {
                client.send_packet(*command, payload);
                let response = expect_refusal(&mut client, *seq);
                assert_eq!(response.command, *command, "{transport:?} {what}");
                assert_eq!(
                    response.result,
                    Err(Status::MALFORMED),
                    "{transport:?} {what}"
                );
            }
            assert!(client.is_open(), "{transport:?}: open after {pair:?}");
        }
        // Nothing malformed was acted on.
        assert!(client.sync_all().is_empty());
    }
}

#[test]
fn unknown_commands_get_unknown_command_and_the_connection_lives() {
    let server = TestServer::start();
    for transport in BOTH {
        let mut client = server.login(transport, &unique_user("alice"), None);
        client.send_packet(0x0999, &[0, 0, 0, 5, 1, 2, 3]);
        let response = expect_refusal(&mut client, 5);
        assert_eq!(response.command, 0x0999, "answered under 0x0999 | 0x8000");
        assert_eq!(response.result, Err(Status::UNKNOWN_COMMAND));
        client.send_packet(0x3fff, &[]);
        let response = expect_refusal(&mut client, 0);
        assert_eq!(response.command, 0x3fff);
        assert_eq!(response.result, Err(Status::UNKNOWN_COMMAND));
        assert!(client.is_open(), "{transport:?}");
    }
}

#[test]
fn unknown_commands_never_count_toward_a_kick() {
    // docs/protocol.md §5 and §13: a newer client may try any number of commands this server
    // does not know, and fall back.
    let server = TestServer::start();
    for transport in BOTH {
        let mut client = server.login(transport, &unique_user("alice"), None);
        let tries = 3 * LIMIT;
        for n in 0..tries {
            client.send_packet(0x0700 + n as u16, &(100 + n).to_be_bytes());
        }
        for n in 0..tries {
            let response = expect_refusal(&mut client, 100 + n);
            assert_eq!(
                response.result,
                Err(Status::UNKNOWN_COMMAND),
                "{transport:?}"
            );
        }
        assert!(client.is_open(), "{transport:?}: {tries} unknown commands");
        // Nor do they break a run of malformed requests: LIMIT - 1 malformed, unknown ones
        // between them, then a good request, then LIMIT - 1 again; never kicked.
        for round in 0..2 {
            for n in 0..LIMIT - 1 {
                client.send_packet(Command::Send.code(), &truncated_send(200 + n));
                client.send_packet(0x0777, &(300 + n).to_be_bytes());
            }
            assert!(client.is_open(), "{transport:?}: round {round}");
        }
    }
}

/// `LIMIT` bad requests in a row: `LIMIT` answers, a KICKED with PROTOCOL_VIOLATION, the close.
fn assert_kicked_at_the_limit(transport: Transport, bad: &[(u16, Vec<u8>, u32)]) {
    let server = TestServer::start();
    let mut client = server.login(transport, &unique_user("alice"), None);
    for (command, payload, _) in bad {
        client.send_packet(*command, payload);
    }
    let (before, _closure) = client.expect_closed(IO_TIMEOUT);
    let responses: Vec<(u16, u32)> = before
        .iter()
        .filter_map(|p| match p {
            ServerPacket::Response(r) if r.result.is_err() => Some((r.command, r.seq)),
            _ => None,
        })
        .collect();
    let expected: Vec<(u16, u32)> = bad.iter().map(|(c, _, s)| (*c, *s)).collect();
    assert_eq!(
        responses, expected,
        "{transport:?}: each answered on its seq"
    );
    // docs/protocol.md §5 and §8: the server says why before it closes.
    match before.last() {
        Some(ServerPacket::Push(Push::Kicked { reason, .. })) => {
            assert_eq!(*reason, KickReason::PROTOCOL_VIOLATION, "{transport:?}")
        }
        other => panic!(
            "{transport:?}: expected KICKED (PROTOCOL_VIOLATION) before the close, \
             got {other:?} last of {before:?}"
        ),
    }
}

#[test]
fn malformed_requests_in_a_row_close_the_connection_at_the_documented_limit() {
    for transport in BOTH {
        let send = Command::Send.code();
        // One fewer than the limit, then a good request: the count starts again.
        let server = TestServer::start();
        let mut client = server.login(transport, &unique_user("alice"), None);
        for round in 0..2 {
            for n in 0..LIMIT - 1 {
                client.send_packet(send, &truncated_send(10 + n));
                assert_eq!(
                    expect_refusal(&mut client, 10 + n).result,
                    Err(Status::MALFORMED)
                );
            }
            assert!(client.is_open(), "{transport:?}: round {round}");
        }
        // The limit itself, with unknown commands among them (which count for nothing).
        let mut bad: Vec<(u16, Vec<u8>, u32)> = Vec::new();
        for n in 0..LIMIT {
            bad.push((send, truncated_send(20 + n), 20 + n));
            if n == 1 {
                bad.push((0x0777, (50u32).to_be_bytes().to_vec(), 50));
            }
        }
        assert_kicked_at_the_limit(transport, &bad);
    }
}

#[test]
fn bad_requests_before_login_close_at_once() {
    let server = TestServer::start();
    for transport in BOTH {
        // docs/protocol.md §5: a known request other than LOGIN gets NOT_LOGGED_IN, then the close.
        let mut client = server.connect(transport);
        client.send_packet(Command::Ping.code(), &[0, 0, 0, 41]);
        let (before, _) = client.expect_closed(IO_TIMEOUT);
        match before.as_slice() {
            [ServerPacket::Response(r)] => {
                assert_eq!(
                    (r.command, r.seq, r.result.clone()),
                    (Command::Ping.code(), 41, Err(Status::NOT_LOGGED_IN))
                )
            }
            other => panic!("expected NOT_LOGGED_IN then the close, got {other:?}"),
        }

        let mut client = server.connect(transport);
        client.send_packet(Command::Login.code(), &[0, 0, 0, 42, 0xff]);
        let (before, _) = client.expect_closed(IO_TIMEOUT);
        match before.as_slice() {
            [ServerPacket::Response(r)] => {
                assert_eq!((r.seq, r.result.clone()), (42, Err(Status::MALFORMED)))
            }
            other => panic!("expected MALFORMED then the close, got {other:?}"),
        }
    }
}

#[test]
fn an_unknown_command_before_login_is_answered_and_login_still_works() {
    // docs/protocol.md §5: a newer client may try a command before LOGIN and fall back.
    let server = TestServer::start();
    for transport in BOTH {
        let mut client = server.connect(transport);
        for n in 0..LIMIT + 1 {
            client.send_packet(0x0999, &(41 + n).to_be_bytes());
            let response = expect_refusal(&mut client, 41 + n);
            assert_eq!(
                (response.command, response.result),
                (0x0999, Err(Status::UNKNOWN_COMMAND)),
                "{transport:?}"
            );
        }
        let user = unique_user("alice");
        let ok = client
            .login(&chat_common::token(&user, None))
            .expect("LOGIN after unknown commands");
        assert_eq!(ok.user.as_str(), user);
        assert!(client.is_open(), "{transport:?}");
    }
}

#[test]
fn commands_outside_the_request_range_are_not_answered_but_kicked() {
    // docs/protocol.md §3: 0x0000 and push or response numbers from a client close the
    // connection, after a KICKED (PROTOCOL_VIOLATION) once logged in; no response that could
    // be taken for a real one (0x8010 | 0x8000 is LOGIN's response number).
    let server = TestServer::start();
    for transport in BOTH {
        for command in [0x8010u16, 0x8001, 0xffff, 0x4001, 0x7fff, 0x0000] {
            let mut client = server.login(transport, &unique_user("alice"), None);
            client.send_packet(command, &[0, 0, 0, 61]);
            let (before, closure) = client.expect_closed(IO_TIMEOUT);
            match before.as_slice() {
                [ServerPacket::Push(Push::Kicked { reason, .. })] => {
                    assert_eq!(*reason, KickReason::PROTOCOL_VIOLATION)
                }
                other => {
                    panic!("{transport:?} {command:#06x}: expected only KICKED, got {other:?}")
                }
            }
            if transport == Transport::Ws {
                assert_eq!(closure.ws_close, Some(CloseCode::PROTOCOL_ERROR));
            }

            let mut anonymous = server.connect(transport);
            anonymous.send_packet(command, &[0, 0, 0, 62]);
            let (before, closure) = anonymous.expect_closed(IO_TIMEOUT);
            assert!(
                before.is_empty(),
                "{transport:?} {command:#06x}: {before:?}"
            );
            if transport == Transport::Ws {
                assert_eq!(closure.ws_close, Some(CloseCode::PROTOCOL_ERROR));
            }
        }
    }
}

#[test]
fn websocket_text_is_closed_with_1003() {
    let server = TestServer::start();
    let mut client = server.login(Transport::Ws, &unique_user("alice"), None);
    client.send_ws(OpCode::Text, b"hello?").expect("send text");
    let (before, closure) = client.expect_closed(IO_TIMEOUT);
    assert!(before.is_empty(), "no answer to text: {before:?}");
    assert_eq!(closure.ws_close, Some(CloseCode::UNSUPPORTED_DATA));

    let mut anonymous = server.connect(Transport::Ws);
    anonymous.send_ws(OpCode::Text, b"{}").expect("send text");
    let (_, closure) = anonymous.expect_closed(IO_TIMEOUT);
    assert_eq!(closure.ws_close, Some(CloseCode::UNSUPPORTED_DATA));
}

#[test]
fn a_websocket_message_that_is_not_exactly_one_packet_is_closed() {
    let server = TestServer::start();
    let ping = |seq: u32| {
        let mut bytes = bytes::BytesMut::new();
        Request::Ping.encode(seq, &mut bytes).expect("encode");
        bytes.to_vec()
    };
    let two_packets = [ping(1), ping(2)].concat();
    let half_a_packet = ping(3)[..7].to_vec();
    let short_payload = {
        let mut packet = ping(4);
        packet.pop(); // the header announces 4 payload bytes, 3 follow
        packet
    };
    let trailing_byte = [ping(5), vec![0]].concat();
    let claims_4_gib = {
        let mut packet = ping(6);
        packet[6..10].copy_from_slice(&u32::MAX.to_be_bytes());
        packet
    };
    let over_the_limit_header = {
        let mut packet = ping(7);
        packet[6..10].copy_from_slice(&((1u32 << 20) + 1).to_be_bytes());
        packet
    };
    // docs/protocol.md §1: each is a message that is not exactly one packet, closed with 1002
    // (1009 is for a message longer than the limit itself).
    for (what, message) in [
        ("two packets", two_packets),
        ("half a header", half_a_packet),
        ("a payload shorter than announced", short_payload),
        ("a byte after the packet", trailing_byte),
        ("an empty message", Vec::new()),
        ("a short message whose header claims 4 GiB", claims_4_gib),
        (
            "a header announcing more than the limit",
            over_the_limit_header,
        ),
    ] {
        let mut client = server.login(Transport::Ws, &unique_user("alice"), None);
        client.send_ws(OpCode::Binary, &message).expect("send");
        let (before, closure) = client.expect_closed(IO_TIMEOUT);
        let responses = before
            .iter()
            .filter(|p| matches!(p, ServerPacket::Response(_)))
            .count();
        assert_eq!(
            responses, 0,
            "{what}: no request of it is answered: {before:?}"
        );
        assert_eq!(
            closure.ws_close,
            Some(CloseCode::PROTOCOL_ERROR),
            "{what}: {closure:?}"
        );
    }
    // A wrong magic is the documented 1002.
    let mut client = server.login(Transport::Ws, &unique_user("alice"), None);
    client
        .send_ws(OpCode::Binary, b"GET / HTTP/1.1\r\n\r\n")
        .expect("send");
    let (_, closure) = client.expect_closed(IO_TIMEOUT);
    assert_eq!(closure.ws_close, Some(CloseCode::PROTOCOL_ERROR));
}

#[test]
fn broken_tcp_framing_is_closed() {
    let server = TestServer::start();
    // A wrong magic, before and after login.
    let mut client = server.connect(Transport::Tcp);
    client.send_bytes(b"GET / HTTP/1.1\r\n\r\n").expect("send");
    let (before, _) = client.expect_closed(IO_TIMEOUT);
    assert!(before.is_empty(), "{before:?}");
    let mut client = server.login(Transport::Tcp, &unique_user("alice"), None);
    client
        .send_bytes(b"SWB2\x00\x01\x00\x00\x00\x04\x00\x00\x00\x01")
        .expect("send");
    let (before, _) = client.expect_closed(IO_TIMEOUT);
    assert!(before.is_empty(), "{before:?}");
    // A header announcing more than the 1 MiB maximum: closed before any payload is sent.
    let mut client = server.login(Transport::Tcp, &unique_user("alice"), None);
    let mut header = b"SWB1\x00\x01".to_vec();
    header.extend_from_slice(&((1u32 << 20) + 1).to_be_bytes());
    client.send_bytes(&header).expect("send");
    let (before, _) = client.expect_closed(IO_TIMEOUT);
    assert!(before.is_empty(), "{before:?}");
}

#[test]
fn garbage_on_some_connections_leaves_the_others_alone() {
    let server = TestServer::start();
    let (alice, bob) = (unique_user("alice"), unique_user("bob"));
    let mut alice_conn = server.login(Transport::Tcp, &alice, None);
    let mut bob_conn = server.login(Transport::Ws, &bob, None);
    let before = alice_conn.send_direct(&bob, 1, b"before").expect("sent");
    assert_eq!(bob_conn.expect_message().msg_id, before.msg_id);

    let mut vandals = Vec::new();
    for transport in BOTH {
        let mut garbage = server.login(transport, &unique_user("vandal"), None);
        for seq in 0..LIMIT {
            garbage.send_packet(Command::Send.code(), &truncated_send(seq));
        }
        vandals.push(garbage);
        let mut framing = server.connect(transport);
        let _ = framing.send_unit(b"\xde\xad\xbe\xef\x00\x00\x00\x00\x00\x00");
        vandals.push(framing);
    }
    let mut text = server.connect(Transport::Ws);
    text.send_ws(OpCode::Text, b"text").expect("send");
    vandals.push(text);
    for vandal in &mut vandals {
        vandal.expect_closed(IO_TIMEOUT);
    }

    // The bystanders never noticed.
    assert!(alice_conn.is_open() && bob_conn.is_open());
    let after = alice_conn.send_direct(&bob, 2, b"after").expect("sent");
    assert_eq!(bob_conn.expect_message().msg_id, after.msg_id);
    let reply = bob_conn.send_direct(&alice, 3, b"reply").expect("sent");
    assert_eq!(alice_conn.expect_message().msg_id, reply.msg_id);
    // And the store took nothing from the garbage.
    let mut bob_later = server.login(Transport::Tcp, &bob, Some("desktop"));
    let ids: Vec<u64> = bob_later.sync_all().iter().map(|m| m.msg_id).collect();
    assert_eq!(ids, vec![before.msg_id, after.msg_id, reply.msg_id]);
}

#[test]
fn extreme_field_values_are_handled_not_misread() {
    let server = TestServer::start();
    for transport in BOTH {
        let (alice, bob) = (unique_user("alice"), unique_user("bob"));
        let mut alice_conn = server.login(transport, &alice, None);
        // All 64 bits of a client_msg_id are kept, the top bit included.
        let top = alice_conn
            .send_direct(&bob, u64::MAX, b"max")
            .expect("sent");
        let zero = alice_conn.send_direct(&bob, 0, b"zero").expect("sent");
        assert_ne!(top.msg_id, zero.msg_id);
        assert_eq!(alice_conn.send_direct(&bob, u64::MAX, b"max"), Ok(top));
        let mut bob_conn = server.login(transport, &bob, None);
        // Positions past every id (even past i64::MAX) list nothing and fetch nothing.
        let index = bob_conn.sync_index(u64::MAX, 500);
        assert!(index.ids.is_empty() && !index.more, "{index:?}");
        let fetch = bob_conn.sync_fetch(&[u64::MAX, 1 << 63, 0]);
        assert_eq!(fetch.covered, 3);
        assert!(fetch.messages.is_empty());
        let synced = bob_conn.sync_peek();
        assert_eq!(
            synced.iter().map(|m| m.client_msg_id).collect::<Vec<_>>(),
            vec![u64::MAX, 0]
        );
        bob_conn.sync_ack(u64::MAX);
        assert!(bob_conn.sync_index(0, 500).ids.is_empty());
        for group in [0, 1 << 63, u64::MAX] {
            assert_eq!(bob_conn.group_join(group), Err(Status::NOT_FOUND));
            assert_eq!(bob_conn.group_detail(group).err(), Some(Status::NOT_FOUND));
        }
        assert!(bob_conn.is_open() && alice_conn.is_open());
    }
}

/// A PING flood (docs/protocol.md §6.1: a burst of 20, then 5 a second): the burst is answered,
/// then a KICKED with PROTOCOL_VIOLATION and the close (1008 on WebSocket); bystanders are
/// served throughout.
#[test]
fn a_ping_flood_is_kicked_after_the_burst() {
    let server = TestServer::start();
    for transport in BOTH {
        let mut bystander = server.login(transport, &unique_user("bob"), None);
        let mut flooder = server.login(transport, &unique_user("mallory"), None);
        for _ in 0..200 {
            flooder.send_request(&Request::Ping);
        }
        let (before, closure) = flooder.expect_closed(IO_TIMEOUT);
        let pongs = before
            .iter()
            .filter(|p| matches!(p, ServerPacket::Response(r) if r.command == Command::Ping.code()))
            .count();
        assert!(
            (20..=25).contains(&pongs),
            "{transport:?}: {pongs} PINGs answered, the burst is 20"
        );
        match before.last() {
            Some(ServerPacket::Push(Push::Kicked { reason, .. })) => {
                assert_eq!(*reason, KickReason::PROTOCOL_VIOLATION, "{transport:?}")
            }
            other => panic!("{transport:?}: expected KICKED before the close, got {other:?}"),
        }
        if transport == Transport::Ws {
            assert_eq!(
                closure.ws_close,
                Some(CloseCode::POLICY_VIOLATION),
                "{transport:?}"
            );
        }
        assert!(
            bystander.is_open(),
            "{transport:?}: the bystander is served"
        );
    }
}

crate::on_postgres_too!(
    malformed_payloads_get_malformed_on_their_seq_and_the_connection_lives,
    unknown_commands_get_unknown_command_and_the_connection_lives,
    unknown_commands_never_count_toward_a_kick,
    malformed_requests_in_a_row_close_the_connection_at_the_documented_limit,
    bad_requests_before_login_close_at_once,
    an_unknown_command_before_login_is_answered_and_login_still_works,
    commands_outside_the_request_range_are_not_answered_but_kicked,
    websocket_text_is_closed_with_1003,
    a_websocket_message_that_is_not_exactly_one_packet_is_closed,
    broken_tcp_framing_is_closed,
    garbage_on_some_connections_leaves_the_others_alone,
    extreme_field_values_are_handled_not_misread,
    a_ping_flood_is_kicked_after_the_burst,
);
