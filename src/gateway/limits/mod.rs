//! The limits that keep one client from taking more than its share: a message rate per
//! connection, connections and connects per client address, the WebSocket Origin
//! allowlist, and the SYN filter that drops the SYNs of sources that keep going over the per-IP
//! limits in the kernel (`syn_filter/`). What they refuse is counted by reason in `gateway::metrics::Refusal`, beside the
//! gateway's other refusals (one list of reasons, shown by `/metrics`).
//!
//! Everything here is sans-I/O (time comes in as reactor ticks) and knows nothing of chat:
//! the connection machine asks [`rate::RateCell::judge`] once per message it decodes (a few instructions
//! on four bytes of the connection), the per-IP table once per connection at admission (the
//! epoll driver at accept, or the machine after the PROXY header) and once at its end (the driver), and the Origin list once per upgrade. What an over-rate message means
//! (the chat server's RATE_LIMITED) is the handler's business.

pub(crate) mod origins;
pub(crate) mod per_ip;
pub(crate) mod rate;
pub(crate) mod syn_filter;

pub use origins::{AllowedOrigins, AllowedOriginsError};
pub use per_ip::{IpRefusal, PerIpLimit};
pub use rate::{RateLimit, Verdict};
pub use syn_filter::SynFilterConfig;
