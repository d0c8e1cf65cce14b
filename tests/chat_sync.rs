//! Offline sync by cursor over real sockets (docs/protocol.md §9): SYNC_LIST pages by the
//! inbox's sequence, SYNC_CONFIRM moves the device kind's position, both survive a restart,
//! the legacy SYNC_INDEX / SYNC_ACK keep working on the same inbox, and a cursor the inbox
//! never gave out (from the future, a msg_id of the old kind, another user's) is BAD_CURSOR
//! with nothing changed and the connection served on.

mod chat_common;

use chat_common::{unique_user, ServerOptions, TestServer, Transport, BOTH};
use switchboard_protocol::Status;

#[test]
fn sync_by_cursor_pages_confirms_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (unique_user("alice"), unique_user("bob"));
    let server = TestServer::start_in(dir.path(), ServerOptions::default());
    let mut alice_conn = server.login(Transport::Tcp, &alice, None);
    let sent: Vec<u64> = (0..5)
        .map(|i| alice_conn.send_direct(&bob, i, b"m").expect("sent").msg_id)
        .collect();

    let mut phone = server.login(Transport::Ws, &bob, Some("phone"));
    let first = phone.sync_list(0, 2);
    assert_eq!((&first.ids[..], first.more), (&sent[..2], true));
    let fetched: Vec<u64> = phone
        .fetch_all(&first.ids)
        .iter()
        .map(|m| m.msg_id)
        .collect();
    assert_eq!(fetched, sent[..2]);
    phone.try_sync_confirm(first.cursor).expect("confirmed");
    let second = phone.sync_list(first.cursor, 2);
    assert_eq!((&second.ids[..], second.more), (&sent[2..4], true));
    assert!(second.cursor > first.cursor, "cursors grow along the inbox");
    // Not confirmed: a new listing from the position starts after the first page only.
    assert_eq!(phone.sync_list(0, 500).ids, sent[2..]);
    phone
        .try_sync_confirm(0)
        .expect("a smaller cursor changes nothing");
    assert_eq!(phone.sync_list(0, 500).ids, sent[2..]);

    // A client of the old commands syncs the same inbox by msg_id.
    let mut tablet = server.login(Transport::Tcp, &bob, Some("tablet"));
    let legacy: Vec<u64> = tablet.sync_all_legacy().iter().map(|m| m.msg_id).collect();
    assert_eq!(legacy, sent);
    assert!(tablet.sync_index(0, 500).ids.is_empty());
    drop((alice_conn, phone, tablet));
    server.stop();

    // Positions and the sequence outlive the server.
    let server = TestServer::start_in(dir.path(), ServerOptions::default());
    let mut phone = server.login(Transport::Tcp, &bob, Some("phone"));
    let after_restart = phone.sync_list(0, 500);
    assert_eq!(
        (&after_restart.ids[..], after_restart.more),
        (&sent[2..], false)
    );
    let mut alice_conn = server.login(Transport::Ws, &alice, None);
    let late = alice_conn
        .send_direct(&bob, 99, b"late")
        .expect("sent")
        .msg_id;
    let next = phone.sync_list(after_restart.cursor, 500);
    assert_eq!(next.ids, vec![late], "the sequence went on where it was");
    assert!(next.cursor > after_restart.cursor);
    let synced: Vec<u64> = phone.sync_all().iter().map(|m| m.msg_id).collect();
    assert_eq!(synced, [&sent[2..], &[late]].concat());
    assert!(phone.sync_all().is_empty(), "the whole sync was confirmed");
    let mut tablet = server.login(Transport::Ws, &bob, Some("tablet"));
    assert_eq!(tablet.sync_index(0, 500).ids, vec![late]);
}

#[test]
fn a_cursor_the_inbox_never_gave_out_is_bad_cursor_and_changes_nothing() {
    let server = TestServer::start();
    for transport in BOTH {
        let (alice, bob, carol) = (
            unique_user("alice"),
            unique_user("bob"),
            unique_user("carol"),
        );
        let mut alice_conn = server.login(transport, &alice, None);
        let sent: Vec<u64> = (0..2)
            .map(|i| alice_conn.send_direct(&bob, i, b"m").expect("sent").msg_id)
            .collect();
        let mut bob_conn = server.login(transport, &bob, None);
        let list = bob_conn.sync_list(0, 500);
        assert_eq!(list.ids, sent);
        let cursor = list.cursor;
        // From the future.
        assert_eq!(
            bob_conn.try_sync_list(cursor + 1, 500),
            Err(Status::BAD_CURSOR)
        );
        assert_eq!(
            bob_conn.try_sync_confirm(cursor + 1000),
            Err(Status::BAD_CURSOR)
        );
        // Of the old kind: a msg_id where a cursor belongs.
        assert_eq!(
            bob_conn.try_sync_list(sent[1], 500),
            Err(Status::BAD_CURSOR)
        );
        assert_eq!(bob_conn.try_sync_confirm(sent[1]), Err(Status::BAD_CURSOR));
        assert_eq!(bob_conn.try_sync_confirm(u64::MAX), Err(Status::BAD_CURSOR));
        // Of the old kind: a bare sequence number, as cursors were before they carried
        // their inbox's tag (bob's inbox has entries 1 and 2).
        assert_eq!(bob_conn.try_sync_list(1, 500), Err(Status::BAD_CURSOR));
        assert_eq!(bob_conn.try_sync_confirm(2), Err(Status::BAD_CURSOR));
        // Another user's cursor, past this user's inbox (carol has none).
        let mut carol_conn = server.login(transport, &carol, None);
        assert_eq!(carol_conn.try_sync_confirm(cursor), Err(Status::BAD_CURSOR));
        assert!(carol_conn.sync_list(0, 500).ids.is_empty());
        // Another user's cursor within this user's inbox's range: carol's inbox now has three
        // entries, bob's cursor is his second; still not carol's.
        let to_carol: Vec<u64> = (10..13)
            .map(|i| {
                alice_conn
                    .send_direct(&carol, i, b"c")
                    .expect("sent")
                    .msg_id
            })
            .collect();
        assert_eq!(
            carol_conn.try_sync_list(cursor, 500),
            Err(Status::BAD_CURSOR)
        );
        assert_eq!(carol_conn.try_sync_confirm(cursor), Err(Status::BAD_CURSOR));
        assert_eq!(
            carol_conn.sync_list(0, 500).ids,
            to_carol,
            "nothing confirmed"
        );
        // Nothing was acknowledged, and the connections are served on.
        assert!(bob_conn.ping() > 0);
        assert_eq!(bob_conn.sync_list(0, 500).ids, sent);
        assert_eq!(bob_conn.sync_all().len(), 2);
        assert!(bob_conn.sync_list(0, 500).ids.is_empty());
        bob_conn.assert_no_push();
    }
}

crate::on_postgres_too!(
    sync_by_cursor_pages_confirms_and_survives_a_restart,
    a_cursor_the_inbox_never_gave_out_is_bad_cursor_and_changes_nothing,
);
