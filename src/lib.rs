//! Switchboard: an instant-messaging gateway.
//!
//! The folders are the layers, and dependencies only point down:
//! - `switchboard-codec` (the `codec/` crate): bytes in, typed items out; no I/O, no chat.
//! - `switchboard-protocol` (the `protocol/` crate): the chat payloads; no I/O.
//! - [`gateway`]: sockets, the mio reactors, timers; moves frames, knows nothing of chat.
//! - [`logic`]: the logic core: users, sessions, messages, groups; knows nothing of sockets.
//! - [`store`]: the embedded SQLite store and its thread; knows nothing of sockets or the wire.
//! - [`serve`]: wires the three together for `switchboard serve`.
//! - [`admin`]: the admin HTTP listener: health, readiness, metrics, the router, the backend API.
//! - [`metrics`]: single-writer counters and histograms, and the Prometheus text format.
//! - [`echo`]: the echo handler, an application of the gateway for conformance and load tests.
//! - [`cli`]: the `switchboard` command line.

pub mod admin;
pub mod cli;
pub mod core_queue;
pub mod echo;
pub mod gateway;
pub mod handover;
pub mod logic;
pub mod metrics;
pub mod serve;
pub mod socket_activation;
pub mod store;
