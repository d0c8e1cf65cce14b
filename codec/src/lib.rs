//! Sans-I/O wire codecs for Switchboard.
//!
//! This crate turns bytes into typed items and typed items into bytes. It never touches a
//! socket, a clock or a random-number generator: time, randomness and I/O belong to the
//! caller (the gateway reactor, the load generator, the client SDK), so every parser here is
//! deterministic and can be driven by tests, fuzzers and an io_uring backend alike.
//!
//! - [`packet`]: Switchboard's own framing, `magic u32 | command u16 | length u32 | payload`,
//!   the same on TCP and inside WebSocket binary messages.
//! - [`ws`]: RFC 6455 WebSocket: the opening handshake (server and client sides) and frames.
//! - [`proxy`]: the PROXY protocol header (v1 and v2) an L4 load balancer puts before a
//!   client's first byte.
//! - [`client_link`]: the client's half of a connection on either transport, built from
//!   `packet` and `ws`: what the SDK, the load generator and the tests speak to the gateway.
//!
//! Every parser returns [`Decoded::Complete`] with a whole item, [`Decoded::NeedMore`] when the
//! input ends inside an item, or a typed error naming what was wrong. No input makes a parser
//! panic, loop, or buffer more than its configured maximum.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client_link;
mod decoded;
pub mod packet;
pub mod proxy;
pub mod ws;

pub use decoded::Decoded;
