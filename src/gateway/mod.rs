//! The gateway tier: reactors that own sockets and move frames. Knows nothing of chat.
//!
//! `machine/` is what a connection means (bytes and time in, events and bytes out, no
//! sockets); `epoll/` is the driver that moves its bytes through mio, `uring/` the one that
//! moves them through io_uring (`GatewayConfig::backend`); `driver_core/` is what the two
//! drivers share (the reactor's state apart from its I/O, `settle`, draining, admission).
//!
//! Start a [`Gateway`] with a [`GatewayConfig`] and a factory for one [`Handler`] per reactor;
//! reach connections from any thread through its [`GatewayHandle`].

pub(crate) mod byte_bound;
mod clock;
pub mod config;
pub mod conn_id;
mod drain;
mod driver_core;
mod epoll;
pub mod handle;
pub mod handler;
pub mod limits;
pub mod listener;
mod machine;
pub mod metrics;
mod server;
pub mod timer_wheel;
pub mod tls;
pub mod trusted_proxies;
pub mod uring;

pub use config::{Backend, ControlLimit, GatewayConfig, Keepalive, SocketOptions, UringRecv};
pub use conn_id::ConnId;
pub use handle::GatewayHandle;
pub use handler::{Admission, ConnInfo, Disconnect, Handler, Message, Outbox, Transport};
pub use limits::{AllowedOrigins, PerIpLimit, RateLimit, SynFilterConfig};
pub use listener::{ListenerCopies, Listeners};
pub use metrics::{GatewayProbe, Refusal, RefusalCounts};
pub use server::Gateway;
pub use tls::{TlsAcceptor, TlsError};
pub use trusted_proxies::{ProxyListeners, TrustedProxies};
