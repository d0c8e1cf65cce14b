//! Fuzzes the packet parsers under input-derived splits of the stream.
//!
//! The first bytes of the input choose the decoder's maximum and the read sizes; the rest is the
//! stream. Fed whole or in those reads, `PacketDecoder` must never panic and must produce the
//! same packets and the same refusal; with no refusal, the same unfinished bytes stay buffered.
//! `PacketDecoder::decode_raw` (whole packets for relaying) and the borrowing `PacketRef::parse`
//! must agree with it on the same reads.

#![no_main]

mod reads;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use switchboard_codec::packet::{Packet, PacketDecoder, PacketError, PacketRef, HEADER_LEN};
use switchboard_codec::Decoded;

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

/// The same stream through `decode_raw`, then the header stripped, as `Packet`s.
fn run_raw(max: u32, chunks: &[&[u8]]) -> (Vec<Packet>, Result<usize, PacketError>) {
    let mut decoder = PacketDecoder::new(max);
    let mut src = BytesMut::new();
    let mut packets = Vec::new();
    for chunk in chunks {
        src.extend_from_slice(chunk);
        loop {
            match decoder.decode_raw(&mut src) {
                Ok(Decoded::Complete(raw)) => {
                    let command = u16::from_be_bytes([raw[4], raw[5]]);
                    packets.push(Packet {
                        command,
                        payload: raw.slice(HEADER_LEN..),
                    });
                }
                Ok(Decoded::NeedMore) => break,
                Err(error) => return (packets, Err(error)),
            }
        }
    }
    (packets, Ok(src.len()))
}

/// The same stream through the borrowing parser, a reader that keeps unconsumed bytes.
fn run_borrowed(max: u32, chunks: &[&[u8]]) -> (Vec<Packet>, Result<usize, PacketError>) {
    let mut buffered: Vec<u8> = Vec::new();
    let mut packets = Vec::new();
    for chunk in chunks {
        buffered.extend_from_slice(chunk);
        let mut offset = 0;
        loop {
            match PacketRef::parse(&buffered[offset..], max) {
                Ok(Decoded::Complete((packet, used))) => {
                    packets.push(Packet {
                        command: packet.command,
                        payload: bytes::Bytes::copy_from_slice(packet.payload),
                    });
                    offset += used;
                }
                Ok(Decoded::NeedMore) => break,
                Err(error) => return (packets, Err(error)),
            }
        }
        buffered.drain(..offset);
    }
    (packets, Ok(buffered.len()))
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
    let (stream, chunks) = reads::split_into_reads(rest);

    let whole = run(max, &[stream]);
    let split = run(max, &chunks);
    assert_eq!(whole, split, "split run disagrees with the whole input");
    assert_eq!(
        run_raw(max, &chunks),
        split,
        "decode_raw disagrees with decode"
    );
    assert_eq!(
        run_borrowed(max, &chunks),
        split,
        "PacketRef::parse disagrees with decode"
    );
});
