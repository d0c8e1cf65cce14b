//! The bridge between the gateway and the logic core: each reactor's [`ChatHandler`]
//! collects its connections' events during one pass of its event loop and hands them to the
//! logic core as one batch; the logic core answers through [`GatewayOutlet`], whose pushes go
//! to the reactors' inboxes (one wake-up per reactor per batch, not per message).
//!
//! Neither side waits on the other. The way in is a [`CoreQueue`], bounded in bytes: when it is
//! full, a handler keeps its batch and tells its reactor to stop reading
//! ([`Handler::wants_input`]) until the core has made room and woken it; the kernel's flow
//! control then holds the clients back, while the reactor keeps delivering pushes and running
//! its timers. The way out is the reactors' inboxes, bounded in bytes too: a push that does not
//! fit is held by [`GatewayOutlet`], in order with everything after it for that reactor, and
//! the core takes no new input until the reactor has drained its inbox and the outlet has
//! handed over what it held (`logic::driver`); the queue into the core then fills and the
//! reactors stop reading. So a burst of output faster than a reactor writes slows the senders,
//! and nothing the core pushed is dropped or closes a connection. The core never blocks on it:
//! its completions and timers go on, and it holds at most what one input's answers push past a
//! full inbox (a group message's fan-out) plus what completions push meanwhile.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use switchboard_codec::packet::{PacketRef, HEADER_LEN};
use switchboard_codec::ws::CloseCode;
use switchboard_codec::Decoded;
use switchboard_protocol::command::is_request;
use switchboard_protocol::{encode_error, Status};

use crate::core_queue::{event_bytes, CoreQueue};
use crate::gateway::{
    Admission, ConnId, ConnInfo, Disconnect, GatewayHandle, Handler, Message, Outbox,
};
use crate::logic::{CloseWhy, Inbound, Outlet};

use super::local::ReactorCore;

/// Bytes of events (packets and their envelopes) that may wait for the logic core, from all
/// reactors together: at the core's pace of small requests (docs/performance.md) well under
/// a second of work, and small beside the write queues.
pub const CORE_QUEUE_BYTES: usize = 16 << 20;

/// A handler hands its batch over in the middle of a pass once it holds this many bytes, so a
/// pass over many busy connections does not build one huge batch (and, when the core's queue
/// is full, reading stops here).
const BATCH_BYTES: usize = 256 << 10;

/// The gateway side of the bridge: one per reactor.
pub struct ChatHandler {
    reactor: usize,
    to_core: CoreQueue,
    batch: Vec<Inbound>,
    batch_bytes: usize,
    /// The core's queue refused the batch: hold input until it takes it.
    refused: bool,
    /// With one reactor (and no `--logic-thread own`), the core itself, run in this
    /// reactor's passes (`local`); `to_core` then carries only other threads' events.
    core: Option<Box<ReactorCore>>,
}

impl ChatHandler {
    /// The handler of reactor `reactor`, handing its events to the core through `to_core`.
    pub fn new(reactor: usize, to_core: CoreQueue) -> ChatHandler {
        ChatHandler {
            reactor,
            to_core,
            batch: Vec::new(),
            batch_bytes: 0,
            refused: false,
            core: None,
        }
    }

    /// The handler of the one reactor, running `core` on its thread.
    pub(super) fn with_core(reactor: usize, to_core: CoreQueue, core: ReactorCore) -> ChatHandler {
        ChatHandler {
            core: Some(Box::new(core)),
            ..ChatHandler::new(reactor, to_core)
        }
    }

    fn add(&mut self, event: Inbound) {
        self.batch_bytes += event_bytes(&event);
        self.batch.push(event);
    }

    /// Offers the batch to the core; if its queue is full, keeps it (and the reactor stops
    /// reading until the core wakes it).
    fn hand_over(&mut self) {
        if self.batch.is_empty() {
            self.refused = false;
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        if let Some(core) = &mut self.core {
            self.batch_bytes = 0;
            core.handle(batch);
            return;
        }
        match self.to_core.try_send(self.reactor, batch, self.batch_bytes) {
            Ok(()) => {
                self.batch_bytes = 0;
                self.refused = false;
            }
            Err(batch) => {
                self.batch = batch;
                self.refused = true;
            }
        }
    }
}

impl Handler for ChatHandler {
    fn open(&mut self, _out: &mut Outbox<'_>, conn: ConnId, info: &ConnInfo<'_>) -> Admission {
        self.add(Inbound::Opened(conn.as_u64(), info.peer));
        Admission::ACCEPT
    }

    fn message(&mut self, _out: &mut Outbox<'_>, conn: ConnId, message: Message) {
        // Text never arrives: the gateway refuses it with 1003 when `ws_text` is off.
        if let Message::Binary(packet) = message {
            self.add(Inbound::Packet(conn.as_u64(), packet));
        }
    }

    /// A request past the connection's message rate (docs/protocol.md §4, RATE_LIMITED) is
    /// answered here, on the reactor, and never reaches the logic core: a flood costs the
    /// core nothing. Anything that is not one request packet goes to the core as usual, which
    /// closes the connection for it.
    fn over_rate(&mut self, out: &mut Outbox<'_>, conn: ConnId, message: Message) {
        if let Message::Binary(packet) = message {
            match rate_limited_answer(&packet) {
                Some(answer) => out.push(conn, answer),
                None => self.add(Inbound::Packet(conn.as_u64(), packet)),
            }
        }
    }

    /// A drain reached the connection: the core says goodbye (RECONNECT_AFTER and KICKED
    /// to a logged-in client) and closes it with 1012.
    fn drain(&mut self, _out: &mut Outbox<'_>, conn: ConnId) {
        self.add(Inbound::Drain(conn.as_u64()));
    }

    fn disconnect(&mut self, _out: &mut Outbox<'_>, conn: ConnId, _reason: &Disconnect) {
        // Kept even when the core's queue is full: one per connection at most.
        self.add(Inbound::Closed(conn.as_u64()));
    }

    fn end_of_batch(&mut self, out: &mut Outbox<'_>) {
        self.hand_over();
        if let Some(core) = &mut self.core {
            core.deliver(out);
        }
    }

    fn poll(&mut self, out: &mut Outbox<'_>) -> Option<std::time::Duration> {
        self.core.as_mut().and_then(|core| core.poll(out))
    }

    fn wants_input(&mut self) -> bool {
        if self.refused || self.batch_bytes >= BATCH_BYTES {
            self.hand_over();
        }
        !self.refused
    }
}

/// RATE_LIMITED for the request `packet` holds, on its `seq` (0 when the payload is too short
/// to hold one, as for MALFORMED); `None` when `packet` is not exactly one request packet.
fn rate_limited_answer(packet: &[u8]) -> Option<Bytes> {
    let (request, used) = match PacketRef::parse(packet, u32::MAX) {
        Ok(Decoded::Complete(parsed)) => parsed,
        _ => return None,
    };
    if used != packet.len() || !is_request(request.command) {
        return None;
    }
    let seq = request
        .payload
        .first_chunk::<4>()
        .map_or(0, |seq| u32::from_be_bytes(*seq));
    let mut answer = BytesMut::with_capacity(HEADER_LEN + 6);
    encode_error(request.command, seq, Status::RATE_LIMITED, &mut answer).ok()?;
    Some(answer.freeze())
}

/// The logic core's side of the bridge: pushes and closes through the gateway's handle. A
/// push wakes its reactor only at the end of the core's turn, once for all of the turn's
/// pushes to it (a commit's acks arrive together), or once [`WAKE_AFTER_PUSHES`] are waiting,
/// so that a large fan-out is written while the core is still pushing. What a full inbox
/// gives back is held per reactor and offered again on every flush.
pub struct GatewayOutlet {
    handle: GatewayHandle,
    /// By reactor: pushed to since the last flush, to be woken then.
    to_wake: Vec<bool>,
    unwoken: usize,
    /// By reactor: what its inbox had no room for, and everything for it since, in order.
    held: Vec<VecDeque<Held>>,
    /// Pushes held, over all reactors.
    held_count: usize,
    room: crossbeam_channel::Receiver<()>,
}

/// A command for a reactor that waits for room in its inbox.
enum Held {
    Push(ConnId, Bytes),
    /// A close must follow the pushes before it.
    Close(ConnId, CloseCode),
}

/// Pushes held back from the reactors at most: enough to cover a turn of ordinary traffic,
/// few enough that a group message's fan-out starts going out at once.
const WAKE_AFTER_PUSHES: usize = 64;

impl GatewayOutlet {
    pub(super) fn new(handle: GatewayHandle) -> GatewayOutlet {
        let reactors = handle.reactors();
        GatewayOutlet {
            room: handle.room(),
            handle,
            to_wake: vec![false; reactors],
            unwoken: 0,
            held: (0..reactors).map(|_| VecDeque::new()).collect(),
            held_count: 0,
        }
    }

    /// Pushes pushed and not yet handed to a reactor's inbox.
    pub fn held(&self) -> usize {
        self.held_count
    }

    /// Offers reactor `reactor`'s held commands again, in order, until one does not fit.
    fn offer_held(&mut self, reactor: usize) {
        let Some(held) = self.held.get_mut(reactor) else {
            return;
        };
        while let Some(command) = held.pop_front() {
            match command {
                Held::Push(conn, packet) => match self.handle.offer_push(conn, packet) {
                    Ok(queued) => {
                        self.held_count -= 1;
                        self.to_wake[reactor] |= queued.is_some();
                    }
                    Err(packet) => {
                        held.push_front(Held::Push(conn, packet));
                        return;
                    }
                },
                Held::Close(conn, code) => self.handle.close(conn, code),
            }
        }
    }
}

impl Outlet for GatewayOutlet {
    fn push(&mut self, conn: u64, packet: Bytes) {
        let conn = ConnId::from_u64(conn);
        let reactor = conn.reactor();
        match self.held.get_mut(reactor) {
            None => return, // an id naming no reactor: nobody to deliver to
            Some(held) if !held.is_empty() => {
                held.push_back(Held::Push(conn, packet));
                self.held_count += 1;
            }
            Some(held) => match self.handle.offer_push(conn, packet) {
                Ok(None) => return,
                Ok(Some(_)) => self.unwoken += 1,
                Err(packet) => {
                    held.push_back(Held::Push(conn, packet));
                    self.held_count += 1;
                }
            },
        }
        // Full or not, the reactor must look at its inbox.
        self.to_wake[reactor] = true;
        if self.unwoken >= WAKE_AFTER_PUSHES {
            self.flush();
        }
    }

    fn flush(&mut self) {
        self.unwoken = 0;
        if self.held_count > 0 {
            for reactor in 0..self.held.len() {
                self.offer_held(reactor);
            }
        }
        for (reactor, wake) in self.to_wake.iter_mut().enumerate() {
            if std::mem::take(wake) {
                self.handle.wake(reactor);
            }
        }
    }

    fn holding(&self) -> bool {
        self.held_count > 0
    }

    fn room(&self) -> crossbeam_channel::Receiver<()> {
        self.room.clone()
    }

    fn close(&mut self, conn: u64, why: CloseWhy) {
        let code = close_code(why);
        let conn = ConnId::from_u64(conn);
        match self.held.get_mut(conn.reactor()) {
            Some(held) if !held.is_empty() => held.push_back(Held::Close(conn, code)),
            _ => self.handle.close(conn, code),
        }
    }
}

/// The close code (WebSocket) of each reason the core closes a connection for.
pub(super) fn close_code(why: CloseWhy) -> CloseCode {
    match why {
        CloseWhy::Logout => CloseCode::NORMAL,
        CloseWhy::Garbage => CloseCode::PROTOCOL_ERROR,
        CloseWhy::PolicyViolation => CloseCode::POLICY_VIOLATION,
        CloseWhy::Draining => CloseCode::SERVICE_RESTART,
        // Application codes (RFC 6455 §7.4.2: 4000-4999 are ours to define).
        CloseWhy::LoginFailed => CloseCode(4001),
        CloseWhy::LoginTimeout => CloseCode(4002),
        CloseWhy::Kicked => CloseCode(4003),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core_queue::CoreBatch;
    use crate::gateway::handle::Command;

    fn with_outbox(f: impl FnOnce(&mut Outbox<'_>)) {
        let poll = mio::Poll::new().unwrap();
        let waker = mio::Waker::new(poll.registry(), mio::Token(0)).unwrap();
        let (handle, _receivers) =
            GatewayHandle::new(vec![crate::gateway::handle::Waker::Mio(waker)], 1 << 20);
        let mut local = Vec::new();
        let mut out = Outbox {
            reactor: 0,
            local: &mut local,
            handle: &handle,
        };
        f(&mut out);
    }

    fn packets(batch: CoreBatch) -> usize {
        batch
            .into_iter()
            .filter(|e| matches!(e, Inbound::Packet(..)))
            .count()
    }

    #[test]
    fn the_outlet_wakes_each_reactor_it_pushed_to_once_at_the_end_of_the_turn() {
        let mut polls: Vec<mio::Poll> = (0..2).map(|_| mio::Poll::new().unwrap()).collect();
        let wakers = polls
            .iter()
            .map(|poll| mio::Waker::new(poll.registry(), mio::Token(0)).unwrap())
            .map(crate::gateway::handle::Waker::Mio)
            .collect();
        let (handle, receivers) = GatewayHandle::new(wakers, 1 << 20);
        let mut outlet = GatewayOutlet::new(handle);
        for key in 1..=3 {
            outlet.push(ConnId::new(1, key, 0).as_u64(), Bytes::from_static(b"ack"));
        }
        let mut events = mio::Events::with_capacity(4);
        let mut woken = |poll: &mut mio::Poll| {
            poll.poll(&mut events, Some(std::time::Duration::from_millis(50)))
                .unwrap();
            events.iter().count()
        };
        assert_eq!(woken(&mut polls[1]), 0, "no wake-up before the flush");
        outlet.flush();
        assert_eq!(woken(&mut polls[1]), 1);
        assert_eq!(woken(&mut polls[0]), 0, "nothing was pushed to reactor 0");
        let mut taken = 0;
        while receivers[1].take().is_some() {
            taken += 1;
        }
        assert_eq!(taken, 3);
        outlet.flush();
        receivers[1].rearm();
        assert_eq!(
            woken(&mut polls[1]),
            0,
            "a flush with nothing pushed wakes nobody"
        );
        // A fan-out does not wait for the end of the turn.
        for key in 0..WAKE_AFTER_PUSHES as u32 {
            outlet.push(ConnId::new(1, key, 0).as_u64(), Bytes::from_static(b"msg"));
        }
        assert_eq!(woken(&mut polls[1]), 1);
    }

    #[test]
    fn the_outlet_holds_what_a_full_inbox_gives_back_in_order_until_the_reactor_drains() {
        let poll = mio::Poll::new().unwrap();
        let waker = mio::Waker::new(poll.registry(), mio::Token(0)).unwrap();
        let packet = |n: u8| Bytes::from(vec![n; 1000]);
        let (handle, mut receivers) =
            GatewayHandle::new(vec![crate::gateway::handle::Waker::Mio(waker)], 1500);
        let receiver = receivers.pop().unwrap();
        let mut outlet = GatewayOutlet::new(handle);
        let room = outlet.room();
        let (a, b) = (ConnId::new(0, 1, 0), ConnId::new(0, 2, 0));
        outlet.push(a.as_u64(), packet(1));
        assert!(!outlet.holding());
        outlet.push(b.as_u64(), packet(2)); // does not fit
        assert!(outlet.holding());
        // Everything after it for that reactor waits behind it, closes too.
        outlet.close(b.as_u64(), CloseWhy::Logout);
        outlet.push(a.as_u64(), packet(3));
        assert_eq!(outlet.held(), 2);
        outlet.flush(); // still no room
        assert_eq!(outlet.held(), 2);

        let mut order = Vec::new();
        let take_all = |order: &mut Vec<String>| {
            while let Some(command) = receiver.take() {
                order.push(match command {
                    Command::Push(conn, message) => {
                        format!("push {} to {}", message.payload()[0], conn.key())
                    }
                    Command::Close(conn, _) => format!("close {}", conn.key()),
                    other => format!("{other:?}"),
                });
            }
        };
        take_all(&mut order);
        assert_eq!(room.try_recv(), Ok(()));
        outlet.flush();
        assert_eq!(outlet.held(), 1, "room for one push of 1000 B at a time");
        take_all(&mut order);
        outlet.flush();
        assert!(!outlet.holding());
        take_all(&mut order);
        assert_eq!(
            order,
            ["push 1 to 1", "push 2 to 2", "close 2", "push 3 to 1"],
            "nothing dropped, nothing reordered"
        );
    }

    #[test]
    fn a_full_core_queue_keeps_the_batch_and_pauses_input_until_the_core_takes_one() {
        let (queue, inbound) = CoreQueue::new(1 << 10);
        let mut handler = ChatHandler::new(0, queue.clone());
        let conn = ConnId::new(0, 1, 0);
        let message = || Message::Binary(Bytes::from(vec![1u8; 800]));
        with_outbox(|out| {
            handler.message(out, conn, message());
            handler.end_of_batch(out); // into the empty queue
            assert!(handler.wants_input());
            handler.message(out, conn, message());
            handler.message(out, conn, message());
            handler.end_of_batch(out); // does not fit: kept
            assert!(!handler.wants_input());
            assert_eq!(inbound.len(), 1);
            // Events that still come while paused (a disconnect) join the kept batch.
            handler.disconnect(out, conn, &Disconnect::ReadTimeout);
            // The core handles its batch: room, and the kept batch goes in whole.
            assert_eq!(packets(inbound.try_recv().unwrap()), 1);
            assert!(handler.wants_input());
            let kept = inbound.try_recv().unwrap();
            assert_eq!(kept.events().len(), 3);
            assert_eq!(packets(kept), 2);
            assert_eq!(queue.queued_bytes(), 0);
        });
    }

    #[test]
    fn a_request_over_the_rate_is_answered_rate_limited_on_its_seq() {
        let mut packet = BytesMut::new();
        switchboard_protocol::Request::Ping
            .encode(77, &mut packet)
            .unwrap();
        let answer = rate_limited_answer(&packet).expect("a request");
        let command = u16::from_be_bytes([answer[4], answer[5]]);
        let payload = answer.slice(HEADER_LEN..);
        let decoded = switchboard_protocol::ServerPacket::decode(command, payload).unwrap();
        let switchboard_protocol::ServerPacket::Response(response) = decoded else {
            panic!("not a response: {decoded:?}");
        };
        assert_eq!(response.seq, 77);
        assert_eq!(response.result, Err(Status::RATE_LIMITED));
        // Not one request packet: left to the core.
        assert_eq!(rate_limited_answer(&packet[..packet.len() - 1]), None);
        let mut two = packet.clone();
        two.extend_from_slice(&packet);
        assert_eq!(rate_limited_answer(&two), None);
        let mut push = BytesMut::new();
        switchboard_codec::packet::PacketEncoder::new()
            .encode_into(0x4001, b"x", &mut push)
            .unwrap();
        assert_eq!(rate_limited_answer(&push), None);
    }

    #[test]
    fn a_large_batch_is_handed_over_in_the_middle_of_a_pass() {
        let (queue, inbound) = CoreQueue::new(64 << 20);
        let mut handler = ChatHandler::new(0, queue);
        let conn = ConnId::new(0, 1, 0);
        with_outbox(|out| {
            while handler.batch_bytes < BATCH_BYTES {
                handler.message(out, conn, Message::Binary(Bytes::from(vec![0u8; 4096])));
            }
            assert!(inbound.is_empty());
            assert!(handler.wants_input());
            assert_eq!(inbound.len(), 1);
            assert!(handler.batch.is_empty());
        });
    }
}
