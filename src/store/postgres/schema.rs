//! The PostgreSQL schema: versioned migrations applied at start, time partitions, and the
//! start-up read of groups.
//!
//! `messages` and `inbox` are partitioned by time (`time_ms`, one partition a day, the same
//! bounds for both), so retention drops a day's partitions whole instead of deleting rows.
//! A unique index over `(from_user, client_msg_id)` must include the partition key to live on
//! the parent, so each partition carries its own (the constraint the dedupe rests on) and the
//! writer looks a key up across partitions before inserting (see `execute.rs`). Per-inbox
//! sequences come from a counter row per inbox (`inboxes.last_seq`), bumped in the
//! transaction that adds the entries: the row lock orders writers of one inbox, so entries
//! become visible in sequence order without gaps, however many writers there are.
//!
//! Migrations run one per transaction under an advisory lock (several nodes may start at once)
//! and bump `schema_version`; a database newer than this build is refused, never written.

use std::collections::{BTreeSet, HashMap};

use tokio_postgres::Client;

use crate::store::{GroupRecord, StoreError};

/// Width of a time partition: one day of `time_ms`. Fixed for the life of a database (the
/// partitions' bounds must tile), so it is not a setting.
pub(crate) const PARTITION_MS: i64 = 24 * 60 * 60 * 1000;

/// Key of the advisory lock that serializes migrations between nodes.
const MIGRATION_LOCK: i64 = 0x5357_4244_0001;

/// Migrations in order; `MIGRATIONS[n]` takes the schema from version n to n + 1.
const MIGRATIONS: &[&str] = &[
    // 1: the whole schema (PostgreSQL started with per-inbox sequences).
    "CREATE TABLE messages (
         id            bigint   NOT NULL,
         time_ms       bigint   NOT NULL,
         from_user     text     NOT NULL,
         target_kind   smallint NOT NULL, -- 0 direct (target_user), 1 group (target_group)
         target_user   text,
         target_group  bigint,
         client_msg_id bigint   NOT NULL,
         body          bytea    NOT NULL
     ) PARTITION BY RANGE (time_ms);
     CREATE INDEX messages_by_id ON messages (id);
     -- No index on (from_user, client_msg_id) here: each partition gets a unique one when it
     -- is created (create_partition), which the lookups use; a second would cost every insert.
     -- One row per inbox entry; time_ms is its message's, so a day's entries go with the day.
     CREATE TABLE inbox (
         user_name text   NOT NULL,
         seq       bigint NOT NULL,
         msg_id    bigint NOT NULL,
         time_ms   bigint NOT NULL
     ) PARTITION BY RANGE (time_ms);
     CREATE INDEX inbox_by_seq ON inbox (user_name, seq) INCLUDE (msg_id);
     CREATE INDEX inbox_by_msg ON inbox (msg_id, user_name);
     -- Each inbox's last sequence number: the counter row writers lock and bump.
     CREATE TABLE inboxes (
         user_name text   PRIMARY KEY,
         last_seq  bigint NOT NULL
     );
     -- Each device's acknowledged position, a sequence of its user's inbox.
     CREATE TABLE positions (
         user_name text   NOT NULL,
         device    text   NOT NULL,
         upto      bigint NOT NULL,
         PRIMARY KEY (user_name, device)
     );
     CREATE TABLE groups (
         id    bigint PRIMARY KEY,
         name  text   NOT NULL,
         owner text   NOT NULL
     );
     CREATE TABLE group_members (
         group_id  bigint NOT NULL,
         user_name text   NOT NULL,
         PRIMARY KEY (group_id, user_name)
     );
     -- Messages older than cutoff_ms are past retention: never listed or fetched, and their
     -- partitions are dropped once wholly below it.
     CREATE TABLE retention (
         one       boolean PRIMARY KEY DEFAULT true CHECK (one),
         cutoff_ms bigint  NOT NULL
     );
     INSERT INTO retention (cutoff_ms) VALUES (0);",
];

/// The version this build writes.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the schema up to [`SCHEMA_VERSION`], one transaction per migration.
pub(crate) async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version bigint NOT NULL)")
        .await?;
    loop {
        let tx = client.transaction().await?;
        tx.query_one("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        let found: Option<i64> = tx
            .query_one("SELECT max(version) FROM schema_version", &[])
            .await?
            .get(0);
        let found = found.unwrap_or(0);
        if found > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                found,
                known: SCHEMA_VERSION,
            });
        }
        if found == SCHEMA_VERSION {
            return Ok(tx.commit().await?);
        }
        tx.batch_execute(MIGRATIONS[found as usize]).await?;
        tx.execute("DELETE FROM schema_version", &[]).await?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&(found + 1)],
        )
        .await?;
        tx.commit().await?;
    }
}

/// The lower bound of the partition holding `time_ms`.
pub(crate) fn partition_of(time_ms: i64) -> i64 {
    time_ms.div_euclid(PARTITION_MS) * PARTITION_MS
}

/// Lower bounds of the partitions that exist (named `messages_p<lower>`).
pub(crate) async fn existing_partitions(client: &Client) -> Result<BTreeSet<i64>, StoreError> {
    let rows = client
        .query(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'messages'::regclass",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            row.get::<_, &str>(0)
                .strip_prefix("messages_p")?
                .parse()
                .ok()
        })
        .collect())
}

/// Creates the day's partitions of `messages` and `inbox` starting at `lower`, if missing
/// (never inside a batch: creating a partition locks its parent, so it is done ahead of time,
/// at start and each maintenance tick, for today and tomorrow; a message outside those days
/// makes its own first). One parent per transaction: a statement that locks both parents in
/// the other order (a query joining them) can then never deadlock with it.
pub(crate) async fn create_partition(client: &Client, lower: i64) -> Result<(), StoreError> {
    let upper = lower + PARTITION_MS;
    let statements = [
        format!(
            "CREATE TABLE IF NOT EXISTS messages_p{lower} PARTITION OF messages
                 FOR VALUES FROM ({lower}) TO ({upper})"
        ),
        format!(
            "CREATE UNIQUE INDEX IF NOT EXISTS messages_p{lower}_key
                 ON messages_p{lower} (from_user, client_msg_id)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS inbox_p{lower} PARTITION OF inbox
                 FOR VALUES FROM ({lower}) TO ({upper})"
        ),
    ];
    for sql in &statements {
        match client.batch_execute(sql).await {
            Ok(()) => {}
            // Another node created it between our look and our CREATE: it exists, as wanted.
            Err(e) if e.code().map(|c| c.code()) == Some("42P07") => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Drops the day's partitions starting at `lower` (wholly past retention): no row-by-row
/// delete, whatever they hold. The inbox's first, so no entry ever points at a dropped
/// message; each in its own transaction, waiting at most a moment for its parent's lock.
pub(crate) async fn drop_partition(client: &Client, lower: i64) -> Result<(), StoreError> {
    for table in ["inbox", "messages"] {
        let sql = format!(
            "BEGIN; SET LOCAL lock_timeout = '2s'; DROP TABLE IF EXISTS {table}_p{lower}; COMMIT;"
        );
        if let Err(e) = client.batch_execute(&sql).await {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(e.into());
        }
    }
    Ok(())
}

/// Every group with its members (sorted), for the logic core's membership cache.
pub(crate) async fn read_groups(client: &Client) -> Result<Vec<GroupRecord>, StoreError> {
    let mut groups: Vec<GroupRecord> = client
        .query("SELECT id, name, owner FROM groups ORDER BY id", &[])
        .await?
        .iter()
        .map(|row| GroupRecord {
            id: row.get::<_, i64>(0) as u64,
            name: row.get::<_, &str>(1).into(),
            owner: row.get::<_, &str>(2).into(),
            members: Vec::new(),
        })
        .collect();
    let at: HashMap<u64, usize> = groups.iter().enumerate().map(|(i, g)| (g.id, i)).collect();
    let members = client
        .query(
            "SELECT group_id, user_name FROM group_members ORDER BY group_id, user_name COLLATE \"C\"",
            &[],
        )
        .await?;
    for row in &members {
        if let Some(&i) = at.get(&(row.get::<_, i64>(0) as u64)) {
            groups[i].members.push(row.get::<_, &str>(1).into());
        }
    }
    Ok(groups)
}
