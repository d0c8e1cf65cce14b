//! Switchboard packet framing: `magic u32 | command u16 | length u32 | payload`, big-endian.
//!
//! The same framing runs on raw TCP and inside each WebSocket binary message. The decoder splits
//! whole packets off the caller's buffer without copying their payload, refuses a stray client on
//! the first byte that cannot begin the magic, and refuses an over-long length before buffering
//! any of its body. Nothing here allocates per packet in steady state or panics on any input.
//! A receiver that handles each packet before its next read can parse a borrowed [`PacketRef`]
//! instead, with the same checks and no reference count per packet.

mod borrowed;
mod decoder;
mod encoder;
mod error;
mod header;
#[cfg(test)]
mod test_support;

pub use borrowed::PacketRef;
pub use decoder::{PacketDecoder, DEFAULT_MAX_PAYLOAD, RESERVE_STEP};
pub use encoder::PacketEncoder;
pub use error::{EncodeError, PacketError};
pub use header::{PacketHeader, HEADER_LEN, MAGIC};

use bytes::Bytes;

/// One whole packet: its command and its payload, shared with the buffer it was read into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// What the payload means; the command numbers are listed in `docs/protocol.md`.
    pub command: u16,
    /// The payload bytes, without the header.
    pub payload: Bytes,
}
