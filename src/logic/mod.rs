//! The logic core: users, sessions, messages, groups.
//!
//! It turns inbound frames into chat: who is logged in where, what a message is, who gets it.
//! It knows nothing of sockets: connections are ids, time comes in as an argument, and bytes
//! go out through an [`Outlet`] the gateway implements.

pub mod core;
pub mod dedupe;
pub mod groups;
pub mod session;
pub mod snowflake;
pub mod token;

pub use self::core::{CloseWhy, Inbound, LogicConfig, LogicCore, Outlet};
