//! The logic core: turns requests into chat, sans I/O. This file only dispatches.
//!
//! Inputs, each with the time it happens (`now_ms`, milliseconds since the Unix epoch; the core
//! has no clock of its own): [`LogicCore::handle_inbound`] for the gateway's events,
//! [`LogicCore::handle_completion`] for the store's answers, [`LogicCore::handle_timeout`] once
//! [`LogicCore::next_timeout`] has passed. Outputs go through the [`Outlet`] (pushes, closes)
//! and the [`Store`] (requests with tickets); `driver.rs` is the thread that feeds it.
//!
//! What each request means lives beside its concern: `login.rs` (login, sessions, the garbage
//! rule, kicks), `messaging.rs` (SEND, GROUP_SEND, dedupe), `sync.rs` (SYNC_*), `groups.rs`
//! (GROUP_*), `backend.rs` (the admin API's calls, which share the SEND path). Invariants: the sender of a message is always the session's user, never a
//! payload field; a SEND is acknowledged only after the store's commit; a message is pushed
//! only once the store has accepted it into its queue (a BUSY sender gets nothing pushed); a
//! (sender, client_msg_id) pair is stored and pushed at most once. It never blocks on the
//! store: a full store queue is answered with BUSY.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use switchboard_codec::packet::{PacketRef, HEADER_LEN};
use switchboard_codec::Decoded;
use switchboard_protocol::command::is_request;
use switchboard_protocol::{PongOk, Request, ResponseBody, Status, Target};
use tracing::{info, warn};

use super::backend::{BackendCall, Waiter};
use super::config::LogicConfig;
use super::dedupe::Dedupe;
use super::group_cache::{Group, GroupCache};
use super::messaging::Outgoing;
use super::metrics::LogicMetrics;
use super::outlet::{Outlet, Replies};
use super::session::{ConnKey, SessionTable};
use super::snowflake::{NodeIdOutOfRange, SnowflakeGenerator};
use super::tickets::{Asker, Pending, Then, Tickets};
use super::token::TokenVerifier;
use crate::store::{Completion, GroupRecord, InboxPoint, Store, StoreRequest, Ticket};

/// An event from the gateway, about one connection.
#[derive(Debug, Clone)]
pub enum Inbound {
    /// A connection was admitted; it must log in within the login timeout. The address is the
    /// client's: the peer's, or the one its load balancer's PROXY header named.
    Opened(ConnKey, SocketAddr),
    /// One whole packet (header included) from a connection.
    Packet(ConnKey, Bytes),
    /// The connection is gone (any reason).
    Closed(ConnKey),
    /// The server is about to drain: tell every logged-in client (KICKED, reason
    /// SERVER_SHUTDOWN) so it reconnects elsewhere, then answer on the channel. The gateway's
    /// drain closes the connections after these pushes.
    Shutdown(crossbeam_channel::Sender<()>),
    /// A drain reached this connection: a logged-in client gets RECONNECT_AFTER and KICKED
    /// (SERVER_SHUTDOWN); the connection is closed (1012 on WebSocket).
    Drain(ConnKey),
    /// A new process takes the listeners over (`--handover`): keep to one half of the id
    /// sequence, answer group changes BUSY from now on (the new process's cache would miss
    /// them), and answer what the new process must know of the ids.
    HandOver(crossbeam_channel::Sender<IdHandover>),
    /// The new process went away before it served (no READY): group changes go through
    /// again; the id lane stays (harmless).
    HandOverWithdrawn,
    /// The groups as the store holds them now that no other process shares it: replaces the
    /// membership cache and lets group changes through again.
    ReloadGroups(Vec<GroupRecord>),
    /// A call of the application's backend (the admin listener's API), not a connection's.
    Backend(Box<BackendCall>),
}

/// What a process that takes over must know of the old one's message ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdHandover {
    /// The half of the sequence the old process keeps.
    pub kept: super::snowflake::IdLane,
    /// The last millisecond (since the Unix epoch) the old process made an id in.
    pub last_unix_ms: u64,
}

/// The logic core's state. Fields are shared with the concern files beside this one.
pub struct LogicCore<S, O> {
    pub(super) config: LogicConfig,
    pub(super) sessions: SessionTable,
    pub(super) groups: GroupCache,
    /// Group changes are answered BUSY (another process shares the store: see
    /// `LogicConfig::groups_frozen`).
    pub(super) groups_frozen: bool,
    pub(super) ids: SnowflakeGenerator,
    pub(super) tokens: TokenVerifier,
    pub(super) tickets: Tickets<S>,
    pub(super) dedupe: Dedupe<Waiter>,
    /// (deadline, connection) in the order opened; all deadlines are `login_timeout` apart
    /// from their opening, so the front is always the earliest.
    pub(super) login_deadlines: VecDeque<(u64, ConnKey)>,
    pub(super) replies: Replies<O>,
    /// The time of the input being handled.
    pub(super) now_ms: u64,
    /// Counters the admin listener reads; this thread is their one writer.
    pub(super) metrics: Arc<LogicMetrics>,
}

impl<S: Store, O: Outlet> LogicCore<S, O> {
    /// A core over `store`, with the groups the store holds loaded into its cache.
    pub fn new(
        config: LogicConfig,
        store: S,
        groups: Vec<GroupRecord>,
        out: O,
    ) -> Result<Self, NodeIdOutOfRange> {
        let mut ids = SnowflakeGenerator::new(config.node_id)?;
        ids.restrict(config.id_lane);
        if let Some(after) = config.ids_after_unix_ms {
            ids.start_after(after);
        }
        let cache = group_cache(config.group_member_limit, groups);
        Ok(LogicCore {
            groups_frozen: config.groups_frozen,
            tokens: TokenVerifier::new(&config.jwt_secret),
            replies: Replies::new(out, config.max_packet),
            dedupe: Dedupe::new(config.dedupe_window),
            config,
            sessions: SessionTable::default(),
            groups: cache,
            ids,
            tickets: Tickets::new(store),
            login_deadlines: VecDeque::new(),
            now_ms: 0,
            metrics: Arc::default(),
        })
    }

    /// Handles one gateway event that happened at `now_ms`.
    pub fn handle_inbound(&mut self, event: Inbound, now_ms: u64) {
        self.now_ms = now_ms;
        match event {
            Inbound::Opened(conn, peer) => self.on_opened(conn, peer),
            Inbound::Packet(conn, packet) => self.on_packet(conn, packet),
            Inbound::Closed(conn) => self.on_closed(conn),
            Inbound::Shutdown(done) => self.on_shutdown(done),
            Inbound::Drain(conn) => self.on_drain(conn),
            Inbound::HandOver(answer) => {
                let kept = self.ids.lane().keep();
                self.ids.restrict(kept);
                self.groups_frozen = true;
                let last_unix_ms = self.ids.last_ms().unwrap_or(self.now_ms).max(self.now_ms);
                let _ = answer.send(IdHandover { kept, last_unix_ms });
            }
            Inbound::HandOverWithdrawn => self.groups_frozen = false,
            Inbound::ReloadGroups(groups) => {
                self.groups = group_cache(self.config.group_member_limit, groups);
                self.groups_frozen = false;
            }
            Inbound::Backend(call) => self.on_backend(*call),
        }
    }

    /// The core's counters, for the admin listener to read.
    pub fn metrics(&self) -> Arc<LogicMetrics> {
        self.metrics.clone()
    }

    /// Publishes the gauges (sessions, requests in flight) to the metrics: after each batch.
    pub fn publish_gauges(&self) {
        let m = &self.metrics;
        m.connections.set(self.sessions.connections() as u64);
        m.online_users.set(self.sessions.online_users() as u64);
        m.store_requests_in_flight
            .set(self.tickets.in_flight() as u64);
    }

    /// Ends a turn: what was pushed during it goes out (see [`Outlet::flush`]).
    pub fn flush(&mut self) {
        self.replies.flush();
    }

    /// Handles one store completion that arrived at `now_ms`.
    pub fn handle_completion(&mut self, completion: Completion, now_ms: u64) {
        self.now_ms = now_ms;
        let Some(Pending { asker, then }) = self.tickets.take(completion.ticket()) else {
            return; // a purge the store ran on its own
        };
        let then = match then {
            Then::Stored {
                key,
                msg_id,
                time_ms,
            } => return self.on_stored(key, (msg_id, time_ms), completion),
            then => then,
        };
        let Some(asker) = asker else {
            return; // only appends are submitted without an asker (their waiters are in dedupe)
        };
        match then {
            Then::Stored { .. } => {} // handled above
            Then::Index { inbox } => self.on_index(asker, inbox.as_deref(), completion),
            Then::Fetch { ids } => self.on_fetched(asker, &ids, completion),
            Then::Acked => self.on_acked(asker, completion),
            Then::Created { id, group } => self.on_created(asker, id, group, completion),
            Then::Joined { id, user } => self.on_joined(asker, id, user, completion),
            Then::Quit { id, user } => self.on_quit(asker, id, user, completion),
        }
    }

    /// Acts on the deadlines that have passed by `now_ms` (logins not made in time).
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
        self.expire_logins();
    }

    /// The earliest time [`LogicCore::handle_timeout`] has something to do, if any.
    pub fn next_timeout(&self) -> Option<u64> {
        self.login_deadlines.front().map(|&(deadline, _)| deadline)
    }

    /// The outlet the core pushes through, for its owner to take what it buffered.
    pub fn outlet_mut(&mut self) -> &mut O {
        self.replies.outlet_mut()
    }

    /// Store requests submitted and not yet completed.
    pub fn requests_in_flight(&self) -> usize {
        self.tickets.in_flight()
    }

    fn on_packet(&mut self, conn: ConnKey, packet: Bytes) {
        if self.sessions.state(conn).is_none() {
            return; // kicked, logged out or closed: late packets mean nothing
        }
        // Over WebSocket a binary message must be exactly one packet; TCP framing already is.
        let command = match PacketRef::parse(&packet, self.config.max_packet as u32) {
            Ok(Decoded::Complete((parsed, used))) if used == packet.len() => parsed.command,
            _ => return self.on_not_one_packet(conn),
        };
        if !is_request(command) {
            // docs/protocol.md §3: a push or response number from a client is never a request
            // of any version, so it is not answered (an answer would look like a response).
            info!(conn, command, "closing: a packet outside the request range");
            let text = "a client sent a command that is not a request";
            return self.drop_violator(conn, text);
        }
        match Request::decode(command, packet.slice(HEADER_LEN..)) {
            Ok((seq, request)) => {
                self.sessions.note_good(conn);
                self.on_request(conn, seq, request);
            }
            Err(error) => self.on_undecodable(conn, error),
        }
    }

    fn on_request(&mut self, conn: ConnKey, seq: u32, request: Request) {
        let command = request.command();
        let asker = Asker { conn, seq, command };
        let Some((user, device)) = self.sessions.user_of(conn) else {
            return self.before_login(asker, request);
        };
        let (user, device) = (user.clone(), device.clone());
        match request {
            Request::Ping => self.ping(asker),
            Request::Login { .. } => self.refuse(asker, Status::ALREADY_LOGGED_IN),
            Request::Logout => self.logout(asker),
            Request::Send {
                to,
                client_msg_id,
                body,
            } => {
                let target = Target::Direct(to);
                self.send(
                    Waiter::Client(asker),
                    Outgoing::new(user, target, client_msg_id, body),
                );
            }
            Request::GroupSend {
                group_id,
                client_msg_id,
                body,
            } => {
                let target = Target::Group(group_id);
                self.send(
                    Waiter::Client(asker),
                    Outgoing::new(user, target, client_msg_id, body),
                );
            }
            Request::SyncIndex { after, limit } => {
                let after = InboxPoint::Message(after);
                self.sync_index(asker, &user, &device, after, limit)
            }
            Request::SyncList { after, limit } => {
                self.sync_list(asker, &user, &device, after, limit)
            }
            Request::SyncFetch { ids } => self.sync_fetch(asker, &user, ids),
            Request::SyncAck { upto } => {
                let upto = InboxPoint::Message(upto);
                self.sync_ack(asker, &user, &device, upto)
            }
            Request::SyncConfirm { upto } => self.sync_confirm(asker, &user, &device, upto),
            Request::GroupCreate { .. } | Request::GroupJoin { .. } | Request::GroupQuit { .. }
                if self.groups_frozen =>
            {
                self.refuse(asker, Status::BUSY)
            }
            Request::GroupCreate { name, members } => {
                self.group_create(asker, user, &name, &members)
            }
            Request::GroupJoin { group_id } => self.group_join(asker, user, group_id),
            Request::GroupQuit { group_id } => self.group_quit(asker, user, group_id),
            Request::GroupDetail { group_id } => self.group_detail(asker, group_id),
        }
    }

    /// Submits a store request for `asker`; a request the store does not take is refused at
    /// once (BUSY or INTERNAL). Returns whether it was queued.
    pub(super) fn ask_store(
        &mut self,
        asker: Asker,
        then: Then,
        make: impl FnOnce(Ticket) -> StoreRequest,
    ) -> bool {
        match self.tickets.submit(Some(asker), then, make) {
            Ok(()) => true,
            Err(status) => {
                self.refuse(asker, status);
                false
            }
        }
    }

    /// A completion that is not the one its request expects: the request failed.
    pub(super) fn store_failed(&mut self, asker: Asker, completion: &Completion) {
        warn!(?completion, command = ?asker.command, "a store request failed");
        self.refuse(asker, failure_status(completion));
    }

    /// PING: answered with the server's time, unless the connection pings faster than the
    /// documented pace (docs/protocol.md §6.1), which costs it the connection: a KICKED with
    /// PROTOCOL_VIOLATION, then the close (1008 on WebSocket).
    fn ping(&mut self, asker: Asker) {
        let limit = self.config.ping_limit;
        if self.sessions.note_ping(asker.conn, self.now_ms, limit) {
            let pong = PongOk {
                server_time_ms: self.now_ms,
            };
            return self.reply(asker, ResponseBody::Pong(pong));
        }
        info!(
            conn = asker.conn,
            burst = limit.burst,
            per_second = limit.per_second,
            "closing: PING faster than the limit"
        );
        self.drop_flooder(asker.conn, "PING faster than the server allows");
    }

    pub(super) fn reply(&mut self, asker: Asker, body: ResponseBody) {
        self.replies.reply(asker.conn, asker.seq, body);
    }

    pub(super) fn refuse(&mut self, asker: Asker, status: Status) {
        self.replies
            .refuse(asker.conn, asker.command, asker.seq, status);
    }
}

/// The membership cache over `groups` as the store gave them.
fn group_cache(member_limit: usize, groups: Vec<GroupRecord>) -> GroupCache {
    let mut cache = GroupCache::new(member_limit);
    for record in groups {
        let group = Group {
            name: Arc::from(record.name),
            owner: Arc::from(record.owner),
            members: record.members.into_iter().map(Arc::from).collect(),
        };
        cache.insert(record.id, group);
    }
    cache
}

/// The status for a request whose store work failed: BUSY when the store may take it a moment
/// later (a database away and reconnecting), so the client retries; INTERNAL else.
pub(super) fn failure_status(completion: &Completion) -> Status {
    match completion {
        Completion::Failed { error, .. } if error.is_transient() => Status::BUSY,
        _ => Status::INTERNAL,
    }
}
