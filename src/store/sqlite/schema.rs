//! Opening the database: PRAGMAs, the schema and its migrations, and the start-up read of groups.
//!
//! The schema version lives in `schema_version`; each migration runs in its own transaction and
//! bumps it, so a crash mid-migration leaves the previous version intact. A database newer than
//! this build is refused, never written.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::Synchronous;
use crate::store::GroupRecord;
use crate::store::StoreError;

/// Migrations in order; `MIGRATIONS[n]` takes the schema from version n to n + 1.
const MIGRATIONS: &[&str] = &[
    // 1: messages are stored once; inboxes, acks and group members point at them by id.
    "CREATE TABLE messages (
         id            INTEGER PRIMARY KEY,
         time_ms       INTEGER NOT NULL,
         from_user     TEXT    NOT NULL,
         target_kind   INTEGER NOT NULL, -- 0 direct (target_user), 1 group (target_group)
         target_user   TEXT,
         target_group  INTEGER,
         client_msg_id INTEGER NOT NULL,
         body          BLOB    NOT NULL,
         UNIQUE (from_user, client_msg_id)
     );
     CREATE INDEX messages_by_time ON messages (time_ms);
     CREATE TABLE inbox (
         user   TEXT    NOT NULL,
         msg_id INTEGER NOT NULL,
         PRIMARY KEY (user, msg_id)
     ) WITHOUT ROWID;
     CREATE INDEX inbox_by_msg ON inbox (msg_id);
     CREATE TABLE acks (
         user   TEXT    NOT NULL,
         device TEXT    NOT NULL,
         upto   INTEGER NOT NULL,
         PRIMARY KEY (user, device)
     ) WITHOUT ROWID;
     CREATE TABLE groups (
         id    INTEGER PRIMARY KEY,
         name  TEXT NOT NULL,
         owner TEXT NOT NULL
     );
     CREATE TABLE group_members (
         group_id INTEGER NOT NULL,
         user     TEXT    NOT NULL,
         PRIMARY KEY (group_id, user)
     ) WITHOUT ROWID;",
    // 2: every inbox entry gets a number in its inbox's own sequence (`inbox.seq`), assigned
    // in the transaction that adds it; `inboxes.last_seq` keeps the numbers of purged entries
    // so a sequence never starts again. Sync positions (`acks.upto`) count in it, not
    // in msg_ids: with more than one writer a lower id can commit after a higher one, and a
    // position by id would pass over it for good. Existing entries are numbered in id order,
    // which is the order one writer committed them in, and each position becomes the sequence
    // of the last entry it covered.
    "CREATE TABLE inboxes (
         user     TEXT    PRIMARY KEY,
         last_seq INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE inbox_entries (
         user   TEXT    NOT NULL,
         seq    INTEGER NOT NULL,
         msg_id INTEGER NOT NULL,
         PRIMARY KEY (user, seq)
     ) WITHOUT ROWID;
     INSERT INTO inbox_entries (user, seq, msg_id)
         SELECT user, row_number() OVER (PARTITION BY user ORDER BY msg_id), msg_id FROM inbox;
     INSERT INTO inboxes (user, last_seq)
         SELECT user, max(seq) FROM inbox_entries GROUP BY user;
     UPDATE acks SET upto = coalesce(
         (SELECT max(e.seq) FROM inbox_entries e
          WHERE e.user = acks.user AND e.msg_id <= acks.upto), 0);
     DROP TABLE inbox;
     ALTER TABLE inbox_entries RENAME TO inbox;
     -- Fetch's access check (msg_id, user) and the purge's delete by msg_id.
     CREATE UNIQUE INDEX inbox_by_msg ON inbox (msg_id, user);",
    // 3: the purge finds old messages by id on the primary key (ids are snowflakes: an id's
    // time is never before its message's time_ms, `purge.rs`), so the time index, one more
    // B-tree written per message and read by nothing else, goes.
    "DROP INDEX messages_by_time;",
];

/// The version this build writes.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Opens (creating if needed) the database at `path` with the store's PRAGMAs.
pub(crate) fn open_connection(
    path: &Path,
    synchronous: Synchronous,
    busy_timeout: Duration,
) -> Result<Connection, StoreError> {
    // Before SQLite's first use in the process, or never (page_cache.rs).
    super::page_cache::install();
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(busy_timeout)?;
    // journal_mode answers with the mode in force; anything but "wal" (e.g. a filesystem
    // without shared memory) would silently lose the one-writer-many-readers guarantee.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::WalRefused { mode: mode.into() });
    }
    let sync = match synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    // cache_size: SQLite's default page cache is 2 MB, and once the inbox and message
    // indexes outgrow it every append reads pages back from the OS (measured with
    // bench/src/bin/logic_throughput: store CPU per message rose from 7 to 19 µs between 20k
    // and 400k messages). 64 MiB is the bound this costs the process.
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {sync}; PRAGMA foreign_keys = OFF; PRAGMA cache_size = -65536;"
    ))?;
    // One cached statement per distinct SQL text the store runs, with room to spare.
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Brings the schema up to [`SCHEMA_VERSION`].
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
    let found: Option<i64> =
        conn.query_row("SELECT max(version) FROM schema_version", [], |row| {
            row.get(0)
        })?;
    let found = found.unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    for (from, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.execute("DELETE FROM schema_version", [])?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            [from as i64 + 1],
        )?;
        tx.commit()?;
    }
    Ok(())
}

/// Every group with its members (sorted), for the logic core's membership cache.
pub(crate) fn read_groups(conn: &Connection) -> Result<Vec<GroupRecord>, StoreError> {
    let mut groups: Vec<GroupRecord> = Vec::new();
    let mut stmt = conn.prepare("SELECT id, name, owner FROM groups ORDER BY id")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        groups.push(GroupRecord {
            id: row.get::<_, i64>(0)? as u64,
            name: row.get::<_, String>(1)?.into(),
            owner: row.get::<_, String>(2)?.into(),
            members: Vec::new(),
        });
    }
    let mut stmt =
        conn.prepare("SELECT group_id, user FROM group_members ORDER BY group_id, user")?;
    let mut rows = stmt.query([])?;
    // Both queries are ordered by group id, so members are matched by walking forward.
    let mut at = 0;
    while let Some(row) = rows.next()? {
        let group_id = row.get::<_, i64>(0)? as u64;
        while at < groups.len() && groups[at].id < group_id {
            at += 1;
        }
        if let Some(group) = groups.get_mut(at).filter(|g| g.id == group_id) {
            group.members.push(row.get::<_, String>(1)?.into());
        }
    }
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> Connection {
        let mut conn = open_connection(
            &dir.join("t.db"),
            Synchronous::Normal,
            Duration::from_secs(1),
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        conn
    }

    /// The commits' sync is `fdatasync` only if libsqlite3-sys's build script saw this flag
    /// (`.cargo/config.toml`'s `[env]`, which cargo hands to this crate's compilation too): a
    /// build from outside the workspace, or without that file, would quietly go back to fsync.
    #[test]
    fn the_bundled_sqlite_is_built_with_fdatasync() {
        let flags = option_env!("LIBSQLITE3_FLAGS").unwrap_or_default();
        assert!(
            flags
                .split_whitespace()
                .any(|flag| flag == "-DHAVE_FDATASYNC=1" || flag == "-DHAVE_FDATASYNC"),
            "LIBSQLITE3_FLAGS was {flags:?} at build time"
        );
    }

    #[test]
    fn fresh_database_is_wal_at_the_current_version() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(dir.path());
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let version: i64 = conn
            .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[test]
    fn migrating_twice_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path()));
        let conn = open(dir.path());
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM schema_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 1);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(dir.path());
        conn.execute("UPDATE schema_version SET version = 999", [])
            .unwrap();
        drop(conn);
        let mut conn =
            open_connection(&dir.path().join("t.db"), Synchronous::Full, Duration::ZERO).unwrap();
        assert_eq!(
            migrate(&mut conn),
            Err(StoreError::SchemaTooNew {
                found: 999,
                known: SCHEMA_VERSION
            })
        );
    }

    #[test]
    fn groups_are_read_with_their_members() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(dir.path());
        conn.execute_batch(
            "INSERT INTO groups VALUES (7, 'seven', 'ann'), (3, 'three', 'bob'), (9, 'empty', 'cy');
             INSERT INTO group_members VALUES (7, 'zed'), (3, 'bob'), (7, 'ann'), (5, 'orphan');",
        )
        .unwrap();
        let groups = read_groups(&conn).unwrap();
        let summary: Vec<(u64, Vec<&str>)> = groups
            .iter()
            .map(|g| (g.id, g.members.iter().map(|m| &**m).collect()))
            .collect();
        assert_eq!(
            summary,
            vec![(3, vec!["bob"]), (7, vec!["ann", "zed"]), (9, vec![])]
        );
        assert_eq!(&*groups[1].owner, "ann");
    }

    #[test]
    fn a_version_1_database_gets_sequences_in_id_order_and_positions_in_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut conn = open_connection(&path, Synchronous::Normal, Duration::ZERO).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_version (version INTEGER NOT NULL);
             INSERT INTO schema_version VALUES (1);
             INSERT INTO inbox VALUES ('bob', 30), ('bob', 10), ('bob', 20), ('ann', 20);
             INSERT INTO acks VALUES ('bob', 'phone', 20), ('bob', 'old', 5),
                                     ('ann', 'phone', 9223372036854775807);",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let rows = |sql: &str| -> Vec<(String, i64, i64)> {
            let mut stmt = conn.prepare(sql).unwrap();
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)));
            rows.unwrap().collect::<Result<_, _>>().unwrap()
        };
        let entries = rows("SELECT user, seq, msg_id FROM inbox ORDER BY user, seq");
        let want = [
            ("ann", 1, 20),
            ("bob", 1, 10),
            ("bob", 2, 20),
            ("bob", 3, 30),
        ];
        let want: Vec<(String, i64, i64)> =
            want.iter().map(|&(u, s, m)| (u.into(), s, m)).collect();
        assert_eq!(entries, want);
        // Each position becomes the sequence of the last entry it covered.
        let positions: Vec<(String, String, i64)> = {
            let mut stmt = conn
                .prepare("SELECT user, device, upto FROM acks ORDER BY user, device")
                .unwrap();
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)));
            rows.unwrap().collect::<Result<_, _>>().unwrap()
        };
        let want = [("ann", "phone", 1), ("bob", "old", 0), ("bob", "phone", 2)];
        let want: Vec<(String, String, i64)> = want
            .iter()
            .map(|&(u, d, p)| (u.into(), d.into(), p))
            .collect();
        assert_eq!(positions, want);
        let last: i64 = conn
            .query_row("SELECT last_seq FROM inboxes WHERE user = 'bob'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(last, 3, "the next entry of bob's inbox is 4");
    }

    #[test]
    fn a_version_2_database_loses_the_time_index_and_keeps_every_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut conn = open_connection(&path, Synchronous::Normal, Duration::ZERO).unwrap();
        conn.execute_batch(&format!(
            "{}; {}; CREATE TABLE schema_version (version INTEGER NOT NULL);
             INSERT INTO schema_version VALUES (2);
             INSERT INTO messages VALUES (7, 70, 'ann', 0, 'bob', NULL, 1, x'01');
             INSERT INTO inbox VALUES ('bob', 1, 7), ('ann', 1, 7);",
            MIGRATIONS[0], MIGRATIONS[1]
        ))
        .unwrap();
        let time_index = "SELECT count(*) FROM sqlite_master WHERE name = 'messages_by_time'";
        let count = |conn: &Connection, sql: &str| -> i64 {
            conn.query_row(sql, [], |r| r.get(0)).unwrap()
        };
        assert_eq!(count(&conn, time_index), 1);
        migrate(&mut conn).unwrap();
        assert_eq!(count(&conn, time_index), 0);
        assert_eq!(count(&conn, "SELECT version FROM schema_version"), 3);
        assert_eq!(
            count(&conn, "SELECT count(*) FROM messages WHERE id = 7"),
            1
        );
        assert_eq!(
            count(&conn, "SELECT count(*) FROM inbox WHERE msg_id = 7"),
            2
        );
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }

    #[test]
    fn a_database_that_refuses_wal_is_not_opened_and_says_so() {
        // An in-memory database answers `PRAGMA journal_mode = WAL` with "memory", as a
        // filesystem without shared memory would answer with something other than "wal".
        let error = open_connection(
            Path::new(":memory:"),
            Synchronous::Full,
            Duration::from_secs(1),
        )
        .expect_err("WAL refused");
        assert_eq!(
            error,
            StoreError::WalRefused {
                mode: "memory".into()
            }
        );
        assert!(error.to_string().contains("WAL"), "{error}");
    }
}
