//! Fuzzes `PacketDecoder` under input-derived splits of the stream.
//!
//! The first bytes of the input choose the decoder's maximum and the read sizes; the rest is the
//! stream. Fed whole or in those reads, the decoder must never panic and must produce the same
//! packets and the same refusal; with no refusal, the same unfinished bytes stay buffered.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use switchboard_codec::packet::{Packet, PacketDecoder, PacketError};
use switchboard_codec::Decoded;

/// How many leading bytes choose the read sizes.
const SPLIT_BYTES: usize = 8;

fn run(max: u32, chunks: &[&[u8]]) -> (Vec<Packet>, Result<usize, PacketError>) {
    let mut decoder = PacketDecoder::new(max);
    let mut src = BytesMut::new();
    let mut packets = Vec::new();
    for chunk in chunks {
        src.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut src) {
                Ok(Decoded::Complete(packet)) => {
                    assert!(packet.payload.len() <= max as usize, "payload over max");
                    packets.push(packet);
                }
                Ok(Decoded::NeedMore) => break,
                Err(error) => return (packets, Err(error)),
            }
        }
    }
    (packets, Ok(src.len()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&max_byte, rest)) = data.split_first() else {
        return;
    };
    // Small maxima reach TooLong often; 255 stands for the default 1 MiB.
    let max = if max_byte == u8::MAX {
        1 << 20
    } else {
        u32::from(max_byte) * 4
    };
    let split_len = rest.len().min(SPLIT_BYTES);
    let (sizes, stream) = rest.split_at(split_len);

    let mut chunks = Vec::new();
    let mut tail = stream;
    for &size in sizes.iter().cycle().take(64) {
        if tail.is_empty() {
            break;
        }
        let (chunk, after) = tail.split_at(usize::from(size).min(tail.len()));
        chunks.push(chunk);
        tail = after;
    }
    chunks.push(tail);

    let whole = run(max, &[stream]);
    let split = run(max, &chunks);
    assert_eq!(whole, split, "split run disagrees with the whole input");
});
