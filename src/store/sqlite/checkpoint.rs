//! WAL checkpoints off the commit path and off the store thread: a thread of their own
//! (`store-ckpt`) copies the WAL back into the database on a second connection while the store
//! thread goes on committing.
//!
//! SQLite's own `wal_autocheckpoint` runs the checkpoint inside the commit that crosses 1,000
//! pages: that batch's acks wait for it (15.5 % of the store thread's time in a 30-minute run,
//! docs/performance.md "Long runs"). Run between batches on the store thread instead, it still
//! held every request that arrived during its ~12 ms (1.3–1.8 % of the time at 3,000/s: enough
//! to reach the ack's p99). Here the writer's connection has `wal_autocheckpoint = 0`; a WAL
//! hook records how many frames the log holds after each commit, and once it holds `pages` the
//! store thread wakes the checkpoint thread (a bounded channel of one: never twice for one
//! checkpoint), which runs `PRAGMA wal_checkpoint(PASSIVE)` on its own connection. PASSIVE
//! takes no lock a writer needs, so commits go on during the copy.
//!
//! The log starts over from its beginning only when a write transaction begins with every
//! frame copied and the database file synced. A PASSIVE pass counts only the frames the log
//! held when it began and answers "all copied" even when commits came during it; SQLite then
//! leaves the database unsynced, and the log cannot start over. So a pass's answer is never
//! taken for a finished log: the checkpoint thread runs passes until one finds nothing new
//! (the pass before it reached the log's end), at most [`PASSES`], and then the store thread
//! runs one more between two batches, copying the few frames left if any: as the one writer,
//! it finishes the log for certain, and its next commit starts the WAL over. (A log the
//! checkpoint thread finished is not enough: a write transaction that began during the last
//! pass does not start it over, and every later one's frames come after it.)
//!
//! Whoever finishes the log pays the database's fsync, and that fsync writes every page the
//! passes copied: 45–55 ms every ~3 s at 3,000 msgs/s once the database had grown, all
//! requests waiting when the store thread paid it (docs/performance.md, "What stalled the long
//! run"). Syncing on the checkpoint thread instead moved the wait into the commits, whose WAL
//! syncs queued behind those writes. So after each pass the checkpoint thread writes the
//! copied pages out in slices of [`WRITEBACK_SLICE`] bytes, each written and waited for
//! before the next (`sync_file_range`): a commit's sync waits behind one slice at most, and
//! the fsync that finishes the log finds little left to write. Should the checkpoint thread
//! fall behind altogether, the store thread checkpoints by itself once the WAL holds
//! `2 × pages` frames, so the WAL stays bounded. A checkpoint that cannot finish at all (a
//! reader in an older snapshot) is tried again after another threshold's worth, never after
//! every commit.
//!
//! `pages = 0` leaves SQLite's own autocheckpoint in charge (the behaviour before), so the two
//! can be measured side by side (`serve --checkpoint-pages 0`). Metrics: each thread its own
//! histogram (`checkpoint_seconds` the checkpoint thread's, `store_thread_checkpoint_seconds`
//! the store thread's), as every metrics block has one writer.

use std::cell::Cell;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use rusqlite::Connection;

use super::writeback::{Writeback, WRITEBACK_SLICE};
use super::{schema, SqliteConfig};
use crate::store::{StoreError, StoreMetrics};

/// Passes of one background checkpoint at most: the bulk copy, then what commits added
/// meanwhile, each shorter than the one before. At rates where commits come every few
/// milliseconds a pass rarely finds none during it; after these the store thread copies what
/// is left, a few dozen frames.
const PASSES: usize = 4;

/// The checkpoint thread's state, as the store thread reads it between batches.
const IDLE: u8 = 0;
const RUNNING: u8 = 1;
/// Its checkpoint ended: the store thread finishes the log between two batches, copying what
/// commits added meanwhile (often nothing), so that its next commit starts the log over.
const FINISH_HERE: u8 = 2;

thread_local! {
    /// Frames in the WAL after the last commit on this thread's connection: SQLite calls the
    /// WAL hook on the committing thread, and a store thread owns exactly one connection.
    static WAL_FRAMES: Cell<i64> = const { Cell::new(0) };
}

fn note_wal_frames(_wal: &rusqlite::hooks::Wal, frames: std::ffi::c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.with(|count| count.set(i64::from(frames)));
    Ok(())
}

/// One PASSIVE checkpoint on `conn`: the log's frames and how many of them are now copied,
/// or `None` if another connection's checkpoint is running (SQLite answers "busy" then).
fn passive(conn: &Connection) -> rusqlite::Result<Option<(i64, i64)>> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        let busy: i64 = row.get(0)?;
        Ok((busy == 0).then_some((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?)))
    })
}

/// When the store thread checkpoints by itself: once the WAL holds `pages` frames, and after
/// a checkpoint that could not finish, only after another `pages`.
#[derive(Debug)]
struct Threshold {
    /// Frames in the WAL that make a checkpoint due; 0: never.
    pages: i64,
    /// The WAL's size at which the next one is due.
    due_at: i64,
}

impl Threshold {
    fn new(pages: i64) -> Self {
        Threshold {
            pages,
            due_at: pages,
        }
    }

    /// Whether one is due with `frames` in the WAL.
    fn due(&mut self, frames: i64) -> bool {
        if self.pages == 0 {
            return false;
        }
        if frames < self.pages {
            // The log started over (or never grew): back to the plain threshold.
            self.due_at = self.pages;
        }
        frames >= self.due_at
    }

    /// After one was started with `frames` in a log, `backfilled` of them copied.
    fn done(&mut self, frames: i64, backfilled: i64) {
        self.due_at = if backfilled < frames {
            frames + self.pages
        } else {
            self.pages
        };
    }
}

/// The checkpoint thread's side: the store thread's handle on it.
#[derive(Debug)]
struct Background {
    /// Wakes the checkpoint thread; holds at most one wake-up.
    wake: Sender<()>,
    /// [`RUNNING`] from the store thread's wake-up to the checkpoint thread's last pass, then
    /// [`IDLE`] or [`FINISH_HERE`]; the store thread wakes it only when idle.
    state: Arc<AtomicU8>,
    thread: JoinHandle<()>,
}

/// When and where the store's checkpoints run.
#[derive(Debug)]
pub(crate) struct Checkpoints {
    /// When to wake the checkpoint thread (`pages`).
    wake_at: Threshold,
    /// When the store thread checkpoints by itself (`2 × pages`).
    fallback: Threshold,
    background: Option<Background>,
}

impl Checkpoints {
    /// Takes the checkpoints off `conn`'s commits and starts the checkpoint thread on a
    /// connection of its own to the same database (unless `config.checkpoint_pages` is 0).
    /// The count of frames is kept per thread: only the one thread that commits on `conn` may
    /// call [`Checkpoints::run_if_due`].
    pub(crate) fn install(
        conn: &Connection,
        config: &SqliteConfig,
    ) -> Result<Checkpoints, StoreError> {
        let pages = i64::from(config.checkpoint_pages);
        let mut checkpoints = Checkpoints {
            wake_at: Threshold::new(pages),
            fallback: Threshold::new(pages * 2),
            background: None,
        };
        if pages == 0 {
            return Ok(checkpoints);
        }
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        // Replaces the autocheckpoint's own hook as well.
        conn.wal_hook(Some(note_wal_frames));
        // PASSIVE never calls the busy handler: the timeout only bounds opening.
        let checkpointer = Checkpointer {
            conn: schema::open_connection(
                &config.database_path(),
                config.synchronous,
                config.busy_timeout,
            )?,
            writeback: Writeback::open(&config.database_path()).map_err(|e| {
                StoreError::OpenDatabaseFile {
                    path: config.database_path(),
                    detail: e.to_string().into(),
                }
            })?,
            state: Arc::new(AtomicU8::new(IDLE)),
            metrics: config.metrics.clone(),
            #[cfg(test)]
            gate: config.checkpoint_gate.clone(),
        };
        let (wake, woken) = crossbeam_channel::bounded(1);
        let state = checkpointer.state.clone();
        let thread = std::thread::Builder::new()
            .name("store-ckpt".into())
            .spawn(move || checkpointer.run(&woken))
            .map_err(|e| StoreError::ThreadSpawn {
                detail: format!("the WAL checkpoint thread: {e}").into(),
            })?;
        checkpoints.background = Some(Background {
            wake,
            state,
            thread,
        });
        Ok(checkpoints)
    }

    /// Between batches on the store thread: wakes the checkpoint thread once the WAL holds
    /// `pages` frames, copies what its checkpoint left, and checkpoints whole only if the log
    /// has grown to twice the threshold without being finished. A failure is logged and tried
    /// again after the next threshold's worth.
    pub(crate) fn run_if_due(&mut self, conn: &Connection, metrics: &StoreMetrics) {
        let frames = WAL_FRAMES.with(Cell::get);
        if let Some(background) = &self.background {
            match background.state.load(Ordering::Acquire) {
                FINISH_HERE => {
                    background.state.store(IDLE, Ordering::Release);
                    self.checkpoint_here(conn, metrics, frames);
                    return;
                }
                IDLE if self.wake_at.due(frames) => {
                    background.state.store(RUNNING, Ordering::Release);
                    match background.wake.try_send(()) {
                        // Again only after another threshold's worth, should the log not
                        // start over.
                        Ok(()) => self.wake_at.done(frames, 0),
                        Err(TrySendError::Full(())) => {}
                        Err(TrySendError::Disconnected(())) => {
                            tracing::error!(
                                "the WAL checkpoint thread has gone; checkpointing here"
                            );
                            self.background = None;
                        }
                    }
                }
                _ => {}
            }
        }
        if self.fallback.due(frames) {
            self.checkpoint_here(conn, metrics, frames);
        }
    }

    /// A PASSIVE checkpoint on the store thread's own connection: it finishes the log.
    fn checkpoint_here(&mut self, conn: &Connection, metrics: &StoreMetrics, frames: i64) {
        let started = Instant::now();
        let result = passive(conn);
        let took = started.elapsed();
        metrics
            .store_thread_checkpoint_seconds
            .observe_duration(took);
        tracing::debug!(frames, ?result, ?took, "store thread checkpoint");
        match result {
            Ok(Some((log, backfilled))) => {
                self.fallback.done(log, backfilled);
                WAL_FRAMES.with(|count| count.set(log));
            }
            // The checkpoint thread is copying: tried again after the next batch.
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, frames, "WAL checkpoint failed; trying again later");
                self.fallback.done(frames, 0);
            }
        }
    }

    /// Stops the checkpoint thread (after the pass it may be in) and waits for it.
    pub(crate) fn stop(&mut self) {
        if let Some(Background { wake, thread, .. }) = self.background.take() {
            drop(wake);
            if thread.join().is_err() {
                tracing::error!("the WAL checkpoint thread panicked");
            }
        }
    }
}

/// Tests hold the checkpoint thread with this before each checkpoint: it sends on the first
/// channel, then waits for the second.
#[cfg(test)]
pub(crate) type Gate = (Sender<()>, Receiver<()>);

/// The checkpoint thread's own state.
struct Checkpointer {
    /// Its own connection: a checkpoint on it takes no lock the store thread's commits need.
    conn: Connection,
    /// Writes the pages each pass copied out, slice by slice.
    writeback: Writeback,
    state: Arc<AtomicU8>,
    metrics: Arc<StoreMetrics>,
    #[cfg(test)]
    gate: Option<Gate>,
}

impl Checkpointer {
    /// Each wake-up, PASSIVE passes until one finds nothing new to copy or [`PASSES`] have
    /// run, writing out what each copied; then tells the store thread whether frames were
    /// left. Returns when the store thread hangs up.
    fn run(self, woken: &Receiver<()>) {
        while woken.recv().is_ok() {
            #[cfg(test)]
            if let Some((entered, go)) = &self.gate {
                let _ = entered.send(());
                let _ = go.recv();
            }
            let started = Instant::now();
            let state = self.checkpoint();
            self.metrics
                .checkpoint_seconds
                .observe_duration(started.elapsed());
            self.state.store(state, Ordering::Release);
        }
    }

    /// One background checkpoint: [`FINISH_HERE`] once the passes are done, or [`IDLE`] if
    /// another connection's checkpoint is running (the store thread's, which finishes the log)
    /// or the checkpoint failed.
    ///
    /// Even when the last pass reached the log's end, the store thread finishes: a write
    /// transaction that began during that pass does not start the log over, nor does any
    /// after it (their frames come after the copied ones), so the log would grow to the
    /// fallback. The store thread's own pass, between two batches, leaves nothing behind.
    fn checkpoint(&self) -> u8 {
        // The log's size at the last pass's start: a pass that finds the same size found no
        // commit since then, so that pass reached the log's end and SQLite synced there.
        let mut copied_before = None;
        for _ in 0..PASSES {
            let pass_started = Instant::now();
            let result = passive(&self.conn);
            tracing::debug!(?result, took = ?pass_started.elapsed(), "checkpoint thread pass");
            match result {
                // Or fewer: the log started over after a pass that finished it.
                Ok(Some((log, _))) if copied_before.is_some_and(|before| log <= before) => break,
                Ok(Some((log, backfilled))) if backfilled >= log => {
                    copied_before = Some(log);
                    self.write_out();
                }
                // A reader in an older snapshot holds frames back: the store thread tries.
                Ok(Some(_)) => break,
                Ok(None) => return IDLE,
                Err(error) => {
                    tracing::warn!(%error, "WAL checkpoint failed; trying again later");
                    return IDLE;
                }
            }
        }
        FINISH_HERE
    }

    /// Writes out the pages the last pass copied into the database file, a slice at a time.
    /// A failure costs only speed (the fsync that finishes the log writes them): logged.
    fn write_out(&self) {
        let started = Instant::now();
        match self.writeback.write_out() {
            Ok(slices) => {
                let took = started.elapsed();
                self.metrics
                    .checkpoint_writeback_seconds
                    .observe_duration(took);
                tracing::debug!(
                    slices,
                    slice = WRITEBACK_SLICE,
                    ?took,
                    "checkpoint writeback"
                );
            }
            Err(error) => tracing::warn!(%error, "writing the checkpoint's pages out failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_once_per_threshold_and_not_after_every_commit_when_a_checkpoint_cannot_finish() {
        let mut c = Threshold::new(100);
        assert!(!c.due(99));
        assert!(c.due(100));
        c.done(100, 100);
        // The log started over after the finished checkpoint.
        assert!(!c.due(12));
        assert!(c.due(150));
        // A reader held the log: 150 frames, 40 copied. Not again until 250.
        c.done(150, 40);
        assert!(!c.due(160));
        assert!(!c.due(249));
        assert!(c.due(250));
        let mut off = Threshold::new(0);
        assert!(!off.due(1_000_000));
    }
}
