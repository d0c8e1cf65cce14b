//! Checks with a counting global allocator the hot-path allocation promises: decoding a SEND
//! or GROUP_SEND allocates nothing, a MESSAGE push costs the same however many recipients share
//! it (nothing at all when encoded into a scratch buffer), and acks into a reused buffer
//! allocate nothing.
//!
//! A global allocator needs `unsafe`, which the library forbids; it lives in `support/mod.rs`
//! of this benchmark crate, with the codec's allocation test.

mod support;

use bytes::{Bytes, BytesMut};
use support::allocations_during;
use switchboard_protocol::{ChatMessage, Request, ResponseBody, SendOk, Target, Text};

/// A payload as the gateway hands it over: split off a shared read buffer, so cloning or
/// slicing it only bumps a reference count.
fn shared_payload(packet: &[u8]) -> Bytes {
    let mut read_buffer = BytesMut::with_capacity(4096);
    read_buffer.extend_from_slice(packet);
    let _promote_to_shared = read_buffer.split_to(0);
    read_buffer.split_off(10).freeze()
}

#[test]
fn decoding_a_send_allocates_nothing() {
    let mut packet = BytesMut::new();
    let send = Request::Send {
        to: Text::from("bob"),
        client_msg_id: 7,
        body: Bytes::from_static(b"hello bob"),
    };
    send.encode(1, &mut packet).unwrap();
    let payload = shared_payload(&packet);
    let (count, decoded) = allocations_during(|| Request::decode(0x0020, payload));
    assert_eq!(decoded, Ok((1, send)));
    assert_eq!(count, 0, "decoding a SEND allocated");
}

#[test]
fn decoding_a_group_send_allocates_nothing() {
    let mut packet = BytesMut::new();
    let send = Request::GroupSend {
        group_id: 9,
        client_msg_id: 7,
        body: Bytes::from_static(b"hello all"),
    };
    send.encode(1, &mut packet).unwrap();
    let payload = shared_payload(&packet);
    let (count, decoded) = allocations_during(|| Request::decode(0x0021, payload));
    assert_eq!(decoded, Ok((1, send)));
    assert_eq!(count, 0, "decoding a GROUP_SEND allocated");
}

fn group_message(body_len: usize) -> ChatMessage {
    ChatMessage {
        msg_id: 1,
        server_time_ms: 2,
        from: Text::from("alice"),
        target: Target::Group(3),
        client_msg_id: 4,
        body: Bytes::from(vec![b'x'; body_len]),
    }
}

#[test]
fn a_push_costs_the_same_for_one_recipient_or_five_hundred() {
    let message = group_message(1000);
    let (count, total) = allocations_during(|| {
        let packet = message.encode_push().unwrap();
        (0..500).map(|_| packet.clone()).fold(0, |n, p| n + p.len())
    });
    assert_eq!(total, 500 * (10 + message.encoded_len()));
    // The buffer, and the shared count the first clone promotes it to; none per recipient.
    assert_eq!(count, 2, "encoding and sharing a push");
}

#[test]
fn pushes_split_off_a_scratch_buffer_allocate_nothing() {
    let message = group_message(100);
    let mut scratch = BytesMut::with_capacity(64 * 1024);
    drop(scratch.split()); // promote to a shared buffer once, as a long-lived scratch would be
    let (count, total) = allocations_during(|| {
        let mut total = 0;
        for _ in 0..100 {
            message.encode_push_into(&mut scratch).unwrap();
            let packet = scratch.split().freeze();
            total += (0..50).map(|_| packet.clone()).fold(0, |n, p| n + p.len());
        }
        total
    });
    assert_eq!(total, 100 * 50 * (10 + message.encoded_len()));
    assert_eq!(count, 0, "pushes split off a scratch buffer allocated");
}

#[test]
fn acks_into_a_reused_buffer_allocate_nothing() {
    let mut dst = BytesMut::with_capacity(4096);
    let (count, ()) = allocations_during(|| {
        for seq in 0..100 {
            let ok = ResponseBody::Send(SendOk {
                msg_id: u64::from(seq),
                server_time_ms: 0,
            });
            ok.encode(seq, &mut dst).unwrap();
        }
    });
    assert_eq!(dst.len(), 100 * (10 + 22));
    assert_eq!(count, 0, "acks into spare capacity allocated");
}
