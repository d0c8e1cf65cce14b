//! The embedded engine, the default: messages (stored once), inboxes pointing at them (each
//! entry numbered by its inbox's own sequence, assigned at commit), acknowledged sync positions
//! per device (in that sequence), and groups, in one SQLite database (WAL) owned by one thread.
//!
//! Requests go in through a bounded queue (a full queue is pushed back on the caller, never
//! grown); completions come out on the caller's crossbeam channel, each only after the
//! transaction holding its request has committed.

mod checkpoint;
mod error;
mod execute;
pub(crate) mod page_cache;
mod purge;
mod schema;
mod sequence;
mod writeback;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::store::Queued;
use crossbeam_channel::{Sender, TrySendError};

use super::{
    Completion, CompletionWake, GroupRecord, Store, StoreError, StoreMetrics, StoreRequest,
    StoreThread, SubmitError,
};

/// How hard a commit tries to reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// Every commit syncs the WAL (`fdatasync`: the bundled SQLite is built with
    /// `HAVE_FDATASYNC`, `.cargo/config.toml`): durable even against power loss.
    #[default]
    Full,
    /// The WAL is fsynced at checkpoints only: durable against a process crash, not against
    /// power loss (the last commits may be lost, the database stays consistent).
    Normal,
}

#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// The data directory (created if missing); the database is `dir/switchboard.db`.
    pub dir: PathBuf,
    /// Capacity of the bounded request queue.
    pub queue: usize,
    /// Requests committed in one transaction, at most.
    pub max_batch: usize,
    /// How long a small batch waits for more before its commit (see `store::gather_batch`).
    pub commit_delay: Duration,
    /// Messages older than this are purged and never synced.
    pub retention: Duration,
    pub synchronous: Synchronous,
    /// How long a transaction waits for another connection's lock before failing with
    /// [`StoreError::Locked`].
    pub busy_timeout: Duration,
    /// WAL frames (pages) after which a thread of its own checkpoints on a second connection,
    /// off the commit path and off the store thread (`sqlite/checkpoint.rs`); 0 leaves it to
    /// SQLite's autocheckpoint, inside the commit that crosses 1,000 pages.
    pub checkpoint_pages: u32,
    /// Where the store thread counts its commits (it is their one writer).
    pub metrics: Arc<StoreMetrics>,
    /// Called after each batch's completions are sent (see [`CompletionWake`]).
    pub completion_wake: CompletionWake,
    /// Holds the checkpoint thread before each checkpoint (tests).
    #[cfg(test)]
    pub(crate) checkpoint_gate: Option<checkpoint::Gate>,
}

impl SqliteConfig {
    /// The defaults, keeping the database in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        SqliteConfig {
            dir: dir.into(),
            queue: 65_536,
            max_batch: 1024,
            commit_delay: super::DEFAULT_COMMIT_DELAY,
            retention: Duration::from_secs(7 * 24 * 60 * 60),
            synchronous: Synchronous::Full,
            busy_timeout: Duration::from_secs(5),
            checkpoint_pages: DEFAULT_CHECKPOINT_PAGES,
            metrics: Arc::default(),
            completion_wake: CompletionWake::default(),
            #[cfg(test)]
            checkpoint_gate: None,
        }
    }

    pub fn database_path(&self) -> PathBuf {
        self.dir.join(DATABASE_FILE)
    }
}

const DATABASE_FILE: &str = "switchboard.db";

/// The WAL's size, in pages, at which the checkpoint thread runs: 16,000 pages (64 MB of log
/// on disk). Each checkpoint ends with a short copy on the store thread (what was committed
/// during it), which costs an fsync of the database whatever its size: fewer, larger
/// checkpoints hold the store thread less often (4,000 pages: 18–22 times per 30 s at 3,000
/// messages/s; 16,000: 4). docs/performance.md, "The checkpoint thread".
pub const DEFAULT_CHECKPOINT_PAGES: u32 = 16_000;

/// A cloneable handle to the SQLite store thread, the embedded [`Store`]. Dropping every
/// handle closes the queue: the thread serves what is queued, commits, and exits.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    requests: Sender<Queued>,
    path: PathBuf,
    busy_timeout: Duration,
}

impl SqliteStore {
    /// Creates the directory and the database if needed, brings the schema up to date, and
    /// starts the store thread, which sends every completion to `completions`. If that channel
    /// is bounded and full, the thread waits for room, and the request queue then pushes back.
    pub fn open(
        config: SqliteConfig,
        completions: Sender<Completion>,
    ) -> Result<(SqliteStore, StoreThread), StoreError> {
        std::fs::create_dir_all(&config.dir).map_err(|e| StoreError::CreateDir {
            path: config.dir.clone(),
            detail: e.to_string().into(),
        })?;
        let path = config.database_path();
        let mut conn = schema::open_connection(&path, config.synchronous, config.busy_timeout)?;
        schema::migrate(&mut conn)?;
        let checkpoints = checkpoint::Checkpoints::install(&conn, &config)?;
        let (requests, receiver) = crossbeam_channel::bounded(config.queue.max(1));
        let writer = writer::StoreWriter {
            conn,
            requests: receiver,
            completions,
            completion_wake: config.completion_wake.clone(),
            max_batch: config.max_batch.max(1),
            commit_delay: config.commit_delay,
            retention: config.retention,
            purge: purge::PendingPurge::default(),
            batch: Vec::with_capacity(config.max_batch.clamp(1, 4096)),
            sequences: sequence::InboxSequences::default(),
            done: Vec::with_capacity(config.max_batch.clamp(1, 4096)),
            metrics: config.metrics.clone(),
            checkpoints,
        };
        let thread = StoreThread::spawn(move || writer.run())?;
        let store = SqliteStore {
            requests,
            path,
            busy_timeout: config.busy_timeout,
        };
        Ok((store, thread))
    }

    /// Every group with its members (committed state), read on a connection of its own: for
    /// the logic core's membership cache at start-up.
    pub fn load_groups(&self) -> Result<Vec<GroupRecord>, StoreError> {
        let conn = schema::open_connection(&self.path, Synchronous::Full, self.busy_timeout)?;
        schema::read_groups(&conn)
    }

    /// Queues `request` without blocking; a full queue hands it back as [`SubmitError::Busy`].
    pub fn submit(&self, request: StoreRequest) -> Result<(), SubmitError> {
        self.requests
            .try_send(Queued::now(request))
            .map_err(|e| match e {
                TrySendError::Full(queued) => SubmitError::Busy(queued.request),
                TrySendError::Disconnected(queued) => SubmitError::Stopped(queued.request),
            })
    }

    /// Requests waiting for the store thread.
    pub fn queue_len(&self) -> usize {
        self.requests.len()
    }

    pub fn queue_capacity(&self) -> usize {
        self.requests.capacity().unwrap_or(usize::MAX)
    }

    pub fn database_path(&self) -> &Path {
        &self.path
    }
}

impl Store for SqliteStore {
    fn submit(&mut self, request: StoreRequest) -> Result<(), SubmitError> {
        SqliteStore::submit(self, request)
    }
}
