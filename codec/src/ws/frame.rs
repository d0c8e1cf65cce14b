//! The frame header of RFC 6455 §5.2: FIN, RSV1-3, opcode, mask bit, 7/16/64-bit payload length
//! and the masking key. `parse` reads it in one pass over a slice and consumes nothing; it refuses
//! what is wrong whatever the role: reserved opcodes, fragmented or long control frames, a
//! 64-bit length with the MSB set, and lengths not in their minimal form (the RFC says the
//! minimal form MUST be used; we hold peers to it, which costs nothing and keeps one encoding
//! per header). RSV bits and the mask bit are judged by the decoder, which knows the role.

use bytes::BytesMut;

use super::error::ProtocolError;
use super::opcode::OpCode;
use crate::Decoded;

/// The longest header: 2 bytes, a 64-bit length and a masking key.
pub const MAX_HEADER_LEN: usize = 14;

/// The largest payload of a close, ping or pong frame (§5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The final fragment of a message.
    pub fin: bool,
    /// RSV1-3 as three bits: [`FrameHeader::RSV1`], [`FrameHeader::RSV2`], [`FrameHeader::RSV3`].
    pub rsv: u8,
    /// What the payload is.
    pub opcode: OpCode,
    /// The masking key, present on every client-to-server frame.
    pub mask: Option<[u8; 4]>,
    /// The payload length in bytes, below 2^63.
    pub payload_len: u64,
}

impl FrameHeader {
    /// RSV1 in [`FrameHeader::rsv`] (used by permessage-deflate).
    pub const RSV1: u8 = 0b100;
    /// RSV2 in [`FrameHeader::rsv`].
    pub const RSV2: u8 = 0b010;
    /// RSV3 in [`FrameHeader::rsv`].
    pub const RSV3: u8 = 0b001;

    /// Parses the header at the start of `src`, returning it with its length in bytes.
    /// `NeedMore` if `src` ends inside the header. Nothing is consumed.
    #[inline]
    pub fn parse(src: &[u8]) -> Result<Decoded<(FrameHeader, usize)>, ProtocolError> {
        let [b0, b1, ..] = *src else {
            return Ok(Decoded::NeedMore);
        };
        let fin = b0 & 0x80 != 0;
        let opcode =
            OpCode::from_u8(b0 & 0x0F).ok_or(ProtocolError::UnknownOpcode { opcode: b0 & 0x0F })?;
        let len7 = b1 & 0x7F;
        if opcode.is_control() {
            if !fin {
                return Err(ProtocolError::FragmentedControlFrame { opcode });
            }
            // Refused on the 7-bit field alone: no need to wait for an extended length.
            if usize::from(len7) > MAX_CONTROL_PAYLOAD {
                return Err(ProtocolError::ControlFrameTooLong { opcode });
            }
        }
        let (payload_len, mut header_len) = match len7 {
            126 => {
                let Some(&[hi, lo]) = src.get(2..4) else {
                    return Ok(Decoded::NeedMore);
                };
                let len = u64::from(u16::from_be_bytes([hi, lo]));
                if len < 126 {
                    return Err(ProtocolError::NonMinimalLength { len });
                }
                (len, 4)
            }
            127 => {
                let Some(ext) = src.get(2..10).and_then(|s| <[u8; 8]>::try_from(s).ok()) else {
                    return Ok(Decoded::NeedMore);
                };
                let len = u64::from_be_bytes(ext);
                if len >> 63 != 0 {
                    return Err(ProtocolError::LengthMsbSet);
                }
                if len <= u64::from(u16::MAX) {
                    return Err(ProtocolError::NonMinimalLength { len });
                }
                (len, 10)
            }
            len => (u64::from(len), 2),
        };
        let mask = if b1 & 0x80 != 0 {
            let Some(&[k0, k1, k2, k3]) = src.get(header_len..header_len + 4) else {
                return Ok(Decoded::NeedMore);
            };
            header_len += 4;
            Some([k0, k1, k2, k3])
        } else {
            None
        };
        let header = FrameHeader {
            fin,
            rsv: (b0 >> 4) & 0b111,
            opcode,
            mask,
            payload_len,
        };
        Ok(Decoded::Complete((header, header_len)))
    }

    /// The number of bytes [`FrameHeader::write`] appends: 2 to 14.
    pub const fn encoded_len(&self) -> usize {
        let len_bytes = match self.payload_len {
            0..=125 => 0,
            126..=0xFFFF => 2,
            _ => 8,
        };
        let mask_bytes = if self.mask.is_some() { 4 } else { 0 };
        2 + len_bytes + mask_bytes
    }

    /// Appends the header to `dst`, with the length in its minimal form. `payload_len` must be
    /// below 2^63: a larger one cannot be sent and is written as given.
    pub fn write(&self, dst: &mut BytesMut) {
        let mut head = [0u8; MAX_HEADER_LEN];
        let len = self.write_to(&mut head);
        dst.extend_from_slice(&head[..len]);
    }

    /// Writes the header into `head`, returning its length. One stack buffer, one copy out.
    fn write_to(&self, head: &mut [u8; MAX_HEADER_LEN]) -> usize {
        head[0] = (u8::from(self.fin) << 7) | ((self.rsv & 0b111) << 4) | self.opcode as u8;
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut at = match self.payload_len {
            len @ 0..=125 => {
                head[1] = mask_bit | len as u8;
                2
            }
            len @ 126..=0xFFFF => {
                head[1] = mask_bit | 126;
                head[2..4].copy_from_slice(&(len as u16).to_be_bytes());
                4
            }
            len => {
                head[1] = mask_bit | 127;
                head[2..10].copy_from_slice(&len.to_be_bytes());
                10
            }
        };
        if let Some(key) = self.mask {
            head[at..at + 4].copy_from_slice(&key);
            at += 4;
        }
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(src: &[u8]) -> Result<Decoded<(FrameHeader, usize)>, ProtocolError> {
        FrameHeader::parse(src)
    }

    fn header(opcode: OpCode, payload_len: u64, mask: Option<[u8; 4]>) -> FrameHeader {
        FrameHeader {
            fin: true,
            rsv: 0,
            opcode,
            mask,
            payload_len,
        }
    }

    #[test]
    fn rfc_5_7_256_bytes_binary_uses_the_16_bit_length() {
        let parsed = parse(&[0x82, 0x7E, 0x01, 0x00]).unwrap().complete();
        assert_eq!(parsed, Some((header(OpCode::Binary, 256, None), 4)));
    }

    #[test]
    fn rfc_5_7_64_kib_binary_uses_the_64_bit_length() {
        let src = [0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00];
        let parsed = parse(&src).unwrap().complete();
        assert_eq!(parsed, Some((header(OpCode::Binary, 65536, None), 10)));
    }

    #[test]
    fn rfc_5_7_masked_hello_header_carries_the_key() {
        let src = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d];
        let parsed = parse(&src).unwrap().complete();
        let expected = header(OpCode::Text, 5, Some([0x37, 0xfa, 0x21, 0x3d]));
        assert_eq!(parsed, Some((expected, 6)));
    }

    #[test]
    fn fin_and_rsv_bits_are_reported() {
        let (parsed, _) = parse(&[0x51, 0x00]).unwrap().complete().unwrap();
        assert!(!parsed.fin);
        assert_eq!(parsed.rsv, FrameHeader::RSV1 | FrameHeader::RSV3);
    }

    #[test]
    fn every_truncation_asks_for_more() {
        let src = [0x82, 0xFF, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00, 1, 2, 3, 4];
        for end in 0..src.len() {
            assert_eq!(parse(&src[..end]), Ok(Decoded::NeedMore), "{end}");
        }
        assert!(parse(&src).unwrap().complete().is_some());
    }

    #[test]
    fn reserved_opcodes_are_refused() {
        for opcode in [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            assert_eq!(
                parse(&[0x80 | opcode]),
                Ok(Decoded::NeedMore),
                "one byte is not judged yet"
            );
            assert_eq!(
                parse(&[0x80 | opcode, 0]),
                Err(ProtocolError::UnknownOpcode { opcode })
            );
        }
    }

    #[test]
    fn fragmented_control_frame_is_refused() {
        assert_eq!(
            parse(&[0x09, 0x00]),
            Err(ProtocolError::FragmentedControlFrame {
                opcode: OpCode::Ping
            })
        );
    }

    #[test]
    fn control_frame_over_125_bytes_is_refused_before_its_extended_length() {
        assert_eq!(
            parse(&[0x88, 0x7E]),
            Err(ProtocolError::ControlFrameTooLong {
                opcode: OpCode::Close
            })
        );
        assert_eq!(
            parse(&[0x8A, 0xFF]),
            Err(ProtocolError::ControlFrameTooLong {
                opcode: OpCode::Pong
            })
        );
    }

    #[test]
    fn control_frame_of_125_bytes_is_accepted() {
        let (parsed, len) = parse(&[0x89, 125]).unwrap().complete().unwrap();
        assert_eq!((parsed.payload_len, len), (125, 2));
    }

    #[test]
    fn length_with_msb_set_is_refused() {
        let src = [0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(parse(&src), Err(ProtocolError::LengthMsbSet));
    }

    #[test]
    fn non_minimal_lengths_are_refused() {
        assert_eq!(
            parse(&[0x82, 0x7E, 0x00, 0x7D]),
            Err(ProtocolError::NonMinimalLength { len: 125 })
        );
        let src = [0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF];
        assert_eq!(
            parse(&src),
            Err(ProtocolError::NonMinimalLength { len: 0xFFFF })
        );
    }

    #[test]
    fn encoded_len_covers_every_form() {
        assert_eq!(header(OpCode::Text, 125, None).encoded_len(), 2);
        assert_eq!(header(OpCode::Text, 126, None).encoded_len(), 4);
        assert_eq!(header(OpCode::Text, 0xFFFF, Some([0; 4])).encoded_len(), 8);
        assert_eq!(header(OpCode::Text, 0x10000, None).encoded_len(), 10);
        assert_eq!(
            header(OpCode::Text, u64::MAX >> 1, Some([0; 4])).encoded_len(),
            14
        );
    }

    fn any_header() -> impl Strategy<Value = FrameHeader> {
        let opcode = prop::sample::select(vec![
            OpCode::Continuation,
            OpCode::Text,
            OpCode::Binary,
            OpCode::Close,
            OpCode::Ping,
            OpCode::Pong,
        ]);
        let len = prop_oneof![0..=125u64, 126..=0xFFFFu64, 0x10000..=(u64::MAX >> 1)];
        (any::<bool>(), 0..8u8, opcode, any::<Option<[u8; 4]>>(), len).prop_map(
            |(fin, rsv, opcode, mask, len)| FrameHeader {
                fin: fin || opcode.is_control(),
                rsv,
                opcode,
                mask,
                payload_len: if opcode.is_control() { len % 126 } else { len },
            },
        )
    }

    proptest! {
        #[test]
        fn write_then_parse_round_trips(header in any_header(), tail in prop::collection::vec(any::<u8>(), 0..4)) {
            let mut dst = BytesMut::new();
            header.write(&mut dst);
            prop_assert_eq!(dst.len(), header.encoded_len());
            let header_len = dst.len();
            dst.extend_from_slice(&tail);
            prop_assert_eq!(parse(&dst), Ok(Decoded::Complete((header, header_len))));
            for end in 0..header_len {
                prop_assert_eq!(parse(&dst[..end]), Ok(Decoded::NeedMore));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_prefixes_agree(src in prop::collection::vec(any::<u8>(), 0..16)) {
            let whole = parse(&src);
            if let Ok(Decoded::Complete((_, len))) = whole {
                prop_assert!(len <= src.len());
                prop_assert_eq!(parse(&src[..len]), whole);
            }
        }
    }
}
