//! Test helpers: split an encoded packet, and proptest strategies for every value on the wire.
//!
//! Strategies stay inside the limits the decoder enforces (a user id of up to 16 characters is
//! at most 64 bytes), so every generated value must encode and round-trip.

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;
use switchboard_codec::packet::{PacketHeader, HEADER_LEN};
use switchboard_codec::Decoded;

use crate::push::{ChatMessage, Target};
use crate::Text;

/// The command and payload of the one whole packet `packet` holds.
pub fn split_packet(packet: &[u8]) -> (u16, Bytes) {
    let Ok(Decoded::Complete(header)) = PacketHeader::parse(packet, u32::MAX) else {
        panic!("not a packet header: {packet:02x?}");
    };
    assert_eq!(packet.len(), HEADER_LEN + header.payload_len as usize);
    (
        header.command,
        Bytes::copy_from_slice(&packet[HEADER_LEN..]),
    )
}

pub fn arb_user_id() -> impl Strategy<Value = Text> {
    "\\PC{1,16}".prop_map(Text::from)
}

pub fn arb_group_name() -> impl Strategy<Value = Text> {
    "\\PC{1,16}".prop_map(Text::from)
}

pub fn arb_body() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..300).prop_map(Bytes::from)
}

pub fn arb_target() -> impl Strategy<Value = Target> {
    prop_oneof![
        arb_user_id().prop_map(Target::Direct),
        any::<u64>().prop_map(Target::Group),
    ]
}

pub fn arb_message() -> impl Strategy<Value = ChatMessage> {
    (
        any::<u64>(),
        any::<u64>(),
        arb_user_id(),
        arb_target(),
        any::<u64>(),
        arb_body(),
    )
        .prop_map(
            |(msg_id, server_time_ms, from, target, client_msg_id, body)| ChatMessage {
                msg_id,
                server_time_ms,
                from,
                target,
                client_msg_id,
                body,
            },
        )
}
