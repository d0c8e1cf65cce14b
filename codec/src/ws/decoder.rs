//! Frames off a byte stream: header checks for the role, progressive in-place unmasking, and a
//! payload split off `src` without copying. `FrameCursor` is the frame in progress, shared
//! with the message reader; it consumes nothing from `src` until its frame is whole, and unmasks
//! each arrived byte exactly once. On error nothing is consumed, so a repeated call fails again.
//! Frame level only: fragment order, UTF-8 and close payloads are the message reader's job.

use std::marker::PhantomData;

use bytes::{Buf, Bytes, BytesMut};

use super::error::ProtocolError;
use super::frame::FrameHeader;
use super::mask::apply_mask;
use super::opcode::OpCode;
use super::role::Role;
use crate::Decoded;

/// One whole frame with its payload unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The final fragment of a message.
    pub fin: bool,
    /// What the payload is.
    pub opcode: OpCode,
    /// The unmasked payload, split off the input without copying.
    pub payload: Bytes,
}

/// The frame whose header has been accepted and whose payload is still arriving in `src`.
/// `src[..header_len]` is its header, `src[header_len..unmasked]` the payload bytes already
/// unmasked in place. 24 bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameCursor {
    /// Where the frame ends in `src`; 0 between frames (a frame is never shorter than 2 bytes).
    end: usize,
    unmasked: usize,
    mask: Option<[u8; 4]>,
    header_len: u8,
    opcode: OpCode,
    fin: bool,
}

impl FrameCursor {
    pub(crate) const IDLE: FrameCursor = FrameCursor {
        end: 0,
        unmasked: 0,
        mask: None,
        header_len: 0,
        opcode: OpCode::Continuation,
        fin: false,
    };

    /// Whether no frame is in progress.
    #[inline]
    pub(crate) fn is_idle(&self) -> bool {
        self.end == 0
    }

    /// Where the frame in progress ends in `src` (header included); `None` between frames.
    #[inline]
    pub(crate) fn end(&self) -> Option<usize> {
        (!self.is_idle()).then_some(self.end)
    }

    #[inline]
    pub(crate) fn opcode(&self) -> OpCode {
        self.opcode
    }

    #[inline]
    pub(crate) fn fin(&self) -> bool {
        self.fin
    }

    /// Parses the header at the start of `src` and checks the rules that depend on the role and
    /// the negotiated extensions. Judges the first two bytes before waiting for the rest.
    #[inline]
    pub(crate) fn parse_header<R: Role>(
        src: &[u8],
        allowed_rsv: u8,
    ) -> Result<Decoded<(FrameHeader, usize)>, ProtocolError> {
        let [b0, b1, ..] = *src else {
            return Ok(Decoded::NeedMore);
        };
        let rsv = (b0 >> 4) & 0b111;
        if rsv & !allowed_rsv != 0 {
            return Err(ProtocolError::ReservedBitsSet { rsv });
        }
        if (b1 & 0x80 != 0) != R::RECEIVES_MASKED {
            return Err(R::MASK_VIOLATION);
        }
        FrameHeader::parse(src)
    }

    /// Makes `header`, already accepted, the frame in progress.
    #[inline]
    pub(crate) fn start(&mut self, header: &FrameHeader, header_len: usize) {
        // The caller bounded the payload by a usize limit; saturating keeps a 32-bit target
        // with a limit near usize::MAX from wrapping (such a frame never completes).
        let payload_len = usize::try_from(header.payload_len).unwrap_or(usize::MAX);
        *self = FrameCursor {
            end: header_len.saturating_add(payload_len),
            unmasked: header_len,
            mask: header.mask,
            header_len: header_len as u8,
            opcode: header.opcode,
            fin: header.fin,
        };
    }

    /// Unmasks the payload bytes that arrived since the last call, in place, and returns them.
    #[inline]
    pub(crate) fn unmask_arrived<'a>(&mut self, src: &'a mut [u8]) -> &'a [u8] {
        let arrived = src.len().min(self.end);
        let Some(fresh) = src.get_mut(self.unmasked..arrived) else {
            return &[];
        };
        if let Some(key) = self.mask {
            apply_mask(fresh, key, self.unmasked - usize::from(self.header_len));
        }
        self.unmasked = arrived;
        fresh
    }

    /// Whether the whole frame has arrived and been unmasked.
    #[inline]
    pub(crate) fn is_complete(&self) -> bool {
        !self.is_idle() && self.unmasked == self.end
    }

    /// The unmasked payload of a complete frame, still in `src`.
    #[inline]
    pub(crate) fn payload<'a>(&self, src: &'a [u8]) -> &'a [u8] {
        src.get(usize::from(self.header_len)..self.end)
            .unwrap_or(&[])
    }

    /// Splits the complete frame off `src` and returns its payload; the cursor becomes idle.
    #[inline]
    pub(crate) fn take(&mut self, src: &mut BytesMut) -> Bytes {
        // The `min`s only matter to a caller who shortened `src` against the contract: they
        // turn what would be a panic into garbage for that caller alone.
        let end = self.end.min(src.len());
        let header_len = usize::from(self.header_len).min(end);
        *self = FrameCursor::IDLE;
        src.advance(header_len);
        if end == header_len {
            // An empty payload needs no share of the buffer.
            return Bytes::new();
        }
        src.split_to(end - header_len).freeze()
    }

    /// Drops the complete frame from `src` (its payload was copied elsewhere).
    #[inline]
    pub(crate) fn discard(&mut self, src: &mut BytesMut) {
        src.advance(self.end.min(src.len()));
        *self = FrameCursor::IDLE;
    }
}

/// Decodes frames one at a time, for a peer playing the other side of role `R`.
///
/// Call [`FrameDecoder::decode`] with the same buffer each time, appending what the socket
/// delivers: payload bytes are unmasked in place as they arrive.
#[derive(Debug)]
pub struct FrameDecoder<R: Role> {
    cursor: FrameCursor,
    max_frame_payload: usize,
    allowed_rsv: u8,
    role: PhantomData<fn() -> R>,
}

impl<R: Role> FrameDecoder<R> {
    /// A decoder refusing frames whose payload exceeds `max_frame_payload` bytes (1009) and any
    /// RSV bit (1002).
    pub fn new(max_frame_payload: usize) -> Self {
        FrameDecoder {
            cursor: FrameCursor::IDLE,
            max_frame_payload,
            allowed_rsv: 0,
            role: PhantomData,
        }
    }

    /// Accepts the RSV bits in `rsv` (as [`FrameHeader::rsv`]), for negotiated extensions.
    pub fn with_allowed_rsv(mut self, rsv: u8) -> Self {
        self.allowed_rsv = rsv;
        self
    }

    /// Decodes the next frame at the start of `src`, splitting it off when whole.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Decoded<Frame>, ProtocolError> {
        if self.cursor.is_idle() {
            let Decoded::Complete((header, header_len)) =
                FrameCursor::parse_header::<R>(src, self.allowed_rsv)?
            else {
                return Ok(Decoded::NeedMore);
            };
            if header.payload_len > self.max_frame_payload as u64 {
                return Err(ProtocolError::FrameTooBig {
                    len: header.payload_len,
                    max: self.max_frame_payload,
                });
            }
            self.cursor.start(&header, header_len);
        }
        self.cursor.unmask_arrived(src);
        if !self.cursor.is_complete() {
            return Ok(Decoded::NeedMore);
        }
        let (fin, opcode) = (self.cursor.fin(), self.cursor.opcode());
        let payload = self.cursor.take(src);
        Ok(Decoded::Complete(Frame {
            fin,
            opcode,
            payload,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::role::{Client, Server};

    fn decode_all<R: Role>(decoder: &mut FrameDecoder<R>, bytes: &[u8]) -> Vec<Frame> {
        let mut src = BytesMut::from(bytes);
        let mut frames = Vec::new();
        while let Decoded::Complete(frame) = decoder.decode(&mut src).unwrap() {
            frames.push(frame);
        }
        frames
    }

    fn frame(fin: bool, opcode: OpCode, payload: &'static [u8]) -> Frame {
        Frame {
            fin,
            opcode,
            payload: Bytes::from_static(payload),
        }
    }

    #[test]
    fn rfc_5_7_single_frame_unmasked_text() {
        let frames = decode_all(
            &mut FrameDecoder::<Client>::new(125),
            &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f],
        );
        assert_eq!(frames, [frame(true, OpCode::Text, b"Hello")]);
    }

    #[test]
    fn rfc_5_7_single_frame_masked_text() {
        let bytes = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let frames = decode_all(&mut FrameDecoder::<Server>::new(125), &bytes);
        assert_eq!(frames, [frame(true, OpCode::Text, b"Hello")]);
    }

    #[test]
    fn rfc_5_7_fragmented_unmasked_text_is_two_frames() {
        let bytes = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
        let frames = decode_all(&mut FrameDecoder::<Client>::new(125), &bytes);
        assert_eq!(
            frames,
            [
                frame(false, OpCode::Text, b"Hel"),
                frame(true, OpCode::Continuation, b"lo"),
            ]
        );
    }

    #[test]
    fn payload_arriving_byte_by_byte_is_unmasked_once() {
        let bytes = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let mut decoder = FrameDecoder::<Server>::new(125);
        let mut src = BytesMut::new();
        for (i, byte) in bytes.iter().enumerate() {
            src.extend_from_slice(&[*byte]);
            let decoded = decoder.decode(&mut src).unwrap();
            if i + 1 < bytes.len() {
                assert!(decoded.is_need_more(), "byte {i}");
            } else {
                assert_eq!(
                    decoded,
                    Decoded::Complete(frame(true, OpCode::Text, b"Hello"))
                );
            }
        }
        assert!(src.is_empty());
    }

    #[test]
    fn payload_is_split_off_without_copying() {
        let mut src = BytesMut::from(&[0x82, 0x03, 1, 2, 3, 0x82][..]);
        let start = src.as_ptr() as usize;
        let Decoded::Complete(frame) = FrameDecoder::<Client>::new(16).decode(&mut src).unwrap()
        else {
            panic!("frame expected");
        };
        assert_eq!(frame.payload.as_ptr() as usize, start + 2);
        assert_eq!(&src[..], [0x82]);
    }

    #[test]
    fn frame_over_the_limit_is_refused_from_its_header() {
        let mut src = BytesMut::from(&[0x82, 0x7E, 0x01, 0x00][..]);
        assert_eq!(
            FrameDecoder::<Client>::new(255).decode(&mut src),
            Err(ProtocolError::FrameTooBig { len: 256, max: 255 })
        );
        assert_eq!(src.len(), 4, "nothing consumed");
    }

    #[test]
    fn server_refuses_unmasked_frames() {
        let mut src = BytesMut::from(&[0x81, 0x05][..]);
        assert_eq!(
            FrameDecoder::<Server>::new(125).decode(&mut src),
            Err(ProtocolError::UnmaskedClientFrame)
        );
    }

    #[test]
    fn client_refuses_masked_frames() {
        let mut src = BytesMut::from(&[0x81, 0x85][..]);
        assert_eq!(
            FrameDecoder::<Client>::new(125).decode(&mut src),
            Err(ProtocolError::MaskedServerFrame)
        );
    }

    #[test]
    fn rsv_bits_need_an_extension() {
        let bytes = [0xC1, 0x80, 0, 0, 0, 0];
        let mut src = BytesMut::from(&bytes[..]);
        assert_eq!(
            FrameDecoder::<Server>::new(125).decode(&mut src),
            Err(ProtocolError::ReservedBitsSet {
                rsv: FrameHeader::RSV1
            })
        );
        let mut decoder = FrameDecoder::<Server>::new(125).with_allowed_rsv(FrameHeader::RSV1);
        assert_eq!(
            decode_all(&mut decoder, &bytes),
            [frame(true, OpCode::Text, b"")]
        );
    }
}
