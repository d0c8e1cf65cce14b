//! What a client reports to the application on its event channel, and what a login told it.
//!
//! Events arrive in the order they happened on the connection. `Stopped` is always the last
//! one: after it the client sends and receives nothing more.

use switchboard_protocol::{ChatMessage, KickReason};

use crate::endpoint::Endpoint;
use crate::error::{LinkError, StopReason};

/// Something that happened on a client.
#[derive(Debug, Clone)]
pub enum Event {
    /// A message for this user, pushed live or fetched by sync; each `msg_id` once (within the
    /// dedupe window).
    Message(ChatMessage),
    /// The server sent KICKED. Unless the reason is SERVER_SHUTDOWN (then `Disconnected` and a
    /// reconnect follow), `Stopped` follows: another device of the same kind took over.
    Kicked {
        /// The server's reason.
        reason: KickReason,
        /// Its text, for humans.
        text: String,
    },
    /// A logged-in connection dropped; the client reconnects (unsent and unacknowledged
    /// messages wait and are resent).
    Disconnected {
        /// Why it dropped.
        error: LinkError,
    },
    /// The client logged in again after a drop, on `endpoint`; a sync follows.
    Reconnected {
        /// The gateway it is now connected to.
        endpoint: Endpoint,
    },
    /// The offline sync after a login finished; `delivered` messages came from it (repeats of
    /// messages already delivered are not counted).
    SyncDone {
        /// Messages delivered by this sync.
        delivered: usize,
    },
    /// The client stopped for good; the last event.
    Stopped {
        /// Why.
        reason: StopReason,
    },
}

/// What the server said at login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginInfo {
    /// The user id (the token's `sub`).
    pub user: String,
    /// The device kind (the token's `dev`, or `default`).
    pub device: String,
    /// The server's clock at login, Unix milliseconds.
    pub server_time_ms: u64,
    /// The server closes a connection silent this long.
    pub idle_timeout_ms: u32,
    /// The longest message body the server accepts.
    pub max_body: u32,
    /// The gateway logged into.
    pub endpoint: Endpoint,
}
