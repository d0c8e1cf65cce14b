//! Reaching the reactors from any thread: a cloneable handle over their inboxes.
//!
//! Each reactor has an inbox: a crossbeam channel plus a `mio::Waker`. A sender wakes the
//! reactor only if no wake-up is already pending (one atomic flag per inbox), so a burst of
//! commands from the logic core costs one `eventfd` write per reactor per batch, not one per
//! message. The reactor clears the flag before it drains the channel, so a command sent while
//! it drains is either seen in this drain or wakes it again; none is stranded.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use switchboard_codec::ws::CloseCode;

use super::conn_id::ConnId;
use super::handler::Message;

/// What other threads ask a reactor to do.
#[derive(Debug)]
pub enum Command {
    /// Write a message to a connection.
    Push(ConnId, Message),
    /// Close a connection after its queued writes.
    Close(ConnId, CloseCode),
    /// Stop accepting, close every connection with 1001, exit when drained.
    Shutdown,
}

impl Command {
    /// The connection the command is about, if any.
    pub fn conn(&self) -> Option<ConnId> {
        match self {
            Command::Push(conn, _) | Command::Close(conn, _) => Some(*conn),
            Command::Shutdown => None,
        }
    }
}

struct Inbox {
    sender: Sender<Command>,
    waker: mio::Waker,
    wake_pending: AtomicBool,
}

/// The receiving side of one reactor's inbox.
pub(crate) struct InboxReceiver {
    pub(crate) receiver: Receiver<Command>,
    flag: Arc<Inboxes>,
    index: usize,
}

impl InboxReceiver {
    /// Called by the reactor before draining: the next command sent will wake it again.
    pub(crate) fn rearm(&self) {
        self.flag.0[self.index]
            .wake_pending
            .store(false, Ordering::Release);
    }
}

struct Inboxes(Vec<Inbox>);

/// A cloneable, thread-safe way to push to and close any connection of the gateway.
#[derive(Clone)]
pub struct GatewayHandle {
    inboxes: Arc<Inboxes>,
}

impl GatewayHandle {
    /// Builds the inboxes, one per waker, and returns the handle and the receivers.
    pub(crate) fn new(wakers: Vec<mio::Waker>) -> (GatewayHandle, Vec<InboxReceiver>) {
        let mut receivers = Vec::with_capacity(wakers.len());
        let mut inboxes = Vec::with_capacity(wakers.len());
        for waker in wakers {
            let (sender, receiver) = crossbeam_channel::unbounded();
            inboxes.push(Inbox {
                sender,
                waker,
                wake_pending: AtomicBool::new(false),
            });
            receivers.push(receiver);
        }
        let inboxes = Arc::new(Inboxes(inboxes));
        let receivers = receivers
            .into_iter()
            .enumerate()
            .map(|(index, receiver)| InboxReceiver {
                receiver,
                flag: inboxes.clone(),
                index,
            })
            .collect();
        (GatewayHandle { inboxes }, receivers)
    }

    /// Writes a binary message to a connection. Silently dropped if it has closed.
    pub fn push(&self, conn: ConnId, payload: bytes::Bytes) {
        self.send(Command::Push(conn, Message::Binary(payload)));
    }

    /// Closes a connection (WebSocket: with this close code) after its queued writes.
    pub fn close(&self, conn: ConnId, code: CloseCode) {
        self.send(Command::Close(conn, code));
    }

    /// Asks every reactor to drain and exit.
    pub fn shutdown(&self) {
        for index in 0..self.inboxes.0.len() {
            self.send_to(index, Command::Shutdown);
        }
    }

    /// Number of reactors.
    pub fn reactors(&self) -> usize {
        self.inboxes.0.len()
    }

    pub(crate) fn send(&self, command: Command) {
        if let Some(conn) = command.conn() {
            self.send_to(conn.reactor(), command);
        }
    }

    fn send_to(&self, index: usize, command: Command) {
        let Some(inbox) = self.inboxes.0.get(index) else {
            return; // an id from another process or a corrupted id: nothing to deliver to
        };
        if inbox.sender.send(command).is_err() {
            return; // that reactor has exited
        }
        if !inbox.wake_pending.swap(true, Ordering::AcqRel) {
            // A failed wake means the reactor's poll is gone, i.e. it is exiting.
            let _ = inbox.waker.wake();
        }
    }
}
