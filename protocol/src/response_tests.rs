//! Tests of responses: exact bytes, a round trip per body, refusals, and property tests.

use super::*;
use crate::server_packet::ServerPacket;
use crate::test_support::{arb_group_name, arb_message, arb_user_id, split_packet};
use crate::{Push, Target};
use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;

fn decode_packet(packet: &[u8]) -> Response {
    let (command, payload) = split_packet(packet);
    match ServerPacket::decode(command, payload) {
        Ok(ServerPacket::Response(response)) => response,
        other => panic!("not a response: {other:?}"),
    }
}

fn encoded(seq: u32, body: &ResponseBody) -> Vec<u8> {
    let mut dst = BytesMut::new();
    body.encode(seq, &mut dst).unwrap();
    dst.to_vec()
}

fn message() -> ChatMessage {
    ChatMessage {
        msg_id: 11,
        server_time_ms: 12,
        from: Text::from("alice"),
        target: Target::Group(13),
        client_msg_id: 14,
        body: Bytes::from_static(b"hello"),
    }
}

fn one_of_each() -> Vec<ResponseBody> {
    vec![
        ResponseBody::Pong(PongOk { server_time_ms: 1 }),
        ResponseBody::Login(LoginOk {
            user: Text::from("alice"),
            device: Text::from("phone"),
            server_time_ms: 2,
            idle_timeout_ms: 180_000,
            max_body: 65_536,
        }),
        ResponseBody::Logout,
        ResponseBody::Send(SendOk {
            msg_id: 3,
            server_time_ms: 4,
        }),
        ResponseBody::GroupSend(SendOk {
            msg_id: 5,
            server_time_ms: 6,
        }),
        ResponseBody::SyncIndex(SyncIndexOk {
            ids: vec![7, 8],
            more: true,
        }),
        ResponseBody::SyncFetch(SyncFetchOk {
            covered: 2,
            messages: vec![message()],
        }),
        ResponseBody::SyncAck,
        ResponseBody::SyncList(SyncListOk {
            ids: vec![12, 11],
            more: false,
            cursor: 2,
        }),
        ResponseBody::SyncConfirm,
        ResponseBody::GroupCreate(GroupCreated { group_id: 9 }),
        ResponseBody::GroupJoin,
        ResponseBody::GroupQuit,
        ResponseBody::GroupDetail(GroupDetailOk {
            name: Text::from("friends"),
            owner: Text::from("alice"),
            members: vec![Text::from("alice"), Text::from("bob")],
        }),
    ]
}

#[test]
fn send_ok_has_the_documented_bytes() {
    let body = ResponseBody::Send(SendOk {
        msg_id: 0x0102_0304_0506_0708,
        server_time_ms: 0x1122,
    });
    let expected: &[u8] = b"SWB1\x80\x20\x00\x00\x00\x16\
        \x00\x00\x00\x02\x00\x00\
        \x01\x02\x03\x04\x05\x06\x07\x08\
        \x00\x00\x00\x00\x00\x00\x11\x22";
    assert_eq!(encoded(2, &body), expected);
}

#[test]
fn empty_body_response_is_seq_and_status_only() {
    assert_eq!(
        encoded(3, &ResponseBody::SyncAck),
        b"SWB1\x80\x32\x00\x00\x00\x06\x00\x00\x00\x03\x00\x00"
    );
}

#[test]
fn every_body_round_trips_under_its_command() {
    for (seq, body) in one_of_each().into_iter().enumerate() {
        let packet = encoded(seq as u32, &body);
        let command = body.command();
        assert_eq!(split_packet(&packet).0, command.response_code());
        let expected = Response {
            command: command.code(),
            seq: seq as u32,
            result: Ok(body),
        };
        assert_eq!(decode_packet(&packet), expected);
    }
    let commands: Vec<Command> = one_of_each().iter().map(ResponseBody::command).collect();
    assert_eq!(commands, Command::ALL, "one example per command");
}

#[test]
fn error_response_has_the_documented_bytes() {
    let mut dst = BytesMut::new();
    encode_error(Command::Login.code(), 1, Status::INVALID_TOKEN, &mut dst).unwrap();
    assert_eq!(
        &dst[..],
        b"SWB1\x80\x10\x00\x00\x00\x06\x00\x00\x00\x01\x00\x05"
    );
    let expected = Response {
        command: 0x0010,
        seq: 1,
        result: Err(Status::INVALID_TOKEN),
    };
    assert_eq!(decode_packet(&dst), expected);
}

#[test]
fn bad_bool_in_sync_index_is_malformed() {
    let payload = Bytes::from_static(b"\0\0\0\x01\0\0\0\0\x02");
    let got = ServerPacket::decode(0x8030, payload);
    assert_eq!(
        got,
        Err(crate::server_packet::ServerPacketError::Malformed {
            command: 0x8030,
            error: DecodeError::BadBool {
                field: "sync_index_ok.more",
                got: 2
            }
        })
    );
}

#[test]
fn more_messages_than_ids_a_fetch_may_ask_for_is_refused() {
    let body = ResponseBody::SyncFetch(SyncFetchOk {
        covered: 101,
        messages: vec![message(); 101],
    });
    let mut dst = BytesMut::new();
    assert!(matches!(
        body.encode(1, &mut dst),
        Err(EncodeError::TooMany { count: 101, .. })
    ));
    assert!(dst.is_empty());
}

#[test]
fn fetch_payload_length_is_its_overhead_plus_its_messages() {
    let messages = vec![message(), message()];
    let body = ResponseBody::SyncFetch(SyncFetchOk {
        covered: 2,
        messages: messages.clone(),
    });
    let (_, payload) = split_packet(&encoded(1, &body));
    let sum: usize = messages.iter().map(ChatMessage::encoded_len).sum();
    assert_eq!(payload.len(), SyncFetchOk::EMPTY_PAYLOAD_LEN + sum);
}

#[test]
fn message_push_and_fetched_message_share_one_layout() {
    let push = message().encode_push().unwrap();
    let (_, fetched) = split_packet(&encoded(
        1,
        &ResponseBody::SyncFetch(SyncFetchOk {
            covered: 1,
            messages: vec![message()],
        }),
    ));
    assert_eq!(&push[10..], &fetched[SyncFetchOk::EMPTY_PAYLOAD_LEN..]);
    let (command, payload) = split_packet(&push);
    assert_eq!(
        ServerPacket::decode(command, payload),
        Ok(ServerPacket::Push(Push::Message(message())))
    );
}

fn arb_body() -> impl Strategy<Value = ResponseBody> {
    prop_oneof![
        any::<u64>().prop_map(|server_time_ms| ResponseBody::Pong(PongOk { server_time_ms })),
        (
            arb_user_id(),
            "[a-z]{1,32}",
            any::<u64>(),
            any::<u32>(),
            any::<u32>()
        )
            .prop_map(
                |(user, device, server_time_ms, idle_timeout_ms, max_body)| {
                    ResponseBody::Login(LoginOk {
                        user,
                        device: Text::from(device),
                        server_time_ms,
                        idle_timeout_ms,
                        max_body,
                    })
                }
            ),
        Just(ResponseBody::Logout),
        (any::<u64>(), any::<u64>()).prop_map(|(msg_id, server_time_ms)| {
            ResponseBody::Send(SendOk {
                msg_id,
                server_time_ms,
            })
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(msg_id, server_time_ms)| {
            ResponseBody::GroupSend(SendOk {
                msg_id,
                server_time_ms,
            })
        }),
        (vec(any::<u64>(), 0..=500), any::<bool>())
            .prop_map(|(ids, more)| ResponseBody::SyncIndex(SyncIndexOk { ids, more })),
        (any::<u16>(), vec(arb_message(), 0..8)).prop_map(|(covered, messages)| {
            ResponseBody::SyncFetch(SyncFetchOk { covered, messages })
        }),
        Just(ResponseBody::SyncAck),
        (vec(any::<u64>(), 0..=500), any::<bool>(), any::<u64>()).prop_map(
            |(ids, more, cursor)| { ResponseBody::SyncList(SyncListOk { ids, more, cursor }) }
        ),
        Just(ResponseBody::SyncConfirm),
        any::<u64>().prop_map(|group_id| ResponseBody::GroupCreate(GroupCreated { group_id })),
        Just(ResponseBody::GroupJoin),
        Just(ResponseBody::GroupQuit),
        (arb_group_name(), arb_user_id(), vec(arb_user_id(), 0..20)).prop_map(
            |(name, owner, members)| ResponseBody::GroupDetail(GroupDetailOk {
                name,
                owner,
                members
            })
        ),
    ]
}

proptest! {
    #[test]
    fn every_body_round_trips(seq: u32, body in arb_body()) {
        let packet = encoded(seq, &body);
        let expected = Response { command: body.command().code(), seq, result: Ok(body) };
        prop_assert_eq!(decode_packet(&packet), expected);
    }

    #[test]
    fn every_refusal_round_trips(command in 0u16..0x8000, seq: u32, status in 1u16..) {
        let response = Response { command, seq, result: Err(Status::from_code(status)) };
        let mut dst = BytesMut::new();
        response.encode(&mut dst).unwrap();
        prop_assert_eq!(decode_packet(&dst), response);
    }
}
