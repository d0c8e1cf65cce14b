//! Fuzzes `MessageReader` under input-derived splits of the stream.
//!
//! The first byte chooses the role and the message limit, the next bytes the read sizes; the rest
//! is the stream. Fed whole, in those reads, or (when short) a byte at a time, the reader must
//! never panic and must give the same messages and the same refusal; with no refusal, the same
//! number of unfinished bytes stays buffered. Every message must respect the limits and be valid.

#![no_main]

mod reads;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use switchboard_codec::ws::{
    Client, Message, MessageReader, ProtocolError, ReaderConfig, Role, Server,
};
use switchboard_codec::Decoded;

/// Streams up to this long are also fed one byte at a time.
const BYTEWISE_MAX: usize = 512;

type Outcome = (Vec<Message>, Result<usize, ProtocolError>);

fn run<R: Role>(config: ReaderConfig, chunks: &[&[u8]]) -> Outcome {
    let mut reader = MessageReader::<R>::new(config);
    let mut src = BytesMut::new();
    let mut messages = Vec::new();
    for chunk in chunks {
        src.extend_from_slice(chunk);
        loop {
            match reader.read(&mut src) {
                Ok(Decoded::Complete(message)) => {
                    check(&message, config.max_message);
                    messages.push(message);
                }
                Ok(Decoded::NeedMore) => break,
                Err(error) => {
                    // A refusal is sticky: asking again gives the same answer.
                    assert_eq!(reader.read(&mut src), Err(error), "refusal not repeated");
                    return (messages, Err(error));
                }
            }
        }
    }
    (messages, Ok(src.len()))
}

fn check(message: &Message, max_message: usize) {
    match message {
        Message::Text(text) => {
            assert!(text.len() <= max_message, "text over max");
            assert!(std::str::from_utf8(text).is_ok(), "text not UTF-8");
        }
        Message::Binary(binary) => assert!(binary.len() <= max_message, "binary over max"),
        Message::Ping(payload) | Message::Pong(payload) => {
            assert!(payload.len() <= 125, "control payload over 125")
        }
        Message::Close(Some(close)) => {
            assert!(close.code.is_valid_on_wire(), "close code not allowed");
            assert!(close.reason.len() <= 123, "close reason over 123");
            assert!(
                std::str::from_utf8(&close.reason).is_ok(),
                "reason not UTF-8"
            );
        }
        Message::Close(None) => {}
    }
}

fn agree<R: Role>(config: ReaderConfig, stream: &[u8], chunks: &[&[u8]]) {
    let whole = run::<R>(config, &[stream]);
    let split = run::<R>(config, chunks);
    assert_eq!(whole, split, "split run disagrees with the whole input");
    if stream.len() <= BYTEWISE_MAX {
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        let bytewise = run::<R>(config, &bytes);
        assert_eq!(
            whole, bytewise,
            "byte-at-a-time run disagrees with the whole input"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&setup, rest)) = data.split_first() else {
        return;
    };
    // 64 KiB down to 2 bytes, so the fuzzer meets the limit on fragments as well as headers.
    let config = ReaderConfig {
        max_message: (64 << 10) >> (setup & 0x0F),
        allowed_rsv: 0,
    };
    let (stream, chunks) = reads::split_into_reads(rest);

    if setup & 0x80 == 0 {
        agree::<Server>(config, stream, &chunks);
    } else {
        agree::<Client>(config, stream, &chunks);
    }
});
