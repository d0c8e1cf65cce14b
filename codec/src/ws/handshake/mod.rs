//! RFC 6455 §4 opening handshake, sans-I/O: the HTTP/1.1 upgrade request and its 101 answer.
//! The server side ([`ServerHandshake`]) and the client side ([`ClientHandshake`]) are two types
//! over one shared head reader; both return the bytes they consumed and leave any frames that
//! follow the head in the caller's buffer. Heads are capped in size and scanned once per byte;
//! only the parsed result owns strings. Randomness (the client's nonce) comes from the caller.

mod client;
mod head;
mod key;
#[cfg(test)]
mod proptests;
mod request;
mod response;

pub use client::{
    ClientHandshake, ClientRequest, ClientRequestError, ResponseError, UpgradeResponse,
};
pub use head::{HeadError, DEFAULT_MAX_HEAD};
pub use key::{accept_key, WebSocketKey};
pub use request::{RequestError, ServerHandshake, UpgradeRequest};
pub use response::{write_refusal, ProtocolNotOffered};
