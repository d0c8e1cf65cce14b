//! `PacketRef`: a whole packet borrowed from the caller's buffer, for a receiver that handles
//! each packet before its next read and so needs no `Bytes` (and no reference count) per packet.
//!
//! Same checks and errors as `PacketDecoder::decode`, in the same order. Parsing consumes
//! nothing, never allocates and never reserves: the caller drops the bytes it has handled.

use super::header::short_header;
use super::{PacketError, PacketHeader, HEADER_LEN};
use crate::Decoded;

/// One whole packet, its payload borrowed from the buffer it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketRef<'a> {
    /// What the payload means; the command numbers are listed in `docs/protocol.md`.
    pub command: u16,
    /// The payload bytes, without the header.
    pub payload: &'a [u8],
}

impl<'a> PacketRef<'a> {
    /// Parses the packet at the front of `src`, refusing a payload longer than `max_payload`.
    ///
    /// Returns the packet and the number of bytes it takes in `src` (header and payload), or
    /// `NeedMore` while `src` ends inside a packet. As with [`PacketDecoder`], an error is final
    /// for the stream: its framing is lost.
    ///
    /// ```
    /// # use switchboard_codec::packet::{PacketError, PacketRef, DEFAULT_MAX_PAYLOAD as MAX};
    /// # use switchboard_codec::Decoded;
    /// # fn main() -> Result<(), PacketError> {
    /// let read = b"SWB1\x00\x07\x00\x00\x00\x02hiSWB1\x00\x08\x00";
    /// let mut at = 0;
    /// let mut commands = Vec::new();
    /// while let Decoded::Complete((packet, used)) = PacketRef::parse(&read[at..], MAX)? {
    ///     commands.push((packet.command, packet.payload));
    ///     at += used;
    /// }
    /// assert_eq!(commands, [(7, &b"hi"[..])]);
    /// // The unfinished packet waits for the next read.
    /// assert_eq!(&read[at..], b"SWB1\x00\x08\x00");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// [`PacketDecoder`]: super::PacketDecoder
    #[inline]
    pub fn parse(src: &'a [u8], max_payload: u32) -> Result<Decoded<(Self, usize)>, PacketError> {
        let Some((head, body)) = src.split_first_chunk::<HEADER_LEN>() else {
            return short_header(src);
        };
        let header = PacketHeader::from_whole(head, max_payload)?;
        let Some(payload) = body.get(..header.payload_len as usize) else {
            return Ok(Decoded::NeedMore);
        };
        let packet = PacketRef {
            command: header.command,
            payload,
        };
        Ok(Decoded::Complete((packet, HEADER_LEN + payload.len())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::test_support::{encoded, split_at_points};
    use crate::packet::{Packet, PacketDecoder, DEFAULT_MAX_PAYLOAD};
    use bytes::BytesMut;
    use proptest::prelude::*;

    fn parse(src: &[u8]) -> Result<Decoded<(PacketRef<'_>, usize)>, PacketError> {
        PacketRef::parse(src, DEFAULT_MAX_PAYLOAD)
    }

    /// What a stream fed in `chunks` becomes: the packets, then the error that ended the stream
    /// or, if none did, how many bytes of an unfinished packet stay buffered. `PacketRef` keeps
    /// its unhandled bytes in a `Vec`, as a receiver with a plain read buffer would.
    type Outcome = (Vec<(u16, Vec<u8>)>, Result<usize, PacketError>);

    fn run_borrowed(max: u32, chunks: &[&[u8]]) -> Outcome {
        let mut buffered = Vec::new();
        let mut packets = Vec::new();
        for chunk in chunks {
            buffered.extend_from_slice(chunk);
            let mut at = 0;
            loop {
                match PacketRef::parse(&buffered[at..], max) {
                    Ok(Decoded::Complete((packet, used))) => {
                        packets.push((packet.command, packet.payload.to_vec()));
                        at += used;
                    }
                    Ok(Decoded::NeedMore) => break,
                    Err(error) => return (packets, Err(error)),
                }
            }
            buffered.drain(..at);
        }
        (packets, Ok(buffered.len()))
    }

    fn run_decoder(max: u32, chunks: &[&[u8]]) -> Outcome {
        let mut decoder = PacketDecoder::new(max);
        let mut src = BytesMut::new();
        let mut packets = Vec::new();
        for chunk in chunks {
            src.extend_from_slice(chunk);
            loop {
                match decoder.decode(&mut src) {
                    Ok(Decoded::Complete(Packet { command, payload })) => {
                        packets.push((command, payload.to_vec()));
                    }
                    Ok(Decoded::NeedMore) => break,
                    Err(error) => return (packets, Err(error)),
                }
            }
        }
        (packets, Ok(src.len()))
    }

    #[test]
    fn parses_one_whole_packet_and_reports_its_length() {
        let bytes = encoded(3, b"hello");
        let packet = PacketRef {
            command: 3,
            payload: b"hello",
        };
        assert_eq!(parse(&bytes), Ok(Decoded::Complete((packet, 15))));
    }

    #[test]
    fn payload_borrows_from_the_input() {
        let bytes = encoded(1, b"zero copy");
        let Ok(Decoded::Complete((packet, _))) = parse(&bytes) else {
            panic!("expected a packet");
        };
        assert_eq!(packet.payload.as_ptr(), bytes[HEADER_LEN..].as_ptr());
    }

    #[test]
    fn empty_payload_is_a_whole_packet() {
        let bytes = encoded(9, b"");
        let packet = PacketRef {
            command: 9,
            payload: b"",
        };
        assert_eq!(parse(&bytes), Ok(Decoded::Complete((packet, HEADER_LEN))));
    }

    #[test]
    fn bytes_after_the_packet_are_left_alone() {
        let mut bytes = encoded(2, b"first");
        bytes.extend(encoded(3, b"second"));
        let packet = PacketRef {
            command: 2,
            payload: b"first",
        };
        assert_eq!(parse(&bytes), Ok(Decoded::Complete((packet, 15))));
    }

    #[test]
    fn every_proper_prefix_needs_more() {
        let bytes = encoded(5, b"split across reads");
        for end in 0..bytes.len() {
            assert_eq!(parse(&bytes[..end]), Ok(Decoded::NeedMore), "prefix {end}");
        }
    }

    #[test]
    fn http_request_is_refused_on_its_first_byte() {
        let refusal = Err(PacketError::BadMagic { got: 0x4700_0000 });
        assert_eq!(parse(b"G"), refusal);
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), refusal);
    }

    #[test]
    fn wrong_magic_in_a_whole_header_is_refused() {
        assert_eq!(
            parse(b"SWB2\0\x01\0\0\0\0"),
            Err(PacketError::BadMagic { got: 0x5357_4232 })
        );
    }

    #[test]
    fn too_long_is_refused_from_the_header_alone() {
        let header = PacketHeader {
            command: 1,
            payload_len: 17,
        };
        assert_eq!(
            PacketRef::parse(&header.to_bytes(), 16),
            Err(PacketError::TooLong { len: 17, max: 16 })
        );
        assert_eq!(
            PacketRef::parse(&header.to_bytes(), 17),
            Ok(Decoded::NeedMore)
        );
    }

    fn any_packets() -> impl Strategy<Value = Vec<(u16, Vec<u8>)>> {
        proptest::collection::vec(
            (any::<u16>(), proptest::collection::vec(any::<u8>(), 0..300)),
            0..12,
        )
    }

    proptest! {
        #[test]
        fn agrees_with_the_decoder_under_any_split(
            good in any_packets(),
            junk in proptest::collection::vec(any::<u8>(), 0..64),
            magic_prefix in 0usize..=4,
            max in 0u32..400,
            points in proptest::collection::vec(any::<usize>(), 0..24),
        ) {
            // Valid packets, then junk that sometimes begins like the magic, so every refusal
            // and every wait is reached from every kind of split.
            let mut stream: Vec<u8> = good.iter().flat_map(|(c, p)| encoded(*c, p)).collect();
            stream.extend_from_slice(&b"SWB1"[..magic_prefix]);
            stream.extend_from_slice(&junk);
            let chunks = split_at_points(&stream, &points);
            let borrowed = run_borrowed(max, &chunks);
            prop_assert_eq!(&borrowed, &run_decoder(max, &chunks));
            prop_assert_eq!(&borrowed, &run_decoder(max, &[&stream]));
        }

        #[test]
        fn packets_back_to_back_come_out_as_sent_under_any_split(
            sent in any_packets(),
            points in proptest::collection::vec(any::<usize>(), 0..24),
        ) {
            let stream: Vec<u8> = sent.iter().flat_map(|(c, p)| encoded(*c, p)).collect();
            let chunks = split_at_points(&stream, &points);
            let (packets, end) = run_borrowed(DEFAULT_MAX_PAYLOAD, &chunks);
            prop_assert_eq!(packets, sent);
            prop_assert_eq!(end, Ok(0));
        }
    }
}
