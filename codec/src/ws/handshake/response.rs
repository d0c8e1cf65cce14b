//! Server side answers: the 101 that completes the handshake and the error responses that
//! refuse it. Both are written into the caller's buffer, never to a socket. An error response
//! always closes the connection, so nothing that follows the refused request is ever read.

use std::fmt::{self, Write as _};

use bytes::{BufMut, BytesMut};
use thiserror::Error;

use super::request::{RequestError, UpgradeRequest};

/// The subprotocol chosen for a 101 was not one the client offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("subprotocol was not offered by the client")]
pub struct ProtocolNotOffered;

impl UpgradeRequest {
    /// Writes the `101 Switching Protocols` answer, naming `protocol` if one was chosen.
    ///
    /// Only a protocol the client offered may be chosen (RFC 6455 §4.2.2); anything else is
    /// refused before a byte is written, which also keeps arbitrary text out of the head.
    pub fn write_accept(
        &self,
        protocol: Option<&str>,
        dst: &mut BytesMut,
    ) -> Result<(), ProtocolNotOffered> {
        if let Some(protocol) = protocol {
            if !self.subprotocols().any(|offered| offered == protocol) {
                return Err(ProtocolNotOffered);
            }
        }
        dst.reserve(160);
        dst.put_slice(
            b"HTTP/1.1 101 Switching Protocols\r\n\
              Upgrade: websocket\r\n\
              Connection: Upgrade\r\n\
              Sec-WebSocket-Accept: ",
        );
        dst.put_slice(&self.key().accept());
        if let Some(protocol) = protocol {
            dst.put_slice(b"\r\nSec-WebSocket-Protocol: ");
            dst.put_slice(protocol.as_bytes());
        }
        dst.put_slice(b"\r\n\r\n");
        Ok(())
    }
}

impl RequestError {
    /// Writes the HTTP response refusing the request: [`status`](Self::status), a one-line
    /// plain-text reason, `Connection: close`, and for 426 the version we speak.
    pub fn write_response(&self, dst: &mut BytesMut) {
        let status = self.status();
        let mut length = ByteCount(0);
        // Counting into a sink that cannot fail, so the error is impossible.
        let _ = writeln!(length, "{self}");
        let upgrade = if status == 426 {
            // RFC 7231 §6.5.15: a 426 names the protocol to upgrade to, which in turn needs
            // `upgrade` in Connection (RFC 7230 §6.7).
            "Connection: upgrade, close\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        } else {
            "Connection: close\r\n"
        };
        dst.reserve(160 + length.0);
        // BytesMut grows as needed, so formatting into it cannot fail.
        let _ = write!(
            dst,
            "HTTP/1.1 {status} {reason}\r\n{upgrade}\
             Content-Type: text/plain; charset=utf-8\r\nContent-Length: {length}\r\n\r\n{self}\n",
            reason = reason_phrase(status),
            length = length.0,
        );
    }
}

/// Measures formatted text without storing it.
struct ByteCount(usize);

impl fmt::Write for ByteCount {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

/// Writes a refusal the application chose after a valid request (403 for a bad Origin, 404
/// for an unknown path, 503 while draining): `status`, a one-line plain-text `reason`, and
/// `Connection: close`. Control characters in `reason` are replaced so it stays one line.
pub fn write_refusal(status: u16, reason: &str, dst: &mut BytesMut) {
    let status = if (400..600).contains(&status) {
        status
    } else {
        400
    };
    let body_len = reason.len() + 1;
    dst.reserve(128 + body_len);
    // BytesMut grows as needed, so formatting into it cannot fail.
    let _ = write!(
        dst,
        "HTTP/1.1 {status} {phrase}\r\nConnection: close\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Length: {body_len}\r\n\r\n",
        phrase = reason_phrase(status),
    );
    for byte in reason.bytes() {
        dst.put_u8(if byte.is_ascii_control() { b' ' } else { byte });
    }
    dst.put_u8(b'\n');
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        403 => "Forbidden",
        404 => "Not Found",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        500..=599 => "Server Error",
        _ => "Bad Request",
    }
}

#[cfg(test)]
mod tests {
    use super::super::head::HeadError;
    use super::super::request::ServerHandshake;
    use super::*;

    fn request(protocols: &str) -> UpgradeRequest {
        let input = format!(
            "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n{protocols}\r\n"
        );
        let parsed = ServerHandshake::new().parse(input.as_bytes()).unwrap();
        parsed.complete().unwrap().0
    }

    fn written(f: impl FnOnce(&mut BytesMut)) -> String {
        let mut dst = BytesMut::new();
        f(&mut dst);
        String::from_utf8(dst.to_vec()).unwrap()
    }

    #[test]
    fn rfc6455_section_1_3_server_response() {
        let request = request("Sec-WebSocket-Protocol: chat, superchat\r\n");
        let response = written(|dst| request.write_accept(Some("chat"), dst).unwrap());
        assert_eq!(
            response,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
             Sec-WebSocket-Protocol: chat\r\n\r\n"
        );
    }

    #[test]
    fn application_refusal_is_one_line_and_closes() {
        let response = written(|dst| write_refusal(403, "origin\r\nnot allowed", dst));
        assert_eq!(
            response,
            "HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\
             Content-Type: text/plain; charset=utf-8\r\nContent-Length: 20\r\n\r\n\
             origin  not allowed\n"
        );
        let response = written(|dst| write_refusal(99, "x", dst));
        assert!(
            response.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{response}"
        );
    }

    #[test]
    fn accept_without_a_protocol_names_none() {
        let response = written(|dst| request("").write_accept(None, dst).unwrap());
        assert!(response.ends_with("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"));
        assert!(!response.contains("Sec-WebSocket-Protocol"));
    }

    #[test]
    fn accept_refuses_a_protocol_the_client_did_not_offer() {
        let request = request("Sec-WebSocket-Protocol: chat\r\n");
        let mut dst = BytesMut::new();
        assert_eq!(
            request.write_accept(Some("chat\r\nX-Injected: 1"), &mut dst),
            Err(ProtocolNotOffered)
        );
        assert_eq!(
            request.write_accept(Some("superchat"), &mut dst),
            Err(ProtocolNotOffered)
        );
        assert!(dst.is_empty());
    }

    #[test]
    fn refusal_with_400_closes_and_explains() {
        let response = written(|dst| RequestError::MissingKey.write_response(dst));
        let body = "missing Sec-WebSocket-Key header\n";
        assert_eq!(
            response,
            format!(
                "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\
                 Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        );
    }

    #[test]
    fn refusal_with_426_names_version_13() {
        let response = written(|dst| RequestError::UnsupportedVersion.write_response(dst));
        assert!(response.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(response.contains("\r\nSec-WebSocket-Version: 13\r\n"));
        assert!(response.contains("\r\nUpgrade: websocket\r\n"));
        assert!(response.contains("\r\nConnection: upgrade, close\r\n"));
    }

    #[test]
    fn refusal_with_431_and_505() {
        let too_large = RequestError::Head(HeadError::TooLarge { max: 8192 });
        let response = written(|dst| too_large.write_response(dst));
        assert!(response.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(response.ends_with("\r\n\r\nheader section exceeds 8192 bytes\n"));
        let http2 = RequestError::UnsupportedHttpVersion { major: 2, minor: 0 };
        let response = written(|dst| http2.write_response(dst));
        assert!(response.starts_with("HTTP/1.1 505 HTTP Version Not Supported\r\n"));
    }

    #[test]
    fn refusal_content_length_matches_the_body() {
        let error = RequestError::DuplicateHeader { name: "Host" };
        let response = written(|dst| error.write_response(dst));
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        let length = head
            .lines()
            .find_map(|line| line.strip_prefix("Content-Length: "))
            .unwrap();
        assert_eq!(length.parse::<usize>().unwrap(), body.len());
        assert_eq!(body, "duplicate Host header\n");
    }
}
