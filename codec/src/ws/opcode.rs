//! The 4-bit frame opcode of RFC 6455 §5.2. Only the six opcodes the RFC defines exist as values:
//! the reserved ones (3-7, 0xB-0xF) are refused at parse time, so code holding an `OpCode` never
//! meets an unknown one.

/// A frame opcode; the discriminant is the value on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OpCode {
    /// A further fragment of the message in progress.
    Continuation = 0,
    /// The first frame of a text (UTF-8) message.
    Text = 1,
    /// The first frame of a binary message.
    Binary = 2,
    /// The closing handshake.
    Close = 8,
    /// A keep-alive probe; the peer answers with a pong carrying the same payload.
    Ping = 9,
    /// The answer to a ping, or an unsolicited heartbeat.
    Pong = 10,
}

impl OpCode {
    /// The opcode for the low four bits of a frame's first byte, or `None` for a reserved value.
    pub const fn from_u8(bits: u8) -> Option<OpCode> {
        match bits {
            0 => Some(OpCode::Continuation),
            1 => Some(OpCode::Text),
            2 => Some(OpCode::Binary),
            8 => Some(OpCode::Close),
            9 => Some(OpCode::Ping),
            10 => Some(OpCode::Pong),
            _ => None,
        }
    }

    /// Control frames (close, ping, pong): at most 125 bytes, never fragmented, allowed between
    /// the fragments of a message (§5.5).
    pub const fn is_control(self) -> bool {
        self as u8 & 0x8 != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_u8_accepts_exactly_the_six_defined_opcodes() {
        let defined: Vec<u8> = (0..=255u8)
            .filter(|b| OpCode::from_u8(*b).is_some())
            .collect();
        assert_eq!(defined, [0, 1, 2, 8, 9, 10]);
        for bits in defined {
            assert_eq!(OpCode::from_u8(bits).map(|op| op as u8), Some(bits));
        }
    }

    #[test]
    fn control_opcodes_are_close_ping_pong() {
        let control: Vec<OpCode> = (0..16u8)
            .filter_map(OpCode::from_u8)
            .filter(|op| op.is_control())
            .collect();
        assert_eq!(control, [OpCode::Close, OpCode::Ping, OpCode::Pong]);
    }
}
