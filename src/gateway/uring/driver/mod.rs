//! The io_uring driver: one reactor thread with its own ring, the same connection machines,
//! timer wheel, handler and inbox as the epoll driver (`epoll/`), and completions instead of
//! readiness. The loop below is the table of contents: one `io_uring_enter` per pass submits
//! what the last pass queued (receives, sends, cancels) and waits for completions up to the
//! next deadline; `complete` (completions.rs) feeds them to the machines; then the inbox, the
//! timers, the handler's end of batch, and the send stage (send.rs), as on epoll.
//!
//! Invariants:
//! - A connection receives through one multishot receive from the reactor's buffer ring, armed
//!   only while it may read: input allowed, no undecoded input held, under the slow-consumer
//!   cap. Bytes that arrive while it may not are kept in its machine (at most what landed
//!   before the cancel took effect) and decoded when it may again.
//! - At most one send per connection is in flight; its `Bytes` belong to the ring until its
//!   completion, and what the machine queues meanwhile goes out after it.
//! - A connection whose machine finished is forgotten at once (its id no longer reaches it,
//!   the handler was told), but its slot, socket and buffers are freed only once the last of
//!   its operations completed: no completion ever finds a reused slot.

use std::collections::HashSet;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use io_uring::cqueue;
use slab::Slab;
use tracing::{debug, warn};

use super::super::clock::{ReactorClock, TICK_MS};
use super::super::conn_id::{next_generation, ConnId};
use super::super::drain::DrainSpread;
use super::super::epoll::Shared;
use super::super::handle::{Command, GatewayHandle, InboxReceiver};
use super::super::handler::{Disconnect, Handler, Transport};
use super::super::machine::{Limits, Machine, Workspace};
use super::super::timer_wheel::TimerWheel;
use super::buf_ring::BufRing;
use super::ring::Ring;

mod accept;
mod completions;
mod drain;
mod events;
mod send;

/// Submission slots per ring (completions: twice as many, and the kernel keeps overflow).
pub(crate) const RING_ENTRIES: u32 = 4096;
/// The reactor's receive buffers: this many...
const RECV_BUFFERS: u16 = 256;
/// ...of this size (a receive takes a whole one, and gives it back once decoded).
const RECV_BUFFER_LEN: u32 = 16 << 10;
const BUFFER_GROUP: u16 = 0;
/// After EMFILE/ENFILE, retry accepting this often.
const ACCEPT_RETRY_TICKS: u64 = 10;
const TRIM_AFTER_CHURN: usize = 8 << 20;
const TRIM_EVERY_TICKS: u64 = 50;

/// What a completion is for: the top byte of its user data (the rest is a connection key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    AcceptTcp,
    AcceptWs,
    Recv,
    Send,
    /// A cancel of one connection's operations (counted until it completes).
    Cancel,
    /// A cancel whose completion is ignored (of an accept, or at exit).
    Other,
    Wake,
}

pub(crate) fn user_data(op: Op, key: usize) -> u64 {
    ((op as u64) << 56) | key as u64
}

pub(crate) fn decode_user_data(data: u64) -> (Op, usize) {
    let op = match data >> 56 {
        0 => Op::AcceptTcp,
        1 => Op::AcceptWs,
        2 => Op::Recv,
        3 => Op::Send,
        4 => Op::Cancel,
        6 => Op::Wake,
        _ => Op::Other,
    };
    (op, (data & ((1 << 56) - 1)) as usize)
}

/// Whether a connection's multishot receive is armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recv {
    Off,
    Armed,
    /// Cancelled; its last completion is still to come.
    Cancelling,
    /// The peer's end of stream was read, but input held before it is still to be decoded:
    /// the machine is told after that.
    Eof,
    /// The peer's end of stream was read and told: nothing more will come.
    Ended,
}

impl Recv {
    fn in_flight(self) -> bool {
        matches!(self, Recv::Armed | Recv::Cancelling)
    }
}

/// One connection as this driver holds it.
pub(crate) struct Conn {
    fd: OwnedFd,
    generation: u32,
    machine: Machine,
    recv: Recv,
    /// Cancels submitted for it whose completions have not come back.
    cancels: u8,
    /// The machine finished: the connection is waiting for its operations to complete.
    retired: bool,
}

/// A listener and whether its multishot accept is armed.
struct Listener {
    socket: std::net::TcpListener,
    armed: bool,
}

pub(crate) struct Reactor<H: Handler> {
    index: usize,
    ring: Ring,
    bufs: Option<BufRing>,
    tcp_listener: Option<Listener>,
    ws_listener: Option<Listener>,
    wake_fd: Arc<std::fs::File>,
    conns: Slab<Conn>,
    generations: Vec<u32>,
    wheel: TimerWheel,
    fired: Vec<usize>,
    ws: Workspace,
    inbox: InboxReceiver,
    local: Vec<Command>,
    dirty: Vec<usize>,
    /// Connections with input held back (a used decode budget): decoded next pass.
    again: Vec<usize>,
    /// Connections whose receive ended: re-armed after this batch of completions.
    rearm: Vec<usize>,
    accept_paused_at: Option<u64>,
    accept_paused_warned: bool,
    /// Accepted while input was paused: admitted when the handler has room.
    accept_held: Vec<(OwnedFd, Transport)>,
    handler: H,
    handle: GatewayHandle,
    shared: Arc<Shared>,
    clock: ReactorClock,
    now: u64,
    read_paused: HashSet<usize>,
    input_paused: bool,
    unread: HashSet<usize>,
    queued_published: usize,
    last_trim: u64,
    draining_until: Option<u64>,
    /// A spread drain's connections still to hand to the handler (`Command::Drain`).
    spread: Option<DrainSpread>,
    cqes: Vec<cqueue::Entry>,
    send_scratch: Vec<Bytes>,
}

impl<H: Handler> Reactor<H> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        index: usize,
        ring: io_uring::IoUring,
        tcp_listener: Option<std::net::TcpListener>,
        ws_listener: Option<std::net::TcpListener>,
        wake_fd: Arc<std::fs::File>,
        inbox: InboxReceiver,
        handler: H,
        handle: GatewayHandle,
        shared: Arc<Shared>,
    ) -> io::Result<Self> {
        let ring = Ring::new(ring);
        let bufs = BufRing::register(
            &ring.submitter(),
            BUFFER_GROUP,
            shared.config.uring_recv_buffers.unwrap_or(RECV_BUFFERS),
            shared
                .config
                .uring_recv_buffer_len
                .unwrap_or(RECV_BUFFER_LEN),
            // Incremental consumption (one buffer serving many receives) corrupted the byte
            // stream under tests/backpressure.rs on Linux 6.18 (a packet's bytes out of place
            // after a cut connection's receive was cancelled); whole buffers until that is
            // understood.
            false,
        )?;
        let start = shared.config.clock_start_ticks;
        let mut ws = Workspace::new(Limits::new(&shared.config), start);
        ws.share_per_ip(shared.per_ip.clone());
        let listener = |socket| Listener {
            socket,
            armed: false,
        };
        Ok(Reactor {
            index,
            ring,
            bufs: Some(bufs),
            tcp_listener: tcp_listener.map(listener),
            ws_listener: ws_listener.map(listener),
            wake_fd,
            conns: Slab::new(),
            generations: Vec::new(),
            wheel: TimerWheel::new(),
            fired: Vec::new(),
            ws,
            inbox,
            local: Vec::new(),
            dirty: Vec::new(),
            again: Vec::new(),
            rearm: Vec::new(),
            accept_paused_at: None,
            accept_paused_warned: false,
            accept_held: Vec::new(),
            handler,
            handle,
            shared,
            clock: ReactorClock::new(start),
            now: start,
            read_paused: HashSet::new(),
            input_paused: false,
            unread: HashSet::new(),
            queued_published: 0,
            last_trim: start,
            draining_until: None,
            spread: None,
            cqes: Vec::with_capacity(1024),
            send_scratch: Vec::new(),
        })
    }

    /// Runs until a shutdown has drained every connection (or its deadline passed).
    pub(crate) fn run(mut self) {
        self.arm_accepts();
        self.ring
            .read_wake(self.wake_fd.as_raw_fd(), user_data(Op::Wake, 0));
        loop {
            let timeout = self.wait_timeout();
            if timeout != Some(Duration::ZERO) {
                self.trim_after_churn();
            }
            if let Err(e) = self.ring.submit_and_wait(timeout) {
                warn!(reactor = self.index, error = %e, "io_uring_enter failed; reactor exits");
                return;
            }
            let pass = Instant::now();
            self.now = self.clock.now();
            self.ws.set_now(self.now);
            self.resume_input();
            let waiting = std::mem::take(&mut self.again);
            self.complete_all();
            self.revisit(waiting);
            self.inbox_ready();
            self.timers_due();
            self.drain_due();
            self.end_of_batch();
            self.send_stage();
            self.complete_all(); // what the pass's own work completed inline
            self.publish_metrics(pass);
            if self.drained() {
                return;
            }
        }
    }

    fn wait_timeout(&self) -> Option<Duration> {
        if !self.again.is_empty() || !self.rearm.is_empty() {
            return Some(Duration::ZERO);
        }
        let now = self.clock.now();
        let mut timeout = self.wheel.next_deadline().map(|deadline| {
            Duration::from_millis(deadline.saturating_sub(now).saturating_mul(TICK_MS))
        });
        if self.draining_until.is_some()
            || self.accept_paused_at.is_some()
            || self.ws.churn() >= TRIM_AFTER_CHURN
        {
            let cap = Duration::from_millis(ACCEPT_RETRY_TICKS * TICK_MS);
            timeout = Some(timeout.map_or(cap, |t| t.min(cap)));
        }
        timeout
    }

    // ---- pausing input ---------------------------------------------------------------------

    fn input_allowed(&mut self) -> bool {
        if self.input_paused {
            return false;
        }
        let handler = &mut self.handler;
        let wants = catch_unwind(AssertUnwindSafe(|| handler.wants_input())).unwrap_or(true);
        if !wants {
            debug!(reactor = self.index, "input paused: the handler is full");
            self.input_paused = true;
        }
        wants
    }

    fn resume_input(&mut self) {
        if !self.input_paused {
            return;
        }
        let handler = &mut self.handler;
        if !catch_unwind(AssertUnwindSafe(|| handler.wants_input())).unwrap_or(true) {
            return;
        }
        debug!(reactor = self.index, "input resumed");
        self.input_paused = false;
        self.again.extend(self.unread.drain());
        for (fd, transport) in std::mem::take(&mut self.accept_held) {
            self.admit_socket(fd, transport);
        }
        self.arm_accepts();
    }

    // ---- receiving -------------------------------------------------------------------------

    /// Arms the connection's receive if it may read now.
    fn ensure_recv(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.retired
            || conn.recv != Recv::Off
            || self.input_paused
            || conn.machine.over_cap(&self.ws)
            || self.again.contains(&key)
        {
            return;
        }
        let group = self.bufs.as_ref().map_or(BUFFER_GROUP, BufRing::group);
        self.ring
            .recv(conn.fd.as_raw_fd(), group, user_data(Op::Recv, key));
        conn.recv = Recv::Armed;
    }

    /// Stops the connection's receive (what already landed still comes).
    fn stop_recv(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.recv == Recv::Armed {
            self.ring
                .cancel(user_data(Op::Recv, key), user_data(Op::Cancel, key));
            conn.recv = Recv::Cancelling;
            conn.cancels += 1;
        }
    }

    fn is_live(&self, key: usize) -> bool {
        self.conns.get(key).is_some_and(|c| !c.retired)
    }

    // ---- timers, draining, removing --------------------------------------------------------

    fn timers_due(&mut self) {
        self.wheel.advance(self.now, &mut self.fired);
        let fired = std::mem::take(&mut self.fired);
        for &key in &fired {
            if let Some(conn) = self.conns.get_mut(key).filter(|c| !c.retired) {
                let waiting = self.unread.contains(&key);
                conn.machine.on_timer(&mut self.ws, key, waiting);
                self.settle();
            }
        }
        self.fired = fired;
        self.fired.clear();
    }

    fn publish_metrics(&mut self, pass: Instant) {
        let metrics = &self.shared.metrics[self.index];
        for (counter, refused) in metrics.refusals.iter().zip(self.ws.take_refused()) {
            if refused > 0 {
                counter.add(refused);
            }
        }
        for (counter, count) in metrics
            .tls_handshakes
            .iter()
            .zip(self.ws.take_tls_handshakes())
        {
            if count > 0 {
                counter.add(count);
            }
        }
        metrics.loop_seconds.observe_duration(pass.elapsed());
    }

    fn drained(&self) -> bool {
        match self.draining_until {
            Some(deadline) => self.conns.iter().all(|(_, c)| c.retired) || self.now >= deadline,
            None => false,
        }
    }

    fn id(&self, key: usize) -> ConnId {
        ConnId::new(self.index, key as u32, self.conns[key].generation)
    }

    fn live_key(&self, id: ConnId) -> Option<usize> {
        let conn = self.conns.get(id.key())?;
        (conn.generation == id.generation() && !conn.retired).then_some(id.key())
    }

    /// Forgets a connection whose machine finished; its socket and slot go once its last
    /// operation completed.
    fn retire(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key).filter(|c| !c.retired) else {
            return;
        };
        conn.retired = true;
        if conn.machine.ip_counted() {
            self.shared
                .per_ip
                .release(conn.machine.peer().ip(), self.now);
        }
        self.read_paused.remove(&key);
        self.unread.remove(&key);
        self.wheel.cancel(key);
        self.generations[key] = next_generation(conn.generation);
        self.shared.open_conns.fetch_sub(1, Ordering::AcqRel);
        if conn.recv == Recv::Armed || self.ring.sending(key) {
            let fd = conn.fd.as_raw_fd();
            self.ring.cancel_fd(fd, user_data(Op::Cancel, key));
            conn.cancels += 1;
            if conn.recv == Recv::Armed {
                conn.recv = Recv::Cancelling;
            }
        }
        self.free_if_done(key);
    }

    /// Closes the socket of a retired connection and frees its slot once nothing is in flight.
    fn free_if_done(&mut self, key: usize) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        if conn.retired && !conn.recv.in_flight() && conn.cancels == 0 && !self.ring.sending(key) {
            // Dropping the socket closes it.
            self.conns.remove(key);
        }
    }

    /// The raw descriptor of a live connection.
    fn fd(&self, key: usize) -> Option<RawFd> {
        self.conns
            .get(key)
            .filter(|c| !c.retired)
            .map(|c| c.fd.as_raw_fd())
    }

    fn trim_after_churn(&mut self) {
        let now = self.clock.now();
        if self.ws.churn() >= TRIM_AFTER_CHURN
            && now.saturating_sub(self.last_trim) >= TRIM_EVERY_TICKS
        {
            self.ws.take_churn();
            super::super::epoll::release_free_memory();
            self.last_trim = now;
        }
    }
}

impl<H: Handler> Drop for Reactor<H> {
    fn drop(&mut self) {
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            if let Some(conn) = self.conns.get_mut(key).filter(|c| !c.retired) {
                conn.machine.abort(&mut self.ws, key, Disconnect::Shutdown);
            }
            self.settle();
        }
        // Every receive cancelled and waited for before the buffers go.
        let entry_key = user_data(Op::Other, 0);
        for (_, conn) in self.conns.iter() {
            if conn.recv.in_flight() {
                self.ring.cancel_fd(conn.fd.as_raw_fd(), entry_key);
            }
        }
        let give_up = Instant::now() + Duration::from_secs(2);
        while self.conns.iter().any(|(_, c)| c.recv.in_flight()) && Instant::now() < give_up {
            let _ = self.ring.submit_and_wait(Some(Duration::from_millis(20)));
            let mut cqes = std::mem::take(&mut self.cqes);
            cqes.clear();
            self.ring.completions(&mut cqes);
            for cqe in &cqes {
                let (op, key) = decode_user_data(cqe.user_data());
                match op {
                    Op::Recv if !cqueue::more(cqe.flags()) => {
                        if let Some(conn) = self.conns.get_mut(key) {
                            conn.recv = Recv::Off;
                        }
                    }
                    Op::Send => {
                        self.ring.sent(key);
                    }
                    _ => {}
                }
            }
        }
        if let Some(bufs) = self.bufs.take() {
            if self.conns.iter().all(|(_, c)| !c.recv.in_flight()) {
                let _ = bufs.unregister(&self.ring.submitter());
            }
            // Otherwise dropping it leaks the buffers rather than free them under the kernel.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A million of these live in one process: no bigger than the epoll driver's.
    #[test]
    fn a_connection_stays_small() {
        let size = std::mem::size_of::<Conn>();
        assert!(size <= 160, "Conn grew to {size} bytes");
    }

    #[test]
    fn user_data_round_trips() {
        for op in [
            Op::AcceptTcp,
            Op::AcceptWs,
            Op::Recv,
            Op::Send,
            Op::Cancel,
            Op::Wake,
        ] {
            for key in [0usize, 1, 12345, u32::MAX as usize] {
                assert_eq!(decode_user_data(user_data(op, key)), (op, key));
            }
        }
    }
}
