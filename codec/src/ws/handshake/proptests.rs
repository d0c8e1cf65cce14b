//! Property tests for both handshake sides: generated valid heads (any header order, name case,
//! whitespace, extra and repeated headers) and arbitrary bytes, each fed under arbitrary splits,
//! must give exactly what the unsplit input gives, and the consumed count must stop at the head.

use bytes::BytesMut;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use super::*;
use crate::Decoded;

/// One header line of a generated request, and how it should show up in the parse.
#[derive(Debug, Clone)]
struct Header {
    name: String,
    value: String,
}

/// A generated valid request and the fields a correct parse must report.
#[derive(Debug, Clone)]
struct ValidRequest {
    bytes: Vec<u8>,
    head_len: usize,
    path: String,
    query: Option<String>,
    host: String,
    key: WebSocketKey,
    headers: Vec<Header>,
}

impl ValidRequest {
    /// The values of every `name` header in order, joined as the parser joins repeats.
    fn joined(&self, name: &str) -> Option<String> {
        let values: Vec<&str> = self
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
            .collect();
        (!values.is_empty()).then(|| values.join(", "))
    }
}

fn token() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9!#$%&'*+.^_`|~-]{1,8}"
}

fn ows() -> impl Strategy<Value = &'static str> {
    select(&["", " ", "\t", " \t ", "  "][..])
}

/// Flips the case of the name's letters where the seed's bits say so.
fn recase(name: &str, seed: u64) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            if seed >> (i % 64) & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

prop_compose! {
    fn connection_headers()(
        split in any::<bool>(),
        others in vec(select(&["keep-alive", "close", "TE"][..]), 0..3),
        upgrade in select(&["Upgrade", "upgrade", "UPGRADE"][..]),
    ) -> Vec<Header> {
        if split {
            let mut headers: Vec<Header> = others
                .iter()
                .map(|o| Header { name: "Connection".into(), value: o.to_string() })
                .collect();
            headers.push(Header { name: "Connection".into(), value: upgrade.to_string() });
            headers
        } else {
            let mut tokens: Vec<&str> = others.clone();
            tokens.push(upgrade);
            vec![Header { name: "Connection".into(), value: tokens.join(" ,") }]
        }
    }
}

prop_compose! {
    fn optional_headers()(
        origin in proptest::option::of("https?://[a-z]{1,8}(:[0-9]{1,5})?"),
        protocols in vec(vec(token(), 1..3), 0..3),
        extensions in proptest::option::of("permessage-deflate(; client_max_window_bits)?"),
        forwarded in vec("[0-9]{1,3}(\\.[0-9]{1,3}){3}", 0..3),
        extra in vec(("X-[A-Za-z]{1,6}", "[ -~]{0,16}"), 0..4),
    ) -> Vec<Header> {
        let mut headers = Vec::new();
        if let Some(origin) = origin {
            headers.push(Header { name: "Origin".into(), value: origin });
        }
        for list in protocols {
            headers.push(Header { name: "Sec-WebSocket-Protocol".into(), value: list.join(", ") });
        }
        if let Some(extensions) = extensions {
            headers.push(Header { name: "Sec-WebSocket-Extensions".into(), value: extensions });
        }
        for ip in forwarded {
            headers.push(Header { name: "X-Forwarded-For".into(), value: ip });
        }
        for (name, value) in extra {
            headers.push(Header { name, value: value.trim_matches([' ', '\t']).to_string() });
        }
        headers
    }
}

prop_compose! {
    fn valid_request()(
        path in "/[a-zA-Z0-9/._-]{0,12}",
        query in proptest::option::of("[a-z0-9=&?/]{0,12}"),
        host in "[a-z]{1,10}(\\.[a-z]{2,3})?(:[0-9]{1,5})?",
        nonce in any::<[u8; 16]>(),
        connection in connection_headers(),
        optional in optional_headers(),
        upgrade in select(&["websocket", "WebSocket", "h2c, websocket"][..]),
        trailing in vec(any::<u8>(), 0..40),
    )(
        order in Just((0..connection.len() + optional.len() + 4).collect::<Vec<usize>>())
            .prop_shuffle(),
        cases in vec(any::<u64>(), 32),
        spaces in vec((ows(), ows()), 32),
        path in Just(path), query in Just(query), host in Just(host), nonce in Just(nonce),
        connection in Just(connection), optional in Just(optional), upgrade in Just(upgrade),
        trailing in Just(trailing),
    ) -> ValidRequest {
        let key = WebSocketKey::from_nonce(nonce);
        let mut pool = vec![
            Header { name: "Host".into(), value: host.clone() },
            Header { name: "Upgrade".into(), value: upgrade.to_string() },
            Header { name: "Sec-WebSocket-Key".into(), value: key.as_str().to_string() },
            Header { name: "Sec-WebSocket-Version".into(), value: "13".to_string() },
        ];
        pool.extend(connection);
        pool.extend(optional);
        let headers: Vec<Header> = order.iter().map(|&i| pool[i].clone()).collect();
        let target = match &query {
            Some(q) => format!("{path}?{q}"),
            None => path.clone(),
        };
        let mut text = format!("GET {target} HTTP/1.1\r\n");
        for (i, header) in headers.iter().enumerate() {
            let (before, after) = spaces[i % spaces.len()];
            let name = recase(&header.name, cases[i % cases.len()]);
            text.push_str(&format!("{name}:{before}{}{after}\r\n", header.value));
        }
        text.push_str("\r\n");
        let head_len = text.len();
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(&trailing);
        ValidRequest { bytes, head_len, path, query, host, key, headers }
    }
}

/// Feeds `input` as a stream cut at `cuts` (every call sees the whole buffer so far) and
/// returns the first outcome that is not `NeedMore`, or `NeedMore` after the whole input.
fn split_outcome<T, E: Clone>(
    cuts: &[usize],
    input: &[u8],
    mut parse: impl FnMut(&[u8]) -> Result<Decoded<T>, E>,
) -> Result<Decoded<T>, E> {
    let mut ends: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    ends.sort_unstable();
    ends.push(input.len());
    for end in ends {
        match parse(&input[..end]) {
            Ok(Decoded::NeedMore) => continue,
            outcome => return outcome,
        }
    }
    Ok(Decoded::NeedMore)
}

/// Bytes that look enough like a handshake for the parsers to get past the first line.
fn near_miss_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..300),
        vec(
            select(&b"GET HTTP/1.1 101 :\r\n\r\n ,\twebsocket upgrade Host 13 Sec-WebSocket-"[..]),
            0..300
        ),
        (valid_request(), vec((any::<usize>(), any::<u8>()), 1..4)).prop_map(|(req, edits)| {
            let mut bytes = req.bytes;
            for (at, byte) in edits {
                let at = at % bytes.len();
                match byte % 3 {
                    0 => bytes[at] = byte,
                    1 => bytes.insert(at, byte),
                    _ => {
                        bytes.remove(at);
                    }
                }
            }
            bytes
        }),
    ]
}

const NONCE: [u8; 16] = *b"the sample nonce";

fn chat_client() -> ClientHandshake {
    let request = ClientRequest::new("h", "/").subprotocols(&["chat", "superchat"]);
    let mut dst = BytesMut::new();
    ClientHandshake::start(&request, NONCE, &mut dst).expect("valid request")
}

proptest! {
    #[test]
    fn valid_requests_parse_the_same_under_any_split(
        req in valid_request(),
        cuts in vec(any::<usize>(), 0..8),
    ) {
        let whole = ServerHandshake::new().parse(&req.bytes);
        let (parsed, consumed) = whole.clone().expect("valid request").complete().expect("complete");
        prop_assert_eq!(consumed, req.head_len);
        prop_assert_eq!(parsed.path(), req.path.as_str());
        prop_assert_eq!(parsed.query(), req.query.as_deref());
        prop_assert_eq!(parsed.host(), req.host.as_str());
        prop_assert_eq!(parsed.key(), &req.key);
        let (origin, extensions, forwarded_for) = (
            req.joined("Origin"),
            req.joined("Sec-WebSocket-Extensions"),
            req.joined("X-Forwarded-For"),
        );
        prop_assert_eq!(parsed.origin(), origin.as_deref());
        prop_assert_eq!(parsed.extensions(), extensions.as_deref());
        prop_assert_eq!(parsed.forwarded_for(), forwarded_for.as_deref());
        let offered = req.joined("Sec-WebSocket-Protocol").unwrap_or_default();
        let expected: Vec<&str> = offered.split(", ").filter(|p| !p.is_empty()).collect();
        prop_assert_eq!(parsed.subprotocols().collect::<Vec<_>>(), expected);

        let mut server = ServerHandshake::new();
        let split = split_outcome(&cuts, &req.bytes, |buf| server.parse(buf));
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn arbitrary_bytes_agree_split_and_whole_on_the_server(
        bytes in near_miss_bytes(),
        cuts in vec(any::<usize>(), 0..8),
        small_limit in any::<bool>(),
    ) {
        let new = || if small_limit { ServerHandshake::with_max_head(64) } else { ServerHandshake::new() };
        let whole = new().parse(&bytes);
        let mut server = new();
        prop_assert_eq!(split_outcome(&cuts, &bytes, |buf| server.parse(buf)), whole.clone());
        if let Ok(Decoded::Complete((_, consumed))) = whole {
            prop_assert!(bytes[..consumed].ends_with(b"\r\n\r\n"));
        }
    }

    #[test]
    fn arbitrary_bytes_agree_split_and_whole_on_the_client(
        bytes in near_miss_bytes(),
        cuts in vec(any::<usize>(), 0..8),
    ) {
        let whole = chat_client().parse(&bytes);
        let mut client = chat_client();
        prop_assert_eq!(split_outcome(&cuts, &bytes, |buf| client.parse(buf)), whole);
    }

    #[test]
    fn valid_responses_validate_the_same_under_any_split(
        protocol in select(&[None, Some("chat"), Some("superchat")][..]),
        connection in select(&["Upgrade", "keep-alive, upgrade", "UPGRADE"][..]),
        cases in any::<u64>(),
        (before, after) in (ows(), ows()),
        trailing in vec(any::<u8>(), 0..40),
        cuts in vec(any::<usize>(), 0..8),
    ) {
        let accept = WebSocketKey::from_nonce(NONCE).accept();
        let accept = std::str::from_utf8(&accept).expect("base64");
        let mut head = format!(
            "HTTP/1.1 101 Switching Protocols\r\n{}:{before}websocket{after}\r\n\
             {}:{before}{connection}{after}\r\n{}:{before}{accept}{after}\r\n",
            recase("Upgrade", cases),
            recase("Connection", cases >> 7),
            recase("Sec-WebSocket-Accept", cases >> 13),
        );
        if let Some(protocol) = protocol {
            head.push_str(&format!("Sec-WebSocket-Protocol: {protocol}\r\n"));
        }
        head.push_str("\r\n");
        let mut bytes = head.clone().into_bytes();
        bytes.extend_from_slice(&trailing);

        let whole = chat_client().parse(&bytes);
        let (response, consumed) = whole.clone().expect("valid").complete().expect("complete");
        prop_assert_eq!(consumed, head.len());
        prop_assert_eq!(response.protocol(), protocol);
        let mut client = chat_client();
        prop_assert_eq!(split_outcome(&cuts, &bytes, |buf| client.parse(buf)), whole);
    }

    #[test]
    fn client_request_server_response_round_trip(
        host in "[a-z]{1,10}(:[0-9]{1,5})?",
        target in "/[a-z0-9/]{0,10}(\\?[a-z0-9=&]{0,10})?",
        origin in proptest::option::of("https://[a-z]{1,8}"),
        protocols in vec(token(), 0..4),
        pick in any::<prop::sample::Index>(),
        nonce in any::<[u8; 16]>(),
        frames in vec(any::<u8>(), 0..16),
    ) {
        let offered: Vec<&str> = protocols.iter().map(String::as_str).collect();
        let mut request = ClientRequest::new(&host, &target).subprotocols(&offered);
        if let Some(origin) = &origin {
            request = request.origin(origin);
        }
        let mut wire = BytesMut::new();
        let mut client = ClientHandshake::start(&request, nonce, &mut wire).expect("valid");
        wire.extend_from_slice(&frames);

        let parsed = ServerHandshake::new().decode(&mut wire).expect("accepted").complete();
        let parsed = parsed.expect("complete");
        prop_assert_eq!(&wire[..], &frames[..]);
        prop_assert_eq!(parsed.host(), host.as_str());
        prop_assert_eq!(parsed.origin(), origin.as_deref());
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target.as_str(), None),
        };
        prop_assert_eq!((parsed.path(), parsed.query()), (path, query));
        prop_assert_eq!(parsed.subprotocols().collect::<Vec<_>>(), offered.clone());

        let chosen = (!offered.is_empty()).then(|| *pick.get(&offered));
        let mut answer = BytesMut::new();
        parsed.write_accept(chosen, &mut answer).expect("offered protocol");
        answer.extend_from_slice(&frames);
        let accepted = client.decode(&mut answer).expect("valid 101").complete();
        let accepted = accepted.expect("complete");
        prop_assert_eq!(accepted.protocol(), chosen);
        prop_assert_eq!(&answer[..], &frames[..]);
    }
}
