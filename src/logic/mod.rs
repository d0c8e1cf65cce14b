//! The logic core: users, sessions, messages, groups.
//!
//! It turns inbound frames into chat: who is logged in where, what a message is, who gets it.
//! It knows nothing of sockets: connections are ids, time comes in as an argument, bytes go
//! out through an [`Outlet`] the gateway implements, and the store is a [`crate::store::Store`]
//! answered by tickets and completions. `core.rs` dispatches; each concern has its file.

pub mod backend;
mod config;
pub mod core;
mod cursor;
pub mod dedupe;
mod driver;
pub mod group_cache;
mod groups;
mod login;
mod messaging;
pub mod metrics;
mod outlet;
pub mod session;
pub mod snowflake;
mod sync;
mod tickets;
pub mod token;

#[cfg(test)]
mod tests;

pub use self::config::{LogicConfig, LogicThread};
pub use self::core::{Inbound, LogicCore};
pub use self::outlet::{CloseWhy, Outlet};
pub use self::session::PingLimit;
pub use self::tickets::Asker;
