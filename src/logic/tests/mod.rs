//! An in-memory harness for the logic core, in the spirit of quinn-proto's `Pair` tests: the
//! core runs alone, deterministically, between a fake store that completes only when told to,
//! an outlet that records (and decodes) everything pushed and closed, and a clock moved by
//! hand. No threads, no sockets, no disk, no sleeping.
//!
//! A test plays the gateway (`open`, `request`, `close`), the store (`take`, `commit`,
//! `complete`, `set_store_capacity`) and reads what the clients would get (`next_sent`,
//! `response`, `expect_nothing`). Every test ends by checking that nothing it did not expect
//! was sent.

mod backend;
mod driver;
mod groups;
mod login;
mod messaging;
mod sync;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use switchboard_codec::packet::{PacketRef, HEADER_LEN};
use switchboard_codec::Decoded;
use switchboard_protocol::{
    Command, KickReason, Push, Request, Response, ResponseBody, ServerPacket, Status, Text,
};

use super::session::ConnKey;
use super::snowflake::EPOCH_UNIX_MS;
use super::{token, CloseWhy, Inbound, LogicConfig, LogicCore, Outlet};
use crate::store::{AppendOutcome, Completion, GroupRecord, Store, StoreRequest, SubmitError};

const SECRET: &[u8] = b"logic harness secret";
/// Where the fake clock starts: some months after the snowflake epoch.
const START_MS: u64 = EPOCH_UNIX_MS + 200 * 24 * 3600 * 1000;

/// The fake store's side the harness keeps.
struct StoreState {
    /// Submitted, not yet taken by the "store thread" (the harness).
    queued: VecDeque<StoreRequest>,
    /// The bounded queue's capacity: a submit beyond it is BUSY.
    capacity: usize,
    stopped: bool,
}

/// A store that queues requests and completes nothing by itself.
pub(super) struct FakeStore(Rc<RefCell<StoreState>>);

impl Store for FakeStore {
    fn submit(&mut self, request: StoreRequest) -> Result<(), SubmitError> {
        let mut state = self.0.borrow_mut();
        if state.stopped {
            return Err(SubmitError::Stopped(request));
        }
        if state.queued.len() >= state.capacity {
            return Err(SubmitError::Busy(request));
        }
        state.queued.push_back(request);
        Ok(())
    }
}

/// What the core sent, decoded as a client would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Sent {
    Packet(ConnKey, ServerPacket),
    Closed(ConnKey, CloseWhy),
}

/// An outlet that records; a push that is not exactly one decodable packet fails the test.
pub(super) struct RecordingOutlet(Rc<RefCell<VecDeque<Sent>>>);

impl Outlet for RecordingOutlet {
    fn push(&mut self, conn: ConnKey, packet: Bytes) {
        let decoded = match PacketRef::parse(&packet, u32::MAX) {
            Ok(Decoded::Complete((parsed, used))) if used == packet.len() => {
                ServerPacket::decode(parsed.command, packet.slice(HEADER_LEN..))
            }
            other => panic!("the core pushed something that is not one packet: {other:?}"),
        };
        let packet = decoded.expect("the core pushed a packet a client cannot decode");
        self.0.borrow_mut().push_back(Sent::Packet(conn, packet));
    }

    fn close(&mut self, conn: ConnKey, why: CloseWhy) {
        self.0.borrow_mut().push_back(Sent::Closed(conn, why));
    }
}

/// The core between the fakes, with a clock.
pub(super) struct Harness {
    pub(super) core: LogicCore<FakeStore, RecordingOutlet>,
    store: Rc<RefCell<StoreState>>,
    sent: Rc<RefCell<VecDeque<Sent>>>,
    /// The fake clock, milliseconds since the Unix epoch.
    pub(super) now_ms: u64,
    next_conn: ConnKey,
    next_seq: u32,
}

/// The harness's settings: the defaults with the harness's token secret.
/// A group named "g" owned by its first member.
/// A store failure that retrying does not cure: answered INTERNAL.
pub(super) fn disk_full() -> crate::store::StoreError {
    crate::store::StoreError::TransactionFailed {
        code: 13,
        detail: "database or disk is full".into(),
    }
}

pub(super) fn group(id: u64, members: &[&str]) -> GroupRecord {
    GroupRecord {
        id,
        name: "g".into(),
        owner: members[0].into(),
        members: members.iter().map(|m| Box::from(*m)).collect(),
    }
}

pub(super) fn config() -> LogicConfig {
    LogicConfig {
        jwt_secret: SECRET.to_vec(),
        ..LogicConfig::default()
    }
}

impl Harness {
    pub(super) fn new() -> Self {
        Self::with(config(), Vec::new())
    }

    pub(super) fn with(config: LogicConfig, groups: Vec<GroupRecord>) -> Self {
        let store = Rc::new(RefCell::new(StoreState {
            queued: VecDeque::new(),
            capacity: 1024,
            stopped: false,
        }));
        let sent = Rc::new(RefCell::new(VecDeque::new()));
        let fake_store = FakeStore(store.clone());
        let outlet = RecordingOutlet(sent.clone());
        let core = LogicCore::new(config, fake_store, groups, outlet).expect("a valid node id");
        Harness {
            core,
            store,
            sent,
            now_ms: START_MS,
            next_conn: 1,
            next_seq: 1,
        }
    }

    // ---- the clock ----

    /// Moves the clock on and, like the driver, runs the core's timeout once it is due.
    pub(super) fn advance(&mut self, by: Duration) {
        self.now_ms += by.as_millis() as u64;
        if self
            .core
            .next_timeout()
            .is_some_and(|due| due <= self.now_ms)
        {
            self.core.handle_timeout(self.now_ms);
        }
    }

    // ---- the gateway ----

    pub(super) fn open(&mut self) -> ConnKey {
        let conn = self.next_conn;
        self.next_conn += 1;
        self.core.handle_inbound(
            Inbound::Opened(conn, ([192, 0, 2, 1], 40000).into()),
            self.now_ms,
        );
        conn
    }

    pub(super) fn deliver(&mut self, conn: ConnKey, packet: Bytes) {
        let event = Inbound::Packet(conn, packet);
        self.core.handle_inbound(event, self.now_ms);
    }

    /// Sends `request` under a fresh seq, which it returns.
    pub(super) fn request(&mut self, conn: ConnKey, request: &Request) -> u32 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut packet = BytesMut::new();
        request
            .encode(seq, &mut packet)
            .expect("an encodable request");
        self.deliver(conn, packet.freeze());
        seq
    }

    pub(super) fn close(&mut self, conn: ConnKey) {
        self.core.handle_inbound(Inbound::Closed(conn), self.now_ms);
    }

    /// A token for `user` on `device`, valid for `ttl` from now.
    pub(super) fn token(&self, user: &str, device: Option<&str>, ttl: Duration) -> Text {
        let now_secs = self.now_ms / 1000;
        Text::from(token::mint(SECRET, user, device, ttl, now_secs).expect("a token"))
    }

    pub(super) fn login_request(&self, user: &str, device: &str) -> Request {
        Request::Login {
            token: self.token(user, Some(device), Duration::from_secs(3600)),
            client_version: Text::from("harness"),
        }
    }

    /// Opens a connection and logs it in as `user` on `device`; consumes the LOGIN answer.
    pub(super) fn login(&mut self, user: &str, device: &str) -> ConnKey {
        let conn = self.open();
        let login = self.login_request(user, device);
        let seq = self.request(conn, &login);
        match self.ok(conn, seq) {
            ResponseBody::Login(_) => conn,
            other => panic!("LOGIN answered {other:?}"),
        }
    }

    // ---- the store ----

    pub(super) fn queued(&self) -> usize {
        self.store.borrow().queued.len()
    }

    pub(super) fn set_store_capacity(&mut self, capacity: usize) {
        self.store.borrow_mut().capacity = capacity;
    }

    pub(super) fn stop_store(&mut self) {
        self.store.borrow_mut().stopped = true;
    }

    /// The oldest request submitted and not yet taken.
    pub(super) fn take(&mut self) -> StoreRequest {
        let request = self.store.borrow_mut().queued.pop_front();
        request.expect("a request queued for the store")
    }

    /// Delivers a completion to the core.
    pub(super) fn complete(&mut self, completion: Completion) {
        self.core.handle_completion(completion, self.now_ms);
    }

    /// Completes `request` as a store that committed it would (empty sync answers).
    pub(super) fn commit(&mut self, request: &StoreRequest) {
        let ticket = request.ticket();
        let completion = match request {
            StoreRequest::Append { .. } => Completion::Appended {
                ticket,
                outcome: AppendOutcome::Stored,
            },
            StoreRequest::SyncIndex { .. } => Completion::SyncIndex {
                ticket,
                ids: Vec::new(),
                more: false,
                cursor: 0,
            },
            StoreRequest::SyncFetch { .. } => Completion::SyncFetch {
                ticket,
                messages: Vec::new(),
            },
            _ => Completion::Done { ticket },
        };
        self.complete(completion);
    }

    /// Takes the oldest queued request and commits it.
    pub(super) fn commit_next(&mut self) -> StoreRequest {
        let request = self.take();
        self.commit(&request);
        request
    }

    // ---- what clients get ----

    /// The next thing the core sent, if any.
    pub(super) fn next_sent(&mut self) -> Option<Sent> {
        self.sent.borrow_mut().pop_front()
    }

    /// Everything sent so far, in order.
    pub(super) fn drain_sent(&mut self) -> Vec<Sent> {
        self.sent.borrow_mut().drain(..).collect()
    }

    pub(super) fn expect_nothing(&mut self) {
        let left = self.drain_sent();
        assert!(left.is_empty(), "unexpected output: {left:?}");
    }

    /// The next thing sent, which must be a response to `conn`.
    pub(super) fn response(&mut self, conn: ConnKey) -> Response {
        match self.next_sent() {
            Some(Sent::Packet(to, ServerPacket::Response(response))) if to == conn => response,
            other => panic!("expected a response to {conn}, got {other:?}"),
        }
    }

    /// The next thing sent, which must be a successful response to `conn`'s request `seq`.
    pub(super) fn ok(&mut self, conn: ConnKey, seq: u32) -> ResponseBody {
        let response = self.response(conn);
        assert_eq!(response.seq, seq, "{response:?}");
        response.result.expect("a successful response")
    }

    /// The next thing sent, which must refuse `conn`'s `command` `seq` with `status`.
    pub(super) fn refused(&mut self, conn: ConnKey, command: Command, seq: u32, status: Status) {
        let response = self.response(conn);
        assert_eq!(
            (response.command, response.seq, response.result),
            (command.code(), seq, Err(status)),
        );
    }

    /// The next thing sent, which must be a push to `conn`.
    pub(super) fn push(&mut self, conn: ConnKey) -> Push {
        match self.next_sent() {
            Some(Sent::Packet(to, ServerPacket::Push(push))) if to == conn => push,
            other => panic!("expected a push to {conn}, got {other:?}"),
        }
    }

    /// The next two things sent: KICKED with `reason` to `conn`, then its close.
    pub(super) fn kicked(&mut self, conn: ConnKey, reason: KickReason, why: CloseWhy) {
        match self.push(conn) {
            Push::Kicked { reason: got, .. } => assert_eq!(got, reason),
            other => panic!("expected KICKED, got {other:?}"),
        }
        self.closed(conn, why);
    }

    /// The next thing sent, which must be the close of `conn`.
    pub(super) fn closed(&mut self, conn: ConnKey, why: CloseWhy) {
        assert_eq!(self.next_sent(), Some(Sent::Closed(conn, why)));
    }
}
