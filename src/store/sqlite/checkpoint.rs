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
//! frame copied. Commits made during the bulk copy are left in the log: the checkpoint thread
//! runs a second pass for them (enough when no commit came during it, as at low rates), and
//! if that still leaves frames, it says so and the store thread copies the few left between
//! two batches: as the one writer, it finishes the log, and the next commit starts the WAL
//! over. That copy is a few dozen pages, but its cost is mostly the database's fsync, which
//! can take as long as a whole checkpoint's on a busy disk (docs/performance.md, "The
//! checkpoint thread"): a large `pages` makes it rare.
//!
//! Known flaw (docs/performance.md, "What stalled the long run"): a PASSIVE pass counts only
//! the frames the log held when it began and answers "all copied" even when commits came
//! during it (SQLite then leaves the database unsynced). At 3,000 msgs/s one always does, so
//! the checkpoint thread takes an unfinished log for a finished one, the log does not start
//! over, and at `2 × pages` the store thread's fallback copies the newer half and fsyncs the
//! database between two batches: 45–55 ms every ~3 s once the database has grown. A fix that
//! syncs on the checkpoint thread and always hands the tail to the store thread (branch
//! `s9-stall-fix-attempt`) removed those waits but made commits queue behind its syncs, and the
//! push's p99 was worse in three runs of three; it is not in this build. Should the checkpoint
//! thread fall behind altogether, the store thread checkpoints by itself once the WAL holds
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

use super::{schema, SqliteConfig};
use crate::store::{StoreError, StoreMetrics};

/// Passes of one background checkpoint at most: the bulk copy, then what commits added
/// meanwhile. More would rarely finish at rates where commits come every few milliseconds,
/// and each costs an fsync of the database file.
const PASSES: usize = 2;

/// The checkpoint thread's state, as the store thread reads it between batches.
const IDLE: u8 = 0;
const RUNNING: u8 = 1;
/// Its last checkpoint left frames that commits added meanwhile: the store thread copies them.
const LEFT_UNFINISHED: u8 = 2;

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
    /// [`IDLE`] or [`LEFT_UNFINISHED`]; the store thread wakes it only when idle.
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
                LEFT_UNFINISHED => {
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
    state: Arc<AtomicU8>,
    metrics: Arc<StoreMetrics>,
    #[cfg(test)]
    gate: Option<Gate>,
}

impl Checkpointer {
    /// Each wake-up, PASSIVE passes until one finds the log finished (no commit during it) or
    /// [`PASSES`] have run; then tells the store thread whether frames were left. Returns
    /// when the store thread hangs up.
    fn run(self, woken: &Receiver<()>) {
        while woken.recv().is_ok() {
            #[cfg(test)]
            if let Some((entered, go)) = &self.gate {
                let _ = entered.send(());
                let _ = go.recv();
            }
            let started = Instant::now();
            let mut state = IDLE;
            for _ in 0..PASSES {
                let pass_started = Instant::now();
                let result = passive(&self.conn);
                tracing::debug!(?result, took = ?pass_started.elapsed(), "checkpoint thread pass");
                state = match result {
                    Ok(Some((log, backfilled))) if backfilled >= log => IDLE,
                    Ok(Some(_)) => LEFT_UNFINISHED,
                    // The store thread is checkpointing by itself, and finishes the log.
                    Ok(None) => IDLE,
                    Err(error) => {
                        tracing::warn!(%error, "WAL checkpoint failed; trying again later");
                        IDLE
                    }
                };
                if state == IDLE {
                    break;
                }
            }
            self.metrics
                .checkpoint_seconds
                .observe_duration(started.elapsed());
            self.state.store(state, Ordering::Release);
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
