//! `PacketEncoder`: packet headers for vectored writes, and whole small packets in one buffer.
//!
//! A header is written into a reusable scratch buffer and handed out as `Bytes`; the payload's
//! `Bytes` goes out beside it untouched, so one encoded push can be shared by every recipient.
//! It never copies a payload on the vectored path and refuses a payload over `u32::MAX` bytes.

use bytes::{BufMut, Bytes, BytesMut};

use super::{EncodeError, PacketHeader, HEADER_LEN};

/// How many headers one scratch allocation holds.
///
/// Once they are all written out and dropped, the scratch buffer is reclaimed in place, so a
/// sender that keeps up allocates nothing; one that holds headers in a queue allocates once per
/// this many packets.
const HEADERS_PER_SCRATCH: usize = 128;

/// Encodes Switchboard packets.
#[derive(Debug, Default)]
pub struct PacketEncoder {
    scratch: BytesMut,
}

impl PacketEncoder {
    /// An encoder with no scratch buffer yet; the first header allocates it.
    pub fn new() -> Self {
        PacketEncoder::default()
    }

    /// The 10 header bytes for a packet of `command` with a `payload_len`-byte payload.
    ///
    /// Send them and then the payload, e.g. as two `IoSlice`s of one `writev`.
    pub fn encode_header(
        &mut self,
        command: u16,
        payload_len: usize,
    ) -> Result<Bytes, EncodeError> {
        let header = PacketHeader::for_payload(command, payload_len)?;
        if self.scratch.capacity() < HEADER_LEN {
            self.scratch.reserve(HEADER_LEN * HEADERS_PER_SCRATCH);
        }
        header.write(&mut self.scratch);
        Ok(self.scratch.split().freeze())
    }

    /// The header and the payload of one packet, ready for a vectored write.
    pub fn encode(&mut self, command: u16, payload: Bytes) -> Result<(Bytes, Bytes), EncodeError> {
        let header = self.encode_header(command, payload.len())?;
        Ok((header, payload))
    }

    /// Appends a whole packet, header then payload, to `dst`.
    ///
    /// Copies the payload; meant for small packets, where one contiguous write beats two
    /// slices. On error `dst` is left untouched.
    pub fn encode_into(
        &mut self,
        command: u16,
        payload: &[u8],
        dst: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        let header = PacketHeader::for_payload(command, payload.len())?;
        dst.reserve(HEADER_LEN + payload.len());
        header.write(dst);
        dst.put_slice(payload);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{Packet, PacketDecoder};
    use crate::Decoded;

    #[test]
    fn header_bytes_follow_the_wire_layout() {
        let mut encoder = PacketEncoder::new();
        let header = encoder.encode_header(0x0a0b, 0x0102_0304).unwrap();
        assert_eq!(&header[..], b"SWB1\x0a\x0b\x01\x02\x03\x04");
    }

    #[test]
    fn vectored_pair_passes_the_payload_through_untouched() {
        let payload = Bytes::from_static(b"shared by every recipient");
        let (header, out) = PacketEncoder::new().encode(7, payload.clone()).unwrap();
        assert_eq!(header.len(), HEADER_LEN);
        assert_eq!(out.as_ptr(), payload.as_ptr(), "the payload was not copied");
    }

    #[test]
    fn headers_stay_valid_while_the_scratch_is_reused() {
        let mut encoder = PacketEncoder::new();
        let headers: Vec<Bytes> = (0..3 * HEADERS_PER_SCRATCH as u16)
            .map(|n| encoder.encode_header(n, usize::from(n)).unwrap())
            .collect();
        for (n, header) in headers.iter().enumerate() {
            let expected = PacketHeader::for_payload(n as u16, n).unwrap().to_bytes();
            assert_eq!(&header[..], &expected[..], "header {n}");
        }
    }

    #[test]
    fn contiguous_packet_decodes_back() {
        let mut dst = BytesMut::new();
        let mut encoder = PacketEncoder::new();
        encoder.encode_into(1, b"one", &mut dst).unwrap();
        encoder.encode_into(2, b"", &mut dst).unwrap();
        let mut decoder = PacketDecoder::default();
        for (command, payload) in [(1, &b"one"[..]), (2, b"")] {
            let expected = Packet {
                command,
                payload: Bytes::copy_from_slice(payload),
            };
            assert_eq!(decoder.decode(&mut dst), Ok(Decoded::Complete(expected)));
        }
        assert!(dst.is_empty());
    }

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn payload_over_u32_max_is_refused() {
        let len = u32::MAX as usize + 1;
        assert_eq!(
            PacketEncoder::new().encode_header(1, len),
            Err(EncodeError::PayloadTooLong { len })
        );
    }
}
