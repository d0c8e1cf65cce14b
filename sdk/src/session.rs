//! `Session`: a client's protocol state across all its connections, without I/O or a clock.
//!
//! The driver feeds it (`connection_opened`, `on_packet`, `on_command`, `on_timeout`,
//! `connection_lost`) and drains it (`take_packets`, `poll_timeout`); every input returns a
//! `Flow` saying whether to go on, reconnect, or stop. It logs in first on every connection,
//! then syncs, resends the outbox (same `client_msg_id`s, oldest first) and the requests that
//! waited, before anything newer. It never acknowledges a message it has not delivered, and
//! every waiter gets exactly one answer, whatever happens to the connection.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use crossbeam_channel::Sender;
use rand::rngs::StdRng;
use rand::SeedableRng;
use switchboard_codec::packet::{Packet, HEADER_LEN};
use switchboard_protocol::{
    ChatMessage, Command as ProtoCommand, EncodeError, KickReason, LoginOk, Push, Request,
    Response, ResponseBody, ServerPacket, Status, Text,
};
use tracing::{debug, warn};

use crate::backoff::Backoff;
use crate::dedupe::MessageDedupe;
use crate::endpoint::Endpoint;
use crate::error::{Ack, ConnectError, LinkError, RequestError, SendError, StopReason};
use crate::event::{Event, LoginInfo};
use crate::outbox::{Outbox, Outgoing};
use crate::sync::{Next, OfflineSync};

/// How long pushed messages wait before the catch-up sync that confirms them, so a burst costs
/// one SYNC_LIST and one SYNC_CONFIRM.
const ACK_DELAY: Duration = Duration::from_millis(100);

/// What the application asks of the background thread.
#[derive(Debug)]
pub enum Command {
    /// A message to send (and resend until acknowledged).
    Send(Outgoing),
    /// Any other request; answered once, by its deadline at the latest.
    Request {
        /// The request (LOGOUT stops the client once answered).
        request: Request,
        /// Where the answer goes.
        reply: Sender<Result<ResponseBody, RequestError>>,
        /// When to give up with `Timeout`.
        deadline: Instant,
    },
    /// Close the client.
    Close,
}

/// What the driver does after an input.
#[derive(Debug)]
pub enum Flow {
    /// Carry on.
    Continue,
    /// Drop this connection and connect again.
    Reconnect(LinkError),
    /// Stop for good (then call [`Session::stop`]).
    Stop(StopReason),
}

/// The settings a session needs.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// LOGIN's and app requests' answer timeout.
    pub request_timeout: Duration,
    /// PING interval (shortened to the server's idle timeout / 2 after login).
    pub heartbeat: Duration,
    /// Waits before resending a message refused as BUSY, INTERNAL or RATE_LIMITED.
    pub backoff: Backoff,
    /// Remembered message ids.
    pub dedupe_window: usize,
    /// LOGIN's client version.
    pub client_version: String,
    /// The server's packet payload limit: a message whose packet is larger is refused here.
    pub max_packet: u32,
}

/// A request on the wire, by its seq.
#[derive(Debug)]
enum InFlight {
    Login,
    Ping,
    SyncList,
    SyncFetch,
    SyncConfirm,
    App(AppRequest),
}

#[derive(Debug)]
enum Phase {
    Offline,
    LoggingIn { deadline: Instant },
    Live,
}

/// Encodes requests with fresh seqs into whole packets for the driver.
#[derive(Debug)]
struct RequestWriter {
    next_seq: u32,
    scratch: BytesMut,
    packets: VecDeque<Bytes>,
    last_sent: Instant,
}

impl RequestWriter {
    fn send(&mut self, request: &Request, now: Instant) -> Result<u32, EncodeError> {
        let seq = self.next_seq;
        // 0 is what the server answers when it could not read a seq: never use it.
        self.next_seq = self.next_seq.wrapping_add(1).max(1);
        request.encode(seq, &mut self.scratch)?;
        self.packets.push_back(self.scratch.split().freeze());
        self.last_sent = now;
        Ok(seq)
    }

    /// Like `send`, but refuses a packet whose payload is over `max_packet` (the server
    /// closes on one without an answer, docs/protocol.md §1). With `queue` false the packet
    /// is only checked, not sent: for a message that waits for a live connection.
    fn send_within(
        &mut self,
        request: &Request,
        max_packet: u32,
        queue: bool,
        now: Instant,
    ) -> Result<Option<u32>, SendError> {
        let seq = self.next_seq;
        request
            .encode(seq, &mut self.scratch)
            .map_err(SendError::Invalid)?;
        let payload = self.scratch.len() - HEADER_LEN;
        if payload > max_packet as usize {
            self.scratch.clear();
            return Err(SendError::TooLarge {
                payload,
                max_packet,
            });
        }
        if !queue {
            self.scratch.clear();
            return Ok(None);
        }
        self.next_seq = self.next_seq.wrapping_add(1).max(1);
        self.packets.push_back(self.scratch.split().freeze());
        self.last_sent = now;
        Ok(Some(seq))
    }
}

/// One client's protocol state.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    events: Sender<Event>,
    /// Answered at the first login (or the failure before it), then `None`.
    ready: Option<Sender<Result<LoginInfo, ConnectError>>>,
    outbox: Outbox,
    dedupe: MessageDedupe,
    /// App requests waiting for a logged-in connection, oldest first.
    queued: VecDeque<QueuedRequest>,
    in_flight: HashMap<u32, InFlight>,
    wire: RequestWriter,
    phase: Phase,
    sync: OfflineSync,
    endpoint: Option<Endpoint>,
    /// The logged-in user id (from the first login's answer).
    user: Option<String>,
    heartbeat: Duration,
    last_received: Instant,
    /// Messages were delivered (pushed, or our own sends) that no confirmed cursor covers yet.
    unconfirmed: bool,
    /// When the catch-up sync that confirms them is due.
    ack_due: Option<Instant>,
    /// The wait a draining server suggested (RECONNECT_AFTER) before its KICKED.
    reconnect_after: Option<Duration>,
    rng: StdRng,
}

#[derive(Debug)]
struct QueuedRequest {
    request: Request,
    reply: Sender<Result<ResponseBody, RequestError>>,
    deadline: Instant,
}

impl Session {
    /// A session with nothing sent yet; `ready` gets the first login's outcome.
    pub fn new(
        config: SessionConfig,
        events: Sender<Event>,
        ready: Sender<Result<LoginInfo, ConnectError>>,
        now: Instant,
    ) -> Self {
        Session {
            heartbeat: config.heartbeat,
            dedupe: MessageDedupe::new(config.dedupe_window),
            config,
            events,
            ready: Some(ready),
            outbox: Outbox::new(),
            queued: VecDeque::new(),
            in_flight: HashMap::new(),
            wire: RequestWriter {
                next_seq: 1,
                scratch: BytesMut::new(),
                packets: VecDeque::new(),
                last_sent: now,
            },
            phase: Phase::Offline,
            reconnect_after: None,
            sync: OfflineSync::new(),
            endpoint: None,
            user: None,
            last_received: now,
            unconfirmed: false,
            ack_due: None,
            rng: StdRng::from_entropy(),
        }
    }

    /// Whether a login ever succeeded (so `Client::connect` has returned).
    pub fn logged_in_once(&self) -> bool {
        self.ready.is_none()
    }

    /// Whether the connection is logged in.
    pub fn is_live(&self) -> bool {
        matches!(self.phase, Phase::Live)
    }

    /// The packets to write, in order.
    pub fn take_packets(&mut self) -> impl Iterator<Item = Bytes> + '_ {
        self.wire.packets.drain(..)
    }

    /// A connection to `endpoint` is open: LOGIN with `token` goes first.
    pub fn connection_opened(&mut self, endpoint: Endpoint, token: &str, now: Instant) -> Flow {
        self.endpoint = Some(endpoint);
        self.last_received = now;
        self.sync = OfflineSync::new();
        let login = Request::Login {
            token: Text::from(token),
            client_version: Text::from(self.config.client_version.as_str()),
        };
        match self.wire.send(&login, now) {
            Ok(seq) => {
                self.in_flight.insert(seq, InFlight::Login);
                self.phase = Phase::LoggingIn {
                    deadline: now + self.config.request_timeout,
                };
                Flow::Continue
            }
            Err(error) => {
                warn!(%error, "the token cannot be sent");
                Flow::Stop(StopReason::LoginRefused(Status::MALFORMED))
            }
        }
    }

    /// Bytes arrived (any: packets, WebSocket pings): the connection is alive.
    pub fn on_received(&mut self, now: Instant) {
        self.last_received = now;
    }

    /// A whole packet from the server.
    pub fn on_packet(&mut self, packet: Packet, now: Instant) -> Flow {
        match ServerPacket::decode(packet.command, packet.payload) {
            Ok(ServerPacket::Response(response)) => self.on_response(response, now),
            Ok(ServerPacket::Push(Push::Message(message))) => {
                if matches!(self.phase, Phase::Live) {
                    self.on_push(message, now);
                }
                Flow::Continue
            }
            Ok(ServerPacket::Push(Push::Kicked { reason, text })) => {
                let text = text.as_str().to_owned();
                self.emit(Event::Kicked {
                    reason,
                    text: text.clone(),
                });
                if reason == KickReason::SERVER_SHUTDOWN {
                    Flow::Reconnect(LinkError::ServerShutdown(text))
                } else {
                    Flow::Stop(StopReason::Kicked { reason, text })
                }
            }
            Ok(ServerPacket::Push(Push::ReconnectAfter { delay_ms })) => {
                self.reconnect_after = Some(Duration::from_millis(u64::from(delay_ms)));
                Flow::Continue
            }
            Err(error) if error.is_unknown_push() => {
                debug!(%error, "skipping a push this SDK does not know");
                Flow::Continue
            }
            Err(error) => Flow::Reconnect(LinkError::Protocol(error)),
        }
    }

    /// A command from the application.
    pub fn on_command(&mut self, command: Command, now: Instant) -> Flow {
        match command {
            Command::Send(message) => {
                self.on_send(message, now);
                Flow::Continue
            }
            Command::Request {
                request,
                reply,
                deadline,
            } => self.on_app_request(request, reply, deadline, now),
            Command::Close => Flow::Stop(StopReason::Closed),
        }
    }

    /// The earliest time [`on_timeout`](Self::on_timeout) has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next = self.app_deadlines().min();
        let mut consider = |at: Option<Instant>| {
            if let Some(at) = at {
                next = Some(next.map_or(at, |n: Instant| n.min(at)));
            }
        };
        match self.phase {
            Phase::Offline => {}
            Phase::LoggingIn { deadline } => consider(Some(deadline)),
            Phase::Live => {
                consider(Some(self.last_received + self.silence_limit()));
                consider(Some(self.wire.last_sent + self.heartbeat));
                consider(self.ack_due);
                consider(self.outbox.next_retry());
            }
        }
        next
    }

    /// Time passed: timeouts, heartbeats, delayed acks and resends.
    pub fn on_timeout(&mut self, now: Instant) -> Flow {
        self.expire_app_requests(now);
        match self.phase {
            Phase::Offline => return Flow::Continue,
            Phase::LoggingIn { deadline } if now >= deadline => {
                return Flow::Reconnect(LinkError::LoginTimeout)
            }
            Phase::LoggingIn { .. } => return Flow::Continue,
            Phase::Live => {}
        }
        let silence = self.silence_limit();
        if now >= self.last_received + silence {
            return Flow::Reconnect(LinkError::Silent(silence));
        }
        if now >= self.wire.last_sent + self.heartbeat {
            self.send_internal(&Request::Ping, InFlight::Ping, now);
        }
        if self.ack_due.is_some_and(|at| now >= at) {
            self.flush_ack(now);
        }
        if self.outbox.next_retry().is_some_and(|at| now >= at) {
            self.resend_due(now);
        }
        Flow::Continue
    }

    /// The wait before reconnecting that the server suggested on this connection
    /// (RECONNECT_AFTER, sent by a draining server before KICKED), if it did; asked once.
    pub fn take_reconnect_after(&mut self) -> Option<Duration> {
        self.reconnect_after.take()
    }

    /// The connection dropped (or an attempt failed): requests on it are lost, messages wait.
    pub fn connection_lost(&mut self, error: &LinkError) {
        let was_live = matches!(self.phase, Phase::Live);
        self.phase = Phase::Offline;
        self.sync = OfflineSync::new();
        self.outbox.connection_lost();
        self.ack_due = None;
        self.wire.packets.clear();
        for (_, in_flight) in self.in_flight.drain() {
            if let InFlight::App(app) = in_flight {
                let _ = app.reply.send(Err(RequestError::ConnectionLost));
            }
        }
        if was_live {
            self.emit(Event::Disconnected {
                error: error.clone(),
            });
        }
    }

    /// Stops for good: every waiter is answered, `connect_error` (or one made from `reason`)
    /// goes to a `Client::connect` still waiting, and `Stopped` is the last event.
    pub fn stop(&mut self, reason: StopReason, connect_error: Option<ConnectError>) {
        self.phase = Phase::Offline;
        self.wire.packets.clear();
        if let Some(ready) = self.ready.take() {
            let error = connect_error.unwrap_or_else(|| match &reason {
                StopReason::LoginRefused(status) => ConnectError::LoginRefused(*status),
                StopReason::Kicked { reason, text } => ConnectError::Kicked {
                    reason: *reason,
                    text: text.clone(),
                },
                StopReason::Token(message) => ConnectError::Token(message.clone()),
                StopReason::Closed => ConnectError::Stopped,
            });
            let _ = ready.send(Err(error));
        }
        self.outbox.fail_all(&SendError::Closed);
        for (_, in_flight) in self.in_flight.drain() {
            if let InFlight::App(app) = in_flight {
                let _ = app.reply.send(Err(RequestError::Closed));
            }
        }
        for app in self.queued.drain(..) {
            let _ = app.reply.send(Err(RequestError::Closed));
        }
        self.emit(Event::Stopped { reason });
    }

    fn silence_limit(&self) -> Duration {
        self.heartbeat * 5 / 2
    }

    fn emit(&self, event: Event) {
        // The app may have dropped its receiver; events then go nowhere.
        let _ = self.events.send(event);
    }

    fn send_internal(&mut self, request: &Request, kind: InFlight, now: Instant) {
        match self.wire.send(request, now) {
            Ok(seq) => {
                self.in_flight.insert(seq, kind);
            }
            Err(error) => warn!(%error, "cannot encode {:?}", request.command()),
        }
    }

    fn on_response(&mut self, response: Response, now: Instant) -> Flow {
        if self.outbox.owns_seq(response.seq) {
            return self.on_send_answer(response, now);
        }
        let Some(in_flight) = self.in_flight.remove(&response.seq) else {
            debug!(
                seq = response.seq,
                "answer to a request no longer waited for"
            );
            return Flow::Continue;
        };
        let command = response.command;
        match (in_flight, response.result) {
            (InFlight::Login, result) => self.on_login(result, now),
            (InFlight::Ping, _) => Flow::Continue,
            (InFlight::SyncList, Ok(ResponseBody::SyncList(ok))) => {
                let dedupe = &self.dedupe;
                match self.sync.on_list(ok, |id| dedupe.seen_id(id)) {
                    Ok(next) => self.apply_sync(next, now),
                    Err(error) => Flow::Reconnect(error),
                }
            }
            (InFlight::SyncFetch, Ok(ResponseBody::SyncFetch(ok))) => {
                let mut inbound = Inbound {
                    dedupe: &mut self.dedupe,
                    events: &self.events,
                    outbox: &self.outbox,
                    user: self.user.as_deref(),
                };
                match self.sync.on_fetch(ok, |m| inbound.deliver(m)) {
                    Ok(next) => self.apply_sync(next, now),
                    Err(error) => Flow::Reconnect(error),
                }
            }
            (InFlight::SyncList | InFlight::SyncFetch, Err(status)) => {
                Flow::Reconnect(LinkError::Sync(status))
            }
            (InFlight::SyncList | InFlight::SyncFetch, Ok(_)) => {
                Flow::Reconnect(LinkError::UnexpectedResponse { command })
            }
            (InFlight::SyncConfirm, result) => {
                if let Err(status) = result {
                    warn!(%status, "SYNC_CONFIRM refused; the messages may be synced again");
                }
                Flow::Continue
            }
            (InFlight::App(app), result) => {
                let logout = app.command == ProtoCommand::Logout && result.is_ok();
                let answer = match result {
                    Ok(body) if body_matches(app.command, &body) => Ok(body),
                    Ok(_) => Err(RequestError::UnexpectedResponse),
                    Err(Status::RATE_LIMITED) => Err(RequestError::RateLimited),
                    Err(status) => Err(RequestError::Refused(status)),
                };
                let _ = app.reply.send(answer);
                if logout {
                    Flow::Stop(StopReason::Closed)
                } else {
                    Flow::Continue
                }
            }
        }
    }

    fn on_login(&mut self, result: Result<ResponseBody, Status>, now: Instant) -> Flow {
        let ok = match result {
            Ok(ResponseBody::Login(ok)) => ok,
            Ok(_) => {
                return Flow::Reconnect(LinkError::UnexpectedResponse {
                    command: ProtoCommand::Login.code(),
                })
            }
            Err(status) if retry_later(status) => {
                return Flow::Reconnect(LinkError::LoginRefused(status))
            }
            Err(status) => return Flow::Stop(StopReason::LoginRefused(status)),
        };
        self.phase = Phase::Live;
        self.heartbeat = effective_heartbeat(self.config.heartbeat, ok.idle_timeout_ms);
        let info = self.login_info(ok);
        self.user = Some(info.user.clone());
        match self.ready.take() {
            Some(ready) => {
                let _ = ready.send(Ok(info));
            }
            None => self.emit(Event::Reconnected {
                endpoint: info.endpoint,
            }),
        }
        let list = self.sync.start();
        self.unconfirmed = false;
        self.send_internal(&list, InFlight::SyncList, now);
        self.resend_due(now);
        while let Some(app) = self.queued.pop_front() {
            self.send_app(app.request, app.reply, app.deadline, now);
        }
        Flow::Continue
    }

    fn login_info(&self, ok: LoginOk) -> LoginInfo {
        LoginInfo {
            user: ok.user.as_str().to_owned(),
            device: ok.device.as_str().to_owned(),
            server_time_ms: ok.server_time_ms,
            idle_timeout_ms: ok.idle_timeout_ms,
            max_body: ok.max_body,
            endpoint: self.endpoint.clone().unwrap_or_else(|| Endpoint::Tcp {
                host: String::new(),
                port: 0,
                tls: false,
            }),
        }
    }

    fn apply_sync(&mut self, next: Next, now: Instant) -> Flow {
        for request in next.requests {
            let kind = match request {
                Request::SyncList { .. } => InFlight::SyncList,
                Request::SyncFetch { .. } => InFlight::SyncFetch,
                _ => InFlight::SyncConfirm,
            };
            self.send_internal(&request, kind, now);
        }
        if let Some(delivered) = next.done {
            self.emit(Event::SyncDone { delivered });
        }
        // Deliveries during the round that just ended get a catch-up round of their own.
        self.schedule_ack(now);
        Flow::Continue
    }

    fn on_push(&mut self, message: ChatMessage, now: Instant) {
        let mut inbound = Inbound {
            dedupe: &mut self.dedupe,
            events: &self.events,
            outbox: &self.outbox,
            user: self.user.as_deref(),
        };
        inbound.deliver(message);
        self.unconfirmed = true;
        self.schedule_ack(now);
    }

    /// Confirms what was delivered once no sync round is under way. Pushes carry no cursor, so
    /// a catch-up round lists the inbox from the last cursor confirmed (the pushed ids are not
    /// fetched again) and confirms the cursor it reaches: never a cursor past an entry this
    /// device has not had, whatever order the entries committed in.
    fn schedule_ack(&mut self, now: Instant) {
        if self.sync.is_done() && self.unconfirmed && self.ack_due.is_none() {
            self.ack_due = Some(now + ACK_DELAY);
        }
    }

    fn flush_ack(&mut self, now: Instant) {
        self.ack_due = None;
        if !self.unconfirmed {
            return;
        }
        if let Some(list) = self.sync.catch_up() {
            self.unconfirmed = false;
            self.send_internal(&list, InFlight::SyncList, now);
        }
    }

    fn on_send(&mut self, message: Outgoing, now: Instant) {
        // Checked now, so a message that can never be sent fails at once, not at login, and
        // never enters the outbox: the server closes on a packet over its limit without an
        // answer (docs/protocol.md §1), so it would be resent after every reconnect. When
        // live, the packet checked is the one sent: each message is encoded once.
        let live = matches!(self.phase, Phase::Live);
        let sent = self
            .wire
            .send_within(&message.request(), self.config.max_packet, live, now);
        match sent {
            Ok(Some(seq)) => {
                let ticket = self.outbox.push(message);
                self.outbox.mark_sent(ticket, seq);
            }
            Ok(None) => {
                self.outbox.push(message);
            }
            Err(error) => {
                let _ = message.reply.send(Err(error));
            }
        }
    }

    fn on_send_answer(&mut self, response: Response, now: Instant) -> Flow {
        let seq = response.seq;
        match response.result {
            Ok(ResponseBody::Send(ok) | ResponseBody::GroupSend(ok)) => {
                if let Some(message) = self.outbox.complete(seq) {
                    // Our own message is in our inbox too: never deliver it back to us, and
                    // let the next ack cover it.
                    self.dedupe.note_id(ok.msg_id);
                    self.unconfirmed = true;
                    self.schedule_ack(now);
                    let _ = message.reply.send(Ok(Ack {
                        client_msg_id: message.client_msg_id,
                        msg_id: ok.msg_id,
                        server_time_ms: ok.server_time_ms,
                    }));
                }
                Flow::Continue
            }
            Ok(_) => Flow::Reconnect(LinkError::UnexpectedResponse {
                command: response.command,
            }),
            Err(status) if retry_later(status) => {
                let (backoff, rng) = (&self.config.backoff, &mut self.rng);
                self.outbox
                    .retry_later(seq, |refusals| now + backoff.delay(refusals, rng));
                Flow::Continue
            }
            Err(status) => {
                if let Some(message) = self.outbox.complete(seq) {
                    let _ = message.reply.send(Err(SendError::Refused(status)));
                }
                Flow::Continue
            }
        }
    }

    fn resend_due(&mut self, now: Instant) {
        let wire = &mut self.wire;
        self.outbox
            .send_due(now, |message| wire.send(&message.request(), now).ok());
    }
}

/// The way from the wire to the app for received messages.
struct Inbound<'a> {
    dedupe: &'a mut MessageDedupe,
    events: &'a Sender<Event>,
    outbox: &'a Outbox,
    user: Option<&'a str>,
}

impl Inbound<'_> {
    /// Sends `message` to the app unless it was delivered before, or it is one of this
    /// client's own messages still awaiting its ack (stored before a drop, synced back after
    /// it: the ack of its resend reports it); whether it was delivered.
    fn deliver(&mut self, message: ChatMessage) -> bool {
        if !self.dedupe.first_time(&message) {
            return false;
        }
        let own = self.user == Some(message.from.as_str());
        if own && self.outbox.holds(message.client_msg_id) {
            return false;
        }
        let _ = self.events.send(Event::Message(message));
        true
    }
}

/// The configured heartbeat, or half the server's idle timeout when that is shorter.
fn effective_heartbeat(configured: Duration, idle_timeout_ms: u32) -> Duration {
    if idle_timeout_ms == 0 {
        return configured;
    }
    configured.min(Duration::from_millis(u64::from(idle_timeout_ms) / 2))
}

/// Whether an OK body is the one `command`'s answer carries.
fn body_matches(command: ProtoCommand, body: &ResponseBody) -> bool {
    matches!(
        (command, body),
        (ProtoCommand::GroupCreate, ResponseBody::GroupCreate(_))
            | (ProtoCommand::GroupJoin, ResponseBody::GroupJoin)
            | (ProtoCommand::GroupQuit, ResponseBody::GroupQuit)
            | (ProtoCommand::GroupDetail, ResponseBody::GroupDetail(_))
            | (ProtoCommand::Logout, ResponseBody::Logout)
            | (ProtoCommand::Ping, ResponseBody::Pong(_))
    )
}

mod app_requests;
use app_requests::AppRequest;

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;

/// Whether a refusal asks for the same request again after a backoff: the server was busy or
/// failed (BUSY, INTERNAL), or this connection sent faster than its message rate
/// (RATE_LIMITED; the request was not carried out).
fn retry_later(status: Status) -> bool {
    status == Status::BUSY || status == Status::INTERNAL || status == Status::RATE_LIMITED
}
