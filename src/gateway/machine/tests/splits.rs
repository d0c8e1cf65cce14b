//! Property: however the kernel splits the bytes of a stream, the machine delivers the same
//! messages, in order, and holds nothing once the stream is at a frame boundary. This is the
//! buffer juggling of the read side (the shared scratch, the connection's own buffer sized for
//! its frame, the rest of a read after a frame completes) under every split.

use proptest::prelude::*;
use switchboard_codec::packet::PacketEncoder;

use super::*;

/// Payload sizes around the places the headers change: 7-bit, 16-bit and 64-bit WebSocket
/// lengths, and larger than one read window.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..130),
        prop::collection::vec(any::<u8>(), 60_000..70_000),
        prop::collection::vec(any::<u8>(), 200..3000),
    ]
}

/// A few messages of every size, or more small ones than one turn decodes (the decode budget
/// stops a turn with input left in the connection's buffer and more behind it in the read).
fn payloads() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop_oneof![
        prop::collection::vec(payload(), 1..6),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..20), 60..150),
    ]
}

/// Cuts `stream` at the given points (each taken modulo its length).
fn reads(stream: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    points.extend([0, stream.len()]);
    points.sort_unstable();
    points
        .windows(2)
        .map(|w| stream[w[0]..w[1]].to_vec())
        .collect()
}

fn deliver_all(h: &mut Harness, stream: &[u8], cuts: &[usize]) {
    for read in reads(stream, cuts) {
        h.read(&read);
        // A turn that stopped on its decode budget goes on in the next.
        while h.machine.has_input() && h.ws.budget_spent() {
            h.ws.start_turn();
            h.decode();
        }
        h.end_pass();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn websocket_messages_survive_any_split(
        payloads in payloads(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut h = Harness::open_ws(&config());
        h.echo = false;
        let mut stream = Vec::new();
        for p in &payloads {
            stream.extend(client_frame(OpCode::Binary, true, p));
        }
        deliver_all(&mut h, &stream, &cuts);
        let got: Vec<Vec<u8>> = h.messages.iter().map(|m| m.payload().to_vec()).collect();
        prop_assert_eq!(got, payloads);
        prop_assert_eq!(h.machine.held_bytes(), 0);
        prop_assert!(h.disconnects.is_empty());
    }

    #[test]
    fn tcp_packets_survive_any_split(
        payloads in payloads(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut h = Harness::new(Transport::Tcp);
        h.echo = false;
        let mut stream = Vec::new();
        let mut packets = Vec::new();
        for p in &payloads {
            let mut dst = BytesMut::new();
            PacketEncoder::new().encode_into(3, p, &mut dst).unwrap();
            packets.push(dst.to_vec());
            stream.extend_from_slice(&dst);
        }
        deliver_all(&mut h, &stream, &cuts);
        let got: Vec<Vec<u8>> = h.messages.iter().map(|m| m.payload().to_vec()).collect();
        prop_assert_eq!(got, packets);
        prop_assert_eq!(h.machine.held_bytes(), 0);
    }
}
