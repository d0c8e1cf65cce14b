//! Switchboard's Rust client SDK: one logged-in connection per [`Client`], kept up by one
//! background thread (a small mio loop), with crossbeam channels for events and replies.
//!
//! The client fails over between gateways and reconnects with backoff and full jitter, logs in
//! and syncs offline messages on every (re)connect, heartbeats, resends unacknowledged messages
//! with their original `client_msg_id`, and delivers each message once (per dedupe window).
//! docs/protocol.md is the wire protocol it speaks; this crate never panics on server input.
//!
//! ```no_run
//! use switchboard_sdk::{Client, ClientConfig, Event};
//!
//! let config = ClientConfig::new(["tcp://127.0.0.1:9000", "ws://127.0.0.1:9001/"], "<jwt>")?;
//! let client = Client::connect(config)?;
//! let ack = client.send("bob", "hi bob")?;
//! println!("stored as {}", ack.msg_id);
//! for event in client.events() {
//!     if let Event::Message(message) = event {
//!         println!("{}: {:?}", message.from, message.body);
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod backoff;
mod client;
pub mod config;
pub mod dedupe;
mod driver;
pub mod endpoint;
pub mod error;
pub mod event;
pub mod msg_id;
mod outbox;
mod session;
mod sync;
mod wire;

pub use backoff::Backoff;
pub use client::{Client, GroupDetail, SendHandle};
pub use config::{ClientConfig, TlsTrustError, TokenProvider, TokenSource};
pub use endpoint::{Endpoint, EndpointError};
pub use error::{Ack, ConnectError, LinkError, RequestError, SendError, StopReason};
pub use event::{Event, LoginInfo};
pub use switchboard_protocol::{ChatMessage, KickReason, Status, Target, Text};
