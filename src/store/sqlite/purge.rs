//! Retention: deleting old messages and their inbox rows in bounded chunks.
//!
//! A purge is never run inside a request batch: the store thread runs one chunk (its own short
//! transaction) between batches, so a purge of millions of rows never holds acks back for long.
//! Inbox rows go first in the same transaction as their message, so no inbox ever points at a
//! purged message; their sequence numbers are kept in `inboxes.last_seq` first, so an inbox's
//! sequence never starts again below a cursor a device holds.

use rusqlite::{params, Connection};

use crate::store::StoreError;
use crate::store::Ticket;

/// Messages deleted per chunk (each with all its inbox rows).
pub(crate) const PURGE_CHUNK: usize = 256;

/// The purge still to do: everything older than `cutoff_ms`, and whom to tell when done.
#[derive(Debug, Default)]
pub(crate) struct PendingPurge {
    cutoff_ms: Option<u64>,
    tickets: Vec<Ticket>,
}

impl PendingPurge {
    /// Adds a purge; overlapping purges merge into the widest one.
    pub(crate) fn schedule(&mut self, older_than_ms: u64, ticket: Option<Ticket>) {
        if older_than_ms > 0 {
            self.cutoff_ms = Some(self.cutoff_ms.unwrap_or(0).max(older_than_ms));
        }
        self.tickets.extend(ticket);
    }

    pub(crate) fn is_pending(&self) -> bool {
        self.cutoff_ms.is_some() || !self.tickets.is_empty()
    }

    pub(crate) fn cutoff_ms(&self) -> Option<u64> {
        self.cutoff_ms
    }

    /// Marks the purge finished and hands back the tickets to complete.
    pub(crate) fn finish(&mut self) -> Vec<Ticket> {
        self.cutoff_ms = None;
        std::mem::take(&mut self.tickets)
    }
}

/// Deletes up to [`PURGE_CHUNK`] of the oldest messages older than `cutoff_ms`, inside the
/// caller's transaction. Returns how many it deleted; fewer than a chunk means done.
pub(crate) fn purge_chunk(conn: &Connection, cutoff_ms: u64) -> Result<usize, StoreError> {
    let cutoff = i64::try_from(cutoff_ms).unwrap_or(i64::MAX);
    let ids: Vec<i64> = conn
        .prepare_cached("SELECT id FROM messages WHERE time_ms < ?1 ORDER BY time_ms LIMIT ?2")?
        .query_map(params![cutoff, PURGE_CHUNK as i64], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    // Each inbox keeps the numbers of the entries deleted here, so that its sequence goes on
    // from them and never hands out a cursor a device already holds.
    let mut keep_seq = conn.prepare_cached(
        "INSERT INTO inboxes (user, last_seq) SELECT user, seq FROM inbox WHERE msg_id = ?1
         ON CONFLICT (user) DO UPDATE SET last_seq = max(last_seq, excluded.last_seq)",
    )?;
    let mut inbox = conn.prepare_cached("DELETE FROM inbox WHERE msg_id = ?1")?;
    let mut message = conn.prepare_cached("DELETE FROM messages WHERE id = ?1")?;
    for &id in &ids {
        keep_seq.execute([id])?;
        inbox.execute([id])?;
        message.execute([id])?;
    }
    Ok(ids.len())
}
