//! The connection machine: everything one connection means, with no socket, no mio type and
//! no clock of its own. A driver (`epoll/` today) feeds it bytes, end of stream, timer expiry,
//! the handler's answers and commands, and what the kernel took; it drains what the machine
//! asks for: events for the handler, bytes to send, the connection's next deadline, a FIN, and
//! the end of the connection.
//!
//! The split follows quinn-proto: a [`Machine`] per connection holds only that connection's
//! state (small: a million of them live in one process), and one [`Workspace`] per driver
//! thread holds what they share: the scratch read buffer whole frames are split from, the
//! encoders, this pass's push arena, the pong slots, the accounting of held bytes, and the one
//! queue of [`Event`]s every machine writes to.
//!
//! Invariants:
//! - Input is decoded one frame per [`Machine::poll_input`] call, and the driver delivers the
//!   events it queued before polling again: what the handler does about a message (an echo)
//!   is applied before the next frame is decoded (a protocol error after it closes behind it).
//! - Between [`Machine::on_bytes`] and [`Machine::end_input`] no other machine of the workspace
//!   reads input: the unfinished frame is moved out of the shared scratch buffer at the end.
//! - A machine queues [`Event::Disconnect`] at most once (only for an admitted connection) and
//!   always before its [`Event::Close`]; after `Close` it queues nothing more.

mod control;
mod input;
mod outgoing;
mod output;
mod state;
mod tls;
mod workspace;

#[cfg(test)]
mod tests;

pub use control::ControlLimit;
pub(crate) use state::Machine;
#[cfg(test)]
pub(crate) use state::Phase;
pub(crate) use workspace::{Limits, Workspace};

use switchboard_codec::ws::handshake::UpgradeRequest;

use super::handler::{Disconnect, Message};

/// What a machine asks of its driver, in the order it must happen. Each is queued with the
/// key the driver gave the connection.
#[derive(Debug)]
pub(crate) enum Event {
    /// Ask the handler to admit the connection (for WebSocket, with its upgrade request); the
    /// answer goes back through [`Machine::on_admission`].
    Open(Option<Box<UpgradeRequest>>),
    /// A whole message for the handler.
    Message(Message),
    /// A whole message past the connection's message rate, within its grace: for
    /// `Handler::over_rate`, not `Handler::message`.
    OverRate(Message),
    /// Tell the handler the admitted connection ended.
    Disconnect(Disconnect),
    /// The connection's one timer now fires at this tick (replacing any earlier deadline);
    /// the driver calls [`Machine::on_timer`] then.
    Deadline(u64),
    /// The first bytes since the last send wait: send them at the end of this pass (or now,
    /// if the driver is already sending).
    Transmit,
    /// Everything is sent and the connection is closing: shut down the sending side (FIN).
    Fin,
    /// The machine is finished: close the socket and forget the connection.
    Close,
}
