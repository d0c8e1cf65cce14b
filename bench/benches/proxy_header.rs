//! PROXY protocol header parsing, Switchboard's `codec::proxy` beside the `ppp` crate (2.3), in
//! one criterion run.
//!
//! Both parse the same bytes from memory: a header followed by a client's first bytes, as a
//! connection's first read holds them. Each iteration takes out what the gateway needs: the
//! client's address and how many bytes the header took. For v2 headers carrying TLVs, `ppp`'s
//! TLVs are also walked (its parse checks them only when iterated; ours checks their bounds
//! while parsing), so both do the same work. Groups:
//! - `proxy_header/{v1_tcp4,v1_tcp6,v2_tcp4,v2_tcp6_tlvs}`: one whole header per iteration;
//! - `proxy_header/v1_tcp6_byte_by_byte`: the longest v1 line arriving one byte per read, each
//!   read parsed from the connection's first byte (both parsers are stateless): the cost of the
//!   worst split, 104 calls per iteration.

use std::hint::black_box;
use std::net::{IpAddr, SocketAddr};

use criterion::{criterion_group, criterion_main, Criterion};
use switchboard_codec::proxy::{ProxyHeader, ProxyHeaderParser};
use switchboard_codec::Decoded;

const CLIENT_BYTES: &[u8] = b"SWB1\x00\x01\x00\x00\x00\x05hello";

fn v2(fam: u8, block: &[u8]) -> Vec<u8> {
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    out.extend([0x21, fam]);
    out.extend((block.len() as u16).to_be_bytes());
    out.extend(block);
    out
}

fn cases() -> Vec<(&'static str, Vec<u8>)> {
    let v1_tcp4 = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n".to_vec();
    let v1_tcp6 = b"PROXY TCP6 2001:db8:85a3:8d3:1319:8a2e:370:7348 \
                    2001:db8:85a3:8d3:1319:8a2e:370:7349 56324 443\r\n"
        .to_vec();
    let v2_tcp4 = v2(
        0x11,
        &[192, 168, 0, 1, 192, 168, 0, 11, 0xdc, 0x04, 0x01, 0xbb],
    );
    let mut block6 = Vec::new();
    block6.extend([0x20, 0x01, 0x0d, 0xb8].iter().chain(&[0; 11]).chain(&[1]));
    block6.extend([0x20, 0x01, 0x0d, 0xb8].iter().chain(&[0; 11]).chain(&[2]));
    block6.extend([0xdc, 0x04, 0x01, 0xbb]);
    block6.extend([0x01, 0, 2, b'h', b'2']); // ALPN
    block6.extend([0x02, 0, 11]); // AUTHORITY (SNI)
    block6.extend(b"example.com");
    block6.extend([0x05, 0, 16]); // UNIQUE_ID
    block6.extend([0xab; 16]);
    let v2_tcp6_tlvs = v2(0x21, &block6);
    [
        ("v1_tcp4", v1_tcp4),
        ("v1_tcp6", v1_tcp6),
        ("v2_tcp4", v2_tcp4),
        ("v2_tcp6_tlvs", v2_tcp6_tlvs),
    ]
    .into_iter()
    .map(|(name, header)| (name, [&header[..], CLIENT_BYTES].concat()))
    .collect()
}

/// The client's address and the header's length, by Switchboard's parser.
fn ours(parser: &ProxyHeaderParser, input: &[u8]) -> Option<(SocketAddr, usize)> {
    match parser.parse(input) {
        Ok(Decoded::Complete((ProxyHeader::Proxied { source, .. }, len))) => Some((source, len)),
        _ => None,
    }
}

/// The same from `ppp`, the way its documentation drives it (`HeaderResult::parse`).
fn theirs(input: &[u8]) -> Option<(SocketAddr, usize)> {
    match ppp::HeaderResult::parse(input) {
        ppp::HeaderResult::V1(Ok(header)) => {
            let source = match header.addresses {
                ppp::v1::Addresses::Tcp4(a) => {
                    SocketAddr::new(IpAddr::V4(a.source_address), a.source_port)
                }
                ppp::v1::Addresses::Tcp6(a) => {
                    SocketAddr::new(IpAddr::V6(a.source_address), a.source_port)
                }
                ppp::v1::Addresses::Unknown => return None,
            };
            Some((source, header.header.len()))
        }
        ppp::HeaderResult::V2(Ok(header)) => {
            if header.tlvs().any(|tlv| tlv.is_err()) {
                return None;
            }
            let source = match header.addresses {
                ppp::v2::Addresses::IPv4(a) => {
                    SocketAddr::new(IpAddr::V4(a.source_address), a.source_port)
                }
                ppp::v2::Addresses::IPv6(a) => {
                    SocketAddr::new(IpAddr::V6(a.source_address), a.source_port)
                }
                _ => return None,
            };
            Some((source, header.len()))
        }
        _ => None,
    }
}

fn whole_headers(c: &mut Criterion) {
    let parser = ProxyHeaderParser::new();
    for (name, input) in cases() {
        let expected = ours(&parser, &input);
        assert!(expected.is_some(), "{name}: ours refused its own case");
        assert_eq!(theirs(&input), expected, "{name}: the parsers disagree");
        let mut group = c.benchmark_group(format!("proxy_header/{name}"));
        group.bench_function("switchboard", |b| {
            b.iter(|| ours(&parser, black_box(&input)))
        });
        group.bench_function("ppp", |b| b.iter(|| theirs(black_box(&input))));
        group.finish();
    }
}

fn byte_by_byte(c: &mut Criterion) {
    let parser = ProxyHeaderParser::new();
    let (_, input) = cases().swap_remove(1);
    let header_len = ours(&parser, &input).expect("a valid header").1;
    let mut group = c.benchmark_group("proxy_header/v1_tcp6_byte_by_byte");
    group.bench_function("switchboard", |b| {
        b.iter(|| {
            let mut outcome = None;
            for end in 1..=header_len {
                outcome = ours(&parser, black_box(&input[..end]));
            }
            outcome
        })
    });
    group.bench_function("ppp", |b| {
        b.iter(|| {
            let mut outcome = None;
            for end in 1..=header_len {
                outcome = theirs(black_box(&input[..end]));
            }
            outcome
        })
    });
    group.finish();
}

criterion_group!(benches, whole_headers, byte_by_byte);
criterion_main!(benches);
