//! The io_uring driver: one reactor thread with its own ring around the state and steps both
//! drivers share (`driver_core/`: the connection machines, timer wheel, handler and inbox,
//! `settle`, draining), and completions instead of readiness. The loop below is the table of contents: one `io_uring_enter` per pass submits
//! what the last pass queued (receives, sends, cancels) and waits for completions up to the
//! next deadline; `complete` (completions.rs) feeds them to the machines; then the inbox, the
//! timers, the handler's end of batch, and the send stage (send.rs), as on epoll.
//!
//! Invariants:
//! - A connection receives through one multishot receive from the reactor's buffer ring, armed
//!   only while it may read: input allowed, no undecoded input held, under the slow-consumer
//!   cap, and ending by itself after [`RECV_LIMIT`] bytes (re-armed if it still may read).
//!   Bytes that arrive while it may not are kept in its machine (at most what landed before
//!   the cancel took effect, within that limit) and decoded when it may again.
//! - At most one send per connection is in flight; its `Bytes` belong to the ring until its
//!   completion, and what the machine queues meanwhile goes out after it.
//! - A connection whose machine finished is forgotten at once (its id no longer reaches it,
//!   the handler was told), but its slot, socket and buffers are freed only once the last of
//!   its operations completed: no completion ever finds a reused slot.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use io_uring::cqueue;
use tracing::warn;

use super::super::clock::TICK_MS;
use super::super::driver_core::{self, Driver, DriverConn, Shared};
use super::super::handle::{GatewayHandle, InboxReceiver};
use super::super::handler::{Handler, Transport};
use super::super::machine::Machine;
use super::buf_ring::BufRing;
use super::ring::{FileRef, Ring};

mod accept;
mod completions;
mod drain;
mod send;

/// Submission slots per ring (completions: twice as many, and the kernel keeps overflow).
pub(crate) const RING_ENTRIES: u32 = 4096;
/// The reactor's receive buffers: at most this many...
const RECV_BUFFERS: u16 = 256;
/// ...of which this many are in the ring at first; it doubles each time a receive finds it
/// empty. The kernel takes buffers in ring order, so each buffer in the ring gets written (a
/// page resident) however quiet the reactor: a full ring would cost an idle reactor 1 MiB.
const RECV_BUFFERS_INITIAL: u16 = 16;
/// At most this often (in reactor ticks of 10 ms) the pages of the receive buffers go back to
/// the kernel, when buffers were used since the last time: a reactor that went quiet holds
/// none of them. Each costs a page fault per buffer when traffic resumes: at twice a second,
/// about 0.3 ms of 500 for a full ring under load.
const RELEASE_BUFFERS_EVERY_TICKS: u64 = 50;
/// ...of this size (a receive takes a whole one, or with incremental consumption only the bytes
/// it needs, and gives it back once decoded).
const RECV_BUFFER_LEN: u32 = 16 << 10;
/// After this long (reactor ticks of 10 ms) without the ring running dry, the buffers in
/// service go back toward [`RECV_BUFFERS_INITIAL`]: to twice the most one batch of completions
/// used since the last look. One step per period at most, so a reactor whose traffic comes
/// back grows again (doubling on the next empty ring) rather than oscillating fast.
const SHRINK_BUFFERS_AFTER_TICKS: u64 = 500;
const BUFFER_GROUP: u16 = 0;
/// Slots in each ring's table of registered files, at most (and at most the process's
/// descriptor limit, which the kernel holds a table to): connection `key` uses slot `key`
/// while it has one, its descriptor beyond. The kernel's table costs 16 B a slot.
const FIXED_FILES: u32 = 1 << 16;
/// Bytes a multishot receive takes before it ends and waits to be armed again: one turn's
/// share, as epoll's `READ_BYTES_BUDGET`. Without it the kernel keeps receiving (32
/// completions, 512 KiB, per wake-up) into a connection that is past the slow-consumer cap
/// before the reactor can see it and cancel.
const RECV_LIMIT: u32 = 64 << 10;

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
    /// An update of the file table (it completes only when it failed).
    Files,
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
        7 => Op::Files,
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
    /// Its socket is in slot `key` of the ring's file table.
    fixed: bool,
    /// The machine finished: the connection is waiting for its operations to complete.
    retired: bool,
}

/// A listener and whether its multishot accept is armed.
struct Listener {
    socket: std::net::TcpListener,
    armed: bool,
}

impl DriverConn for Conn {
    fn machine(&self) -> &Machine {
        &self.machine
    }
    fn machine_mut(&mut self) -> &mut Machine {
        &mut self.machine
    }
    fn generation(&self) -> u32 {
        self.generation
    }
    fn is_live(&self) -> bool {
        !self.retired
    }
}

/// What only the io_uring driver has.
pub(crate) struct Uring {
    ring: Ring,
    bufs: Option<BufRing>,
    tcp_listener: Option<Listener>,
    ws_listener: Option<Listener>,
    wake_fd: Arc<std::fs::File>,
    /// Connections whose receive ended: re-armed after this batch of completions.
    rearm: Vec<usize>,
    /// Accepted while input was paused: admitted when the handler has room.
    accept_held: Vec<(OwnedFd, Transport)>,
    /// Listeners whose accept a drain cancelled, kept open until its last completion (see
    /// `drain.rs`).
    stopping: Vec<(std::net::TcpListener, Transport)>,
    cqes: Vec<cqueue::Entry>,
    send_scratch: Vec<Bytes>,
    /// The total limit of each receive ([`RECV_LIMIT`]); `None` on a kernel that refused it.
    recv_limit: Option<u32>,
    /// When the buffers' pages last went back to the kernel (reactor ticks).
    buffers_released_at: u64,
    /// When a receive last found the buffer ring empty (reactor ticks).
    buffers_dry_at: u64,
    /// A bundle emptied the ring in this batch: it grows once the batch is done.
    grow_buffers: bool,
    /// When the ring was last looked at for shrinking (reactor ticks).
    buffers_shrunk_at: u64,
    /// Buffers in service at first, and the least it shrinks to.
    buffers_initial: u16,
    /// Receives are bundles (asked for, and the kernel has them).
    recv_bundle: bool,
    /// The most buffers one bundle maps (its byte limit over the buffer size, and one more
    /// for a partly used head): a ring holding fewer ends bundles early.
    bundle_reach: usize,
    /// The ring shrinks after a burst.
    shrink_buffers: bool,
}

pub(crate) type Reactor<H> = driver_core::Reactor<H, Uring>;

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
        let mut ring = Ring::new(ring);
        if let Err(e) = ring.register_files(fixed_file_slots()) {
            // Operations then name their socket by descriptor, as before Linux 5.19.
            warn!(error = %e, "io_uring: no table of registered files; sockets by descriptor");
        }
        let count = shared.config.uring_recv_buffers.unwrap_or(RECV_BUFFERS);
        let levers = shared.config.uring_recv;
        let initial = count.min(RECV_BUFFERS_INITIAL);
        let bufs = BufRing::register_growing(
            &ring.submitter(),
            BUFFER_GROUP,
            count,
            initial,
            shared
                .config
                .uring_recv_buffer_len
                .unwrap_or(RECV_BUFFER_LEN),
            levers.incremental,
        )?;
        let recv_bundle = levers.bundle && ring.has_bundles();
        let buf_len = shared
            .config
            .uring_recv_buffer_len
            .unwrap_or(RECV_BUFFER_LEN);
        let bundle_reach = RECV_LIMIT.div_ceil(buf_len) as usize + 1;
        let listener = |socket| Listener {
            socket,
            armed: false,
        };
        let io = Uring {
            ring,
            bufs: Some(bufs),
            tcp_listener: tcp_listener.map(listener),
            ws_listener: ws_listener.map(listener),
            wake_fd,
            rearm: Vec::new(),
            accept_held: Vec::new(),
            stopping: Vec::new(),
            cqes: Vec::with_capacity(1024),
            send_scratch: Vec::new(),
            recv_limit: Some(RECV_LIMIT),
            buffers_released_at: 0,
            buffers_dry_at: 0,
            grow_buffers: false,
            buffers_shrunk_at: 0,
            buffers_initial: initial,
            recv_bundle,
            bundle_reach,
            shrink_buffers: levers.shrink,
        };
        Ok(Self::with_driver(index, io, inbox, handler, handle, shared))
    }

    /// Runs until a shutdown has drained every connection (or its deadline passed).
    pub(crate) fn run(mut self) {
        self.arm_accepts();
        let wake = self.io.wake_fd.as_raw_fd();
        self.io.ring.read_wake(wake, user_data(Op::Wake, 0));
        loop {
            let mut timeout =
                self.wait_timeout(!self.again.is_empty() || !self.io.rearm.is_empty());
            if timeout != Some(Duration::ZERO) {
                self.trim_after_churn();
                self.shrink_buffers();
                timeout = self.release_buffers(timeout);
            }
            if let Err(e) = self.io.ring.submit_and_wait(timeout) {
                warn!(reactor = self.index, error = %e, "io_uring_enter failed; reactor exits");
                return;
            }
            let pass = Instant::now();
            self.begin_pass();
            self.resume_input();
            let waiting = std::mem::take(&mut self.again);
            self.complete_all();
            self.revisit(waiting);
            self.after_events();
            self.send_stage();
            self.complete_all(); // what the pass's own work completed inline
            self.publish_metrics(pass);
            if self.drained() && self.stopped_accepting() {
                return;
            }
        }
    }

    /// Once the handler has room again: the sockets accepted meanwhile are admitted, and the
    /// accepts armed again.
    fn resume_input(&mut self) {
        if !self.input_resumes() {
            return;
        }
        for (fd, transport) in std::mem::take(&mut self.io.accept_held) {
            self.admit_socket(fd, transport);
        }
        self.arm_accepts();
    }

    /// About to wait: hands the receive buffers' pages back if buffers were used and the last
    /// time is long enough ago; if it is not, wakes up when it is. Returns the wait's timeout.
    fn release_buffers(&mut self, timeout: Option<Duration>) -> Option<Duration> {
        let Some(bufs) = self.io.bufs.as_mut() else {
            return timeout;
        };
        if !bufs.used_since_release() {
            return timeout;
        }
        let now = self.clock.now();
        let due = (self.io.buffers_released_at).saturating_add(RELEASE_BUFFERS_EVERY_TICKS);
        // Between two entries of this thread, with every completion reaped, the kernel fills
        // no buffer (DEFER_TASKRUN: receives run only inside our `io_uring_enter`), so each
        // buffer is either in the ring, free, or was handed back already.
        if now >= due && self.io.ring.no_completions_waiting() {
            if let Err(e) = bufs.release_pages() {
                warn!(reactor = self.index, error = %e, "could not release receive buffers");
            }
            self.io.buffers_released_at = now;
            return timeout;
        }
        let until_due = Duration::from_millis(due.saturating_sub(now).max(1) * TICK_MS);
        Some(timeout.map_or(until_due, |t| t.min(until_due)))
    }

    /// After a burst: once the ring has not run dry for a while, fewer buffers stay in service
    /// (twice the most one batch used meanwhile, at least the initial count), so traffic that
    /// follows walks through few buffers, whose pages are the only ones it faults in again.
    fn shrink_buffers(&mut self) {
        let Some(bufs) = self.io.bufs.as_mut() else {
            return;
        };
        let now = self.clock.now();
        let quiet_since = self.io.buffers_dry_at.max(self.io.buffers_shrunk_at);
        if !self.io.shrink_buffers || now.saturating_sub(quiet_since) < SHRINK_BUFFERS_AFTER_TICKS {
            return;
        }
        self.io.buffers_shrunk_at = now;
        let peak = bufs.take_peak();
        let target = peak
            .saturating_mul(2)
            .checked_next_power_of_two()
            .unwrap_or(u16::MAX)
            .max(self.io.buffers_initial);
        if target < bufs.in_service() {
            bufs.shrink_to(target);
        }
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
        let group = self.io.bufs.as_ref().map_or(BUFFER_GROUP, BufRing::group);
        self.io.ring.recv(
            conn.file(key),
            group,
            self.io.recv_limit,
            self.io.recv_bundle,
            user_data(Op::Recv, key),
        );
        conn.recv = Recv::Armed;
    }

    /// Stops the connection's receive (what already landed still comes).
    fn stop_recv(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.recv == Recv::Armed {
            let ring = &mut self.io.ring;
            ring.cancel(user_data(Op::Recv, key), user_data(Op::Cancel, key));
            conn.recv = Recv::Cancelling;
            conn.cancels += 1;
        }
    }

    // ---- freeing -----------------------------------------------------------------------------

    /// Closes the socket of a retired connection and frees its slot once nothing is in flight.
    fn free_if_done(&mut self, key: usize) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        let idle = !conn.recv.in_flight() && conn.cancels == 0 && !self.io.ring.sending(key);
        if conn.retired && idle {
            if conn.fixed {
                // Queued before the slot can be given to the next connection.
                self.io.ring.remove_file(key, user_data(Op::Files, key));
            }
            // Dropping the descriptor closes it (the socket goes once its slot is emptied).
            self.conns.remove(key);
        }
    }

    /// Where operations find the socket of a live connection.
    fn file(&self, key: usize) -> Option<FileRef> {
        self.conns
            .get(key)
            .filter(|c| !c.retired)
            .map(|c| c.file(key))
    }
}

impl Conn {
    fn file(&self, key: usize) -> FileRef {
        match self.fixed {
            true => FileRef::Fixed(key as u32),
            false => FileRef::Fd(self.fd.as_raw_fd()),
        }
    }
}

/// Slots for the file table: [`FIXED_FILES`], or the descriptor limit if lower (the kernel
/// refuses a table larger than it).
fn fixed_file_slots() -> u32 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into `limit`, which lives across the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 0;
    }
    limit.rlim_cur.min(u64::from(FIXED_FILES)) as u32
}

impl Driver for Uring {
    type Conn = Conn;
    type Socket = OwnedFd;

    fn new_conn(fd: OwnedFd, generation: u32, machine: Machine) -> Conn {
        Conn {
            fd,
            generation,
            machine,
            recv: Recv::Off,
            cancels: 0,
            fixed: false,
            retired: false,
        }
    }

    /// Sends are submitted in the send stage at the end of the pass (`send.rs`).
    fn transmit<H: Handler>(reactor: &mut Reactor<H>, key: usize) {
        reactor.dirty.push(key);
    }

    fn fin<H: Handler>(reactor: &mut Reactor<H>, key: usize) {
        let conn = &mut reactor.conns[key];
        let _ = socket2::SockRef::from(&conn.fd).shutdown(std::net::Shutdown::Write);
        if conn.recv == Recv::Ended {
            // The peer's FIN came before ours: the linger it would wait for is over (on epoll,
            // the shutdown makes the socket readable again and the end of stream is read a
            // second time; a finished receive is not).
            conn.machine.on_eof(&mut reactor.ws, key);
        }
    }

    /// Retires the connection: forgotten at once, its operations cancelled, and its socket
    /// and slot freed once the last of them completed.
    fn close<H: Handler>(reactor: &mut Reactor<H>, key: usize) {
        if !reactor.forget(key) {
            return;
        }
        let conn = &mut reactor.conns[key];
        conn.retired = true;
        let ring = &mut reactor.io.ring;
        if conn.recv == Recv::Armed || ring.sending(key) {
            ring.cancel_fd(conn.fd.as_raw_fd(), user_data(Op::Cancel, key));
            conn.cancels += 1;
            if conn.recv == Recv::Armed {
                conn.recv = Recv::Cancelling;
            }
        }
        reactor.free_if_done(key);
    }

    fn stop_accepting<H: Handler>(reactor: &mut Reactor<H>) {
        reactor.stop_accepting();
    }

    fn listeners(&self) -> [Option<BorrowedFd<'_>>; 2] {
        [&self.tcp_listener, &self.ws_listener].map(|l| l.as_ref().map(|l| l.socket.as_fd()))
    }

    /// Every receive cancelled and waited for before the buffers go.
    fn release<H: Handler>(reactor: &mut Reactor<H>) {
        let io = &mut reactor.io;
        let conns = &mut reactor.conns;
        // The last pass may have queued file-table slots to empty (connections freed): submit
        // them now, so those sockets close at once rather than when the ring is torn down.
        let _ = io.ring.submit_and_wait(Some(Duration::ZERO));
        let entry_key = user_data(Op::Other, 0);
        for (_, conn) in conns.iter() {
            if conn.recv.in_flight() {
                io.ring.cancel_fd(conn.fd.as_raw_fd(), entry_key);
            }
        }
        let give_up = Instant::now() + Duration::from_secs(2);
        while conns.iter().any(|(_, c)| c.recv.in_flight()) && Instant::now() < give_up {
            let _ = io.ring.submit_and_wait(Some(Duration::from_millis(20)));
            io.cqes.clear();
            io.ring.completions(&mut io.cqes);
            for cqe in &io.cqes {
                let (op, key) = decode_user_data(cqe.user_data());
                match op {
                    Op::Recv if !cqueue::more(cqe.flags()) => {
                        if let Some(conn) = conns.get_mut(key) {
                            conn.recv = Recv::Off;
                        }
                    }
                    Op::Send => {
                        io.ring.sent(key, &mut Vec::new());
                    }
                    _ => {}
                }
            }
        }
        if let Some(bufs) = io.bufs.take() {
            if conns.iter().all(|(_, c)| !c.recv.in_flight()) {
                let _ = bufs.unregister(&io.ring.submitter());
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
            Op::Files,
        ] {
            for key in [0usize, 1, 12345, u32::MAX as usize] {
                assert_eq!(decode_user_data(user_data(op, key)), (op, key));
            }
        }
    }
}
