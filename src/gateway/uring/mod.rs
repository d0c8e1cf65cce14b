//! The io_uring backend: opening a reactor's ring (or saying why this machine cannot have one,
//! so the gateway falls back to epoll with one log line), the provided-buffer ring every
//! connection of a reactor receives into, the ring as the driver uses it (`ring.rs`: the
//! memory each operation points at, owned until its completion) and the driver (`driver/`).
//!
//! This folder and its tests are the only place io_uring's shared memory is touched: each
//! `unsafe` block carries a `SAFETY:` comment, and the tests drive the kernel for real
//! (a loopback TCP pair, a ring run dry, a seccomp filter that refuses the ring).

pub mod buf_ring;
pub(crate) mod driver;
pub mod probe;
mod ring;

pub use buf_ring::{BufRing, Filled};
pub use probe::{open, Unavailable};
pub(crate) use ring::eventfd;
