//! Checks with a counting global allocator that packet decoding and header encoding allocate
//! nothing per packet in steady state.
//!
//! It lives here, not beside the codec, because the codec forbids `unsafe` and a global
//! allocator needs it (`support/mod.rs`).

mod support;

use bytes::{Bytes, BytesMut};
use support::allocations_during;
use switchboard_codec::packet::{PacketDecoder, PacketEncoder};
use switchboard_codec::Decoded;

fn wire(count: usize) -> Vec<u8> {
    let mut encoder = PacketEncoder::new();
    let mut out = BytesMut::new();
    for n in 0..count {
        let payload = vec![n as u8; (n + 1) % 200];
        encoder.encode_into(n as u16, &payload, &mut out).unwrap();
    }
    out.to_vec()
}

/// Decodes every whole packet in `src`, dropping each, and returns how many there were.
fn drain(decoder: &mut PacketDecoder, src: &mut BytesMut) -> usize {
    let mut count = 0;
    while let Ok(Decoded::Complete(packet)) = decoder.decode(src) {
        std::hint::black_box(&packet.payload);
        count += 1;
    }
    count
}

#[test]
fn counting_allocator_sees_an_allocation() {
    let (counted, ()) = allocations_during(|| {
        std::hint::black_box(Vec::<u8>::with_capacity(16));
    });
    assert_eq!(counted, 1);
}

#[test]
fn decoding_a_buffer_of_packets_allocates_only_once_for_the_buffer() {
    let mut src = BytesMut::from(&wire(1000)[..]);
    let mut decoder = PacketDecoder::default();
    // The first split promotes the buffer to a shared one: one allocation per read buffer.
    let first = allocations_during(|| assert_eq!(drain_one(&mut decoder, &mut src), 1)).0;
    assert_eq!(first, 1);
    let rest = allocations_during(|| assert_eq!(drain(&mut decoder, &mut src), 999)).0;
    assert_eq!(rest, 0, "allocations while decoding 999 packets");
}

fn drain_one(decoder: &mut PacketDecoder, src: &mut BytesMut) -> usize {
    match decoder.decode(src) {
        Ok(Decoded::Complete(_)) => 1,
        _ => 0,
    }
}

#[test]
fn a_read_loop_with_packets_split_across_reads_allocates_nothing_in_steady_state() {
    let stream = wire(600);
    // Reads of an odd size, so packets straddle reads and the unfinished tail is carried over.
    let reads: Vec<&[u8]> = stream.chunks(1237).collect();
    let mut src = BytesMut::with_capacity(8 * 1024);
    let mut decoder = PacketDecoder::default();
    let mut round = |src: &mut BytesMut| {
        let mut decoded = 0;
        for read in &reads {
            src.extend_from_slice(read);
            decoded += drain(&mut decoder, src);
        }
        assert_eq!(decoded, 600);
    };
    round(&mut src);
    let (steady, ()) = allocations_during(|| {
        for _ in 0..10 {
            round(&mut src);
        }
    });
    assert_eq!(steady, 0, "allocations over 6,000 packets in steady state");
}

#[test]
fn header_encoding_allocates_nothing_once_headers_are_written_out() {
    let mut encoder = PacketEncoder::new();
    let payload = Bytes::from_static(b"shared push");
    let (header, _) = encoder.encode(1, payload.clone()).unwrap();
    drop(header);
    let (steady, ()) = allocations_during(|| {
        for n in 0..10_000u16 {
            let (header, body) = encoder.encode(n, payload.clone()).unwrap();
            std::hint::black_box((&header, &body));
        }
    });
    assert_eq!(steady, 0, "allocations over 10,000 headers");
}
