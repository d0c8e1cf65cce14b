//! Switchboard's chat wire protocol, sans-I/O: requests, responses and pushes.
//!
//! Every packet is framed by `switchboard_codec::packet` (`magic | command | length | payload`);
//! this crate gives the payloads their meaning. It never touches a socket or a clock, never
//! panics on any input, and allocates only what a decoded value holds (`bytes` and `str` fields
//! share the packet's buffer). docs/protocol.md specifies the same protocol for other languages.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod command;
pub mod limits;
mod push;
mod request;
mod response;
mod server_packet;
mod status;
#[cfg(test)]
mod test_support;
mod text;
mod wire;

pub use command::{Command, PushCommand, RESPONSE_BIT};
pub use push::{ChatMessage, KickReason, Push, Target, KIND_DIRECT, KIND_GROUP};
pub use request::{Request, RequestError};
pub use response::{
    encode_error, GroupCreated, GroupDetailOk, LoginOk, PongOk, Response, ResponseBody, SendOk,
    SyncFetchOk, SyncIndexOk, SyncListOk,
};
pub use server_packet::{ServerPacket, ServerPacketError};
pub use status::Status;
pub use text::Text;
pub use wire::{DecodeError, EncodeError};
