//! The two ends of a WebSocket connection as types, so the masking rule is fixed at compile time.
//! RFC 6455 §5.1: a client masks every frame it sends, a server masks none; each side refuses a
//! frame that breaks the rule with 1002. Roles are uninhabited: they exist only as type
//! parameters, cost no memory and leave no `if is_server` in the frame code.

use super::error::ProtocolError;

mod sealed {
    pub trait Sealed {}
}

/// One end of a WebSocket connection. Sealed: only [`Server`] and [`Client`] exist.
pub trait Role: sealed::Sealed + Send + Sync + 'static {
    /// Whether every frame this role receives must carry a masking key.
    const RECEIVES_MASKED: bool;
    /// The refusal for a received frame whose mask bit breaks the rule.
    const MASK_VIOLATION: ProtocolError;
}

/// The accepting end: receives masked frames, sends unmasked ones.
#[derive(Debug)]
pub enum Server {}

/// The connecting end: receives unmasked frames, sends masked ones.
#[derive(Debug)]
pub enum Client {}

impl sealed::Sealed for Server {}
impl sealed::Sealed for Client {}

impl Role for Server {
    const RECEIVES_MASKED: bool = true;
    const MASK_VIOLATION: ProtocolError = ProtocolError::UnmaskedClientFrame;
}

impl Role for Client {
    const RECEIVES_MASKED: bool = false;
    const MASK_VIOLATION: ProtocolError = ProtocolError::MaskedServerFrame;
}
