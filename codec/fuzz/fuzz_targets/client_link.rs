//! Fuzzes `ClientLink` under input-derived splits of the server's stream.
//!
//! The first byte chooses the transport, what WebSocket messages carry and the size limit; the
//! next bytes the read sizes; the rest is the stream (a WebSocket link starts upgraded: a
//! fuzzer cannot forge the accept key). Fed whole or in those reads, the link must never panic
//! and must give the same events, write the same replies (pongs, the close echo) and end with
//! the same refusal or the same unread bytes.

#![no_main]

mod reads;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use switchboard_codec::client_link::{ClientLink, LinkEvent, StreamError, WsMessages};

const KEY: [u8; 4] = [1, 2, 3, 4];

type Outcome = (Vec<LinkEvent>, BytesMut, Result<BytesMut, StreamError>);

fn link(setup: u8) -> ClientLink {
    let limit = (64u32 << 10) >> (setup & 0x0F);
    match setup >> 6 {
        0 => ClientLink::tcp(limit),
        1 => ClientLink::ws_upgraded(WsMessages::Packets { max_payload: limit }),
        _ => ClientLink::ws_upgraded(WsMessages::Any {
            max_len: limit as usize,
        }),
    }
}

fn run(setup: u8, chunks: &[&[u8]]) -> Outcome {
    let mut link = link(setup);
    let mut input = BytesMut::new();
    let mut out = BytesMut::new();
    let mut events = Vec::new();
    for chunk in chunks {
        input.extend_from_slice(chunk);
        loop {
            match link.read(&mut input, KEY, &mut out) {
                Ok(Some(event)) => events.push(event),
                Ok(None) => break,
                Err(error) => return (events, out, Err(error)),
            }
        }
    }
    (events, out, Ok(input))
}

fuzz_target!(|data: &[u8]| {
    let Some((&setup, rest)) = data.split_first() else {
        return;
    };
    let (stream, chunks) = reads::split_into_reads(rest);
    let whole = run(setup, &[stream]);
    let split = run(setup, &chunks);
    assert_eq!(whole, split, "split run disagrees with the whole input");
});
