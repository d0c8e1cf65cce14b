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
use std::time::{Duration, Instant};

pub use error::{StoreError, SubmitError};
pub use metrics::StoreMetrics;

mod wake;
pub use postgres::{PostgresConfig, PostgresStore};
pub use request::{
    AppendOutcome, Completion, GroupRecord, InboxPoint, Store, StoreRequest, StoredMessage, Target,
    Ticket,
};
pub use sqlite::{SqliteConfig, SqliteStore, Synchronous};
pub use wake::CompletionWake;

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

/// The commit delay when none is configured (`serve --commit-delay`): how long a small batch
/// waits for more requests before it is committed: 2 ms took the store CPU per message at
/// 3,000/s from 59 to 45 µs against 1 ms. docs/performance.md, "The commit cadence" and "Where
/// the cost per message goes".
pub const DEFAULT_COMMIT_DELAY: Duration = Duration::from_millis(2);

/// A batch writing this many rows commits without waiting: 32 one-to-one messages (a message
/// row and two inbox entries each), or one message to a group of 95 or more. The per-commit
/// cost (an fsync, a WAL frame header, BEGIN/COMMIT, a round of wake-ups) is over ten times a
/// message's own on either engine, so past 32 messages it is under a third of the message's
/// own cost and waiting would add latency for little; and a store busy with a group's fan-out
/// must not sit idle waiting for more. Under load the queue holds this much already.
pub const FULL_ENOUGH_ROWS: usize = 96;

/// A request as a writer's queue holds it: with the moment it was queued, so that the commit
/// delay counts from there. (Counted from when the writer took it, a request queued during a
/// commit would wait for that commit and then the whole delay again.)
pub(crate) struct Queued {
    pub(crate) at: Instant,
    pub(crate) request: StoreRequest,
}

impl Queued {
    pub(crate) fn now(request: StoreRequest) -> Queued {
        Queued {
            at: Instant::now(),
            request,
        }
    }
}

/// Fills `batch` with `first` and whatever else is already queued, up to `max`: the group
/// both engines' writers commit as one transaction. When that writes fewer than
/// [`FULL_ENOUGH_ROWS`] rows (a moderate load), it waits until `commit_delay` after
/// `first` was queued and takes what came meanwhile: a request waits for the commit delay at
/// most once (the commit running when it came, if any, overlaps it), and one commit carries
/// several requests instead of one each.
pub(crate) fn gather_batch(
    batch: &mut Vec<StoreRequest>,
    first: Queued,
    requests: &crossbeam_channel::Receiver<Queued>,
    max: usize,
    commit_delay: Duration,
) {
    let arrived = first.at;
    batch.push(first.request);
    take_queued(batch, requests, max);
    let rows: usize = batch.iter().map(StoreRequest::rows).sum();
    if commit_delay.is_zero() || batch.len() >= max || rows >= FULL_ENOUGH_ROWS {
        return;
    }
    // A sleep, not a wait on the queue: a waiting thread is woken by every request that comes
    // in, one wake-up per message, which is what gathering is there to save.
    std::thread::sleep(commit_delay.saturating_sub(arrived.elapsed()));
    take_queued(batch, requests, max);
}

fn take_queued(
    batch: &mut Vec<StoreRequest>,
    requests: &crossbeam_channel::Receiver<Queued>,
    max: usize,
) {
    while batch.len() < max {
        match requests.try_recv() {
            Ok(queued) => batch.push(queued.request),
            Err(_) => break,
        }
    }
}

#[cfg(test)]
mod gather_tests {
    use super::*;

    fn purge(ticket: Ticket) -> StoreRequest {
        StoreRequest::Purge {
            ticket,
            older_than_ms: 0,
        }
    }

    fn tickets(batch: &[StoreRequest]) -> Vec<Ticket> {
        batch.iter().map(StoreRequest::ticket).collect()
    }

    #[test]
    fn a_small_batch_takes_in_what_arrives_within_the_commit_delay() {
        let (sender, receiver) = crossbeam_channel::unbounded();
        sender.send(Queued::now(purge(2))).unwrap();
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            sender.send(Queued::now(purge(3))).unwrap();
            sender
        });
        let mut batch = Vec::new();
        gather_batch(
            &mut batch,
            Queued::now(purge(1)),
            &receiver,
            1024,
            Duration::from_secs(2),
        );
        assert_eq!(tickets(&batch), [1, 2, 3]);
        // Without a delay only what is already queued joins.
        let sender = late.join().unwrap();
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            sender.send(Queued::now(purge(5))).unwrap();
        });
        batch.clear();
        gather_batch(
            &mut batch,
            Queued::now(purge(4)),
            &receiver,
            1024,
            Duration::ZERO,
        );
        assert_eq!(tickets(&batch), [4]);
        late.join().unwrap();
        assert_eq!(receiver.try_recv().map(|r| r.request.ticket()), Ok(5));
    }

    fn append(ticket: Ticket, recipients: usize) -> StoreRequest {
        StoreRequest::Append {
            ticket,
            message: StoredMessage {
                id: ticket,
                time_ms: 0,
                from: "a".into(),
                target: Target::Group(1),
                client_msg_id: ticket,
                body: Default::default(),
            },
            inboxes: (0..recipients).map(|i| i.to_string().into()).collect(),
        }
    }

    #[test]
    fn a_batch_full_enough_or_at_its_maximum_does_not_wait() {
        let (sender, receiver) = crossbeam_channel::unbounded();
        for ticket in 1..FULL_ENOUGH_ROWS as Ticket {
            sender.send(Queued::now(purge(ticket))).unwrap();
        }
        let mut batch = Vec::new();
        let started = Instant::now();
        // A minute's delay, which no call here may wait.
        gather_batch(
            &mut batch,
            Queued::now(purge(0)),
            &receiver,
            1024,
            Duration::from_secs(60),
        );
        assert_eq!(batch.len(), FULL_ENOUGH_ROWS);
        // One message to a large group is full enough alone.
        batch.clear();
        gather_batch(
            &mut batch,
            Queued::now(append(7, 100)),
            &receiver,
            1024,
            Duration::from_secs(60),
        );
        assert_eq!(tickets(&batch), [7]);
        sender.send(Queued::now(purge(100))).unwrap();
        batch.clear();
        gather_batch(
            &mut batch,
            Queued::now(purge(99)),
            &receiver,
            2,
            Duration::from_secs(60),
        );
        assert_eq!(tickets(&batch), [99, 100]);
        assert!(started.elapsed() < Duration::from_secs(30));
    }

    #[test]
    fn a_request_that_waited_in_the_queue_is_not_held_the_whole_delay_again() {
        let (sender, receiver) = crossbeam_channel::unbounded();
        // Queued 9.5 s ago (say, behind a long commit), with a 10 s delay: half a second is left.
        let queued_at = Instant::now()
            .checked_sub(Duration::from_millis(9_500))
            .expect("a monotonic clock 9.5 s past its origin");
        let first = Queued {
            at: queued_at,
            request: purge(1),
        };
        sender.send(Queued::now(purge(2))).unwrap();
        let mut batch = Vec::new();
        let started = Instant::now();
        gather_batch(&mut batch, first, &receiver, 1024, Duration::from_secs(10));
        let waited = started.elapsed();
        assert_eq!(tickets(&batch), [1, 2]);
        assert!(waited >= Duration::from_millis(400), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
    }
}
