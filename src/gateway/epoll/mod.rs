//! The epoll driver: one reactor thread with a `mio::Poll`, its own listeners, a slab of
//! connections (a socket and a connection machine each), a timer wheel, one read window, and
//! an inbox. The event loop below is the table of contents: `accept_ready`, `conn_readable`,
//! `conn_writable`, `inbox_ready`, `timers_due`, `send_stage`.
//!
//! What a connection means lives in `machine/`; this folder only moves bytes and readiness.
//! Everything the machines ask for (handler events, deadlines, sends, FIN, closes) comes out
//! of one queue in the workspace, and `settle` (events.rs) drains it in one loop: a handler
//! call's commands are applied as it returns and only queue more events, so no handler call
//! is ever nested in another. `read.rs` is the read path, `write.rs` the send stage at the end
//! of each pass, `accept.rs` new connections.
//!
//! Never blocks except in `poll`. While the handler says it can take no input
//! (`Handler::wants_input`), the reactor reads and accepts nothing but still runs its inbox,
//! timers and writes; connections that became readable meanwhile are kept in `unread` and
//! read when the handler has room again.

use std::collections::HashSet;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use switchboard_codec::ws::CloseCode;
use tracing::{debug, warn};

use super::clock::{ReactorClock, TICK_MS};
use super::config::GatewayConfig;
use super::conn_id::{next_generation, ConnId};
use super::drain::DrainSpread;
use super::handle::{Command, GatewayHandle, InboxReceiver};
use super::handler::{Disconnect, Handler, Transport};
use super::limits::per_ip::PerIpTable;
use super::machine::{Limits, Machine, Workspace};
use super::timer_wheel::TimerWheel;

mod accept;
mod events;
mod memory;

pub(crate) use accept::{admission_checks, is_resource_exhaustion};
pub(crate) use memory::release_free_memory;
mod read;
mod write;

pub(crate) const TCP_LISTENER: Token = Token(usize::MAX - 1);
pub(crate) const WS_LISTENER: Token = Token(usize::MAX - 2);
pub(crate) const WAKER: Token = Token(usize::MAX - 3);

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
}

/// One connection as the driver holds it: its socket and its machine.
pub(crate) struct Conn {
    stream: TcpStream,
    generation: u32,
    machine: Machine,
}

pub(crate) struct Reactor<H: Handler> {
    index: usize,
    poll: Poll,
    tcp_listener: Option<TcpListener>,
    ws_listener: Option<TcpListener>,
    conns: Slab<Conn>,
    /// Generation of each slab slot, kept across reuse.
    generations: Vec<u32>,
    wheel: TimerWheel,
    fired: Vec<usize>,
    /// Where every read lands first (see `read::READ_WINDOW`).
    read_window: Box<[u8]>,
    /// What the machines share, and the queue of what they ask for.
    ws: Workspace,
    inbox: InboxReceiver,
    /// Commands the handler made for this reactor's connections in its current call.
    local: Vec<Command>,
    /// Connections with bytes to send at the end of this pass.
    dirty: Vec<usize>,
    /// In the send stage: a machine that asks to send is sent at once.
    sending: bool,
    /// Connections that used up their read budget and may still have input.
    again: Vec<usize>,
    accept_again: bool,
    accept_paused_at: Option<u64>,
    /// Warned about this pause already (reset by the next successful accept).
    accept_paused_warned: bool,
    handler: H,
    handle: GatewayHandle,
    shared: Arc<Shared>,
    clock: ReactorClock,
    /// The tick this pass runs at (read once per pass).
    now: u64,
    /// Connections not read because they hold more than the slow-consumer cap; the send that
    /// leaves one under the cap resumes reading it.
    read_paused: HashSet<usize>,
    /// The handler said it can take no input: nothing is read or accepted until it has room.
    input_paused: bool,
    /// Connections that were readable (or owed a turn) while input was paused.
    unread: HashSet<usize>,
    /// A listener was readable while input was paused.
    accept_unread: bool,
    /// What of this reactor's backlog bytes is published in `Shared`.
    queued_published: usize,
    last_trim: u64,
    draining_until: Option<u64>,
    /// A spread drain's connections still to hand to the handler (`Command::Drain`).
    spread: Option<DrainSpread>,
}

impl<H: Handler> Reactor<H> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        index: usize,
        poll: Poll,
        mut tcp_listener: Option<TcpListener>,
        mut ws_listener: Option<TcpListener>,
        inbox: InboxReceiver,
        handler: H,
        handle: GatewayHandle,
        shared: Arc<Shared>,
    ) -> io::Result<Self> {
        if let Some(listener) = tcp_listener.as_mut() {
            poll.registry()
                .register(listener, TCP_LISTENER, Interest::READABLE)?;
        }
        if let Some(listener) = ws_listener.as_mut() {
            poll.registry()
                .register(listener, WS_LISTENER, Interest::READABLE)?;
        }
        let start = shared.config.clock_start_ticks;
        let mut ws = Workspace::new(Limits::new(&shared.config), start);
        ws.share_per_ip(shared.per_ip.clone());
        Ok(Reactor {
            index,
            poll,
            tcp_listener,
            ws_listener,
            conns: Slab::new(),
            generations: Vec::new(),
            wheel: TimerWheel::new(),
            fired: Vec::new(),
            read_window: vec![0; read::READ_WINDOW].into_boxed_slice(),
            ws,
            inbox,
            local: Vec::new(),
            dirty: Vec::new(),
            sending: false,
            again: Vec::new(),
            accept_again: false,
            accept_paused_at: None,
            accept_paused_warned: false,
            handler,
            handle,
            shared,
            clock: ReactorClock::new(start),
            now: start,
            read_paused: HashSet::new(),
            input_paused: false,
            unread: HashSet::new(),
            accept_unread: false,
            queued_published: 0,
            last_trim: start,
            draining_until: None,
            spread: None,
        })
    }

    /// Runs until a shutdown has drained every connection (or its deadline passed).
    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.poll_timeout();
            if timeout != Some(Duration::ZERO) {
                self.trim_after_churn();
            }
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    warn!(reactor = self.index, error = %e, "poll failed; reactor exits");
                    return;
                }
            }
            let pass = Instant::now();
            self.now = self.clock.now();
            self.ws.set_now(self.now);
            self.resume_input();
            let waiting = std::mem::take(&mut self.again);
            for event in events.iter() {
                match event.token() {
                    TCP_LISTENER => self.accept_ready(Transport::Tcp),
                    WS_LISTENER => self.accept_ready(Transport::WebSocket),
                    WAKER => {} // the inbox is drained below on every pass
                    Token(key) => {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            let until_eof = event.is_read_closed() || event.is_error();
                            self.conn_readable(key, until_eof);
                        }
                        if event.is_writable() {
                            self.conn_writable(key);
                        }
                    }
                }
            }
            self.revisit(waiting);
            self.inbox_ready();
            self.timers_due();
            self.drain_due();
            self.end_of_batch();
            self.send_stage();
            self.publish_metrics(pass);
            if self.drained() {
                return;
            }
        }
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if !self.again.is_empty() || self.accept_again {
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

    /// Whether input may be read now; if not, the reactor is paused until the handler has room.
    fn input_allowed(&mut self) -> bool {
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

    /// Once the handler has room again, gives every connection that was readable meanwhile
    /// (and the listeners) a turn in this pass.
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
        if std::mem::take(&mut self.accept_unread) {
            self.accept_again = true;
        }
    }

    // ---- timers, draining, removing --------------------------------------------------------

    fn timers_due(&mut self) {
        self.wheel.advance(self.now, &mut self.fired);
        let fired = std::mem::take(&mut self.fired);
        for &key in &fired {
            if let Some(conn) = self.conns.get_mut(key) {
                let waiting = self.unread.contains(&key);
                conn.machine.on_timer(&mut self.ws, key, waiting);
                self.settle();
            }
        }
        self.fired = fired;
        self.fired.clear();
    }

    /// `Command::Shutdown`: stop accepting and close every connection now (1001). After a
    /// spread drain, closes what it has not reached yet.
    fn begin_drain(&mut self) {
        if self.draining_until.is_some() && self.spread.is_none() {
            return;
        }
        self.spread = None;
        let deadline = self.now + super::clock::ticks(self.shared.config.drain_timeout);
        self.draining_until = Some(self.draining_until.map_or(deadline, |d| d.min(deadline)));
        self.stop_accepting();
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            if let Some(conn) = self.conns.get_mut(key) {
                let reason = Disconnect::Shutdown;
                conn.machine
                    .close(&mut self.ws, key, CloseCode::GOING_AWAY, reason);
            }
        }
    }

    /// `Command::Drain`: stop accepting, then close the connections open now evenly over
    /// `period` (see `drain_due`); exit when none is left, or the drain timeout after it.
    fn begin_spread_drain(&mut self, period: Duration) {
        if self.draining_until.is_some() {
            return;
        }
        let period = if period.is_zero() {
            0
        } else {
            super::clock::ticks(period)
        };
        let linger = super::clock::ticks(self.shared.config.drain_timeout);
        self.draining_until = Some(self.now + period + linger);
        self.stop_accepting();
        let conns: Vec<ConnId> = self.conns.iter().map(|(key, _)| self.id(key)).collect();
        debug!(
            reactor = self.index,
            conns = conns.len(),
            "drain: spreading closes"
        );
        self.spread = Some(DrainSpread::new(conns, self.now, period));
        self.drain_due();
    }

    /// Hands the connections due by now in a spread drain to the handler's `drain` (one it
    /// has not admitted, still in its handshake, is closed here with 1012).
    fn drain_due(&mut self) {
        loop {
            let Some(spread) = self.spread.as_mut() else {
                return;
            };
            let Some(id) = spread.next_due(self.now) else {
                return;
            };
            let Some(key) = self.live_key(id) else {
                continue;
            };
            if self.conns[key].machine.is_admitted() {
                if self.call_handler(|h, out| h.drain(out, id)).is_none() {
                    warn!("handler panicked in drain");
                    let reason = Disconnect::HandlerPanic;
                    let code = CloseCode::SERVICE_RESTART;
                    self.conns[key]
                        .machine
                        .close(&mut self.ws, key, code, reason);
                }
                self.apply_local();
            } else {
                let reason = Disconnect::Shutdown;
                let code = CloseCode::SERVICE_RESTART;
                self.conns[key]
                    .machine
                    .close(&mut self.ws, key, code, reason);
            }
            self.settle();
        }
    }

    /// Stops accepting: the listeners are deregistered and this reactor's descriptors
    /// closed. Run first, so the kernel sends new clients to the other sockets of the port
    /// (another process that took them over, or no one).
    fn stop_accepting(&mut self) {
        for listener in [self.tcp_listener.take(), self.ws_listener.take()]
            .into_iter()
            .flatten()
        {
            let mut listener = listener;
            let _ = self.poll.registry().deregister(&mut listener);
        }
    }

    /// The machines' refusals of this pass, and its time, into this reactor's counters.
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
            Some(deadline) => self.conns.is_empty() || self.now >= deadline,
            None => false,
        }
    }

    fn id(&self, key: usize) -> ConnId {
        ConnId::new(self.index, key as u32, self.conns[key].generation)
    }

    fn live_key(&self, id: ConnId) -> Option<usize> {
        let conn = self.conns.get(id.key())?;
        (conn.generation == id.generation()).then_some(id.key())
    }

    /// Forgets a connection whose machine finished, and closes its socket.
    fn remove(&mut self, key: usize) {
        let Some(mut conn) = self.conns.try_remove(key) else {
            return;
        };
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
        let _ = self.poll.registry().deregister(&mut conn.stream);
    }
}

impl<H: Handler> Drop for Reactor<H> {
    fn drop(&mut self) {
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.machine.abort(&mut self.ws, key, Disconnect::Shutdown);
            }
            self.settle();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A million of these live in one process: keep an eye on the size. (152 until the
    /// control-frame bucket took 8 bytes: 8 MB per million connections, against a ping flood
    /// that cost hundreds of MiB; 160 until the TLS session's pointer took 8 more.)
    #[test]
    fn a_connection_stays_small() {
        let size = std::mem::size_of::<Conn>();
        assert!(size <= 168, "Conn grew to {size} bytes");
    }
}
