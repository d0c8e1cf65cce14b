//! docs/protocol.md's worked examples are what this crate's encoder writes.
//!
//! Every fenced block tagged ```` ```hex NAME ```` in the document is parsed (text after `#` on a
//! line is annotation) and compared with the encoder's output for the inputs the document
//! states, so the page cannot drift from the code. A block without a check here, or a check
//! without its block, fails too.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use switchboard_protocol::{
    encode_error, ChatMessage, Command, KickReason, LoginOk, PongOk, Push, Request, ResponseBody,
    SendOk, ServerPacket, Status, SyncIndexOk, SyncListOk, Target, Text,
};

/// The token of the LOGIN example: HS256 over {"sub":"alice","exp":1767225600,"dev":"phone"}
/// with the secret "example-secret".
const TOKEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.\
    eyJzdWIiOiJhbGljZSIsImV4cCI6MTc2NzIyNTYwMCwiZGV2IjoicGhvbmUifQ.\
    mJfPfdybwkj4UVfUbHNKkbUpyA_mYBKTBOGfiijF43I";
const MSG_ID: u64 = 7_411_860_537_460_289_537;
/// The cursor of the sync example: bob's inbox's 57th entry (0x39) under his inbox's tag
/// (src/logic/cursor.rs checks the same number).
const CURSOR: u64 = 0x661c_e000_0000_0039;
const T0: u64 = 1_767_139_200_000;

fn request(seq: u32, request: Request) -> Vec<u8> {
    let mut dst = BytesMut::new();
    request.encode(seq, &mut dst).unwrap();
    dst.to_vec()
}

fn ok(seq: u32, body: ResponseBody) -> Vec<u8> {
    let mut dst = BytesMut::new();
    body.encode(seq, &mut dst).unwrap();
    dst.to_vec()
}

fn push(push: Push) -> Vec<u8> {
    let mut dst = BytesMut::new();
    push.encode(&mut dst).unwrap();
    dst.to_vec()
}

fn hi_bob() -> ChatMessage {
    ChatMessage {
        msg_id: MSG_ID,
        server_time_ms: T0 + 123,
        from: Text::from("alice"),
        target: Target::Direct(Text::from("bob")),
        client_msg_id: 1,
        body: Bytes::from_static(b"hi bob"),
    }
}

/// The packet each example block must hold, by block name.
fn examples() -> BTreeMap<&'static str, Vec<u8>> {
    let mut bad_cursor = BytesMut::new();
    encode_error(
        Command::SyncConfirm.code(),
        7,
        Status::BAD_CURSOR,
        &mut bad_cursor,
    )
    .unwrap();
    let bad_cursor = bad_cursor.to_vec();
    let mut rate_limited = BytesMut::new();
    encode_error(
        Command::Send.code(),
        9,
        Status::RATE_LIMITED,
        &mut rate_limited,
    )
    .unwrap();
    let mut refused = BytesMut::new();
    encode_error(
        Command::Login.code(),
        1,
        Status::INVALID_TOKEN,
        &mut refused,
    )
    .unwrap();
    BTreeMap::from([
        (
            "login-request",
            request(
                1,
                Request::Login {
                    token: Text::from(TOKEN),
                    client_version: Text::from("sdk-rust/0.1"),
                },
            ),
        ),
        (
            "login-response",
            ok(
                1,
                ResponseBody::Login(LoginOk {
                    user: Text::from("alice"),
                    device: Text::from("phone"),
                    server_time_ms: T0,
                    idle_timeout_ms: 180_000,
                    max_body: 65_536,
                }),
            ),
        ),
        ("login-refused", refused.to_vec()),
        (
            "send-request",
            request(
                2,
                Request::Send {
                    to: Text::from("bob"),
                    client_msg_id: 1,
                    body: Bytes::from_static(b"hi bob"),
                },
            ),
        ),
        (
            "send-response",
            ok(
                2,
                ResponseBody::Send(SendOk {
                    msg_id: MSG_ID,
                    server_time_ms: T0 + 123,
                }),
            ),
        ),
        ("message-push", hi_bob().encode_push().unwrap().to_vec()),
        ("ping-request", request(3, Request::Ping)),
        (
            "pong-response",
            ok(
                3,
                ResponseBody::Pong(PongOk {
                    server_time_ms: T0 + 60_000,
                }),
            ),
        ),
        (
            "sync-list-request",
            request(
                4,
                Request::SyncList {
                    after: 0,
                    limit: 500,
                },
            ),
        ),
        (
            "sync-list-response",
            ok(
                4,
                ResponseBody::SyncList(SyncListOk {
                    ids: vec![MSG_ID],
                    more: false,
                    cursor: CURSOR,
                }),
            ),
        ),
        (
            "sync-confirm-request",
            request(6, Request::SyncConfirm { upto: CURSOR }),
        ),
        (
            "sync-confirm-old-kind-request",
            request(7, Request::SyncConfirm { upto: MSG_ID }),
        ),
        ("sync-confirm-refused", bad_cursor),
        ("send-rate-limited", rate_limited.to_vec()),
        (
            "sync-index-request",
            request(
                4,
                Request::SyncIndex {
                    after: 0,
                    limit: 500,
                },
            ),
        ),
        (
            "sync-index-response",
            ok(
                4,
                ResponseBody::SyncIndex(SyncIndexOk {
                    ids: vec![MSG_ID],
                    more: false,
                }),
            ),
        ),
        (
            "sync-fetch-request",
            request(5, Request::SyncFetch { ids: vec![MSG_ID] }),
        ),
        (
            "sync-ack-request",
            request(6, Request::SyncAck { upto: MSG_ID }),
        ),
        (
            "kicked-push",
            push(Push::Kicked {
                reason: KickReason::LOGGED_IN_ELSEWHERE,
                text: Text::from("logged in on another phone"),
            }),
        ),
        (
            "reconnect-after-push",
            push(Push::ReconnectAfter { delay_ms: 1234 }),
        ),
        (
            "kicked-draining-push",
            push(Push::Kicked {
                reason: KickReason::SERVER_SHUTDOWN,
                text: Text::from("server draining"),
            }),
        ),
    ])
}

/// The `hex` blocks of `doc`, by name, as bytes.
fn hex_blocks(doc: &str) -> BTreeMap<String, Vec<u8>> {
    let mut blocks = BTreeMap::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line.strip_prefix("```hex ") else {
            continue;
        };
        let mut bytes = Vec::new();
        for line in lines.by_ref().take_while(|l| !l.starts_with("```")) {
            let data = line.split('#').next().unwrap_or_default();
            for pair in data.split_whitespace() {
                let byte = u8::from_str_radix(pair, 16)
                    .unwrap_or_else(|_| panic!("block {name}: {pair:?} is not a hex byte"));
                assert_eq!(pair.len(), 2, "block {name}: {pair:?} is not two digits");
                bytes.push(byte);
            }
        }
        let clash = blocks.insert(name.trim().to_owned(), bytes);
        assert!(clash.is_none(), "two blocks named {name}");
    }
    blocks
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .map(|row| row.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>())
        .map(|row| row.join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

fn doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

#[test]
fn every_hex_example_is_what_the_encoder_writes() {
    let blocks = hex_blocks(&doc());
    let examples = examples();
    for (name, expected) in &examples {
        let Some(written) = blocks.get(*name) else {
            panic!(
                "docs/protocol.md has no ```hex {name} block; it should be:\n{}",
                hex(expected)
            );
        };
        assert_eq!(
            written,
            expected,
            "block {name} differs from the encoder; the encoder writes:\n{}",
            hex(expected)
        );
    }
    let unchecked: Vec<&String> = blocks
        .keys()
        .filter(|name| !examples.contains_key(name.as_str()))
        .collect();
    assert!(unchecked.is_empty(), "blocks with no check: {unchecked:?}");
}

#[test]
fn every_example_decodes_back() {
    for (name, packet) in examples() {
        let command = u16::from_be_bytes([packet[4], packet[5]]);
        let payload = Bytes::copy_from_slice(&packet[10..]);
        let decoded = if name.ends_with("-request") {
            Request::decode(command, payload).map(|_| ()).is_ok()
        } else {
            ServerPacket::decode(command, payload).is_ok()
        };
        assert!(decoded, "example {name} does not decode");
    }
}
