//! Where the logic core's packets go, and how its answers are encoded on the way.
//!
//! [`Outlet`] is the seam to the gateway (or a test): packets and closes for connections by
//! key, never a socket. [`Replies`] owns the one scratch buffer every answer is encoded into;
//! an answer that cannot be encoded becomes an INTERNAL refusal, never a panic or silence.

use bytes::{Bytes, BytesMut};
use switchboard_codec::packet::HEADER_LEN;
use switchboard_protocol::{
    encode_error, Command, KickReason, Push, RequestError, ResponseBody, Status, Text,
};
use tracing::warn;

use super::session::ConnKey;

/// Why the logic core closes a connection; the gateway maps it to a close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseWhy {
    /// LOGIN failed or another request came first.
    LoginFailed,
    /// No LOGIN within the login timeout.
    LoginTimeout,
    /// The same user logged in with the same device kind elsewhere.
    Kicked,
    /// The client logged out.
    Logout,
    /// The client kept sending requests that do not parse.
    Garbage,
    /// The client sent PING faster than the documented pace.
    PolicyViolation,
    /// The server is draining (after KICKED(SERVER_SHUTDOWN) for a logged-in client).
    Draining,
}

/// Where the logic core's bytes go: the gateway, through its handle.
pub trait Outlet {
    /// Sends one whole packet to a connection (dropped if it has closed).
    fn push(&mut self, conn: ConnKey, packet: Bytes);
    /// Closes a connection after what was pushed to it.
    fn close(&mut self, conn: ConnKey, why: CloseWhy);
    /// The end of a turn of the core: whatever was pushed since the last flush must go out
    /// now. An outlet may hold its wake-ups until here (one per reactor per turn, not one per
    /// push); one that sends at once has nothing to do. An outlet that is holding pushes
    /// offers them again here.
    fn flush(&mut self) {}
    /// Whether the outlet holds pushes its gateway had no room for. While it does, the core
    /// takes no new input (the queue into it fills, and the reactors stop reading): a burst of
    /// output slows the senders rather than outrunning the reactors. Completions and timers
    /// still run.
    fn holding(&self) -> bool {
        false
    }
    /// Signalled when the gateway may have room for what the outlet holds (the core then
    /// flushes); never, for an outlet that never holds.
    fn room(&self) -> crossbeam_channel::Receiver<()> {
        crossbeam_channel::never()
    }
}

/// The core's answers: encoded into one reused buffer, handed to the outlet.
pub(super) struct Replies<O> {
    out: O,
    scratch: BytesMut,
    /// The packet limit (payload bytes): no response passes it.
    max_packet: usize,
}

impl<O: Outlet> Replies<O> {
    pub(super) fn new(out: O, max_packet: usize) -> Self {
        Replies {
            out,
            scratch: BytesMut::new(),
            max_packet,
        }
    }

    /// A successful response to request `seq`, or INTERNAL if it cannot be sent.
    pub(super) fn reply(&mut self, conn: ConnKey, seq: u32, body: ResponseBody) {
        let error = match body.encode(seq, &mut self.scratch) {
            Err(error) => Some(error.to_string()),
            // docs/protocol.md §1: never a packet larger than the server accepts. The start-up
            // checks leave only data kept from larger limits (a group that grew under a larger
            // --group-member-limit, then --max-packet lowered).
            Ok(()) if self.scratch.len() > HEADER_LEN + self.max_packet => Some(format!(
                "{} bytes, over the packet limit",
                self.scratch.len()
            )),
            Ok(()) => None,
        };
        if let Some(error) = error {
            warn!(%error, "cannot send a response");
            self.scratch.clear();
            let code = body.command().code();
            let _ = encode_error(code, seq, Status::INTERNAL, &mut self.scratch);
        }
        self.flush_to(conn);
    }

    /// A refusal of request `seq` with `status`.
    pub(super) fn refuse(&mut self, conn: ConnKey, command: Command, seq: u32, status: Status) {
        let _ = encode_error(command.code(), seq, status, &mut self.scratch);
        self.flush_to(conn);
    }

    /// The answer to a request that did not decode (MALFORMED or UNKNOWN_COMMAND).
    pub(super) fn refuse_undecodable(&mut self, conn: ConnKey, error: &RequestError) {
        let _ = error.encode_response(&mut self.scratch);
        self.flush_to(conn);
    }

    /// An already encoded packet (a push shared by several connections).
    pub(super) fn push(&mut self, conn: ConnKey, packet: Bytes) {
        self.out.push(conn, packet);
    }

    /// KICKED with `reason`, encoded once, for sending to one or many connections.
    pub(super) fn kicked(&mut self, reason: KickReason, text: &'static str) -> Option<Bytes> {
        let kicked = Push::Kicked {
            reason,
            text: Text::from(text),
        };
        kicked.encode(&mut self.scratch).ok()?;
        Some(self.scratch.split().freeze())
    }

    /// RECONNECT_AFTER with `delay_ms` to one connection (KICKED follows).
    pub(super) fn push_reconnect_after(&mut self, conn: ConnKey, delay_ms: u32) {
        if (Push::ReconnectAfter { delay_ms })
            .encode(&mut self.scratch)
            .is_ok()
        {
            self.flush_to(conn);
        }
    }

    /// KICKED with `reason` to one connection; the caller closes it.
    pub(super) fn push_kicked(&mut self, conn: ConnKey, reason: KickReason, text: &'static str) {
        if let Some(packet) = self.kicked(reason, text) {
            self.out.push(conn, packet);
        }
    }

    pub(super) fn close(&mut self, conn: ConnKey, why: CloseWhy) {
        self.out.close(conn, why);
    }

    pub(super) fn flush(&mut self) {
        self.out.flush();
    }

    pub(super) fn holding(&self) -> bool {
        self.out.holding()
    }

    pub(super) fn outlet_mut(&mut self) -> &mut O {
        &mut self.out
    }

    pub(super) fn room(&self) -> crossbeam_channel::Receiver<()> {
        self.out.room()
    }

    fn flush_to(&mut self, conn: ConnKey) {
        if !self.scratch.is_empty() {
            let packet = self.scratch.split().freeze();
            self.out.push(conn, packet);
        }
    }
}
