//! Tests of `Request`: exact bytes, a round trip per command, one test per refusal, and
//! property tests over arbitrary values and arbitrary bytes.

use super::*;
use crate::test_support::{arb_body, arb_group_name, arb_user_id, split_packet};
use proptest::collection::vec;
use proptest::prelude::*;

fn encoded(seq: u32, request: &Request) -> Vec<u8> {
    let mut dst = BytesMut::new();
    request.encode(seq, &mut dst).unwrap();
    dst.to_vec()
}

fn decode_packet(packet: &[u8]) -> Result<(u32, Request), RequestError> {
    let (command, payload) = split_packet(packet);
    Request::decode(command, payload)
}

fn one_of_each() -> Vec<Request> {
    vec![
        Request::Ping,
        Request::Login {
            token: Text::from("eyJ.x.y"),
            client_version: Text::from("sdk/1"),
        },
        Request::Logout,
        Request::Send {
            to: Text::from("bob"),
            client_msg_id: 1,
            body: Bytes::from_static(b"hi"),
        },
        Request::GroupSend {
            group_id: 2,
            client_msg_id: 3,
            body: Bytes::new(),
        },
        Request::SyncIndex {
            after: 4,
            limit: 500,
        },
        Request::SyncFetch { ids: vec![5, 6] },
        Request::SyncAck { upto: 7 },
        Request::SyncList {
            after: 11,
            limit: 12,
        },
        Request::SyncConfirm { upto: 13 },
        Request::GroupCreate {
            name: Text::from("friends"),
            members: vec![Text::from("bob"), Text::from("carol")],
        },
        Request::GroupJoin { group_id: 8 },
        Request::GroupQuit { group_id: 9 },
        Request::GroupDetail { group_id: 10 },
    ]
}

fn malformed(command: Command, seq: Option<u32>, error: DecodeError) -> RequestError {
    RequestError::Malformed {
        command,
        seq,
        error,
    }
}

#[test]
fn ping_has_the_documented_bytes() {
    assert_eq!(
        encoded(7, &Request::Ping),
        b"SWB1\x00\x01\x00\x00\x00\x04\x00\x00\x00\x07"
    );
}

#[test]
fn send_has_the_documented_bytes() {
    let send = Request::Send {
        to: Text::from("bob"),
        client_msg_id: 0x0102,
        body: Bytes::from_static(b"hi"),
    };
    let expected: &[u8] = b"SWB1\x00\x20\x00\x00\x00\x17\
        \x00\x00\x00\x02\
        \x00\x03bob\
        \x00\x00\x00\x00\x00\x00\x01\x02\
        \x00\x00\x00\x02hi";
    assert_eq!(encoded(2, &send), expected);
}

#[test]
fn every_command_round_trips() {
    for (seq, request) in one_of_each().into_iter().enumerate() {
        let packet = encoded(seq as u32, &request);
        assert_eq!(
            split_packet(&packet).0,
            request.command().code(),
            "{request:?}"
        );
        assert_eq!(decode_packet(&packet), Ok((seq as u32, request)));
    }
    let commands: Vec<Command> = one_of_each().iter().map(Request::command).collect();
    assert_eq!(commands, Command::ALL, "one example per command");
}

#[test]
fn send_fields_share_the_payload_buffer() {
    let payload = Bytes::from_static(b"\0\0\0\x01\0\x03bob\0\0\0\0\0\0\0\x01\0\0\0\x02hi");
    let Ok((1, Request::Send { to, body, .. })) = Request::decode(0x0020, payload.clone()) else {
        panic!("expected a SEND");
    };
    assert_eq!(to.as_bytes().as_ptr(), payload[6..].as_ptr());
    assert_eq!(body.as_ptr(), payload[21..].as_ptr());
}

#[test]
fn payload_shorter_than_a_seq_is_malformed_without_a_seq() {
    let error = Request::decode(0x0001, Bytes::from_static(b"\0\0\x01")).unwrap_err();
    let truncated = DecodeError::Truncated {
        field: "seq",
        need: 4,
        left: 3,
    };
    assert_eq!(error, malformed(Command::Ping, None, truncated));
    assert_eq!((error.seq(), error.status()), (0, Status::MALFORMED));
}

#[test]
fn truncated_field_keeps_the_seq() {
    let error = Request::decode(0x0032, Bytes::from_static(b"\0\0\0\x09\0\0\0")).unwrap_err();
    let truncated = DecodeError::Truncated {
        field: "sync_ack.upto",
        need: 8,
        left: 3,
    };
    assert_eq!(error, malformed(Command::SyncAck, Some(9), truncated));
    assert_eq!(error.seq(), 9);
}

#[test]
fn bad_utf8_in_a_user_id_is_malformed() {
    let payload = Bytes::from_static(b"\0\0\0\x01\0\x02\xff\xfe\0\0\0\0\0\0\0\x01\0\0\0\0");
    let bad = DecodeError::BadUtf8 { field: "send.to" };
    assert_eq!(
        Request::decode(0x0020, payload),
        Err(malformed(Command::Send, Some(1), bad))
    );
}

#[test]
fn empty_and_overlong_user_ids_are_malformed() {
    let empty = Bytes::from_static(b"\0\0\0\x01\0\0\0\0\0\0\0\0\0\x01\0\0\0\0");
    assert!(matches!(
        Request::decode(0x0020, empty),
        Err(RequestError::Malformed {
            error: DecodeError::BadLength { len: 0, .. },
            ..
        })
    ));
    let send = Request::Send {
        to: Text::from("x".repeat(65)),
        client_msg_id: 1,
        body: Bytes::new(),
    };
    let mut dst = BytesMut::new();
    assert_eq!(
        send.encode(1, &mut dst),
        Err(EncodeError::BadLength {
            field: "send.to",
            len: 65,
            min: 1,
            max: 64
        })
    );
    assert!(dst.is_empty());
}

#[test]
fn trailing_bytes_are_malformed() {
    let error = Request::decode(0x0001, Bytes::from_static(b"\0\0\0\x05!")).unwrap_err();
    let trailing = DecodeError::TrailingBytes { count: 1 };
    assert_eq!(error, malformed(Command::Ping, Some(5), trailing));
}

#[test]
fn count_larger_than_the_remaining_bytes_is_malformed() {
    // Three ids declared, one present.
    let payload = Bytes::from_static(b"\0\0\0\x01\0\x03\0\0\0\0\0\0\0\x01");
    let beyond = DecodeError::CountBeyondPayload {
        field: "sync_fetch.ids",
        count: 3,
        left: 8,
    };
    assert_eq!(
        Request::decode(0x0031, payload),
        Err(malformed(Command::SyncFetch, Some(1), beyond))
    );
}

#[test]
fn more_than_100_fetch_ids_are_malformed() {
    let mut payload = b"\0\0\0\x01\0\x65".to_vec();
    payload.extend([0u8; 8 * 101]);
    let too_many = DecodeError::TooMany {
        field: "sync_fetch.ids",
        count: 101,
        max: 100,
    };
    assert_eq!(
        Request::decode(0x0031, payload.into()),
        Err(malformed(Command::SyncFetch, Some(1), too_many))
    );
    let mut dst = BytesMut::new();
    let fetch = Request::SyncFetch { ids: vec![1; 101] };
    assert!(matches!(
        fetch.encode(1, &mut dst),
        Err(EncodeError::TooMany { count: 101, .. })
    ));
}

#[test]
fn unknown_command_keeps_the_seq_if_there_is_one() {
    let error = Request::decode(0x0099, Bytes::from_static(b"\0\0\x01\0rest")).unwrap_err();
    assert_eq!(
        error,
        RequestError::UnknownCommand {
            command: 0x0099,
            seq: Some(256)
        }
    );
    assert_eq!(
        (error.seq(), error.status()),
        (256, Status::UNKNOWN_COMMAND)
    );
    let short = Request::decode(0x4001, Bytes::from_static(b"\0")).unwrap_err();
    assert_eq!(short.seq(), 0);
    assert_eq!(short.status(), Status::UNKNOWN_COMMAND);
}

#[test]
fn refusal_is_answered_under_the_request_command_with_its_seq() {
    let error = Request::decode(0x0099, Bytes::from_static(b"\0\0\0\x07")).unwrap_err();
    let mut dst = BytesMut::new();
    error.encode_response(&mut dst).unwrap();
    assert_eq!(
        &dst[..],
        b"SWB1\x80\x99\x00\x00\x00\x06\x00\x00\x00\x07\x00\x02"
    );
}

fn arb_request() -> impl Strategy<Value = Request> {
    prop_oneof![
        Just(Request::Ping),
        ("[A-Za-z0-9._-]{1,300}", "\\PC{0,16}").prop_map(|(token, version)| Request::Login {
            token: Text::from(token),
            client_version: Text::from(version),
        }),
        Just(Request::Logout),
        (arb_user_id(), any::<u64>(), arb_body()).prop_map(|(to, client_msg_id, body)| {
            Request::Send {
                to,
                client_msg_id,
                body,
            }
        }),
        (any::<u64>(), any::<u64>(), arb_body()).prop_map(|(group_id, client_msg_id, body)| {
            Request::GroupSend {
                group_id,
                client_msg_id,
                body,
            }
        }),
        (any::<u64>(), any::<u16>()).prop_map(|(after, limit)| Request::SyncIndex { after, limit }),
        vec(any::<u64>(), 0..=100).prop_map(|ids| Request::SyncFetch { ids }),
        any::<u64>().prop_map(|upto| Request::SyncAck { upto }),
        (any::<u64>(), any::<u16>()).prop_map(|(after, limit)| Request::SyncList { after, limit }),
        any::<u64>().prop_map(|upto| Request::SyncConfirm { upto }),
        (arb_group_name(), vec(arb_user_id(), 0..20))
            .prop_map(|(name, members)| Request::GroupCreate { name, members }),
        any::<u64>().prop_map(|group_id| Request::GroupJoin { group_id }),
        any::<u64>().prop_map(|group_id| Request::GroupQuit { group_id }),
        any::<u64>().prop_map(|group_id| Request::GroupDetail { group_id }),
    ]
}

/// Decodes, and checks that whatever decodes encodes back to the same packet.
fn decode_and_reencode(command: u16, payload: Vec<u8>) -> Result<(), TestCaseError> {
    let Ok((seq, request)) = Request::decode(command, Bytes::from(payload.clone())) else {
        return Ok(());
    };
    let packet = encoded(seq, &request);
    prop_assert_eq!(split_packet(&packet), (command, Bytes::from(payload)));
    Ok(())
}

proptest! {
    #[test]
    fn every_request_round_trips(seq: u32, request in arb_request()) {
        let packet = encoded(seq, &request);
        prop_assert_eq!(decode_packet(&packet), Ok((seq, request)));
    }

    #[test]
    fn arbitrary_bytes_never_panic(command: u16, payload in vec(any::<u8>(), 0..200)) {
        decode_and_reencode(command, payload)?;
    }

    #[test]
    fn known_commands_with_arbitrary_payloads_never_panic(
        pick in 0usize..Command::ALL.len(),
        payload in vec(any::<u8>(), 0..200),
    ) {
        decode_and_reencode(Command::ALL[pick].code(), payload)?;
    }

    #[test]
    fn every_truncation_of_a_valid_request_is_malformed_with_its_seq(
        seq: u32,
        request in arb_request(),
        cut: prop::sample::Index,
    ) {
        let packet = encoded(seq, &request);
        let (command, payload) = split_packet(&packet);
        prop_assume!(payload.len() > 4);
        let end = 4 + cut.index(payload.len() - 4);
        let error = Request::decode(command, payload.slice(..end)).unwrap_err();
        prop_assert_eq!(error.seq(), seq);
        prop_assert_eq!(error.status(), Status::MALFORMED);
    }
}
