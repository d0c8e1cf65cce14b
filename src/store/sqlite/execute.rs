//! Each request's SQL, run inside the batch's open transaction on the store thread.
//!
//! A request either succeeds or returns a typed error. Each one meets what can fail on its own
//! account (a taken id, an unknown group) before it writes, and writes after that only with
//! statements that cannot fail on a constraint (`INSERT OR IGNORE`), so a failed request leaves
//! nothing behind without a savepoint; should one ever fail after writing, the writer rolls
//! the whole batch back. Statements are cached (`prepare_cached`): the hot path parses no SQL.
//! Never sends a completion itself: completions go out only after the commit.

use rusqlite::{params, CachedStatement, Connection, ErrorCode, OptionalExtension, Row};

use super::sequence::InboxSequences;
use crate::store::StoreError;
use crate::store::{
    AppendOutcome, Completion, GroupRecord, InboxPoint, StoredMessage, Target, Ticket,
};

/// Ids (messages, groups) are SQLite integer keys: they must fit in 63 bits.
fn sql_id(id: u64) -> Result<i64, StoreError> {
    i64::try_from(id).map_err(|_| StoreError::IdOutOfRange { id })
}

/// A sync position or a time: anything above i64::MAX is past every stored id or time.
fn sql_clamped(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The client's idempotency key is opaque: all 64 bits are kept, reinterpreted as signed.
fn sql_key(client_msg_id: u64) -> i64 {
    client_msg_id as i64
}

fn is_constraint(error: &rusqlite::Error, extended: i32) -> bool {
    error.sqlite_error_code() == Some(ErrorCode::ConstraintViolation)
        && super::error::code_of(error) == extended
}

/// An append's statements, taken from rusqlite's statement cache once per batch and held
/// through it: taking one out and putting it back per append (hashing its SQL each time) was
/// 7 % of the store thread's instructions per message (callgrind, docs/performance.md).
pub(crate) struct AppendStatements<'c> {
    message: CachedStatement<'c>,
    /// A 1:1 message's two inbox entries (recipient and sender) in one statement.
    two_entries: CachedStatement<'c>,
    entry: CachedStatement<'c>,
}

impl<'c> AppendStatements<'c> {
    pub(crate) fn prepare(conn: &'c Connection) -> Result<Self, StoreError> {
        Ok(AppendStatements {
            // The UNIQUE(from_user, client_msg_id) check is the dedupe: a resend inserts
            // nothing.
            message: conn.prepare_cached(
                "INSERT INTO messages (id, time_ms, from_user, target_kind, target_user,
                                       target_group, client_msg_id, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (from_user, client_msg_id) DO NOTHING",
            )?,
            // OR IGNORE row by row: a user listed twice gets one entry (the inbox_by_msg key).
            two_entries: conn.prepare_cached(
                "INSERT OR IGNORE INTO inbox (user, seq, msg_id)
                 VALUES (?1, ?2, ?5), (?3, ?4, ?5)",
            )?,
            entry: conn.prepare_cached(
                "INSERT OR IGNORE INTO inbox (user, seq, msg_id) VALUES (?1, ?2, ?3)",
            )?,
        })
    }
}

pub(crate) fn append(
    conn: &Connection,
    statements: &mut AppendStatements<'_>,
    sequences: &mut InboxSequences,
    ticket: Ticket,
    message: &StoredMessage,
    inboxes: &[Box<str>],
) -> Result<Completion, StoreError> {
    let id = sql_id(message.id)?;
    let (kind, target_user, target_group) = match &message.target {
        Target::Direct(user) => (0, Some(&**user), None),
        Target::Group(group) => (1, None, Some(sql_id(*group)?)),
    };
    let inserted = statements
        .message
        .execute(params![
            id,
            sql_clamped(message.time_ms),
            &*message.from,
            kind,
            target_user,
            target_group,
            sql_key(message.client_msg_id),
            &message.body[..],
        ])
        .map_err(|e| {
            if is_constraint(&e, rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY) {
                StoreError::MessageIdTaken { id: message.id }
            } else {
                StoreError::from(e)
            }
        })?;
    if inserted == 0 {
        let (id, time_ms): (i64, i64) = conn
            .prepare_cached(
                "SELECT id, time_ms FROM messages WHERE from_user = ?1 AND client_msg_id = ?2",
            )?
            .query_row(
                params![&*message.from, sql_key(message.client_msg_id)],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )?;
        return Ok(Completion::Appended {
            ticket,
            outcome: AppendOutcome::Duplicate {
                id: id as u64,
                time_ms: time_ms as u64,
            },
        });
    }
    // Each inbox's next sequence number, taken inside this transaction: entries are numbered
    // in the order they commit, whatever their message ids. The store thread remembers each
    // inbox's last number (`InboxSequences`): reading it back in SQL per entry cost the store
    // thread a third more instructions per message, a counter row bumped per entry more than
    // that (callgrind, docs/performance.md). A user listed twice gets one entry (the second
    // insert is ignored) and a gap in its sequence, which no cursor minds.
    let mut entries = inboxes.chunks_exact(2);
    for pair in &mut entries {
        let first = sequences.next(conn, &pair[0])?;
        let second = sequences.next(conn, &pair[1])?;
        statements.two_entries.execute(params![
            &*pair[0],
            sql_clamped(first),
            &*pair[1],
            sql_clamped(second),
            id
        ])?;
    }
    for user in entries.remainder() {
        let seq = sequences.next(conn, user)?;
        statements
            .entry
            .execute(params![&**user, sql_clamped(seq), id])?;
    }
    Ok(Completion::Appended {
        ticket,
        outcome: AppendOutcome::Stored,
    })
}

/// The last sequence `user`'s inbox has given out (0: none yet): its newest entry's, or the
/// newest the purge deleted.
pub(crate) fn last_seq(conn: &Connection, user: &str) -> Result<u64, StoreError> {
    let last: i64 = conn
        .prepare_cached(
            "SELECT max(coalesce((SELECT max(seq) FROM inbox WHERE user = ?1), 0),
                        coalesce((SELECT last_seq FROM inboxes WHERE user = ?1), 0))",
        )?
        .query_row([user], |row| row.get(0))?;
    Ok(last.max(0) as u64)
}

/// The device's acknowledged position, a sequence of `user`'s inbox.
fn acked(conn: &Connection, user: &str, device: &str) -> Result<u64, StoreError> {
    let upto: Option<i64> = conn
        .prepare_cached("SELECT upto FROM acks WHERE user = ?1 AND device = ?2")?
        .query_row(params![user, device], |row| row.get(0))
        .optional()?;
    Ok(upto.unwrap_or(0).max(0) as u64)
}

/// The sequence `point` stands for in `user`'s inbox; a cursor past the last sequence is
/// refused (it never came from this inbox).
fn seq_of(conn: &Connection, user: &str, point: InboxPoint) -> Result<u64, StoreError> {
    match point {
        InboxPoint::Seq(cursor) => {
            let last = last_seq(conn, user)?;
            if cursor > last {
                return Err(StoreError::CursorAhead { cursor, last });
            }
            Ok(cursor)
        }
        InboxPoint::Message(0) => Ok(0),
        InboxPoint::Message(id) => {
            let id = sql_clamped(id);
            let exact: Option<i64> = conn
                .prepare_cached("SELECT seq FROM inbox WHERE msg_id = ?1 AND user = ?2")?
                .query_row(params![id, user], |row| row.get(0))
                .optional()?;
            // Not an entry (purged, or any id): the newest entry with a smaller id. Scanning
            // back from the newest finds it at once for an id past the inbox's end.
            let seq = match exact {
                Some(seq) => Some(seq),
                None => conn
                    .prepare_cached(
                        "SELECT seq FROM inbox WHERE user = ?1 AND msg_id <= ?2
                         ORDER BY seq DESC LIMIT 1",
                    )?
                    .query_row(params![user, id], |row| row.get(0))
                    .optional()?,
            };
            Ok(seq.unwrap_or(0) as u64)
        }
    }
}

pub(crate) fn sync_index(
    conn: &Connection,
    ticket: Ticket,
    (user, device): (&str, &str),
    after: InboxPoint,
    floor_id: u64,
    limit: u32,
) -> Result<Completion, StoreError> {
    let start = seq_of(conn, user, after)?.max(acked(conn, user, device)?);
    let mut stmt = conn.prepare_cached(
        "SELECT seq, msg_id FROM inbox WHERE user = ?1 AND seq > ?2 AND msg_id > ?3
         ORDER BY seq LIMIT ?4",
    )?;
    // One row past the limit tells whether there is more, without a count.
    let mut rows = stmt.query(params![
        user,
        sql_clamped(start),
        sql_clamped(floor_id),
        i64::from(limit) + 1
    ])?;
    let mut ids = Vec::with_capacity((limit as usize).min(1024));
    let mut cursor = start;
    let mut more = false;
    while let Some(row) = rows.next()? {
        if ids.len() == limit as usize {
            more = true;
            break;
        }
        cursor = row.get::<_, i64>(0)? as u64;
        ids.push(row.get::<_, i64>(1)? as u64);
    }
    Ok(Completion::SyncIndex {
        ticket,
        ids,
        more,
        cursor,
    })
}

pub(crate) fn sync_fetch(
    conn: &Connection,
    ticket: Ticket,
    user: &str,
    ids: &[u64],
) -> Result<Completion, StoreError> {
    // Joining through the inbox is the access check: another user's message has no row here.
    let mut stmt = conn.prepare_cached(
        "SELECT m.id, m.time_ms, m.from_user, m.target_kind, m.target_user, m.target_group,
                m.client_msg_id, m.body
         FROM inbox i JOIN messages m ON m.id = i.msg_id
         WHERE i.user = ?1 AND i.msg_id = ?2",
    )?;
    let mut messages = Vec::with_capacity(ids.len().min(1024));
    for &id in ids {
        let Ok(id) = i64::try_from(id) else { continue };
        let found = stmt
            .query_row(params![user, id], |row| Ok(read_message(row)))
            .optional()?;
        if let Some(message) = found {
            messages.push(message?);
        }
    }
    Ok(Completion::SyncFetch { ticket, messages })
}

fn read_message(row: &Row<'_>) -> Result<StoredMessage, StoreError> {
    let id = row.get::<_, i64>(0)? as u64;
    let kind: i64 = row.get(3)?;
    let target = match kind {
        0 => Target::Direct(row.get::<_, Option<String>>(4)?.unwrap_or_default().into()),
        1 => Target::Group(row.get::<_, Option<i64>>(5)?.unwrap_or(0) as u64),
        _ => return Err(StoreError::CorruptMessage { id, kind }),
    };
    Ok(StoredMessage {
        id,
        time_ms: row.get::<_, i64>(1)? as u64,
        from: row.get::<_, String>(2)?.into(),
        target,
        client_msg_id: row.get::<_, i64>(6)? as u64,
        body: bytes::Bytes::from(row.get::<_, Vec<u8>>(7)?),
    })
}

pub(crate) fn sync_ack(
    conn: &Connection,
    ticket: Ticket,
    user: &str,
    device: &str,
    upto: InboxPoint,
) -> Result<Completion, StoreError> {
    let upto = seq_of(conn, user, upto)?;
    conn.prepare_cached(
        "INSERT INTO acks (user, device, upto) VALUES (?1, ?2, ?3)
         ON CONFLICT (user, device) DO UPDATE SET upto = max(upto, excluded.upto)",
    )?
    .execute(params![user, device, sql_clamped(upto)])?;
    Ok(Completion::Done { ticket })
}

pub(crate) fn group_create(
    conn: &Connection,
    ticket: Ticket,
    group: &GroupRecord,
) -> Result<Completion, StoreError> {
    let id = sql_id(group.id)?;
    conn.prepare_cached("INSERT INTO groups (id, name, owner) VALUES (?1, ?2, ?3)")?
        .execute(params![id, &*group.name, &*group.owner])
        .map_err(|e| {
            if is_constraint(&e, rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY) {
                StoreError::GroupExists { id: group.id }
            } else {
                StoreError::from(e)
            }
        })?;
    let mut insert = conn
        .prepare_cached("INSERT OR IGNORE INTO group_members (group_id, user) VALUES (?1, ?2)")?;
    for member in &group.members {
        insert.execute(params![id, &**member])?;
    }
    Ok(Completion::Done { ticket })
}

fn existing_group(conn: &Connection, group_id: u64) -> Result<i64, StoreError> {
    let id = sql_id(group_id)?;
    conn.prepare_cached("SELECT 1 FROM groups WHERE id = ?1")?
        .query_row([id], |_| Ok(()))
        .optional()?
        .ok_or(StoreError::UnknownGroup { id: group_id })?;
    Ok(id)
}

/// GROUP_JOIN: adds the member (already one: nothing to do).
const JOIN: &str = "INSERT OR IGNORE INTO group_members (group_id, user) VALUES (?1, ?2)";
/// GROUP_QUIT: removes the member (not one: nothing to do).
const QUIT: &str = "DELETE FROM group_members WHERE group_id = ?1 AND user = ?2";

/// One membership row added or removed (`JOIN` or `QUIT`), in a group that must exist.
fn change_membership(
    conn: &Connection,
    ticket: Ticket,
    group_id: u64,
    user: &str,
    sql: &str,
) -> Result<Completion, StoreError> {
    let id = existing_group(conn, group_id)?;
    conn.prepare_cached(sql)?.execute(params![id, user])?;
    Ok(Completion::Done { ticket })
}

/// Runs one request. `Purge` is not a batch request (the writer runs it in chunks) and is
/// answered `Done` here only if it ever reaches this point.
///
/// `appends` holds the append statements from the batch's first append to its end.
pub(crate) fn dispatch<'c>(
    conn: &'c Connection,
    appends: &mut Option<AppendStatements<'c>>,
    sequences: &mut InboxSequences,
    request: &crate::store::StoreRequest,
) -> Result<Completion, StoreError> {
    use crate::store::StoreRequest as R;
    match request {
        R::Append {
            ticket,
            message,
            inboxes,
        } => {
            let statements = match appends {
                Some(statements) => statements,
                None => appends.insert(AppendStatements::prepare(conn)?),
            };
            append(conn, statements, sequences, *ticket, message, inboxes)
        }
        R::SyncIndex {
            ticket,
            user,
            device,
            after,
            floor_id,
            limit,
        } => sync_index(conn, *ticket, (user, device), *after, *floor_id, *limit),
        R::SyncFetch { ticket, user, ids } => sync_fetch(conn, *ticket, user, ids),
        R::SyncAck {
            ticket,
            user,
            device,
            upto,
        } => sync_ack(conn, *ticket, user, device, *upto),
        R::GroupCreate { ticket, group } => group_create(conn, *ticket, group),
        R::GroupJoin {
            ticket,
            group_id,
            user,
        } => change_membership(conn, *ticket, *group_id, user, JOIN),
        R::GroupQuit {
            ticket,
            group_id,
            user,
        } => change_membership(conn, *ticket, *group_id, user, QUIT),
        R::Purge { ticket, .. } => Ok(Completion::Done { ticket: *ticket }),
    }
}
