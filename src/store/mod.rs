//! The store: what the logic core asks to be kept (messages, inboxes with their per-inbox
//! sequences, sync positions, groups) behind one seam, [`Store`], with two engines:
//! `sqlite/` (embedded, the default: `switchboard serve` alone) and `postgres/`
//! (`--store postgres://...`).
//!
//! Knows nothing of sockets or the wire protocol. `request.rs` is the shared language: tickets,
//! requests, completions. Each engine is a thread owning its connection, fed through a bounded
//! queue that never blocks the caller, committing requests in groups and completing each only
//! after its transaction has committed. [`Engine`] is the choice made at start.

mod error;
mod metrics;
pub mod postgres;
mod request;
pub mod sqlite;

#[cfg(test)]
mod tests;

use std::thread::JoinHandle;

pub use error::{StoreError, SubmitError};
pub use metrics::StoreMetrics;
pub use postgres::{PostgresConfig, PostgresStore};
pub use request::{
    AppendOutcome, Completion, GroupRecord, InboxPoint, Store, StoreRequest, StoredMessage, Target,
    Ticket,
};
pub use sqlite::{SqliteConfig, SqliteStore, Synchronous};

/// An engine's thread; [`StoreThread::join`] waits for it to finish after the last handle of
/// its store is dropped (the thread serves what is queued, commits, and exits).
#[derive(Debug)]
pub struct StoreThread {
    handle: JoinHandle<Result<(), StoreError>>,
}

impl StoreThread {
    /// Starts an engine's writer on a thread named `store`.
    pub(crate) fn spawn(
        run: impl FnOnce() -> Result<(), StoreError> + Send + 'static,
    ) -> Result<StoreThread, StoreError> {
        let handle = std::thread::Builder::new()
            .name("store".into())
            .spawn(run)
            .map_err(|e| StoreError::ThreadSpawn {
                detail: e.to_string().into(),
            })?;
        Ok(StoreThread { handle })
    }

    pub fn join(self) -> Result<(), StoreError> {
        self.handle
            .join()
            .unwrap_or(Err(StoreError::ThreadPanicked))
    }
}

/// The engine chosen at start, as the logic core's [`Store`].
#[derive(Debug, Clone)]
pub enum Engine {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl Engine {
    /// Every group with its members (committed state), for the logic core's cache at start.
    pub fn load_groups(&self) -> Result<Vec<GroupRecord>, StoreError> {
        match self {
            Engine::Sqlite(store) => store.load_groups(),
            Engine::Postgres(store) => store.load_groups(),
        }
    }

    /// Queues `request` without blocking.
    pub fn submit(&self, request: StoreRequest) -> Result<(), SubmitError> {
        match self {
            Engine::Sqlite(store) => store.submit(request),
            Engine::Postgres(store) => store.submit(request),
        }
    }

    /// Requests waiting for the engine's thread.
    pub fn queue_len(&self) -> usize {
        match self {
            Engine::Sqlite(store) => store.queue_len(),
            Engine::Postgres(store) => store.queue_len(),
        }
    }
}

impl Store for Engine {
    fn submit(&mut self, request: StoreRequest) -> Result<(), SubmitError> {
        Engine::submit(self, request)
    }
}

/// Fills `batch` with `first` and whatever else is already queued, up to `max`: the group
/// both engines' writers commit as one transaction.
pub(crate) fn gather_batch(
    batch: &mut Vec<StoreRequest>,
    first: StoreRequest,
    requests: &crossbeam_channel::Receiver<StoreRequest>,
    max: usize,
) {
    batch.push(first);
    while batch.len() < max {
        match requests.try_recv() {
            Ok(request) => batch.push(request),
            Err(_) => break,
        }
    }
}
