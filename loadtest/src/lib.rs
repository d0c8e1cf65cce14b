//! Switchboard's load generator: one mio loop per process drives thousands of WebSocket or
//! framed-TCP client connections (over TLS too: `wss://`, `tls://`) built on the codec's client side, against `switchboard echo`,
//! `switchboard serve`, or any WebSocket / framed-TCP echo server.
//!
//! It aims only at the one address it is given, binds only the source addresses it is given,
//! and every run stops by itself at its duration. Scenarios: `idle`, `echo`, `chat`, `group`.
//! Its only `unsafe` is the libc calls of [`os`].
#![deny(unsafe_code)]

pub mod config;
mod conn;
pub mod engine;
pub mod link;
pub mod os;
pub mod pacer;
pub mod server_stats;
mod splitmix;
pub mod summary;
pub mod target;
pub mod tls;
mod traffic;

pub use config::{RunConfig, Scenario};
pub use engine::run;
pub use summary::Summary;
pub use target::{parse_source_ips, Target};
pub use traffic::MIN_SIZE;
