//! The epoll driver: one reactor thread with a `mio::Poll`, its own listeners and one read
//! window, around the state and steps both drivers share (`driver_core/`: the slab of
//! connections, the timer wheel, the handler and its inbox, `settle`, draining). The event
//! loop below is the table of contents: `accept_ready`, `conn_readable`, `conn_writable`,
//! `inbox_ready`, `timers_due`, `send_stage`.
//!
//! What a connection means lives in `machine/`; this folder only moves bytes and readiness.
//! `read.rs` is the read path, `write.rs` the send stage at the end of each pass, `accept.rs`
//! new connections.
//!
//! Never blocks except in `poll`. While the handler says it can take no input
//! (`Handler::wants_input`), the reactor reads and accepts nothing but still runs its inbox,
//! timers and writes; connections that became readable meanwhile are kept in `unread` and
//! read when the handler has room again.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::Instant;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use tracing::warn;

use super::driver_core::{self, Driver, DriverConn, Shared};
use super::handle::{GatewayHandle, InboxReceiver};
use super::handler::{Handler, Transport};
use super::machine::Machine;

mod accept;
mod read;
mod write;

pub(crate) const TCP_LISTENER: Token = Token(usize::MAX - 1);
pub(crate) const WS_LISTENER: Token = Token(usize::MAX - 2);
pub(crate) const WAKER: Token = Token(usize::MAX - 3);

/// One connection as the driver holds it: its socket and its machine.
pub(crate) struct Conn {
    stream: TcpStream,
    generation: u32,
    machine: Machine,
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
}

/// What only the epoll driver has.
pub(crate) struct Epoll {
    poll: Poll,
    tcp_listener: Option<TcpListener>,
    ws_listener: Option<TcpListener>,
    /// Where every read lands first (see `read::READ_WINDOW`).
    read_window: Box<[u8]>,
    /// In the send stage: a machine that asks to send is sent at once.
    sending: bool,
    accept_again: bool,
    /// A listener was readable while input was paused.
    accept_unread: bool,
}

pub(crate) type Reactor<H> = driver_core::Reactor<H, Epoll>;

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
        let io = Epoll {
            poll,
            tcp_listener,
            ws_listener,
            read_window: vec![0; read::READ_WINDOW].into_boxed_slice(),
            sending: false,
            accept_again: false,
            accept_unread: false,
        };
        Ok(Self::with_driver(index, io, inbox, handler, handle, shared))
    }

    /// Runs until a shutdown has drained every connection (or its deadline passed).
    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.wait_timeout(!self.again.is_empty() || self.io.accept_again);
            if timeout != Some(std::time::Duration::ZERO) {
                self.trim_after_churn();
            }
            if let Err(e) = self.io.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    warn!(reactor = self.index, error = %e, "poll failed; reactor exits");
                    return;
                }
            }
            let pass = Instant::now();
            self.begin_pass();
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
            self.after_events();
            self.send_stage();
            self.publish_metrics(pass);
            if self.drained() {
                return;
            }
        }
    }

    /// Once the handler has room again, gives every connection that was readable meanwhile
    /// (and the listeners) a turn in this pass.
    fn resume_input(&mut self) {
        if self.input_resumes() && std::mem::take(&mut self.io.accept_unread) {
            self.io.accept_again = true;
        }
    }
}

impl Driver for Epoll {
    type Conn = Conn;
    type Socket = TcpStream;

    fn register(&mut self, key: usize, stream: &mut TcpStream) -> io::Result<()> {
        let interest = Interest::READABLE | Interest::WRITABLE;
        self.poll.registry().register(stream, Token(key), interest)
    }

    fn new_conn(stream: TcpStream, generation: u32, machine: Machine) -> Conn {
        Conn {
            stream,
            generation,
            machine,
        }
    }

    /// In the send stage a machine is sent at once; before it, at the end of the pass.
    fn transmit<H: Handler>(reactor: &mut Reactor<H>, key: usize) {
        if reactor.io.sending {
            reactor.send(key);
        } else {
            reactor.dirty.push(key);
        }
    }

    fn fin<H: Handler>(reactor: &mut Reactor<H>, key: usize) {
        let _ = reactor.conns[key]
            .stream
            .shutdown(std::net::Shutdown::Write);
    }

    /// Forgets the connection and closes its socket.
    fn close<H: Handler>(reactor: &mut Reactor<H>, key: usize) {
        if !reactor.forget(key) {
            return;
        }
        let mut conn = reactor.conns.remove(key);
        let _ = reactor.io.poll.registry().deregister(&mut conn.stream);
    }

    fn listeners(&self) -> [Option<BorrowedFd<'_>>; 2] {
        [&self.tcp_listener, &self.ws_listener].map(|l| l.as_ref().map(|l| l.as_fd()))
    }

    /// The listeners are deregistered and this reactor's descriptors closed.
    fn stop_accepting<H: Handler>(reactor: &mut Reactor<H>) {
        let io = &mut reactor.io;
        for mut listener in [io.tcp_listener.take(), io.ws_listener.take()]
            .into_iter()
            .flatten()
        {
            let _ = io.poll.registry().deregister(&mut listener);
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
