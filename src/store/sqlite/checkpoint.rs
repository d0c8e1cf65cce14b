//! WAL checkpoints off the commit path: the store thread copies the WAL back into the
//! database after a batch's completions have gone out, not inside the COMMIT that happens
//! to cross SQLite's threshold.
//!
//! SQLite's own `wal_autocheckpoint` runs the checkpoint inside the commit that crosses 1,000
//! pages: that batch's acks wait for it (15.5 % of the store thread's time in a 30-minute run,
//! docs/performance.md "Long runs"), and at 3,000 messages/s it ran several times a second,
//! writing the same hot pages (the inboxes' tails, the messages' tail) back each time. Here
//! the writer's connection has `wal_autocheckpoint = 0`; a WAL hook records how many frames
//! the log holds after each commit, and [`Checkpoints::run_if_due`] runs a PASSIVE checkpoint
//! on the store thread between batches once it holds `pages` (requests arriving meanwhile
//! wait in the queue and go into the next batch). The store thread is the only writer, so
//! the checkpoint finishes the whole log and the next commit starts the WAL over from its
//! beginning. A checkpoint that cannot finish (a reader still in an older snapshot) is tried
//! again only after another `pages` frames, never after every commit.
//!
//! `pages = 0` leaves SQLite's own autocheckpoint in charge (the behaviour before), so the two
//! can be measured side by side (`serve --checkpoint-pages 0`).

use std::cell::Cell;
use std::time::Instant;

use rusqlite::Connection;

use crate::store::StoreMetrics;

thread_local! {
    /// Frames in the WAL after the last commit on this thread's connection: SQLite calls the
    /// WAL hook on the committing thread, and a store thread owns exactly one connection.
    static WAL_FRAMES: Cell<i64> = const { Cell::new(0) };
}

fn note_wal_frames(_wal: &rusqlite::hooks::Wal, frames: std::ffi::c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.with(|count| count.set(i64::from(frames)));
    Ok(())
}

/// When the store thread checkpoints.
#[derive(Debug)]
pub(crate) struct Checkpoints {
    /// Frames in the WAL that make a checkpoint due; 0: SQLite's autocheckpoint instead.
    pages: i64,
    /// The WAL's size at which the next checkpoint is due.
    due_at: i64,
}

impl Checkpoints {
    /// Takes the checkpoints off `conn`'s commits (unless `pages` is 0). The count of frames
    /// is kept per thread: only the one thread that commits on `conn` may call
    /// [`Checkpoints::run_if_due`].
    pub(crate) fn install(conn: &Connection, pages: u32) -> rusqlite::Result<Checkpoints> {
        let pages = i64::from(pages);
        if pages > 0 {
            conn.pragma_update(None, "wal_autocheckpoint", 0)?;
            // Replaces the autocheckpoint's own hook as well.
            conn.wal_hook(Some(note_wal_frames));
        }
        Ok(Checkpoints {
            pages,
            due_at: pages,
        })
    }

    /// Whether a checkpoint is due with `frames` in the WAL.
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

    /// After a checkpoint of a log of `frames`, `backfilled` of them copied.
    fn done(&mut self, frames: i64, backfilled: i64) {
        self.due_at = if backfilled < frames {
            frames + self.pages
        } else {
            self.pages
        };
    }

    /// Runs a PASSIVE checkpoint on `conn` if the WAL has grown to the threshold since the
    /// last one. A failure is logged and tried again after the next threshold's worth.
    pub(crate) fn run_if_due(&mut self, conn: &Connection, metrics: &StoreMetrics) {
        let frames = WAL_FRAMES.with(Cell::get);
        if !self.due(frames) {
            return;
        }
        let started = Instant::now();
        let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        });
        metrics
            .checkpoint_seconds
            .observe_duration(started.elapsed());
        match result {
            Ok((log, backfilled)) => {
                self.done(log, backfilled);
                WAL_FRAMES.with(|count| count.set(log));
            }
            Err(error) => {
                tracing::warn!(%error, frames, "WAL checkpoint failed; trying again later");
                self.done(frames, 0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_once_per_threshold_and_not_after_every_commit_when_a_checkpoint_cannot_finish() {
        let mut c = Checkpoints {
            pages: 100,
            due_at: 100,
        };
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
        let mut off = Checkpoints {
            pages: 0,
            due_at: 0,
        };
        assert!(!off.due(1_000_000));
    }
}
