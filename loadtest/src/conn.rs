//! One client connection of the load generator and what is done to it: its setup (connect,
//! TLS, WebSocket upgrade, login), reading and decoding what the target sends, and writing
//! what the scenario frames. The engine (`engine.rs`) owns the poll loop and calls in here per
//! event; `Ctx` is what every connection shares (the run's counters, the frame buffer, the
//! scenario). An idle connection holds no buffer: reads go through a scratch buffer the engine
//! lends, and only a partial message or an unwritten tail is kept per connection.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::time::Instant;

use bytes::BytesMut;
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use switchboard_codec::client_link::{ClientLink, LinkEvent};

use crate::config::RunConfig;
use crate::link;
use crate::traffic::{self, Traffic};

/// Where a connection is in its setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Connecting,
    Upgrading,
    LoggingIn,
    Ready,
}

/// One connection.
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    /// The TLS session of a `tls://` or `wss://` target (boxed: most runs have none).
    tls: Option<Box<rustls::ClientConnection>>,
    pub(crate) link: ClientLink,
    pub(crate) state: State,
    /// A partial message left over from the last read; empty (unallocated) otherwise.
    rx: BytesMut,
    /// Bytes the socket did not take yet; empty (unallocated) otherwise.
    tx: BytesMut,
    /// While setting up: the deadline; once ready: the next heartbeat (µs since start).
    pub(crate) due_us: u64,
    /// Messages sent and not answered yet.
    pub(crate) inflight: u32,
    /// This connection's index in the run (its user is `prefix + index`).
    pub(crate) index: u32,
}

impl Conn {
    /// A connection still connecting, which fails unless ready by `due_us`.
    pub(crate) fn new(stream: TcpStream, link: ClientLink, index: u32, due_us: u64) -> Conn {
        Conn {
            stream,
            tls: None,
            link,
            state: State::Connecting,
            rx: BytesMut::new(),
            tx: BytesMut::new(),
            due_us,
            inflight: 0,
            index,
        }
    }

    /// Whether bytes wait for the socket to take them (ours, or TLS records).
    pub(crate) fn has_unsent(&self) -> bool {
        !self.tx.is_empty() || self.tls.as_ref().is_some_and(|tls| tls.wants_write())
    }

    pub(crate) fn link_is_ws(&self) -> bool {
        self.link.is_ws()
    }
}

/// Counters shared by every connection.
pub(crate) struct Counters {
    pub(crate) connected: u64,
    pub(crate) open: u64,
    pub(crate) failed: BTreeMap<String, u64>,
    /// Requests the server answered with a refusal, by status.
    pub(crate) refused: BTreeMap<String, u64>,
    pub(crate) sent: u64,
    pub(crate) received: u64,
    /// Receipts expected for what was sent (one per echo, one per recipient).
    pub(crate) expected: u64,
    pub(crate) window_received: u64,
    pub(crate) latency: Histogram<u64>,
    /// Send-to-response latency of chat sends (the ack, which waits for the commit).
    pub(crate) ack_latency: Histogram<u64>,
    /// Latencies of the current second, for the progress line.
    pub(crate) recent: Histogram<u64>,
    /// Ack latencies of the current second, for the progress line.
    pub(crate) recent_ack: Histogram<u64>,
    pub(crate) in_window: bool,
}

impl Counters {
    pub(crate) fn record_receipt(&mut self, latency_us: u64) {
        self.received += 1;
        if self.in_window {
            self.window_received += 1;
        }
        self.latency.saturating_record(latency_us.max(1));
        self.recent.saturating_record(latency_us.max(1));
    }

    pub(crate) fn record_ack(&mut self, latency_us: u64) {
        self.ack_latency.saturating_record(latency_us.max(1));
        self.recent_ack.saturating_record(latency_us.max(1));
    }
}

/// Why a connection ends: a kind for the `failed` object.
pub(crate) type Kind = String;

/// The engine's shared state: everything but the connection table.
pub(crate) struct Ctx {
    pub(crate) config: RunConfig,
    pub(crate) start: Instant,
    pub(crate) counters: Counters,
    /// Frames to send on the current connection (scratch; cleared after each use).
    pub(crate) out: BytesMut,
    pub(crate) traffic: Traffic,
    /// Whether new messages may be sent (the window is open and the drain not begun).
    pub(crate) sending: bool,
    /// splitmix64's state for `random` (seeded by the engine).
    pub(crate) rng: u64,
}

impl Ctx {
    pub(crate) fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    pub(crate) fn random<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for chunk in out.chunks_mut(8) {
            let z = crate::splitmix::next(&mut self.rng);
            chunk.copy_from_slice(&z.to_ne_bytes()[..chunk.len()]);
        }
        out
    }
}

/// The TCP connection is up: start the upgrade, the login, or the scenario.
pub(crate) fn connected(conn: &mut Conn, ctx: &mut Ctx) -> Result<(), Kind> {
    if let (Some(config), true) = (&ctx.config.tls, ctx.config.target.tls) {
        let mut session = crate::tls::session(config, ctx.config.target.host())?;
        crate::tls::flush(&mut conn.stream, &mut session).map_err(|e| io_kind(&e))?;
        conn.tls = Some(session);
    }
    if let crate::target::Transport::Ws { path } = ctx.config.target.transport.clone() {
        let nonce = ctx.random();
        conn.link = link::ws(
            &ctx.config.target.authority,
            &path,
            nonce,
            ctx.config.logs_in(),
            &mut ctx.out,
        )
        .map_err(|_| "bad_upgrade_request".to_string())?;
        conn.state = State::Upgrading;
        return flush(conn, ctx);
    }
    upgraded(conn, ctx)
}

/// The transport is ready: log in, or go straight to the scenario.
pub(crate) fn upgraded(conn: &mut Conn, ctx: &mut Ctx) -> Result<(), Kind> {
    if ctx.config.logs_in() {
        conn.state = State::LoggingIn;
        traffic::login(conn, ctx)?;
        return flush(conn, ctx);
    }
    ready(conn, ctx)
}

/// Setup is over: count it and schedule the first heartbeat at a random point of the interval.
pub(crate) fn ready(conn: &mut Conn, ctx: &mut Ctx) -> Result<(), Kind> {
    conn.state = State::Ready;
    ctx.counters.connected += 1;
    ctx.counters.open += 1;
    let interval = ctx.config.heartbeat.as_micros() as u64;
    let phase = u64::from_ne_bytes(ctx.random()) % interval.max(1);
    conn.due_us = ctx.now_us() + phase;
    traffic::on_ready(conn, ctx)?;
    flush(conn, ctx)
}

/// Reads everything the socket has and handles every whole item.
pub(crate) fn read(
    conn: &mut Conn,
    ctx: &mut Ctx,
    chunk: &mut [u8],
    scratch: &mut BytesMut,
) -> Result<(), Kind> {
    loop {
        let n = match conn_read(conn, chunk) {
            Ok(0) => return Err("eof".into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_kind(&e)),
        };
        // Decode from the connection's leftover if it has one, else from the shared scratch.
        let own = !conn.rx.is_empty();
        let mut buf = if own {
            std::mem::take(&mut conn.rx)
        } else {
            std::mem::take(scratch)
        };
        buf.extend_from_slice(&chunk[..n]);
        let result = decode_all(conn, ctx, &mut buf);
        if buf.is_empty() {
            buf.clear();
            if !own {
                *scratch = buf;
            }
        } else if own {
            conn.rx = buf;
        } else {
            // Keep only the partial message, in an allocation of its own size.
            conn.rx = BytesMut::from(&buf[..]);
            buf.clear();
            *scratch = buf;
        }
        // Flush even after a failure: a close echo or pong the link queued belongs to this
        // connection, and `ctx.out` must be empty before the next one uses it.
        let flushed = flush(conn, ctx);
        result?;
        flushed?;
    }
}

fn decode_all(conn: &mut Conn, ctx: &mut Ctx, buf: &mut BytesMut) -> Result<(), Kind> {
    loop {
        let key = ctx.random();
        let event = conn
            .link
            .read(buf, key, &mut ctx.out)
            .map_err(|e| link::failure_kind(&e))?;
        match event {
            None => return Ok(()),
            Some(LinkEvent::Upgraded(_)) => upgraded(conn, ctx)?,
            Some(event) => traffic::on_incoming(conn, ctx, event)?,
        }
    }
}

/// Writes what `ctx.out` holds for `conn` (behind anything still queued) and clears it.
pub(crate) fn flush(conn: &mut Conn, ctx: &mut Ctx) -> Result<(), Kind> {
    if ctx.out.is_empty() {
        return Ok(());
    }
    if conn.state == State::Connecting {
        conn.tx.extend_from_slice(&ctx.out);
        ctx.out.clear();
        return Ok(());
    }
    let mut written = 0;
    if conn.tx.is_empty() {
        while written < ctx.out.len() {
            match conn_write(conn, &ctx.out[written..]) {
                Ok(0) => return Err("write_zero".into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    ctx.out.clear();
                    return Err(io_kind(&e));
                }
            }
        }
    }
    conn.tx.extend_from_slice(&ctx.out[written..]);
    ctx.out.clear();
    Ok(())
}

pub(crate) fn write_pending(conn: &mut Conn) -> Result<(), Kind> {
    if let Some(tls) = conn.tls.as_mut() {
        crate::tls::flush(&mut conn.stream, tls).map_err(|e| io_kind(&e))?;
    }
    while !conn.tx.is_empty() {
        let tx = std::mem::take(&mut conn.tx);
        let result = conn_write(conn, &tx);
        conn.tx = tx;
        match result {
            Ok(0) => return Err("write_zero".into()),
            Ok(n) => {
                let _ = conn.tx.split_to(n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_kind(&e)),
        }
    }
    // Give the allocation back: an idle connection keeps no buffer.
    conn.tx = BytesMut::new();
    Ok(())
}

fn conn_read(conn: &mut Conn, buf: &mut [u8]) -> io::Result<usize> {
    match conn.tls.as_mut() {
        Some(tls) => crate::tls::read(&mut conn.stream, tls, buf),
        None => conn.stream.read(buf),
    }
}

fn conn_write(conn: &mut Conn, buf: &[u8]) -> io::Result<usize> {
    match conn.tls.as_mut() {
        Some(tls) => crate::tls::write(&mut conn.stream, tls, buf),
        None => conn.stream.write(buf),
    }
}

/// A short name for an I/O error, for the `failed` object.
pub(crate) fn io_kind(e: &io::Error) -> Kind {
    let name = match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => "refused",
        Some(libc::ECONNRESET) => "reset",
        Some(libc::ETIMEDOUT) => "timeout",
        Some(libc::EPIPE) => "broken_pipe",
        Some(libc::EADDRNOTAVAIL) => "addr_not_avail",
        Some(libc::EADDRINUSE) => "addr_in_use",
        Some(libc::EMFILE) | Some(libc::ENFILE) => "no_fds",
        Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH) => "unreachable",
        Some(code) => return format!("errno_{code}"),
        None => return format!("{:?}", e.kind()).to_lowercase(),
    };
    name.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_have_short_kinds() {
        assert_eq!(
            io_kind(&io::Error::from_raw_os_error(libc::ECONNREFUSED)),
            "refused"
        );
        assert_eq!(
            io_kind(&io::Error::from_raw_os_error(libc::EMFILE)),
            "no_fds"
        );
        assert_eq!(io_kind(&io::Error::from_raw_os_error(libc::EIO)), "errno_5");
    }
}
