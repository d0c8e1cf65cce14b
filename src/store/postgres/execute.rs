//! Each request's SQL, run inside the batch's open transaction on the writer's connection.
//!
//! Appends come in runs (every append queued back to back in a batch) and a run costs three
//! round trips whatever its length: the lookups (keys already stored, ids already taken),
//! the inbox counters (one multi-row upsert returning each inbox's new last sequence), and the
//! inserts (messages and inbox entries as `unnest` arrays), pipelined with the COMMIT when the
//! run ends the batch. Every request meets what can fail on its own account (a taken id, an
//! unknown group, a cursor from the future) with a read before it writes, so it fails alone;
//! a statement that fails aborts PostgreSQL's transaction, and with it the whole batch (the
//! writer rolls back and fails every request of it). Never sends a completion itself.

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};

/// Statement parameters, bound to a local so pipelined futures can borrow them.
type Params<'a, const N: usize> = [&'a (dyn ToSql + Sync); N];

use crate::store::{
    AppendOutcome, Completion, GroupRecord, InboxPoint, StoreError, StoreRequest, StoredMessage,
    Target, Ticket,
};

pub const FIND_KEYS: &str = "SELECT k.f, k.c, m.id, m.time_ms, (SELECT cutoff_ms FROM retention)
     FROM unnest($1::text[], $2::int8[]) AS k(f, c)
     JOIN messages m ON m.from_user = k.f AND m.client_msg_id = k.c";
/// A key reused after its message passed retention but before its partition was dropped:
/// the old message goes now, row by row (rare: only such reuses), so the key is free again.
const FORGET_ENTRIES: &str = "DELETE FROM inbox WHERE msg_id = ANY($1::int8[])";
const FORGET_MESSAGES: &str = "DELETE FROM messages WHERE id = ANY($1::int8[])";
pub const FIND_IDS: &str = "SELECT id FROM messages WHERE id = ANY($1::int8[])";
/// Inboxes in one order for every writer, so two writers' counter locks cannot deadlock.
pub const BUMP: &str = "INSERT INTO inboxes (user_name, last_seq)
     SELECT u, n FROM unnest($1::text[], $2::int8[]) AS t(u, n) ORDER BY u COLLATE \"C\"
     ON CONFLICT (user_name) DO UPDATE SET last_seq = inboxes.last_seq + excluded.last_seq
     RETURNING user_name, last_seq";
pub const INSERT_MESSAGES: &str = "INSERT INTO messages
     (id, time_ms, from_user, target_kind, target_user, target_group, client_msg_id, body)
     SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::int2[], $5::text[],
                          $6::int8[], $7::int8[], $8::bytea[])";
pub const INSERT_INBOX: &str = "INSERT INTO inbox (user_name, seq, msg_id, time_ms)
     SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::int8[])";
const INBOX_STATE: &str = "SELECT
     coalesce((SELECT last_seq FROM inboxes WHERE user_name = $1), 0),
     coalesce((SELECT upto FROM positions WHERE user_name = $1 AND device = $2), 0)";
/// The entry of a msg_id, else the newest entry with a smaller id (the legacy cursor's meaning).
const MESSAGE_POINT: &str = "SELECT coalesce(
     (SELECT seq FROM inbox WHERE msg_id = $2 AND user_name = $1 LIMIT 1),
     (SELECT seq FROM inbox WHERE user_name = $1 AND msg_id <= $2 ORDER BY seq DESC LIMIT 1),
     0)";
const LIST: &str = "SELECT seq, msg_id FROM inbox
     WHERE user_name = $1 AND seq > $2 AND msg_id > $3
       AND time_ms >= (SELECT cutoff_ms FROM retention)
     ORDER BY seq LIMIT $4";
/// Joining through the inbox is the access check: another user's message has no row there.
const FETCH: &str = "SELECT m.id, m.time_ms, m.from_user, m.target_kind, m.target_user,
            m.target_group, m.client_msg_id, m.body
     FROM unnest($2::int8[]) WITH ORDINALITY AS q(id, ord)
     JOIN inbox i ON i.msg_id = q.id AND i.user_name = $1
     JOIN messages m ON m.id = i.msg_id AND m.time_ms = i.time_ms
     WHERE i.time_ms >= (SELECT cutoff_ms FROM retention)
     ORDER BY q.ord";
const ACK: &str = "INSERT INTO positions (user_name, device, upto) VALUES ($1, $2, $3)
     ON CONFLICT (user_name, device) DO UPDATE SET upto = greatest(positions.upto, excluded.upto)";
const GROUP_INSERT: &str =
    "INSERT INTO groups (id, name, owner) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING";
const MEMBERS_INSERT: &str = "INSERT INTO group_members (group_id, user_name)
     SELECT $1, u FROM unnest($2::text[]) AS t(u) ON CONFLICT DO NOTHING";
const GROUP_EXISTS: &str = "SELECT 1 FROM groups WHERE id = $1";
const JOIN: &str = "INSERT INTO group_members (group_id, user_name) VALUES ($1, $2)
     ON CONFLICT DO NOTHING";
const QUIT: &str = "DELETE FROM group_members WHERE group_id = $1 AND user_name = $2";
const PURGE: &str = "UPDATE retention SET cutoff_ms = greatest(cutoff_ms, $1)";

/// Every statement the writer runs, prepared once per connection (the hot path parses no SQL).
pub(crate) struct Statements {
    find_keys: Statement,
    find_ids: Statement,
    forget_entries: Statement,
    forget_messages: Statement,
    bump: Statement,
    insert_messages: Statement,
    insert_inbox: Statement,
    inbox_state: Statement,
    message_point: Statement,
    list: Statement,
    fetch: Statement,
    ack: Statement,
    group_insert: Statement,
    members_insert: Statement,
    group_exists: Statement,
    join: Statement,
    quit: Statement,
    purge: Statement,
}

impl Statements {
    /// Prepares them all in one pipelined exchange.
    pub(crate) async fn prepare(client: &Client) -> Result<Statements, tokio_postgres::Error> {
        let p = |sql| client.prepare(sql);
        let (find_keys, find_ids, bump, insert_messages, insert_inbox, inbox_state) = tokio::try_join!(
            p(FIND_KEYS),
            p(FIND_IDS),
            p(BUMP),
            p(INSERT_MESSAGES),
            p(INSERT_INBOX),
            p(INBOX_STATE)
        )?;
        let (message_point, list, fetch, ack, group_insert, members_insert) = tokio::try_join!(
            p(MESSAGE_POINT),
            p(LIST),
            p(FETCH),
            p(ACK),
            p(GROUP_INSERT),
            p(MEMBERS_INSERT)
        )?;
        let (group_exists, join, quit, purge, forget_entries, forget_messages) = tokio::try_join!(
            p(GROUP_EXISTS),
            p(JOIN),
            p(QUIT),
            p(PURGE),
            p(FORGET_ENTRIES),
            p(FORGET_MESSAGES)
        )?;
        Ok(Statements {
            find_keys,
            find_ids,
            forget_entries,
            forget_messages,
            bump,
            insert_messages,
            insert_inbox,
            inbox_state,
            message_point,
            list,
            fetch,
            ack,
            group_insert,
            members_insert,
            group_exists,
            join,
            quit,
            purge,
        })
    }
}

/// Ids (messages, groups) are bigint keys: they must fit in 63 bits.
fn sql_id(id: u64) -> Result<i64, StoreError> {
    i64::try_from(id).map_err(|_| StoreError::IdOutOfRange { id })
}

/// A sync position or a time: anything above i64::MAX is past every stored id or time.
fn sql_clamped(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// One append of a run, borrowed from its request.
pub(crate) struct AppendRef<'a> {
    pub(crate) ticket: Ticket,
    pub(crate) message: &'a StoredMessage,
    pub(crate) inboxes: &'a [Box<str>],
}

impl<'a> AppendRef<'a> {
    pub(crate) fn of(request: &'a StoreRequest) -> Option<AppendRef<'a>> {
        match request {
            StoreRequest::Append {
                ticket,
                message,
                inboxes,
            } => Some(AppendRef {
                ticket: *ticket,
                message,
                inboxes,
            }),
            _ => None,
        }
    }

    fn target_group(&self) -> Result<Option<i64>, StoreError> {
        match self.message.target {
            Target::Group(group) => sql_id(group).map(Some),
            Target::Direct(_) => Ok(None),
        }
    }
}

/// The distinct users of `inboxes`, in order (a user listed twice gets one entry).
fn distinct(inboxes: &[Box<str>]) -> impl Iterator<Item = &str> {
    let mut seen: HashSet<&str> = HashSet::with_capacity(inboxes.len());
    inboxes.iter().map(|u| &**u).filter(move |u| seen.insert(u))
}

/// Stores a run of appends (see the module's comment); with `commit`, the COMMIT goes out with
/// the inserts and the run ends the transaction. Completions go to `out` in the run's order.
pub(crate) async fn append_run(
    client: &Client,
    st: &Statements,
    run: &[AppendRef<'_>],
    commit: bool,
    out: &mut Vec<Completion>,
) -> Result<(), tokio_postgres::Error> {
    let mut answers: Vec<Option<Result<AppendOutcome, StoreError>>> = vec![None; run.len()];
    let (mut froms, mut keys, mut ids) = (Vec::new(), Vec::new(), Vec::new());
    for (i, append) in run.iter().enumerate() {
        match sql_id(append.message.id).and_then(|id| append.target_group().map(|_| id)) {
            Ok(id) => {
                froms.push(&*append.message.from);
                keys.push(append.message.client_msg_id as i64);
                ids.push(id);
            }
            Err(error) => answers[i] = Some(Err(error)),
        }
    }
    let (key_params, id_params): (Params<2>, Params<1>) = ([&froms, &keys], [&ids]);
    let (found_keys, found_ids) = tokio::try_join!(
        client.query(&st.find_keys, &key_params),
        client.query(&st.find_ids, &id_params)
    )?;
    // Stored before (the dedupe) and ids taken: only resends and bugs find anything here.
    let mut stored_before: HashMap<(String, i64), (u64, u64)> = HashMap::new();
    let mut expired: Vec<i64> = Vec::new();
    for row in &found_keys {
        let (id, time_ms, cutoff): (i64, i64, i64) = (row.get(2), row.get(3), row.get(4));
        if time_ms < cutoff {
            expired.push(id);
        } else {
            let key = (row.get::<_, String>(0), row.get::<_, i64>(1));
            stored_before.insert(key, (id as u64, time_ms as u64));
        }
    }
    if !expired.is_empty() {
        let forget: Params<1> = [&expired];
        tokio::try_join!(
            client.execute(&st.forget_entries, &forget),
            client.execute(&st.forget_messages, &forget)
        )?;
    }
    let mut taken: HashSet<i64> = found_ids.iter().map(|row| row.get(0)).collect();
    let mut in_run: HashMap<(&str, i64), (u64, u64)> = HashMap::new();
    let mut stored: Vec<usize> = Vec::with_capacity(run.len());
    for (i, append) in run.iter().enumerate() {
        if answers[i].is_some() {
            continue;
        }
        let m = append.message;
        let key = (&*m.from, m.client_msg_id as i64);
        let earlier = in_run.get(&key).copied().or_else(|| {
            (!stored_before.is_empty())
                .then(|| stored_before.get(&(key.0.to_owned(), key.1)).copied())
                .flatten()
        });
        answers[i] = Some(if let Some((id, time_ms)) = earlier {
            Ok(AppendOutcome::Duplicate { id, time_ms })
        } else if !taken.insert(m.id as i64) {
            Err(StoreError::MessageIdTaken { id: m.id })
        } else {
            in_run.insert(key, (m.id, m.time_ms));
            stored.push(i);
            Ok(AppendOutcome::Stored)
        });
    }
    // Each inbox's entries of this run, counted, then numbered from the counter's new value.
    let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
    for &i in &stored {
        for user in distinct(run[i].inboxes) {
            *counts.entry(user).or_default() += 1;
        }
    }
    let mut next: HashMap<&str, i64> = HashMap::with_capacity(counts.len());
    if !counts.is_empty() {
        let users: Vec<&str> = counts.keys().copied().collect();
        let numbers: Vec<i64> = counts.values().copied().collect();
        for row in client.query(&st.bump, &[&users, &numbers]).await? {
            let user: &str = row.get(0);
            let last: i64 = row.get(1);
            if let Some((&user, &count)) = counts.get_key_value(user) {
                next.insert(user, last - count + 1);
            }
        }
    }
    let n = stored.len();
    let mut m_ids = Vec::with_capacity(n);
    let mut m_times = Vec::with_capacity(n);
    let mut m_froms = Vec::with_capacity(n);
    let mut m_kinds: Vec<i16> = Vec::with_capacity(n);
    let mut m_users: Vec<Option<&str>> = Vec::with_capacity(n);
    let mut m_groups: Vec<Option<i64>> = Vec::with_capacity(n);
    let mut m_keys = Vec::with_capacity(n);
    let mut m_bodies: Vec<&[u8]> = Vec::with_capacity(n);
    let (mut e_users, mut e_seqs, mut e_ids, mut e_times) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for &i in &stored {
        let m = run[i].message;
        let time_ms = sql_clamped(m.time_ms);
        m_ids.push(m.id as i64);
        m_times.push(time_ms);
        m_froms.push(&*m.from);
        match &m.target {
            Target::Direct(user) => {
                m_kinds.push(0);
                m_users.push(Some(&**user));
                m_groups.push(None);
            }
            Target::Group(group) => {
                m_kinds.push(1);
                m_users.push(None);
                m_groups.push(Some(*group as i64));
            }
        }
        m_keys.push(m.client_msg_id as i64);
        m_bodies.push(&m.body[..]);
        for user in distinct(run[i].inboxes) {
            let seq = next.get_mut(user).expect("every inbox was counted");
            e_users.push(user);
            e_seqs.push(*seq);
            *seq += 1;
            e_ids.push(m.id as i64);
            e_times.push(time_ms);
        }
    }
    let message_params: Params<8> = [
        &m_ids, &m_times, &m_froms, &m_kinds, &m_users, &m_groups, &m_keys, &m_bodies,
    ];
    let entry_params: Params<4> = [&e_users, &e_seqs, &e_ids, &e_times];
    let messages = client.execute(&st.insert_messages, &message_params);
    let entries = client.execute(&st.insert_inbox, &entry_params);
    if commit {
        tokio::try_join!(messages, entries, client.batch_execute("COMMIT"))?;
    } else {
        tokio::try_join!(messages, entries)?;
    }
    for (append, answer) in run.iter().zip(answers) {
        out.push(match answer.expect("every append answered") {
            Ok(outcome) => Completion::Appended {
                ticket: append.ticket,
                outcome,
            },
            Err(error) => Completion::Failed {
                ticket: append.ticket,
                error,
            },
        });
    }
    Ok(())
}

/// The sequence `point` stands for in `user`'s inbox, or the refusal of a cursor from the
/// future; with the device's acknowledged position (0 when none).
async fn seq_and_acked(
    client: &Client,
    st: &Statements,
    (user, device): (&str, &str),
    point: InboxPoint,
) -> Result<Result<(u64, u64), StoreError>, tokio_postgres::Error> {
    let state_params: Params<2> = [&user, &device];
    let state = client.query_one(&st.inbox_state, &state_params);
    let (seq, last, acked) = match point {
        InboxPoint::Seq(cursor) => {
            let state = state.await?;
            (cursor, state.get::<_, i64>(0), state.get::<_, i64>(1))
        }
        InboxPoint::Message(id) => {
            let id = sql_clamped(id);
            let point_params: Params<2> = [&user, &id];
            let (state, seq) =
                tokio::try_join!(state, client.query_one(&st.message_point, &point_params))?;
            let seq = if id == 0 { 0 } else { seq.get::<_, i64>(0) };
            (seq.max(0) as u64, state.get(0), state.get(1))
        }
    };
    let last = last.max(0) as u64;
    if seq > last {
        return Ok(Err(StoreError::CursorAhead { cursor: seq, last }));
    }
    Ok(Ok((seq, acked.max(0) as u64)))
}

fn read_message(row: &Row) -> Result<StoredMessage, StoreError> {
    let id = row.get::<_, i64>(0) as u64;
    let kind: i16 = row.get(3);
    let target = match kind {
        0 => Target::Direct(row.get::<_, Option<&str>>(4).unwrap_or_default().into()),
        1 => Target::Group(row.get::<_, Option<i64>>(5).unwrap_or(0) as u64),
        _ => {
            return Err(StoreError::CorruptMessage {
                id,
                kind: kind.into(),
            })
        }
    };
    Ok(StoredMessage {
        id,
        time_ms: row.get::<_, i64>(1) as u64,
        from: row.get::<_, &str>(2).into(),
        target,
        client_msg_id: row.get::<_, i64>(6) as u64,
        body: Bytes::copy_from_slice(row.get::<_, &[u8]>(7)),
    })
}

/// Runs one request other than an append; its completion (or refusal) goes to `out`.
pub(crate) async fn one(
    client: &Client,
    st: &Statements,
    request: &StoreRequest,
    out: &mut Vec<Completion>,
) -> Result<(), tokio_postgres::Error> {
    use StoreRequest as R;
    let ticket = request.ticket();
    let answer = match request {
        R::Append { .. } => unreachable!("appends run in runs"),
        R::SyncIndex {
            user,
            device,
            after,
            floor_id,
            limit,
            ..
        } => match seq_and_acked(client, st, (user, device), *after).await? {
            Err(error) => Err(error),
            Ok((after, acked)) => {
                let start = after.max(acked);
                let (start_sql, floor) = (sql_clamped(start), sql_clamped(*floor_id));
                // One row past the limit tells whether there is more, without a count.
                let rows = client
                    .query(
                        &st.list,
                        &[user, &start_sql, &floor, &(i64::from(*limit) + 1)],
                    )
                    .await?;
                let more = rows.len() > *limit as usize;
                let rows = &rows[..rows.len().min(*limit as usize)];
                let cursor = rows.last().map_or(start, |r| r.get::<_, i64>(0) as u64);
                Ok(Completion::SyncIndex {
                    ticket,
                    ids: rows.iter().map(|r| r.get::<_, i64>(1) as u64).collect(),
                    more,
                    cursor,
                })
            }
        },
        R::SyncFetch { user, ids, .. } => {
            let ids: Vec<i64> = ids
                .iter()
                .filter_map(|&id| i64::try_from(id).ok())
                .collect();
            let rows = client.query(&st.fetch, &[user, &ids]).await?;
            rows.iter()
                .map(read_message)
                .collect::<Result<Vec<_>, _>>()
                .map(|messages| Completion::SyncFetch { ticket, messages })
        }
        R::SyncAck {
            user, device, upto, ..
        } => match seq_and_acked(client, st, (user, device), *upto).await? {
            Err(error) => Err(error),
            Ok((upto, _)) => {
                let upto = sql_clamped(upto);
                client.execute(&st.ack, &[user, device, &upto]).await?;
                Ok(Completion::Done { ticket })
            }
        },
        R::GroupCreate { group, .. } => group_create(client, st, ticket, group).await?,
        R::GroupJoin { group_id, user, .. } => {
            membership(client, st, ticket, *group_id, user, &st.join).await?
        }
        R::GroupQuit { group_id, user, .. } => {
            membership(client, st, ticket, *group_id, user, &st.quit).await?
        }
        R::Purge { older_than_ms, .. } => {
            let cutoff = sql_clamped(*older_than_ms);
            client.execute(&st.purge, &[&cutoff]).await?;
            Ok(Completion::Done { ticket })
        }
    };
    out.push(answer.unwrap_or_else(|error| Completion::Failed { ticket, error }));
    Ok(())
}

async fn group_create(
    client: &Client,
    st: &Statements,
    ticket: Ticket,
    group: &GroupRecord,
) -> Result<Result<Completion, StoreError>, tokio_postgres::Error> {
    let id = match sql_id(group.id) {
        Ok(id) => id,
        Err(error) => return Ok(Err(error)),
    };
    let name: &str = &group.name;
    let owner: &str = &group.owner;
    if client
        .execute(&st.group_insert, &[&id, &name, &owner])
        .await?
        == 0
    {
        return Ok(Err(StoreError::GroupExists { id: group.id }));
    }
    let members: Vec<&str> = group.members.iter().map(|m| &**m).collect();
    client.execute(&st.members_insert, &[&id, &members]).await?;
    Ok(Ok(Completion::Done { ticket }))
}

/// One membership row added or removed (`join` or `quit`), in a group that must exist.
async fn membership(
    client: &Client,
    st: &Statements,
    ticket: Ticket,
    group_id: u64,
    user: &str,
    change: &Statement,
) -> Result<Result<Completion, StoreError>, tokio_postgres::Error> {
    let id = match sql_id(group_id) {
        Ok(id) => id,
        Err(error) => return Ok(Err(error)),
    };
    if client.query_opt(&st.group_exists, &[&id]).await?.is_none() {
        return Ok(Err(StoreError::UnknownGroup { id: group_id }));
    }
    client.execute(change, &[&id, &user]).await?;
    Ok(Ok(Completion::Done { ticket }))
}
