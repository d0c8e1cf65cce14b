//! WebSocket opening handshake.
