//! The design document's serialization table, side by side in one criterion run.
//!
//! One chat packet `{Source u32 = 257, Sequence u64 = 5, Data b"hello world"}`, encoded and
//! decoded by our framing, by prost (protobuf) and by serde_json. The Go original's figures,
//! 4.3 ns (hand-written), 205.6 ns (protobuf) and 432.8 ns (JSON), time `Marshal` alone: they
//! are ENCODE figures, to be read against `serialization/encode` below, not against
//! `serialization/encode_decode`.
//!
//! | ns per packet                                   | ours      | prost       | serde_json |
//! |-------------------------------------------------|-----------|-------------|------------|
//! | Go, design document, encode only                | 4.3       | 205.6       | 432.8      |
//! | `serialization/encode`                          | 3.2-4.0   | 9.9-10.8    | 55-74      |
//! | `serialization/encode_decode`, ours `borrowed`  | 5.9-8.8   | 52-55       | 195-259    |
//! | `serialization/encode_decode`, ours `owned`     | 18-27     | 52-55       | 195-259    |
//!
//! The rows below the Go one are two runs of 2026-11-26 on 2 shared AMD EPYC cores at a load
//! average of about 3 (criterion, 2 s warm-up, 5 s measurement); rerun before quoting them.
//! The owned path's extra time over the borrowed one is mostly the two atomic reference-count
//! updates of splitting the payload off as `Bytes` and dropping it.
//!
//! How each library is driven, as its users would:
//! - switchboard: the payload is fixed-width big-endian integers and a u32-length-prefixed
//!   byte string. The sender lays the header and the fixed fields out in one stack array and
//!   appends it, then the data, to a reusable `BytesMut` (its write buffer): two capacity
//!   checks instead of five. The receiver checks the framing, then reads the fields with
//!   bounds checks and refuses a wrong command or data length; ours does more work than the
//!   others, since it also frames the packet. Two receivers, a line each in every group:
//!   - `switchboard/owned`: `PacketDecoder::decode` splits the payload off the read buffer as
//!     `Bytes` (no copy; magic, length and maximum checked), and the message keeps its data as
//!     a `Bytes` slice of it. This is the gateway's path, where a packet outlives the read
//!     buffer; splitting and dropping it costs two atomic reference-count updates.
//!   - `switchboard/borrowed`: `PacketRef::parse` checks the same things and borrows the
//!     payload from the read buffer, for a receiver that handles the packet before its next
//!     read; the caller then drops the consumed bytes (`advance`). No reference count.
//! - prost: a `#[derive(prost::Message)]` struct written by hand (what prost-build would
//!   generate, with `bytes = "bytes"` so `data` decodes zero-copy from `Bytes`). `encode` into a
//!   reusable `BytesMut`, `decode` from that buffer's bytes frozen as `Bytes`. No framing.
//! - serde_json: `#[derive(Serialize, Deserialize)]` with the Go field names, `to_writer` into a
//!   reusable `Vec<u8>`, `from_slice` back. `data: Vec<u8>` becomes a JSON array of numbers,
//!   serde's default (Go's encoding/json writes base64 instead); decoding allocates that Vec.
//!
//! Groups: `serialization/encode_decode`, `serialization/encode` (the Go table's figure) and
//! `serialization/decode`. In `encode_decode` the buffer goes through `black_box` between
//! encoding and decoding, for all three alike, so the optimizer cannot carry the bytes it just
//! wrote (the magic, the command) into the checks of the decoder: a real receiver does not know
//! them. Decode alone starts by copying the wire bytes into the reusable buffer, as a socket
//! read would, for all three alike.

use std::hint::black_box;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion};
use serde::{Deserialize, Serialize};
use switchboard_codec::packet::{
    Packet, PacketDecoder, PacketHeader, PacketRef, DEFAULT_MAX_PAYLOAD, HEADER_LEN,
};
use switchboard_codec::Decoded;

const SOURCE: u32 = 257;
const SEQUENCE: u64 = 5;
const DATA: &[u8] = b"hello world";

/// The command number of a chat message in the bench; any value does.
const CHAT: u16 = 0x0101;

/// The whole seed packet on the wire: header, `source`, `sequence`, `data_len`, `data`.
const SEED_WIRE: &[u8] = b"SWB1\x01\x01\x00\x00\x00\x1b\
    \x00\x00\x01\x01\x00\x00\x00\x00\x00\x00\x00\x05\x00\x00\x00\x0bhello world";

/// Our chat message, as a receiver that keeps it holds it.
#[derive(Debug, PartialEq)]
struct ChatMessage {
    source: u32,
    sequence: u64,
    data: Bytes,
}

/// Our chat message, borrowed from the read buffer it was parsed from.
#[derive(Debug, PartialEq)]
struct ChatRef<'a> {
    source: u32,
    sequence: u64,
    data: &'a [u8],
}

/// `source u32 | sequence u64 | data_len u32 | data`.
const FIXED_FIELDS_LEN: usize = 4 + 8 + 4;

/// Appends one chat packet to `dst`.
fn encode_chat(source: u32, sequence: u64, data: &[u8], dst: &mut BytesMut) {
    let data_len = u32::try_from(data.len()).expect("small data");
    let header = PacketHeader::for_payload(CHAT, FIXED_FIELDS_LEN + data.len()).expect("small");
    // One array, one capacity check: each `put_u32` would check the capacity again.
    let mut head = [0u8; HEADER_LEN + FIXED_FIELDS_LEN];
    let (framing, fields) = head.split_at_mut(HEADER_LEN);
    framing.copy_from_slice(&header.to_bytes());
    fields[..4].copy_from_slice(&source.to_be_bytes());
    fields[4..12].copy_from_slice(&sequence.to_be_bytes());
    fields[12..].copy_from_slice(&data_len.to_be_bytes());
    dst.put_slice(&head);
    dst.put_slice(data);
}

fn encode_owned(message: &ChatMessage, dst: &mut BytesMut) {
    encode_chat(message.source, message.sequence, &message.data, dst);
}

fn encode_borrowed(message: &ChatRef<'_>, dst: &mut BytesMut) {
    encode_chat(message.source, message.sequence, message.data, dst);
}

/// `source` and `sequence` of a chat payload, and its data, checked against `data_len`.
fn chat_fields(payload: &[u8]) -> Option<(u32, u64, &[u8])> {
    let (fixed, data) = payload.split_first_chunk::<FIXED_FIELDS_LEN>()?;
    let [s0, s1, s2, s3, q0, q1, q2, q3, q4, q5, q6, q7, l0, l1, l2, l3] = *fixed;
    let data_len = u32::from_be_bytes([l0, l1, l2, l3]);
    if data.len() != data_len as usize {
        return None;
    }
    let source = u32::from_be_bytes([s0, s1, s2, s3]);
    let sequence = u64::from_be_bytes([q0, q1, q2, q3, q4, q5, q6, q7]);
    Some((source, sequence, data))
}

fn decode_owned(decoder: &mut PacketDecoder, src: &mut BytesMut) -> Option<ChatMessage> {
    let Ok(Decoded::Complete(Packet {
        command: CHAT,
        mut payload,
    })) = decoder.decode(src)
    else {
        return None;
    };
    let (source, sequence, _) = chat_fields(&payload)?;
    // `advance` keeps the data in the same shared buffer; `slice_ref` would count a new owner.
    payload.advance(FIXED_FIELDS_LEN);
    Some(ChatMessage {
        source,
        sequence,
        data: payload,
    })
}

/// The chat message at the front of `src` and how many bytes it took.
fn decode_borrowed(src: &[u8]) -> Option<(ChatRef<'_>, usize)> {
    let Ok(Decoded::Complete((packet, used))) = PacketRef::parse(src, DEFAULT_MAX_PAYLOAD) else {
        return None;
    };
    if packet.command != CHAT {
        return None;
    }
    let (source, sequence, data) = chat_fields(packet.payload)?;
    let message = ChatRef {
        source,
        sequence,
        data,
    };
    Some((message, used))
}

/// Hands the decoded message to `black_box` and drops the bytes it took from `buf`.
fn consume_borrowed(buf: &mut BytesMut) {
    let used = match decode_borrowed(buf) {
        Some((message, used)) => {
            black_box(&message);
            used
        }
        None => panic!("the seed packet did not decode"),
    };
    buf.advance(used);
}

/// What prost-build would generate for
/// `message Chat { uint32 source = 1; uint64 sequence = 2; bytes data = 3; }`.
#[derive(Clone, PartialEq, prost::Message)]
struct ChatProto {
    #[prost(uint32, tag = "1")]
    source: u32,
    #[prost(uint64, tag = "2")]
    sequence: u64,
    #[prost(bytes = "bytes", tag = "3")]
    data: Bytes,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct ChatJson {
    #[serde(rename = "Source")]
    source: u32,
    #[serde(rename = "Sequence")]
    sequence: u64,
    #[serde(rename = "Data")]
    data: Vec<u8>,
}

fn ours() -> ChatMessage {
    ChatMessage {
        source: SOURCE,
        sequence: SEQUENCE,
        data: Bytes::from_static(DATA),
    }
}

fn ours_borrowed() -> ChatRef<'static> {
    ChatRef {
        source: SOURCE,
        sequence: SEQUENCE,
        data: DATA,
    }
}

fn proto() -> ChatProto {
    ChatProto {
        source: SOURCE,
        sequence: SEQUENCE,
        data: Bytes::from_static(DATA),
    }
}

fn json() -> ChatJson {
    ChatJson {
        source: SOURCE,
        sequence: SEQUENCE,
        data: DATA.to_vec(),
    }
}

/// Fails the run loudly if a library does not round-trip, so no figure measures a no-op.
fn check_round_trips() {
    let mut buf = BytesMut::new();
    encode_owned(&ours(), &mut buf);
    assert_eq!(&buf[..], SEED_WIRE);
    assert_eq!(
        decode_owned(&mut PacketDecoder::default(), &mut buf),
        Some(ours())
    );
    assert!(buf.is_empty());

    encode_borrowed(&ours_borrowed(), &mut buf);
    assert_eq!(&buf[..], SEED_WIRE);
    assert_eq!(
        decode_borrowed(&buf),
        Some((ours_borrowed(), SEED_WIRE.len()))
    );
    consume_borrowed(&mut buf);
    assert!(buf.is_empty());

    let mut buf = BytesMut::new();
    prost::Message::encode(&proto(), &mut buf).unwrap();
    let decoded: ChatProto = prost::Message::decode(buf.freeze()).unwrap();
    assert_eq!(decoded, proto());

    let text = serde_json::to_vec(&json()).unwrap();
    assert_eq!(serde_json::from_slice::<ChatJson>(&text).unwrap(), json());
}

fn encode_decode(c: &mut Criterion) {
    check_round_trips();
    let mut group = c.benchmark_group("serialization/encode_decode");

    let message = ours();
    let mut buf = BytesMut::with_capacity(4096);
    let mut decoder = PacketDecoder::default();
    group.bench_function("switchboard/owned", |b| {
        b.iter(|| {
            encode_owned(black_box(&message), &mut buf);
            black_box(&mut buf);
            black_box(decode_owned(&mut decoder, &mut buf))
        })
    });

    let message = ours_borrowed();
    let mut buf = BytesMut::with_capacity(4096);
    group.bench_function("switchboard/borrowed", |b| {
        b.iter(|| {
            encode_borrowed(black_box(&message), &mut buf);
            black_box(&mut buf);
            consume_borrowed(&mut buf);
        })
    });

    let message = proto();
    let mut buf = BytesMut::with_capacity(4096);
    group.bench_function("prost", |b| {
        b.iter(|| {
            prost::Message::encode(black_box(&message), &mut buf).unwrap();
            black_box(&mut buf);
            let decoded: Result<ChatProto, _> = prost::Message::decode(buf.split().freeze());
            black_box(decoded)
        })
    });

    let message = json();
    let mut buf = Vec::with_capacity(4096);
    group.bench_function("serde_json", |b| {
        b.iter(|| {
            buf.clear();
            serde_json::to_writer(&mut buf, black_box(&message)).unwrap();
            black_box(&mut buf);
            black_box(serde_json::from_slice::<ChatJson>(&buf))
        })
    });
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("serialization/encode");

    let message = ours();
    let mut buf = BytesMut::with_capacity(4096);
    group.bench_function("switchboard/owned", |b| {
        b.iter(|| {
            buf.clear();
            encode_owned(black_box(&message), &mut buf);
            black_box(&buf);
        })
    });

    let message = ours_borrowed();
    let mut buf = BytesMut::with_capacity(4096);
    group.bench_function("switchboard/borrowed", |b| {
        b.iter(|| {
            buf.clear();
            encode_borrowed(black_box(&message), &mut buf);
            black_box(&buf);
        })
    });

    let message = proto();
    let mut buf = BytesMut::with_capacity(4096);
    group.bench_function("prost", |b| {
        b.iter(|| {
            buf.clear();
            prost::Message::encode(black_box(&message), &mut buf).unwrap();
            black_box(&buf);
        })
    });

    let message = json();
    let mut buf = Vec::with_capacity(4096);
    group.bench_function("serde_json", |b| {
        b.iter(|| {
            buf.clear();
            serde_json::to_writer(&mut buf, black_box(&message)).unwrap();
            black_box(&buf);
        })
    });
    group.finish();
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("serialization/decode");

    let mut buf = BytesMut::with_capacity(4096);
    let mut decoder = PacketDecoder::default();
    group.bench_function("switchboard/owned", |b| {
        b.iter(|| {
            buf.extend_from_slice(black_box(SEED_WIRE));
            black_box(decode_owned(&mut decoder, &mut buf))
        })
    });

    let mut buf = BytesMut::with_capacity(4096);
    group.bench_function("switchboard/borrowed", |b| {
        b.iter(|| {
            buf.extend_from_slice(black_box(SEED_WIRE));
            consume_borrowed(&mut buf);
        })
    });

    let mut wire = BytesMut::new();
    prost::Message::encode(&proto(), &mut wire).unwrap();
    let mut buf = BytesMut::with_capacity(4096);
    group.bench_function("prost", |b| {
        b.iter(|| {
            buf.extend_from_slice(black_box(&wire));
            let decoded: Result<ChatProto, _> = prost::Message::decode(buf.split().freeze());
            black_box(decoded)
        })
    });

    let wire = serde_json::to_vec(&json()).unwrap();
    let mut buf = Vec::with_capacity(4096);
    group.bench_function("serde_json", |b| {
        b.iter(|| {
            buf.clear();
            buf.extend_from_slice(black_box(&wire));
            black_box(serde_json::from_slice::<ChatJson>(&buf))
        })
    });
    group.finish();
}

criterion_group!(benches, encode_decode, encode, decode);
criterion_main!(benches);
