//! RFC 6455 WebSocket, sans-I/O: the opening handshake and the framing layer.

pub mod handshake;
