//! The PROXY protocol (haproxy's `doc/proxy-protocol.txt`), versions 1 and 2, receiving side,
//! sans-I/O: the header an L4 load balancer puts before a client's first byte to say who the
//! client is.
//!
//! [`ProxyHeaderParser::parse`] takes the connection's bytes so far and returns the header and
//! how many bytes it took; the bytes after that count are the client's own and stay with the
//! caller. The version is told apart by the first byte (`P` or CR), and a connection that
//! starts with neither is refused on that byte: a receiver configured for the protocol must
//! never guess. Limits are judged as early as the bytes allow: the v1 line on its first byte
//! that cannot belong to a valid line and at 107 bytes, the v2 length from the fixed 16 bytes.
//! The parser keeps no state between calls (a v1 line, at most 107 bytes, is re-scanned from its
//! start; a v2 header is only walked once whole), so the outcome cannot depend on how the header
//! was split into reads.
//!
//! Hand-written rather than taken from the `ppp` crate: a valid v1 line split at one place is
//! refused by ppp, it waits for v2 headers of up to 64 KiB and does not check TLV bounds while
//! parsing (`bench/tests/proxy_vs_ppp.rs` checks each); `docs/architecture.md` ("Behind an L4
//! balancer") has the whole comparison and `bench/benches/proxy_header.rs` the measurement.

mod error;
#[cfg(test)]
mod proptests;
mod v1;
mod v2;

use std::net::SocketAddr;

use bytes::{Buf, BytesMut};

pub use error::{Endpoint, ProxyError};
pub use v1::V1_MAX_LEN;
pub use v2::V2_FIXED_LEN;

use crate::Decoded;

/// The default cap on a whole v2 header (fixed part, addresses and TLVs). The spec's largest
/// address block is 216 bytes (UNIX); the rest is room for the TLVs balancers add (ALPN, SNI,
/// a unique id of up to 128 bytes, TLS details, cloud endpoint ids).
pub const DEFAULT_MAX_V2_LEN: usize = 4096;

/// What a valid header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// The balancer relayed this connection for a client: what logs, limits and the
    /// application should see instead of the balancer's address.
    Proxied {
        /// The client's address and port.
        source: SocketAddr,
        /// The address and port the client connected to (the balancer's front).
        destination: SocketAddr,
    },
    /// A v2 LOCAL command: the balancer's own connection (its health checks). The real
    /// endpoints are the ones to use.
    Local,
    /// A v1 `UNKNOWN` line, or a v2 PROXY command for a family or transport other than TCP
    /// over IPv4/IPv6 (UNSPEC, UDP, UNIX): the spec asks the receiver to fall back to the real
    /// endpoints.
    Unknown,
}

/// Reads the PROXY header that opens a connection, v1 or v2.
#[derive(Debug, Clone)]
pub struct ProxyHeaderParser {
    max_v2_len: usize,
}

impl Default for ProxyHeaderParser {
    fn default() -> Self {
        Self::new()
    }
}

impl ProxyHeaderParser {
    /// A parser with the default v2 limit, [`DEFAULT_MAX_V2_LEN`].
    pub const fn new() -> Self {
        Self::with_max_v2_len(DEFAULT_MAX_V2_LEN)
    }

    /// A parser refusing v2 headers longer than `max` bytes in all. (v1 lines have the spec's
    /// fixed limit, [`V1_MAX_LEN`].)
    pub const fn with_max_v2_len(max: usize) -> Self {
        ProxyHeaderParser { max_v2_len: max }
    }

    /// The header and the number of bytes it took, once `buf` (the connection's bytes from its
    /// first) holds all of it. An error is final: the connection must be closed.
    pub fn parse(&self, buf: &[u8]) -> Result<Decoded<(ProxyHeader, usize)>, ProxyError> {
        match buf.first() {
            None => Ok(Decoded::NeedMore),
            Some(b'P') => v1::parse(buf),
            Some(_) => {
                check_signature(buf)?;
                v2::parse(buf, self.max_v2_len)
            }
        }
    }

    /// Like [`parse`](Self::parse), then removes the header's bytes from the front of `buf`,
    /// leaving the client's first bytes in it.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Decoded<ProxyHeader>, ProxyError> {
        Ok(self.parse(buf)?.map(|(header, len)| {
            buf.advance(len);
            header
        }))
    }
}

/// Refuses `buf` on its first byte that differs from the v2 signature.
fn check_signature(buf: &[u8]) -> Result<(), ProxyError> {
    let seen = &buf[..buf.len().min(v2::SIGNATURE.len())];
    match seen.iter().zip(v2::SIGNATURE).position(|(&a, b)| a != b) {
        Some(offset) => Err(ProxyError::NoHeader {
            offset,
            byte: seen[offset],
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_protocols_are_refused_on_their_first_byte() {
        let parser = ProxyHeaderParser::new();
        for (input, offset, byte) in [
            (&b"SWB1\0\0"[..], 0, b'S'),
            (b"GET / HTTP/1.1\r\n", 0, b'G'),
            (&[0x16, 0x03, 0x01], 0, 0x16),
            (b"\r\n\r\nGET", 4, b'G'),
            (b"PRI * HTTP/2.0", 2, b'I'),
        ] {
            assert_eq!(
                parser.parse(input),
                Err(ProxyError::NoHeader { offset, byte }),
                "{input:?}"
            );
        }
    }

    #[test]
    fn empty_input_needs_more() {
        assert_eq!(ProxyHeaderParser::new().parse(b""), Ok(Decoded::NeedMore));
    }

    #[test]
    fn decode_leaves_the_clients_first_bytes() {
        let mut buf = BytesMut::from(&b"PROXY TCP4 10.0.0.1 10.0.0.2 1234 443\r\nSWB1"[..]);
        let got = ProxyHeaderParser::new().decode(&mut buf);
        assert_eq!(
            got,
            Ok(Decoded::Complete(ProxyHeader::Proxied {
                source: "10.0.0.1:1234".parse().unwrap(),
                destination: "10.0.0.2:443".parse().unwrap(),
            }))
        );
        assert_eq!(&buf[..], b"SWB1");
    }

    #[test]
    fn decode_consumes_nothing_until_the_header_is_whole() {
        let mut buf = BytesMut::from(&b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c\x7f"[..]);
        assert_eq!(
            ProxyHeaderParser::new().decode(&mut buf),
            Ok(Decoded::NeedMore)
        );
        assert_eq!(buf.len(), 17);
    }
}
