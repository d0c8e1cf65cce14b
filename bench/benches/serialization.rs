//! The design document's serialization table, side by side in one criterion run.
//!
//! One chat packet `{Source u32 = 257, Sequence u64 = 5, Data b"hello world"}`, encoded and
//! decoded by our framing, by prost (protobuf) and by serde_json. The Go original measured
//! 4.3 ns (hand-written), 205.6 ns (protobuf) and 432.8 ns (JSON) per encode+decode.
//!
//! How each library is driven, as its users would:
//! - switchboard: the payload is fixed-width big-endian integers and a u32-length-prefixed
//!   byte string, written with `BufMut` right after a `PacketHeader` into a reusable `BytesMut`
//!   (the sender's write buffer). Decoding runs `PacketDecoder::decode` on that buffer (magic,
//!   length and maximum checked, payload split off without a copy), then reads the fields with
//!   bounds checks; `data` is a `Bytes` slice of the payload, not a copy. Ours does more work
//!   than the others: it also frames the packet.
//! - prost: a `#[derive(prost::Message)]` struct written by hand (what prost-build would
//!   generate, with `bytes = "bytes"` so `data` decodes zero-copy from `Bytes`). `encode` into a
//!   reusable `BytesMut`, `decode` from that buffer's bytes frozen as `Bytes`. No framing.
//! - serde_json: `#[derive(Serialize, Deserialize)]` with the Go field names, `to_writer` into a
//!   reusable `Vec<u8>`, `from_slice` back. `data: Vec<u8>` becomes a JSON array of numbers,
//!   serde's default (Go's encoding/json writes base64 instead); decoding allocates that Vec.
//!
//! Groups: `serialization/encode_decode` (the table's figure), `serialization/encode`, and
//! `serialization/decode`. Decode alone starts by copying the wire bytes into the reusable
//! buffer, as a socket read would, for all three alike.

use std::hint::black_box;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion};
use serde::{Deserialize, Serialize};
use switchboard_codec::packet::{PacketDecoder, PacketHeader};
use switchboard_codec::Decoded;

const SOURCE: u32 = 257;
const SEQUENCE: u64 = 5;
const DATA: &[u8] = b"hello world";

/// The command number of a chat message in the bench; any value does.
const CHAT: u16 = 0x0101;

/// Our chat message, as a receiver holds it.
#[derive(Debug, PartialEq)]
struct ChatMessage {
    source: u32,
    sequence: u64,
    data: Bytes,
}

/// `source u32 | sequence u64 | data_len u32 | data`.
const FIXED_FIELDS_LEN: usize = 4 + 8 + 4;

fn encode_ours(message: &ChatMessage, dst: &mut BytesMut) {
    let payload_len = FIXED_FIELDS_LEN + message.data.len();
    let header = PacketHeader::for_payload(CHAT, payload_len).expect("small payload");
    header.write(dst);
    dst.put_u32(message.source);
    dst.put_u64(message.sequence);
    dst.put_u32(message.data.len() as u32);
    dst.put_slice(&message.data);
}

fn decode_ours(decoder: &mut PacketDecoder, src: &mut BytesMut) -> Option<ChatMessage> {
    let Ok(Decoded::Complete(packet)) = decoder.decode(src) else {
        return None;
    };
    if packet.command != CHAT || packet.payload.len() < FIXED_FIELDS_LEN {
        return None;
    }
    let mut payload = packet.payload;
    let source = payload.get_u32();
    let sequence = payload.get_u64();
    let data_len = payload.get_u32() as usize;
    if payload.len() != data_len {
        return None;
    }
    Some(ChatMessage {
        source,
        sequence,
        data: payload,
    })
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
    encode_ours(&ours(), &mut buf);
    assert_eq!(buf.len(), 10 + FIXED_FIELDS_LEN + DATA.len());
    assert_eq!(
        decode_ours(&mut PacketDecoder::default(), &mut buf),
        Some(ours())
    );

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
    group.bench_function("switchboard", |b| {
        b.iter(|| {
            encode_ours(black_box(&message), &mut buf);
            black_box(decode_ours(&mut decoder, &mut buf))
        })
    });

    let message = proto();
    let mut buf = BytesMut::with_capacity(4096);
    group.bench_function("prost", |b| {
        b.iter(|| {
            prost::Message::encode(black_box(&message), &mut buf).unwrap();
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
            black_box(serde_json::from_slice::<ChatJson>(&buf))
        })
    });
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("serialization/encode");

    let message = ours();
    let mut buf = BytesMut::with_capacity(4096);
    group.bench_function("switchboard", |b| {
        b.iter(|| {
            buf.clear();
            encode_ours(black_box(&message), &mut buf);
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

    let mut wire = BytesMut::new();
    encode_ours(&ours(), &mut wire);
    let mut buf = BytesMut::with_capacity(4096);
    let mut decoder = PacketDecoder::default();
    group.bench_function("switchboard", |b| {
        b.iter(|| {
            buf.extend_from_slice(black_box(&wire));
            black_box(decode_ours(&mut decoder, &mut buf))
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
