//! Retention: deleting old messages and their inbox rows in bounded chunks.
//!
//! A purge is never run inside a request batch: the store thread runs one chunk (its own short
//! transaction) between batches, so a purge of millions of rows never holds acks back for long.
//! Inbox rows go first in the same transaction as their message, so no inbox ever points at a
//! purged message; their sequence numbers are kept in `inboxes.last_seq` first, so an inbox's
//! sequence never starts again below a cursor a device holds.

use rusqlite::{params, Connection};

use crate::logic::snowflake::first_id_at;
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
///
/// Old messages are found by id on the primary key, oldest first, with no index of their own:
/// ids are snowflakes (`logic::snowflake`), and the logic core makes a message's id from the
/// same clock reading as its `time_ms`, never of an earlier millisecond, so every message of an
/// id below `first_id_at(cutoff_ms)` was stored before the cutoff, and those are the front of
/// the table. The `time_ms` test keeps the promise for any other row: nothing stored at or
/// after the cutoff goes, whatever its id. A message whose id ran ahead of its time (a clock
/// stepped back, or more than 4,096 ids in a millisecond) goes when its id's time is past the
/// cutoff, which is also where the logic core's listing stops showing it (its floor is by id).
pub(crate) fn purge_chunk(conn: &Connection, cutoff_ms: u64) -> Result<usize, StoreError> {
    let cutoff = i64::try_from(cutoff_ms).unwrap_or(i64::MAX);
    let below = i64::try_from(first_id_at(cutoff_ms)).unwrap_or(i64::MAX);
    let ids: Vec<i64> = conn
        .prepare_cached(
            "SELECT id FROM messages WHERE id < ?1 AND time_ms < ?2 ORDER BY id LIMIT ?3",
        )?
        .query_map(params![below, cutoff, PURGE_CHUNK as i64], |row| row.get(0))?
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::logic::snowflake::EPOCH_UNIX_MS;
    use crate::store::sqlite::schema::{migrate, open_connection};
    use crate::store::sqlite::Synchronous;

    fn open(dir: &std::path::Path) -> Connection {
        let mut conn =
            open_connection(&dir.join("t.db"), Synchronous::Normal, Duration::ZERO).unwrap();
        migrate(&mut conn).unwrap();
        conn
    }

    fn store(conn: &Connection, id: u64, time_ms: u64) {
        conn.execute(
            "INSERT INTO messages VALUES (?1, ?2, 'a', 0, 'b', NULL, ?1, x'00')",
            params![id as i64, time_ms as i64],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO inbox (user, seq, msg_id) VALUES ('b', ?1, ?1)",
            [id as i64],
        )
        .unwrap();
    }

    fn ids(conn: &Connection, sql: &str) -> Vec<u64> {
        let mut stmt = conn.prepare(sql).unwrap();
        let rows = stmt.query_map([], |r| r.get::<_, i64>(0)).unwrap();
        rows.map(|id| id.unwrap() as u64).collect()
    }

    #[test]
    fn old_messages_are_found_by_id_and_nothing_newer_than_the_cutoff_goes() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(dir.path());
        let cutoff = EPOCH_UNIX_MS + 1_000_000;
        // Ids made before the cutoff, of messages stored before it: the purge's.
        let old = [first_id_at(cutoff - 500), first_id_at(cutoff - 1) + 7];
        // Stored after the cutoff: its id's time is later too.
        let new = first_id_at(cutoff) + 3;
        // An id below the cutoff's with a time after it (not a snowflake of this clock):
        // kept, the time decides.
        let odd = 5;
        // An id that ran ahead of its time (a clock stepped back): kept until its id's time
        // is past the cutoff.
        let ahead = first_id_at(cutoff + 60_000);
        store(&conn, old[0], cutoff - 500);
        store(&conn, old[1], cutoff - 1);
        store(&conn, new, cutoff);
        store(&conn, odd, cutoff + 10);
        store(&conn, ahead, cutoff - 2);
        assert_eq!(purge_chunk(&conn, cutoff).unwrap(), 2);
        let left = vec![odd, new, ahead];
        assert_eq!(ids(&conn, "SELECT id FROM messages ORDER BY id"), left);
        assert_eq!(ids(&conn, "SELECT msg_id FROM inbox ORDER BY msg_id"), left);
        let last: i64 = conn
            .query_row("SELECT last_seq FROM inboxes WHERE user = 'b'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(last as u64, old[1], "the deleted entries' numbers are kept");
        assert_eq!(purge_chunk(&conn, cutoff).unwrap(), 0);
        assert_eq!(purge_chunk(&conn, cutoff + 60_001).unwrap(), 3);
    }

    #[test]
    fn the_purge_reads_a_range_of_the_primary_key_and_the_time_index_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(dir.path());
        let plan: Vec<String> = {
            let mut stmt = conn
                .prepare(
                    "EXPLAIN QUERY PLAN
                     SELECT id FROM messages WHERE id < 1 AND time_ms < 1 ORDER BY id LIMIT 1",
                )
                .unwrap();
            let rows = stmt.query_map([], |r| r.get::<_, String>(3)).unwrap();
            rows.map(Result::unwrap).collect()
        };
        assert_eq!(
            plan,
            ["SEARCH messages USING INTEGER PRIMARY KEY (rowid<?)"],
            "a range from the oldest id, not a scan of every message each minute"
        );
        let indexes = ids(
            &conn,
            "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'messages'
                 AND sql IS NOT NULL",
        );
        assert_eq!(indexes, [0], "messages has no index but its unique key's");
    }
}
