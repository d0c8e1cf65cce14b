//! The application's backend talking to the logic core (the admin listener's API): send a
//! message as a named user, kick a user's devices, list them, read the core's numbers.
//!
//! A call comes in through the core's queue like the gateway's events, carrying the channel
//! its one answer goes back on; the caller (an admin thread) waits on that channel, the core
//! never waits on it (the channel has room for the one answer). A send takes the clients'
//! own path: the same checks, the same (sender, client_msg_id) dedupe window and store
//! append, the same pushes; it is answered once the store has committed, like a SEND.

use std::sync::Arc;

use bytes::Bytes;
use crossbeam_channel::Sender;
use switchboard_protocol::{KickReason, SendOk, Status, Target};
use tracing::info;

use super::core::LogicCore;
use super::messaging::Outgoing;
use super::outlet::{CloseWhy, Outlet};
use super::session::ConnKey;
use super::tickets::Asker;
use crate::store::Store;

/// What the backend asks of the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendRequest {
    /// Store and push a message from `from` (a user id; for a group, a member), idempotent by
    /// (`from`, `client_msg_id`) like a client's SEND.
    Send {
        /// The sender the recipients see.
        from: String,
        /// A user or a group.
        target: Target,
        /// The idempotency key, in the sender's client_msg_id space.
        client_msg_id: u64,
        /// The message body.
        body: Bytes,
    },
    /// KICKED (ENDED_BY_SERVICE) and close every device of `user`, or only the one of kind
    /// `device`.
    Kick {
        /// The user.
        user: String,
        /// One device kind, or all of them.
        device: Option<String>,
    },
    /// The user's online devices.
    Devices {
        /// The user.
        user: String,
    },
    /// The core's numbers.
    Stats,
}

/// The core's one answer to a [`BackendRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendAnswer {
    /// The message is committed (or was before, for a repeated key): its id and server time.
    Sent(SendOk),
    /// Refused with the status a client's request would get (TOO_LARGE, NOT_FOUND,
    /// NOT_MEMBER, BUSY, INTERNAL).
    Refused(Status),
    /// The device kinds kicked (empty if the user was offline).
    Kicked(Vec<String>),
    /// The online devices.
    Devices(Vec<OnlineDevice>),
    /// The core's numbers.
    Stats(CoreStats),
}

/// One online device of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnlineDevice {
    /// The device kind from its login token.
    pub kind: String,
    /// The gateway's id for its connection.
    pub conn: ConnKey,
}

/// The logic core's numbers, as of the moment it answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CoreStats {
    /// Connections the core knows (logged in or not yet).
    pub connections: usize,
    /// Users with at least one device online.
    pub online_users: usize,
    /// Groups in the cache.
    pub groups: usize,
    /// Store requests submitted and not yet completed.
    pub store_requests_in_flight: usize,
    /// (sender, client_msg_id) pairs in the dedupe window.
    pub dedupe_window: usize,
}

/// A backend request and where its answer goes.
#[derive(Debug, Clone)]
pub struct BackendCall {
    /// The request.
    pub request: BackendRequest,
    /// Where the one answer is sent (with room for it: the core never waits).
    pub reply: Sender<BackendAnswer>,
}

/// Who is answered once a message commits: a client's request or a backend call.
#[derive(Debug, Clone)]
pub enum Waiter {
    /// A client's SEND or GROUP_SEND.
    Client(Asker),
    /// A backend call.
    Backend(Sender<BackendAnswer>),
}

impl Waiter {
    /// The connection the message came from, which its pushes skip.
    pub(super) fn conn(&self) -> Option<ConnKey> {
        match self {
            Waiter::Client(asker) => Some(asker.conn),
            Waiter::Backend(_) => None,
        }
    }
}

impl<S: Store, O: Outlet> LogicCore<S, O> {
    pub(super) fn on_backend(&mut self, call: BackendCall) {
        let BackendCall { request, reply } = call;
        self.metrics.backend_calls.inc();
        let answer = match request {
            BackendRequest::Send {
                from,
                target,
                client_msg_id,
                body,
            } => {
                let message = Outgoing::new(Arc::from(from), target, client_msg_id, body);
                // Answered now (a refusal, a known key) or at the commit.
                return self.send(Waiter::Backend(reply), message);
            }
            BackendRequest::Kick { user, device } => {
                BackendAnswer::Kicked(self.kick(&user, device.as_deref()))
            }
            BackendRequest::Devices { user } => {
                let devices = self.sessions.devices(&user).iter();
                let devices = devices.map(|d| OnlineDevice {
                    kind: d.kind.to_string(),
                    conn: d.conn,
                });
                BackendAnswer::Devices(devices.collect())
            }
            BackendRequest::Stats => BackendAnswer::Stats(CoreStats {
                connections: self.sessions.connections(),
                online_users: self.sessions.online_users(),
                groups: self.groups.len(),
                store_requests_in_flight: self.tickets.in_flight(),
                dedupe_window: self.dedupe.len(),
            }),
        };
        let _ = reply.send(answer);
    }

    /// KICKED (ENDED_BY_SERVICE), then the close, to the user's devices (of one kind, or all).
    fn kick(&mut self, user: &str, kind: Option<&str>) -> Vec<String> {
        let chosen: Vec<(String, ConnKey)> = self
            .sessions
            .devices(user)
            .iter()
            .filter(|d| kind.is_none_or(|kind| *d.kind == *kind))
            .map(|d| (d.kind.to_string(), d.conn))
            .collect();
        let text = "the service ended this session";
        let kicked = self.replies.kicked(KickReason::ENDED_BY_SERVICE, text);
        for (device, conn) in &chosen {
            info!(user, device, conn, "kicked by the backend");
            if let Some(packet) = &kicked {
                self.replies.push(*conn, packet.clone());
            }
            self.drop_connection(*conn, CloseWhy::Kicked);
        }
        chosen.into_iter().map(|(device, _)| device).collect()
    }

    /// Refuses a waiter with `status`.
    pub(super) fn refuse_waiter(&mut self, waiter: Waiter, status: Status) {
        match waiter {
            Waiter::Client(asker) => self.refuse(asker, status),
            Waiter::Backend(reply) => {
                let _ = reply.send(BackendAnswer::Refused(status));
            }
        }
    }
}
