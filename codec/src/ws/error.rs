//! Every way a peer can break RFC 6455 §5 and §7.4, one variant per rule.
//! Each variant maps to exactly one close code ([`ProtocolError::close_code`]), so the connection
//! layer never has to guess what to send before it drops the peer. The enum is `Copy` and small.

use thiserror::Error;

use super::close::CloseCode;
use super::opcode::OpCode;

/// A received frame or message that breaks the protocol. The connection must be closed with
/// [`ProtocolError::close_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ProtocolError {
    /// RSV1-3 bits set that no negotiated extension gave a meaning (§5.2). `rsv` holds the bits
    /// as RSV1 = 0b100, RSV2 = 0b010, RSV3 = 0b001.
    #[error("reserved bits {rsv:#05b} set without a negotiated extension")]
    ReservedBitsSet {
        /// The RSV bits of the frame.
        rsv: u8,
    },
    /// An opcode the RFC reserves (3-7, 0xB-0xF).
    #[error("unknown opcode {opcode:#x}")]
    UnknownOpcode {
        /// The 4-bit opcode received.
        opcode: u8,
    },
    /// A close, ping or pong frame without the FIN bit (§5.5: control frames are never fragmented).
    #[error("fragmented {opcode:?} frame")]
    FragmentedControlFrame {
        /// The control opcode.
        opcode: OpCode,
    },
    /// A control frame declaring more than 125 payload bytes (§5.5).
    #[error("{opcode:?} frame declares a payload longer than 125 bytes")]
    ControlFrameTooLong {
        /// The control opcode.
        opcode: OpCode,
    },
    /// A 64-bit payload length with its most significant bit set (§5.2).
    #[error("64-bit payload length with the most significant bit set")]
    LengthMsbSet,
    /// A payload length in a longer form than needed: the 16-bit form for less than 126 bytes or
    /// the 64-bit form for less than 65536 (§5.2: "the minimal number of bytes MUST be used").
    #[error("payload length {len} not in its minimal encoding")]
    NonMinimalLength {
        /// The declared payload length.
        len: u64,
    },
    /// A server received a frame without a masking key (§5.1).
    #[error("client frame is not masked")]
    UnmaskedClientFrame,
    /// A client received a frame with a masking key (§5.1).
    #[error("server frame is masked")]
    MaskedServerFrame,
    /// A continuation frame with no fragmented message in progress (§5.4).
    #[error("continuation frame without a message in progress")]
    ContinuationWithoutMessage,
    /// A text or binary frame while a fragmented message is unfinished (§5.4).
    #[error("{opcode:?} frame inside an unfinished fragmented message")]
    DataFrameInsideMessage {
        /// The opcode of the new data frame.
        opcode: OpCode,
    },
    /// A close frame with a 1-byte payload: too short for a status code (§5.5.1).
    #[error("close frame payload of 1 byte")]
    CloseFrameTooShort,
    /// A close status code that may not appear on the wire (§7.4): valid are 1000-1003,
    /// 1007-1014 and 3000-4999.
    #[error("close code {code} is not allowed on the wire")]
    InvalidCloseCode {
        /// The status code received.
        code: u16,
    },
    /// Text message bytes that are not UTF-8, found at the first invalid sequence (§8.1).
    #[error("invalid UTF-8 in a text message")]
    InvalidUtf8Text,
    /// A text message that ends inside a multi-byte UTF-8 sequence (§8.1).
    #[error("text message ends inside a UTF-8 sequence")]
    TruncatedUtf8Text,
    /// A close reason that is not UTF-8 (§5.5.1).
    #[error("close reason is not valid UTF-8")]
    InvalidUtf8CloseReason,
    /// A frame declaring a payload larger than the decoder's limit.
    #[error("frame payload of {len} bytes exceeds the limit of {max}")]
    FrameTooBig {
        /// The declared payload length.
        len: u64,
        /// The configured limit.
        max: usize,
    },
    /// A message whose size, counting the fragments so far and the declared length of the
    /// current one, exceeds the reader's limit.
    #[error("message of at least {len} bytes exceeds the limit of {max}")]
    MessageTooBig {
        /// The size so far, including the declared length of the current frame.
        len: u64,
        /// The configured limit.
        max: usize,
    },
}

impl ProtocolError {
    /// The status code to send in the close frame that answers this error (§7.4.1).
    pub const fn close_code(&self) -> CloseCode {
        match self {
            ProtocolError::ReservedBitsSet { .. }
            | ProtocolError::UnknownOpcode { .. }
            | ProtocolError::FragmentedControlFrame { .. }
            | ProtocolError::ControlFrameTooLong { .. }
            | ProtocolError::LengthMsbSet
            | ProtocolError::NonMinimalLength { .. }
            | ProtocolError::UnmaskedClientFrame
            | ProtocolError::MaskedServerFrame
            | ProtocolError::ContinuationWithoutMessage
            | ProtocolError::DataFrameInsideMessage { .. }
            | ProtocolError::CloseFrameTooShort
            | ProtocolError::InvalidCloseCode { .. } => CloseCode::PROTOCOL_ERROR,
            ProtocolError::InvalidUtf8Text
            | ProtocolError::TruncatedUtf8Text
            | ProtocolError::InvalidUtf8CloseReason => CloseCode::INVALID_PAYLOAD,
            ProtocolError::FrameTooBig { .. } | ProtocolError::MessageTooBig { .. } => {
                CloseCode::MESSAGE_TOO_BIG
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_follow_the_rfc_classes() {
        let cases = [
            (ProtocolError::ReservedBitsSet { rsv: 0b100 }, 1002),
            (ProtocolError::UnknownOpcode { opcode: 3 }, 1002),
            (
                ProtocolError::FragmentedControlFrame {
                    opcode: OpCode::Ping,
                },
                1002,
            ),
            (
                ProtocolError::ControlFrameTooLong {
                    opcode: OpCode::Close,
                },
                1002,
            ),
            (ProtocolError::LengthMsbSet, 1002),
            (ProtocolError::NonMinimalLength { len: 5 }, 1002),
            (ProtocolError::UnmaskedClientFrame, 1002),
            (ProtocolError::MaskedServerFrame, 1002),
            (ProtocolError::ContinuationWithoutMessage, 1002),
            (
                ProtocolError::DataFrameInsideMessage {
                    opcode: OpCode::Text,
                },
                1002,
            ),
            (ProtocolError::CloseFrameTooShort, 1002),
            (ProtocolError::InvalidCloseCode { code: 1005 }, 1002),
            (ProtocolError::InvalidUtf8Text, 1007),
            (ProtocolError::TruncatedUtf8Text, 1007),
            (ProtocolError::InvalidUtf8CloseReason, 1007),
            (ProtocolError::FrameTooBig { len: 10, max: 5 }, 1009),
            (ProtocolError::MessageTooBig { len: 10, max: 5 }, 1009),
        ];
        for (error, code) in cases {
            assert_eq!(error.close_code(), CloseCode(code), "{error}");
        }
    }

    #[test]
    fn stays_small_enough_to_return_by_value() {
        assert!(std::mem::size_of::<ProtocolError>() <= 24);
    }
}
