//! The store's refusals, one variant per cause, each cheap to clone so that a failed
//! transaction can fail every request of its batch with the same error.
//!
//! Engine-neutral: each engine converts its own errors (`sqlite/`, `postgres/`).
//!
//! Request-level errors (an unknown group, a taken id) fail one request and leave the rest of
//! the batch alone; transaction-level errors (a lock, a failed commit) fail the whole batch.

use std::path::PathBuf;

use super::request::StoreRequest;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the data directory {path}: {detail}")]
    CreateDir { path: PathBuf, detail: Box<str> },
    /// The checkpoint thread's own handle on the database file (for writing its pages out).
    #[error("cannot open the database file {path}: {detail}")]
    OpenDatabaseFile { path: PathBuf, detail: Box<str> },
    #[error("the database's schema version {found} is newer than this build knows ({known})")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("id {id} does not fit in 63 bits")]
    IdOutOfRange { id: u64 },
    #[error("message id {id} is already taken by another message")]
    MessageIdTaken { id: u64 },
    #[error("stored message {id} has an unknown target kind {kind}")]
    CorruptMessage { id: u64, kind: i64 },
    /// A sync cursor past the inbox's last sequence: never given out by this database (a
    /// msg_id sent as a cursor, a cursor from another server). Fails before writing.
    #[error("cursor {cursor} is past the inbox's last sequence {last}")]
    CursorAhead { cursor: u64, last: u64 },
    #[error("group {id} already exists")]
    GroupExists { id: u64 },
    #[error("group {id} does not exist")]
    UnknownGroup { id: u64 },
    /// Another connection held the database past the busy timeout; nothing of the batch was
    /// stored and retrying later may succeed.
    #[error("the database stayed locked past the busy timeout; nothing of this batch was stored")]
    Locked,
    /// The database gave up on one of the batch's statements: PostgreSQL's `statement_timeout`
    /// or `lock_timeout` (SQLSTATE 57014, 55P03), or an operator's cancel. The connection is
    /// fine and nothing of the batch was stored; retrying later may succeed.
    #[error("postgres cancelled a statement ({code}: {detail}); nothing of this batch was stored")]
    TimedOut { code: Box<str>, detail: Box<str> },
    /// The batch's BEGIN or COMMIT failed with this SQLite result code (disk full, I/O
    /// error): nothing of the batch was stored.
    #[error("the batch's transaction failed ({detail}); nothing of this batch was stored")]
    TransactionFailed { code: i32, detail: Box<str> },
    /// SQLite rolled the batch's transaction back by itself while serving one of its requests
    /// (an I/O error, a full disk): nothing of the batch was stored.
    #[error("SQLite rolled the batch back ({cause}); nothing of this batch was stored")]
    RolledBack { cause: Box<StoreError> },
    /// A request failed after it had written, so the whole batch was rolled back: nothing of
    /// the batch was stored, and retrying the other requests may succeed.
    #[error("a request failed after writing ({cause}); nothing of this batch was stored")]
    FailedAfterWriting { cause: Box<StoreError> },
    /// SQLite would not put the database in WAL mode (a filesystem without shared memory):
    /// readers would block the writer, so the store does not open.
    #[error("the database refused WAL mode (journal_mode is {mode})")]
    WalRefused { mode: Box<str> },
    /// The operating system would not start the store thread.
    #[error("cannot start the store thread: {detail}")]
    ThreadSpawn { detail: Box<str> },
    /// Any other SQLite error while serving one request.
    #[error("sqlite: {detail}")]
    Sqlite { code: i32, detail: Box<str> },
    /// The store thread stopped before this request could finish (only a pending purge).
    #[error("the store thread stopped before finishing this request")]
    Stopped,
    #[error("the store thread panicked")]
    ThreadPanicked,
    /// `--store` names no database this build can open.
    #[error("cannot read the store's location: {detail}")]
    BadLocation { detail: Box<str> },
    /// PostgreSQL refused or failed a statement with this SQLSTATE (a full disk is 53100):
    /// nothing of the batch was stored.
    #[error("postgres ({code}): {detail}; nothing of this batch was stored")]
    Postgres { code: Box<str>, detail: Box<str> },
    /// PostgreSQL could not be reached, went away or did not answer in time. Nothing of the
    /// batch was acknowledged; the store reconnects by itself, and a retry (a resend with the
    /// same client_msg_id) is safe.
    #[error("postgres is unavailable ({detail}); nothing of this batch was acknowledged")]
    Unavailable { detail: Box<str> },
}

impl StoreError {
    /// The store may well take the same request a moment later (a database away and
    /// reconnecting, a lock held elsewhere, a statement cancelled by a timeout, a transaction
    /// PostgreSQL rolled back for a conflict: SQLSTATE class 40): the client is told BUSY, not
    /// INTERNAL. In every one of these nothing of the batch was stored.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Unavailable { .. } | StoreError::Locked | StoreError::TimedOut { .. } => {
                true
            }
            StoreError::Postgres { code, .. } => code.starts_with("40"),
            _ => false,
        }
    }
}

/// A request the store did not take; it comes back so the caller can answer its sender.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The bounded queue is full: push back on the sender (a BUSY status), never buffer more.
    #[error("the store's queue is full")]
    Busy(StoreRequest),
    /// The store thread has exited.
    #[error("the store thread has stopped")]
    Stopped(StoreRequest),
}

impl SubmitError {
    pub fn into_request(self) -> StoreRequest {
        match self {
            SubmitError::Busy(request) | SubmitError::Stopped(request) => request,
        }
    }
}
