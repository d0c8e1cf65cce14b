//! What an engine's writer thread counts of its commits, for the admin listener's `/metrics`.
//! Both engines fill the same block, so `/metrics` reads the same families whichever runs;
//! the writer thread is its one writer (SQLite's checkpoint thread, of `checkpoint_seconds`).

use crate::metrics::{Counter, Gauge, Histogram, SECONDS_BOUNDS, SIZE_BOUNDS};

/// What the store thread counts.
#[derive(Debug)]
pub struct StoreMetrics {
    /// Seconds from BEGIN to the end of COMMIT, per batch.
    pub commit_seconds: Histogram,
    /// Requests per committed batch.
    pub batch_requests: Histogram,
    /// Batches that failed as a whole (rolled back; on PostgreSQL also those failed untried
    /// while the writer was reconnecting, which are not timed).
    pub batches_failed: Counter,
    /// Requests waiting in the queue when the last batch was taken.
    pub queued_requests: Gauge,
    /// Seconds per WAL checkpoint run by the checkpoint thread, all its passes (SQLite with
    /// `--checkpoint-pages` above 0; none on PostgreSQL). That thread is this one's writer.
    pub checkpoint_seconds: Histogram,
    /// Seconds the checkpoint thread spent writing out what one pass copied, slice by slice
    /// (SQLite).
    pub checkpoint_writeback_seconds: Histogram,
    /// Seconds per WAL checkpoint the store thread ran by itself between batches: the one
    /// that finishes the log after each of the checkpoint thread's (often nothing to copy),
    /// and the fallback should the log reach twice the threshold (SQLite).
    pub store_thread_checkpoint_seconds: Histogram,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        StoreMetrics {
            commit_seconds: Histogram::new(SECONDS_BOUNDS),
            batch_requests: Histogram::new(SIZE_BOUNDS),
            batches_failed: Counter::default(),
            queued_requests: Gauge::default(),
            checkpoint_seconds: Histogram::new(SECONDS_BOUNDS),
            checkpoint_writeback_seconds: Histogram::new(SECONDS_BOUNDS),
            store_thread_checkpoint_seconds: Histogram::new(SECONDS_BOUNDS),
        }
    }
}
