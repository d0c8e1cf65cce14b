//! Reaching the reactors from any thread: a cloneable handle over their inboxes.
//!
//! Each reactor has an inbox: a crossbeam channel plus a `mio::Waker`. A sender wakes the
//! reactor only if no wake-up is already pending (one atomic flag per inbox), so a burst of
//! commands from the logic core costs one `eventfd` write per reactor per batch, not one per
//! message. The reactor clears the flag before it drains the channel, so a command sent while
//! it drains is either seen in this drain or wakes it again; none is stranded.
//!
//! An inbox is bounded in bytes (`GatewayConfig::inbox_bytes`), and a sender never blocks on
//! it. Two ways to push, for two kinds of sender:
//! - [`GatewayHandle::offer_push`] gives a push that does not fit back to its sender, and the
//!   reactor signals [`GatewayHandle::room`] once it has drained its inbox. The logic core
//!   pushes this way: it holds what did not fit and takes no new input until it has handed it
//!   over (`serve::bridge`), so a burst of fan-out slows the senders instead of being cut.
//! - [`GatewayHandle::push`] drops a push that does not fit and notes its connection; the
//!   reactor closes the noted connections as slow consumers (1013, try again later) before it
//!   applies anything else. For a sender that cannot hold anything: dropping silently would
//!   lose messages; closing makes the client reconnect and sync what it missed.
//!
//! The inbox fills only when its reactor's thread is starved of CPU: it drains its inbox every
//! pass, whether or not it is reading sockets (a consumer too slow to read is cut by the
//! connection's own write cap, not here).
//!
//! Invariant of the room signal: a sender that finds the inbox full sets `wants_room` before
//! it tries once more, and the reactor lowers the count before it looks at `wants_room` (once
//! its drain finds the channel empty), so either the retry fits or the signal is sent.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender};

use switchboard_codec::ws::CloseCode;

use super::byte_bound::{lock, try_reserve};
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
    /// Stop accepting, then hand the connections open now to the handler's
    /// [`Handler::drain`](super::handler::Handler::drain) evenly spread over this period;
    /// exit when none is left or the drain timeout after the period has passed.
    Drain(std::time::Duration),
}

/// What a push costs in an inbox: its payload and the command that carries it.
const PUSH_OVERHEAD: usize = std::mem::size_of::<Command>();

impl Command {
    /// Bytes counted against the inbox's bound: pushes only; a close or shutdown is small,
    /// one per connection at most, and must never be dropped.
    fn inbox_bytes(&self) -> usize {
        match self {
            Command::Push(_, message) => PUSH_OVERHEAD + message.payload().len(),
            Command::Close(..) | Command::Shutdown | Command::Drain(_) => 0,
        }
    }

    /// The connection the command is about, if any.
    pub fn conn(&self) -> Option<ConnId> {
        match self {
            Command::Push(conn, _) | Command::Close(conn, _) => Some(*conn),
            Command::Shutdown | Command::Drain(_) => None,
        }
    }
}

/// How a sender wakes a reactor: epoll's reactors poll a `mio::Waker`; io_uring's read an
/// eventfd through their ring.
pub(crate) enum Waker {
    Mio(mio::Waker),
    EventFd(Arc<std::fs::File>),
}

impl Waker {
    fn wake(&self) -> std::io::Result<()> {
        match self {
            Waker::Mio(waker) => waker.wake(),
            Waker::EventFd(fd) => {
                use std::io::Write;
                match (&**fd).write(&1u64.to_ne_bytes()) {
                    // A full counter (never in practice) is still a pending wake-up.
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
                    other => other.map(drop),
                }
            }
        }
    }
}

struct Inbox {
    sender: Sender<Command>,
    waker: Waker,
    wake_pending: AtomicBool,
    /// Bytes of the pushes sent and not yet taken by the reactor.
    queued: AtomicUsize,
    /// Connections with a push dropped because the inbox was full: to close.
    overflowed: Mutex<HashSet<ConnId>>,
    any_overflowed: AtomicBool,
    /// A push was given back for want of room: signal `Inboxes::room` after the next drain.
    wants_room: AtomicBool,
    /// The reactor has exited: nothing will drain this inbox again.
    gone: AtomicBool,
}

/// The receiving side of one reactor's inbox.
pub(crate) struct InboxReceiver {
    receiver: Receiver<Command>,
    flag: Arc<Inboxes>,
    index: usize,
}

impl InboxReceiver {
    /// Called by the reactor before draining: the next command sent will wake it again.
    pub(crate) fn rearm(&self) {
        self.inbox().wake_pending.store(false, Ordering::Release);
    }

    /// The next command, if any, and its bytes leave the inbox's count. Once the inbox is
    /// empty, a sender that was given a push back is told there is room.
    pub(crate) fn take(&self) -> Option<Command> {
        let Ok(command) = self.receiver.try_recv() else {
            self.signal_room();
            return None;
        };
        let bytes = command.inbox_bytes();
        if bytes > 0 {
            self.inbox().queued.fetch_sub(bytes, Ordering::AcqRel);
        }
        Some(command)
    }

    /// The connections that lost a push to a full inbox since the last call.
    pub(crate) fn take_overflowed(&self) -> Vec<ConnId> {
        let inbox = self.inbox();
        if !inbox.any_overflowed.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        lock(&inbox.overflowed).drain().collect()
    }

    fn signal_room(&self) {
        let inbox = self.inbox();
        if inbox.wants_room.load(Ordering::SeqCst) && inbox.wants_room.swap(false, Ordering::SeqCst)
        {
            // Full means a signal is already pending, which is as good.
            let _ = self.flag.room.0.try_send(());
        }
    }

    /// Bytes of pushes waiting in this inbox.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.inbox().queued.load(Ordering::Acquire)
    }

    fn inbox(&self) -> &Inbox {
        &self.flag.inboxes[self.index]
    }
}

impl Drop for InboxReceiver {
    /// A reactor that exits frees anyone holding pushes for it (they are dropped: its
    /// connections are gone).
    fn drop(&mut self) {
        self.inbox().gone.store(true, Ordering::SeqCst);
        self.inbox().wants_room.store(true, Ordering::SeqCst);
        self.signal_room();
    }
}

struct Inboxes {
    inboxes: Vec<Inbox>,
    /// The bound on each inbox's pushes, in bytes.
    capacity: usize,
    /// Signalled when a reactor that gave a push back has drained its inbox (one pending
    /// signal at most: it says "look again", not how much room).
    room: (Sender<()>, Receiver<()>),
}

/// A cloneable, thread-safe way to push to and close any connection of the gateway.
#[derive(Clone)]
pub struct GatewayHandle {
    inboxes: Arc<Inboxes>,
    /// The gateway's copies of its listening sockets (for a handover), released by a drain
    /// or shutdown so that the sockets close with the reactors' listeners.
    copies: super::listener::ListenerCopies,
}

impl GatewayHandle {
    /// Builds the inboxes, one per waker, and returns the handle and the receivers.
    pub(crate) fn new(wakers: Vec<Waker>, capacity: usize) -> (GatewayHandle, Vec<InboxReceiver>) {
        let mut receivers = Vec::with_capacity(wakers.len());
        let mut inboxes = Vec::with_capacity(wakers.len());
        for waker in wakers {
            let (sender, receiver) = crossbeam_channel::unbounded();
            inboxes.push(Inbox {
                sender,
                waker,
                wake_pending: AtomicBool::new(false),
                queued: AtomicUsize::new(0),
                overflowed: Mutex::new(HashSet::new()),
                any_overflowed: AtomicBool::new(false),
                wants_room: AtomicBool::new(false),
                gone: AtomicBool::new(false),
            });
            receivers.push(receiver);
        }
        let inboxes = Arc::new(Inboxes {
            inboxes,
            capacity,
            room: crossbeam_channel::bounded(1),
        });
        let receivers = receivers
            .into_iter()
            .enumerate()
            .map(|(index, receiver)| InboxReceiver {
                receiver,
                flag: inboxes.clone(),
                index,
            })
            .collect();
        let copies = super::listener::ListenerCopies::default();
        (GatewayHandle { inboxes, copies }, receivers)
    }

    /// Writes a binary message to a connection. Silently dropped if it has closed.
    pub fn push(&self, conn: ConnId, payload: bytes::Bytes) {
        self.send(Command::Push(conn, Message::Binary(payload)));
    }

    /// Closes a connection (WebSocket: with this close code) after its queued writes.
    pub fn close(&self, conn: ConnId, code: CloseCode) {
        self.send(Command::Close(conn, code));
    }

    /// Keeps the gateway's socket copies, to release when it drains.
    pub(crate) fn keep_copies(&mut self, copies: super::listener::ListenerCopies) {
        self.copies = copies;
    }

    /// Asks every reactor to drain and exit.
    pub fn shutdown(&self) {
        self.copies.release();
        for index in 0..self.inboxes.inboxes.len() {
            self.send_to(index, Command::Shutdown);
        }
    }

    /// Asks every reactor to stop accepting and close its connections spread evenly over
    /// `period` (each through [`Handler::drain`](super::handler::Handler::drain)), then exit.
    /// A later [`GatewayHandle::shutdown`] closes what is left at once.
    pub fn drain(&self, period: std::time::Duration) {
        self.copies.release();
        for index in 0..self.inboxes.inboxes.len() {
            self.send_to(index, Command::Drain(period));
        }
    }

    /// Number of reactors.
    pub fn reactors(&self) -> usize {
        self.inboxes.inboxes.len()
    }

    /// Bytes of pushes waiting in reactor `index`'s inbox.
    pub fn inbox_bytes(&self, index: usize) -> usize {
        self.inboxes
            .inboxes
            .get(index)
            .map_or(0, |inbox| inbox.queued.load(Ordering::Acquire))
    }

    /// Wakes reactor `index` for a pass with nothing to apply: how a handler that said it
    /// could take no input ([`Handler::wants_input`]) has it asked again once it has room.
    ///
    /// [`Handler::wants_input`]: super::handler::Handler::wants_input
    pub fn wake(&self, index: usize) {
        if let Some(inbox) = self.inboxes.inboxes.get(index) {
            inbox.wake();
        }
    }

    pub(crate) fn send(&self, command: Command) {
        if let Some(conn) = command.conn() {
            self.send_to(conn.reactor(), command);
        }
    }

    fn send_to(&self, index: usize, command: Command) {
        if self.enqueue(index, command) {
            self.inboxes.inboxes[index].wake();
        }
    }

    /// Like [`push`](Self::push), but leaves the reactor unwoken and returns its index, for
    /// the caller to [`wake`](Self::wake) once it has pushed all it has: one wake-up for many
    /// pushes. `None` when there is nothing to wake for (an id naming no live reactor).
    pub fn push_unwoken(&self, conn: ConnId, payload: bytes::Bytes) -> Option<usize> {
        let index = conn.reactor();
        self.enqueue(index, Command::Push(conn, Message::Binary(payload)))
            .then_some(index)
    }

    /// Like [`push_unwoken`](Self::push_unwoken), but a push that does not fit is given back
    /// (`Err`) instead of closing its connection, and the reactor will signal
    /// [`room`](Self::room) once it has drained its inbox. `Ok(Some(index))`: queued, wake
    /// reactor `index` when done; `Ok(None)`: nobody to deliver to (dropped).
    pub fn offer_push(
        &self,
        conn: ConnId,
        payload: bytes::Bytes,
    ) -> Result<Option<usize>, bytes::Bytes> {
        let index = conn.reactor();
        let Some(inbox) = self.inboxes.inboxes.get(index) else {
            return Ok(None);
        };
        let bytes = PUSH_OVERHEAD + payload.len();
        if !try_reserve(&inbox.queued, bytes, self.inboxes.capacity) {
            inbox.wants_room.store(true, Ordering::SeqCst);
            if inbox.gone.load(Ordering::SeqCst) {
                return Ok(None); // a full inbox of a reactor that has exited never drains
            }
            if !try_reserve(&inbox.queued, bytes, self.inboxes.capacity) {
                return Err(payload);
            }
        }
        let command = Command::Push(conn, Message::Binary(payload));
        if inbox.sender.send(command).is_err() {
            inbox.queued.fetch_sub(bytes, Ordering::AcqRel);
            return Ok(None); // that reactor has exited
        }
        Ok(Some(index))
    }

    /// Signalled after a reactor that gave a push back ([`offer_push`](Self::offer_push)) has
    /// drained its inbox: time to offer again. One pending signal at most, for all reactors.
    pub fn room(&self) -> Receiver<()> {
        self.inboxes.room.1.clone()
    }

    /// Puts `command` in reactor `index`'s inbox, or notes its connection as overflowed when
    /// the inbox is full; true when the reactor has something new to look at.
    fn enqueue(&self, index: usize, command: Command) -> bool {
        let Some(inbox) = self.inboxes.inboxes.get(index) else {
            return false; // an id from another process or a corrupted id: nothing to deliver to
        };
        let bytes = command.inbox_bytes();
        if bytes > 0 && !try_reserve(&inbox.queued, bytes, self.inboxes.capacity) {
            if let Some(conn) = command.conn() {
                lock(&inbox.overflowed).insert(conn);
                inbox.any_overflowed.store(true, Ordering::Release);
            }
            return true;
        }
        if inbox.sender.send(command).is_err() {
            if bytes > 0 {
                inbox.queued.fetch_sub(bytes, Ordering::AcqRel);
            }
            return false; // that reactor has exited
        }
        true
    }
}

impl Inbox {
    fn wake(&self) {
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            // A failed wake means the reactor's poll is gone, i.e. it is exiting.
            let _ = self.waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn inbox(capacity: usize) -> (GatewayHandle, InboxReceiver, mio::Poll) {
        let poll = mio::Poll::new().unwrap();
        let waker = mio::Waker::new(poll.registry(), mio::Token(0)).unwrap();
        let (handle, mut receivers) = GatewayHandle::new(vec![Waker::Mio(waker)], capacity);
        (handle, receivers.pop().unwrap(), poll)
    }

    fn conn(key: u32) -> ConnId {
        ConnId::new(0, key, 0)
    }

    #[test]
    fn a_full_inbox_drops_the_push_and_notes_its_connection_without_blocking() {
        let payload = Bytes::from(vec![7u8; 1000]);
        let cost = PUSH_OVERHEAD + payload.len();
        let (handle, receiver, _poll) = inbox(3 * cost);
        for _ in 0..3 {
            handle.push(conn(1), payload.clone());
        }
        assert_eq!(receiver.queued(), 3 * cost);
        // The fourth does not fit: dropped, not queued, and connection 2 is noted.
        handle.push(conn(2), payload.clone());
        assert_eq!(receiver.queued(), 3 * cost);
        // Closes always fit.
        handle.close(conn(3), CloseCode::NORMAL);
        assert_eq!(receiver.take_overflowed(), vec![conn(2)]);
        assert!(receiver.take_overflowed().is_empty());
        let mut taken = 0;
        while let Some(command) = receiver.take() {
            taken += 1;
            assert_ne!(command.conn(), Some(conn(2)));
        }
        assert_eq!(taken, 4);
        assert_eq!(receiver.queued(), 0);
        // Room again: pushes are queued again.
        handle.push(conn(2), payload);
        assert_eq!(receiver.queued(), cost);
    }

    #[test]
    fn a_push_offered_to_a_full_inbox_comes_back_and_the_next_drain_signals_room() {
        let payload = Bytes::from(vec![7u8; 1000]);
        let cost = PUSH_OVERHEAD + payload.len();
        let (handle, receiver, _poll) = inbox(2 * cost);
        let room = handle.room();
        assert_eq!(handle.offer_push(conn(1), payload.clone()), Ok(Some(0)));
        assert_eq!(handle.offer_push(conn(1), payload.clone()), Ok(Some(0)));
        // The third does not fit: given back, and nobody is noted to be closed.
        assert_eq!(
            handle.offer_push(conn(2), payload.clone()),
            Err(payload.clone())
        );
        assert_eq!(receiver.queued(), 2 * cost);
        assert!(receiver.take_overflowed().is_empty());
        assert!(
            room.try_recv().is_err(),
            "no room before the reactor drains"
        );
        assert!(receiver.take().is_some());
        assert!(
            room.try_recv().is_err(),
            "no signal in the middle of a drain"
        );
        while receiver.take().is_some() {}
        assert_eq!(room.try_recv(), Ok(()), "the drain signals room");
        assert_eq!(handle.offer_push(conn(2), payload), Ok(Some(0)));
        // A drain nobody waits for signals nothing.
        while receiver.take().is_some() {}
        assert!(room.try_recv().is_err());
    }

    #[test]
    fn a_reactor_that_exits_frees_whoever_holds_pushes_for_it() {
        let (handle, receiver, _poll) = inbox(100);
        let room = handle.room();
        let small = Bytes::from_static(b"hi");
        assert_eq!(
            handle.offer_push(conn(1), Bytes::from(vec![0u8; 200])),
            Ok(Some(0))
        );
        assert_eq!(
            handle.offer_push(conn(1), small.clone()),
            Err(small.clone())
        );
        drop(receiver);
        assert_eq!(room.try_recv(), Ok(()));
        assert_eq!(
            handle.offer_push(conn(1), small),
            Ok(None),
            "dropped, not held"
        );
    }

    #[test]
    fn unwoken_pushes_are_queued_and_wake_the_reactor_once_when_asked() {
        let (handle, receiver, mut poll) = inbox(1 << 20);
        let mut events = mio::Events::with_capacity(4);
        for key in 1..=3 {
            assert_eq!(
                handle.push_unwoken(conn(key), Bytes::from_static(b"hi")),
                Some(0)
            );
        }
        poll.poll(&mut events, Some(std::time::Duration::ZERO))
            .unwrap();
        assert!(events.is_empty(), "no wake-up before the caller asks");
        handle.wake(0);
        poll.poll(&mut events, Some(std::time::Duration::from_secs(5)))
            .unwrap();
        assert_eq!(events.iter().count(), 1);
        let mut taken = 0;
        while receiver.take().is_some() {
            taken += 1;
        }
        assert_eq!(taken, 3);
        // An id naming no reactor: nothing to wake.
        let stranger = ConnId::new(5, 1, 0);
        assert_eq!(
            handle.push_unwoken(stranger, Bytes::from_static(b"hi")),
            None
        );
    }

    #[test]
    fn an_empty_inbox_takes_one_push_larger_than_its_bound() {
        let (handle, receiver, _poll) = inbox(100);
        handle.push(conn(1), Bytes::from(vec![0u8; 10_000]));
        assert!(matches!(receiver.take(), Some(Command::Push(..))));
        assert!(receiver.take_overflowed().is_empty());
    }
}
