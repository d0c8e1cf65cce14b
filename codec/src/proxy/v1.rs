//! PROXY protocol version 1: one line of US-ASCII text, at most 107 bytes with its CRLF.
//!
//! `PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n`, `TCP6` likewise, or `PROXY UNKNOWN`
//! followed by anything up to the CRLF. The scan walks the line once, front to back, and
//! refuses on the first byte that cannot belong to a valid line (a wrong protocol name, a byte
//! outside addresses and ports, a bare CR or LF), so the outcome never depends on how the line
//! was split into reads; the fields are only parsed once the CRLF is in.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{Endpoint, ProxyError, ProxyHeader};
use crate::Decoded;

/// The text every v1 header opens with.
pub(super) const PREFIX: &[u8; 6] = b"PROXY ";

/// The longest v1 line, CRLF included (the spec's worst case, an `UNKNOWN` line carrying two
/// full IPv6 addresses and two ports).
pub const V1_MAX_LEN: usize = 107;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Tcp4,
    Tcp6,
    Unknown,
}

const PROTOCOLS: [(&[u8], Protocol); 3] = [
    (b"TCP4", Protocol::Tcp4),
    (b"TCP6", Protocol::Tcp6),
    (b"UNKNOWN", Protocol::Unknown),
];

/// Parses the v1 line at the front of `buf`, which the caller saw begin with `P`.
pub(super) fn parse(buf: &[u8]) -> Result<Decoded<(ProxyHeader, usize)>, ProxyError> {
    let Some((protocol, len)) = scan(buf)? else {
        return Ok(Decoded::NeedMore);
    };
    let header = match protocol {
        Protocol::Unknown => ProxyHeader::Unknown,
        Protocol::Tcp4 | Protocol::Tcp6 => {
            // The scan checked the prefix, the protocol and the space after it.
            let fields = &buf[PREFIX.len() + 5..len - 2];
            addresses(protocol, fields)?
        }
    };
    Ok(Decoded::Complete((header, len)))
}

/// The line's protocol and length once its CRLF is in; `None` while it is a valid prefix.
fn scan(buf: &[u8]) -> Result<Option<(Protocol, usize)>, ProxyError> {
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let mut protocol = None;
    for (offset, &byte) in window.iter().enumerate() {
        if offset < PREFIX.len() {
            if byte != PREFIX[offset] {
                return Err(ProxyError::NoHeader { offset, byte });
            }
            continue;
        }
        let protocol = match protocol {
            Some(protocol) => protocol,
            None => match protocol_token(&buf[PREFIX.len()..=offset])? {
                // `UNKNOWN` may end at the CR, which then also ends the line.
                Some(found) if byte == b'\r' => *protocol.insert(found),
                found => {
                    protocol = found;
                    continue;
                }
            },
        };
        match byte {
            b'\r' => return line_end(buf, offset).map(|end| end.map(|len| (protocol, len))),
            b'\n' => return Err(ProxyError::V1BadLineEnd { offset }),
            _ if protocol == Protocol::Unknown => {}
            b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' | b'.' | b':' | b' ' => {}
            _ => return Err(ProxyError::V1BadByte { offset, byte }),
        }
    }
    if buf.len() >= V1_MAX_LEN {
        return Err(ProxyError::V1TooLong);
    }
    Ok(None)
}

/// Judges the protocol token as its bytes arrive (`seen` runs up to the newest byte): `None`
/// while it is a prefix of a name, the protocol once the byte after the name is a space (or, for
/// `UNKNOWN`, a CR, which the caller then meets again as the line end).
fn protocol_token(seen: &[u8]) -> Result<Option<Protocol>, ProxyError> {
    let (&last, token) = seen.split_last().expect("at least the newest byte");
    if matches!(last, b' ' | b'\r' | b'\n') {
        let protocol = PROTOCOLS
            .iter()
            .find(|(name, _)| *name == token)
            .map(|&(_, protocol)| protocol)
            .ok_or(ProxyError::V1UnknownProtocol)?;
        return match (protocol, last) {
            (_, b' ') => Ok(Some(protocol)),
            (_, b'\n') => Err(ProxyError::V1BadLineEnd {
                offset: PREFIX.len() + token.len(),
            }),
            (Protocol::Unknown, _) => Ok(Some(protocol)),
            _ => Err(ProxyError::V1Fields),
        };
    }
    if PROTOCOLS.iter().any(|(name, _)| name.starts_with(seen)) {
        Ok(None)
    } else {
        Err(ProxyError::V1UnknownProtocol)
    }
}

/// The line's length once the LF after the CR at `cr` is in.
fn line_end(buf: &[u8], cr: usize) -> Result<Option<usize>, ProxyError> {
    if cr + 2 > V1_MAX_LEN {
        return Err(ProxyError::V1TooLong);
    }
    match buf.get(cr + 1) {
        None => Ok(None),
        Some(b'\n') => Ok(Some(cr + 2)),
        Some(_) => Err(ProxyError::V1BadLineEnd { offset: cr }),
    }
}

/// `src dst sport dport` of a `TCP4` or `TCP6` line (everything after `PROXY TCPx `).
fn addresses(protocol: Protocol, fields: &[u8]) -> Result<ProxyHeader, ProxyError> {
    let mut parts = fields.split(|&b| b == b' ');
    let mut next = || parts.next().filter(|part| !part.is_empty());
    let (Some(src), Some(dst), Some(sport), Some(dport), None) =
        (next(), next(), next(), next(), parts.next())
    else {
        return Err(ProxyError::V1Fields);
    };
    let source = address(protocol, src, Endpoint::Source)?;
    let destination = address(protocol, dst, Endpoint::Destination)?;
    let source_port = port(sport, Endpoint::Source)?;
    let destination_port = port(dport, Endpoint::Destination)?;
    Ok(ProxyHeader::Proxied {
        source: SocketAddr::new(source, source_port),
        destination: SocketAddr::new(destination, destination_port),
    })
}

/// An address of the line's family. The scan allowed only ASCII, so the text is UTF-8; std's
/// parsers refuse IPv4 octets with leading zeros, as the spec asks.
fn address(protocol: Protocol, text: &[u8], endpoint: Endpoint) -> Result<IpAddr, ProxyError> {
    let text = std::str::from_utf8(text).map_err(|_| ProxyError::V1BadAddress { endpoint })?;
    let parsed = match protocol {
        Protocol::Tcp4 => text.parse::<Ipv4Addr>().map(IpAddr::V4),
        _ => text.parse::<Ipv6Addr>().map(IpAddr::V6),
    };
    parsed.map_err(|_| {
        if text.parse::<IpAddr>().is_ok() {
            ProxyError::V1FamilyMismatch { endpoint }
        } else {
            ProxyError::V1BadAddress { endpoint }
        }
    })
}

/// A decimal port in 0..=65535 without leading zeros.
fn port(text: &[u8], endpoint: Endpoint) -> Result<u16, ProxyError> {
    let refused = ProxyError::V1BadPort { endpoint };
    if text.len() > 5 || (text.len() > 1 && text[0] == b'0') {
        return Err(refused);
    }
    text.iter()
        .try_fold(0u32, |value, &b| match b {
            b'0'..=b'9' => Ok(value * 10 + u32::from(b - b'0')),
            _ => Err(refused),
        })
        .and_then(|value| u16::try_from(value).map_err(|_| refused))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(line: &[u8]) -> Result<Decoded<(ProxyHeader, usize)>, ProxyError> {
        parse(line)
    }

    fn proxied(source: &str, destination: &str, len: usize) -> Decoded<(ProxyHeader, usize)> {
        Decoded::Complete((
            ProxyHeader::Proxied {
                source: source.parse().unwrap(),
                destination: destination.parse().unwrap(),
            },
            len,
        ))
    }

    #[test]
    fn the_spec_example_before_an_http_request() {
        let input = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n\
                      Host: 192.168.0.11\r\n\r\n";
        assert_eq!(
            parsed(input),
            Ok(proxied("192.168.0.1:56324", "192.168.0.11:443", 47))
        );
        assert!(input[47..].starts_with(b"GET /"));
    }

    #[test]
    fn the_spec_longest_lines_are_accepted() {
        let v4 = b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";
        assert_eq!(v4.len(), 56);
        assert_eq!(
            parsed(v4),
            Ok(proxied(
                "255.255.255.255:65535",
                "255.255.255.255:65535",
                56
            ))
        );
        let full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let v6 = format!("PROXY TCP6 {full} {full} 65535 65535\r\n");
        assert_eq!(v6.len(), 104);
        let addr = format!("[{full}]:65535");
        assert_eq!(parsed(v6.as_bytes()), Ok(proxied(&addr, &addr, 104)));
        assert_eq!(
            parsed(b"PROXY UNKNOWN\r\n"),
            Ok(Decoded::Complete((ProxyHeader::Unknown, 15)))
        );
        let worst = format!("PROXY UNKNOWN {full} {full} 65535 65535\r\n");
        assert_eq!(worst.len(), V1_MAX_LEN);
        assert_eq!(
            parsed(worst.as_bytes()),
            Ok(Decoded::Complete((ProxyHeader::Unknown, V1_MAX_LEN)))
        );
    }

    #[test]
    fn one_byte_more_than_the_longest_line_is_refused_without_waiting() {
        let full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let long = format!("PROXY UNKNOWN {full} {full} 65535 655350\r\n");
        assert_eq!(long.len(), V1_MAX_LEN + 1);
        assert_eq!(parsed(long.as_bytes()), Err(ProxyError::V1TooLong));
        // The CR is the 107th byte: the line cannot end within the limit.
        assert_eq!(
            parsed(&long.as_bytes()[..V1_MAX_LEN]),
            Err(ProxyError::V1TooLong)
        );
        let no_end = [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 200]].concat();
        assert_eq!(parsed(&no_end[..V1_MAX_LEN]), Err(ProxyError::V1TooLong));
        assert_eq!(parsed(&no_end[..V1_MAX_LEN - 1]), Ok(Decoded::NeedMore));
    }

    #[test]
    fn unknown_ignores_whatever_precedes_the_crlf() {
        let line = b"PROXY UNKNOWN whatever \xff\x00 goes\r\n";
        let input = [&line[..], b"rest"].concat();
        assert_eq!(
            parsed(&input),
            Ok(Decoded::Complete((ProxyHeader::Unknown, line.len())))
        );
    }

    #[test]
    fn every_proper_prefix_of_a_valid_line_needs_more() {
        let line = b"PROXY TCP6 2001:db8::1 ::ffff:10.0.0.1 1 0\r\n";
        for end in 0..line.len() {
            assert_eq!(parsed(&line[..end]), Ok(Decoded::NeedMore), "prefix {end}");
        }
        assert_eq!(
            parsed(line),
            Ok(proxied(
                "[2001:db8::1]:1",
                "[::ffff:10.0.0.1]:0",
                line.len()
            ))
        );
    }

    #[test]
    fn wrong_protocols_are_refused_on_their_first_wrong_byte() {
        assert_eq!(parsed(b"PROXY X"), Err(ProxyError::V1UnknownProtocol));
        assert_eq!(parsed(b"PROXY TCP5"), Err(ProxyError::V1UnknownProtocol));
        assert_eq!(parsed(b"PROXY tcp4"), Err(ProxyError::V1UnknownProtocol));
        assert_eq!(
            parsed(b"PROXY UNKNOWNX"),
            Err(ProxyError::V1UnknownProtocol)
        );
        assert_eq!(parsed(b"PROXY TCP "), Err(ProxyError::V1UnknownProtocol));
        assert_eq!(parsed(b"PROXY  TCP4"), Err(ProxyError::V1UnknownProtocol));
        assert_eq!(parsed(b"PROXY TCP4\r\n"), Err(ProxyError::V1Fields));
    }

    #[test]
    fn the_prefix_must_be_exact() {
        assert_eq!(
            parsed(b"PROXY\tTCP4"),
            Err(ProxyError::NoHeader {
                offset: 5,
                byte: b'\t'
            })
        );
        assert_eq!(
            parsed(b"POST / HTTP/1.1"),
            Err(ProxyError::NoHeader {
                offset: 1,
                byte: b'O'
            })
        );
    }

    #[test]
    fn only_crlf_ends_a_line() {
        assert_eq!(
            parsed(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"),
            Err(ProxyError::V1BadLineEnd { offset: 30 })
        );
        assert_eq!(
            parsed(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX"),
            Err(ProxyError::V1BadLineEnd { offset: 30 })
        );
        assert_eq!(
            parsed(b"PROXY UNKNOWN\n"),
            Err(ProxyError::V1BadLineEnd { offset: 13 })
        );
        assert_eq!(
            parsed(b"PROXY UNKNOWN a\rb\r\n"),
            Err(ProxyError::V1BadLineEnd { offset: 15 })
        );
    }

    #[test]
    fn bytes_outside_addresses_and_ports_are_refused_on_arrival() {
        assert_eq!(
            parsed(b"PROXY TCP4 1.2.3.4x"),
            Err(ProxyError::V1BadByte {
                offset: 18,
                byte: b'x'
            })
        );
        assert_eq!(
            parsed(b"PROXY TCP4 -1"),
            Err(ProxyError::V1BadByte {
                offset: 11,
                byte: b'-'
            })
        );
    }

    #[test]
    fn fields_must_be_four_with_single_spaces() {
        for line in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"[..],
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
            b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
            b"PROXY TCP4 \r\n",
        ] {
            assert_eq!(parsed(line), Err(ProxyError::V1Fields), "{line:?}");
        }
    }

    #[test]
    fn addresses_must_be_of_the_declared_family() {
        assert_eq!(
            parsed(b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n"),
            Err(ProxyError::V1FamilyMismatch {
                endpoint: Endpoint::Source
            })
        );
        assert_eq!(
            parsed(b"PROXY TCP6 ::1 5.6.7.8 1 2\r\n"),
            Err(ProxyError::V1FamilyMismatch {
                endpoint: Endpoint::Destination
            })
        );
        assert_eq!(
            parsed(b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n"),
            Err(ProxyError::V1BadAddress {
                endpoint: Endpoint::Source
            })
        );
        assert_eq!(
            parsed(b"PROXY TCP4 1.2.3.4 5.6.7.256 1 2\r\n"),
            Err(ProxyError::V1BadAddress {
                endpoint: Endpoint::Destination
            })
        );
    }

    #[test]
    fn leading_zeros_are_refused_in_octets_and_ports() {
        assert_eq!(
            parsed(b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n"),
            Err(ProxyError::V1BadAddress {
                endpoint: Endpoint::Source
            })
        );
        assert_eq!(
            parsed(b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n"),
            Err(ProxyError::V1BadPort {
                endpoint: Endpoint::Source
            })
        );
        assert_eq!(
            parsed(b"PROXY TCP4 1.2.3.4 5.6.7.8 0 0\r\n"),
            Ok(proxied("1.2.3.4:0", "5.6.7.8:0", 32))
        );
    }

    #[test]
    fn ports_out_of_range_are_refused() {
        assert_eq!(
            parsed(b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"),
            Err(ProxyError::V1BadPort {
                endpoint: Endpoint::Source
            })
        );
        assert_eq!(
            parsed(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n"),
            Err(ProxyError::V1BadPort {
                endpoint: Endpoint::Destination
            })
        );
        assert_eq!(
            parsed(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 100000\r\n"),
            Err(ProxyError::V1BadPort {
                endpoint: Endpoint::Destination
            })
        );
        assert_eq!(
            parsed(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 ff\r\n"),
            Err(ProxyError::V1BadPort {
                endpoint: Endpoint::Destination
            })
        );
    }
}
