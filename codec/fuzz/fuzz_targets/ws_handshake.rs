//! Fuzzes both sides of the WebSocket opening handshake: the server's request parser and the
//! client's response validator. Each is fed the input whole and as a stream cut where the input
//! says; neither may panic, and both runs must reach the same outcome with the same byte count.
//!
//! Input layout: `control | cuts[control & 7] | bytes`. Control bit 3 selects a 64-byte head
//! limit (to reach the size refusal often), bit 4 makes the client offer an extension.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use switchboard_codec::ws::handshake::{
    ClientHandshake, ClientRequest, ServerHandshake, DEFAULT_MAX_HEAD,
};
use switchboard_codec::Decoded;

/// Feeds growing prefixes of `input` (each cut byte is how far the next read reaches; 0 repeats
/// a call on an unchanged buffer), then the whole input; returns the first final outcome.
fn in_steps<T, E>(
    cuts: &[u8],
    input: &[u8],
    mut parse: impl FnMut(&[u8]) -> Result<Decoded<T>, E>,
) -> Result<Decoded<T>, E> {
    let mut end = 0;
    for &step in cuts {
        end = (end + usize::from(step)).min(input.len());
        match parse(&input[..end]) {
            Ok(Decoded::NeedMore) => {}
            outcome => return outcome,
        }
    }
    parse(input)
}

fn fuzz_server(cuts: &[u8], input: &[u8], max_head: usize) {
    let whole = ServerHandshake::with_max_head(max_head).parse(input);
    let mut server = ServerHandshake::with_max_head(max_head);
    let split = in_steps(cuts, input, |buf| server.parse(buf));
    assert_eq!(split, whole);
    match whole {
        Ok(Decoded::Complete((request, consumed))) => {
            assert!(consumed <= max_head && input[..consumed].ends_with(b"\r\n\r\n"));
            let mut answer = BytesMut::new();
            let chosen = request.subprotocols().next();
            assert!(request.write_accept(chosen, &mut answer).is_ok());
            assert!(answer.ends_with(b"\r\n\r\n"));
        }
        Ok(Decoded::NeedMore) => assert!(input.len() <= max_head),
        Err(error) => {
            assert!(matches!(error.status(), 400 | 426 | 431 | 505));
            let mut answer = BytesMut::new();
            error.write_response(&mut answer);
            assert!(answer.starts_with(b"HTTP/1.1 4") || answer.starts_with(b"HTTP/1.1 5"));
        }
    }
}

fn fuzz_client(cuts: &[u8], input: &[u8], max_head: usize, offer_extensions: bool) {
    let mut request =
        ClientRequest::new("server.example.com", "/chat").subprotocols(&["chat", "superchat"]);
    if offer_extensions {
        request = request.extensions("permessage-deflate");
    }
    // The RFC 6455 sample nonce, so a seed corpus can hold a valid answer.
    let nonce = *b"the sample nonce";
    let start = || {
        let client = ClientHandshake::start(&request, nonce, &mut BytesMut::new());
        client
            .expect("the request is valid")
            .with_max_head(max_head)
    };
    let whole = start().parse(input);
    let mut client = start();
    let split = in_steps(cuts, input, |buf| client.parse(buf));
    assert_eq!(split, whole);
    if let Ok(Decoded::Complete((response, consumed))) = whole {
        assert!(consumed <= max_head && input[..consumed].ends_with(b"\r\n\r\n"));
        assert!(matches!(
            response.protocol(),
            None | Some("chat" | "superchat")
        ));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let (cuts, input) = rest.split_at(usize::from(control & 7).min(rest.len()));
    let max_head = if control & 8 != 0 {
        64
    } else {
        DEFAULT_MAX_HEAD
    };
    fuzz_server(cuts, input, max_head);
    fuzz_client(cuts, input, max_head, control & 16 != 0);
});
