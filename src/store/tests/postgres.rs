//! What only the PostgreSQL engine has: time partitions dropped whole, a unique key per
//! partition, migrations, two writers on one database (the per-inbox counter row), a
//! connection cut under the writer (BUSY, then a reconnect by itself), and a database that
//! cannot be reached at start.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::*;

fn db() -> (Db, String) {
    let Db::Postgres(url) = Db::fresh(Kind::Postgres) else {
        unreachable!()
    };
    (Db::Postgres(url.clone()), url)
}

fn psql(url: &str, sql: &str) -> String {
    pg_server::server().psql(pg_server::database_of(url), sql)
}

const PARTITIONS: &str = "SELECT count(*) FROM pg_inherits WHERE inhparent = 'messages'::regclass";

#[test]
fn a_purge_drops_whole_day_partitions_and_each_partition_keeps_the_key_unique() {
    let (db, url) = db();
    let h = db.open_with(Settings {
        retention: Duration::from_secs(365 * 24 * 3600),
        ..Settings::default()
    });
    let day = 24 * 3600 * 1000;
    let now = now_ms();
    for (id, days_ago) in [(1, 20), (2, 20), (3, 10), (4, 0)] {
        let message = StoredMessage {
            time_ms: now - days_ago * day,
            ..direct(id, "alice", "bob", id)
        };
        assert_eq!(h.append(message, &["bob"]), AppendOutcome::Stored);
    }
    // Today's and tomorrow's (made ahead) and the two old days'.
    let before: i64 = psql(&url, PARTITIONS).parse().unwrap();
    assert!(before >= 4, "{before} partitions");
    // Every partition has its own unique index on the idempotency key.
    let unique: i64 = psql(
        &url,
        "SELECT count(*) FROM pg_indexes WHERE tablename LIKE 'messages_p%'
         AND indexdef LIKE 'CREATE UNIQUE INDEX%(from_user, client_msg_id)%'",
    )
    .parse()
    .unwrap();
    assert_eq!(unique, before);
    h.done(StoreRequest::Purge {
        ticket: 1,
        older_than_ms: now - 5 * day,
    });
    assert_eq!(h.index("bob", "d", 0, 10), (vec![4], false));
    // The two old days are gone as tables, not as deleted rows.
    let after: i64 = psql(&url, PARTITIONS).parse().unwrap();
    assert_eq!(after, before - 2);
    assert_eq!(db.count("SELECT count(*) FROM messages"), 1);
    assert_eq!(db.count("SELECT count(*) FROM inbox"), 1);
    h.close();
}

#[test]
fn migrations_are_versioned_applied_once_and_a_newer_schema_is_refused() {
    let (db, url) = db();
    db.open().close();
    db.open().close();
    assert_eq!(psql(&url, "SELECT count(*) FROM schema_version"), "1");
    assert_eq!(psql(&url, "SELECT version FROM schema_version"), "1");
    psql(&url, "UPDATE schema_version SET version = 99");
    let (tx, _rx) = crossbeam_channel::unbounded();
    let error = PostgresStore::open(PostgresConfig::new(url), tx).unwrap_err();
    assert_eq!(
        error,
        StoreError::SchemaTooNew {
            found: 99,
            known: 1
        }
    );
}

#[test]
fn a_database_that_cannot_be_reached_is_a_clear_error_at_start() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (tx, _rx) = crossbeam_channel::unbounded();
    let config = PostgresConfig {
        timeout: Duration::from_secs(2),
        ..PostgresConfig::new(format!("postgres://nobody@127.0.0.1:{port}/none"))
    };
    let error = PostgresStore::open(config, tx).unwrap_err();
    assert!(matches!(error, StoreError::Unavailable { .. }), "{error:?}");
    assert!(error.to_string().contains("refused"), "{error}");
    let (tx, _rx) = crossbeam_channel::unbounded();
    let error = PostgresStore::open(PostgresConfig::new("postgres://h:port/db"), tx).unwrap_err();
    assert!(matches!(error, StoreError::BadLocation { .. }), "{error:?}");
}

/// Two writers (two stores on one database, as two nodes would be) append to one inbox at
/// once, while a reader pages through it by cursor and acknowledges as it goes. A cursor-based
/// reader misses a message only if an entry can become visible below a cursor it already
/// holds; the counter row makes each writer wait for the other's commit, so none can.
#[test]
fn two_writers_on_one_inbox_never_let_a_reader_pass_over_an_entry() {
    const EACH: u64 = 400;
    let (db, url) = db();
    let writers: Vec<Harness> = (0..2).map(|_| db.open()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let url = url.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let h = Db::from_location(&url);
            let (mut cursor, mut seen) = (0, Vec::new());
            loop {
                let done = stop.load(Ordering::Acquire);
                let (ids, _, next) = h.list("bob", "phone", cursor, 50);
                seen.extend(ids);
                h.ack("bob", "phone", InboxPoint::Seq(next)).unwrap();
                cursor = next;
                if done && h.list("bob", "phone", cursor, 50).0.is_empty() {
                    break;
                }
            }
            h.close();
            seen
        })
    };
    // Each writer pipelines its appends so both have batches in flight at once.
    std::thread::scope(|s| {
        for (w, h) in writers.iter().enumerate() {
            s.spawn(move || {
                let base = (w as u64 + 1) * 1_000_000;
                for i in 0..EACH {
                    let message = direct(base + i, &format!("sender{w}"), "bob", i);
                    h.store.submit(append_request(message, &["bob"])).unwrap();
                }
                for _ in 0..EACH {
                    let completion = h.next();
                    assert!(
                        matches!(
                            completion,
                            Completion::Appended {
                                outcome: AppendOutcome::Stored,
                                ..
                            }
                        ),
                        "{completion:?}"
                    );
                }
            });
        }
    });
    stop.store(true, Ordering::Release);
    let mut seen = reader.join().unwrap();
    let total = 2 * EACH as usize;
    assert_eq!(seen.len(), total, "the reader saw each entry exactly once");
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), total);
    // The sequence has no gap: 1..=total.
    assert_eq!(
        psql(
            &url,
            "SELECT min(seq) || ' ' || max(seq) || ' ' || count(DISTINCT seq) FROM inbox"
        ),
        format!("1 {total} {total}")
    );
    for h in writers {
        h.close();
    }
}

/// PostgreSQL ends the writer's connection (as a restart or a failover would): requests are
/// answered BUSY or Unavailable while it is away, never lost silently, and the writer
/// reconnects by itself; what was acknowledged before is all there.
#[test]
fn a_cut_connection_is_answered_busy_and_the_writer_reconnects_by_itself() {
    let (db, url) = db();
    let h = db.open();
    for id in 1..=10 {
        assert_eq!(
            h.append(direct(id, "alice", "bob", id), &["bob"]),
            AppendOutcome::Stored
        );
    }
    let Engine::Postgres(store) = &h.store else {
        unreachable!()
    };
    let name = pg_server::database_of(&url).to_owned();
    psql(
        "postgres",
        &format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = '{name}' AND application_name = 'switchboard'"
        ),
    );
    // The first request after the cut finds the connection gone.
    let (mut stored, mut refused) = (Vec::new(), 0);
    let deadline = Instant::now() + WAIT;
    let mut id = 11;
    while stored.len() < 5 {
        assert!(Instant::now() < deadline, "never reconnected");
        match h
            .store
            .submit(append_request(direct(id, "alice", "bob", id), &["bob"]))
        {
            Err(SubmitError::Busy(_)) => refused += 1,
            Err(other) => panic!("{other:?}"),
            Ok(()) => match h.next() {
                Completion::Appended {
                    outcome: AppendOutcome::Stored,
                    ..
                } => stored.push(id),
                Completion::Failed {
                    error: StoreError::Unavailable { .. },
                    ..
                } => refused += 1,
                other => panic!("{other:?}"),
            },
        }
        id += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(refused >= 1, "the cut went unnoticed");
    assert!(store.is_up());
    let (ids, _) = h.index("bob", "d", 0, 100);
    let mut want: Vec<u64> = (1..=10).collect();
    want.extend(&stored);
    assert_eq!(ids, want, "everything acknowledged, in order, nothing else");
    h.close();
}

/// A database that stops answering (a lock held elsewhere, a hung server): the batch fails as
/// Unavailable after the timeout instead of holding the writer for good, new requests are
/// BUSY, and once the database answers again the writer is back by itself.
#[test]
fn a_batch_past_the_timeout_is_unavailable_and_the_writer_comes_back() {
    let (db, url) = db();
    let (tx, completions) = crossbeam_channel::unbounded();
    let config = PostgresConfig {
        timeout: Duration::from_millis(500),
        ..PostgresConfig::new(url)
    };
    let metrics = config.metrics.clone();
    let (store, thread) = PostgresStore::open(config, tx).unwrap();
    let h = Harness {
        store: Engine::Postgres(store.clone()),
        thread,
        completions,
        metrics,
    };
    assert_eq!(
        h.append(direct(1, "alice", "bob", 1), &["bob"]),
        AppendOutcome::Stored
    );
    let blocker = super::batches::Blocker::hold(&db);
    let started = Instant::now();
    let completion = h.call(append_request(direct(2, "alice", "bob", 2), &["bob"]));
    assert!(
        matches!(
            completion,
            Completion::Failed {
                error: StoreError::Unavailable { .. },
                ..
            }
        ),
        "{completion:?}"
    );
    assert!(started.elapsed() < WAIT);
    assert!(!store.is_up());
    assert!(matches!(
        h.store
            .submit(append_request(direct(3, "alice", "bob", 3), &["bob"])),
        Err(SubmitError::Busy(_))
    ));
    drop(blocker);
    let deadline = Instant::now() + WAIT;
    while !store.is_up() {
        assert!(Instant::now() < deadline, "the writer never came back");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Nothing of the timed-out batch was stored: message 2 is new, not a duplicate.
    assert_eq!(
        h.append(direct(2, "alice", "bob", 2), &["bob"]),
        AppendOutcome::Stored
    );
    assert_eq!(h.index("bob", "d", 0, 10), (vec![1, 2], false));
    drop(store);
    h.close();
}

/// PostgreSQL's own `statement_timeout` cancels the batch's statement while a lock is held
/// elsewhere: the batch fails as TimedOut (answered BUSY, `is_transient`), the connection
/// stays up (no reconnect, new requests are taken), nothing of the batch was stored, and once
/// the lock is gone the same message is stored as new, beside what was acknowledged before.
#[test]
fn a_statement_timeout_is_timed_out_busy_and_nothing_of_the_batch_is_stored() {
    let (db, url) = db();
    let name = pg_server::database_of(&url).to_owned();
    // Before the store connects: it applies to the store's session from its start.
    psql(
        "postgres",
        &format!("ALTER DATABASE {name} SET statement_timeout = '1s'"),
    );
    let h = db.open();
    let Engine::Postgres(store) = &h.store else {
        unreachable!()
    };
    assert_eq!(
        h.append(direct(1, "alice", "bob", 1), &["bob"]),
        AppendOutcome::Stored
    );
    let blocker = super::batches::Blocker::hold(&db);
    let completion = h.call(append_request(direct(2, "alice", "bob", 2), &["bob"]));
    let Completion::Failed { error, .. } = &completion else {
        panic!("expected a failure, got {completion:?}");
    };
    assert!(
        matches!(error, StoreError::TimedOut { code, .. } if &**code == "57014"),
        "{error:?}"
    );
    assert!(error.is_transient(), "answered BUSY");
    assert!(error
        .to_string()
        .contains("nothing of this batch was stored"));
    // The connection is fine: no reconnect, the writer takes requests at once.
    assert!(store.is_up());
    drop(blocker);
    assert_eq!(
        h.append(direct(2, "alice", "bob", 2), &["bob"]),
        AppendOutcome::Stored,
        "nothing of the cancelled batch was stored"
    );
    assert_eq!(h.index("bob", "d", 0, 10), (vec![1, 2], false));
    h.close();
}
