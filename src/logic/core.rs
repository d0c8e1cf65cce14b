//! The logic core: one thread that turns requests into chat.
//!
//! It receives batches of [`Inbound`] events from the gateway's handlers and completions from
//! the store, and answers through an [`Outlet`]. It owns the session table, the group cache,
//! id generation and the dedupe window. Invariants: the sender of a message is always the
//! session's user, never a payload field; a SEND is acknowledged only after the store's commit;
//! a message is pushed only once the store has accepted it into its queue (a BUSY sender gets
//! nothing pushed); a (sender, client_msg_id) pair is stored and pushed at most once.
//! It never blocks on the store: a full store queue is answered with BUSY.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use crossbeam_channel::{select, Receiver};
use switchboard_codec::packet::{PacketRef, HEADER_LEN};
use switchboard_codec::Decoded;
use switchboard_protocol::{
    command::is_request, encode_error, limits, ChatMessage, Command, GroupCreated, GroupDetailOk,
    KickReason, LoginOk, PongOk, Push, Request, RequestError, ResponseBody, SendOk, Status,
    SyncFetchOk, SyncIndexOk, Target, Text,
};
use tracing::{debug, info, warn};

use super::dedupe::{Dedupe, DedupeEntry, Waiter};
use super::groups::{Group, GroupDirectory, Refusal};
use super::session::{ConnKey, ConnState, Login, SessionTable};
use super::snowflake::{self, unix_now_ms, SnowflakeGenerator};
use super::token::TokenVerifier;
use crate::store::{
    AppendOutcome, Completion, GroupRecord, Store, StoreRequest, StoredMessage, SubmitError, Ticket,
};

/// An event from the gateway, about one connection.
#[derive(Debug, Clone)]
pub enum Inbound {
    /// A connection was admitted; it must log in within the login timeout.
    Opened(ConnKey),
    /// One whole packet (header included) from a connection.
    Packet(ConnKey, Bytes),
    /// The connection is gone (any reason).
    Closed(ConnKey),
    /// The server is about to drain: tell every logged-in client (KICKED, reason
    /// SERVER_SHUTDOWN) so it reconnects elsewhere, then answer on the channel. The gateway's
    /// drain closes the connections after these pushes.
    Shutdown(crossbeam_channel::Sender<()>),
}

/// Why the logic core closes a connection; the gateway maps it to a close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseWhy {
    /// LOGIN failed or another request came first.
    LoginFailed,
    /// No LOGIN within the login timeout.
    LoginTimeout,
    /// The same user logged in with the same device kind elsewhere.
    Kicked,
    /// The client logged out.
    Logout,
    /// The client kept sending requests that do not parse.
    Garbage,
}

/// Where the logic core's bytes go: the gateway, through its handle.
pub trait Outlet: Send {
    /// Sends one whole packet to a connection (dropped if it has closed).
    fn push(&mut self, conn: ConnKey, packet: Bytes);
    /// Closes a connection after what was pushed to it.
    fn close(&mut self, conn: ConnKey, why: CloseWhy);
}

/// The logic core's settings.
#[derive(Debug, Clone)]
pub struct LogicConfig {
    /// Snowflake node id (0..=1023); distinct per node sharing a store.
    pub node_id: u16,
    /// The HS256 secret the application's backend signs login tokens with.
    pub jwt_secret: Vec<u8>,
    /// A new connection must log in within this time.
    pub login_timeout: Duration,
    /// Largest message body accepted.
    pub max_body: u32,
    /// The gateway's read-wait, told to clients so they can pace their heartbeats.
    pub idle_timeout: Duration,
    /// Largest group.
    pub group_member_limit: usize,
    /// Largest packet payload the gateway carries (SYNC_FETCH responses stay under it).
    pub max_packet: usize,
    /// Recent (sender, client_msg_id) pairs remembered to answer resends without the store.
    pub dedupe_window: usize,
    /// Messages older than this are never synced, even before the store's purge removes them.
    pub retention: Duration,
}

impl Default for LogicConfig {
    fn default() -> Self {
        LogicConfig {
            node_id: 1,
            jwt_secret: Vec::new(),
            login_timeout: Duration::from_millis(u64::from(limits::DEFAULT_LOGIN_DEADLINE_MS)),
            max_body: limits::DEFAULT_MAX_BODY,
            idle_timeout: Duration::from_millis(u64::from(limits::DEFAULT_IDLE_TIMEOUT_MS)),
            group_member_limit: limits::DEFAULT_GROUP_MEMBER_LIMIT,
            max_packet: switchboard_codec::packet::DEFAULT_MAX_PAYLOAD as usize,
            dedupe_window: 100_000,
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// A store request in flight: who asked, and what to do with the answer.
struct Pending {
    conn: ConnKey,
    seq: u32,
    command: Command,
    then: Then,
}

/// What a completion means, by the request it answers.
enum Then {
    /// Answer every waiter of this (sender, client_msg_id) with the message's id and time.
    Stored {
        key: (Arc<str>, u64),
        msg_id: u64,
        time_ms: u64,
    },
    /// Answer with the ids.
    Index,
    /// Answer with the messages, in the order of these requested ids.
    Fetch { ids: Vec<u64> },
    /// Answer with an empty body.
    Acked,
    /// Cache the group, answer with its id.
    Created { id: u64, group: Group },
    /// Record the membership change in the cache, answer with an empty body.
    Membership { id: u64, user: Arc<str>, join: bool },
}

/// The logic core's state.
pub struct LogicCore<O: Outlet> {
    config: LogicConfig,
    sessions: SessionTable,
    groups: GroupDirectory,
    ids: SnowflakeGenerator,
    tokens: TokenVerifier,
    store: Store,
    pending: HashMap<Ticket, Pending>,
    next_ticket: Ticket,
    dedupe: Dedupe,
    login_deadlines: VecDeque<(u64, ConnKey)>,
    out: O,
    scratch: BytesMut,
    now_ms: u64,
}

impl<O: Outlet> LogicCore<O> {
    /// A core over `store`, with the groups the store holds loaded into its cache.
    pub fn new(
        config: LogicConfig,
        store: Store,
        groups: Vec<GroupRecord>,
        out: O,
    ) -> Result<Self, String> {
        let ids = SnowflakeGenerator::new(config.node_id).map_err(|e| e.to_string())?;
        let mut directory = GroupDirectory::new(config.group_member_limit);
        for record in groups {
            directory.insert(
                record.id,
                Group {
                    name: Arc::from(record.name),
                    owner: Arc::from(record.owner),
                    members: record.members.into_iter().map(Arc::from).collect(),
                },
            );
        }
        Ok(LogicCore {
            tokens: TokenVerifier::new(&config.jwt_secret),
            dedupe: Dedupe::new(config.dedupe_window),
            config,
            sessions: SessionTable::default(),
            groups: directory,
            ids,
            store,
            pending: HashMap::new(),
            next_ticket: 1,
            login_deadlines: VecDeque::new(),
            out,
            scratch: BytesMut::new(),
            now_ms: unix_now_ms(),
        })
    }

    /// Runs until the gateway side hangs up (every inbound sender dropped).
    pub fn run(mut self, inbound: Receiver<Vec<Inbound>>, completions: Receiver<Completion>) {
        loop {
            select! {
                recv(inbound) -> batch => match batch {
                    Ok(batch) => {
                        self.now_ms = unix_now_ms();
                        for event in batch {
                            self.on_inbound(event);
                        }
                    }
                    Err(_) => return,
                },
                recv(completions) -> completion => {
                    if let Ok(completion) = completion {
                        self.now_ms = unix_now_ms();
                        self.on_completion(completion);
                    }
                },
                default(Duration::from_millis(100)) => {}
            }
            self.now_ms = unix_now_ms();
            self.expire_logins();
        }
    }

    /// Handles one gateway event (public for tests that drive the core by hand).
    pub fn on_inbound(&mut self, event: Inbound) {
        match event {
            Inbound::Opened(conn) => {
                let deadline = self.now_ms + self.config.login_timeout.as_millis() as u64;
                self.sessions.open(conn, deadline);
                self.login_deadlines.push_back((deadline, conn));
            }
            Inbound::Packet(conn, packet) => self.on_packet(conn, packet),
            Inbound::Closed(conn) => {
                self.sessions.remove(conn);
            }
            Inbound::Shutdown(done) => {
                let kicked = Push::Kicked {
                    reason: KickReason::SERVER_SHUTDOWN,
                    text: Text::from("server shutting down"),
                };
                if kicked.encode(&mut self.scratch).is_ok() {
                    let packet = self.scratch.split().freeze();
                    for conn in self.sessions.logged_in() {
                        self.out.push(conn, packet.clone());
                    }
                }
                let _ = done.send(());
            }
        }
    }

    fn expire_logins(&mut self) {
        while let Some(&(deadline, conn)) = self.login_deadlines.front() {
            if deadline > self.now_ms {
                break;
            }
            self.login_deadlines.pop_front();
            if let Some(ConnState::AwaitingLogin { deadline_ms }) = self.sessions.state(conn) {
                if *deadline_ms == deadline {
                    debug!(conn, "no LOGIN within the login timeout");
                    self.sessions.remove(conn);
                    self.out.close(conn, CloseWhy::LoginTimeout);
                }
            }
        }
    }

    fn on_packet(&mut self, conn: ConnKey, packet: Bytes) {
        if self.sessions.state(conn).is_none() {
            return; // kicked, logged out or closed: late packets mean nothing
        }
        // Over WebSocket a binary message must be exactly one packet; TCP framing already is.
        let command = match PacketRef::parse(&packet, self.config.max_packet as u32) {
            Ok(Decoded::Complete((parsed, used))) if used == packet.len() => parsed.command,
            _ => {
                info!(
                    conn,
                    "closing: a message that is not exactly one Switchboard packet"
                );
                self.sessions.remove(conn);
                self.out.close(conn, CloseWhy::Garbage);
                return;
            }
        };
        if !is_request(command) {
            // docs/protocol.md §3: a push or response number from a client is never a request
            // of any version, so it is not answered (an answer would look like a response).
            info!(conn, command, "closing: a packet outside the request range");
            return self.drop_violator(conn, "a client sent a command that is not a request");
        }
        match Request::decode(command, packet.slice(HEADER_LEN..)) {
            Ok((seq, request)) => {
                self.sessions.note_good(conn);
                self.on_request(conn, seq, request);
            }
            Err(error) => {
                let _ = error.encode_response(&mut self.scratch);
                self.flush_to(conn);
                if let RequestError::UnknownCommand { .. } = error {
                    return; // §5: never counts toward a kick, so newer clients can fall back
                }
                let logged_in = self.sessions.user_of(conn).is_some();
                let strikes = self.sessions.note_garbage(conn);
                if !logged_in || strikes >= limits::MALFORMED_IN_A_ROW_LIMIT {
                    info!(conn, %error, strikes, "closing: requests that do not parse");
                    self.drop_violator(conn, "too many malformed requests in a row");
                }
            }
        }
    }

    /// Closes a connection that broke the protocol; a logged-in one hears why first
    /// (docs/protocol.md §5: KICKED, PROTOCOL_VIOLATION).
    fn drop_violator(&mut self, conn: ConnKey, text: &str) {
        if self.sessions.user_of(conn).is_some() {
            let kicked = Push::Kicked {
                reason: KickReason::PROTOCOL_VIOLATION,
                text: Text::from(text),
            };
            let _ = kicked.encode(&mut self.scratch);
            self.flush_to(conn);
        }
        self.sessions.remove(conn);
        self.out.close(conn, CloseWhy::Garbage);
    }

    fn on_request(&mut self, conn: ConnKey, seq: u32, request: Request) {
        let command = request.command();
        let Some((user, device)) = self
            .sessions
            .user_of(conn)
            .map(|(u, d)| (u.clone(), d.clone()))
        else {
            match request {
                Request::Login { token, .. } => self.login(conn, seq, &token),
                _ => {
                    self.refuse(conn, command, seq, Status::NOT_LOGGED_IN);
                    self.sessions.remove(conn);
                    self.out.close(conn, CloseWhy::LoginFailed);
                }
            }
            return;
        };
        match request {
            Request::Ping => self.reply(
                conn,
                seq,
                ResponseBody::Pong(PongOk {
                    server_time_ms: self.now_ms,
                }),
            ),
            Request::Login { .. } => self.refuse(conn, command, seq, Status::ALREADY_LOGGED_IN),
            Request::Logout => {
                self.reply(conn, seq, ResponseBody::Logout);
                self.sessions.remove(conn);
                self.out.close(conn, CloseWhy::Logout);
            }
            Request::Send {
                to,
                client_msg_id,
                body,
            } => self.send(
                conn,
                seq,
                command,
                user,
                Target::Direct(to),
                client_msg_id,
                body,
            ),
            Request::GroupSend {
                group_id,
                client_msg_id,
                body,
            } => self.send(
                conn,
                seq,
                command,
                user,
                Target::Group(group_id),
                client_msg_id,
                body,
            ),
            Request::SyncIndex { after, limit } => {
                // Ids are time-ordered: ids below the retention floor are expired.
                let after = after.max(self.retention_floor_id());
                self.ask_store(conn, seq, command, Then::Index, |ticket| {
                    StoreRequest::SyncIndex {
                        ticket,
                        user: user.as_ref().into(),
                        device: device.as_ref().into(),
                        after,
                        limit: u32::from(limits::sync_index_limit(limit)),
                    }
                });
            }
            Request::SyncFetch { ids } => {
                let then = Then::Fetch { ids: ids.clone() };
                self.ask_store(conn, seq, command, then, |ticket| StoreRequest::SyncFetch {
                    ticket,
                    user: user.as_ref().into(),
                    ids,
                });
            }
            Request::SyncAck { upto } => {
                self.ask_store(conn, seq, command, Then::Acked, |ticket| {
                    StoreRequest::SyncAck {
                        ticket,
                        user: user.as_ref().into(),
                        device: device.as_ref().into(),
                        upto,
                    }
                });
            }
            Request::GroupCreate { name, members } => {
                self.group_create(conn, seq, user, name, members)
            }
            Request::GroupJoin { group_id } => match self.groups.check_join(group_id, &user) {
                Ok(()) => self.change_membership(conn, seq, command, group_id, user, true),
                Err(refusal) => self.refuse(conn, command, seq, refusal_status(refusal)),
            },
            Request::GroupQuit { group_id } => match self.groups.check_member(group_id, &user) {
                Ok(_) => self.change_membership(conn, seq, command, group_id, user, false),
                Err(refusal) => self.refuse(conn, command, seq, refusal_status(refusal)),
            },
            Request::GroupDetail { group_id } => match self.groups.get(group_id) {
                Some(group) => {
                    let mut members: Vec<Text> =
                        group.members.iter().map(|m| Text::from(&**m)).collect();
                    members.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
                    let body = ResponseBody::GroupDetail(GroupDetailOk {
                        name: Text::from(&*group.name),
                        owner: Text::from(&*group.owner),
                        members,
                    });
                    self.reply(conn, seq, body);
                }
                None => self.refuse(conn, command, seq, Status::NOT_FOUND),
            },
        }
    }

    fn login(&mut self, conn: ConnKey, seq: u32, token: &Text) {
        let identity = match self.tokens.verify(token.as_str(), self.now_ms / 1000) {
            Ok(identity) => identity,
            Err(error) => {
                let status = if error.is_expired() {
                    Status::TOKEN_EXPIRED
                } else {
                    Status::INVALID_TOKEN
                };
                info!(conn, %error, "login refused");
                self.refuse(conn, Command::Login, seq, status);
                self.sessions.remove(conn);
                self.out.close(conn, CloseWhy::LoginFailed);
                return;
            }
        };
        let user: Arc<str> = Arc::from(identity.user.as_str());
        let device: Arc<str> = Arc::from(identity.device.as_str());
        if let Some(Login::Replaced { previous }) =
            self.sessions.login(conn, user.clone(), device.clone())
        {
            info!(user = %user, device = %device, "same device kind logged in again: kicking the older connection");
            let kicked = Push::Kicked {
                reason: KickReason::LOGGED_IN_ELSEWHERE,
                text: Text::from("logged in elsewhere with the same device kind"),
            };
            let _ = kicked.encode(&mut self.scratch);
            self.flush_to(previous);
            self.out.close(previous, CloseWhy::Kicked);
        }
        let body = ResponseBody::Login(LoginOk {
            user: Text::from(&*user),
            device: Text::from(&*device),
            server_time_ms: self.now_ms,
            idle_timeout_ms: u32::try_from(self.config.idle_timeout.as_millis())
                .unwrap_or(u32::MAX),
            max_body: self.config.max_body,
        });
        self.reply(conn, seq, body);
    }

    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        conn: ConnKey,
        seq: u32,
        command: Command,
        sender: Arc<str>,
        target: Target,
        client_msg_id: u64,
        body: Bytes,
    ) {
        if body.len() > self.config.max_body as usize {
            return self.refuse(conn, command, seq, Status::TOO_LARGE);
        }
        let key = (sender.clone(), client_msg_id);
        match self.dedupe.get_mut(&key) {
            Some(DedupeEntry::Done { msg_id, time_ms }) => {
                let ok = SendOk {
                    msg_id: *msg_id,
                    server_time_ms: *time_ms,
                };
                return self.reply(conn, seq, send_ok(command, ok));
            }
            Some(DedupeEntry::Pending(waiters)) => {
                waiters.push(Waiter { conn, seq, command });
                return;
            }
            None => {}
        }
        let recipients: Vec<Arc<str>> = match &target {
            Target::Direct(to) => vec![Arc::from(to.as_str())],
            Target::Group(group_id) => match self.groups.check_member(*group_id, &sender) {
                Ok(group) => group.members.iter().cloned().collect(),
                Err(refusal) => return self.refuse(conn, command, seq, refusal_status(refusal)),
            },
        };
        let msg_id = match self.ids.next_id(self.now_ms) {
            Ok(id) => id,
            Err(error) => {
                warn!(%error, "cannot assign a message id");
                return self.refuse(conn, command, seq, Status::INTERNAL);
            }
        };
        let time_ms = self.now_ms;
        let mut inboxes: Vec<Box<str>> = recipients.iter().map(|r| Box::from(&**r)).collect();
        if !recipients.contains(&sender) {
            inboxes.push(Box::from(&*sender));
        }
        let stored = StoredMessage {
            id: msg_id,
            time_ms,
            from: Box::from(&*sender),
            target: match &target {
                Target::Direct(to) => crate::store::Target::Direct(Box::from(to.as_str())),
                Target::Group(id) => crate::store::Target::Group(*id),
            },
            client_msg_id,
            body: body.clone(),
        };
        let then = Then::Stored {
            key: key.clone(),
            msg_id,
            time_ms,
        };
        let queued = self.ask_store(conn, seq, command, then, |ticket| StoreRequest::Append {
            ticket,
            message: stored,
            inboxes,
        });
        if !queued {
            return;
        }
        self.dedupe
            .insert_pending(key, Waiter { conn, seq, command });
        // Encoded once; every recipient connection gets a refcount of the same bytes.
        let message = ChatMessage {
            msg_id,
            server_time_ms: time_ms,
            from: Text::from(&*sender),
            target,
            client_msg_id,
            body,
        };
        let push = match message.encode_push() {
            Ok(push) => push,
            Err(error) => {
                warn!(%error, "cannot encode a push");
                return;
            }
        };
        for recipient in &recipients {
            for device in self.sessions.devices(recipient) {
                if device.conn != conn {
                    self.out.push(device.conn, push.clone());
                }
            }
        }
        if !recipients.contains(&sender) {
            for device in self.sessions.devices(&sender) {
                if device.conn != conn {
                    self.out.push(device.conn, push.clone());
                }
            }
        }
    }

    fn group_create(
        &mut self,
        conn: ConnKey,
        seq: u32,
        owner: Arc<str>,
        name: Text,
        members: Vec<Text>,
    ) {
        let mut all: Vec<Arc<str>> = Vec::with_capacity(members.len() + 1);
        all.push(owner.clone());
        for member in members {
            if !all.iter().any(|m| **m == *member.as_str()) {
                all.push(Arc::from(member.as_str()));
            }
        }
        if all.len() > self.groups.member_limit() {
            return self.refuse(conn, Command::GroupCreate, seq, Status::GROUP_FULL);
        }
        let id = match self.ids.next_id(self.now_ms) {
            Ok(id) => id,
            Err(_) => return self.refuse(conn, Command::GroupCreate, seq, Status::INTERNAL),
        };
        let record = GroupRecord {
            id,
            name: Box::from(name.as_str()),
            owner: Box::from(&*owner),
            members: all.iter().map(|m| Box::from(&**m)).collect(),
        };
        let group = Group {
            name: Arc::from(name.as_str()),
            owner,
            members: all.into_iter().collect(),
        };
        let then = Then::Created { id, group };
        self.ask_store(conn, seq, Command::GroupCreate, then, |ticket| {
            StoreRequest::GroupCreate {
                ticket,
                group: record,
            }
        });
    }

    fn change_membership(
        &mut self,
        conn: ConnKey,
        seq: u32,
        command: Command,
        id: u64,
        user: Arc<str>,
        join: bool,
    ) {
        let stored_user: Box<str> = user.as_ref().into();
        let then = Then::Membership { id, user, join };
        self.ask_store(conn, seq, command, then, |ticket| {
            if join {
                StoreRequest::GroupJoin {
                    ticket,
                    group_id: id,
                    user: stored_user,
                }
            } else {
                StoreRequest::GroupQuit {
                    ticket,
                    group_id: id,
                    user: stored_user,
                }
            }
        });
    }

    /// Handles one store completion (public for tests that drive the core by hand).
    pub fn on_completion(&mut self, completion: Completion) {
        let ticket = completion.ticket();
        let Some(pending) = self.pending.remove(&ticket) else {
            return; // a purge the store ran on its own, or a test's ticket
        };
        let Pending {
            conn,
            seq,
            command,
            then,
        } = pending;
        match (then, completion) {
            (
                Then::Stored {
                    key,
                    msg_id,
                    time_ms,
                },
                Completion::Appended { outcome, .. },
            ) => {
                // A duplicate the store caught (a resend older than the dedupe window) is
                // answered with the original id and time.
                let (msg_id, time_ms) = match outcome {
                    AppendOutcome::Stored => (msg_id, time_ms),
                    AppendOutcome::Duplicate { id, time_ms } => (id, time_ms),
                };
                for waiter in self.dedupe.complete(&key, msg_id, time_ms) {
                    let ok = SendOk {
                        msg_id,
                        server_time_ms: time_ms,
                    };
                    self.reply(waiter.conn, waiter.seq, send_ok(waiter.command, ok));
                }
            }
            (Then::Stored { key, .. }, other) => {
                warn!(?other, "storing a message failed");
                for waiter in self.dedupe.fail(&key) {
                    self.refuse(waiter.conn, waiter.command, waiter.seq, Status::INTERNAL);
                }
            }
            (Then::Index, Completion::SyncIndex { ids, more, .. }) => {
                self.reply(
                    conn,
                    seq,
                    ResponseBody::SyncIndex(SyncIndexOk { ids, more }),
                );
            }
            (Then::Fetch { ids }, Completion::SyncFetch { messages, .. }) => {
                let body = self.fetch_response(&ids, messages);
                self.reply(conn, seq, ResponseBody::SyncFetch(body));
            }
            (Then::Acked, Completion::Done { .. }) => self.reply(conn, seq, ResponseBody::SyncAck),
            (Then::Created { id, group }, Completion::Done { .. }) => {
                self.groups.insert(id, group);
                self.reply(
                    conn,
                    seq,
                    ResponseBody::GroupCreate(GroupCreated { group_id: id }),
                );
            }
            (Then::Membership { id, user, join }, Completion::Done { .. }) => {
                if join {
                    self.groups.join(id, user);
                    self.reply(conn, seq, ResponseBody::GroupJoin);
                } else {
                    self.groups.quit(id, &user);
                    self.reply(conn, seq, ResponseBody::GroupQuit);
                }
            }
            (_, other) => {
                warn!(?other, ?command, "a store request failed");
                self.refuse(conn, command, seq, Status::INTERNAL);
            }
        }
    }

    /// The SYNC_FETCH answer: messages in request order, as many as fit in one packet.
    fn fetch_response(&self, ids: &[u64], messages: Vec<StoredMessage>) -> SyncFetchOk {
        let mut by_id: HashMap<u64, StoredMessage> =
            messages.into_iter().map(|m| (m.id, m)).collect();
        let mut size = SyncFetchOk::EMPTY_PAYLOAD_LEN;
        let mut out = Vec::new();
        let mut covered = 0u16;
        let oldest_ms = self
            .now_ms
            .saturating_sub(self.config.retention.as_millis() as u64);
        for id in ids {
            if let Some(stored) = by_id.remove(id).filter(|m| m.time_ms >= oldest_ms) {
                let message = to_chat_message(stored);
                let len = message.encoded_len();
                if size + len > self.config.max_packet && covered > 0 {
                    break;
                }
                size += len;
                out.push(message);
            }
            covered += 1;
        }
        SyncFetchOk {
            covered,
            messages: out,
        }
    }

    /// The smallest id a message inside the retention window can have, minus one.
    fn retention_floor_id(&self) -> u64 {
        let oldest_ms = self
            .now_ms
            .saturating_sub(self.config.retention.as_millis() as u64);
        snowflake::first_id_at(oldest_ms).saturating_sub(1)
    }

    /// Sends a request to the store under a new ticket, remembering who asked and what to do
    /// with the answer. A full queue is answered with BUSY at once. Returns whether it was
    /// queued.
    fn ask_store(
        &mut self,
        conn: ConnKey,
        seq: u32,
        command: Command,
        then: Then,
        request: impl FnOnce(Ticket) -> StoreRequest,
    ) -> bool {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        match self.store.submit(request(ticket)) {
            Ok(()) => {
                let pending = Pending {
                    conn,
                    seq,
                    command,
                    then,
                };
                self.pending.insert(ticket, pending);
                true
            }
            Err(error) => {
                let status = match error {
                    SubmitError::Busy(_) => Status::BUSY,
                    SubmitError::Stopped(_) => Status::INTERNAL,
                };
                self.refuse(conn, command, seq, status);
                false
            }
        }
    }

    fn reply(&mut self, conn: ConnKey, seq: u32, body: ResponseBody) {
        let error = match body.encode(seq, &mut self.scratch) {
            Err(error) => Some(error.to_string()),
            // docs/protocol.md §1: never a packet larger than the server accepts. The start-up
            // checks leave only data kept from larger limits (a group that grew under a larger
            // --group-member-limit, then --max-packet lowered).
            Ok(()) if self.scratch.len() > HEADER_LEN + self.config.max_packet => Some(format!(
                "{} bytes, over the packet limit",
                self.scratch.len()
            )),
            Ok(()) => None,
        };
        if let Some(error) = error {
            warn!(%error, "cannot send a response");
            self.scratch.clear();
            let _ = encode_error(
                body.command().code(),
                seq,
                Status::INTERNAL,
                &mut self.scratch,
            );
        }
        self.flush_to(conn);
    }

    fn refuse(&mut self, conn: ConnKey, command: Command, seq: u32, status: Status) {
        let _ = encode_error(command.code(), seq, status, &mut self.scratch);
        self.flush_to(conn);
    }

    fn flush_to(&mut self, conn: ConnKey) {
        if !self.scratch.is_empty() {
            let packet = self.scratch.split().freeze();
            self.out.push(conn, packet);
        }
    }
}

fn send_ok(command: Command, ok: SendOk) -> ResponseBody {
    if command == Command::GroupSend {
        ResponseBody::GroupSend(ok)
    } else {
        ResponseBody::Send(ok)
    }
}

fn refusal_status(refusal: Refusal) -> Status {
    match refusal {
        Refusal::NotFound => Status::NOT_FOUND,
        Refusal::Full => Status::GROUP_FULL,
        Refusal::NotMember => Status::NOT_MEMBER,
    }
}

fn to_chat_message(stored: StoredMessage) -> ChatMessage {
    ChatMessage {
        msg_id: stored.id,
        server_time_ms: stored.time_ms,
        from: Text::from(&*stored.from),
        target: match stored.target {
            crate::store::Target::Direct(to) => Target::Direct(Text::from(&*to)),
            crate::store::Target::Group(id) => Target::Group(id),
        },
        client_msg_id: stored.client_msg_id,
        body: stored.body,
    }
}
