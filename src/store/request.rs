//! What the logic core asks of the store and what comes back: plain data, no SQL, no sockets.
//!
//! Every request carries a caller-chosen [`Ticket`] and gets exactly one [`Completion`] with that
//! ticket. Ids are the logic core's snowflakes; the store never invents an id. [`Store`] is the
//! seam an engine implements (SQLite today, PostgreSQL next): a queue that never blocks.

use bytes::Bytes;

use super::error::{StoreError, SubmitError};

/// A store engine as the logic core sees it: requests in, completions out, never a wait.
///
/// Contract, for every implementation:
/// - `submit` returns at once. A request it takes is answered by exactly one [`Completion`]
///   with the request's ticket, delivered on the completion channel the engine was opened
///   with, and only after the request's effects are durable (committed).
/// - A request it does not take comes back in the error: [`SubmitError::Busy`] when its
///   bounded queue is full (the caller answers BUSY and buffers nothing),
///   [`SubmitError::Stopped`] when the engine is gone.
/// - Completions of one engine arrive in commit order, so a cache updated from them (the
///   logic core's groups) follows the committed state.
pub trait Store {
    /// Queues `request` without blocking.
    fn submit(&mut self, request: StoreRequest) -> Result<(), SubmitError>;
}

/// Chosen by the caller, handed back in the request's completion.
pub type Ticket = u64;

/// Where a message was addressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One user (all of their devices).
    Direct(Box<str>),
    /// Every member of a group.
    Group(u64),
}

/// One message as persisted: stored once, however many inboxes point at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Snowflake id; must fit in 63 bits (SQLite integers are signed).
    pub id: u64,
    /// Server time of acceptance, milliseconds since the Unix epoch; retention counts from it.
    pub time_ms: u64,
    /// The sender, taken from the session.
    pub from: Box<str>,
    pub target: Target,
    /// The sender's idempotency key: (from, client_msg_id) is stored at most once.
    pub client_msg_id: u64,
    pub body: Bytes,
}

/// A place in one user's inbox. Every inbox entry gets the inbox's next sequence number when
/// its message commits, so the sequence is commit order: a position in it never passes over an
/// entry that commits later, however many writers assign message ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxPoint {
    /// A sequence number (SYNC_LIST and SYNC_CONFIRM's cursor); 0 is before the first entry.
    /// One past the inbox's last sequence fails with [`StoreError::CursorAhead`].
    Seq(u64),
    /// The entry of this message id (the legacy SYNC_INDEX and SYNC_ACK, which speak msg_ids):
    /// its sequence; for an id not in the inbox, the last entry with a smaller id (the old
    /// meaning, "everything up to this id"); 0 if there is none.
    Message(u64),
}

/// A group with its members, as stored and as loaded at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    pub id: u64,
    pub name: Box<str>,
    pub owner: Box<str>,
    /// Stored exactly as given (the store does not add the owner); sorted when loaded.
    pub members: Vec<Box<str>>,
}

/// One unit of work for the store thread.
#[derive(Debug, Clone)]
pub enum StoreRequest {
    /// Stores `message` once and one inbox row for each user in `inboxes` (the recipients and
    /// the sender, for the sender's other devices). Completes with [`Completion::Appended`].
    Append {
        ticket: Ticket,
        message: StoredMessage,
        inboxes: Vec<Box<str>>,
    },
    /// Ids of `user`'s inbox entries after max(`after`, the device's acknowledged position), in
    /// sequence order, at most `limit`, leaving out messages with an id at or below `floor_id`
    /// (past retention). Completes with [`Completion::SyncIndex`].
    SyncIndex {
        ticket: Ticket,
        user: Box<str>,
        device: Box<str>,
        after: InboxPoint,
        floor_id: u64,
        limit: u32,
    },
    /// The messages among `ids` that are in `user`'s inbox, in the order asked; ids that are
    /// unknown, purged or another user's are skipped. Completes with [`Completion::SyncFetch`].
    SyncFetch {
        ticket: Ticket,
        user: Box<str>,
        ids: Vec<u64>,
    },
    /// Moves the device's acknowledged position up to `upto`; never moves it back.
    SyncAck {
        ticket: Ticket,
        user: Box<str>,
        device: Box<str>,
        upto: InboxPoint,
    },
    /// Fails with [`StoreError::GroupExists`] if the id is taken.
    GroupCreate { ticket: Ticket, group: GroupRecord },
    /// Fails with [`StoreError::UnknownGroup`]; joining twice is not an error.
    GroupJoin {
        ticket: Ticket,
        group_id: u64,
        user: Box<str>,
    },
    /// Fails with [`StoreError::UnknownGroup`]; quitting a group one is not in is not an error.
    GroupQuit {
        ticket: Ticket,
        group_id: u64,
        user: Box<str>,
    },
    /// Deletes every message with `time_ms < older_than_ms` and its inbox rows (SQLite finds
    /// them by id: one whose snowflake id ran ahead of its `time_ms`, after a clock stepped
    /// back, goes once its id's time is past `older_than_ms`). Runs in bounded chunks between
    /// batches, so its `Done` may come after completions of requests submitted later; once
    /// `Done` arrives none of the messages it deleted is ever synced again.
    Purge { ticket: Ticket, older_than_ms: u64 },
}

impl StoreRequest {
    /// Rows it writes, roughly: an append's message and inbox entries, one for the rest. What
    /// makes a batch worth committing without waiting (`store::gather_batch`).
    pub fn rows(&self) -> usize {
        match self {
            StoreRequest::Append { inboxes, .. } => 1 + inboxes.len(),
            _ => 1,
        }
    }

    pub fn ticket(&self) -> Ticket {
        match self {
            StoreRequest::Append { ticket, .. }
            | StoreRequest::SyncIndex { ticket, .. }
            | StoreRequest::SyncFetch { ticket, .. }
            | StoreRequest::SyncAck { ticket, .. }
            | StoreRequest::GroupCreate { ticket, .. }
            | StoreRequest::GroupJoin { ticket, .. }
            | StoreRequest::GroupQuit { ticket, .. }
            | StoreRequest::Purge { ticket, .. } => *ticket,
        }
    }
}

/// What became of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Stored and committed: the sender may be acknowledged now.
    Stored,
    /// The same (from, client_msg_id) was stored before as `id` at `time_ms`; nothing new was
    /// stored, and the sender gets the original acknowledgement again.
    Duplicate { id: u64, time_ms: u64 },
}

/// The answer to one request, sent after the transaction holding it has committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    Appended {
        ticket: Ticket,
        outcome: AppendOutcome,
    },
    SyncIndex {
        ticket: Ticket,
        ids: Vec<u64>,
        /// More ids follow the last one returned.
        more: bool,
        /// The sequence of the last entry listed, or where the listing started if none was.
        cursor: u64,
    },
    SyncFetch {
        ticket: Ticket,
        messages: Vec<StoredMessage>,
    },
    /// SyncAck, GroupCreate, GroupJoin, GroupQuit and Purge.
    Done {
        ticket: Ticket,
    },
    Failed {
        ticket: Ticket,
        error: StoreError,
    },
}

impl Completion {
    pub fn ticket(&self) -> Ticket {
        match self {
            Completion::Appended { ticket, .. }
            | Completion::SyncIndex { ticket, .. }
            | Completion::SyncFetch { ticket, .. }
            | Completion::Done { ticket }
            | Completion::Failed { ticket, .. } => *ticket,
        }
    }
}
