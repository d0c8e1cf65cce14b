//! Messages off a byte stream (RFC 6455 §5.4-§5.6): frames, reassembly of fragments, control
//! frames between fragments, close payloads and UTF-8 of text checked as bytes arrive.
//! Sizes are judged from headers before any body is buffered. A single-frame message is split
//! off `src` without copying; only fragments are gathered, into a buffer freed with the message,
//! so a reader between messages holds no heap memory. On error nothing is consumed and every
//! further call fails the same way.

use std::marker::PhantomData;

use bytes::{Bytes, BytesMut};

use super::close::{validate_close_payload, CloseFrame};
use super::decoder::FrameCursor;
use super::error::ProtocolError;
use super::frame::FrameHeader;
use super::opcode::OpCode;
use super::role::Role;
use super::utf8::{Utf8Validator, Utf8Violation};
use crate::Decoded;

/// Limits and negotiated options of a [`MessageReader`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderConfig {
    /// The largest message, in payload bytes over all its fragments (default 1 MiB). Larger
    /// ones are refused with 1009 as soon as a header shows they would pass it.
    pub max_message: usize,
    /// RSV bits given a meaning by negotiated extensions, as [`FrameHeader::rsv`] (default 0).
    pub allowed_rsv: u8,
}

impl Default for ReaderConfig {
    fn default() -> Self {
        ReaderConfig {
            max_message: 1 << 20,
            allowed_rsv: 0,
        }
    }
}

/// A whole message, or a control frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message, valid UTF-8.
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping; answer with a pong carrying the same payload.
    Ping(Bytes),
    /// A pong.
    Pong(Bytes),
    /// The peer starts or answers the closing handshake; `None` when it sent no status code.
    Close(Option<CloseFrame>),
}

/// What the fragments gathered so far belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fragmented {
    None,
    Text,
    Binary,
}

/// Reads messages for role `R`. Kept within 64 bytes: one lives in every connection.
///
/// Call [`MessageReader::read`] with the same buffer each time, appending what the socket
/// delivers, until it returns `NeedMore`: payload bytes are unmasked in place as they arrive.
/// After an error, or after [`Message::Close`] (the peer may send nothing more, §5.5.1), stop
/// reading and close the connection.
#[derive(Debug)]
pub struct MessageReader<R: Role> {
    cursor: FrameCursor,
    /// The fragments of the unfinished message; no capacity between messages.
    fragments: Vec<u8>,
    max_message: usize,
    utf8: Utf8Validator,
    fragmented: Fragmented,
    allowed_rsv: u8,
    role: PhantomData<fn() -> R>,
}

impl<R: Role> MessageReader<R> {
    /// A reader at the start of a connection.
    pub fn new(config: ReaderConfig) -> Self {
        MessageReader {
            cursor: FrameCursor::IDLE,
            fragments: Vec::new(),
            max_message: config.max_message,
            utf8: Utf8Validator::new(),
            fragmented: Fragmented::None,
            allowed_rsv: config.allowed_rsv,
            role: PhantomData,
        }
    }

    /// Whether the reader is between messages: no frame and no fragmented message in progress.
    pub fn is_idle(&self) -> bool {
        self.cursor.is_idle() && self.fragmented == Fragmented::None
    }

    /// How many bytes of `src` the frame in progress takes, header included, once its header
    /// has been read: a caller that keeps an unfinished frame in its own buffer can size the
    /// buffer exactly. `None` between frames.
    pub fn frame_len(&self) -> Option<usize> {
        self.cursor.end()
    }

    /// Bytes this reader holds itself: the fragments of an unfinished message.
    pub fn held_bytes(&self) -> usize {
        self.fragments.capacity()
    }

    /// Reads the next message or control frame from the start of `src`.
    pub fn read(&mut self, src: &mut BytesMut) -> Result<Decoded<Message>, ProtocolError> {
        loop {
            if self.cursor.is_idle() {
                let Decoded::Complete((header, header_len)) =
                    FrameCursor::parse_header::<R>(src, self.allowed_rsv)?
                else {
                    return Ok(Decoded::NeedMore);
                };
                self.admit(&header)?;
                if header.opcode == OpCode::Text {
                    self.utf8 = Utf8Validator::new();
                }
                self.cursor.start(&header, header_len);
            }
            let arrived = self.cursor.unmask_arrived(src);
            if self.frame_is_text() {
                // Fail fast: a text frame is judged as its bytes arrive, not when it is whole.
                self.utf8.feed(arrived).map_err(text_error)?;
            }
            if !self.cursor.is_complete() {
                return Ok(Decoded::NeedMore);
            }
            if let Some(message) = self.finish_frame(src)? {
                return Ok(Decoded::Complete(message));
            }
        }
    }

    /// Checks a data frame's place in the message sequence and the message size it implies.
    fn admit(&self, header: &FrameHeader) -> Result<(), ProtocolError> {
        let so_far = match (header.opcode, self.fragmented) {
            (OpCode::Continuation, Fragmented::None) => {
                return Err(ProtocolError::ContinuationWithoutMessage)
            }
            (OpCode::Continuation, _) => self.fragments.len() as u64,
            (opcode @ (OpCode::Text | OpCode::Binary), Fragmented::Text | Fragmented::Binary) => {
                return Err(ProtocolError::DataFrameInsideMessage { opcode })
            }
            (OpCode::Text | OpCode::Binary, Fragmented::None) => 0,
            // Control frames are at most 125 bytes (checked by the header parser).
            (OpCode::Close | OpCode::Ping | OpCode::Pong, _) => return Ok(()),
        };
        let len = so_far.saturating_add(header.payload_len);
        if len > self.max_message as u64 {
            return Err(ProtocolError::MessageTooBig {
                len,
                max: self.max_message,
            });
        }
        Ok(())
    }

    /// Whether the frame in progress carries text.
    fn frame_is_text(&self) -> bool {
        match self.cursor.opcode() {
            OpCode::Text => true,
            OpCode::Continuation => self.fragmented == Fragmented::Text,
            _ => false,
        }
    }

    /// Consumes the complete frame in progress: a message, or `None` for a non-final fragment.
    fn finish_frame(&mut self, src: &mut BytesMut) -> Result<Option<Message>, ProtocolError> {
        let opcode = self.cursor.opcode();
        let message = match opcode {
            OpCode::Ping => Message::Ping(self.cursor.take(src)),
            OpCode::Pong => Message::Pong(self.cursor.take(src)),
            OpCode::Close => {
                validate_close_payload(self.cursor.payload(src))?;
                Message::Close(CloseFrame::from_validated(self.cursor.take(src)))
            }
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                let text = self.frame_is_text();
                let fin = self.cursor.fin();
                if fin && text {
                    self.utf8.finish().map_err(text_error)?;
                }
                if fin && opcode != OpCode::Continuation {
                    let payload = self.cursor.take(src);
                    return Ok(Some(data_message(text, payload)));
                }
                self.fragments.extend_from_slice(self.cursor.payload(src));
                self.cursor.discard(src);
                if !fin {
                    if opcode != OpCode::Continuation {
                        self.fragmented = if text {
                            Fragmented::Text
                        } else {
                            Fragmented::Binary
                        };
                    }
                    return Ok(None);
                }
                self.fragmented = Fragmented::None;
                // Hands the buffer over without a copy and leaves no capacity behind. Shrunk
                // first: the message may wait in a write queue, where spare capacity from
                // the buffer's doubling would be memory the queue's count does not see.
                self.fragments.shrink_to_fit();
                let payload = Bytes::from(std::mem::take(&mut self.fragments));
                data_message(text, payload)
            }
        };
        Ok(Some(message))
    }
}

fn data_message(text: bool, payload: Bytes) -> Message {
    if text {
        Message::Text(payload)
    } else {
        Message::Binary(payload)
    }
}

fn text_error(violation: Utf8Violation) -> ProtocolError {
    match violation {
        Utf8Violation::InvalidSequence => ProtocolError::InvalidUtf8Text,
        Utf8Violation::TruncatedSequence => ProtocolError::TruncatedUtf8Text,
    }
}

#[cfg(test)]
#[path = "reader_tests.rs"]
mod tests;
