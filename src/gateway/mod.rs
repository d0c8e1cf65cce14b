//! The gateway tier: reactors that own sockets and move frames. Knows nothing of chat.

pub mod timer_wheel;
