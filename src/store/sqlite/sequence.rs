//! The last sequence number of recently written inboxes, kept by the store thread so that an
//! append numbers its inbox entries without reading each inbox's end back.
//!
//! Only valid for what this connection committed plus the open transaction: the writer forgets
//! everything when a transaction rolls back, and when another process committed to the file
//! since this connection's last transaction (SQLite's `PRAGMA data_version` changed). Two
//! processes share the file while a restart hands the listeners over (README, "Operations"):
//! each writes under `BEGIN IMMEDIATE`, so the check at the start of a transaction sees every
//! commit of the other that could have moved an inbox's end. The purge moves numbers from deleted entries into `inboxes.last_seq`
//! without changing any inbox's last number, so it needs no forgetting. Bounded: when full, it
//! starts again empty, and the next append of each inbox reads its last number from the
//! database once.

use std::collections::HashMap;

use rusqlite::Connection;

use super::execute::last_seq;
use crate::store::StoreError;

/// Inboxes remembered at most (about 5 MB of keys and numbers).
const CAPACITY: usize = 65_536;

#[derive(Debug, Default)]
pub(crate) struct InboxSequences {
    last: HashMap<Box<str>, u64>,
    /// `PRAGMA data_version` as of the start of the last transaction.
    data_version: Option<i64>,
}

impl InboxSequences {
    /// At the start of a write transaction (the write lock held): forgets everything if
    /// another connection committed since the last one began.
    pub(crate) fn begin(&mut self, conn: &Connection) -> Result<(), StoreError> {
        let version: i64 = conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |row| row.get(0))?;
        if self.data_version != Some(version) {
            self.last.clear();
            self.data_version = Some(version);
        }
        Ok(())
    }

    /// The number of `user`'s next entry; counts it as given out.
    pub(crate) fn next(&mut self, conn: &Connection, user: &str) -> Result<u64, StoreError> {
        if let Some(last) = self.last.get_mut(user) {
            *last += 1;
            return Ok(*last);
        }
        let next = last_seq(conn, user)? + 1;
        if self.last.len() >= CAPACITY {
            self.last.clear();
        }
        self.last.insert(user.into(), next);
        Ok(next)
    }

    /// After a rollback: what was counted in the rolled-back transaction never happened.
    pub(crate) fn forget(&mut self) {
        self.last.clear();
    }
}
