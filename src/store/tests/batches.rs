//! Batches through the store thread: push-back when the queue is full, a lock held past the
//! busy timeout (SQLite), a failing request beside good ones, a failure after writing rolling
//! back the whole batch, and the thread serving its queue when every handle is gone.

use super::*;

/// Another connection holding what the store thread's next batch needs: SQLite's write lock
/// (its `BEGIN IMMEDIATE` waits), or PostgreSQL's `inboxes` table (every append and sync
/// reads or bumps a counter row there). This is how the tests pause the thread without a
/// hook in the store; dropping it lets the thread go on.
#[allow(dead_code)] // held, never read: dropping it is the point
pub(super) enum Blocker {
    Sqlite(Connection),
    Postgres(tokio::runtime::Runtime, tokio_postgres::Client),
}

impl Blocker {
    pub(super) fn hold(db: &Db) -> Blocker {
        match db {
            Db::Sqlite(_) => Blocker::Sqlite(hold_write_lock(&db.sqlite_path())),
            Db::Postgres(url) => {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let client = runtime.block_on(async {
                    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                        .await
                        .unwrap();
                    tokio::spawn(connection);
                    client
                        .batch_execute("BEGIN; LOCK TABLE inboxes IN ACCESS EXCLUSIVE MODE")
                        .await
                        .unwrap();
                    client
                });
                Blocker::Postgres(runtime, client)
            }
        }
    }
}

/// A second connection holding SQLite's write lock.
fn hold_write_lock(path: &Path) -> Connection {
    let conn = super::raw_connection(path).unwrap();
    conn.busy_timeout(WAIT).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    conn
}

/// Queues `requests` so that the store thread takes them as one batch: while another
/// connection blocks it, the thread takes a first request (a SYNC_ACK, ticket 1000) and
/// waits, and `requests` queue up behind it.
fn queue_as_one_batch(db: &Db, h: &Harness, requests: Vec<StoreRequest>) {
    let blocker = Blocker::hold(db);
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
    drop(blocker);
}

fn a_full_queue_is_pushed_back_as_busy(kind: Kind) {
    let db = Db::fresh(kind);
    let h = db.open_with(Settings {
        queue: 4,
        max_batch: 2,
        ..Settings::default()
    });
    let lock = Blocker::hold(&db);
    let mut accepted = 0;
    let busy = loop {
        let id = accepted + 1;
        match h
            .store
            .submit(append_request(direct(id, "a", "b", id), &["b"]))
        {
            Ok(()) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted <= 10, "the queue never filled");
    };
    // At most one batch left the queue before the thread blocked on the lock.
    assert!((4..=6).contains(&accepted), "accepted {accepted}");
    // Full when the submit was refused; the thread may since have taken the rest of the batch
    // it had started (max_batch 2: one more request) before blocking on the lock.
    assert!(
        (3..=4).contains(&h.store.queue_len()),
        "queue {}",
        h.store.queue_len()
    );
    assert!(matches!(busy, SubmitError::Busy(_)));
    assert_eq!(busy.into_request().ticket(), accepted + 1);
    drop(lock);
    for _ in 0..accepted {
        assert!(matches!(
            h.next(),
            Completion::Appended {
                outcome: AppendOutcome::Stored,
                ..
            }
        ));
    }
    assert_eq!(h.store.queue_len(), 0);
    h.close();
}

#[test]
fn a_lock_held_past_the_busy_timeout_fails_the_batch_and_stores_nothing() {
    let db = Db::fresh(Kind::Sqlite);
    let config = SqliteConfig {
        busy_timeout: Duration::from_millis(100),
        ..SqliteConfig::new(db.sqlite_path().parent().unwrap())
    };
    let h = sqlite_harness(config);
    let lock = hold_write_lock(&db.sqlite_path());
    for id in 1..=3 {
        h.store
            .submit(append_request(direct(id, "a", "b", id), &["b"]))
            .unwrap();
    }
    h.store
        .submit(StoreRequest::Purge {
            ticket: 50,
            older_than_ms: 1,
        })
        .unwrap();
    let mut got: Vec<Completion> = (0..4).map(|_| h.next()).collect();
    got.sort_by_key(Completion::ticket);
    let failed = |ticket| Completion::Failed {
        ticket,
        error: StoreError::Locked,
    };
    // The purge cannot run either, and says so rather than leaving its ticket unanswered.
    assert_eq!(got, [failed(1), failed(2), failed(3), failed(50)]);
    drop(lock);
    // Nothing was stored: the same messages are new, not duplicates.
    assert_eq!(
        h.append(direct(1, "a", "b", 1), &["b"]),
        AppendOutcome::Stored
    );
    assert_eq!(h.index("b", "d", 0, 10), (vec![1], false));
    h.close();
}

fn one_failing_request_leaves_the_rest_of_its_batch(kind: Kind) {
    let db = Db::fresh(kind);
    let h = db.open();
    let batch = vec![
        append_request(direct(1, "a", "b", 1), &["b"]),
        StoreRequest::Append {
            ticket: 2,
            message: direct(1, "a", "b", 2),
            inboxes: vec!["b".into(), "c".into()],
        },
        StoreRequest::GroupJoin {
            ticket: 3,
            group_id: 9,
            user: "b".into(),
        },
        StoreRequest::Append {
            ticket: 4,
            message: direct(u64::MAX, "a", "b", 4),
            inboxes: vec!["b".into()],
        },
        append_request(direct(5, "a", "b", 5), &["b"]),
        StoreRequest::SyncIndex {
            ticket: 6,
            user: "b".into(),
            device: "d".into(),
            after: InboxPoint::Seq(0),
            floor_id: 0,
            limit: 10,
        },
        StoreRequest::Append {
            ticket: 7,
            message: direct(7, "a", "b", 1),
            inboxes: vec!["b".into()],
        },
    ];
    queue_as_one_batch(&db, &h, batch);
    assert_eq!(h.next(), Completion::Done { ticket: 1000 });
    let got: Vec<Completion> = (0..7).map(|_| h.next()).collect();
    let Completion::Appended {
        ticket: 7,
        outcome: AppendOutcome::Duplicate { id: 1, .. },
    } = got[6]
    else {
        panic!(
            "a resend within the batch sees the earlier append: {:?}",
            got[6]
        );
    };
    assert_eq!(
        got[..6],
        [
            Completion::Appended {
                ticket: 1,
                outcome: AppendOutcome::Stored
            },
            Completion::Failed {
                ticket: 2,
                error: StoreError::MessageIdTaken { id: 1 }
            },
            Completion::Failed {
                ticket: 3,
                error: StoreError::UnknownGroup { id: 9 }
            },
            Completion::Failed {
                ticket: 4,
                error: StoreError::IdOutOfRange { id: u64::MAX }
            },
            Completion::Appended {
                ticket: 5,
                outcome: AppendOutcome::Stored
            },
            // Reads see the batch's earlier writes, and nothing of the failed ones.
            Completion::SyncIndex {
                ticket: 6,
                ids: vec![1, 5],
                more: false,
                cursor: 2,
            },
        ]
    );
    // The failed append left no inbox row behind for "c".
    assert_eq!(h.index("c", "d", 0, 10), (vec![], false));
    h.close();
}

fn a_request_that_fails_after_writing_rolls_back_its_whole_batch(kind: Kind) {
    let db = Db::fresh(kind);
    let h = db.open();
    // A trigger stands in for what can break an append halfway (an I/O error, a full disk):
    // the message row is written, then its second inbox row fails.
    db.execute(
        "CREATE TRIGGER poison BEFORE INSERT ON inbox WHEN NEW.user = 'poison'
         BEGIN SELECT RAISE(ABORT, 'poisoned inbox'); END;",
        "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
             IF NEW.user_name = 'poison' THEN RAISE EXCEPTION 'poisoned inbox'; END IF;
             RETURN NEW; END $$;
         CREATE TRIGGER poison BEFORE INSERT ON inbox FOR EACH ROW EXECUTE FUNCTION poison();",
    );
    // SQLite's half-written request spoils the batch; PostgreSQL's aborts its transaction.
    let batch_failed = |error: &StoreError| match kind {
        Kind::Sqlite => matches!(error, StoreError::FailedAfterWriting { .. }),
        Kind::Postgres => matches!(error, StoreError::Postgres { code, .. } if &**code == "P0001"),
    };
    assert_eq!(
        h.append(direct(1, "a", "b", 1), &["b"]),
        AppendOutcome::Stored
    );
    // Either engine's writer counts each batch (its time, its size) in the one metrics block
    // `/metrics` reads, before it completes the batch's requests.
    let m = &h.metrics;
    assert_eq!(m.commit_seconds.count(), 1);
    assert_eq!((m.batch_requests.count(), m.batch_requests.sum()), (1, 1.0));
    assert_eq!(m.batches_failed.get(), 0);
    queue_as_one_batch(
        &db,
        &h,
        vec![
            append_request(direct(2, "a", "b", 2), &["b"]),
            append_request(direct(3, "a", "poison", 3), &["b", "poison"]),
        ],
    );
    // On a busy machine the ack may not have been taken alone, and then it shares the fate of
    // the batch it joined.
    let first = h.next();
    assert!(
        matches!(first, Completion::Done { ticket: 1000 })
            || matches!(&first, Completion::Failed { ticket: 1000, error } if batch_failed(error)),
        "{first:?}"
    );
    for ticket in [2, 3] {
        let completion = h.next();
        assert!(
            matches!(
                &completion,
                Completion::Failed { ticket: t, error } if *t == ticket && batch_failed(error)
            ),
            "request {ticket}: {completion:?}"
        );
    }
    // The ack alone and then the two appends, or all three in one batch: one batch failed,
    // and every request was counted in a timed batch.
    assert_eq!(m.batches_failed.get(), 1);
    assert_eq!(m.batch_requests.sum(), 4.0);
    assert_eq!(m.commit_seconds.count(), m.batch_requests.count());
    assert!(m.commit_seconds.sum() > 0.0, "commits take time");
    // Nothing of the failed batch stayed: not message 3's row, which would make a resend look
    // like a duplicate of a message nobody can sync, and not message 2, which shared its batch.
    assert_eq!(h.index("b", "d", 0, 10), (vec![1], false));
    assert_eq!(db.count("SELECT count(*) FROM messages"), 1);
    db.execute("DROP TRIGGER poison", "DROP TRIGGER poison ON inbox");
    assert_eq!(
        h.append(direct(3, "a", "poison", 3), &["b", "poison"]),
        AppendOutcome::Stored
    );
    assert_eq!(
        h.append(direct(2, "a", "b", 2), &["b"]),
        AppendOutcome::Stored
    );
    // Listed in commit order (3 committed before 2), which is what keeps a late commit from
    // being passed over.
    assert_eq!(h.index("b", "d", 0, 10), (vec![1, 3, 2], false));
    h.close();
}

fn dropping_every_handle_serves_the_queue_then_exits(kind: Kind) {
    let db = Db::fresh(kind);
    let h = db.open();
    for id in 1..=200 {
        h.store
            .submit(append_request(direct(id, "a", "b", id), &["b"]))
            .unwrap();
    }
    let Harness {
        store,
        thread,
        completions,
        ..
    } = h;
    drop(store);
    thread.join().unwrap();
    let stored = completions
        .try_iter()
        .filter(|c| {
            matches!(
                c,
                Completion::Appended {
                    outcome: AppendOutcome::Stored,
                    ..
                }
            )
        })
        .count();
    assert_eq!(stored, 200);
    assert_eq!(db.count("SELECT count(*) FROM messages"), 200);
}

on_both_engines!(
    a_full_queue_is_pushed_back_as_busy,
    one_failing_request_leaves_the_rest_of_its_batch,
    a_request_that_fails_after_writing_rolls_back_its_whole_batch,
    dropping_every_handle_serves_the_queue_then_exits,
);

/// A WAL frame: SQLite's 24-byte frame header and a 4 KiB page.
const FRAME: u64 = 4096 + 24;

/// A store on `db` whose checkpoint thread starts at `pages` WAL frames, committing each
/// request at once (no commit delay), so that every append is a commit of its own.
fn checkpointing(db: &Db, pages: u32) -> SqliteConfig {
    SqliteConfig {
        checkpoint_pages: pages,
        commit_delay: Duration::ZERO,
        ..SqliteConfig::new(db.sqlite_path().parent().unwrap())
    }
}

/// The size of `db`'s WAL file.
fn wal_bytes(db: &Db) -> u64 {
    std::fs::metadata(db.sqlite_path().with_extension("db-wal"))
        .unwrap()
        .len()
}

/// With `checkpoint_pages` above 0 the checkpoint thread checkpoints once the WAL holds that
/// many frames (SQLite's autocheckpoint, inside a commit, is off): each one is timed in the
/// metrics, the log starts over instead of growing, and everything committed is still there.
/// At 0, SQLite's own autocheckpoint (1,000 pages) runs and the thread's never.
#[test]
fn the_checkpoint_thread_checkpoints_once_the_wal_holds_its_threshold() {
    for pages in [0, 16] {
        let db = Db::fresh(Kind::Sqlite);
        let h = sqlite_harness(checkpointing(&db, pages));
        // One commit each, a few frames each: far past 16 frames, short of 1,000.
        for id in 1..=150 {
            let to = format!("user{}", id % 40);
            assert_eq!(
                h.append(direct(id, "alice", &to, id), &[&to]),
                AppendOutcome::Stored
            );
        }
        let commits = h.metrics.commit_seconds.count();
        let checkpoints = h.metrics.checkpoint_seconds.count();
        let wal = wal_bytes(&db);
        if pages == 0 {
            assert_eq!(checkpoints, 0);
            assert!(wal > 300 * FRAME, "the WAL grew to {wal} bytes");
        } else {
            assert!(checkpoints >= 10, "{checkpoints} checkpoints");
            assert!(
                checkpoints < commits / 2,
                "{checkpoints} for {commits} commits"
            );
            // The log started over after them: it never held much more than the threshold
            // plus what commits added during one checkpoint (on the checkpoint thread, beside
            // them), far short of the 300-odd frames the same commits leave without.
            assert!(wal < 150 * FRAME, "the WAL grew to {wal} bytes");
        }
        h.close();
        let h = db.open();
        let (ids, _) = h.index("user1", "d", 0, 100);
        assert_eq!(ids, [1, 41, 81, 121]);
        h.close();
    }
}

/// Under commits that never pause, every pass of the checkpoint thread sees the log grow during
/// it, and answers "all copied" all the same: the checkpoint thread copies again, writing out
/// what it copied, and leaves the few frames left to the store thread, so the log starts over
/// near the threshold. The build that took a pass's "all copied" for a finished log left each
/// such checkpoint to the store thread's fallback at twice the threshold (a whole copy and its
/// fsync between two batches), and the WAL grew to it.
#[test]
fn under_steady_commits_the_log_starts_over_near_the_threshold_not_at_the_fallback() {
    const PAGES: u32 = 1_000;
    let db = Db::fresh(Kind::Sqlite);
    let h = sqlite_harness(checkpointing(&db, PAGES));
    let mut id = 0;
    while h.metrics.checkpoint_seconds.count() < 5 {
        id += 1;
        let to = format!("user{}", id % 400);
        assert_eq!(
            h.append(direct(id, "alice", &to, id), &[&to]),
            AppendOutcome::Stored
        );
        assert!(id < 50_000, "no fifth checkpoint after {id} commits");
    }
    let wal = wal_bytes(&db);
    assert!(
        wal < u64::from(PAGES) * 3 / 2 * FRAME,
        "the WAL grew to {} frames",
        wal / FRAME
    );
    assert!(h.metrics.checkpoint_writeback_seconds.count() >= 5);
    h.close();
    let h = db.open();
    let (ids, _) = h.index("user1", "d", 0, 1000);
    assert_eq!(ids.len() as u64, id.div_ceil(400));
    h.close();
}

/// A checkpoint in progress holds no request: while the checkpoint thread is held at its
/// checkpoint, the store thread goes on committing (on the build that checkpointed on the
/// store thread, the first append here waits out `WAIT` and the test fails). Let go, the
/// checkpoint copies the whole log and the next commit starts it over.
#[test]
fn commits_go_on_while_the_checkpoint_thread_copies_and_the_log_then_starts_over() {
    const PAGES: u32 = 200;
    let db = Db::fresh(Kind::Sqlite);
    let (entered_tx, entered) = crossbeam_channel::bounded(1);
    let (go, go_rx) = crossbeam_channel::bounded(1);
    let config = SqliteConfig {
        checkpoint_gate: Some((entered_tx, go_rx)),
        ..checkpointing(&db, PAGES)
    };
    let h = sqlite_harness(config);
    fn append(h: &Harness, id: &mut u64) {
        *id += 1;
        let to = format!("user{}", *id % 40);
        assert_eq!(
            h.append(direct(*id, "alice", &to, *id), &[&to]),
            AppendOutcome::Stored
        );
    }
    let mut id = 0;
    // A few frames per commit: the threshold is crossed within a few hundred.
    while entered.try_recv().is_err() {
        append(&h, &mut id);
        assert!(id < 2_000, "no checkpoint after {id} commits");
    }
    let wal_frames = |path: &Path| -> i64 {
        super::raw_connection(path)
            .unwrap()
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
            .unwrap()
    };
    // The checkpoint is under way (held): commits are acknowledged all the same, short of the
    // store thread's own fallback at twice the threshold.
    for _ in 0..20 {
        append(&h, &mut id);
    }
    assert_eq!(h.metrics.checkpoint_seconds.count(), 0);
    assert_eq!(h.metrics.store_thread_checkpoint_seconds.count(), 0);
    go.send(()).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while h.metrics.checkpoint_seconds.count() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the checkpoint never ended"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    append(&h, &mut id);
    let frames = wal_frames(&db.sqlite_path());
    assert!(frames < 50, "the log did not start over: {frames} frames");
    // The store thread's one checkpoint, after the batch that found the checkpoint thread
    // done (its acks go out first, so counted once the thread has stopped), copied only that
    // batch's frames: the bulk was copied beside the commits, above.
    let metrics = h.metrics.clone();
    h.close();
    assert_eq!(metrics.store_thread_checkpoint_seconds.count(), 1);
    let h = db.open();
    let (ids, _) = h.index("user1", "d", 0, 1000);
    assert_eq!(ids.first(), Some(&1));
    assert_eq!(ids.len() as u64, id.div_ceil(40));
    h.close();
}
