//! The SDK's results and errors: what a send, a request, a connect or a connection can end in.
//!
//! Each enum has one variant per outcome an application handles differently: a refusal by the
//! server (final), a timeout (the outcome may still come), a lost connection, a stopped client.
//! Every error is `Clone` so one failure can be reported to every waiter it concerns.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use switchboard_codec::client_link::StreamError;
use switchboard_protocol::{EncodeError, KickReason, ServerPacketError, Status};

/// The server's acknowledgement of a message: it is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ack {
    /// The id the SDK gave the message (reused by every resend of it).
    pub client_msg_id: u64,
    /// The server's id for it.
    pub msg_id: u64,
    /// When the server accepted it, Unix milliseconds.
    pub server_time_ms: u64,
}

/// Why a send has no ack.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The server refused the message for good (TOO_LARGE, NOT_MEMBER, NOT_FOUND, MALFORMED,
    /// or a status this SDK does not know). It was not stored.
    #[error("the server refused the message: {0}")]
    Refused(Status),
    /// No ack within the wait. The message is still queued and is resent after reconnects
    /// until the server acknowledges or refuses it; wait on its handle again to learn which.
    #[error("no ack within {0:?}; the message is still queued")]
    Timeout(Duration),
    /// The client stopped (closed, kicked, logged out or refused at a re-login) before the
    /// server acknowledged the message; it may or may not be stored.
    #[error("the client stopped before the message was acknowledged")]
    Closed,
    /// The message cannot be encoded (a recipient id that is not a valid user id).
    #[error("invalid message: {0}")]
    Invalid(EncodeError),
    /// The message's packet is over the server's packet limit
    /// ([`ClientConfig::max_packet`](crate::ClientConfig::max_packet)); it was not sent. A
    /// server closes the connection on such a packet without answering (docs/protocol.md §1).
    /// A body within it but over the server's `max_body` is refused by the server instead,
    /// as [`SendError::Refused`] with TOO_LARGE.
    #[error("message packet of {payload} bytes is over the server's limit of {max_packet}")]
    TooLarge {
        /// The packet's payload length: the body and the SEND or GROUP_SEND fields around it.
        payload: usize,
        /// The limit.
        max_packet: u32,
    },
}

/// Why a request (group operations, logout) has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The server answered with a failure status.
    #[error("the server refused the request: {0}")]
    Refused(Status),
    /// The server answered RATE_LIMITED: this connection sent requests faster than the
    /// server's message rate, and the request was not carried out. Wait (a second or more),
    /// then ask again; a client that keeps sending past the rate is disconnected.
    #[error("rate limited: the request was not carried out; ask again later")]
    RateLimited,
    /// No answer within the request timeout. A request still queued then is dropped unsent;
    /// one already sent may or may not have taken effect.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The connection dropped after the request was sent and before its answer: it may or may
    /// not have taken effect. Requests not sent yet wait for the reconnect instead.
    #[error("the connection dropped before the answer")]
    ConnectionLost,
    /// The client stopped.
    #[error("the client stopped")]
    Closed,
    /// The request cannot be encoded (a name or member id breaking the protocol's limits).
    #[error("invalid request: {0}")]
    Invalid(EncodeError),
    /// The server answered OK with the body of another command (a server bug).
    #[error("the server answered with an unexpected body")]
    UnexpectedResponse,
}

/// Why [`Client::connect`](crate::Client::connect) failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectError {
    /// The configuration lists no endpoint.
    #[error("no endpoints configured")]
    NoEndpoints,
    /// The server refused the login (INVALID_TOKEN, TOKEN_EXPIRED, ...). Not retried.
    #[error("login refused: {0}")]
    LoginRefused(Status),
    /// The token provider failed.
    #[error("no token: {0}")]
    Token(String),
    /// No endpoint could be reached and logged into within the connect deadline.
    #[error("no endpoint reachable within {deadline:?}; last error: {last}")]
    Unreachable {
        /// The deadline that passed.
        deadline: Duration,
        /// The last attempt's failure.
        last: LinkError,
    },
    /// The client was kicked while logging in (another device took over at once).
    #[error("kicked during login: {reason:?} {text}")]
    Kicked {
        /// The server's reason.
        reason: KickReason,
        /// Its text.
        text: String,
    },
    /// The client stopped before its first login (its thread's poll failed).
    #[error("the client stopped before logging in")]
    Stopped,
    /// The background thread could not be started.
    #[error("cannot start the client thread: {0}")]
    Thread(Arc<io::Error>),
}

/// Why a connection attempt failed or an established connection dropped.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LinkError {
    /// The host name did not resolve to any address.
    #[error("{endpoint}: cannot resolve: {message}")]
    Resolve {
        /// The endpoint, as configured.
        endpoint: String,
        /// The resolver's error.
        message: String,
    },
    /// The TCP connect did not complete within `connect_timeout`.
    #[error("connect timed out")]
    ConnectTimeout,
    /// A socket error.
    #[error("i/o: {0}")]
    Io(Arc<io::Error>),
    /// The server closed the connection.
    #[error("closed by the server")]
    Closed,
    /// The byte stream broke its framing: the WebSocket upgrade was refused, a frame broke
    /// RFC 6455, a packet header was refused, a message was not one whole packet, or a text
    /// message came.
    #[error(transparent)]
    Stream(StreamError),
    /// A server packet that does not decode (not an unknown push, which is skipped).
    #[error("protocol: {0}")]
    Protocol(ServerPacketError),
    /// No answer to LOGIN within the request timeout.
    #[error("login timed out")]
    LoginTimeout,
    /// Nothing at all from the server for 2.5 heartbeat intervals.
    #[error("server silent for {0:?}")]
    Silent(Duration),
    /// A sync request was refused (BUSY, INTERNAL); the sync starts over after a reconnect.
    #[error("sync refused: {0}")]
    Sync(Status),
    /// The server answered a request with a body of another command, or a SYNC_FETCH that
    /// covers nothing (a server bug; reconnecting starts clean).
    #[error("unexpected answer to request {command:#06x}")]
    UnexpectedResponse {
        /// The request's command.
        command: u16,
    },
    /// A login was refused with a status worth retrying (BUSY, INTERNAL).
    #[error("login refused: {0}")]
    LoginRefused(Status),
    /// The token provider failed at a reconnect (retried with the next round).
    #[error("no token: {0}")]
    Token(String),
    /// The server sent KICKED with a reason that asks for a reconnect (SERVER_SHUTDOWN).
    #[error("server shutting down: {0}")]
    ServerShutdown(String),
}

impl From<io::Error> for LinkError {
    fn from(error: io::Error) -> Self {
        LinkError::Io(Arc::new(error))
    }
}

/// Why a client stopped for good (its last event, [`Event::Stopped`](crate::Event::Stopped)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The application closed or dropped the client, or logged out.
    Closed,
    /// The server kicked the connection with a reason that forbids reconnecting
    /// (LOGGED_IN_ELSEWHERE, PROTOCOL_VIOLATION, or a reason this SDK does not know).
    Kicked {
        /// The server's reason.
        reason: KickReason,
        /// Its text.
        text: String,
    },
    /// A re-login was refused (the token provider keeps returning a bad or expired token).
    LoginRefused(Status),
    /// The token provider failed at a reconnect.
    Token(String),
}
