//! The store through its public handle, on real SQLite files in a temporary directory: what
//! the logic core relies on (sync per device, dedupe, fan-out rows, isolation, paging, purge,
//! groups across a restart, durability across SIGKILL). Batches (push-back, failures, rollback,
//! shutdown) are in `batches.rs`, inbox sequences and cursors in `cursor.rs`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use crossbeam_channel::Receiver;
use rusqlite::Connection;

use super::*;

const WAIT: Duration = Duration::from_secs(20);

struct Harness {
    store: SqliteStore,
    thread: StoreThread,
    completions: Receiver<Completion>,
}

impl Harness {
    fn open(config: SqliteConfig) -> Harness {
        let (tx, completions) = crossbeam_channel::unbounded();
        let (store, thread) = SqliteStore::open(config, tx).expect("open store");
        Harness {
            store,
            thread,
            completions,
        }
    }

    fn in_dir(dir: &Path) -> Harness {
        Harness::open(SqliteConfig::new(dir))
    }

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

fn count(path: &Path, sql: &str) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row(sql, [], |r| r.get(0))
        .unwrap()
}

/// A second connection holding the write lock: the store thread blocks in its next
/// `BEGIN IMMEDIATE`, which is how the tests pause it without a hook in the store.
fn hold_write_lock(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.busy_timeout(WAIT).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    conn
}

/// Queues `requests` so that the store thread takes them as one batch: while another
/// connection holds the write lock, the thread takes a first request (a SYNC_ACK, ticket 1000)
/// and blocks on the lock, and `requests` queue up behind it.
fn queue_as_one_batch(h: &Harness, requests: Vec<StoreRequest>) {
    let lock = hold_write_lock(h.store.database_path());
    h.store
        .submit(StoreRequest::SyncAck {
            ticket: 1000,
            user: "b".into(),
            device: "d".into(),
            upto: InboxPoint::Seq(0),
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    for request in requests {
        h.store.submit(request).unwrap();
    }
    drop(lock);
}

#[test]
fn append_then_sync_index_fetch_and_ack_per_device() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::in_dir(dir.path());
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

#[test]
fn a_resend_returns_the_original_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::in_dir(dir.path());
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
    assert_eq!(
        count(
            &dir.path().join("switchboard.db"),
            "SELECT count(*) FROM messages"
        ),
        2
    );
}

#[test]
fn a_group_message_is_stored_once_with_one_inbox_row_per_member() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::in_dir(dir.path());
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
    let path = h.store.database_path().to_path_buf();
    h.close();
    assert_eq!(count(&path, "SELECT count(*) FROM messages"), 1);
    assert_eq!(
        count(&path, "SELECT count(*) FROM inbox WHERE msg_id = 100"),
        4
    );
}

#[test]
fn fetch_never_returns_another_users_message() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::in_dir(dir.path());
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

#[test]
fn the_index_pages_with_more() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::in_dir(dir.path());
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

#[test]
fn purge_removes_old_messages_keeps_new_and_never_syncs_them() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::open(SqliteConfig {
        retention: Duration::from_secs(365 * 24 * 3600),
        ..SqliteConfig::new(dir.path())
    });
    let now = now_ms();
    let day = 24 * 3600 * 1000;
    // More old messages than one purge chunk, so the purge takes several transactions.
    let old: Vec<u64> = (1..=(super::purge::PURGE_CHUNK as u64 * 2 + 10)).collect();
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
    let path = h.store.database_path().to_path_buf();
    h.close();
    assert_eq!(count(&path, "SELECT count(*) FROM messages"), 2);
    assert_eq!(count(&path, "SELECT count(*) FROM inbox"), 4);
}

#[test]
fn the_thread_purges_past_retention_by_itself_at_start() {
    let dir = tempfile::tempdir().unwrap();
    // Written under a year's retention, so only the reopened store (7 days) can purge it.
    let h = Harness::open(SqliteConfig {
        retention: Duration::from_secs(365 * 24 * 3600),
        ..SqliteConfig::new(dir.path())
    });
    let stale = StoredMessage {
        time_ms: now_ms() - 8 * 24 * 3600 * 1000,
        ..direct(1, "alice", "bob", 1)
    };
    h.append(stale, &["bob"]);
    h.append(direct(2, "alice", "bob", 2), &["bob"]);
    assert_eq!(h.index("bob", "d", 0, 10), (vec![1, 2], false));
    h.close();
    let h = Harness::in_dir(dir.path());
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

#[test]
fn groups_are_created_joined_quit_and_loaded_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::in_dir(dir.path());
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
    let h = Harness::in_dir(dir.path());
    assert_eq!(h.store.load_groups().unwrap(), expected);
    h.close();
}

const CRASH_CHILD_DIR: &str = "SWITCHBOARD_STORE_CRASH_CHILD_DIR";
const CRASH_CHILD_APPENDED: &str = "store crash child: all appends acknowledged";
const CRASH_APPENDS: u64 = 300;

/// The child of `acknowledged_appends_survive_sigkill`: appends, waits for every `Appended`,
/// says so, and waits to be killed.
#[test]
#[ignore = "run as a child process by acknowledged_appends_survive_sigkill"]
fn crash_child() {
    let Ok(dir) = std::env::var(CRASH_CHILD_DIR) else {
        return;
    };
    let h = Harness::in_dir(Path::new(&dir));
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

#[test]
fn acknowledged_appends_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "store::tests::crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(CRASH_CHILD_DIR, dir.path())
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
    let h = Harness::in_dir(dir.path());
    let (ids, more) = h.index("bob", "phone", 0, 1000);
    assert_eq!(ids, (1..=CRASH_APPENDS).collect::<Vec<_>>());
    assert!(!more);
    let bodies: Vec<Bytes> = h.fetch("alice", &ids).into_iter().map(|m| m.body).collect();
    assert_eq!(bodies.len(), ids.len());
    assert_eq!(bodies[41], Bytes::from("body of 42"));
    h.close();
}

#[test]
fn a_database_that_refuses_wal_is_not_opened_and_says_so() {
    // An in-memory database answers `PRAGMA journal_mode = WAL` with "memory", as a
    // filesystem without shared memory would answer with something other than "wal".
    let error = schema::open_connection(
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

mod batches;
mod cursor;
