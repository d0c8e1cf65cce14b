//! The 10-byte packet header: `magic u32 | command u16 | length u32`, big-endian.
//!
//! Parsing reads a slice and consumes nothing. It refuses a wrong magic on the first byte that
//! cannot begin "SWB1" and an over-long length as soon as the length field is whole, so neither
//! refusal ever waits for more input than the header.

use bytes::{BufMut, BytesMut};

use super::{EncodeError, PacketError};
use crate::Decoded;

/// The magic number that opens every packet: ASCII "SWB1".
pub const MAGIC: u32 = 0x5357_4231;

/// The header's length in bytes.
pub const HEADER_LEN: usize = 10;

const MAGIC_BYTES: [u8; 4] = MAGIC.to_be_bytes();

/// A parsed or to-be-written packet header (the magic is implied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketHeader {
    /// What the payload means.
    pub command: u16,
    /// The payload's length in bytes.
    pub payload_len: u32,
}

impl PacketHeader {
    /// The header for a payload of `payload_len` bytes, refused if it does not fit in a `u32`.
    pub fn for_payload(command: u16, payload_len: usize) -> Result<Self, EncodeError> {
        let payload_len = u32::try_from(payload_len)
            .map_err(|_| EncodeError::PayloadTooLong { len: payload_len })?;
        Ok(PacketHeader {
            command,
            payload_len,
        })
    }

    /// Parses the header at the start of `src`, refusing a payload longer than `max_payload`.
    ///
    /// Returns `NeedMore` while `src` is a proper prefix of a valid header.
    #[inline]
    pub fn parse(src: &[u8], max_payload: u32) -> Result<Decoded<Self>, PacketError> {
        match src.first_chunk::<HEADER_LEN>() {
            Some(head) => Self::from_whole(head, max_payload).map(Decoded::Complete),
            None => short_header(src),
        }
    }

    /// Checks a whole header: the magic, then the length against `max_payload`.
    #[inline]
    pub(super) fn from_whole(
        head: &[u8; HEADER_LEN],
        max_payload: u32,
    ) -> Result<Self, PacketError> {
        let [m0, m1, m2, m3, c0, c1, l0, l1, l2, l3] = *head;
        if [m0, m1, m2, m3] != MAGIC_BYTES {
            check_magic_prefix(&head[..4])?;
        }
        let header = PacketHeader {
            command: u16::from_be_bytes([c0, c1]),
            payload_len: u32::from_be_bytes([l0, l1, l2, l3]),
        };
        if header.payload_len > max_payload {
            return Err(PacketError::TooLong {
                len: header.payload_len,
                max: max_payload,
            });
        }
        Ok(header)
    }

    /// The header's wire bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..4].copy_from_slice(&MAGIC_BYTES);
        out[4..6].copy_from_slice(&self.command.to_be_bytes());
        out[6..].copy_from_slice(&self.payload_len.to_be_bytes());
        out
    }

    /// Appends the header's wire bytes to `dst`.
    pub fn write(&self, dst: &mut BytesMut) {
        dst.put_slice(&self.to_bytes());
    }
}

/// The outcome for fewer than `HEADER_LEN` bytes: a refusal of the magic, or a wait.
///
/// Cold: a stream that keeps up delivers whole headers, so only the first packet of a
/// connection and the tail of a read come here.
#[cold]
pub(super) fn short_header<T>(src: &[u8]) -> Result<Decoded<T>, PacketError> {
    check_magic_prefix(src)?;
    Ok(Decoded::NeedMore)
}

/// Refuses `seen` (at most the first four bytes) if it cannot begin the magic.
#[cold]
fn check_magic_prefix(seen: &[u8]) -> Result<(), PacketError> {
    let seen = &seen[..seen.len().min(MAGIC_BYTES.len())];
    let Some(at) = seen.iter().zip(MAGIC_BYTES).position(|(&a, b)| a != b) else {
        return Ok(());
    };
    let mut got = [0u8; 4];
    got[..=at].copy_from_slice(&seen[..=at]);
    Err(PacketError::BadMagic {
        got: u32::from_be_bytes(got),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad_magic(got: u32) -> Result<Decoded<PacketHeader>, PacketError> {
        Err(PacketError::BadMagic { got })
    }

    #[test]
    fn magic_spells_swb1() {
        assert_eq!(&MAGIC.to_be_bytes(), b"SWB1");
    }

    #[test]
    fn header_round_trips_through_its_bytes() {
        let header = PacketHeader {
            command: 0x0102,
            payload_len: 0x0304_0506,
        };
        let bytes = header.to_bytes();
        assert_eq!(bytes, *b"SWB1\x01\x02\x03\x04\x05\x06");
        assert_eq!(
            PacketHeader::parse(&bytes, u32::MAX),
            Ok(Decoded::Complete(header))
        );
    }

    #[test]
    fn every_proper_prefix_of_a_valid_header_needs_more() {
        let bytes = PacketHeader {
            command: 7,
            payload_len: 3,
        }
        .to_bytes();
        for end in 0..HEADER_LEN {
            assert_eq!(
                PacketHeader::parse(&bytes[..end], 3),
                Ok(Decoded::NeedMore),
                "prefix of {end} bytes"
            );
        }
    }

    #[test]
    fn http_request_is_refused_on_its_first_byte() {
        assert_eq!(PacketHeader::parse(b"G", 0), bad_magic(0x4700_0000));
        assert_eq!(
            PacketHeader::parse(b"GET / HTTP/1.1\r\n", 0),
            bad_magic(0x4700_0000)
        );
    }

    #[test]
    fn tls_client_hello_is_refused_on_its_first_byte() {
        assert_eq!(PacketHeader::parse(&[0x16], 0), bad_magic(0x1600_0000));
        let hello = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03];
        assert_eq!(PacketHeader::parse(&hello, 0), bad_magic(0x1600_0000));
    }

    #[test]
    fn mismatch_after_a_valid_prefix_reports_the_prefix_and_the_mismatch() {
        assert_eq!(PacketHeader::parse(b"SX", 0), bad_magic(0x5358_0000));
        assert_eq!(PacketHeader::parse(b"SWX", 0), bad_magic(0x5357_5800));
        assert_eq!(
            PacketHeader::parse(b"SWB2\0\0\0\0\0\0", 0),
            bad_magic(0x5357_4232)
        );
    }

    #[test]
    fn too_long_is_refused_from_the_header_alone() {
        let header = PacketHeader {
            command: 1,
            payload_len: 101,
        };
        assert_eq!(
            PacketHeader::parse(&header.to_bytes(), 100),
            Err(PacketError::TooLong { len: 101, max: 100 })
        );
        let at_max = PacketHeader {
            payload_len: 100,
            ..header
        };
        assert_eq!(
            PacketHeader::parse(&at_max.to_bytes(), 100),
            Ok(Decoded::Complete(at_max))
        );
    }

    #[test]
    fn for_payload_refuses_lengths_over_u32_max() {
        assert_eq!(
            PacketHeader::for_payload(1, u32::MAX as usize),
            Ok(PacketHeader {
                command: 1,
                payload_len: u32::MAX
            })
        );
        #[cfg(target_pointer_width = "64")]
        assert_eq!(
            PacketHeader::for_payload(1, u32::MAX as usize + 1),
            Err(EncodeError::PayloadTooLong {
                len: u32::MAX as usize + 1
            })
        );
    }
}
