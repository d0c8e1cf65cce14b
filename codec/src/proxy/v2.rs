//! PROXY protocol version 2: a 12-byte signature, version and command, family and transport,
//! a big-endian length, then that many bytes of addresses and TLVs.
//!
//! Every refusal that the fixed 16 bytes can justify (version, command, family, transport, a
//! length over the maximum or too short for the family's addresses) is made from those bytes
//! alone, before any of the declared length is buffered. TLVs are never interpreted, only walked
//! to check that each one ends inside the header; a walk over at most the maximum's bytes. That
//! includes PP2_TYPE_CRC32C: the spec obliges only a receiver that supports the checksum to
//! verify it, and a balancer on the trusted list that corrupts its own header is not a threat
//! the checksum would stop.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{ProxyError, ProxyHeader};
use crate::Decoded;

/// The bytes every v2 header opens with.
pub(super) const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The fixed part: signature, version and command, family and transport, length.
pub const V2_FIXED_LEN: usize = 16;

const COMMAND_LOCAL: u8 = 0x0;
const COMMAND_PROXY: u8 = 0x1;

const FAMILY_UNSPEC: u8 = 0x0;
const FAMILY_INET: u8 = 0x1;
const FAMILY_INET6: u8 = 0x2;
const FAMILY_UNIX: u8 = 0x3;

const TRANSPORT_UNSPEC: u8 = 0x0;
const TRANSPORT_STREAM: u8 = 0x1;
const TRANSPORT_DGRAM: u8 = 0x2;

/// A TLV's type byte and its two length bytes.
const TLV_HEAD_LEN: usize = 3;

/// Parses the v2 header at the front of `buf`, whose bytes so far match the signature.
pub(super) fn parse(buf: &[u8], max: usize) -> Result<Decoded<(ProxyHeader, usize)>, ProxyError> {
    let command = match buf.get(12) {
        Some(&byte) => version_and_command(byte)?,
        None => return Ok(Decoded::NeedMore),
    };
    let family_transport = match buf.get(13) {
        Some(&byte) if command == COMMAND_PROXY => family_and_transport(byte)?,
        // LOCAL: "the family is ignored", whatever it says.
        Some(_) => (FAMILY_UNSPEC, TRANSPORT_UNSPEC),
        None => return Ok(Decoded::NeedMore),
    };
    let Some(&[high, low]) = buf.get(14..V2_FIXED_LEN) else {
        return Ok(Decoded::NeedMore);
    };
    let block_len = u16::from_be_bytes([high, low]);
    let len = V2_FIXED_LEN + usize::from(block_len);
    if len > max {
        return Err(ProxyError::V2TooLong { len, max });
    }
    let need = address_len(family_transport);
    if block_len < need {
        return Err(ProxyError::V2AddressesTruncated {
            len: block_len,
            need,
        });
    }
    let Some(header) = buf.get(..len) else {
        return Ok(Decoded::NeedMore);
    };
    if command == COMMAND_LOCAL {
        return Ok(Decoded::Complete((ProxyHeader::Local, len)));
    }
    let addresses_end = V2_FIXED_LEN + usize::from(need);
    if need > 0 {
        check_tlvs(header, addresses_end)?;
    }
    let addresses = &header[V2_FIXED_LEN..addresses_end];
    Ok(Decoded::Complete((
        proxied(family_transport, addresses),
        len,
    )))
}

/// The command of the 13th byte, whose high nibble must be version 2.
fn version_and_command(byte: u8) -> Result<u8, ProxyError> {
    let (version, command) = (byte >> 4, byte & 0x0f);
    if version != 2 {
        return Err(ProxyError::V2Version { version });
    }
    match command {
        COMMAND_LOCAL | COMMAND_PROXY => Ok(command),
        _ => Err(ProxyError::V2Command { command }),
    }
}

/// The family and transport of the 14th byte, each one the spec defines.
fn family_and_transport(byte: u8) -> Result<(u8, u8), ProxyError> {
    let (family, transport) = (byte >> 4, byte & 0x0f);
    if family > FAMILY_UNIX {
        return Err(ProxyError::V2Family { family });
    }
    if transport > TRANSPORT_DGRAM {
        return Err(ProxyError::V2Transport { transport });
    }
    Ok((family, transport))
}

/// The bytes the addresses (and ports) of a PROXY command take. Zero when either half is
/// UNSPEC: the spec says to ignore the address information then, so its layout is not known
/// and the whole block is skipped unread.
fn address_len((family, transport): (u8, u8)) -> u16 {
    if transport == TRANSPORT_UNSPEC {
        return 0;
    }
    match family {
        FAMILY_INET => 12,
        FAMILY_INET6 => 36,
        FAMILY_UNIX => 216,
        _ => 0,
    }
}

/// What the addresses say. Only TCP over IPv4 and IPv6 maps to socket addresses; for the other
/// valid combinations (UDP, UNIX, UNSPEC) the spec lets a receiver fall back to the real
/// endpoints, which is what [`ProxyHeader::Unknown`] asks of the caller.
fn proxied((family, transport): (u8, u8), addresses: &[u8]) -> ProxyHeader {
    let port = |at: usize| u16::from_be_bytes([addresses[at], addresses[at + 1]]);
    match (family, transport) {
        (FAMILY_INET, TRANSPORT_STREAM) => {
            let ip = |at: usize| Ipv4Addr::from(array::<4>(&addresses[at..]));
            ProxyHeader::Proxied {
                source: SocketAddr::new(ip(0).into(), port(8)),
                destination: SocketAddr::new(ip(4).into(), port(10)),
            }
        }
        (FAMILY_INET6, TRANSPORT_STREAM) => {
            let ip = |at: usize| Ipv6Addr::from(array::<16>(&addresses[at..]));
            ProxyHeader::Proxied {
                source: SocketAddr::new(ip(0).into(), port(32)),
                destination: SocketAddr::new(ip(16).into(), port(34)),
            }
        }
        _ => ProxyHeader::Unknown,
    }
}

/// The first `N` bytes of `bytes`, which the caller sized to hold them.
fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

/// Walks the TLVs from `start` to the end of `header`: each must end inside it, and no tail
/// shorter than a TLV's own head may remain.
fn check_tlvs(header: &[u8], start: usize) -> Result<(), ProxyError> {
    let mut offset = start;
    while offset < header.len() {
        let value_len = match header.get(offset + 1..offset + TLV_HEAD_LEN) {
            Some(&[high, low]) => usize::from(u16::from_be_bytes([high, low])),
            _ => return Err(ProxyError::V2TlvOverrun { offset }),
        };
        let end = offset + TLV_HEAD_LEN + value_len;
        if end > header.len() {
            return Err(ProxyError::V2TlvOverrun { offset });
        }
        offset = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 4096;

    /// A header: the signature, `ver_cmd`, `fam`, then `block` with its length.
    fn header(ver_cmd: u8, fam: u8, block: &[u8]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend([ver_cmd, fam]);
        out.extend((block.len() as u16).to_be_bytes());
        out.extend(block);
        out
    }

    fn tcp4_block() -> Vec<u8> {
        // 127.0.0.1:80 -> 127.0.0.2:443, the layout of the spec's `ipv4_addr` struct.
        vec![127, 0, 0, 1, 127, 0, 0, 2, 0, 80, 1, 187]
    }

    #[test]
    fn tcp_over_ipv4() {
        let bytes = header(0x21, 0x11, &tcp4_block());
        assert_eq!(
            parse(&bytes, MAX),
            Ok(Decoded::Complete((
                ProxyHeader::Proxied {
                    source: "127.0.0.1:80".parse().unwrap(),
                    destination: "127.0.0.2:443".parse().unwrap(),
                },
                28
            )))
        );
    }

    #[test]
    fn tcp_over_ipv6() {
        let mut block = Vec::new();
        block.extend("2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        block.extend("::ffff:10.1.2.3".parse::<Ipv6Addr>().unwrap().octets());
        block.extend([0xff, 0xff, 0, 0]);
        let bytes = header(0x21, 0x21, &block);
        assert_eq!(bytes.len(), 16 + 36);
        assert_eq!(
            parse(&bytes, MAX),
            Ok(Decoded::Complete((
                ProxyHeader::Proxied {
                    source: "[2001:db8::1]:65535".parse().unwrap(),
                    destination: "[::ffff:10.1.2.3]:0".parse().unwrap(),
                },
                52
            )))
        );
    }

    #[test]
    fn local_ignores_its_family_and_skips_its_block() {
        assert_eq!(
            parse(&header(0x20, 0x00, &[]), MAX),
            Ok(Decoded::Complete((ProxyHeader::Local, 16)))
        );
        // "Receivers MUST always consider this field to skip the appropriate number of bytes
        // and must not assume zero is presented for LOCAL connections."
        let mut bytes = header(0x20, 0xff, &[1, 2, 3]);
        bytes.extend(b"client bytes");
        assert_eq!(
            parse(&bytes, MAX),
            Ok(Decoded::Complete((ProxyHeader::Local, 19)))
        );
    }

    #[test]
    fn unspec_udp_and_unix_fall_back_to_the_real_endpoints() {
        for (fam, block_len) in [
            (0x00, 0),
            (0x00, 7),
            (0x10, 5),
            (0x12, 12),
            (0x22, 36),
            (0x31, 216),
        ] {
            let bytes = header(0x21, fam, &vec![0; block_len]);
            assert_eq!(
                parse(&bytes, MAX),
                Ok(Decoded::Complete((ProxyHeader::Unknown, 16 + block_len))),
                "family/transport {fam:#04x}"
            );
        }
    }

    #[test]
    fn tlvs_are_skipped_when_they_fit() {
        let mut block = tcp4_block();
        block.extend([0x01, 0, 2, b'h', b'2']); // ALPN "h2"
        block.extend([0x04, 0, 0]); // NOOP, empty
        block.extend([0xe0, 0, 3, 1, 2, 3]); // a custom type
        let bytes = header(0x21, 0x11, &block);
        let Ok(Decoded::Complete((ProxyHeader::Proxied { .. }, len))) = parse(&bytes, MAX) else {
            panic!("expected a header");
        };
        assert_eq!(len, bytes.len());
    }

    #[test]
    fn a_tlv_running_past_the_header_is_refused() {
        let mut block = tcp4_block();
        block.extend([0x02, 0, 10, b'a', b'b']);
        assert_eq!(
            parse(&header(0x21, 0x11, &block), MAX),
            Err(ProxyError::V2TlvOverrun { offset: 28 })
        );
        let mut block = tcp4_block();
        block.extend([0x04, 0, 0, 0x05, 0]);
        assert_eq!(
            parse(&header(0x21, 0x11, &block), MAX),
            Err(ProxyError::V2TlvOverrun { offset: 31 })
        );
    }

    #[test]
    fn a_length_too_short_for_the_addresses_is_refused_from_the_fixed_part() {
        let mut bytes = header(0x21, 0x11, &tcp4_block());
        bytes[15] = 11;
        assert_eq!(
            parse(&bytes[..16], MAX),
            Err(ProxyError::V2AddressesTruncated { len: 11, need: 12 })
        );
        let bytes = header(0x21, 0x21, &tcp4_block());
        assert_eq!(
            parse(&bytes, MAX),
            Err(ProxyError::V2AddressesTruncated { len: 12, need: 36 })
        );
    }

    #[test]
    fn a_length_over_the_maximum_is_refused_from_the_fixed_part() {
        let mut fixed = header(0x21, 0x11, &[]);
        fixed[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(
            parse(&fixed, MAX),
            Err(ProxyError::V2TooLong {
                len: 16 + 65535,
                max: MAX
            })
        );
        let bytes = header(0x21, 0x11, &tcp4_block());
        assert_eq!(
            parse(&bytes, 27),
            Err(ProxyError::V2TooLong { len: 28, max: 27 })
        );
        assert!(parse(&bytes, 28).is_ok());
    }

    #[test]
    fn version_command_family_and_transport_are_checked_on_arrival() {
        let bytes = header(0x21, 0x11, &tcp4_block());
        let with = |at: usize, byte: u8| {
            let mut b = bytes[..=at].to_vec();
            b[at] = byte;
            parse(&b, MAX)
        };
        assert_eq!(with(12, 0x11), Err(ProxyError::V2Version { version: 1 }));
        assert_eq!(with(12, 0x31), Err(ProxyError::V2Version { version: 3 }));
        assert_eq!(with(12, 0x22), Err(ProxyError::V2Command { command: 2 }));
        assert_eq!(with(13, 0x41), Err(ProxyError::V2Family { family: 4 }));
        assert_eq!(
            with(13, 0x13),
            Err(ProxyError::V2Transport { transport: 3 })
        );
    }

    #[test]
    fn every_proper_prefix_needs_more() {
        let bytes = header(0x21, 0x11, &tcp4_block());
        for end in 12..bytes.len() {
            assert_eq!(parse(&bytes[..end], MAX), Ok(Decoded::NeedMore), "{end}");
        }
    }
}
