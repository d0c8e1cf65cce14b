//! The sync cursor: a sequence per inbox, assigned at commit. What the old rule (a position
//! by msg_id) lost with two writers, and what a cursor that never came from the inbox gets.

use super::*;

const SNOWFLAKE: u64 = 7_411_860_537_460_289_537;

impl Harness {
    /// The listing by cursor (SYNC_LIST): ids, more, and the cursor after them.
    pub(super) fn list(
        &self,
        user: &str,
        device: &str,
        after: u64,
        limit: u32,
    ) -> (Vec<u64>, bool, u64) {
        self.list_from(user, device, InboxPoint::Seq(after), limit)
    }

    pub(super) fn list_from(
        &self,
        user: &str,
        device: &str,
        after: InboxPoint,
        limit: u32,
    ) -> (Vec<u64>, bool, u64) {
        match self.try_list(user, device, after, limit) {
            Ok(listed) => listed,
            Err(error) => panic!("expected an index, got {error:?}"),
        }
    }

    pub(super) fn try_list(
        &self,
        user: &str,
        device: &str,
        after: InboxPoint,
        limit: u32,
    ) -> Result<(Vec<u64>, bool, u64), StoreError> {
        match self.call(StoreRequest::SyncIndex {
            ticket: 0,
            user: user.into(),
            device: device.into(),
            after,
            floor_id: 0,
            limit,
        }) {
            Completion::SyncIndex {
                ids, more, cursor, ..
            } => Ok((ids, more, cursor)),
            Completion::Failed { error, .. } => Err(error),
            other => panic!("expected an index, got {other:?}"),
        }
    }

    /// Acknowledges up to `upto` for `user`'s `device`; the store's refusal, if any.
    pub(super) fn ack(&self, user: &str, device: &str, upto: InboxPoint) -> Result<(), StoreError> {
        match self.call(StoreRequest::SyncAck {
            ticket: 0,
            user: user.into(),
            device: device.into(),
            upto,
        }) {
            Completion::Done { .. } => Ok(()),
            Completion::Failed { error, .. } => Err(error),
            other => panic!("expected Done, got {other:?}"),
        }
    }
}

/// Two writers, simulated: the id generator of one handed out 200, of the other 100, and 100
/// committed after a device had acknowledged 200.
fn a_lower_id_committed_after_a_higher_one_is_listed_where_the_old_rule_lost_it(kind: Kind) {
    let db = Db::fresh(kind);
    let h = db.open();
    h.append(direct(200, "alice", "bob", 1), &["bob"]);
    let (ids, more, cursor) = h.list("bob", "phone", 0, 10);
    assert_eq!((ids, more), (vec![200], false));
    h.ack("bob", "phone", InboxPoint::Seq(cursor)).unwrap();
    // A legacy device acknowledges by msg_id, as SYNC_ACK does.
    assert_eq!(h.index("bob", "tablet", 0, 10), (vec![200], false));
    h.ack("bob", "tablet", InboxPoint::Message(200)).unwrap();

    h.append(direct(100, "carol", "bob", 1), &["bob"]);

    // The old rule, ids above the acknowledged msg_id, on the same rows: 100 is never listed.
    let old_rule = db.count("SELECT count(*) FROM inbox WHERE {user} = 'bob' AND msg_id > 200");
    assert_eq!(old_rule, 0, "the old rule passes over the late commit");
    // By the inbox's sequence it comes next, for the cursor and the legacy device alike.
    let (ids, more, next) = h.list("bob", "phone", 0, 10);
    assert_eq!((ids, more), (vec![100], false));
    assert!(next > cursor, "{next} > {cursor}");
    assert_eq!(h.index("bob", "tablet", 0, 10), (vec![100], false));
    // Paging from the last cursor lists nothing more, and keeps the cursor.
    assert_eq!(h.list("bob", "phone", next, 10), (vec![], false, next));
    h.close();
}

fn cursors_page_in_commit_order_and_acks_never_move_back(kind: Kind) {
    let db = Db::fresh(kind);
    let h = db.open();
    for id in [30, 10, 20, 50, 40] {
        h.append(direct(id, "alice", "bob", id), &["bob", "alice"]);
    }
    let (first, more, c1) = h.list("bob", "phone", 0, 2);
    assert_eq!((first, more), (vec![30, 10], true));
    let (second, more, c2) = h.list("bob", "phone", c1, 2);
    assert_eq!((second, more), (vec![20, 50], true));
    h.ack("bob", "phone", InboxPoint::Seq(c2)).unwrap();
    h.ack("bob", "phone", InboxPoint::Seq(c1)).unwrap(); // smaller: changes nothing
    assert_eq!(h.list("bob", "phone", 0, 10).0, vec![40]);
    // A cursor behind the acknowledged position starts from the position.
    assert_eq!(h.list("bob", "phone", c1, 10).0, vec![40]);
    // Each inbox has its own sequence; the sender's holds the same entries.
    assert_eq!(h.list("alice", "phone", 0, 10).0, vec![30, 10, 20, 50, 40]);
    assert_eq!(h.list("carol", "phone", 0, 10), (vec![], false, 0));
    h.close();
}

fn a_cursor_the_inbox_never_gave_out_is_refused_and_changes_nothing(kind: Kind) {
    let db = Db::fresh(kind);
    let h = db.open();
    h.append(direct(1, "alice", "bob", 1), &["bob"]);
    h.append(direct(2, "alice", "bob", 2), &["bob"]);
    let ahead = StoreError::CursorAhead { cursor: 3, last: 2 };
    assert_eq!(
        h.try_list("bob", "phone", InboxPoint::Seq(3), 10),
        Err(ahead.clone())
    );
    assert_eq!(h.ack("bob", "phone", InboxPoint::Seq(3)), Err(ahead));
    // A msg_id where a cursor belongs (what a client of the old commands would keep).
    let old_kind = StoreError::CursorAhead {
        cursor: SNOWFLAKE,
        last: 2,
    };
    assert_eq!(
        h.ack("bob", "phone", InboxPoint::Seq(SNOWFLAKE)),
        Err(old_kind)
    );
    // An inbox that has nothing: every cursor but 0 is from somewhere else.
    assert_eq!(
        h.try_list("dan", "phone", InboxPoint::Seq(1), 10),
        Err(StoreError::CursorAhead { cursor: 1, last: 0 })
    );
    // Nothing was acknowledged by the refusals.
    assert_eq!(h.list("bob", "phone", 0, 10), (vec![1, 2], false, 2));
    h.close();
}

fn the_sequence_goes_on_after_a_purge_empties_the_inbox(kind: Kind) {
    let db = Db::fresh(kind);
    // Retention reaching before 1970: only the explicit purge below removes anything.
    let forever = Settings {
        retention: Duration::from_secs(100 * 365 * 24 * 3600),
        ..Settings::default()
    };
    let h = db.open_with(forever);
    // Stored a second into the ids' epoch: SQLite's purge finds old messages by id, and no
    // snowflake id is older than that.
    let epoch = crate::logic::snowflake::EPOCH_UNIX_MS;
    for id in 1..=2 {
        let old = StoredMessage {
            time_ms: epoch + 1_000,
            ..direct(id, "alice", "bob", id)
        };
        h.append(old, &["bob"]);
    }
    let (_, _, cursor) = h.list("bob", "phone", 0, 10);
    assert_eq!(cursor, 2);
    h.done(StoreRequest::Purge {
        ticket: 5,
        older_than_ms: epoch + 2_000,
    });
    assert_eq!(h.list("bob", "phone", 0, 10), (vec![], false, 0));
    // A restart forgets what the store thread remembered: the database must know.
    h.close();
    let h = db.open_with(forever);
    // A device that kept cursor 2 must still see the next message: the sequence is not reused.
    h.append(direct(3, "alice", "bob", 3), &["bob"]);
    assert_eq!(h.list("bob", "phone", cursor, 10), (vec![3], false, 3));
    h.close();
}

/// Two processes on one database, as while a restart hands the listeners over: appends to
/// the same inbox alternate between their writers, and every entry is kept under its own
/// sequence number (SQLite's writer remembered inbox ends; it must notice the other's commits).
fn two_writers_on_one_database_number_one_inbox_without_losing_entries(kind: Kind) {
    let db = Db::fresh(kind);
    let old = db.open();
    let new = db.open();
    let mut ids = Vec::new();
    for id in 1..=20u64 {
        let writer = if id % 3 == 0 { &old } else { &new };
        writer.append(direct(id, "alice", "bob", id), &["bob"]);
        ids.push(id);
    }
    for h in [&old, &new] {
        assert_eq!(h.list("bob", "phone", 0, 100), (ids.clone(), false, 20));
    }
    old.close();
    new.close();
}

on_both_engines!(
    two_writers_on_one_database_number_one_inbox_without_losing_entries,
    a_lower_id_committed_after_a_higher_one_is_listed_where_the_old_rule_lost_it,
    cursors_page_in_commit_order_and_acks_never_move_back,
    a_cursor_the_inbox_never_gave_out_is_refused_and_changes_nothing,
    the_sequence_goes_on_after_a_purge_empties_the_inbox,
);
