//! The logic core's counters: written by its thread only, read by the admin listener's
//! `/metrics` (see `crate::metrics` for the single-writer rule).

use crate::metrics::{Counter, Gauge};

/// What the logic core counts.
#[derive(Debug, Default)]
pub struct LogicMetrics {
    /// Successful LOGINs.
    pub logins: Counter,
    /// Of those, logins that replaced (kicked) an older connection of the same device kind.
    pub logins_replacing: Counter,
    /// LOGINs refused (invalid or expired token).
    pub logins_refused: Counter,
    /// Connections closed for not logging in within the login timeout.
    pub login_timeouts: Counter,
    /// Messages (SEND, GROUP_SEND, backend sends) taken by the store to be committed.
    pub messages_accepted: Counter,
    /// Sends answered from the dedupe window (a repeated client_msg_id or backend key).
    pub sends_repeated: Counter,
    /// Sends refused because the store's queue was full or PostgreSQL was away (BUSY), or the
    /// store had stopped.
    pub sends_busy: Counter,
    /// Message pushes handed to the gateway (one per receiving connection).
    pub pushes: Counter,
    /// Backend API calls handled.
    pub backend_calls: Counter,
    /// Open connections the core knows, as of its last batch.
    pub connections: Gauge,
    /// Users with a device online, as of its last batch.
    pub online_users: Gauge,
    /// Store requests in flight, as of its last batch.
    pub store_requests_in_flight: Gauge,
}
