//! The store through its public handle, on both engines (SQLite files in a temporary
//! directory, a fresh database on a real PostgreSQL): what the logic core relies on (sync per
//! device, dedupe, fan-out rows, isolation, paging, purge, groups across a restart, durability
//! across SIGKILL). Each test is a function of the engine, run once per engine by
//! `on_both_engines!`. Batches (push-back, failures, rollback, shutdown) are in `batches.rs`,
//! inbox sequences and cursors in `cursor.rs`, what only PostgreSQL has in `postgres.rs`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use crossbeam_channel::Receiver;
use rusqlite::Connection;

use super::*;

#[path = "../../../tests/shared/postgres.rs"]
pub(crate) mod pg_server;

const WAIT: Duration = Duration::from_secs(20);

/// Runs each named test function (`fn(Engine kind)`) once per engine.
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[test]
            fn $name() {
                super::$name(crate::store::tests::Kind::Sqlite)
            })*
        }
        mod on_postgres {
            $(#[test]
            fn $name() {
                super::$name(crate::store::tests::Kind::Postgres)
            })*
        }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Sqlite,
    Postgres,
}

/// One engine's database, kept across reopens: a temporary directory or a fresh PostgreSQL
/// database.
pub(crate) enum Db {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

/// Settings a test may change, on either engine.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) retention: Duration,
    pub(crate) queue: usize,
    pub(crate) max_batch: usize,
}

impl Default for Settings {
    fn default() -> Self {
        let sqlite = SqliteConfig::new("unused");
        Settings {
            retention: sqlite.retention,
            queue: sqlite.queue,
            max_batch: sqlite.max_batch,
        }
    }
}

impl Db {
    pub(crate) fn fresh(kind: Kind) -> Db {
        match kind {
            Kind::Sqlite => Db::Sqlite(tempfile::tempdir().unwrap()),
            Kind::Postgres => Db::Postgres(pg_server::fresh_database()),
        }
    }

    /// Where a child process finds this database again.
    fn location(&self) -> String {
        match self {
            Db::Sqlite(dir) => dir.path().display().to_string(),
            Db::Postgres(url) => url.clone(),
        }
    }

    fn from_location(location: &str) -> Harness {
        let settings = Settings::default();
        if location.starts_with("postgres://") {
            open_postgres(location, settings)
        } else {
            open_sqlite(Path::new(location), settings)
        }
    }

    pub(crate) fn open(&self) -> Harness {
        self.open_with(Settings::default())
    }

    pub(crate) fn open_with(&self, settings: Settings) -> Harness {
        match self {
            Db::Sqlite(dir) => open_sqlite(dir.path(), settings),
            Db::Postgres(url) => open_postgres(url, settings),
        }
    }

    /// The path of the SQLite database (SQLite-only tests).
    pub(crate) fn sqlite_path(&self) -> PathBuf {
        match self {
            Db::Sqlite(dir) => dir.path().join("switchboard.db"),
            Db::Postgres(_) => panic!("not a SQLite database"),
        }
    }

    /// Runs SQL behind the store's back: `sqlite` or `postgres`, whichever the engine speaks.
    pub(crate) fn execute(&self, sqlite: &str, postgres: &str) {
        match self {
            Db::Sqlite(_) => raw_connection(self.sqlite_path())
                .unwrap()
                .execute_batch(sqlite)
                .unwrap(),
            Db::Postgres(url) => {
                pg_server::server().psql(pg_server::database_of(url), postgres);
            }
        }
    }

    /// A count read by SQL behind the store's back; `{user}` is the engine's name for the
    /// user column (`user` is reserved in PostgreSQL).
    pub(crate) fn count(&self, sql: &str) -> i64 {
        match self {
            Db::Sqlite(_) => count(&self.sqlite_path(), &sql.replace("{user}", "user")),
            Db::Postgres(url) => pg_server::server()
                .psql(
                    pg_server::database_of(url),
                    &sql.replace("{user}", "user_name"),
                )
                .parse()
                .expect("a count"),
        }
    }
}

fn open_sqlite(dir: &Path, settings: Settings) -> Harness {
    let config = SqliteConfig {
        retention: settings.retention,
        queue: settings.queue,
        max_batch: settings.max_batch,
        ..SqliteConfig::new(dir)
    };
    sqlite_harness(config)
}

/// A harness on a SQLite store opened with exactly `config` (tests that set their own knobs).
pub(crate) fn sqlite_harness(config: SqliteConfig) -> Harness {
    let (tx, completions) = crossbeam_channel::unbounded();
    let metrics = config.metrics.clone();
    let (store, thread) = SqliteStore::open(config, tx).expect("open store");
    Harness {
        store: Engine::Sqlite(store),
        thread,
        completions,
        metrics,
    }
}

fn open_postgres(url: &str, settings: Settings) -> Harness {
    let config = PostgresConfig {
        retention: settings.retention,
        queue: settings.queue,
        max_batch: settings.max_batch,
        ..PostgresConfig::new(url)
    };
    let (tx, completions) = crossbeam_channel::unbounded();
    let metrics = config.metrics.clone();
    let (store, thread) = PostgresStore::open(config, tx).expect("open store");
    Harness {
        store: Engine::Postgres(store),
        thread,
        completions,
        metrics,
    }
}

pub(crate) struct Harness {
    store: Engine,
    thread: StoreThread,
    completions: Receiver<Completion>,
    /// The block the engine's writer counts its commits in (the admin listener's source).
    metrics: std::sync::Arc<StoreMetrics>,
}

impl Harness {
    fn next(&self) -> Completion {
        self.completions
            .recv_timeout(WAIT)
            .expect("a completion in time")
    }

    /// Submits and waits for this request's completion (requests complete in order).
    fn call(&self, request: StoreRequest) -> Completion {
        let ticket = request.ticket();
        self.store.submit(request).expect("queue has room");
        let completion = self.next();
        assert_eq!(completion.ticket(), ticket);
        completion
    }

    /// The legacy listing (SYNC_INDEX): `after` is a msg_id.
    fn index(&self, user: &str, device: &str, after: u64, limit: u32) -> (Vec<u64>, bool) {
        let (ids, more, _) = self.list_from(user, device, InboxPoint::Message(after), limit);
        (ids, more)
    }

    fn fetch(&self, user: &str, ids: &[u64]) -> Vec<StoredMessage> {
        match self.call(StoreRequest::SyncFetch {
            ticket: 0,
            user: user.into(),
            ids: ids.to_vec(),
        }) {
            Completion::SyncFetch { messages, .. } => messages,
            other => panic!("expected messages, got {other:?}"),
        }
    }

    fn done(&self, request: StoreRequest) {
        let completion = self.call(request);
        assert!(
            matches!(completion, Completion::Done { .. }),
            "{completion:?}"
        );
    }

    fn append(&self, message: StoredMessage, inboxes: &[&str]) -> AppendOutcome {
        match self.call(append_request(message, inboxes)) {
            Completion::Appended { outcome, .. } => outcome,
            other => panic!("expected Appended, got {other:?}"),
        }
    }

    fn close(self) {
        drop(self.store);
        self.thread.join().expect("clean exit");
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn direct(id: u64, from: &str, to: &str, client_msg_id: u64) -> StoredMessage {
    StoredMessage {
        id,
        time_ms: now_ms(),
        from: from.into(),
        target: Target::Direct(to.into()),
        client_msg_id,
        body: Bytes::from(format!("body of {id}")),
    }
}

fn append_request(message: StoredMessage, inboxes: &[&str]) -> StoreRequest {
    StoreRequest::Append {
        ticket: message.id,
        message,
        inboxes: inboxes.iter().map(|&u| u.into()).collect(),
    }
}

/// A connection behind the store's back. SQLite's page cache layer goes in first: it must
/// precede SQLite's first use in the process, and every thread waits for it (page_cache.rs).
pub(crate) fn raw_connection(path: impl AsRef<Path>) -> rusqlite::Result<Connection> {
    crate::store::sqlite::page_cache::install();
    Connection::open(path)
}

fn count(path: &Path, sql: &str) -> i64 {
    raw_connection(path)
        .unwrap()
        .query_row(sql, [], |r| r.get(0))
        .unwrap()
}

fn append_then_sync_index_fetch_and_ack_per_device(kind: Kind) {
    let db = Db::fresh(kind);
    let h = db.open();
    for id in 1..=3 {
        assert_eq!(
            h.append(direct(id, "alice", "bob", id), &["bob", "alice"]),
            AppendOutcome::Stored
        );
    }
    assert_eq!(h.index("bob", "phone", 0, 10), (vec![1, 2, 3], false));
    let fetched = h.fetch("bob", &[1, 2, 3]);
    assert_eq!(
        fetched,
        vec![
            direct(1, "alice", "bob", 1),
            direct(2, "alice", "bob", 2),
            direct(3, "alice", "bob", 3)
        ]
        .into_iter()
        .zip(&fetched)
        .map(|(want, got)| StoredMessage {
            time_ms: got.time_ms,
            ..want
        })
        .collect::<Vec<_>>()
    );
    h.done(StoreRequest::SyncAck {
        ticket: 9,
        user: "bob".into(),
        device: "phone".into(),
        upto: InboxPoint::Message(2),
    });
    assert_eq!(h.index("bob", "phone", 0, 10), (vec![3], false));
    // Another device of the same user keeps its own position.
    assert_eq!(h.index("bob", "laptop", 0, 10), (vec![1, 2, 3], false));
    // The position never moves back.
    h.done(StoreRequest::SyncAck {
        ticket: 10,
        user: "bob".into(),
        device: "phone".into(),
        upto: InboxPoint::Message(1),
    });
    assert_eq!(h.index("bob", "phone", 0, 10), (vec![3], false));
    // `after` beyond the acknowledged position wins.
    assert_eq!(h.index("bob", "laptop", 2, 10), (vec![3], false));
    // The sender's own inbox holds the message too, for the sender's other devices.
    assert_eq!(h.index("alice", "tablet", 0, 10), (vec![1, 2, 3], false));
    h.close();
}

fn a_resend_returns_the_original_and_stores_nothing(kind: Kind) {
    let db = Db::fresh(kind);
    let h = db.open();
    let original = direct(10, "alice", "bob", 5);
    let time_ms = original.time_ms;
    assert_eq!(h.append(original, &["bob", "alice"]), AppendOutcome::Stored);
    let resend = StoredMessage {
        time_ms: time_ms + 1000,
        ..direct(11, "alice", "bob", 5)
    };
    assert_eq!(
        h.append(resend, &["bob", "alice"]),
        AppendOutcome::Duplicate { id: 10, time_ms }
    );
    assert_eq!(h.index("bob", "phone", 0, 10), (vec![10], false));
    assert!(h.fetch("bob", &[11]).is_empty());
    // The key is per sender: another sender may use the same client_msg_id.
    assert_eq!(
        h.append(direct(12, "carol", "bob", 5), &["bob", "carol"]),
        AppendOutcome::Stored
    );
    h.close();
    assert_eq!(db.count("SELECT count(*) FROM messages"), 2);
}

fn a_group_message_is_stored_once_with_one_inbox_row_per_member(kind: Kind) {
    let db = Db::fresh(kind);
    let h = db.open();
    let message = StoredMessage {
        target: Target::Group(7),
        ..direct(100, "ann", "", 1)
    };
    let members = ["ann", "bob", "cy", "dee"];
    assert_eq!(h.append(message.clone(), &members), AppendOutcome::Stored);
    for member in members {
        assert_eq!(h.index(member, "d", 0, 10), (vec![100], false));
        assert_eq!(h.fetch(member, &[100]), vec![message.clone()]);
    }
    h.close();
    assert_eq!(db.count("SELECT count(*) FROM messages"), 1);
    assert_eq!(db.count("SELECT count(*) FROM inbox WHERE msg_id = 100"), 4);
}

fn a_user_listed_twice_gets_one_entry(kind: Kind) {
    let db = Db::fresh(kind);
    let h = db.open();
    // In pairs and alone, as SQLite writes a message's entries two to a statement.
    let inboxes = ["bob", "bob", "ann", "bob", "cy"];
    assert_eq!(
        h.append(direct(1, "ann", "bob", 1), &inboxes),
        AppendOutcome::Stored
    );
    assert_eq!(
        h.append(direct(2, "ann", "bob", 2), &["bob", "ann"]),
        AppendOutcome::Stored
    );
    for user in ["bob", "ann"] {
        assert_eq!(h.index(user, "d", 0, 10), (vec![1, 2], false), "{user}");
    }
    assert_eq!(h.index("cy", "d", 0, 10), (vec![1], false));
    h.close();
    assert_eq!(db.count("SELECT count(*) FROM inbox"), 5);
}

fn fetch_never_returns_another_users_message(kind: Kind) {
    let db = Db::fresh(kind);
    let h = db.open();
    h.append(direct(1, "alice", "bob", 1), &["bob", "alice"]);
    h.append(direct(2, "carol", "dave", 1), &["dave", "carol"]);
    let got: Vec<u64> = h
        .fetch("bob", &[2, 1, 99, u64::MAX])
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(got, vec![1]);
    assert!(h.fetch("eve", &[1, 2]).is_empty());
    h.close();
}

fn the_index_pages_with_more(kind: Kind) {
    let db = Db::fresh(kind);
    let h = db.open();
    for id in 1..=5 {
        h.append(direct(id, "alice", "bob", id), &["bob"]);
    }
    assert_eq!(h.index("bob", "d", 0, 2), (vec![1, 2], true));
    assert_eq!(h.index("bob", "d", 2, 2), (vec![3, 4], true));
    assert_eq!(h.index("bob", "d", 4, 2), (vec![5], false));
    assert_eq!(h.index("bob", "d", 5, 2), (vec![], false));
    assert_eq!(h.index("bob", "d", 0, 0), (vec![], true));
    assert_eq!(h.index("bob", "d", 0, 5), (vec![1, 2, 3, 4, 5], false));
    h.close();
}

fn purge_removes_old_messages_keeps_new_and_never_syncs_them(kind: Kind) {
    let db = Db::fresh(kind);
    let h = db.open_with(Settings {
        retention: Duration::from_secs(365 * 24 * 3600),
        ..Settings::default()
    });
    let now = now_ms();
    let day = 24 * 3600 * 1000;
    // More old messages than one of SQLite's purge chunks (256), so the purge takes several
    // transactions there; PostgreSQL drops their day's partitions.
    let old: Vec<u64> = (1..=600).collect();
    for &id in &old {
        let message = StoredMessage {
            time_ms: now - 30 * day + id,
            ..direct(id, "alice", "bob", id)
        };
        h.store
            .submit(append_request(message, &["bob", "alice"]))
            .unwrap();
    }
    let new = [10_001, 10_002];
    for id in new {
        h.store
            .submit(append_request(
                direct(id, "alice", "bob", id),
                &["bob", "alice"],
            ))
            .unwrap();
    }
    for _ in 0..old.len() + new.len() {
        assert!(matches!(
            h.next(),
            Completion::Appended {
                outcome: AppendOutcome::Stored,
                ..
            }
        ));
    }
    h.done(StoreRequest::Purge {
        ticket: 77,
        older_than_ms: now - day,
    });
    assert_eq!(h.index("bob", "phone", 0, 1000), (new.to_vec(), false));
    assert_eq!(h.index("alice", "phone", 0, 1000), (new.to_vec(), false));
    assert!(h.fetch("bob", &old).is_empty());
    assert_eq!(h.fetch("bob", &new).len(), 2);
    h.close();
    assert_eq!(db.count("SELECT count(*) FROM messages"), 2);
    assert_eq!(db.count("SELECT count(*) FROM inbox"), 4);
}

fn the_thread_purges_past_retention_by_itself_at_start(kind: Kind) {
    let db = Db::fresh(kind);
    // Written under a year's retention, so only the reopened store (7 days) can purge it.
    let h = db.open_with(Settings {
        retention: Duration::from_secs(365 * 24 * 3600),
        ..Settings::default()
    });
    let stale = StoredMessage {
        time_ms: now_ms() - 8 * 24 * 3600 * 1000,
        ..direct(1, "alice", "bob", 1)
    };
    h.append(stale, &["bob"]);
    h.append(direct(2, "alice", "bob", 2), &["bob"]);
    assert_eq!(h.index("bob", "d", 0, 10), (vec![1, 2], false));
    h.close();
    let h = db.open();
    // The start-up purge runs before the thread serves its first batch after it.
    let deadline = Instant::now() + WAIT;
    while h.index("bob", "d", 0, 10).0 != [2] {
        assert!(
            Instant::now() < deadline,
            "the stale message was never purged"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    h.close();
}

fn groups_are_created_joined_quit_and_loaded_after_reopen(kind: Kind) {
    let db = Db::fresh(kind);
    let h = db.open();
    let group = |id: u64, name: &str, owner: &str, members: &[&str]| GroupRecord {
        id,
        name: name.into(),
        owner: owner.into(),
        members: members.iter().map(|&m| m.into()).collect(),
    };
    h.done(StoreRequest::GroupCreate {
        ticket: 1,
        group: group(1, "one", "ann", &["ann", "bob"]),
    });
    h.done(StoreRequest::GroupCreate {
        ticket: 2,
        group: group(2, "two", "cy", &["cy"]),
    });
    h.done(StoreRequest::GroupJoin {
        ticket: 3,
        group_id: 1,
        user: "cy".into(),
    });
    h.done(StoreRequest::GroupJoin {
        ticket: 4,
        group_id: 1,
        user: "cy".into(),
    });
    h.done(StoreRequest::GroupQuit {
        ticket: 5,
        group_id: 1,
        user: "bob".into(),
    });
    let refused = [
        (
            StoreRequest::GroupJoin {
                ticket: 6,
                group_id: 9,
                user: "x".into(),
            },
            StoreError::UnknownGroup { id: 9 },
        ),
        (
            StoreRequest::GroupQuit {
                ticket: 7,
                group_id: 9,
                user: "x".into(),
            },
            StoreError::UnknownGroup { id: 9 },
        ),
        (
            StoreRequest::GroupCreate {
                ticket: 8,
                group: group(1, "again", "eve", &["eve"]),
            },
            StoreError::GroupExists { id: 1 },
        ),
    ];
    for (request, error) in refused {
        let ticket = request.ticket();
        assert_eq!(h.call(request), Completion::Failed { ticket, error });
    }
    let expected = vec![
        group(1, "one", "ann", &["ann", "cy"]),
        group(2, "two", "cy", &["cy"]),
    ];
    assert_eq!(h.store.load_groups().unwrap(), expected);
    h.close();
    let h = db.open();
    assert_eq!(h.store.load_groups().unwrap(), expected);
    h.close();
}

const CRASH_CHILD_DB: &str = "SWITCHBOARD_STORE_CRASH_CHILD_DB";
const CRASH_CHILD_APPENDED: &str = "store crash child: all appends acknowledged";
const CRASH_APPENDS: u64 = 300;

/// The child of `acknowledged_appends_survive_sigkill`: appends, waits for every `Appended`,
/// says so, and waits to be killed.
#[test]
#[ignore = "run as a child process by acknowledged_appends_survive_sigkill"]
fn crash_child() {
    let Ok(location) = std::env::var(CRASH_CHILD_DB) else {
        return;
    };
    let h = Db::from_location(&location);
    for id in 1..=CRASH_APPENDS {
        h.store
            .submit(append_request(
                direct(id, "alice", "bob", id),
                &["bob", "alice"],
            ))
            .unwrap();
    }
    for _ in 0..CRASH_APPENDS {
        assert!(matches!(
            h.next(),
            Completion::Appended {
                outcome: AppendOutcome::Stored,
                ..
            }
        ));
    }
    println!("{CRASH_CHILD_APPENDED}");
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn acknowledged_appends_survive_sigkill(kind: Kind) {
    let db = Db::fresh(kind);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "store::tests::crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(CRASH_CHILD_DB, db.location())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let acknowledged = stdout
        .lines()
        .map_while(Result::ok)
        .any(|line| line.contains(CRASH_CHILD_APPENDED));
    child.kill().unwrap(); // SIGKILL: no destructor, no checkpoint, no clean close
    child.wait().unwrap();
    assert!(acknowledged, "the child never acknowledged its appends");
    let h = db.open();
    let (ids, more) = h.index("bob", "phone", 0, 1000);
    assert_eq!(ids, (1..=CRASH_APPENDS).collect::<Vec<_>>());
    assert!(!more);
    let bodies: Vec<Bytes> = h.fetch("alice", &ids).into_iter().map(|m| m.body).collect();
    assert_eq!(bodies.len(), ids.len());
    assert_eq!(bodies[41], Bytes::from("body of 42"));
    h.close();
}

/// `sqlite/testdata/v2.db` was written by the build before schema version 3 (main at
/// 48835e8: `switchboard serve`, then `loadtest chat --conns 4 --rate 10 --duration 2s
/// --user-prefix fx`, then its WAL checkpointed): a real database of the old version upgrades
/// at start, keeps every entry and position, goes on numbering, and purges by id.
#[test]
fn a_version_2_database_from_the_build_before_upgrades_and_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchboard.db");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/store/sqlite/testdata/v2.db"
        ),
        &path,
    )
    .unwrap();
    let read = |sql: &str| -> Vec<i64> {
        let conn = raw_connection(&path).unwrap();
        let mut stmt = conn.prepare(sql).unwrap();
        let rows = stmt.query_map([], |r| r.get(0)).unwrap();
        rows.map(Result::unwrap).collect()
    };
    let time_index = "SELECT count(*) FROM sqlite_master WHERE name = 'messages_by_time'";
    assert_eq!(read("SELECT version FROM schema_version"), [2]);
    assert_eq!(read(time_index), [1]);
    let entries: Vec<u64> = read("SELECT msg_id FROM inbox WHERE user = 'fx1' ORDER BY seq")
        .into_iter()
        .map(|id| id as u64)
        .collect();
    assert_eq!(entries.len(), 5, "the file as committed");
    let newest_ms = read("SELECT max(time_ms) FROM messages")[0] as u64;
    let h = sqlite_harness(SqliteConfig {
        retention: Duration::from_secs(100 * 365 * 24 * 3600),
        ..SqliteConfig::new(dir.path())
    });
    assert_eq!(h.index("fx1", "d", 0, 100), (entries.clone(), false));
    assert_eq!(h.fetch("fx1", &entries).len(), 5);
    // The sequence goes on from the old entries.
    let id = crate::logic::snowflake::first_id_at(now_ms()) + 1;
    assert_eq!(
        h.append(direct(id, "fx0", "fx1", 1_000), &["fx1", "fx0"]),
        AppendOutcome::Stored
    );
    let (ids, _, cursor) = h.list_from("fx1", "d", InboxPoint::Seq(0), 100);
    assert_eq!(ids[..5], entries[..]);
    assert_eq!((ids[5], cursor), (id, 6));
    // The old messages are found by id, without the time index; the new one stays.
    h.done(StoreRequest::Purge {
        ticket: 1,
        older_than_ms: newest_ms + 1,
    });
    assert_eq!(h.index("fx1", "d", 0, 100), (vec![id], false));
    h.close();
    assert_eq!(read("SELECT version FROM schema_version"), [3]);
    assert_eq!(read(time_index), [0]);
    assert_eq!(read("SELECT count(*) FROM messages"), [1]);
    let conn = raw_connection(&path).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

mod batches;
mod cursor;
mod postgres;

on_both_engines!(
    append_then_sync_index_fetch_and_ack_per_device,
    a_resend_returns_the_original_and_stores_nothing,
    a_group_message_is_stored_once_with_one_inbox_row_per_member,
    a_user_listed_twice_gets_one_entry,
    fetch_never_returns_another_users_message,
    the_index_pages_with_more,
    purge_removes_old_messages_keeps_new_and_never_syncs_them,
    the_thread_purges_past_retention_by_itself_at_start,
    groups_are_created_joined_quit_and_loaded_after_reopen,
    acknowledged_appends_survive_sigkill,
);
