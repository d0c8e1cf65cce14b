//! The logic core: users, sessions, messages, groups.
//!
//! It turns inbound frames into chat: who is logged in where, what a message is, who gets it.
//! It knows nothing of sockets: connections are ids, time comes in as an argument, and bytes
//! go out as commands to the gateway.

pub mod snowflake;
pub mod token;
