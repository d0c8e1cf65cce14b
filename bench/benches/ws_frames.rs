//! WebSocket frame parse + unmask throughput, server side, from memory, in one criterion run.
//!
//! Every library parses the same bytes: a batch of N client-to-server masked binary frames
//! (built by tungstenite's own frame writer, a different key per frame). One iteration parses
//! all N frames and touches every payload (first and last byte, and `black_box` on the slice).
//! Throughput counts payload bytes. Groups `ws_frames/parse_unmask/{16B,1KiB,64KiB}` compare
//! the libraries; `ws_frames/mask_64KiB` compares the unmasking loops alone.
//!
//! How each one is driven, and what it does per iteration:
//! - switchboard `FrameDecoder::<Server>` / `MessageReader::<Server>`: the batch is copied into
//!   one reusable `BytesMut` (the socket read: one memcpy), then `decode`/`read` is called N
//!   times. Per frame: header parse from the slice, unmask in place (`apply_mask`), payload
//!   split off (`split_to`: a refcount increment, its drop a decrement). No other copy, no
//!   allocation in steady state: the frames are dropped, so the buffer is reclaimed in place.
//!   `MessageReader` adds the message state machine (binary: no UTF-8 check).
//! - tungstenite `WebSocket::from_raw_socket(stream, Role::Server, None)`, `read()` N times,
//!   default config (128 KiB read buffer) but for the 1 MiB frame and message limits that all
//!   four get, over `ReplayStream`, an endless in-memory
//!   `io::Read + io::Write`. Per read: `resize` zero-fills the spare read buffer (a memset of
//!   up to 128 KiB), then `read` copies from the stream into it (one memcpy). Per frame: header
//!   parse through an `io::Cursor`, `reserve`, `split_to` (refcount), unmask in place,
//!   `Message::Binary(Bytes)` after its protocol checks.
//! - fastwebsockets `WebSocket::after_handshake(stream, Role::Server)`, `read_frame().await` N
//!   times inside one `block_on` of a current-thread tokio runtime, over the same
//!   `ReplayStream` (`AsyncRead + AsyncWrite`). Per read: `read_buf` copies from the stream into
//!   its `BytesMut` (8 KiB, grown by `reserve(payload + 14)` per frame; one memcpy). Per frame:
//!   header parse, `reserve`, `split_to` (refcount), unmask in place (its `unmask`), the
//!   ping/close checks; plus one future poll per frame.
//!
//! The stream hands out the batch over and over, each read ending at the batch's end at most,
//! so a library's leftover bytes roll into the next iteration exactly as on a socket.

use std::hint::black_box;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use switchboard_codec::ws::{
    apply_mask, apply_mask_bytewise, FrameDecoder, Message, MessageReader, OpCode, ReaderConfig,
    Server,
};
use switchboard_codec::Decoded;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Payload size, its label, and how many frames one iteration parses.
const CASES: [(usize, &str, usize); 3] =
    [(16, "16B", 1024), (1024, "1KiB", 64), (65536, "64KiB", 4)];

/// The largest frame or message any library is configured to accept here.
const MAX_PAYLOAD: usize = 1 << 20;

/// `count` masked binary frames of `payload_len` bytes each, as a client sends them.
fn masked_batch(payload_len: usize, count: usize) -> Vec<u8> {
    use tungstenite::protocol::frame::coding::{Data, OpCode};
    use tungstenite::protocol::frame::Frame;

    let mut out = Vec::new();
    for n in 0..count {
        let payload: Vec<u8> = (0..payload_len).map(|i| (i * 31 + n) as u8).collect();
        let mut frame = Frame::message(payload, OpCode::Data(Data::Binary), true);
        frame.header_mut().mask = Some([0x37, 0xfa, n as u8, 0x3d]);
        frame.format(&mut out).expect("writing to a Vec");
    }
    out
}

/// Reads one payload the way an application would at least: its ends, and the slice itself.
fn touch(payload: &[u8]) -> u8 {
    let payload = black_box(payload);
    payload.first().copied().unwrap_or(0) ^ payload.last().copied().unwrap_or(0)
}

/// The payload's expected touch value, to check each library really unmasked.
fn expected_touch(payload_len: usize, count: usize) -> u8 {
    (0..count).fold(0, |acc, n| {
        acc ^ (n as u8) ^ (((payload_len - 1) * 31 + n) as u8)
    })
}

/// An endless socket that delivers `batch` over and over; writes are discarded.
struct ReplayStream {
    batch: Vec<u8>,
    pos: usize,
}

impl ReplayStream {
    fn new(batch: Vec<u8>) -> Self {
        ReplayStream { batch, pos: 0 }
    }

    /// Copies the next bytes into `dst`, stopping at the end of the batch, like a short read.
    fn fill(&mut self, dst: &mut [u8]) -> usize {
        let n = dst.len().min(self.batch.len() - self.pos);
        dst[..n].copy_from_slice(&self.batch[self.pos..self.pos + n]);
        self.pos = (self.pos + n) % self.batch.len();
        n
    }
}

impl io::Read for ReplayStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(self.fill(buf))
    }
}

impl io::Write for ReplayStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsyncRead for ReplayStream {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let n = buf.remaining().min(this.batch.len() - this.pos);
        buf.put_slice(&this.batch[this.pos..this.pos + n]);
        this.pos = (this.pos + n) % this.batch.len();
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ReplayStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// One iteration of each library: parse `count` frames, return the XOR of their touches.
struct Drivers {
    count: usize,
    batch: Vec<u8>,
    read_buf: BytesMut,
    frame_decoder: FrameDecoder<Server>,
    message_reader: MessageReader<Server>,
    tungstenite: tungstenite::WebSocket<ReplayStream>,
    fastwebsockets: fastwebsockets::WebSocket<ReplayStream>,
    runtime: tokio::runtime::Runtime,
}

impl Drivers {
    fn new(payload_len: usize, count: usize) -> Self {
        let batch = masked_batch(payload_len, count);
        let config = tungstenite::protocol::WebSocketConfig::default();
        let mut fastwebsockets = fastwebsockets::WebSocket::after_handshake(
            ReplayStream::new(batch.clone()),
            fastwebsockets::Role::Server,
        );
        fastwebsockets.set_max_message_size(MAX_PAYLOAD);
        Drivers {
            count,
            read_buf: BytesMut::with_capacity(batch.len()),
            frame_decoder: FrameDecoder::new(MAX_PAYLOAD),
            message_reader: MessageReader::new(ReaderConfig {
                max_message: MAX_PAYLOAD,
                ..ReaderConfig::default()
            }),
            tungstenite: tungstenite::WebSocket::from_raw_socket(
                ReplayStream::new(batch.clone()),
                tungstenite::protocol::Role::Server,
                Some(
                    config
                        .max_frame_size(Some(MAX_PAYLOAD))
                        .max_message_size(Some(MAX_PAYLOAD)),
                ),
            ),
            fastwebsockets,
            runtime: tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("a current-thread runtime"),
            batch,
        }
    }

    fn switchboard_frame_decoder(&mut self) -> u8 {
        self.read_buf.extend_from_slice(&self.batch);
        let mut acc = 0;
        for _ in 0..self.count {
            let Ok(Decoded::Complete(frame)) = self.frame_decoder.decode(&mut self.read_buf) else {
                panic!("switchboard FrameDecoder did not return a frame");
            };
            assert_eq!(frame.opcode, OpCode::Binary);
            acc ^= touch(&frame.payload);
        }
        acc
    }

    fn switchboard_message_reader(&mut self) -> u8 {
        self.read_buf.extend_from_slice(&self.batch);
        let mut acc = 0;
        for _ in 0..self.count {
            let Ok(Decoded::Complete(Message::Binary(payload))) =
                self.message_reader.read(&mut self.read_buf)
            else {
                panic!("switchboard MessageReader did not return a binary message");
            };
            acc ^= touch(&payload);
        }
        acc
    }

    fn tungstenite(&mut self) -> u8 {
        let mut acc = 0;
        for _ in 0..self.count {
            match self.tungstenite.read() {
                Ok(tungstenite::Message::Binary(payload)) => acc ^= touch(&payload),
                other => panic!("tungstenite: {other:?}"),
            }
        }
        acc
    }

    fn fastwebsockets(&mut self) -> u8 {
        let (count, ws) = (self.count, &mut self.fastwebsockets);
        self.runtime.block_on(async move {
            let mut acc = 0;
            for _ in 0..count {
                let frame = ws.read_frame().await.expect("fastwebsockets frame");
                assert!(frame.opcode == fastwebsockets::OpCode::Binary);
                acc ^= touch(&frame.payload);
            }
            acc
        })
    }
}

fn parse_unmask(c: &mut Criterion) {
    for (payload_len, label, count) in CASES {
        let mut drivers = Drivers::new(payload_len, count);
        let expected = expected_touch(payload_len, count);
        assert_eq!(drivers.switchboard_frame_decoder(), expected);
        assert_eq!(drivers.switchboard_message_reader(), expected);
        assert_eq!(drivers.tungstenite(), expected);
        assert_eq!(drivers.fastwebsockets(), expected);

        let mut group = c.benchmark_group(format!("ws_frames/parse_unmask/{label}"));
        group.throughput(Throughput::Bytes((payload_len * count) as u64));
        group.bench_function("switchboard_frame_decoder", |b| {
            b.iter(|| drivers.switchboard_frame_decoder())
        });
        group.bench_function("switchboard_message_reader", |b| {
            b.iter(|| drivers.switchboard_message_reader())
        });
        group.bench_function("tungstenite", |b| b.iter(|| drivers.tungstenite()));
        group.bench_function("fastwebsockets", |b| b.iter(|| drivers.fastwebsockets()));
        group.finish();
    }
}

/// The unmasking loops alone, in place over 64 KiB; the key starts at phase 0.
fn mask(c: &mut Criterion) {
    const LEN: usize = 64 * 1024;
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let mut buf: Vec<u8> = (0..LEN).map(|i| i as u8).collect();
    let mut group = c.benchmark_group("ws_frames/mask_64KiB");
    group.throughput(Throughput::Bytes(LEN as u64));
    group.bench_function(BenchmarkId::new("switchboard", "apply_mask"), |b| {
        b.iter(|| apply_mask(black_box(&mut buf), key, 0))
    });
    group.bench_function(
        BenchmarkId::new("switchboard", "apply_mask_bytewise"),
        |b| b.iter(|| apply_mask_bytewise(black_box(&mut buf), key, 0)),
    );
    group.bench_function(BenchmarkId::new("fastwebsockets", "unmask"), |b| {
        b.iter(|| fastwebsockets::unmask(black_box(&mut buf), key))
    });
    group.finish();
}

criterion_group!(benches, parse_unmask, mask);
criterion_main!(benches);
