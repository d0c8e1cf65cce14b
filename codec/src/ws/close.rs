//! Close status codes (RFC 6455 §7.4) and the close frame payload (§5.5.1): an optional 2-byte
//! big-endian code followed by a UTF-8 reason. Received payloads are checked in full before
//! anything is consumed: a 1-byte payload or a code not allowed on the wire is a protocol error
//! (1002), a reason that is not UTF-8 is 1007.

use std::fmt;

use bytes::Bytes;

use super::error::ProtocolError;

/// A close status code. Any `u16` can be held; [`CloseCode::is_valid_on_wire`] says whether a
/// peer may send it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection is fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: a data type the endpoint does not accept (Switchboard refuses text messages).
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1005: no status code was present. Reported locally, never sent.
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: the connection dropped without a close frame. Reported locally, never sent.
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: message data inconsistent with its type (text that is not UTF-8).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: a message violates the endpoint's policy.
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: a message too big to process.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client expected an extension the server did not negotiate.
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: the server hit an unexpected condition.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1012 (IANA registry): the service is restarting or draining; the client may reconnect
    /// (to this address or another) after a short wait.
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013 (IANA registry): the server is overloaded; the client may reconnect later.
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);

    /// Whether a peer may send this code (§7.4.1, §7.4.2 and the IANA registry): 1000-1003,
    /// 1007-1014 and 3000-4999. 1004-1006 and 1015 are reserved, 0-999, 1016-2999 and 5000+
    /// unassigned.
    pub const fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The status code and reason of a received close frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code, valid on the wire.
    pub code: CloseCode,
    /// The reason, valid UTF-8, at most 123 bytes.
    pub reason: Bytes,
}

impl CloseFrame {
    /// Parses an unmasked close payload: `None` for an empty payload (no status code).
    pub fn parse(payload: Bytes) -> Result<Option<CloseFrame>, ProtocolError> {
        validate_close_payload(&payload)?;
        Ok(CloseFrame::from_validated(payload))
    }

    /// Builds the frame from a payload that [`validate_close_payload`] accepted.
    pub(crate) fn from_validated(payload: Bytes) -> Option<CloseFrame> {
        let [hi, lo, ..] = payload[..] else {
            return None;
        };
        Some(CloseFrame {
            code: CloseCode(u16::from_be_bytes([hi, lo])),
            reason: payload.slice(2..),
        })
    }
}

/// Checks a whole unmasked close payload against §5.5.1 and §7.4.
pub(crate) fn validate_close_payload(payload: &[u8]) -> Result<(), ProtocolError> {
    match *payload {
        [] => Ok(()),
        [_] => Err(ProtocolError::CloseFrameTooShort),
        [hi, lo, ref reason @ ..] => {
            let code = u16::from_be_bytes([hi, lo]);
            if !CloseCode(code).is_valid_on_wire() {
                return Err(ProtocolError::InvalidCloseCode { code });
            }
            std::str::from_utf8(reason).map_err(|_| ProtocolError::InvalidUtf8CloseReason)?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(code: u16, reason: &[u8]) -> Bytes {
        let mut bytes = code.to_be_bytes().to_vec();
        bytes.extend_from_slice(reason);
        Bytes::from(bytes)
    }

    #[test]
    fn wire_validity_matches_section_7_4_for_every_code() {
        for code in 0..=u16::MAX {
            let expected = (1000..=1003).contains(&code)
                || (1007..=1014).contains(&code)
                || (3000..=4999).contains(&code);
            assert_eq!(CloseCode(code).is_valid_on_wire(), expected, "{code}");
        }
    }

    #[test]
    fn empty_payload_has_no_status() {
        assert_eq!(CloseFrame::parse(Bytes::new()), Ok(None));
    }

    #[test]
    fn code_and_reason_are_split() {
        let frame = CloseFrame::parse(payload(1001, "bye ✓".as_bytes())).unwrap();
        assert_eq!(
            frame,
            Some(CloseFrame {
                code: CloseCode::GOING_AWAY,
                reason: Bytes::from("bye ✓"),
            })
        );
    }

    #[test]
    fn one_byte_payload_is_too_short() {
        assert_eq!(
            CloseFrame::parse(Bytes::from_static(&[0x03])),
            Err(ProtocolError::CloseFrameTooShort)
        );
    }

    #[test]
    fn reserved_and_unassigned_codes_are_refused() {
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, u16::MAX] {
            assert_eq!(
                CloseFrame::parse(payload(code, b"")),
                Err(ProtocolError::InvalidCloseCode { code })
            );
        }
    }

    #[test]
    fn reason_must_be_utf8() {
        assert_eq!(
            CloseFrame::parse(payload(1000, &[b'o', b'k', 0xC3])),
            Err(ProtocolError::InvalidUtf8CloseReason)
        );
        assert_eq!(
            CloseFrame::parse(payload(1000, &[0xED, 0xA0, 0x80])),
            Err(ProtocolError::InvalidUtf8CloseReason)
        );
    }
}
