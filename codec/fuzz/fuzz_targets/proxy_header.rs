//! Fuzzes the PROXY protocol header parser (v1 and v2) under input-derived splits.
//!
//! The first bytes of the input choose the v2 maximum and the read sizes; the rest is the
//! connection's first bytes. Fed as growing reads, the parser must never panic, every read
//! before the outcome must need more, and the outcome must be the whole input's; a header must
//! never take more bytes than were given or than the limits allow, and `decode` must leave
//! exactly the bytes after it.
//!
//! Input layout: `max | cuts (8 bytes, see reads.rs) | stream`. `max` picks the v2 limit:
//! a small one (16 + 4 × max, to reach the size refusal often) or the default.
#![no_main]

mod reads;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use switchboard_codec::proxy::{ProxyHeaderParser, DEFAULT_MAX_V2_LEN, V1_MAX_LEN};
use switchboard_codec::Decoded;

fuzz_target!(|data: &[u8]| {
    let Some((&max, rest)) = data.split_first() else {
        return;
    };
    let max_v2_len = if max & 0x80 != 0 {
        DEFAULT_MAX_V2_LEN
    } else {
        16 + 4 * usize::from(max)
    };
    let parser = ProxyHeaderParser::with_max_v2_len(max_v2_len);
    let (stream, chunks) = reads::split_into_reads(rest);
    let whole = parser.parse(stream);

    let mut seen = 0;
    let mut split = Ok(Decoded::NeedMore);
    for chunk in &chunks {
        seen += chunk.len();
        split = parser.parse(&stream[..seen]);
        if split != Ok(Decoded::NeedMore) {
            break;
        }
    }
    // The loop ends at the first final outcome or after the last read, which ends the stream.
    assert_eq!(split, whole, "a split changed the outcome");

    if let Ok(Decoded::Complete((header, len))) = whole {
        assert!(len <= stream.len());
        assert!(len <= V1_MAX_LEN.max(max_v2_len));
        let mut buf = BytesMut::from(stream);
        assert_eq!(parser.decode(&mut buf), Ok(Decoded::Complete(header)));
        assert_eq!(&buf[..], &stream[len..]);
    }
});
