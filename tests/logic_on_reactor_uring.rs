//! `tests/logic_on_reactor.rs` again, with the gateway on io_uring: a test binary whose name
//! ends in `_uring` starts it there (`backend()` in tests/shared/mod.rs).

#[path = "logic_on_reactor.rs"]
mod suite;
