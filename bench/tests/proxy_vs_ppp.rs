//! The behaviours of the `ppp` crate (2.3) that `docs/architecture.md` gives as the reasons
//! for hand-writing `codec::proxy`, checked against both parsers so the reasons stay true for
//! the versions in Cargo.lock.

use ppp::{HeaderResult, PartialResult};
use switchboard_codec::proxy::{ProxyError, ProxyHeader, ProxyHeaderParser};
use switchboard_codec::Decoded;

fn v2(fam: u8, block: &[u8], declared_len: u16) -> Vec<u8> {
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    out.extend([0x21, fam]);
    out.extend(declared_len.to_be_bytes());
    out.extend(block);
    out
}

const TCP4_BLOCK: [u8; 12] = [10, 0, 0, 1, 10, 0, 0, 2, 0x30, 0x39, 0x01, 0xbb];

#[test]
fn ppp_refuses_a_valid_v1_line_cut_after_the_space_before_the_last_port() {
    let line = b"PROXY TCP4 10.0.0.1 10.0.0.2 12345 443\r\n";
    let cut = b"PROXY TCP4 10.0.0.1 10.0.0.2 12345 ".len();
    let theirs = HeaderResult::parse(&line[..cut]);
    assert!(theirs.is_complete(), "ppp gives a final answer: {theirs:?}");
    assert!(matches!(theirs, HeaderResult::V1(Err(_))), "{theirs:?}");
    assert!(matches!(HeaderResult::parse(line), HeaderResult::V1(Ok(_))));

    let parser = ProxyHeaderParser::new();
    assert_eq!(parser.parse(&line[..cut]), Ok(Decoded::NeedMore));
    assert!(matches!(
        parser.parse(line),
        Ok(Decoded::Complete((ProxyHeader::Proxied { .. }, 40)))
    ));
}

#[test]
fn ppp_waits_for_a_64_kib_v2_header_that_ours_refuses_from_its_first_16_bytes() {
    let fixed = v2(0x11, &[], u16::MAX);
    assert!(HeaderResult::parse(&fixed).is_incomplete());
    let almost = [&fixed[..], &[0; 60_000]].concat();
    assert!(HeaderResult::parse(&almost).is_incomplete());
    assert_eq!(
        ProxyHeaderParser::new().parse(&fixed),
        Err(ProxyError::V2TooLong {
            len: 16 + 65_535,
            max: 4096
        })
    );
}

#[test]
fn ppp_accepts_a_v2_header_whose_tlv_runs_past_its_end_unless_the_tlvs_are_walked() {
    let mut block = TCP4_BLOCK.to_vec();
    block.extend([0x02, 0x00, 0x40, b'a']); // AUTHORITY declaring 64 bytes, holding 1
    let header = v2(0x11, &block, block.len() as u16);
    let HeaderResult::V2(Ok(theirs)) = HeaderResult::parse(&header) else {
        panic!("ppp refused it");
    };
    assert!(theirs.tlvs().any(|tlv| tlv.is_err()));
    assert_eq!(
        ProxyHeaderParser::new().parse(&header),
        Err(ProxyError::V2TlvOverrun { offset: 28 })
    );
}

#[test]
fn ppp_signals_need_more_through_error_variants() {
    let theirs = HeaderResult::parse(b"PROXY TCP4 10.0.0.1");
    assert!(matches!(theirs, HeaderResult::V1(Err(_))));
    assert!(theirs.is_incomplete());
    assert_eq!(
        ProxyHeaderParser::new().parse(b"PROXY TCP4 10.0.0.1"),
        Ok(Decoded::NeedMore)
    );
}
