//! Client side of the opening handshake (RFC 6455 §4.1), for the SDK and the load generator:
//! writes the upgrade request for a nonce the caller drew, then validates the server's answer
//! as it arrives. Frames the server sends right behind its 101 are never consumed. Never
//! generates randomness; each refusal of the answer is one [`ResponseError`] variant.

use bytes::{Buf, BufMut, BytesMut};
use thiserror::Error;

use super::head::{
    is_token, is_upgradable_version, list_contains, list_items, parse_http_version, Field,
    HeadError, HeadScanner, Lines, DEFAULT_MAX_HEAD,
};
use super::key::WebSocketKey;
use super::request::JoinedList;
use crate::Decoded;

/// What a client asks for: the target and the optional headers of its upgrade request.
#[derive(Debug, Clone, Copy)]
pub struct ClientRequest<'a> {
    host: &'a str,
    path: &'a str,
    origin: Option<&'a str>,
    subprotocols: &'a [&'a str],
    extensions: Option<&'a str>,
    headers: &'a [(&'a str, &'a str)],
}

impl<'a> ClientRequest<'a> {
    /// A request for `path` (with its query, if any) on `host` (with its port, if not default).
    pub fn new(host: &'a str, path: &'a str) -> Self {
        ClientRequest {
            host,
            path,
            origin: None,
            subprotocols: &[],
            extensions: None,
            headers: &[],
        }
    }

    /// Sends `Origin`.
    pub fn origin(mut self, origin: &'a str) -> Self {
        self.origin = Some(origin);
        self
    }

    /// Offers these subprotocols, most preferred first.
    pub fn subprotocols(mut self, protocols: &'a [&'a str]) -> Self {
        self.subprotocols = protocols;
        self
    }

    /// Sends this raw `Sec-WebSocket-Extensions` offer.
    pub fn extensions(mut self, offer: &'a str) -> Self {
        self.extensions = Some(offer);
        self
    }

    /// Adds headers of the caller's own (an auth token, a user agent).
    pub fn headers(mut self, headers: &'a [(&'a str, &'a str)]) -> Self {
        self.headers = headers;
        self
    }

    /// Every piece checked before a byte is written, so no input can inject a header line.
    fn validate(&self) -> Result<(), ClientRequestError> {
        if self.host.is_empty() || !self.host.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ClientRequestError::InvalidHost);
        }
        let path_ok = self.path.starts_with('/')
            && self.path.bytes().all(|b| b.is_ascii_graphic() && b != b'#');
        if !path_ok {
            return Err(ClientRequestError::InvalidPath);
        }
        if let Some(origin) = self.origin {
            if origin.is_empty() || !origin.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ClientRequestError::InvalidOrigin);
            }
        }
        if !self.subprotocols.iter().all(|p| is_token(p.as_bytes())) {
            return Err(ClientRequestError::InvalidSubprotocol);
        }
        if let Some(offer) = self.extensions {
            if offer.trim().is_empty() || !is_header_text(offer) {
                return Err(ClientRequestError::InvalidExtensions);
            }
        }
        for (name, value) in self.headers {
            if !is_token(name.as_bytes()) {
                return Err(ClientRequestError::InvalidHeaderName);
            }
            if RESERVED_HEADERS
                .iter()
                .any(|r| name.eq_ignore_ascii_case(r))
            {
                return Err(ClientRequestError::ReservedHeader);
            }
            if !is_header_text(value) {
                return Err(ClientRequestError::InvalidHeaderValue);
            }
        }
        Ok(())
    }

    fn write(&self, key: &WebSocketKey, dst: &mut BytesMut) {
        dst.reserve(192 + self.host.len() + self.path.len());
        dst.put_slice(b"GET ");
        dst.put_slice(self.path.as_bytes());
        dst.put_slice(b" HTTP/1.1\r\nHost: ");
        dst.put_slice(self.host.as_bytes());
        dst.put_slice(b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ");
        dst.put_slice(key.as_bytes());
        dst.put_slice(b"\r\nSec-WebSocket-Version: 13\r\n");
        if let Some(origin) = self.origin {
            put_header(dst, "Origin", origin);
        }
        if let Some((first, rest)) = self.subprotocols.split_first() {
            dst.put_slice(b"Sec-WebSocket-Protocol: ");
            dst.put_slice(first.as_bytes());
            for protocol in rest {
                dst.put_slice(b", ");
                dst.put_slice(protocol.as_bytes());
            }
            dst.put_slice(b"\r\n");
        }
        if let Some(offer) = self.extensions {
            put_header(dst, "Sec-WebSocket-Extensions", offer);
        }
        for (name, value) in self.headers {
            put_header(dst, name, value);
        }
        dst.put_slice(b"\r\n");
    }
}

/// Headers the handshake writes itself, or that would make the server read frames as a body.
const RESERVED_HEADERS: [&str; 10] = [
    "host",
    "upgrade",
    "connection",
    "origin",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "content-length",
    "transfer-encoding",
];

/// Visible ASCII, spaces and tabs: what a header value may hold without escaping.
fn is_header_text(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_graphic() || b == b' ' || b == b'\t')
}

fn put_header(dst: &mut BytesMut, name: &str, value: &str) {
    dst.put_slice(name.as_bytes());
    dst.put_slice(b": ");
    dst.put_slice(value.as_bytes());
    dst.put_slice(b"\r\n");
}

/// Why a [`ClientRequest`] could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ClientRequestError {
    /// Empty, or not visible ASCII.
    #[error("host must be non-empty visible ASCII")]
    InvalidHost,
    /// Not a `/`-rooted path of visible ASCII without a fragment.
    #[error("path must start with / and be visible ASCII without #")]
    InvalidPath,
    /// Empty, or not visible ASCII.
    #[error("origin must be non-empty visible ASCII")]
    InvalidOrigin,
    /// A subprotocol that is not an HTTP token.
    #[error("subprotocols must be tokens")]
    InvalidSubprotocol,
    /// An extension offer that is empty or holds control characters.
    #[error("extension offer must be non-empty header text")]
    InvalidExtensions,
    /// An extra header whose name is not a token.
    #[error("header name must be a token")]
    InvalidHeaderName,
    /// An extra header whose value holds control characters or non-ASCII.
    #[error("header value must be ASCII without control characters")]
    InvalidHeaderValue,
    /// An extra header the handshake writes itself or that implies a body.
    #[error("header is reserved by the handshake")]
    ReservedHeader,
}

/// Why the server's answer fails the connection (RFC 6455 §4.1, client steps 1-6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ResponseError {
    /// The head could not be read as HTTP (too large, bare LF, malformed header line).
    #[error(transparent)]
    Head(#[from] HeadError),
    /// The status line is not `HTTP/x.y SP code SP reason`.
    #[error("malformed status line")]
    MalformedStatusLine,
    /// The server did not switch protocols; `code` is what it answered instead.
    #[error("server answered {code} instead of 101")]
    Status {
        /// The status code received.
        code: u16,
    },
    /// A 101 over something other than HTTP/1.1 or a later 1.x.
    #[error("HTTP/{major}.{minor} cannot upgrade")]
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
    /// The `Upgrade` header does not list `websocket`.
    #[error("Upgrade header must list websocket")]
    MissingUpgradeWebSocket,
    /// The `Connection` header does not list `upgrade`.
    #[error("Connection header must list upgrade")]
    MissingConnectionUpgrade,
    /// No `Sec-WebSocket-Accept` header.
    #[error("missing Sec-WebSocket-Accept header")]
    MissingAccept,
    /// A `Sec-WebSocket-Accept` that does not answer our key.
    #[error("Sec-WebSocket-Accept does not match the key sent")]
    AcceptMismatch,
    /// A `Sec-WebSocket-Protocol` that is not exactly one of the subprotocols offered.
    #[error("server chose a subprotocol that was not offered")]
    UnofferedProtocol,
    /// `Sec-WebSocket-Extensions` in answer to a request that offered none.
    #[error("server chose extensions that were not offered")]
    UnofferedExtensions,
}

/// A validated 101: what the server chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeResponse {
    protocol: Option<Box<str>>,
    extensions: Option<Box<str>>,
}

impl UpgradeResponse {
    /// The subprotocol the server chose, always one the client offered.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The raw `Sec-WebSocket-Extensions` the server answered with (repeats joined with `, `).
    pub fn extensions(&self) -> Option<&str> {
        self.extensions.as_deref()
    }
}

/// One client handshake: remembers what was offered and validates the server's answer.
///
/// Call [`parse`](Self::parse) after every read with the whole buffer so far (its earlier bytes
/// unchanged); each call scans only the bytes it has not seen.
#[derive(Debug, Clone)]
pub struct ClientHandshake {
    scanner: HeadScanner,
    accept: [u8; 28],
    /// The offered subprotocols joined with `,`; empty when none were offered.
    offered_protocols: Box<str>,
    offered_extensions: bool,
}

impl ClientHandshake {
    /// Writes the upgrade request into `dst` and returns the validator for its answer.
    ///
    /// `nonce` must be 16 bytes from a good random source, fresh for every connection
    /// (RFC 6455 §4.1). Nothing is written when the request is refused.
    pub fn start(
        request: &ClientRequest<'_>,
        nonce: [u8; 16],
        dst: &mut BytesMut,
    ) -> Result<Self, ClientRequestError> {
        request.validate()?;
        let key = WebSocketKey::from_nonce(nonce);
        request.write(&key, dst);
        Ok(ClientHandshake {
            scanner: HeadScanner::new(DEFAULT_MAX_HEAD),
            accept: key.accept(),
            offered_protocols: request.subprotocols.join(",").into_boxed_str(),
            offered_extensions: request.extensions.is_some(),
        })
    }

    /// Refuses answers whose head is longer than `max` bytes (default [`DEFAULT_MAX_HEAD`]).
    pub fn with_max_head(mut self, max: usize) -> Self {
        self.scanner = HeadScanner::new(max);
        self
    }

    /// The validated answer and the number of bytes it took, once `buf` holds its whole head.
    /// Bytes after that count are the server's first frames and belong to the caller.
    pub fn parse(
        &mut self,
        buf: &[u8],
    ) -> Result<Decoded<(UpgradeResponse, usize)>, ResponseError> {
        match self.scanner.scan(buf)? {
            Some(len) => Ok(Decoded::Complete((self.parse_response(&buf[..len])?, len))),
            None => Ok(Decoded::NeedMore),
        }
    }

    /// Like [`parse`](Self::parse), then removes the answer's bytes from the front of `buf`.
    pub fn decode(
        &mut self,
        buf: &mut BytesMut,
    ) -> Result<Decoded<UpgradeResponse>, ResponseError> {
        Ok(self.parse(buf)?.map(|(response, len)| {
            buf.advance(len);
            response
        }))
    }

    fn parse_response(&self, head: &[u8]) -> Result<UpgradeResponse, ResponseError> {
        let mut lines = Lines::new(head);
        parse_status_line(lines.next().unwrap_or_default())?;
        let mut fields = ResponseFields::default();
        for line in lines {
            fields.record(Field::parse(line)?)?;
        }
        self.check(fields)
    }

    fn check(&self, fields: ResponseFields<'_>) -> Result<UpgradeResponse, ResponseError> {
        if !fields.upgrade_websocket {
            return Err(ResponseError::MissingUpgradeWebSocket);
        }
        if !fields.connection_upgrade {
            return Err(ResponseError::MissingConnectionUpgrade);
        }
        match fields.accept {
            None => return Err(ResponseError::MissingAccept),
            Some(accept) if accept != self.accept => return Err(ResponseError::AcceptMismatch),
            Some(_) => {}
        }
        if let Some(protocol) = fields.protocol {
            if !self.offered_protocols.split(',').any(|p| p == protocol) {
                return Err(ResponseError::UnofferedProtocol);
            }
        }
        let extensions = fields.extensions.into_boxed();
        if let Some(chosen) = &extensions {
            if !self.offered_extensions && list_items(chosen.as_bytes()).next().is_some() {
                return Err(ResponseError::UnofferedExtensions);
            }
        }
        Ok(UpgradeResponse {
            protocol: fields.protocol.map(Box::from),
            extensions,
        })
    }
}

/// Accepts `HTTP/1.x 101 reason`; a status other than 101 wins over a bad version, because
/// it is what the caller most needs to hear.
fn parse_status_line(line: &[u8]) -> Result<(), ResponseError> {
    let malformed = ResponseError::MalformedStatusLine;
    let (version, rest) = match line.iter().position(|&b| b == b' ') {
        Some(space) => (&line[..space], &line[space + 1..]),
        None => return Err(malformed),
    };
    let version = parse_http_version(version).ok_or(malformed)?;
    let (code, reason) = match rest {
        [a, b, c] => ([*a, *b, *c], &[][..]),
        [a, b, c, b' ', reason @ ..] => ([*a, *b, *c], reason),
        _ => return Err(malformed),
    };
    if !code.iter().all(u8::is_ascii_digit)
        || reason
            .iter()
            .any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
    {
        return Err(malformed);
    }
    let code = code.iter().fold(0, |n, d| n * 10 + u16::from(d - b'0'));
    if code != 101 {
        return Err(ResponseError::Status { code });
    }
    if !is_upgradable_version(version) {
        let (major, minor) = version;
        return Err(ResponseError::UnsupportedHttpVersion { major, minor });
    }
    Ok(())
}

/// Header values gathered in one pass over the answer, borrowed from it.
#[derive(Default)]
struct ResponseFields<'a> {
    upgrade_websocket: bool,
    connection_upgrade: bool,
    accept: Option<&'a [u8]>,
    protocol: Option<&'a str>,
    extensions: JoinedList<'a>,
}

impl<'a> ResponseFields<'a> {
    fn record(&mut self, field: Field<'a>) -> Result<(), ResponseError> {
        if field.is("upgrade") {
            self.upgrade_websocket |= list_contains(field.value, "websocket");
        } else if field.is("connection") {
            self.connection_upgrade |= list_contains(field.value, "upgrade");
        } else if field.is("sec-websocket-accept") {
            if self.accept.replace(field.value).is_some() {
                return Err(duplicate("Sec-WebSocket-Accept"));
            }
        } else if field.is("sec-websocket-protocol") {
            let name = "Sec-WebSocket-Protocol";
            let protocol = field.ascii_value().ok_or(non_ascii(name))?;
            if self.protocol.replace(protocol).is_some() {
                return Err(duplicate(name));
            }
        } else if field.is("sec-websocket-extensions") {
            let name = "Sec-WebSocket-Extensions";
            self.extensions
                .push(field.ascii_value().ok_or(non_ascii(name))?);
        }
        Ok(())
    }
}

fn duplicate(name: &'static str) -> ResponseError {
    ResponseError::DuplicateHeader { name }
}

fn non_ascii(name: &'static str) -> ResponseError {
    ResponseError::NonAsciiHeader { name }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONCE: [u8; 16] = *b"the sample nonce";
    const RFC_RESPONSE: &str = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
        Sec-WebSocket-Protocol: chat\r\n\r\n";

    fn start(request: ClientRequest<'_>) -> (ClientHandshake, String) {
        let mut dst = BytesMut::new();
        let client = ClientHandshake::start(&request, NONCE, &mut dst).unwrap();
        (client, String::from_utf8(dst.to_vec()).unwrap())
    }

    fn chat_client() -> ClientHandshake {
        start(
            ClientRequest::new("server.example.com", "/chat").subprotocols(&["chat", "superchat"]),
        )
        .0
    }

    fn refusal(response: &str) -> ResponseError {
        chat_client()
            .parse(response.as_bytes())
            .expect_err(response)
    }

    #[test]
    fn rfc6455_section_1_3_request_is_written() {
        let request = ClientRequest::new("server.example.com", "/chat")
            .origin("http://example.com")
            .subprotocols(&["chat", "superchat"]);
        let (_, written) = start(request);
        assert_eq!(
            written,
            "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\nOrigin: http://example.com\r\n\
             Sec-WebSocket-Protocol: chat, superchat\r\n\r\n"
        );
    }

    #[test]
    fn extensions_and_extra_headers_are_written_last() {
        let headers = [("Authorization", "Bearer abc"), ("User-Agent", "loadgen/1")];
        let request = ClientRequest::new("h:8080", "/ws?x=1")
            .extensions("permessage-deflate; client_max_window_bits")
            .headers(&headers);
        let (_, written) = start(request);
        assert!(written.starts_with("GET /ws?x=1 HTTP/1.1\r\nHost: h:8080\r\n"));
        assert!(written.ends_with(
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
             Authorization: Bearer abc\r\nUser-Agent: loadgen/1\r\n\r\n"
        ));
    }

    #[test]
    fn rfc6455_section_1_3_response_is_accepted_leaving_frames() {
        let mut input = RFC_RESPONSE.as_bytes().to_vec();
        input.extend_from_slice(b"\x81\x05Hello");
        let mut client = chat_client();
        let (response, len) = client.parse(&input).unwrap().complete().unwrap();
        assert_eq!(len, RFC_RESPONSE.len());
        assert_eq!(response.protocol(), Some("chat"));
        assert_eq!(response.extensions(), None);
        let mut buf = BytesMut::from(&input[..]);
        assert!(chat_client().decode(&mut buf).unwrap().complete().is_some());
        assert_eq!(&buf[..], b"\x81\x05Hello");
    }

    #[test]
    fn need_more_until_the_blank_line() {
        let mut client = chat_client();
        for end in 0..RFC_RESPONSE.len() {
            let prefix = &RFC_RESPONSE.as_bytes()[..end];
            assert_eq!(client.parse(prefix), Ok(Decoded::NeedMore), "{end}");
        }
        assert!(client.parse(RFC_RESPONSE.as_bytes()).is_ok());
    }

    #[test]
    fn tokens_are_case_insensitive_and_may_repeat() {
        let response = RFC_RESPONSE
            .replace("Upgrade: websocket", "upgrade: WebSocket")
            .replace(
                "Connection: Upgrade",
                "Connection: keep-alive\r\nCONNECTION: upgrade",
            );
        assert!(chat_client().parse(response.as_bytes()).is_ok());
    }

    #[test]
    fn refuses_request_pieces_that_could_inject_headers() {
        let cases: [(ClientRequest<'_>, ClientRequestError); 9] = [
            (ClientRequest::new("", "/"), ClientRequestError::InvalidHost),
            (
                ClientRequest::new("h\r\nX: y", "/"),
                ClientRequestError::InvalidHost,
            ),
            (
                ClientRequest::new("h", "ws"),
                ClientRequestError::InvalidPath,
            ),
            (
                ClientRequest::new("h", "/a b"),
                ClientRequestError::InvalidPath,
            ),
            (
                ClientRequest::new("h", "/").origin("a\nb"),
                ClientRequestError::InvalidOrigin,
            ),
            (
                ClientRequest::new("h", "/").subprotocols(&["a b"]),
                ClientRequestError::InvalidSubprotocol,
            ),
            (
                ClientRequest::new("h", "/").extensions(" "),
                ClientRequestError::InvalidExtensions,
            ),
            (
                ClientRequest::new("h", "/").headers(&[("X Y", "z")]),
                ClientRequestError::InvalidHeaderName,
            ),
            (
                ClientRequest::new("h", "/").headers(&[("X", "z\r\n")]),
                ClientRequestError::InvalidHeaderValue,
            ),
        ];
        for (request, expected) in cases {
            let mut dst = BytesMut::new();
            let result = ClientHandshake::start(&request, NONCE, &mut dst);
            assert_eq!(result.map(|_| ()), Err(expected));
            assert!(dst.is_empty());
        }
    }

    #[test]
    fn refuses_reserved_extra_headers() {
        for name in ["sec-websocket-key", "Host", "Content-Length", "Connection"] {
            let headers = [(name, "x")];
            let request = ClientRequest::new("h", "/").headers(&headers);
            let result = ClientHandshake::start(&request, NONCE, &mut BytesMut::new());
            assert_eq!(result.map(|_| ()), Err(ClientRequestError::ReservedHeader));
        }
    }

    #[test]
    fn refuses_a_non_101_status_carrying_the_code() {
        let response = "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(refusal(response), ResponseError::Status { code: 403 });
        let no_reason = "HTTP/1.0 426\r\nSec-WebSocket-Version: 13\r\n\r\n";
        assert_eq!(refusal(no_reason), ResponseError::Status { code: 426 });
    }

    #[test]
    fn refuses_a_malformed_status_line() {
        for line in [
            "HTTP/1.1 1010 x",
            "HTTP/1.1 10a x",
            "HTTP/1.1",
            "HTTP/11 101 x",
            "x",
        ] {
            let response = RFC_RESPONSE.replace("HTTP/1.1 101 Switching Protocols", line);
            assert_eq!(
                refusal(&response),
                ResponseError::MalformedStatusLine,
                "{line}"
            );
        }
    }

    #[test]
    fn refuses_a_101_over_http_1_0() {
        let response = RFC_RESPONSE.replace("HTTP/1.1", "HTTP/1.0");
        assert_eq!(
            refusal(&response),
            ResponseError::UnsupportedHttpVersion { major: 1, minor: 0 }
        );
    }

    #[test]
    fn refuses_a_head_too_large_or_with_bare_lf() {
        let mut client = chat_client().with_max_head(32);
        assert_eq!(
            client.parse(RFC_RESPONSE.as_bytes()),
            Err(ResponseError::Head(HeadError::TooLarge { max: 32 }))
        );
        assert_eq!(
            refusal("HTTP/1.1 101 x\n\n"),
            ResponseError::Head(HeadError::BareLineFeed { offset: 14 })
        );
    }

    #[test]
    fn refuses_without_upgrade_websocket() {
        let response = RFC_RESPONSE.replace("Upgrade: websocket", "Upgrade: h2c");
        assert_eq!(refusal(&response), ResponseError::MissingUpgradeWebSocket);
    }

    #[test]
    fn refuses_without_connection_upgrade() {
        let response = RFC_RESPONSE.replace("Connection: Upgrade", "Connection: close");
        assert_eq!(refusal(&response), ResponseError::MissingConnectionUpgrade);
    }

    #[test]
    fn refuses_a_missing_accept() {
        let response = RFC_RESPONSE.replace("Sec-WebSocket-Accept", "X-Accept");
        assert_eq!(refusal(&response), ResponseError::MissingAccept);
    }

    #[test]
    fn refuses_an_accept_for_another_key() {
        let response = RFC_RESPONSE.replace("xOo=", "xOp=");
        assert_eq!(refusal(&response), ResponseError::AcceptMismatch);
    }

    #[test]
    fn refuses_duplicate_headers() {
        let accept = "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n";
        let response = RFC_RESPONSE.replace(accept, &accept.repeat(2));
        let expected = ResponseError::DuplicateHeader {
            name: "Sec-WebSocket-Accept",
        };
        assert_eq!(refusal(&response), expected);
        let protocol = "Sec-WebSocket-Protocol: chat\r\n";
        let response = RFC_RESPONSE.replace(protocol, &protocol.repeat(2));
        let expected = ResponseError::DuplicateHeader {
            name: "Sec-WebSocket-Protocol",
        };
        assert_eq!(refusal(&response), expected);
    }

    #[test]
    fn refuses_a_protocol_that_was_not_offered() {
        for chosen in ["Chat", "chat, superchat", "other"] {
            let response = RFC_RESPONSE.replace("Protocol: chat", &format!("Protocol: {chosen}"));
            assert_eq!(
                refusal(&response),
                ResponseError::UnofferedProtocol,
                "{chosen}"
            );
        }
        let (mut silent, _) = start(ClientRequest::new("h", "/"));
        let refused = silent.parse(RFC_RESPONSE.as_bytes());
        assert_eq!(refused, Err(ResponseError::UnofferedProtocol));
    }

    #[test]
    fn refuses_a_non_ascii_protocol() {
        let response = RFC_RESPONSE.replace("Protocol: chat", "Protocol: ch\u{e4}t");
        let expected = ResponseError::NonAsciiHeader {
            name: "Sec-WebSocket-Protocol",
        };
        assert_eq!(refusal(&response), expected);
    }

    #[test]
    fn refuses_extensions_that_were_not_offered() {
        let response = RFC_RESPONSE.replace(
            "\r\n\r\n",
            "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
        );
        assert_eq!(refusal(&response), ResponseError::UnofferedExtensions);
        let request = ClientRequest::new("h", "/")
            .subprotocols(&["chat"])
            .extensions("permessage-deflate");
        let (mut offering, _) = start(request);
        let (accepted, _) = offering
            .parse(response.as_bytes())
            .unwrap()
            .complete()
            .unwrap();
        assert_eq!(accepted.extensions(), Some("permessage-deflate"));
    }
}
