//! `Driver`: the background thread of one client, a small mio loop around a [`Session`].
//!
//! It owns the socket: connects (endpoints in order, then around again after a backoff with
//! full jitter), frames packets, reads until `WouldBlock`, writes what the session queued, and
//! wakes for commands (a `mio::Waker`) and for the session's timers. It decides nothing about
//! the protocol; the session does. Every wait has a deadline, so the thread never hangs.

use std::collections::VecDeque;
use std::io;
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use crossbeam_channel::{Receiver, TryRecvError};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use switchboard_codec::client_link::{ClientLink, LinkEvent, WsMessages};
use switchboard_codec::ws::handshake::ClientRequest;
use switchboard_codec::ws::CloseCode;
use tracing::{debug, info};

use crate::config::ClientConfig;
use crate::endpoint::Endpoint;
use crate::error::{ConnectError, LinkError, StopReason};
use crate::session::{Command, Flow, Session};
use crate::wire::Wire;

/// The socket's token.
const SOCKET: Token = Token(0);
/// The waker's token: a command arrived.
pub const WAKER: Token = Token(1);
/// Bytes read per `read` call.
const READ_CHUNK: usize = 16 * 1024;

/// Where the connection stands.
enum State {
    /// Nothing open; the next attempt starts at `until`.
    Waiting { until: Instant },
    /// A TCP connect in progress to one of the endpoint's addresses.
    Connecting {
        endpoint: Endpoint,
        stream: TcpStream,
        /// The endpoint's addresses not tried yet.
        rest: VecDeque<SocketAddr>,
        deadline: Instant,
    },
    /// Connected (logging in, or logged in).
    Open(Link),
    /// Stopped: the loop ends.
    Stopped,
}

struct Link {
    /// The socket, through TLS for `tls://` and `wss://`.
    wire: Wire,
    /// The codec's client half: the upgrade, frames, pongs and the close echo.
    framing: ClientLink,
    input: BytesMut,
    output: BytesMut,
}

/// Runs one client's connection.
pub struct Driver {
    config: ClientConfig,
    poll: Poll,
    commands: Receiver<Command>,
    session: Session,
    rng: StdRng,
    state: State,
    /// The endpoint to try next (while connected: the one in use).
    cursor: usize,
    /// Endpoints tried in the current round.
    tried: usize,
    /// Whole rounds failed in a row: the backoff attempt.
    round: u32,
    started: Instant,
    last_error: Option<LinkError>,
}

/// Returns from the enclosing function unless the flow is `Continue`.
macro_rules! go_on {
    ($flow:expr) => {
        match $flow {
            Flow::Continue => {}
            other => return other,
        }
    };
}

impl Driver {
    /// A driver for `session`, woken through `poll`'s waker when `commands` has work.
    pub fn new(
        config: ClientConfig,
        poll: Poll,
        commands: Receiver<Command>,
        session: Session,
    ) -> Self {
        let now = Instant::now();
        Driver {
            config,
            poll,
            commands,
            session,
            rng: StdRng::from_entropy(),
            state: State::Waiting { until: now },
            cursor: 0,
            tried: 0,
            round: 0,
            started: now,
            last_error: None,
        }
    }

    /// The thread's body: runs until the client stops.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(16);
        while !matches!(self.state, State::Stopped) {
            let timeout = self
                .next_deadline()
                .map(|at| at.saturating_duration_since(Instant::now()));
            if let Err(error) = self.poll.poll(&mut events, timeout) {
                if error.kind() != io::ErrorKind::Interrupted {
                    self.finish(StopReason::Closed, None);
                    return;
                }
            }
            let socket_ready = events.iter().any(|e| e.token() == SOCKET);
            let now = Instant::now();
            match self.turn(socket_ready, now) {
                Flow::Continue => {}
                Flow::Reconnect(error) => self.on_failure(error, now),
                Flow::Stop(reason) => self.finish(reason, None),
            }
        }
    }

    /// One loop turn: socket, commands, timers, then writes.
    fn turn(&mut self, socket_ready: bool, now: Instant) -> Flow {
        if socket_ready {
            go_on!(self.on_socket(now));
        }
        go_on!(self.drain_commands(now));
        go_on!(self.on_timers(now));
        self.flush()
    }

    fn next_deadline(&self) -> Option<Instant> {
        let state = match &self.state {
            State::Waiting { until } => Some(*until),
            State::Connecting { deadline, .. } => Some(*deadline),
            State::Open(_) | State::Stopped => None,
        };
        let initial = (!self.session.logged_in_once())
            .then(|| self.started + self.config.initial_connect_timeout);
        [state, initial, self.session.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    fn drain_commands(&mut self, now: Instant) -> Flow {
        loop {
            match self.commands.try_recv() {
                Ok(command) => go_on!(self.session.on_command(command, now)),
                Err(TryRecvError::Empty) => return Flow::Continue,
                Err(TryRecvError::Disconnected) => return Flow::Stop(StopReason::Closed),
            }
        }
    }

    fn on_timers(&mut self, now: Instant) -> Flow {
        if !self.session.logged_in_once()
            && now >= self.started + self.config.initial_connect_timeout
        {
            let last = self.last_error.take().unwrap_or(LinkError::ConnectTimeout);
            let error = ConnectError::Unreachable {
                deadline: self.config.initial_connect_timeout,
                last,
            };
            self.finish(StopReason::Closed, Some(error));
            return Flow::Continue;
        }
        match &self.state {
            State::Waiting { until } if now >= *until => go_on!(self.start_attempt(now)),
            State::Connecting { deadline, .. } if now >= *deadline => {
                go_on!(self.next_address(LinkError::ConnectTimeout, now))
            }
            _ => {}
        }
        self.session.on_timeout(now)
    }

    /// Starts connecting to the endpoint under the cursor.
    fn start_attempt(&mut self, now: Instant) -> Flow {
        let endpoint = self.config.endpoints[self.cursor].clone();
        debug!(%endpoint, "connecting");
        let addrs = match (endpoint.host(), endpoint.port()).to_socket_addrs() {
            Ok(addrs) => addrs.collect::<VecDeque<_>>(),
            Err(error) => {
                return Flow::Reconnect(LinkError::Resolve {
                    endpoint: endpoint.to_string(),
                    message: error.to_string(),
                })
            }
        };
        if addrs.is_empty() {
            return Flow::Reconnect(LinkError::Resolve {
                endpoint: endpoint.to_string(),
                message: "no addresses".into(),
            });
        }
        self.connect_next(endpoint, addrs, None, now)
    }

    /// Connects to the next of `addrs`; when none is left, the attempt failed with `last`.
    fn connect_next(
        &mut self,
        endpoint: Endpoint,
        mut addrs: VecDeque<SocketAddr>,
        mut last: Option<LinkError>,
        now: Instant,
    ) -> Flow {
        while let Some(addr) = addrs.pop_front() {
            let mut stream = match TcpStream::connect(addr) {
                Ok(stream) => stream,
                Err(error) => {
                    last = Some(error.into());
                    continue;
                }
            };
            let interest = Interest::READABLE | Interest::WRITABLE;
            if let Err(error) = self.poll.registry().register(&mut stream, SOCKET, interest) {
                last = Some(error.into());
                continue;
            }
            self.state = State::Connecting {
                endpoint,
                stream,
                rest: addrs,
                deadline: now + self.config.connect_timeout,
            };
            return Flow::Continue;
        }
        self.state = State::Waiting { until: now };
        Flow::Reconnect(last.unwrap_or(LinkError::ConnectTimeout))
    }

    /// The address being connected to failed with `error`: try the endpoint's next one.
    fn next_address(&mut self, error: LinkError, now: Instant) -> Flow {
        let state = std::mem::replace(&mut self.state, State::Waiting { until: now });
        let State::Connecting {
            endpoint,
            mut stream,
            rest,
            ..
        } = state
        else {
            return Flow::Reconnect(error);
        };
        let _ = self.poll.registry().deregister(&mut stream);
        self.connect_next(endpoint, rest, Some(error), now)
    }

    fn on_socket(&mut self, now: Instant) -> Flow {
        match &mut self.state {
            State::Connecting { stream, .. } => {
                let failed = match stream.take_error() {
                    Ok(Some(error)) | Err(error) => Some(error),
                    Ok(None) => match stream.peer_addr() {
                        Ok(_) => None,
                        // Not connected yet: a spurious wakeup.
                        Err(e) if e.kind() == io::ErrorKind::NotConnected => return Flow::Continue,
                        Err(error) => Some(error),
                    },
                };
                match failed {
                    Some(error) => self.next_address(error.into(), now),
                    None => self.open(now),
                }
            }
            State::Open(_) => self.read(now),
            State::Waiting { .. } | State::Stopped => Flow::Continue,
        }
    }

    /// The TCP connect completed: frame the stream and log in.
    fn open(&mut self, now: Instant) -> Flow {
        let state = std::mem::replace(&mut self.state, State::Waiting { until: now });
        let State::Connecting {
            endpoint, stream, ..
        } = state
        else {
            return Flow::Continue;
        };
        let _ = stream.set_nodelay(true);
        let wire = match self.wire(&endpoint, stream) {
            Ok(wire) => wire,
            Err(error) => return Flow::Reconnect(error),
        };
        let token = match self.config.token.token() {
            Ok(token) => token,
            Err(message) if self.session.logged_in_once() => {
                return Flow::Reconnect(LinkError::Token(message))
            }
            Err(message) => return Flow::Stop(StopReason::Token(message)),
        };
        let mut output = BytesMut::new();
        let max_payload = self.config.max_packet;
        let framing = match &endpoint {
            Endpoint::Tcp { .. } => ClientLink::tcp(max_payload),
            Endpoint::Ws { path, .. } => {
                let nonce = self.rng.gen();
                match ClientLink::ws(
                    &ClientRequest::new(&endpoint.authority(), path),
                    nonce,
                    WsMessages::Packets { max_payload },
                    &mut output,
                ) {
                    Ok(framing) => framing,
                    Err(error) => {
                        let error = io::Error::new(io::ErrorKind::InvalidInput, error);
                        return Flow::Reconnect(error.into());
                    }
                }
            }
        };
        info!(%endpoint, "connected");
        self.state = State::Open(Link {
            wire,
            framing,
            input: BytesMut::new(),
            output,
        });
        self.session.connection_opened(endpoint, &token, now)
    }

    /// The connected socket as the endpoint speaks it: in the clear, or through TLS checked
    /// against the endpoint's host name.
    fn wire(&self, endpoint: &Endpoint, stream: TcpStream) -> Result<Wire, LinkError> {
        if !endpoint.is_tls() {
            return Ok(Wire::plain(stream));
        }
        let config = match &self.config.tls {
            Some(config) => config.clone(),
            None => crate::config::system_tls()
                .map_err(|e| LinkError::from(io::Error::new(io::ErrorKind::InvalidInput, e)))?,
        };
        Ok(Wire::tls(stream, config, endpoint.host())?)
    }

    /// Reads everything available, then hands the whole packets to the session.
    fn read(&mut self, now: Instant) -> Flow {
        let State::Open(link) = &mut self.state else {
            return Flow::Continue;
        };
        let mut eof = false;
        let mut got = false;
        loop {
            let len = link.input.len();
            link.input.resize(len + READ_CHUNK, 0);
            let result = link.wire.read(&mut link.input[len..]);
            let n = *result.as_ref().unwrap_or(&0);
            link.input.truncate(len + n);
            match result {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(_) => got = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Flow::Reconnect(error.into()),
            }
        }
        if got {
            self.session.on_received(now);
        }
        // Packets before an EOF still count: a KICKED is followed by the server's close.
        loop {
            let key = self.rng.gen();
            match link.framing.read(&mut link.input, key, &mut link.output) {
                Ok(Some(LinkEvent::Packet(packet))) => go_on!(self.session.on_packet(packet, now)),
                Ok(Some(LinkEvent::Close(_))) => return Flow::Reconnect(LinkError::Closed),
                // The upgrade, and pings (answered) and pongs: the session sees only packets.
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(error) => return Flow::Reconnect(LinkError::Stream(error)),
            }
        }
        if eof {
            return Flow::Reconnect(LinkError::Closed);
        }
        Flow::Continue
    }

    /// Frames what the session queued and writes until the socket would block.
    fn flush(&mut self) -> Flow {
        let State::Open(link) = &mut self.state else {
            return Flow::Continue;
        };
        for packet in self.session.take_packets() {
            link.framing.send(&packet, self.rng.gen(), &mut link.output);
        }
        if let Err(error) = link.wire.flush_tls() {
            return Flow::Reconnect(error.into());
        }
        while !link.output.is_empty() {
            match link.wire.write(&link.output) {
                Ok(0) => return Flow::Reconnect(LinkError::Closed),
                Ok(n) => link.output.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Flow::Reconnect(error.into()),
            }
        }
        Flow::Continue
    }

    /// An attempt failed or the connection dropped: close it and plan the next attempt.
    fn on_failure(&mut self, error: LinkError, now: Instant) {
        let was_live = self.session.is_live();
        let suggested = self.session.take_reconnect_after();
        self.close_socket();
        debug!(%error, was_live, "connection failed");
        self.session.connection_lost(&error);
        let endpoints = self.config.endpoints.len();
        if was_live {
            // A drop: back to the same gateway first (a draining one sends us on), after a
            // jittered pause so a dying gateway's clients do not all return at once.
            if matches!(error, LinkError::ServerShutdown(_)) {
                self.cursor = (self.cursor + 1) % endpoints;
            }
            self.tried = 0;
            self.round = 0;
            // A draining server spreads its clients' returns itself (RECONNECT_AFTER):
            // follow it, within the backoff's ceiling.
            let pause = match (suggested, &error) {
                (Some(delay), LinkError::ServerShutdown(_)) => delay.min(self.config.backoff.max),
                _ => self.config.backoff.delay(0, &mut self.rng),
            };
            self.state = State::Waiting { until: now + pause };
            return;
        }
        self.last_error = Some(error);
        self.cursor = (self.cursor + 1) % endpoints;
        self.tried += 1;
        let mut until = now;
        if self.tried >= endpoints {
            self.tried = 0;
            until += self.config.backoff.delay(self.round, &mut self.rng);
            self.round = self.round.saturating_add(1);
        }
        self.state = State::Waiting { until };
    }

    fn close_socket(&mut self) {
        let state = std::mem::replace(
            &mut self.state,
            State::Waiting {
                until: Instant::now(),
            },
        );
        match state {
            State::Open(Link {
                wire: Wire { mut stream, .. },
                ..
            })
            | State::Connecting { mut stream, .. } => {
                let _ = self.poll.registry().deregister(&mut stream);
                let _ = stream.shutdown(Shutdown::Both);
            }
            State::Waiting { .. } | State::Stopped => {}
        }
    }

    /// Says goodbye on an open connection (best effort, no waiting) and stops the session.
    fn finish(&mut self, reason: StopReason, connect_error: Option<ConnectError>) {
        if let State::Open(link) = &mut self.state {
            for packet in self.session.take_packets() {
                link.framing.send(&packet, self.rng.gen(), &mut link.output);
            }
            let key = self.rng.gen();
            link.framing
                .send_close(CloseCode::NORMAL, "", key, &mut link.output);
            let _ = link.wire.write(&link.output);
            let _ = link.wire.flush_tls();
        }
        self.close_socket();
        self.state = State::Stopped;
        info!(?reason, "client stopped");
        self.session.stop(reason, connect_error);
    }
}

/// How long `Client::connect` may wait for the driver's first answer: the driver gives up by
/// itself before then, so this only guards against a thread that died.
pub fn connect_wait(config: &ClientConfig) -> Duration {
    config.initial_connect_timeout
        + config.connect_timeout
        + config.request_timeout
        + Duration::from_secs(5)
}
