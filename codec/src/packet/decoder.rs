//! `PacketDecoder`: splits whole packets off a stream buffer, tokio-util `Decoder` style.
//!
//! Invariants: a payload is split off the caller's `BytesMut` and never copied; an error or
//! `NeedMore` consumes nothing; a refusal never waits for body bytes; the decoder never reserves
//! more than the body still missing, nor more than `RESERVE_STEP` at a time.

use bytes::{Buf, Bytes, BytesMut};

use super::{Packet, PacketError, PacketHeader, HEADER_LEN};
use crate::Decoded;

/// The default maximum payload: 1 MiB.
pub const DEFAULT_MAX_PAYLOAD: u32 = 1 << 20;

/// The most spare capacity one `decode` call reserves for a partially received body.
///
/// A peer that declares a 1 MiB packet and then trickles it in can make us hold at most this
/// much beyond what it actually sent.
pub const RESERVE_STEP: usize = 64 * 1024;

/// Decodes a stream of Switchboard packets.
///
/// Call [`decode`](Self::decode) after every read until it returns `NeedMore`.
///
/// # Buffer policy
/// When the header of the next packet is whole but its body is not, `decode` reserves spare
/// capacity in `src` for the missing body bytes, at most [`RESERVE_STEP`] per call, so that the
/// caller's next read lands in place. It never reserves more than the body still missing,
/// which the header check already bounded by the maximum. It reserves nothing for an
/// incomplete header: the caller's read buffer always has room for 10 bytes.
///
/// # Allocation
/// No allocation per packet in steady state, by `BytesMut::split_to` semantics: the first split
/// of a freshly allocated buffer promotes it to a shared buffer (one allocation per read
/// buffer); later splits only bump its reference count, and `freeze` of a shared `BytesMut`
/// allocates nothing. An empty payload is `Bytes::new()` and touches no count at all. The
/// counting-allocator test `bench/tests/packet_alloc.rs` checks this.
#[derive(Debug, Clone)]
pub struct PacketDecoder {
    max_payload: u32,
}

impl PacketDecoder {
    /// A decoder that refuses payloads longer than `max_payload` bytes.
    pub const fn new(max_payload: u32) -> Self {
        PacketDecoder { max_payload }
    }

    /// The longest payload this decoder accepts.
    pub const fn max_payload(&self) -> u32 {
        self.max_payload
    }

    /// Splits the next whole packet off the front of `src`.
    ///
    /// Returns `NeedMore`, leaving `src` as it was apart from spare capacity, when `src` ends
    /// inside a packet. An error leaves `src` untouched and is final: the stream has lost its
    /// framing, and calling again returns the same error.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Decoded<Packet>, PacketError> {
        let header = match self.whole_packet(src)? {
            Decoded::Complete(header) => header,
            Decoded::NeedMore => return Ok(Decoded::NeedMore),
        };
        let payload_len = header.payload_len as usize;
        src.advance(HEADER_LEN);
        let payload = if payload_len == 0 {
            Bytes::new()
        } else {
            src.split_to(payload_len).freeze()
        };
        Ok(Decoded::Complete(Packet {
            command: header.command,
            payload,
        }))
    }
}

impl PacketDecoder {
    /// Splits the next whole packet, header included, off the front of `src`: for a gateway
    /// that hands packets on (or echoes them) without re-encoding their header. Same checks,
    /// buffer policy and errors as [`decode`](Self::decode).
    pub fn decode_raw(&mut self, src: &mut BytesMut) -> Result<Decoded<Bytes>, PacketError> {
        let header = match self.whole_packet(src)? {
            Decoded::Complete(header) => header,
            Decoded::NeedMore => return Ok(Decoded::NeedMore),
        };
        Ok(Decoded::Complete(
            src.split_to(HEADER_LEN + header.payload_len as usize)
                .freeze(),
        ))
    }

    /// The header of the packet at the front of `src` once all of it has arrived; until then
    /// `NeedMore`, with room reserved for the missing body.
    fn whole_packet(&self, src: &mut BytesMut) -> Result<Decoded<PacketHeader>, PacketError> {
        let header = match PacketHeader::parse(src, self.max_payload)? {
            Decoded::Complete(header) => header,
            Decoded::NeedMore => return Ok(Decoded::NeedMore),
        };
        let missing = (HEADER_LEN + header.payload_len as usize).saturating_sub(src.len());
        if missing > 0 {
            src.reserve(missing.min(RESERVE_STEP));
            return Ok(Decoded::NeedMore);
        }
        Ok(Decoded::Complete(header))
    }
}

impl Default for PacketDecoder {
    fn default() -> Self {
        PacketDecoder::new(DEFAULT_MAX_PAYLOAD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::test_support::{encoded, split_at_points};
    use proptest::prelude::*;

    fn packet(command: u16, payload: &[u8]) -> Packet {
        Packet {
            command,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    /// What a decoder makes of a stream fed in `chunks`: the packets, then the error that ended
    /// the stream or, if none did, how many bytes of an unfinished packet stay buffered. (After
    /// an error the buffered count depends on the split: the refusal came before later reads.)
    fn run(
        decoder: &mut PacketDecoder,
        chunks: &[&[u8]],
    ) -> (Vec<Packet>, Result<usize, PacketError>) {
        let mut src = BytesMut::new();
        let mut packets = Vec::new();
        for chunk in chunks {
            src.extend_from_slice(chunk);
            loop {
                match decoder.decode(&mut src) {
                    Ok(Decoded::Complete(packet)) => packets.push(packet),
                    Ok(Decoded::NeedMore) => break,
                    Err(error) => return (packets, Err(error)),
                }
            }
        }
        (packets, Ok(src.len()))
    }

    #[test]
    fn decodes_one_whole_packet() {
        let mut src = BytesMut::from(&encoded(3, b"hello")[..]);
        let got = PacketDecoder::default().decode(&mut src);
        assert_eq!(got, Ok(Decoded::Complete(packet(3, b"hello"))));
        assert!(src.is_empty());
    }

    #[test]
    fn empty_payload_is_a_whole_packet() {
        let mut src = BytesMut::from(&encoded(9, b"")[..]);
        let got = PacketDecoder::default().decode(&mut src);
        assert_eq!(got, Ok(Decoded::Complete(packet(9, b""))));
        assert!(src.is_empty());
    }

    #[test]
    fn sticky_packets_in_one_read_come_out_one_by_one() {
        let mut bytes = encoded(1, b"first");
        bytes.extend(encoded(2, b""));
        bytes.extend(encoded(3, b"third"));
        bytes.extend(&encoded(4, b"fourth")[..7]);
        let (packets, left) = run(&mut PacketDecoder::default(), &[&bytes]);
        assert_eq!(
            packets,
            [packet(1, b"first"), packet(2, b""), packet(3, b"third")]
        );
        assert_eq!(left, Ok(7), "the half packet stays buffered");
    }

    #[test]
    fn half_packets_wait_for_the_rest() {
        let bytes = encoded(5, b"split across reads");
        for cut in 0..bytes.len() {
            let mut decoder = PacketDecoder::default();
            let mut src = BytesMut::from(&bytes[..cut]);
            assert_eq!(decoder.decode(&mut src), Ok(Decoded::NeedMore), "cut {cut}");
            assert_eq!(&src[..], &bytes[..cut], "NeedMore consumed nothing");
            src.extend_from_slice(&bytes[cut..]);
            let got = decoder.decode(&mut src);
            assert_eq!(got, Ok(Decoded::Complete(packet(5, b"split across reads"))));
        }
    }

    #[test]
    fn payload_is_split_off_the_read_buffer_not_copied() {
        let mut src = BytesMut::from(&encoded(1, b"zero copy")[..]);
        let start = src.as_ptr() as usize;
        let Ok(Decoded::Complete(got)) = PacketDecoder::default().decode(&mut src) else {
            panic!("expected a packet");
        };
        assert_eq!(got.payload.as_ptr() as usize, start + HEADER_LEN);
    }

    #[test]
    fn bad_magic_is_refused_on_the_first_byte_and_consumes_nothing() {
        let mut src = BytesMut::from(&b"G"[..]);
        let mut decoder = PacketDecoder::default();
        let refusal = Err(PacketError::BadMagic { got: 0x4700_0000 });
        assert_eq!(decoder.decode(&mut src), refusal);
        assert_eq!(&src[..], b"G");
        assert_eq!(decoder.decode(&mut src), refusal, "the refusal is final");
    }

    #[test]
    fn bad_magic_after_a_good_packet() {
        let mut bytes = encoded(1, b"ok");
        bytes.extend(b"SWB0 and more");
        let (packets, end) = run(&mut PacketDecoder::default(), &[&bytes]);
        assert_eq!(packets, [packet(1, b"ok")]);
        assert_eq!(end, Err(PacketError::BadMagic { got: 0x5357_4230 }));
    }

    #[test]
    fn too_long_fires_before_any_body_arrives() {
        let mut decoder = PacketDecoder::new(16);
        let header = PacketHeader {
            command: 1,
            payload_len: 17,
        };
        let mut src = BytesMut::from(&header.to_bytes()[..]);
        assert_eq!(
            decoder.decode(&mut src),
            Err(PacketError::TooLong { len: 17, max: 16 })
        );
        assert_eq!(src.len(), HEADER_LEN);
    }

    #[test]
    fn default_maximum_is_one_mebibyte() {
        let mut decoder = PacketDecoder::default();
        let over = PacketHeader {
            command: 1,
            payload_len: (1 << 20) + 1,
        };
        assert_eq!(
            decoder.decode(&mut BytesMut::from(&over.to_bytes()[..])),
            Err(PacketError::TooLong {
                len: (1 << 20) + 1,
                max: 1 << 20
            })
        );
        let at = PacketHeader {
            payload_len: 1 << 20,
            ..over
        };
        let mut src = BytesMut::from(&at.to_bytes()[..]);
        assert_eq!(decoder.decode(&mut src), Ok(Decoded::NeedMore));
    }

    #[test]
    fn reserves_room_for_the_missing_body_of_a_small_packet() {
        let header = PacketHeader {
            command: 1,
            payload_len: 1000,
        };
        let mut src = BytesMut::with_capacity(HEADER_LEN + 10);
        src.extend_from_slice(&header.to_bytes());
        src.extend_from_slice(&[0; 10]);
        assert_eq!(
            PacketDecoder::default().decode(&mut src),
            Ok(Decoded::NeedMore)
        );
        assert!(src.capacity() >= HEADER_LEN + 1000);
    }

    #[test]
    fn reserves_at_most_one_step_for_a_large_body() {
        let header = PacketHeader {
            command: 1,
            payload_len: 1 << 20,
        };
        let mut src = BytesMut::with_capacity(HEADER_LEN);
        src.extend_from_slice(&header.to_bytes());
        assert_eq!(
            PacketDecoder::default().decode(&mut src),
            Ok(Decoded::NeedMore)
        );
        let spare = src.capacity() - src.len();
        assert!(spare >= RESERVE_STEP, "spare {spare}");
        assert!(spare < 2 * RESERVE_STEP, "spare {spare}");
    }

    #[test]
    fn reserves_nothing_when_the_body_is_already_there() {
        let bytes = encoded(1, &[7; 100]);
        let mut src = BytesMut::from(&bytes[..]);
        let capacity = src.capacity();
        assert!(PacketDecoder::default().decode(&mut src).is_ok());
        assert!(src.capacity() <= capacity);
    }

    fn any_packets() -> impl Strategy<Value = Vec<(u16, Vec<u8>)>> {
        proptest::collection::vec(
            (any::<u16>(), proptest::collection::vec(any::<u8>(), 0..300)),
            0..12,
        )
    }

    proptest! {
        #[test]
        fn packets_back_to_back_decode_the_same_under_any_split(
            sent in any_packets(),
            points in proptest::collection::vec(any::<usize>(), 0..24),
        ) {
            let stream: Vec<u8> = sent.iter().flat_map(|(c, p)| encoded(*c, p)).collect();
            let chunks = split_at_points(&stream, &points);
            let (packets, end) = run(&mut PacketDecoder::default(), &chunks);
            let expected: Vec<Packet> = sent.iter().map(|(c, p)| packet(*c, p)).collect();
            prop_assert_eq!(packets, expected);
            prop_assert_eq!(end, Ok(0));
        }

        #[test]
        fn raw_packets_are_the_encoded_bytes_under_any_split(
            sent in any_packets(),
            points in proptest::collection::vec(any::<usize>(), 0..24),
        ) {
            let stream: Vec<u8> = sent.iter().flat_map(|(c, p)| encoded(*c, p)).collect();
            let mut decoder = PacketDecoder::default();
            let mut src = BytesMut::new();
            let mut raw = Vec::new();
            for chunk in split_at_points(&stream, &points) {
                src.extend_from_slice(chunk);
                while let Decoded::Complete(packet) = decoder.decode_raw(&mut src).unwrap() {
                    raw.push(packet);
                }
            }
            let expected: Vec<Vec<u8>> = sent.iter().map(|(c, p)| encoded(*c, p)).collect();
            prop_assert_eq!(raw, expected);
            prop_assert!(src.is_empty());
        }

        #[test]
        fn any_bytes_under_any_split_agree_with_the_whole_input(
            good in any_packets(),
            junk in proptest::collection::vec(any::<u8>(), 0..64),
            magic_prefix in 0usize..=4,
            max in 0u32..400,
            points in proptest::collection::vec(any::<usize>(), 0..24),
        ) {
            // Valid packets, then junk that sometimes begins like the magic, so every refusal
            // is reached from every kind of split.
            let mut stream: Vec<u8> = good.iter().flat_map(|(c, p)| encoded(*c, p)).collect();
            stream.extend_from_slice(&b"SWB1"[..magic_prefix]);
            stream.extend_from_slice(&junk);
            let whole = run(&mut PacketDecoder::new(max), &[&stream]);
            let split = run(&mut PacketDecoder::new(max), &split_at_points(&stream, &points));
            prop_assert_eq!(split, whole);
        }

        #[test]
        fn too_long_fires_with_the_header_alone(
            max in 0u32..=u32::MAX - 1,
            excess in 1u32..=u32::MAX,
            command in any::<u16>(),
        ) {
            let len = max.saturating_add(excess);
            let header = PacketHeader { command, payload_len: len };
            let mut src = BytesMut::from(&header.to_bytes()[..]);
            prop_assert_eq!(
                PacketDecoder::new(max).decode(&mut src),
                Err(PacketError::TooLong { len, max })
            );
        }
    }
}
