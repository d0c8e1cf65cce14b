//! `Engine`: one mio loop driving every connection of a process: ramped connects from the
//! source addresses, the pacer's sends, setup deadlines and heartbeats, failures, the progress
//! line and the summary. What happens on one connection is `conn.rs`'s. Every failure is
//! counted by kind and the run ends at its duration whatever the target does.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use slab::Slab;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;

use crate::config::{RunConfig, Scenario};
use crate::conn::{self, flush, io_kind, Conn, Counters, Ctx, Kind, State};
use crate::link;
use crate::pacer::{Arrivals, Pacer};
use crate::server_stats;
use crate::summary::{new_histogram, Summary};
use crate::traffic::{self, Traffic};

const READ_CHUNK: usize = 64 * 1024;
/// The poll token of the pacer's timer (connections are slab keys, far below it).
const PACER_TIMER: Token = Token(usize::MAX);
/// How often setup deadlines and heartbeats are checked.
const SWEEP_EVERY: Duration = Duration::from_millis(100);

/// Runs `config` to its end and returns its figures.
pub fn run(config: RunConfig) -> io::Result<Summary> {
    Engine::new(config)?.run()
}

struct Engine {
    poll: Poll,
    conns: Slab<Conn>,
    ctx: Ctx,
    read_chunk: Box<[u8]>,
    scratch: BytesMut,
    opened: usize,
}

impl Engine {
    fn new(config: RunConfig) -> io::Result<Engine> {
        let traffic = Traffic::new(&config);
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            ^ (u64::from(std::process::id()) << 32);
        Ok(Engine {
            poll: Poll::new()?,
            conns: Slab::with_capacity(config.conns),
            ctx: Ctx {
                start: Instant::now(),
                counters: Counters {
                    connected: 0,
                    open: 0,
                    failed: BTreeMap::new(),
                    refused: BTreeMap::new(),
                    sent: 0,
                    received: 0,
                    expected: 0,
                    window_received: 0,
                    latency: new_histogram(),
                    ack_latency: new_histogram(),
                    recent: new_histogram(),
                    recent_ack: new_histogram(),
                    in_window: false,
                },
                out: BytesMut::with_capacity(READ_CHUNK),
                traffic,
                sending: false,
                rng: seed,
                config,
            },
            read_chunk: vec![0; READ_CHUNK].into_boxed_slice(),
            scratch: BytesMut::with_capacity(READ_CHUNK),
            opened: 0,
        })
    }

    fn run(mut self) -> io::Result<Summary> {
        let config = self.ctx.config.clone();
        let sample = |pid: Option<u32>| pid.and_then(|pid| server_stats::sample(pid).ok());
        let baseline = sample(config.server_pid);
        self.ctx.start = Instant::now();
        let end = config.duration;
        let stop_sending = end.saturating_sub(config.drain);
        let mut events = Events::with_capacity(4096);
        let mut next_sweep = Duration::ZERO;
        let mut next_progress = Duration::from_secs(1);
        let mut window: Option<(Duration, Option<server_stats::ProcSample>)> = None;
        let seed = u64::from_ne_bytes(self.ctx.random());
        let mut pacer = (config.rate > 0.0).then(|| {
            Pacer::with_arrivals(
                config.rate,
                1 + config.rate as u64 / 10,
                config.arrivals,
                seed,
            )
        });
        // Poisson arrivals need wake-ups finer than poll's millisecond timeout: a timerfd,
        // armed for the next message's time after each round of sends.
        let mut timer = match (&pacer, config.arrivals) {
            (Some(_), Arrivals::Poisson) => Some(PacerTimer::register(&self.poll)?),
            _ => None,
        };
        let mut cursor = 0usize;
        let (mut ready_at_window, mut window_unix_ms) = (0, 0);
        let mut last_progress_received = 0u64;
        loop {
            let now = self.ctx.start.elapsed();
            if now >= end {
                break;
            }
            self.open_due(now);
            // Every connection opened, and every one still open is ready.
            let setup_done =
                self.opened == config.conns && self.conns.len() as u64 == self.ctx.counters.open;
            if window.is_none() && (setup_done || now >= stop_sending) {
                window = Some((now, sample(config.server_pid)));
                ready_at_window = self.ctx.counters.connected;
                window_unix_ms = unix_ms();
                self.ctx.counters.in_window = true;
                self.ctx.sending = now < stop_sending && config.scenario != Scenario::Idle;
                if self.ctx.sending && pacer.is_none() {
                    self.fill_all_windows();
                }
            }
            if self.ctx.sending && now >= stop_sending {
                self.ctx.sending = false;
            }
            if let (Some(pacer), Some((opened_at, _)), true) =
                (&mut pacer, &window, self.ctx.sending)
            {
                let due = pacer.due((now - *opened_at).as_secs_f64());
                let unsent = self.send_paced(due, &mut cursor);
                pacer.unsent(unsent);
                if let Some(timer) = &mut timer {
                    let at = *opened_at + Duration::from_secs_f64(pacer.next_due_s());
                    timer.wake_at(at, self.ctx.start.elapsed())?;
                }
            }
            let ticks = pacer.is_some() && timer.is_none();
            let timeout = if ticks || self.opened < config.conns {
                Duration::from_millis(1)
            } else {
                Duration::from_millis(20)
            };
            let timeout = timeout.min(end - now);
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in events.iter() {
                if event.token() == PACER_TIMER {
                    continue; // its wake-up was the point; the next arming resets it
                }
                let key = event.token().0;
                let result = self.on_event(
                    key,
                    event.is_writable(),
                    event.is_readable() || event.is_read_closed() || event.is_error(),
                );
                if let Err(kind) = result {
                    self.fail(key, kind);
                }
            }
            let now = self.ctx.start.elapsed();
            if now >= next_sweep {
                next_sweep = now + SWEEP_EVERY;
                self.sweep();
            }
            if now >= next_progress {
                next_progress += Duration::from_secs(1);
                let c = &mut self.ctx.counters;
                if let Some(label) = &config.progress {
                    let failed: u64 = c.failed.values().sum();
                    let p99 = |h: &Histogram<u64>| {
                        if h.is_empty() {
                            0
                        } else {
                            h.value_at_quantile(0.99)
                        }
                    };
                    eprintln!(
                        "{label}{:>5.1}s connected {} open {} failed {} msgs/s {} p99 {}us max {}us ack p99 {}us max {}us",
                        now.as_secs_f64(),
                        c.connected,
                        c.open,
                        failed,
                        c.received - last_progress_received,
                        p99(&c.recent),
                        c.recent.max(),
                        p99(&c.recent_ack),
                        c.recent_ack.max(),
                    );
                }
                last_progress_received = c.received;
                c.recent.reset();
                c.recent_ack.reset();
            }
            // Traffic runs end once every answer is in; idle holds to the end.
            if config.scenario != Scenario::Idle
                && window.is_some()
                && now >= stop_sending
                && self.drained()
            {
                break;
            }
        }
        let finished = self.ctx.start.elapsed();
        let last = sample(config.server_pid);
        let own = server_stats::sample(std::process::id()).ok();
        self.close_all();
        let c = &self.ctx.counters;
        let mut summary = Summary::new(config.scenario.name(), config.conns as u64);
        summary.connected = c.connected;
        summary.failed = c.failed.clone();
        summary.refused = c.refused.clone();
        summary.sent = c.sent;
        summary.received = c.received;
        summary.lost = c.expected.saturating_sub(c.received);
        summary.window_received = c.window_received;
        summary.latency = c.latency.clone();
        summary.ack_latency = c.ack_latency.clone();
        summary.duration_s = finished.as_secs_f64();
        summary.client_rss_bytes = own.map(|s| s.rss_bytes);
        if let Some((opened_at, _)) = window {
            summary.window_s = (finished - opened_at).as_secs_f64();
            summary.setup_s = opened_at.as_secs_f64();
            summary.ready_at_setup = ready_at_window;
            summary.window_start_unix_ms = Some(window_unix_ms);
        }
        if let (Some(base), Some(last)) = (baseline, last) {
            summary.server_rss_bytes = Some(last.rss_bytes);
            if c.open > 0 {
                summary.rss_per_conn_bytes =
                    Some((last.rss_bytes as f64 - base.rss_bytes as f64) / c.open as f64);
            }
            let from = window.and_then(|(_, s)| s).unwrap_or(base);
            summary.server_cpu_s = Some(last.cpu_s - from.cpu_s);
            summary.server_user_cpu_s = Some(last.user_cpu_s - from.user_cpu_s);
            summary.server_threads_cpu_s = last.threads_since(&from);
        }
        Ok(summary)
    }

    /// Whether every expected answer has arrived.
    fn drained(&self) -> bool {
        let c = &self.ctx.counters;
        c.received >= c.expected
    }

    /// Opens the connections the ramp allows by now.
    fn open_due(&mut self, now: Duration) {
        let config = &self.ctx.config;
        let allowed = ((config.ramp_per_s * now.as_secs_f64()) as usize + 1).min(config.conns);
        while self.opened < allowed {
            let index = self.opened;
            self.opened += 1;
            if let Err(e) = self.open(index) {
                *self.ctx.counters.failed.entry(e).or_default() += 1;
            }
        }
    }

    fn open(&mut self, index: usize) -> Result<(), Kind> {
        let config = &self.ctx.config;
        let addr = config.target.addr;
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
            .map_err(|e| io_kind(&e))?;
        socket.set_nonblocking(true).map_err(|e| io_kind(&e))?;
        socket.set_tcp_nodelay(true).map_err(|e| io_kind(&e))?;
        if !config.source_ips.is_empty() {
            let ip = config.source_ips[index % config.source_ips.len()];
            crate::os::bind_address_no_port(&socket);
            socket
                .bind(&SockAddr::from(SocketAddr::new(ip, 0)))
                .map_err(|e| format!("bind_{}", io_kind(&e)))?;
        }
        match socket.connect(&SockAddr::from(addr)) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(io_kind(&e)),
        }
        let stream = TcpStream::from_std(socket.into());
        let entry = self.conns.vacant_entry();
        let due_us = self.ctx.now_us() + config.setup_timeout.as_micros() as u64;
        let mut conn = Conn::new(stream, link::tcp(), index as u32, due_us);
        self.poll
            .registry()
            .register(
                &mut conn.stream,
                Token(entry.key()),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| io_kind(&e))?;
        entry.insert(conn);
        Ok(())
    }

    fn on_event(&mut self, key: usize, writable: bool, readable: bool) -> Result<(), Kind> {
        let Some(conn) = self.conns.get_mut(key) else {
            return Ok(());
        };
        let ctx = &mut self.ctx;
        if conn.state == State::Connecting {
            if let Some(e) = conn.stream.take_error().map_err(|e| io_kind(&e))? {
                return Err(io_kind(&e));
            }
            match conn.stream.peer_addr() {
                Ok(_) => conn::connected(conn, ctx)?,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
                Err(e) => return Err(io_kind(&e)),
            }
        }
        if writable && conn.has_unsent() {
            conn::write_pending(conn)?;
        }
        if readable {
            conn::read(conn, ctx, &mut self.read_chunk, &mut self.scratch)?;
        }
        Ok(())
    }

    /// Ends connection `key`, counting it under `kind` (prefixed `dropped_` once it was ready).
    fn fail(&mut self, key: usize, kind: Kind) {
        // Whatever was framed for it is not for the next connection.
        self.ctx.out.clear();
        if let Some(mut conn) = self.conns.try_remove(key) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            let c = &mut self.ctx.counters;
            let kind = if conn.state == State::Ready {
                c.open -= 1;
                format!("dropped_{kind}")
            } else {
                kind
            };
            *c.failed.entry(kind).or_default() += 1;
        }
    }

    /// Setup deadlines and heartbeats.
    fn sweep(&mut self) {
        let now = self.ctx.now_us();
        let heartbeat = self.ctx.config.heartbeat.as_micros() as u64;
        let config = &self.ctx.config;
        let drain_from = config.duration.saturating_sub(config.drain).as_micros() as u64;
        let mut failed = Vec::new();
        let refill = self.ctx.sending && self.ctx.config.rate <= 0.0;
        for (key, conn) in self.conns.iter_mut() {
            // Unpaced runs refill here too, for windows that nothing else reopens (a group
            // whose id arrived after the window opened).
            if refill && conn.state == State::Ready {
                if let Err(kind) = traffic::fill_window(conn, &mut self.ctx)
                    .and_then(|()| flush(conn, &mut self.ctx))
                {
                    failed.push((key, kind));
                    continue;
                }
            }
            if conn.due_us > now {
                continue;
            }
            if conn.state != State::Ready {
                let phase = match conn.state {
                    State::Connecting => "timeout_connect",
                    State::Upgrading => "timeout_upgrade",
                    _ => "timeout_login",
                };
                failed.push((key, phase.to_string()));
                continue;
            }
            conn.due_us = now + heartbeat;
            // None in the drain: a heartbeat sent then could miss the end and count as lost.
            if now >= drain_from {
                continue;
            }
            if let Err(kind) =
                traffic::heartbeat(conn, &mut self.ctx).and_then(|()| flush(conn, &mut self.ctx))
            {
                failed.push((key, kind));
            }
        }
        for (key, kind) in failed {
            self.fail(key, kind);
        }
    }

    /// Fills every ready connection's in-flight window (unpaced runs, at the window's start).
    fn fill_all_windows(&mut self) {
        let mut failed = Vec::new();
        for (key, conn) in self.conns.iter_mut() {
            if let Err(kind) =
                traffic::fill_window(conn, &mut self.ctx).and_then(|()| flush(conn, &mut self.ctx))
            {
                failed.push((key, kind));
            }
        }
        for (key, kind) in failed {
            self.fail(key, kind);
        }
    }

    /// Sends `due` messages round-robin over connections with room in their window; returns
    /// how many found none.
    fn send_paced(&mut self, mut due: u64, cursor: &mut usize) -> u64 {
        let capacity = self.conns.capacity().max(1);
        let mut idle_steps = 0;
        let mut failed = Vec::new();
        while due > 0 && idle_steps < capacity {
            *cursor = (*cursor + 1) % capacity;
            let Some(conn) = self.conns.get_mut(*cursor) else {
                idle_steps += 1;
                continue;
            };
            match traffic::send_one(conn, &mut self.ctx)
                .and_then(|sent| flush(conn, &mut self.ctx).map(|()| sent))
            {
                Ok(true) => {
                    due -= 1;
                    idle_steps = 0;
                }
                Ok(false) => idle_steps += 1,
                Err(kind) => {
                    failed.push((*cursor, kind));
                    idle_steps += 1;
                }
            }
        }
        for (key, kind) in failed {
            self.fail(key, kind);
        }
        due
    }

    /// Closes every connection with an RST (SO_LINGER 0), so no TIME_WAIT is left behind to
    /// eat the next run's ports.
    fn close_all(&mut self) {
        for (_, conn) in self.conns.iter_mut() {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            let _ = socket2::SockRef::from(&conn.stream).set_linger(Some(Duration::ZERO));
        }
        self.conns.clear();
    }
}

/// Wall-clock milliseconds since the Unix epoch (to line worker windows up with the parent's
/// server samples).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A one-shot timerfd in the engine's poll: the pacer's wake-up at a message's own time.
struct PacerTimer {
    fd: TimerFd,
    /// The time (since the run's start) it is armed for: most passes of the loop are woken by
    /// sockets before it, and leave it as it is.
    armed_for: Option<Duration>,
}

impl PacerTimer {
    fn register(poll: &Poll) -> io::Result<PacerTimer> {
        let fd = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )
        .map_err(io::Error::from)?;
        poll.registry().register(
            &mut SourceFd(&fd.as_fd().as_raw_fd()),
            PACER_TIMER,
            Interest::READABLE,
        )?;
        Ok(PacerTimer {
            fd,
            armed_for: None,
        })
    }

    /// Fires once at `at` (times since the run's start; at least 1 µs from `now`: zero would
    /// disarm it). Re-arming clears an expiry not yet read, so the fd is never read.
    fn wake_at(&mut self, at: Duration, now: Duration) -> io::Result<()> {
        if self
            .armed_for
            .is_some_and(|armed| armed == at && armed > now)
        {
            return Ok(());
        }
        let after = at.saturating_sub(now).max(Duration::from_micros(1));
        self.fd
            .set(
                Expiration::OneShot(TimeSpec::from_duration(after)),
                TimerSetTimeFlags::empty(),
            )
            .map_err(io::Error::from)?;
        self.armed_for = Some(at);
        Ok(())
    }
}
