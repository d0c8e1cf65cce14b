//! `tests/tls.rs` again, with the gateway on io_uring: a test binary whose name ends in
//! `_uring` starts it there (`backend()` in tests/shared/mod.rs), and passes
//! `SWITCHBOARD_BACKEND` to the `switchboard` processes it spawns.

#[path = "tls.rs"]
mod suite;
