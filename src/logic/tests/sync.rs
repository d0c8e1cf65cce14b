//! SYNC_INDEX, SYNC_FETCH and SYNC_ACK: what the store is asked, what the client gets back,
//! retention, the one-packet bound, and store failures.

use std::time::Duration;

use bytes::Bytes;
use switchboard_protocol::{limits, Command, Request, ResponseBody, Status};

use super::{config, disk_full, Harness};
use crate::logic::{cursor, snowflake};
use crate::store::{self, Completion, InboxPoint, StoreError, StoreRequest, StoredMessage};

fn stored(id: u64, time_ms: u64, body_len: usize) -> StoredMessage {
    StoredMessage {
        id,
        time_ms,
        from: "bob".into(),
        target: store::Target::Direct("alice".into()),
        client_msg_id: id,
        body: Bytes::from(vec![b'x'; body_len]),
    }
}

#[test]
fn sync_index_asks_from_the_retention_floor_and_answers_with_the_ids() {
    let mut h = Harness::new();
    let alice = h.login("alice", "phone");
    let seq = h.request(alice, &Request::SyncIndex { after: 0, limit: 0 });
    let floor_ms = h.now_ms - config().retention.as_millis() as u64;
    let floor = snowflake::first_id_at(floor_ms) - 1;
    let ticket = match h.take() {
        StoreRequest::SyncIndex {
            ticket,
            user,
            device,
            after,
            floor_id,
            limit,
        } => {
            assert_eq!((&*user, &*device), ("alice", "phone"));
            assert_eq!(after, InboxPoint::Message(0));
            assert_eq!(
                floor_id, floor,
                "ids before the retention window are never listed"
            );
            assert_eq!(limit, u32::from(limits::sync_index_limit(0)));
            ticket
        }
        other => panic!("{other:?}"),
    };
    h.expect_nothing();
    let ids = vec![floor + 10, floor + 20];
    let more = true;
    let cursor = 2;
    h.complete(Completion::SyncIndex {
        ticket,
        ids,
        more,
        cursor,
    });
    match h.ok(alice, seq) {
        ResponseBody::SyncIndex(ok) => {
            assert_eq!((ok.ids, ok.more), (vec![floor + 10, floor + 20], true))
        }
        other => panic!("{other:?}"),
    }
    // A position is passed on as asked, as the msg_id it is.
    let after = floor + 1000;
    h.request(alice, &Request::SyncIndex { after, limit: 7 });
    match h.take() {
        StoreRequest::SyncIndex {
            after: got, limit, ..
        } => assert_eq!((got, limit), (InboxPoint::Message(after), 7)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn sync_fetch_answers_in_the_order_asked_without_the_missing_or_expired() {
    let mut h = Harness::new();
    let alice = h.login("alice", "phone");
    let now = h.now_ms;
    let expired_ms = now - config().retention.as_millis() as u64 - 1;
    let ids = vec![3, 1, 2, 4];
    let seq = h.request(alice, &Request::SyncFetch { ids: ids.clone() });
    let ticket = match h.take() {
        StoreRequest::SyncFetch {
            ticket,
            user,
            ids: asked,
        } => {
            assert_eq!((&*user, asked), ("alice", ids));
            ticket
        }
        other => panic!("{other:?}"),
    };
    // The store's order is its own; 4 is unknown to it; 2 is past retention.
    let messages = vec![
        stored(1, now, 1),
        stored(2, expired_ms, 1),
        stored(3, now, 1),
    ];
    h.complete(Completion::SyncFetch { ticket, messages });
    match h.ok(alice, seq) {
        ResponseBody::SyncFetch(ok) => {
            let got: Vec<u64> = ok.messages.iter().map(|m| m.msg_id).collect();
            assert_eq!(got, vec![3, 1]);
            assert_eq!(ok.covered, 4, "every id asked is accounted for");
        }
        other => panic!("{other:?}"),
    }
    h.expect_nothing();
}

#[test]
fn sync_fetch_stops_where_the_next_message_would_overflow_the_packet() {
    let small = crate::logic::LogicConfig {
        max_packet: 1000,
        ..config()
    };
    let mut h = Harness::with(small, Vec::new());
    let alice = h.login("alice", "phone");
    let now = h.now_ms;
    let seq = h.request(alice, &Request::SyncFetch { ids: vec![1, 2, 3] });
    let ticket = h.take().ticket();
    let messages = (1..=3).map(|id| stored(id, now, 400)).collect();
    h.complete(Completion::SyncFetch { ticket, messages });
    match h.ok(alice, seq) {
        ResponseBody::SyncFetch(ok) => {
            assert_eq!(ok.covered, 2, "the client asks again from the third");
            assert_eq!(ok.messages.len(), 2);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn sync_ack_moves_the_device_position_after_the_commit() {
    let mut h = Harness::new();
    let alice = h.login("alice", "desktop");
    let seq = h.request(alice, &Request::SyncAck { upto: 77 });
    let request = h.take();
    match &request {
        StoreRequest::SyncAck {
            user, device, upto, ..
        } => assert_eq!(
            (&**user, &**device, *upto),
            ("alice", "desktop", InboxPoint::Message(77))
        ),
        other => panic!("{other:?}"),
    }
    h.expect_nothing();
    h.commit(&request);
    assert_eq!(h.ok(alice, seq), ResponseBody::SyncAck);
}

#[test]
fn a_failed_or_mismatched_sync_completion_is_internal() {
    let mut h = Harness::new();
    let alice = h.login("alice", "phone");
    let index = h.request(alice, &Request::SyncIndex { after: 0, limit: 1 });
    let fetch = h.request(alice, &Request::SyncFetch { ids: vec![1] });
    let ack = h.request(alice, &Request::SyncAck { upto: 1 });
    let (a, b, c) = (h.take().ticket(), h.take().ticket(), h.take().ticket());
    let error = disk_full();
    h.complete(Completion::Failed { ticket: a, error });
    h.complete(Completion::Done { ticket: b });
    h.complete(Completion::SyncIndex {
        ticket: c,
        ids: Vec::new(),
        more: false,
        cursor: 0,
    });
    h.refused(alice, Command::SyncIndex, index, Status::INTERNAL);
    h.refused(alice, Command::SyncFetch, fetch, Status::INTERNAL);
    h.refused(alice, Command::SyncAck, ack, Status::INTERNAL);
    h.expect_nothing();
}

#[test]
fn sync_requests_are_busy_when_the_store_queue_is_full() {
    let mut h = Harness::new();
    let alice = h.login("alice", "phone");
    h.set_store_capacity(0);
    let seq = h.request(alice, &Request::SyncAck { upto: 1 });
    h.refused(alice, Command::SyncAck, seq, Status::BUSY);
    h.advance(Duration::from_millis(1));
    let seq = h.request(alice, &Request::SyncFetch { ids: vec![1] });
    h.refused(alice, Command::SyncFetch, seq, Status::BUSY);
    h.expect_nothing();
    assert_eq!(h.core.requests_in_flight(), 0);
}

#[test]
fn sync_list_asks_by_cursor_and_answers_with_the_store_cursor() {
    let mut h = Harness::new();
    let alice = h.login("alice", "phone");
    let seq = h.request(alice, &Request::SyncList { after: 0, limit: 0 });
    let floor_ms = h.now_ms - config().retention.as_millis() as u64;
    let ticket = match h.take() {
        StoreRequest::SyncIndex {
            ticket,
            user,
            device,
            after,
            floor_id,
            limit,
        } => {
            assert_eq!((&*user, &*device), ("alice", "phone"));
            assert_eq!(after, InboxPoint::Seq(0));
            assert_eq!(floor_id, snowflake::first_id_at(floor_ms) - 1);
            assert_eq!(limit, u32::from(limits::sync_index_limit(0)));
            ticket
        }
        other => panic!("{other:?}"),
    };
    h.expect_nothing();
    // Inbox order is commit order: a lower id may come after a higher one.
    h.complete(Completion::SyncIndex {
        ticket,
        ids: vec![900, 800],
        more: true,
        cursor: 41,
    });
    // On the wire the sequence carries the inbox's tag.
    let cursor = cursor::encode("alice", 41);
    assert_ne!(cursor, 41);
    match h.ok(alice, seq) {
        ResponseBody::SyncList(ok) => {
            assert_eq!((ok.ids, ok.more, ok.cursor), (vec![900, 800], true, cursor))
        }
        other => panic!("{other:?}"),
    }
    // The next page starts at the cursor, taken as a sequence, never as a msg_id.
    h.request(
        alice,
        &Request::SyncList {
            after: cursor,
            limit: 9,
        },
    );
    match h.take() {
        StoreRequest::SyncIndex { after, limit, .. } => {
            assert_eq!((after, limit), (InboxPoint::Seq(41), 9))
        }
        other => panic!("{other:?}"),
    }
    h.expect_nothing();
}

#[test]
fn sync_confirm_moves_the_position_by_cursor_after_the_commit() {
    let mut h = Harness::new();
    let alice = h.login("alice", "tablet");
    let upto = cursor::encode("alice", 41);
    let seq = h.request(alice, &Request::SyncConfirm { upto });
    let request = h.take();
    match &request {
        StoreRequest::SyncAck {
            user, device, upto, ..
        } => assert_eq!(
            (&**user, &**device, *upto),
            ("alice", "tablet", InboxPoint::Seq(41))
        ),
        other => panic!("{other:?}"),
    }
    h.expect_nothing();
    h.commit(&request);
    assert_eq!(h.ok(alice, seq), ResponseBody::SyncConfirm);
    h.expect_nothing();
}

#[test]
fn a_cursor_the_store_refuses_is_bad_cursor_and_the_connection_lives_on() {
    let mut h = Harness::new();
    let alice = h.login("alice", "phone");
    // Cursors of alice's inbox, past its last sequence (3).
    let list = h.request(
        alice,
        &Request::SyncList {
            after: cursor::encode("alice", 900),
            limit: 0,
        },
    );
    let upto = cursor::encode("alice", 5);
    let confirm = h.request(alice, &Request::SyncConfirm { upto });
    let (a, b) = (h.take().ticket(), h.take().ticket());
    let error = StoreError::CursorAhead {
        cursor: 900,
        last: 3,
    };
    h.complete(Completion::Failed { ticket: a, error });
    let error = StoreError::CursorAhead { cursor: 5, last: 3 };
    h.complete(Completion::Failed { ticket: b, error });
    h.refused(alice, Command::SyncList, list, Status::BAD_CURSOR);
    h.refused(alice, Command::SyncConfirm, confirm, Status::BAD_CURSOR);
    // Not a protocol violation: the connection is served on, and a store failure of the same
    // requests is still INTERNAL.
    let seq = h.request(alice, &Request::SyncList { after: 0, limit: 0 });
    let ticket = h.take().ticket();
    let error = disk_full();
    h.complete(Completion::Failed { ticket, error });
    h.refused(alice, Command::SyncList, seq, Status::INTERNAL);
    h.expect_nothing();
}

/// A cursor of another user's inbox, even one within this inbox's range, a cursor of the old
/// kind (a bare sequence number) and a msg_id where a cursor belongs: BAD_CURSOR at once, the
/// store is not asked, nothing changes, and the connection is served on.
#[test]
fn a_cursor_of_another_inbox_or_of_the_old_kind_is_bad_cursor_without_asking_the_store() {
    let mut h = Harness::new();
    let alice = h.login("alice", "phone");
    let bobs = cursor::encode("bob", 2);
    for foreign in [bobs, 2, 7_411_860_537_460_289_537] {
        let seq = h.request(
            alice,
            &Request::SyncList {
                after: foreign,
                limit: 0,
            },
        );
        h.refused(alice, Command::SyncList, seq, Status::BAD_CURSOR);
        let seq = h.request(alice, &Request::SyncConfirm { upto: foreign });
        h.refused(alice, Command::SyncConfirm, seq, Status::BAD_CURSOR);
        assert_eq!(h.queued(), 0, "the store was not asked");
    }
    h.expect_nothing();
    // Her own cursor of the same sequence is taken.
    let upto = cursor::encode("alice", 2);
    let seq = h.request(alice, &Request::SyncConfirm { upto });
    let request = h.take();
    assert!(matches!(
        &request,
        StoreRequest::SyncAck {
            upto: InboxPoint::Seq(2),
            ..
        }
    ));
    h.commit(&request);
    assert_eq!(h.ok(alice, seq), ResponseBody::SyncConfirm);
    h.expect_nothing();
}
