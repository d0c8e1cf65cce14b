//! Why a packet stream was refused, or why a packet could not be encoded.
//!
//! One variant per refusal. A decoding error is final for its connection: the stream has lost
//! its framing, so the gateway closes it (on WebSocket: `BadMagic` with 1002, `TooLong` with 1009).

/// A refusal of the incoming byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// The stream does not begin with the magic `0x53574231` ("SWB1").
    ///
    /// `got` holds the received bytes up to and including the first one that differs from the
    /// magic, in the positions they would take in the big-endian `u32`; positions after it are
    /// zero. An HTTP request is refused on its `G` with `got == 0x4700_0000`, a TLS ClientHello
    /// on its `0x16` with `got == 0x1600_0000`, `SWB2` with `got == 0x5357_4232`. The refusal
    /// happens on that byte, so `got` is the same however the stream was split into reads.
    #[error("not a Switchboard stream: {got:#010x} cannot begin the magic 0x53574231 (\"SWB1\")")]
    BadMagic {
        /// The bytes up to the first mismatch, high-order first; later positions are zero.
        got: u32,
    },
    /// The header declares a payload longer than the decoder's maximum.
    #[error("packet payload of {len} bytes exceeds the maximum of {max} bytes")]
    TooLong {
        /// The payload length the header declares.
        len: u32,
        /// The decoder's configured maximum.
        max: u32,
    },
}

/// A refusal to encode a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The payload does not fit the header's `u32` length field.
    #[error("payload of {len} bytes does not fit the u32 length field")]
    PayloadTooLong {
        /// The payload length that was asked for.
        len: usize,
    },
}
