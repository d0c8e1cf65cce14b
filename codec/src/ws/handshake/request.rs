//! Server side of the opening handshake: reads the client's HTTP/1.1 upgrade request
//! (RFC 6455 §4.2.1) incrementally and validates it into an [`UpgradeRequest`].
//! Bytes behind the request (early frames) are never consumed; each refusal is one
//! [`RequestError`] variant with the HTTP status it is answered with. Header values are borrowed
//! while scanning; only the fields of the result are copied out, once.

use bytes::{Buf, BytesMut};
use thiserror::Error;

use super::head::{
    is_token, is_upgradable_version, list_contains, list_items, parse_http_version, Field,
    HeadError, HeadScanner, Lines, DEFAULT_MAX_HEAD,
};
use super::key::WebSocketKey;
use crate::Decoded;

/// Why an upgrade request was refused; [`RequestError::status`] gives the HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RequestError {
    /// The head could not be read as HTTP (too large, bare LF, malformed header line).
    #[error(transparent)]
    Head(#[from] HeadError),
    /// The request line is not `method SP target SP version`.
    #[error("malformed request line")]
    MalformedRequestLine,
    /// The method is not `GET`.
    #[error("method must be GET")]
    MethodNotGet,
    /// The request target is not an origin-form path of visible ASCII without a fragment.
    #[error("request target must be an absolute path")]
    InvalidRequestTarget,
    /// Not HTTP/1.1 or a later 1.x.
    #[error("HTTP/{major}.{minor} cannot upgrade; HTTP/1.1 required")]
    UnsupportedHttpVersion {
        /// Major version digit received.
        major: u8,
        /// Minor version digit received.
        minor: u8,
    },
    /// A header that may appear once appeared twice.
    #[error("duplicate {name} header")]
    DuplicateHeader {
        /// The header's canonical name.
        name: &'static str,
    },
    /// A header we expose holds bytes outside ASCII.
    #[error("non-ASCII {name} header")]
    NonAsciiHeader {
        /// The header's canonical name.
        name: &'static str,
    },
    /// No `Host` header, or an empty one.
    #[error("missing Host header")]
    MissingHost,
    /// The `Upgrade` header does not list `websocket`.
    #[error("Upgrade header must list websocket")]
    MissingUpgradeWebSocket,
    /// The `Connection` header does not list `upgrade`.
    #[error("Connection header must list upgrade")]
    MissingConnectionUpgrade,
    /// No `Sec-WebSocket-Version` header.
    #[error("missing Sec-WebSocket-Version header; version 13 required")]
    MissingVersion,
    /// A `Sec-WebSocket-Version` other than 13.
    #[error("unsupported Sec-WebSocket-Version; version 13 required")]
    UnsupportedVersion,
    /// No `Sec-WebSocket-Key` header.
    #[error("missing Sec-WebSocket-Key header")]
    MissingKey,
    /// A `Sec-WebSocket-Key` that is not base64 of exactly 16 bytes.
    #[error("Sec-WebSocket-Key must be base64 of 16 bytes")]
    InvalidKey,
    /// A `Sec-WebSocket-Protocol` element that is not a token.
    #[error("Sec-WebSocket-Protocol must be a list of tokens")]
    InvalidSubprotocol,
    /// A `Transfer-Encoding` or non-zero `Content-Length`: bytes after the head are frames, and
    /// a proxy that read them as a body would see a different frame stream than we do.
    #[error("upgrade request must not carry a body")]
    RequestBody,
}

impl RequestError {
    /// The HTTP status this refusal is answered with.
    pub fn status(&self) -> u16 {
        match self {
            RequestError::Head(HeadError::TooLarge { .. }) => 431,
            RequestError::UnsupportedHttpVersion { major, .. } if *major != 1 => 505,
            // RFC 6455 §4.2.2: a version we do not speak gets 426 and the version we do.
            RequestError::MissingVersion | RequestError::UnsupportedVersion => 426,
            _ => 400,
        }
    }
}

/// A validated upgrade request: what the gateway needs to route, authorise and answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// Path and query as received; `path_len` marks the `?`.
    target: Box<str>,
    path_len: usize,
    host: Box<str>,
    origin: Option<Box<str>>,
    protocols: Option<Box<str>>,
    extensions: Option<Box<str>>,
    forwarded_for: Option<Box<str>>,
    key: WebSocketKey,
}

impl UpgradeRequest {
    /// The path of the request target, up to the `?`.
    pub fn path(&self) -> &str {
        &self.target[..self.path_len]
    }

    /// The query after the first `?`, if there was a `?`.
    pub fn query(&self) -> Option<&str> {
        self.target.get(self.path_len + 1..)
    }

    /// The `Host` header.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The `Origin` header, sent by browsers.
    pub fn origin(&self) -> Option<&str> {
        self.origin.as_deref()
    }

    /// The subprotocols the client offers, in its order of preference.
    pub fn subprotocols(&self) -> impl Iterator<Item = &str> {
        self.protocols
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(|item| item.trim_matches([' ', '\t']))
            .filter(|item| !item.is_empty())
    }

    /// The raw `Sec-WebSocket-Extensions` value (repeated headers joined with `, `).
    pub fn extensions(&self) -> Option<&str> {
        self.extensions.as_deref()
    }

    /// The raw `X-Forwarded-For` value (repeated headers joined with `, `). Only meaningful
    /// when the peer is a trusted proxy.
    pub fn forwarded_for(&self) -> Option<&str> {
        self.forwarded_for.as_deref()
    }

    /// The client's `Sec-WebSocket-Key`.
    pub fn key(&self) -> &WebSocketKey {
        &self.key
    }
}

/// Reads one upgrade request from a connection's bytes as they arrive.
///
/// Call [`parse`](Self::parse) after every read with the whole buffer so far (its earlier bytes
/// unchanged); each call scans only the bytes it has not seen.
#[derive(Debug, Clone)]
pub struct ServerHandshake {
    scanner: HeadScanner,
}

impl Default for ServerHandshake {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerHandshake {
    /// A reader with the default head limit, [`DEFAULT_MAX_HEAD`].
    pub const fn new() -> Self {
        Self::with_max_head(DEFAULT_MAX_HEAD)
    }

    /// A reader refusing heads longer than `max` bytes with 431.
    pub const fn with_max_head(max: usize) -> Self {
        ServerHandshake {
            scanner: HeadScanner::new(max),
        }
    }

    /// The request and the number of bytes it took, once `buf` holds the whole head. Bytes
    /// after that count are the client's first frames and belong to the caller.
    pub fn parse(&mut self, buf: &[u8]) -> Result<Decoded<(UpgradeRequest, usize)>, RequestError> {
        match self.scanner.scan(buf)? {
            Some(len) => Ok(Decoded::Complete((parse_request(&buf[..len])?, len))),
            None => Ok(Decoded::NeedMore),
        }
    }

    /// Like [`parse`](Self::parse), then removes the request's bytes from the front of `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded<UpgradeRequest>, RequestError> {
        Ok(self.parse(buf)?.map(|(request, len)| {
            buf.advance(len);
            request
        }))
    }
}

/// Parses a complete head, the blank line included.
fn parse_request(head: &[u8]) -> Result<UpgradeRequest, RequestError> {
    let mut lines = Lines::new(head);
    let (target, path_len) = parse_request_line(lines.next().unwrap_or_default())?;
    let mut fields = RequestFields::default();
    for line in lines {
        fields.record(Field::parse(line)?)?;
    }
    fields.finish(target, path_len)
}

/// The target and the length of its path, from `GET /path?query HTTP/1.1`.
fn parse_request_line(line: &[u8]) -> Result<(&str, usize), RequestError> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RequestError::MalformedRequestLine);
    };
    let version = parse_http_version(version).ok_or(RequestError::MalformedRequestLine)?;
    if !is_token(method) {
        return Err(RequestError::MalformedRequestLine);
    }
    if method != b"GET" {
        return Err(RequestError::MethodNotGet);
    }
    if !is_upgradable_version(version) {
        let (major, minor) = version;
        return Err(RequestError::UnsupportedHttpVersion { major, minor });
    }
    let valid_target =
        target.first() == Some(&b'/') && target.iter().all(|&b| b.is_ascii_graphic() && b != b'#');
    let target = std::str::from_utf8(target)
        .ok()
        .filter(|_| valid_target)
        .ok_or(RequestError::InvalidRequestTarget)?;
    let path_len = target.find('?').unwrap_or(target.len());
    Ok((target, path_len))
}

/// Header values gathered in one pass over the head, borrowed from it.
#[derive(Default)]
struct RequestFields<'a> {
    host: Option<&'a str>,
    origin: Option<&'a str>,
    key: Option<&'a [u8]>,
    version: Option<&'a [u8]>,
    upgrade_websocket: bool,
    connection_upgrade: bool,
    protocols: JoinedList<'a>,
    extensions: JoinedList<'a>,
    forwarded_for: JoinedList<'a>,
}

impl<'a> RequestFields<'a> {
    fn record(&mut self, field: Field<'a>) -> Result<(), RequestError> {
        if field.is("upgrade") {
            self.upgrade_websocket |= list_contains(field.value, "websocket");
        } else if field.is("connection") {
            self.connection_upgrade |= list_contains(field.value, "upgrade");
        } else if field.is("host") {
            set_once(&mut self.host, ascii("Host", field)?, "Host")?;
        } else if field.is("origin") {
            set_once(&mut self.origin, ascii("Origin", field)?, "Origin")?;
        } else if field.is("sec-websocket-key") {
            set_once(&mut self.key, field.value, "Sec-WebSocket-Key")?;
        } else if field.is("sec-websocket-version") {
            set_once(&mut self.version, field.value, "Sec-WebSocket-Version")?;
        } else if field.is("sec-websocket-protocol") {
            if !list_items(field.value).all(is_token) {
                return Err(RequestError::InvalidSubprotocol);
            }
            self.protocols.push(ascii("Sec-WebSocket-Protocol", field)?);
        } else if field.is("sec-websocket-extensions") {
            let value = ascii("Sec-WebSocket-Extensions", field)?;
            self.extensions.push(value);
        } else if field.is("x-forwarded-for") {
            self.forwarded_for.push(ascii("X-Forwarded-For", field)?);
        } else if field.is("transfer-encoding")
            || (field.is("content-length") && field.value != b"0")
        {
            return Err(RequestError::RequestBody);
        }
        Ok(())
    }

    /// Checks run in the order a client most needs to hear about them: not a WebSocket
    /// request at all, then a version we do not speak (an old-draft client's other headers
    /// mean nothing to us), then what version 13 requires.
    fn finish(self, target: &str, path_len: usize) -> Result<UpgradeRequest, RequestError> {
        if !self.upgrade_websocket {
            return Err(RequestError::MissingUpgradeWebSocket);
        }
        if !self.connection_upgrade {
            return Err(RequestError::MissingConnectionUpgrade);
        }
        match self.version {
            None => return Err(RequestError::MissingVersion),
            Some(b"13") => {}
            Some(_) => return Err(RequestError::UnsupportedVersion),
        }
        let host = self
            .host
            .filter(|host| !host.is_empty())
            .ok_or(RequestError::MissingHost)?;
        let key = self.key.ok_or(RequestError::MissingKey)?;
        let key = WebSocketKey::parse(key).ok_or(RequestError::InvalidKey)?;
        Ok(UpgradeRequest {
            target: target.into(),
            path_len,
            host: host.into(),
            origin: self.origin.map(Box::from),
            protocols: self.protocols.into_boxed(),
            extensions: self.extensions.into_boxed(),
            forwarded_for: self.forwarded_for.into_boxed(),
            key,
        })
    }
}

fn set_once<T>(slot: &mut Option<T>, value: T, name: &'static str) -> Result<(), RequestError> {
    if slot.replace(value).is_some() {
        return Err(RequestError::DuplicateHeader { name });
    }
    Ok(())
}

fn ascii<'a>(name: &'static str, field: Field<'a>) -> Result<&'a str, RequestError> {
    field
        .ascii_value()
        .ok_or(RequestError::NonAsciiHeader { name })
}

/// A list header that may be repeated (RFC 7230 §3.2.2: repeats join with commas). Borrows
/// the single occurrence of the common case; allocates only when a second one shows up.
#[derive(Default)]
pub(crate) enum JoinedList<'a> {
    #[default]
    Absent,
    One(&'a str),
    Many(String),
}

impl<'a> JoinedList<'a> {
    pub(crate) fn push(&mut self, value: &'a str) {
        *self = match std::mem::take(self) {
            JoinedList::Absent => JoinedList::One(value),
            JoinedList::One(first) => JoinedList::Many(format!("{first}, {value}")),
            JoinedList::Many(mut joined) => {
                joined.push_str(", ");
                joined.push_str(value);
                JoinedList::Many(joined)
            }
        };
    }

    pub(crate) fn into_boxed(self) -> Option<Box<str>> {
        match self {
            JoinedList::Absent => None,
            JoinedList::One(value) => Some(value.into()),
            JoinedList::Many(joined) => Some(joined.into_boxed_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\n\
Host: server.example.com\r\n\
Upgrade: websocket\r\n\
Connection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Origin: http://example.com\r\n\
Sec-WebSocket-Protocol: chat, superchat\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";

    fn parse_whole(input: &[u8]) -> Result<Decoded<(UpgradeRequest, usize)>, RequestError> {
        ServerHandshake::new().parse(input)
    }

    fn refusal(input: &str) -> RequestError {
        parse_whole(input.as_bytes()).expect_err(input)
    }

    /// A valid request with `line` replacing the header named like its first word, or added.
    fn with_header(name: &str, line: Option<&str>) -> String {
        let mut out = String::from("GET /ws HTTP/1.1\r\n");
        let base = [
            "Host: example.com",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
        ];
        for header in base {
            if !header.starts_with(name) {
                out.push_str(header);
                out.push_str("\r\n");
            }
        }
        if let Some(line) = line {
            out.push_str(line);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        out
    }

    #[test]
    fn rfc6455_section_1_3_client_request() {
        let mut input = RFC_REQUEST.to_vec();
        input.extend_from_slice(b"\x82\x85early frame");
        let (request, len) = parse_whole(&input).unwrap().complete().unwrap();
        assert_eq!(len, RFC_REQUEST.len());
        assert_eq!(request.path(), "/chat");
        assert_eq!(request.query(), None);
        assert_eq!(request.host(), "server.example.com");
        assert_eq!(request.origin(), Some("http://example.com"));
        assert_eq!(
            request.subprotocols().collect::<Vec<_>>(),
            ["chat", "superchat"]
        );
        assert_eq!(request.extensions(), None);
        assert_eq!(request.forwarded_for(), None);
        assert_eq!(request.key().as_str(), "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(&request.key().accept(), b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn need_more_until_the_blank_line() {
        let mut server = ServerHandshake::new();
        for end in 0..RFC_REQUEST.len() {
            assert_eq!(server.parse(&RFC_REQUEST[..end]), Ok(Decoded::NeedMore));
        }
        assert!(server.parse(RFC_REQUEST).unwrap().complete().is_some());
    }

    #[test]
    fn decode_leaves_early_frames_in_the_buffer() {
        let mut buf = BytesMut::from(RFC_REQUEST);
        buf.extend_from_slice(b"\x81\x80abcd");
        let request = ServerHandshake::new().decode(&mut buf).unwrap();
        assert_eq!(request.complete().unwrap().path(), "/chat");
        assert_eq!(&buf[..], b"\x81\x80abcd");
    }

    #[test]
    fn query_splits_at_the_first_question_mark() {
        let input = with_header("-", None).replace("/ws", "/ws/room?token=a?b&x=1");
        let (request, _) = parse_whole(input.as_bytes()).unwrap().complete().unwrap();
        assert_eq!(request.path(), "/ws/room");
        assert_eq!(request.query(), Some("token=a?b&x=1"));
        let input = with_header("-", None).replace("/ws", "/?");
        let (request, _) = parse_whole(input.as_bytes()).unwrap().complete().unwrap();
        assert_eq!((request.path(), request.query()), ("/", Some("")));
    }

    #[test]
    fn token_lists_tolerate_case_whitespace_and_repetition() {
        let input = "GET / HTTP/1.1\r\nhost:h\r\nCONNECTION: keep-alive\r\n\
            connection:\t,UPGRADE ,\r\nUpgrade: h2c, WebSocket\r\n\
            SEC-WEBSOCKET-KEY:dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13 \r\n\
            Sec-WebSocket-Protocol: a\r\nSec-WebSocket-Protocol: b, c\r\n\
            X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2\r\n\
            Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";
        let (request, _) = parse_whole(input.as_bytes()).unwrap().complete().unwrap();
        assert_eq!(request.host(), "h");
        assert_eq!(request.subprotocols().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(request.forwarded_for(), Some("10.0.0.1, 10.0.0.2"));
        assert_eq!(
            request.extensions(),
            Some("permessage-deflate; client_max_window_bits")
        );
    }

    #[test]
    fn http_1_2_is_accepted() {
        let input = with_header("-", None).replace("HTTP/1.1", "HTTP/1.2");
        assert!(parse_whole(input.as_bytes()).unwrap().complete().is_some());
    }

    #[test]
    fn refuses_a_head_too_large_with_431() {
        let mut server = ServerHandshake::with_max_head(64);
        let error = server.parse(&[b'a'; 65]).unwrap_err();
        assert_eq!(error, RequestError::Head(HeadError::TooLarge { max: 64 }));
        assert_eq!(error.status(), 431);
        let too_long = with_header(
            "-",
            Some(&format!("X-Pad: {}", "p".repeat(DEFAULT_MAX_HEAD))),
        );
        assert_eq!(refusal(&too_long).status(), 431);
    }

    #[test]
    fn refuses_bare_lf() {
        let error = refusal("GET / HTTP/1.1\nHost: a\n\n");
        assert_eq!(
            error,
            RequestError::Head(HeadError::BareLineFeed { offset: 14 })
        );
        assert_eq!(error.status(), 400);
    }

    #[test]
    fn refuses_malformed_header_lines() {
        let error = refusal(&with_header("-", Some(" folded")));
        assert_eq!(error, RequestError::Head(HeadError::FoldedHeader));
        assert_eq!(error.status(), 400);
    }

    #[test]
    fn refuses_a_malformed_request_line() {
        for line in [
            "GET /ws",
            "GET  /ws HTTP/1.1",
            "GET /ws HTTP/1.1 x",
            "GET /ws HTTP/11",
            "",
        ] {
            let input = with_header("-", None).replace("GET /ws HTTP/1.1", line);
            assert_eq!(
                refusal(&input),
                RequestError::MalformedRequestLine,
                "{line:?}"
            );
        }
    }

    #[test]
    fn refuses_other_methods() {
        let error = refusal(&with_header("-", None).replace("GET", "POST"));
        assert_eq!(error, RequestError::MethodNotGet);
        assert_eq!(error.status(), 400);
        assert_eq!(
            refusal(&with_header("-", None).replace("GET", "get")),
            RequestError::MethodNotGet
        );
    }

    #[test]
    fn refuses_targets_that_are_not_paths() {
        for target in ["http://example.com/ws", "*", "/ws#frag", "/caf\u{e9}"] {
            let input = with_header("-", None).replace("/ws", target);
            assert_eq!(
                refusal(&input),
                RequestError::InvalidRequestTarget,
                "{target}"
            );
        }
    }

    #[test]
    fn refuses_http_1_0_with_400_and_http_2_with_505() {
        let error = refusal(&with_header("-", None).replace("HTTP/1.1", "HTTP/1.0"));
        assert_eq!(
            error,
            RequestError::UnsupportedHttpVersion { major: 1, minor: 0 }
        );
        assert_eq!(error.status(), 400);
        let error = refusal(&with_header("-", None).replace("HTTP/1.1", "HTTP/2.0"));
        assert_eq!(error.status(), 505);
    }

    #[test]
    fn refuses_a_missing_or_empty_host() {
        assert_eq!(
            refusal(&with_header("Host", None)),
            RequestError::MissingHost
        );
        let error = refusal(&with_header("Host", Some("Host:  ")));
        assert_eq!(error, RequestError::MissingHost);
        assert_eq!(error.status(), 400);
    }

    #[test]
    fn refuses_duplicate_single_headers() {
        for (line, name) in [
            ("Host: other", "Host"),
            (
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Key",
            ),
            ("sec-websocket-version: 13", "Sec-WebSocket-Version"),
        ] {
            let error = refusal(&with_header("-", Some(line)));
            assert_eq!(error, RequestError::DuplicateHeader { name });
            assert_eq!(error.status(), 400);
        }
        let twice = with_header("-", Some("Origin: a\r\nOrigin: b"));
        assert_eq!(
            refusal(&twice),
            RequestError::DuplicateHeader { name: "Origin" }
        );
    }

    #[test]
    fn refuses_non_ascii_exposed_headers() {
        let error = refusal(&with_header("-", Some("Origin: http://caf\u{e9}")));
        assert_eq!(error, RequestError::NonAsciiHeader { name: "Origin" });
        assert_eq!(error.status(), 400);
    }

    #[test]
    fn refuses_without_upgrade_websocket() {
        let missing = refusal(&with_header("Upgrade", None));
        assert_eq!(missing, RequestError::MissingUpgradeWebSocket);
        assert_eq!(missing.status(), 400);
        let other = refusal(&with_header("Upgrade", Some("Upgrade: websocket2, h2c")));
        assert_eq!(other, RequestError::MissingUpgradeWebSocket);
    }

    #[test]
    fn refuses_without_connection_upgrade() {
        let error = refusal(&with_header("Connection", Some("Connection: keep-alive")));
        assert_eq!(error, RequestError::MissingConnectionUpgrade);
        assert_eq!(error.status(), 400);
    }

    #[test]
    fn refuses_a_missing_version_with_426() {
        let error = refusal(&with_header("Sec-WebSocket-Version", None));
        assert_eq!(error, RequestError::MissingVersion);
        assert_eq!(error.status(), 426);
    }

    #[test]
    fn refuses_other_versions_with_426() {
        for version in ["8", "13, 8", "013", ""] {
            let line = format!("Sec-WebSocket-Version: {version}");
            let error = refusal(&with_header("Sec-WebSocket-Version", Some(&line)));
            assert_eq!(error, RequestError::UnsupportedVersion, "{version}");
            assert_eq!(error.status(), 426);
        }
    }

    #[test]
    fn refuses_a_missing_key() {
        let error = refusal(&with_header("Sec-WebSocket-Key", None));
        assert_eq!(error, RequestError::MissingKey);
        assert_eq!(error.status(), 400);
    }

    #[test]
    fn refuses_a_key_that_is_not_sixteen_bytes() {
        let line = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j";
        let error = refusal(&with_header("Sec-WebSocket-Key", Some(line)));
        assert_eq!(error, RequestError::InvalidKey);
        assert_eq!(error.status(), 400);
    }

    #[test]
    fn refuses_subprotocols_that_are_not_tokens() {
        let line = "Sec-WebSocket-Protocol: chat, super chat";
        let error = refusal(&with_header("-", Some(line)));
        assert_eq!(error, RequestError::InvalidSubprotocol);
        assert_eq!(error.status(), 400);
    }

    #[test]
    fn refuses_a_request_body() {
        for line in [
            "Content-Length: 5",
            "Transfer-Encoding: chunked",
            "Content-Length: 00",
        ] {
            let error = refusal(&with_header("-", Some(line)));
            assert_eq!(error, RequestError::RequestBody, "{line}");
            assert_eq!(error.status(), 400);
        }
        let empty = with_header("-", Some("Content-Length: 0"));
        assert!(parse_whole(empty.as_bytes()).unwrap().complete().is_some());
    }

    #[test]
    fn the_parser_can_be_reused_after_a_complete_request() {
        let mut server = ServerHandshake::new();
        assert!(server.parse(RFC_REQUEST).unwrap().complete().is_some());
        assert_eq!(server.parse(b"GET"), Ok(Decoded::NeedMore));
    }
}
