//! Switchboard's Rust client SDK: one connection per client, driven by one background thread.

pub mod backoff;
pub mod config;
pub mod dedupe;
pub mod endpoint;
pub mod error;
pub mod framing;
pub mod msg_id;
pub mod outbox;
