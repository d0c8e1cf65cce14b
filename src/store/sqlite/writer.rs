//! The store thread: the one owner of the SQLite connection, committing requests in groups.
//!
//! It blocks for a first request, drains what else is queued (up to `max_batch`; when that is
//! little, what else comes within the commit delay: `store::gather_batch`), runs them all
//! in one `BEGIN IMMEDIATE … COMMIT`, and only then sends their completions: an `Appended` is
//! the durability promise. A request that fails before writing anything fails alone; one that
//! fails after writing rolls back the whole batch, which then fails request by request (see
//! `execute_batch`). Never drops a request. WAL checkpoints run on a thread of their own,
//! woken between batches (`checkpoint.rs`).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use rusqlite::Connection;

use super::checkpoint::Checkpoints;
use super::execute;
use super::purge::{purge_chunk, PendingPurge, PURGE_CHUNK};
use super::sequence::InboxSequences;
use crate::store::StoreError;
use crate::store::{Completion, Queued, StoreRequest};

/// How often the thread purges by itself with the real clock (and once at start).
const AUTO_PURGE_EVERY: Duration = Duration::from_secs(60);

pub(crate) struct StoreWriter {
    pub(crate) conn: Connection,
    pub(crate) requests: Receiver<Queued>,
    pub(crate) completions: Sender<Completion>,
    pub(crate) completion_wake: crate::store::CompletionWake,
    pub(crate) max_batch: usize,
    pub(crate) commit_delay: Duration,
    pub(crate) retention: Duration,
    pub(crate) purge: PendingPurge,
    /// Reused between batches so a steady load allocates no batch vectors.
    pub(crate) batch: Vec<StoreRequest>,
    /// Each recently written inbox's last sequence number (forgotten on a rollback).
    pub(crate) sequences: InboxSequences,
    pub(crate) done: Vec<Completion>,
    pub(crate) metrics: std::sync::Arc<crate::store::StoreMetrics>,
    pub(crate) checkpoints: Checkpoints,
}

/// Why a batch failed as a whole.
struct BatchAborted(StoreError);

impl StoreWriter {
    /// Serves requests until every `Store` handle is dropped and the queue is empty.
    pub(crate) fn run(mut self) -> Result<(), StoreError> {
        let mut next_auto_purge = Instant::now();
        loop {
            let now = Instant::now();
            if now >= next_auto_purge {
                self.purge
                    .schedule(retention_cutoff_ms(self.retention), None);
                next_auto_purge = now + AUTO_PURGE_EVERY;
            }
            // With a purge under way the queue is only polled, so chunks keep coming between
            // batches; otherwise the thread sleeps until a request or the next auto purge.
            let first = if self.purge.is_pending() {
                match self.requests.try_recv() {
                    Ok(request) => Some(request),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => break,
                }
            } else {
                match self.requests.recv_deadline(next_auto_purge) {
                    Ok(request) => Some(request),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            };
            if let Some(first) = first {
                self.run_batch(first);
            }
            if self.purge.is_pending() {
                self.run_purge_chunk();
            }
            // The batch's acks are out: wakes the checkpoint thread if the WAL has grown (or,
            // if it never finishes the log, checkpoints here).
            self.checkpoints.run_if_due(&self.conn, &self.metrics);
        }
        self.checkpoints.stop();
        // The channel reports Disconnected only once it is empty: every request was served.
        for ticket in self.purge.finish() {
            self.complete(Completion::Failed {
                ticket,
                error: StoreError::Stopped,
            });
        }
        Ok(())
    }

    fn complete(&self, completion: Completion) {
        // A logic core that has gone away no longer needs answers; the data is committed.
        let _ = self.completions.send(completion);
        self.completion_wake.wake();
    }

    fn run_batch(&mut self, first: Queued) {
        let mut batch = std::mem::take(&mut self.batch);
        crate::store::gather_batch(
            &mut batch,
            first,
            &self.requests,
            self.max_batch,
            self.commit_delay,
        );
        // Purges are scheduled up front, so even a batch that fails as a whole completes them.
        for request in &batch {
            if let StoreRequest::Purge {
                ticket,
                older_than_ms,
            } = request
            {
                self.purge.schedule(*older_than_ms, Some(*ticket));
            }
        }
        self.done.clear();
        self.metrics.queued_requests.set(self.requests.len() as u64);
        let started = Instant::now();
        let result = self.execute_batch(&batch);
        self.metrics
            .commit_seconds
            .observe_duration(started.elapsed());
        self.metrics.batch_requests.observe(batch.len() as f64);
        if let Err(BatchAborted(error)) = result {
            self.metrics.batches_failed.inc();
            tracing::warn!(%error, requests = batch.len(), "store batch failed");
            self.rollback_if_open();
            self.done.clear();
            for request in &batch {
                if !matches!(request, StoreRequest::Purge { .. }) {
                    self.done.push(Completion::Failed {
                        ticket: request.ticket(),
                        error: error.clone(),
                    });
                }
            }
        }
        batch.clear();
        self.batch = batch;
        let any = !self.done.is_empty();
        for completion in self.done.drain(..) {
            let _ = self.completions.send(completion);
        }
        if any {
            self.completion_wake.wake();
        }
    }

    fn execute_batch(&mut self, batch: &[StoreRequest]) -> Result<(), BatchAborted> {
        self.statement("BEGIN IMMEDIATE")?;
        // Another process may have committed since (a handover's overlap).
        self.sequences.begin(&self.conn).map_err(BatchAborted)?;
        let mut appends = None;
        for request in batch {
            if matches!(request, StoreRequest::Purge { .. }) {
                continue;
            }
            // No savepoint per request: it makes SQLite copy every page a request touches into
            // a sub-journal first, again for each request of a batch touching the same page: a
            // quarter of the store's CPU per message with 1,000 in flight
            // (bench/src/bin/logic_throughput, docs/performance.md). Every request checks what
            // can fail on its own account (a taken id, an unknown group) before it writes, so a
            // request that fails without writing fails alone; one that fails after writing can
            // only have hit something that spoils the whole transaction (I/O, a full disk), so
            // the batch is rolled back and the half-written request with it.
            let changes_before = self.conn.total_changes();
            match execute::dispatch(&self.conn, &mut appends, &mut self.sequences, request) {
                Ok(completion) => self.done.push(completion),
                Err(error) => {
                    if self.conn.is_autocommit() {
                        // SQLite rolled the whole transaction back (I/O error, disk full).
                        return Err(BatchAborted(StoreError::RolledBack {
                            cause: Box::new(error),
                        }));
                    }
                    if self.conn.total_changes() != changes_before {
                        return Err(BatchAborted(StoreError::FailedAfterWriting {
                            cause: Box::new(error),
                        }));
                    }
                    self.done.push(Completion::Failed {
                        ticket: request.ticket(),
                        error,
                    });
                }
            }
        }
        self.statement("COMMIT")
    }

    /// Runs one transaction-control statement, cached like every other.
    fn statement(&self, sql: &str) -> Result<(), BatchAborted> {
        self.conn
            .prepare_cached(sql)
            .and_then(|mut stmt| stmt.execute([]))
            .map(drop)
            .map_err(|e| BatchAborted(super::error::transaction(&e)))
    }

    fn rollback_if_open(&mut self) {
        // Whether SQLite rolled back by itself or is told to now, the numbers counted in the
        // transaction were never committed.
        self.sequences.forget();
        if !self.conn.is_autocommit() {
            if let Err(error) = self.conn.execute_batch("ROLLBACK") {
                tracing::error!(%error, "store rollback failed");
            }
        }
    }

    /// One chunk of the pending purge in its own transaction; completes the purge's tickets
    /// when nothing older than the cutoff is left, or fails them if the chunk failed.
    fn run_purge_chunk(&mut self) {
        let Some(cutoff_ms) = self.purge.cutoff_ms() else {
            for ticket in self.purge.finish() {
                self.complete(Completion::Done { ticket });
            }
            return;
        };
        let result = self.statement("BEGIN IMMEDIATE").and_then(|()| {
            let deleted = purge_chunk(&self.conn, cutoff_ms).map_err(BatchAborted)?;
            self.statement("COMMIT")?;
            Ok(deleted)
        });
        match result {
            Ok(deleted) if deleted == PURGE_CHUNK => {}
            Ok(_) => {
                for ticket in self.purge.finish() {
                    self.complete(Completion::Done { ticket });
                }
            }
            Err(BatchAborted(error)) => {
                // Given up for now; the next auto purge (or an explicit one) tries again.
                tracing::warn!(%error, "store purge chunk failed");
                self.rollback_if_open();
                for ticket in self.purge.finish() {
                    self.complete(Completion::Failed {
                        ticket,
                        error: error.clone(),
                    });
                }
            }
        }
    }
}

/// Messages older than this (ms since the epoch, by the real clock) are past retention;
/// 0 when the retention reaches before the epoch (nothing to purge).
fn retention_cutoff_ms(retention: Duration) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    now.saturating_sub(retention).as_millis() as u64
}
