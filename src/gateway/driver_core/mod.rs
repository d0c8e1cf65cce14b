//! What the two drivers (`epoll/`, `uring/driver/`) share: one reactor thread's state apart
//! from its I/O interface (the slab of connections, the timer wheel, the workspace and its
//! queue of events, the handler and its inbox, pausing input, draining) and every step that
//! does not depend on how bytes reach the kernel. `Reactor<H, D>` is that state; `D`, a
//! [`Driver`], holds what only one backend has (a `mio::Poll` or a ring) and answers the few
//! questions that differ: how a send or a FIN is issued, how a finished connection is freed,
//! how the listeners stop.
//!
//! Invariants:
//! - A connection is live from its slot until its machine finishes (`Event::Close`); then it
//!   is forgotten at once (its id no longer reaches it, its counts are released), though its
//!   slot may stay taken until the driver frees it (io_uring: its last completion).
//! - Every handler call goes through `call_handler` and its commands are applied as it
//!   returns (`events.rs`); nothing here blocks.

use std::io;
use std::net::SocketAddr;
use std::os::fd::BorrowedFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use slab::Slab;
use tracing::{debug, warn};

use super::clock::{ReactorClock, TICK_MS};
use super::config::GatewayConfig;
use super::conn_id::{next_generation, ConnId};
use super::drain::DrainSpread;
use super::handle::{Command, GatewayHandle, InboxReceiver};
use super::handler::{Disconnect, Handler, Transport};
use super::limits::per_ip::PerIpTable;
use super::limits::syn_filter::{self, SynFilter};
use super::machine::{Limits, Machine, Workspace};
use super::timer_wheel::TimerWheel;

mod admit;
mod budget;
mod drain;
mod events;
mod memory;

pub(crate) use admit::is_resource_exhaustion;

/// Trim the allocator, when the reactor is about to wait for events, after this many bytes
/// went through its buffers and queues (read, or queued in a backlog) since the last trim...
const TRIM_AFTER_CHURN: usize = 8 << 20;
/// ...at most this often (ticks), so a load that comes and goes does not make the reactor
/// spend its time in `malloc_trim` and in faulting the returned pages back in.
const TRIM_EVERY_TICKS: u64 = 50;
/// After EMFILE/ENFILE, retry accepting this often instead of spinning on the listener.
const ACCEPT_RETRY_TICKS: u64 = 10;

/// State shared by the reactors of one gateway.
pub(crate) struct Shared {
    pub(crate) config: GatewayConfig,
    pub(crate) open_conns: AtomicUsize,
    /// Bytes in the write backlogs of every reactor, as each published at the end of its
    /// last pass (see `--max-queued-bytes`).
    pub(crate) queued_bytes: AtomicUsize,
    /// Connections closed because the process went over `--max-queued-bytes`.
    pub(crate) budget_closes: AtomicU64,
    /// One block of counters per reactor, each written by its reactor only.
    pub(crate) metrics: Box<[super::metrics::ReactorMetrics]>,
    /// Connections per client address (`--max-conns-per-ip`, `--ip-connect-rate`), shared
    /// with each reactor's machines for the check after a PROXY header.
    pub(crate) per_ip: Arc<PerIpTable>,
    /// Sources whose SYNs the listeners drop (`limits/syn_filter/`).
    pub(crate) syn_filter: SynFilter,
}

/// One connection as a driver holds it: at least a machine and the generation of its slot.
pub(crate) trait DriverConn {
    fn machine(&self) -> &Machine;
    fn machine_mut(&mut self) -> &mut Machine;
    fn generation(&self) -> u32;
    /// False once the machine finished while the driver still holds the slot.
    fn is_live(&self) -> bool {
        true
    }
}

/// What differs between the drivers. The driver's own loop (readiness or completions in) and
/// its read and send paths stay in its folder; these are the steps the shared code asks of it.
pub(crate) trait Driver: Sized {
    type Conn: DriverConn;
    /// What a new connection's `Conn` is made from.
    type Socket;
    /// Prepares a new connection's socket for slot `key` (epoll registers it); an error
    /// refuses the connection.
    fn register(&mut self, _key: usize, _socket: &mut Self::Socket) -> io::Result<()> {
        Ok(())
    }
    fn new_conn(socket: Self::Socket, generation: u32, machine: Machine) -> Self::Conn;
    /// A machine has bytes to send (`Event::Transmit`).
    fn transmit<H: Handler>(reactor: &mut Reactor<H, Self>, key: usize);
    /// A machine asks for its FIN (`Event::Fin`).
    fn fin<H: Handler>(reactor: &mut Reactor<H, Self>, key: usize);
    /// A machine finished (`Event::Close`): forget it (`Reactor::forget`) and free its socket.
    fn close<H: Handler>(reactor: &mut Reactor<H, Self>, key: usize);
    /// A drain began: stop accepting, so the kernel sends new clients elsewhere.
    fn stop_accepting<H: Handler>(reactor: &mut Reactor<H, Self>);
    /// This reactor's listening sockets still open (the SYN filter is attached to each).
    fn listeners(&self) -> [Option<BorrowedFd<'_>>; 2];
    /// The reactor is dropped, every machine aborted: release what the kernel still holds.
    fn release<H: Handler>(_reactor: &mut Reactor<H, Self>) {}
}

pub(crate) struct Reactor<H: Handler, D: Driver> {
    pub(crate) index: usize,
    pub(crate) conns: Slab<D::Conn>,
    /// Generation of each slab slot, kept across reuse.
    pub(crate) generations: Vec<u32>,
    pub(crate) wheel: TimerWheel,
    fired: Vec<usize>,
    /// What the machines share, and the queue of what they ask for.
    pub(crate) ws: Workspace,
    inbox: InboxReceiver,
    /// Commands the handler made for this reactor's connections in its current call.
    local: Vec<Command>,
    /// Connections with bytes to send at the end of this pass.
    pub(crate) dirty: Vec<usize>,
    /// Connections with a turn owed in the next pass (a used budget, input held back).
    pub(crate) again: Vec<usize>,
    /// Accepting paused by EMFILE/ENFILE at this tick.
    pub(crate) accept_paused_at: Option<u64>,
    /// Warned about this pause already (reset by the next successful accept).
    pub(crate) accept_paused_warned: bool,
    handler: H,
    handle: GatewayHandle,
    pub(crate) shared: Arc<Shared>,
    pub(crate) clock: ReactorClock,
    /// The tick this pass runs at (read once per pass).
    pub(crate) now: u64,
    /// Connections not read because they hold more than the slow-consumer cap; the send that
    /// leaves one under the cap resumes reading it.
    pub(crate) read_paused: std::collections::HashSet<usize>,
    /// The handler said it can take no input: nothing is read or accepted until it has room.
    pub(crate) input_paused: bool,
    /// Connections that were readable (or owed a turn) while input was paused.
    pub(crate) unread: std::collections::HashSet<usize>,
    /// How long the handler said the next wait may last, at most ([`Handler::poll`]).
    handler_wait: Option<Duration>,
    /// What of this reactor's backlog bytes is published in `Shared`.
    queued_published: usize,
    last_trim: u64,
    pub(crate) draining_until: Option<u64>,
    /// A spread drain's connections still to hand to the handler (`Command::Drain`).
    spread: Option<DrainSpread>,
    /// The SYN filter's generation attached to this reactor's listeners, and whether a
    /// failed attach was logged.
    syn_generation: u64,
    syn_attach_warned: bool,
    /// What only this driver has.
    pub(crate) io: D,
}

impl<H: Handler, D: Driver> Reactor<H, D> {
    pub(crate) fn with_driver(
        index: usize,
        io: D,
        inbox: InboxReceiver,
        handler: H,
        handle: GatewayHandle,
        shared: Arc<Shared>,
    ) -> Self {
        let start = shared.config.clock_start_ticks;
        let mut ws = Workspace::new(Limits::new(&shared.config), start);
        ws.share_per_ip(shared.per_ip.clone());
        let mut reactor = Reactor {
            index,
            conns: Slab::new(),
            generations: Vec::new(),
            wheel: TimerWheel::new(),
            fired: Vec::new(),
            ws,
            inbox,
            local: Vec::new(),
            dirty: Vec::new(),
            again: Vec::new(),
            accept_paused_at: None,
            accept_paused_warned: false,
            handler,
            handle,
            shared,
            clock: ReactorClock::new(start),
            now: start,
            read_paused: Default::default(),
            input_paused: false,
            unread: Default::default(),
            handler_wait: None,
            queued_published: 0,
            last_trim: start,
            draining_until: None,
            spread: None,
            // Never a generation: the first sync puts this process's program (none yet) on
            // the listeners, which may come from a process before it (`--handover`, socket
            // activation) with that one's program still attached.
            syn_generation: u64::MAX,
            syn_attach_warned: false,
            io,
        };
        reactor.sync_syn_filter();
        reactor
    }

    /// How long the next wait may last: not at all when `busy` (turns owed), otherwise until
    /// the next deadline, and at most an accept retry's time while draining, paused after
    /// EMFILE, or with memory to trim.
    pub(crate) fn wait_timeout(&self, busy: bool) -> Option<Duration> {
        if busy {
            return Some(Duration::ZERO);
        }
        let now = self.clock.now();
        let mut timeout = self.wheel.next_deadline().map(|deadline| {
            Duration::from_millis(deadline.saturating_sub(now).saturating_mul(TICK_MS))
        });
        if let Some(wait) = self.handler_wait {
            timeout = Some(timeout.map_or(wait, |t| t.min(wait)));
        }
        if let Some(expiry) = self.shared.syn_filter.next_expiry() {
            // A block's end changes the listeners' program, even with nothing else to do.
            let left = Duration::from_millis(expiry.saturating_sub(now).saturating_mul(TICK_MS));
            timeout = Some(timeout.map_or(left, |t| t.min(left)));
        }
        if self.draining_until.is_some()
            || self.accept_paused_at.is_some()
            || self.ws.churn() >= TRIM_AFTER_CHURN
        {
            let cap = Duration::from_millis(ACCEPT_RETRY_TICKS * TICK_MS);
            timeout = Some(timeout.map_or(cap, |t| t.min(cap)));
        }
        timeout
    }

    /// Starts a pass: reads the clock once for all of it.
    pub(crate) fn begin_pass(&mut self) {
        self.now = self.clock.now();
        self.ws.set_now(self.now);
        self.sync_syn_filter();
    }

    /// A refusal may have blocked its source: then this reactor's listeners take the new
    /// program at once and the other reactors are woken to take it (their listeners get the
    /// source's SYNs too, spread by SO_REUSEPORT).
    fn after_refusal(&mut self) {
        if self.shared.syn_filter.generation() == self.syn_generation {
            return;
        }
        self.sync_syn_filter();
        for index in (0..self.handle.reactors()).filter(|&i| i != self.index) {
            self.handle.wake(index);
        }
    }

    /// Releases the SYN filter's blocks that ended, and puts its program on this reactor's
    /// listeners if it changed since the last pass (one atomic load when it did not).
    fn sync_syn_filter(&mut self) {
        let filter = &self.shared.syn_filter;
        filter.expire(self.now);
        if filter.generation() == self.syn_generation {
            return;
        }
        let (generation, program) = filter.program();
        for listener in self.io.listeners().into_iter().flatten() {
            if let Err(error) = syn_filter::attach(listener, &program) {
                syn_filter::attach_failed(self.index, &error, &mut self.syn_attach_warned);
            }
        }
        self.syn_generation = generation;
    }

    /// The steps of every pass after the driver's own events and before its send stage: the
    /// inbox, the timers, a spread drain's turn, the handler's end of batch and its poll
    /// (after the inbox's rearm, so work another thread leaves for the handler after the poll
    /// looked wakes the reactor again).
    pub(crate) fn after_events(&mut self) {
        self.inbox_ready();
        self.timers_due();
        self.drain_due();
        self.end_of_batch();
        self.poll_handler();
    }

    // ---- pausing input ---------------------------------------------------------------------

    /// Whether input may be read now; if not, the reactor is paused until the handler has room.
    pub(crate) fn input_allowed(&mut self) -> bool {
        if self.input_paused {
            return false;
        }
        let handler = &mut self.handler;
        // A panic here says nothing about any connection: read on.
        let wants = catch_unwind(AssertUnwindSafe(|| handler.wants_input())).unwrap_or(true);
        if !wants {
            debug!(reactor = self.index, "input paused: the handler is full");
            self.input_paused = true;
        }
        wants
    }

    /// Once the handler has room again, gives every connection that was readable meanwhile a
    /// turn in this pass. True when input resumed now (the driver then turns to its listeners).
    pub(crate) fn input_resumes(&mut self) -> bool {
        if !self.input_paused {
            return false;
        }
        let handler = &mut self.handler;
        if !catch_unwind(AssertUnwindSafe(|| handler.wants_input())).unwrap_or(true) {
            return false;
        }
        debug!(reactor = self.index, "input resumed");
        self.input_paused = false;
        self.again.extend(self.unread.drain());
        true
    }

    // ---- accepting -------------------------------------------------------------------------

    /// An accept failed: out of descriptors or memory pauses accepting (retried on a timer:
    /// the backlog stays full, and spinning on it would starve the connections we serve).
    /// True if accepting is paused now.
    pub(crate) fn accept_failed(&mut self, error: &io::Error) -> bool {
        if !is_resource_exhaustion(error) {
            debug!(reactor = self.index, error = %error, "accept failed");
            return false;
        }
        if !self.accept_paused_warned {
            self.accept_paused_warned = true;
            warn!(reactor = self.index, error = %error, "accept paused: out of descriptors or memory");
        }
        self.accept_paused_at = Some(self.now);
        true
    }

    /// Whether accepting was paused and its retry time passed (the pause ends here).
    pub(crate) fn accept_retry_due(&mut self) -> bool {
        match self.accept_paused_at {
            Some(paused_at) if self.now.saturating_sub(paused_at) >= ACCEPT_RETRY_TICKS => {
                self.accept_paused_at = None;
                true
            }
            _ => false,
        }
    }

    /// Gives an accepted socket from `peer` a slot and a machine, unless the admission checks
    /// (`admit::admission_checks`) or the driver refuse it; dropping a refused socket closes
    /// it. `draining`: refuse it as a drain does.
    pub(crate) fn open_slot(
        &mut self,
        mut socket: D::Socket,
        peer: SocketAddr,
        transport: Transport,
        draining: bool,
    ) -> Option<usize> {
        let shared = &self.shared;
        let Some(ip_counted) =
            admit::admission_checks(shared, self.index, peer, transport, draining, self.now)
        else {
            self.after_refusal();
            return None;
        };
        let key = self.conns.vacant_key();
        let registered = match key >= u32::MAX as usize {
            true => Err(None),
            false => self.io.register(key, &mut socket).map_err(Some),
        };
        if let Err(error) = registered {
            shared.open_conns.fetch_sub(1, Ordering::AcqRel);
            if ip_counted {
                shared.per_ip.release(peer.ip(), self.now);
            }
            if let Some(error) = error {
                warn!(%peer, %error, "could not register connection");
            }
            return None;
        }
        if self.generations.len() <= key {
            self.generations.resize(key + 1, 0);
        }
        let generation = self.generations[key];
        let mut machine = Machine::new(&mut self.ws, key, peer, transport);
        if ip_counted {
            machine.set_ip_counted();
        }
        self.conns.insert(D::new_conn(socket, generation, machine));
        self.settle();
        Some(key)
    }

    // ---- timers, connections -----------------------------------------------------------------

    pub(crate) fn timers_due(&mut self) {
        self.wheel.advance(self.now, &mut self.fired);
        let fired = std::mem::take(&mut self.fired);
        for &key in &fired {
            if let Some(conn) = self.conns.get_mut(key).filter(|c| c.is_live()) {
                let waiting = self.unread.contains(&key);
                conn.machine_mut().on_timer(&mut self.ws, key, waiting);
                self.settle();
            }
        }
        self.fired = fired;
        self.fired.clear();
    }

    pub(crate) fn is_live(&self, key: usize) -> bool {
        self.conns.get(key).is_some_and(|c| c.is_live())
    }

    pub(crate) fn id(&self, key: usize) -> ConnId {
        ConnId::new(self.index, key as u32, self.conns[key].generation())
    }

    pub(crate) fn live_key(&self, id: ConnId) -> Option<usize> {
        let conn = self.conns.get(id.key())?;
        (conn.generation() == id.generation() && conn.is_live()).then_some(id.key())
    }

    /// Forgets a live connection whose machine finished: its id no longer reaches it and its
    /// counts are released. The driver frees its slot and socket. False if it was not live.
    pub(crate) fn forget(&mut self, key: usize) -> bool {
        let Some(conn) = self.conns.get(key).filter(|c| c.is_live()) else {
            return false;
        };
        let machine = conn.machine();
        if machine.ip_counted() {
            self.shared.per_ip.release(machine.peer().ip(), self.now);
        }
        self.read_paused.remove(&key);
        self.unread.remove(&key);
        self.wheel.cancel(key);
        self.generations[key] = next_generation(conn.generation());
        self.shared.open_conns.fetch_sub(1, Ordering::AcqRel);
        true
    }

    /// A drain is over: every connection gone, or its deadline passed.
    pub(crate) fn drained(&self) -> bool {
        match self.draining_until {
            Some(deadline) => self.conns.iter().all(|(_, c)| !c.is_live()) || self.now >= deadline,
            None => false,
        }
    }

    // ---- the end of a pass -----------------------------------------------------------------

    /// The machines' refusals and TLS handshakes of this pass, and its time, into this
    /// reactor's counters.
    pub(crate) fn publish_metrics(&mut self, pass: Instant) {
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

    /// Hands freed memory back to the kernel once enough went through (see `memory`).
    /// Called when the reactor is about to wait for events.
    pub(crate) fn trim_after_churn(&mut self) {
        let now = self.clock.now();
        if self.ws.churn() >= TRIM_AFTER_CHURN
            && now.saturating_sub(self.last_trim) >= TRIM_EVERY_TICKS
        {
            let churn = self.ws.take_churn();
            debug!(
                reactor = self.index,
                churn, "returning freed memory to the kernel"
            );
            memory::release_free_memory();
            self.last_trim = now;
        }
    }
}

impl<H: Handler, D: Driver> Drop for Reactor<H, D> {
    fn drop(&mut self) {
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            if let Some(conn) = self.conns.get_mut(key).filter(|c| c.is_live()) {
                conn.machine_mut()
                    .abort(&mut self.ws, key, Disconnect::Shutdown);
            }
            self.settle();
        }
        D::release(self);
    }
}
