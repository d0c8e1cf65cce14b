//! Property tests: generated valid headers (v1 TCP4, TCP6, UNKNOWN; v2 PROXY over IPv4 and
//! IPv6 with TLVs, LOCAL) followed by client bytes, and arbitrary bytes behind either
//! signature, under every split. Because the parser keeps no state, "agrees under any split"
//! is stated as: every prefix of the input either needs more or gives exactly what the whole
//! input gives.

use std::net::{IpAddr, SocketAddr};

use proptest::collection::vec;
use proptest::prelude::*;

use super::*;

fn v1_line(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        source.ip(),
        destination.ip(),
        source.port(),
        destination.port()
    )
    .into_bytes()
}

fn v2_header(command: u8, fam: u8, block: &[u8]) -> Vec<u8> {
    let mut out = v2::SIGNATURE.to_vec();
    out.extend([0x20 | command, fam]);
    out.extend((block.len() as u16).to_be_bytes());
    out.extend(block);
    out
}

fn v2_proxied(source: SocketAddr, destination: SocketAddr, tlvs: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut block = Vec::new();
    let fam = match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            block.extend(s.octets());
            block.extend(d.octets());
            0x11
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            block.extend(s.octets());
            block.extend(d.octets());
            0x21
        }
        _ => unreachable!("the strategy pairs addresses of one family"),
    };
    block.extend(source.port().to_be_bytes());
    block.extend(destination.port().to_be_bytes());
    for (kind, value) in tlvs {
        block.push(*kind);
        block.extend((value.len() as u16).to_be_bytes());
        block.extend(value);
    }
    v2_header(1, fam, &block)
}

fn address_pair() -> impl Strategy<Value = (SocketAddr, SocketAddr)> {
    prop_oneof![
        (
            any::<[u8; 4]>(),
            any::<[u8; 4]>(),
            any::<u16>(),
            any::<u16>()
        )
            .prop_map(|(s, d, sp, dp)| (
                SocketAddr::new(IpAddr::from(s), sp),
                SocketAddr::new(IpAddr::from(d), dp)
            )),
        (
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
            any::<u16>(),
            any::<u16>()
        )
            .prop_map(|(s, d, sp, dp)| (
                SocketAddr::new(IpAddr::from(s), sp),
                SocketAddr::new(IpAddr::from(d), dp)
            )),
    ]
}

/// A valid header's bytes and what it must parse to.
fn valid_header() -> impl Strategy<Value = (Vec<u8>, ProxyHeader)> {
    let tlvs = vec((any::<u8>(), vec(any::<u8>(), 0..40)), 0..5);
    prop_oneof![
        address_pair().prop_map(|(source, destination)| (
            v1_line(source, destination),
            ProxyHeader::Proxied {
                source,
                destination
            }
        )),
        "[ -~]{0,90}".prop_map(|rest| (
            format!(
                "PROXY UNKNOWN{}{rest}\r\n",
                if rest.is_empty() { "" } else { " " }
            )
            .into_bytes(),
            ProxyHeader::Unknown
        )),
        (address_pair(), tlvs).prop_map(|((source, destination), tlvs)| (
            v2_proxied(source, destination, &tlvs),
            ProxyHeader::Proxied {
                source,
                destination
            }
        )),
        (any::<u8>(), vec(any::<u8>(), 0..300))
            .prop_map(|(fam, block)| (v2_header(0, fam, &block), ProxyHeader::Local)),
    ]
}

/// Every prefix of `input` needs more or gives what the whole input gives; returns the latter.
fn whole_agrees_with_every_prefix(
    parser: &ProxyHeaderParser,
    input: &[u8],
) -> Result<Result<Decoded<(ProxyHeader, usize)>, ProxyError>, TestCaseError> {
    let whole = parser.parse(input);
    for end in 0..input.len() {
        let part = parser.parse(&input[..end]);
        if part != Ok(Decoded::NeedMore) {
            prop_assert_eq!(&part, &whole, "prefix of {} bytes", end);
        }
    }
    Ok(whole)
}

proptest! {
    #[test]
    fn valid_headers_parse_under_any_split_and_leave_the_client_bytes(
        (header, expected) in valid_header(),
        client in vec(any::<u8>(), 0..64),
    ) {
        let input = [&header[..], &client].concat();
        let parser = ProxyHeaderParser::new();
        let whole = whole_agrees_with_every_prefix(&parser, &input)?;
        prop_assert_eq!(whole, Ok(Decoded::Complete((expected, header.len()))));
        for end in 0..header.len() {
            prop_assert_eq!(parser.parse(&header[..end]), Ok(Decoded::NeedMore));
        }
        let mut buf = bytes::BytesMut::from(&input[..]);
        prop_assert_eq!(parser.decode(&mut buf), Ok(Decoded::Complete(expected)));
        prop_assert_eq!(&buf[..], &client[..]);
    }

    #[test]
    fn any_bytes_behind_either_opening_agree_under_any_split(
        opening in prop_oneof![
            Just(&b""[..]),
            Just(&b"PROXY "[..]),
            Just(&b"PROXY TCP4 "[..]),
            Just(&b"PROXY TCP6 "[..]),
            Just(&b"PROXY UNKNOWN"[..]),
            Just(&v2::SIGNATURE[..]),
            Just(&b"\r\n\r\n\0\r\nQUIT\n\x21\x11"[..]),
        ],
        junk in vec(any::<u8>(), 0..140),
        max in 16usize..600,
    ) {
        let input = [opening, &junk].concat();
        let parser = ProxyHeaderParser::with_max_v2_len(max);
        if let Ok(Decoded::Complete((_, len))) = whole_agrees_with_every_prefix(&parser, &input)? {
            prop_assert!(len <= input.len());
            prop_assert!(len <= max.max(V1_MAX_LEN));
        }
    }

    #[test]
    fn v1_lines_from_text_fields_agree_under_any_split(
        protocol in prop_oneof![Just("TCP4"), Just("TCP6"), Just("UNKNOWN"), Just("TCP")],
        fields in vec("[0-9a-fA-F.:]{0,12}", 0..6),
        separator in prop_oneof![Just(" "), Just("  ")],
        end in prop_oneof![Just("\r\n"), Just("\n"), Just("\r"), Just("\rx")],
    ) {
        // Near-valid lines reach the field checks (counts, families, ports) far more often
        // than random bytes do.
        let line = format!("PROXY {protocol} {}{end}", fields.join(separator));
        let _outcome = whole_agrees_with_every_prefix(&ProxyHeaderParser::new(), line.as_bytes())?;
    }
}
