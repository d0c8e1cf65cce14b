//! `tests/backpressure.rs` again, with the gateway on io_uring: a test binary whose name ends in
//! `_uring` starts it there (`backend()` in tests/shared/mod.rs). The slow-consumer cap means
//! the same on both backends: a client that never reads is cut within the same bound.

#[path = "backpressure.rs"]
mod suite;
