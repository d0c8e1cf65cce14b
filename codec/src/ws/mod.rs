//! RFC 6455 WebSocket, sans-I/O: the opening handshake and the framing layer.

pub mod handshake;

pub mod close;
pub mod decoder;
pub mod error;
pub mod frame;
pub mod mask;
pub mod opcode;
pub mod reader;
pub mod role;
pub mod utf8;
pub mod writer;

pub use close::{CloseCode, CloseFrame};
pub use decoder::{Frame, FrameDecoder};
pub use error::ProtocolError;
pub use frame::FrameHeader;
pub use handshake::{ClientHandshake, ServerHandshake};
pub use mask::{apply_mask, apply_mask_bytewise};
pub use opcode::OpCode;
pub use reader::{Message, MessageReader, ReaderConfig};
pub use role::{Client, Role, Server};
pub use utf8::{Utf8Validator, Utf8Violation};
pub use writer::{close_payload, FrameEncoder};
