//! However a server's bytes are split into reads, the link reports the same events and writes
//! the same replies as when they arrive at once.

use bytes::BytesMut;
use proptest::prelude::*;

use super::tests::{packet_bytes, server_frame, upgraded_with, KEY};
use super::*;

/// One thing a server sends after the 101.
#[derive(Debug, Clone)]
enum Sent {
    Packet(u16, Vec<u8>),
    /// A packet in two fragments, cut at `at` (modulo its length).
    Fragmented(u16, Vec<u8>, usize),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
}

fn sent() -> impl Strategy<Value = Sent> {
    let payload = proptest::collection::vec(any::<u8>(), 0..300);
    let control = proptest::collection::vec(any::<u8>(), 0..=125);
    prop_oneof![
        (any::<u16>(), payload.clone()).prop_map(|(c, p)| Sent::Packet(c, p)),
        (any::<u16>(), payload, any::<usize>()).prop_map(|(c, p, at)| Sent::Fragmented(c, p, at)),
        control.clone().prop_map(Sent::Ping),
        control.prop_map(Sent::Pong),
    ]
}

fn ws_bytes(items: &[Sent], close: bool) -> Vec<u8> {
    let mut bytes = Vec::new();
    for item in items {
        match item {
            Sent::Packet(command, payload) => bytes.extend(server_frame(
                OpCode::Binary,
                true,
                &packet_bytes(*command, payload),
            )),
            Sent::Fragmented(command, payload, at) => {
                let whole = packet_bytes(*command, payload);
                let at = at % (whole.len() + 1);
                bytes.extend(server_frame(OpCode::Binary, false, &whole[..at]));
                bytes.extend(server_frame(OpCode::Continuation, true, &whole[at..]));
            }
            Sent::Ping(payload) => bytes.extend(server_frame(OpCode::Ping, true, payload)),
            Sent::Pong(payload) => bytes.extend(server_frame(OpCode::Pong, true, payload)),
        }
    }
    if close {
        bytes.extend(server_frame(OpCode::Close, true, &[0x03, 0xe9]));
    }
    bytes
}

fn tcp_bytes(items: &[Sent]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for item in items {
        if let Sent::Packet(command, payload) | Sent::Fragmented(command, payload, _) = item {
            bytes.extend(packet_bytes(*command, payload));
        }
    }
    bytes
}

/// Feeds `stream` cut at `cuts` (sorted positions) and returns every event, what was written,
/// and the bytes left unread.
fn feed(
    mut link: ClientLink,
    stream: &[u8],
    cuts: &[usize],
) -> (Vec<LinkEvent>, BytesMut, BytesMut) {
    let mut input = BytesMut::new();
    let mut out = BytesMut::new();
    let mut events = Vec::new();
    let mut from = 0;
    for &to in cuts.iter().chain([&stream.len()]) {
        input.extend_from_slice(&stream[from..to]);
        from = to;
        while let Some(event) = link.read(&mut input, KEY, &mut out).unwrap() {
            events.push(event);
        }
    }
    (events, out, input)
}

fn cuts(len: usize, mut points: Vec<usize>) -> Vec<usize> {
    for point in &mut points {
        *point %= len + 1;
    }
    points.sort_unstable();
    points
}

proptest! {
    #[test]
    fn ws_events_do_not_depend_on_how_reads_split_the_stream(
        items in proptest::collection::vec(sent(), 0..12),
        close in any::<bool>(),
        points in proptest::collection::vec(any::<usize>(), 0..24),
    ) {
        let messages = WsMessages::Packets { max_payload: 1024 };
        let (_, answer) = upgraded_with(messages, None);
        let stream = [answer, ws_bytes(&items, close)].concat();
        let whole = feed(upgraded_with(messages, None).0, &stream, &[]);
        let split = feed(upgraded_with(messages, None).0, &stream, &cuts(stream.len(), points));
        prop_assert_eq!(&whole, &split);
        // One event per item, behind the upgrade, and the close if one came.
        prop_assert_eq!(whole.0.len(), 1 + items.len() + usize::from(close));
        prop_assert!(whole.2.is_empty());
    }

    #[test]
    fn tcp_events_do_not_depend_on_how_reads_split_the_stream(
        items in proptest::collection::vec(sent(), 0..12),
        points in proptest::collection::vec(any::<usize>(), 0..24),
    ) {
        let stream = tcp_bytes(&items);
        let whole = feed(ClientLink::tcp(1024), &stream, &[]);
        let split = feed(ClientLink::tcp(1024), &stream, &cuts(stream.len(), points));
        prop_assert_eq!(&whole, &split);
        let packets = items.iter().filter(|i| matches!(i, Sent::Packet(..) | Sent::Fragmented(..)));
        prop_assert_eq!(whole.0.len(), packets.count());
    }
}
