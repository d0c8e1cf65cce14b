//! SEND and GROUP_SEND: pushes before the commit, acks after it, refusals, BUSY, the dedupe
//! window and the order of completions.

use std::time::Duration;

use bytes::Bytes;
use switchboard_protocol::{Command, Push, Request, ResponseBody, SendOk, Status, Target, Text};

use super::{config, disk_full, group, Harness};
use crate::logic::snowflake;
use crate::store::{self, AppendOutcome, Completion, StoreError, StoreRequest};

fn send(to: &str, client_msg_id: u64, body: &'static [u8]) -> Request {
    Request::Send {
        to: Text::from(to),
        client_msg_id,
        body: Bytes::from_static(body),
    }
}

fn send_ok(body: ResponseBody) -> SendOk {
    match body {
        ResponseBody::Send(ok) | ResponseBody::GroupSend(ok) => ok,
        other => panic!("expected a SEND ack, got {other:?}"),
    }
}

fn pushed_message(push: Push) -> switchboard_protocol::ChatMessage {
    match push {
        Push::Message(message) => message,
        other => panic!("expected MESSAGE, got {other:?}"),
    }
}

#[test]
fn a_message_is_pushed_once_queued_and_acked_only_after_the_commit() {
    let mut h = Harness::new();
    let phone = h.login("alice", "phone");
    let desktop = h.login("alice", "desktop");
    let bob = h.login("bob", "phone");
    let seq = h.request(phone, &send("bob", 42, b"hi"));
    // Pushed to the recipient and the sender's other device, not to the sending connection.
    let to_bob = pushed_message(h.push(bob));
    let to_desktop = pushed_message(h.push(desktop));
    assert_eq!(to_bob, to_desktop);
    assert_eq!(to_bob.from.as_str(), "alice");
    assert_eq!(to_bob.target, Target::Direct(Text::from("bob")));
    assert_eq!((to_bob.client_msg_id, &to_bob.body[..]), (42, &b"hi"[..]));
    assert_eq!(to_bob.server_time_ms, h.now_ms);
    assert_eq!(snowflake::id_time_ms(to_bob.msg_id), h.now_ms);
    h.expect_nothing(); // no ack before the commit
    let request = h.take();
    match &request {
        StoreRequest::Append {
            message, inboxes, ..
        } => {
            assert_eq!(message.id, to_bob.msg_id);
            assert_eq!(&*message.from, "alice", "the sender is the session's user");
            assert_eq!(message.target, store::Target::Direct("bob".into()));
            let inboxes: Vec<&str> = inboxes.iter().map(|i| &**i).collect();
            assert_eq!(inboxes, vec!["bob", "alice"]);
        }
        other => panic!("{other:?}"),
    }
    h.commit(&request);
    let ok = send_ok(h.ok(phone, seq));
    assert_eq!(
        (ok.msg_id, ok.server_time_ms),
        (to_bob.msg_id, to_bob.server_time_ms)
    );
    h.expect_nothing();
}

#[test]
fn a_message_to_oneself_is_stored_in_one_inbox() {
    let mut h = Harness::new();
    let phone = h.login("alice", "phone");
    let desktop = h.login("alice", "desktop");
    h.request(phone, &send("alice", 1, b"note"));
    pushed_message(h.push(desktop));
    h.expect_nothing();
    match h.take() {
        StoreRequest::Append { inboxes, .. } => assert_eq!(inboxes, vec![Box::from("alice")]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_body_over_the_limit_is_refused_too_large_and_goes_nowhere() {
    let mut h = Harness::new();
    let alice = h.login("alice", "phone");
    let bob = h.login("bob", "phone");
    let big = vec![b'x'; config().max_body as usize + 1];
    let request = Request::Send {
        to: Text::from("bob"),
        client_msg_id: 1,
        body: Bytes::from(big),
    };
    let seq = h.request(alice, &request);
    h.refused(alice, Command::Send, seq, Status::TOO_LARGE);
    h.expect_nothing();
    assert_eq!(h.queued(), 0);
    assert_eq!(
        h.core.sessions.devices("bob")[0].conn,
        bob,
        "bob got nothing"
    );
}

#[test]
fn a_full_store_queue_is_busy_pushes_nothing_and_remembers_nothing() {
    let mut h = Harness::new();
    let alice = h.login("alice", "phone");
    let bob = h.login("bob", "phone");
    h.set_store_capacity(0);
    let seq = h.request(alice, &send("bob", 1, b"a"));
    h.refused(alice, Command::Send, seq, Status::BUSY);
    h.expect_nothing();
    assert_eq!(h.core.requests_in_flight(), 0);
    // The client's resend, once the store has room, is a new message: stored and pushed.
    h.set_store_capacity(1);
    let seq = h.request(alice, &send("bob", 1, b"a"));
    pushed_message(h.push(bob));
    h.commit_next();
    send_ok(h.ok(alice, seq));
    h.expect_nothing();
}

#[test]
fn a_stopped_store_is_internal() {
    let mut h = Harness::new();
    let alice = h.login("alice", "phone");
    h.stop_store();
    let seq = h.request(alice, &send("bob", 1, b"a"));
    h.refused(alice, Command::Send, seq, Status::INTERNAL);
    h.expect_nothing();
}

/// PostgreSQL away (reconnecting): the sender is told BUSY, a retry later, not INTERNAL.
#[test]
fn an_append_failed_by_an_unavailable_store_is_busy() {
    let mut h = Harness::new();
    let alice = h.login("alice", "phone");
    let first = h.request(alice, &send("bob", 9, b"a"));
    let ticket = h.take().ticket();
    let error = StoreError::Unavailable {
        detail: "connection lost".into(),
    };
    h.complete(Completion::Failed { ticket, error });
    h.refused(alice, Command::Send, first, Status::BUSY);
    h.expect_nothing();
    let again = h.request(alice, &send("bob", 9, b"a"));
    h.commit_next();
    send_ok(h.ok(alice, again));
}

/// A lock held elsewhere past the busy timeout (SQLite), a statement cancelled by PostgreSQL's
/// statement_timeout, a conflict PostgreSQL rolled back: nothing was stored, and the client is
/// told to try again (BUSY), not that the server failed.
#[test]
fn an_append_failed_by_a_lock_a_timeout_or_a_conflict_is_busy() {
    let errors = [
        StoreError::Locked,
        StoreError::TimedOut {
            code: "57014".into(),
            detail: "canceling statement due to statement timeout".into(),
        },
        StoreError::Postgres {
            code: "40P01".into(),
            detail: "deadlock detected".into(),
        },
    ];
    for error in errors {
        let mut h = Harness::new();
        let alice = h.login("alice", "phone");
        let first = h.request(alice, &send("bob", 9, b"a"));
        let ticket = h.take().ticket();
        h.complete(Completion::Failed { ticket, error });
        h.refused(alice, Command::Send, first, Status::BUSY);
        h.expect_nothing();
        let again = h.request(alice, &send("bob", 9, b"a"));
        h.commit_next();
        send_ok(h.ok(alice, again));
    }
    // Not every failure is worth a retry.
    assert!(!disk_full().is_transient());
}

#[test]
fn a_failed_append_refuses_every_waiter_and_a_resend_tries_again() {
    let mut h = Harness::new();
    let alice = h.login("alice", "phone");
    let first = h.request(alice, &send("bob", 9, b"a"));
    let resend = h.request(alice, &send("bob", 9, b"a"));
    let request = h.take();
    assert_eq!(
        h.queued(),
        0,
        "the resend waits for the first, it is not stored twice"
    );
    let error = disk_full();
    let ticket = request.ticket();
    h.complete(Completion::Failed { ticket, error });
    h.refused(alice, Command::Send, first, Status::INTERNAL);
    h.refused(alice, Command::Send, resend, Status::INTERNAL);
    h.expect_nothing();
    let again = h.request(alice, &send("bob", 9, b"a"));
    h.commit_next();
    send_ok(h.ok(alice, again));
}

#[test]
fn a_resend_while_pending_waits_and_both_get_the_same_ack() {
    let mut h = Harness::new();
    let alice = h.login("alice", "phone");
    let bob = h.login("bob", "phone");
    let first = h.request(alice, &send("bob", 5, b"a"));
    let pushed = pushed_message(h.push(bob));
    h.advance(Duration::from_millis(10));
    let resend = h.request(alice, &send("bob", 5, b"a"));
    h.expect_nothing(); // not pushed again, not answered yet
    h.commit_next();
    assert_eq!(h.queued(), 0, "stored once");
    let a = send_ok(h.ok(alice, first));
    let b = send_ok(h.ok(alice, resend));
    assert_eq!(a, b);
    assert_eq!(
        (a.msg_id, a.server_time_ms),
        (pushed.msg_id, pushed.server_time_ms)
    );
    h.expect_nothing();
}

#[test]
fn a_resend_after_a_reconnect_is_answered_on_the_new_connection_once_committed() {
    let mut h = Harness::new();
    let old = h.login("alice", "phone");
    let bob = h.login("bob", "phone");
    let first = h.request(old, &send("bob", 3, b"a"));
    pushed_message(h.push(bob));
    // The connection drops before the ack; the client reconnects and resends.
    h.close(old);
    let new = h.login("alice", "phone");
    let resend = h.request(new, &send("bob", 3, b"a"));
    h.expect_nothing();
    h.commit_next();
    // The old connection's answer goes out too; the gateway drops it (the id is stale).
    let on_old = send_ok(h.ok(old, first));
    let on_new = send_ok(h.ok(new, resend));
    assert_eq!(on_old, on_new);
    assert_eq!(h.queued(), 0);
    h.expect_nothing();
}

#[test]
fn a_resend_after_the_commit_is_answered_at_once_from_the_window() {
    let mut h = Harness::new();
    let alice = h.login("alice", "phone");
    let first = h.request(alice, &send("bob", 5, b"a"));
    h.commit_next();
    let ok = send_ok(h.ok(alice, first));
    h.advance(Duration::from_secs(5));
    let resend = h.request(alice, &send("bob", 5, b"a"));
    assert_eq!(send_ok(h.ok(alice, resend)), ok, "the original id and time");
    assert_eq!(h.queued(), 0);
    h.expect_nothing();
    // The same client id from another sender is another message.
    let carol = h.login("carol", "phone");
    h.request(carol, &send("bob", 5, b"a"));
    assert_eq!(h.queued(), 1);
}

#[test]
fn a_resend_older_than_the_window_reaches_the_store_which_answers_with_the_original() {
    let mut h = Harness::with(
        crate::logic::LogicConfig {
            dedupe_window: 1,
            ..config()
        },
        Vec::new(),
    );
    let alice = h.login("alice", "phone");
    let first = h.request(alice, &send("bob", 1, b"a"));
    h.commit_next();
    let original = send_ok(h.ok(alice, first));
    let second = h.request(alice, &send("bob", 2, b"b"));
    h.commit_next();
    send_ok(h.ok(alice, second));
    h.advance(Duration::from_secs(1));
    let resend = h.request(alice, &send("bob", 1, b"a"));
    let request = h.take();
    let outcome = AppendOutcome::Duplicate {
        id: original.msg_id,
        time_ms: original.server_time_ms,
    };
    let ticket = request.ticket();
    h.complete(Completion::Appended { ticket, outcome });
    assert_eq!(send_ok(h.ok(alice, resend)), original);
}

#[test]
fn acks_follow_the_order_of_completions_each_with_its_own_seq_and_id() {
    let mut h = Harness::new();
    let alice = h.login("alice", "phone");
    let one = h.request(alice, &send("bob", 1, b"1"));
    let two = h.request(alice, &send("bob", 2, b"2"));
    let first = h.take();
    let second = h.take();
    h.commit(&second);
    h.commit(&first);
    let ack_two = send_ok(h.ok(alice, two));
    let ack_one = send_ok(h.ok(alice, one));
    let id_of = |request: &StoreRequest| match request {
        StoreRequest::Append { message, .. } => message.id,
        other => panic!("{other:?}"),
    };
    assert_eq!(ack_one.msg_id, id_of(&first));
    assert_eq!(ack_two.msg_id, id_of(&second));
    assert!(
        ack_one.msg_id < ack_two.msg_id,
        "ids in order of acceptance"
    );
    // A completion for a ticket the core never issued (a purge of the store's own) is ignored.
    h.complete(Completion::Done { ticket: 999_999 });
    h.expect_nothing();
}

fn group_send(group_id: u64, client_msg_id: u64) -> Request {
    Request::GroupSend {
        group_id,
        client_msg_id,
        body: Bytes::from_static(b"g"),
    }
}

#[test]
fn a_group_message_reaches_every_member_and_is_acked_as_group_send() {
    let groups = vec![group(7, &["alice", "bob", "carol"])];
    let mut h = Harness::with(config(), groups);
    let alice = h.login("alice", "phone");
    let bob = h.login("bob", "phone");
    let carol = h.login("carol", "phone");
    let dave = h.login("dave", "phone");
    let seq = h.request(alice, &group_send(7, 1));
    let mut pushed: Vec<u64> = h
        .drain_sent()
        .into_iter()
        .map(|sent| match sent {
            super::Sent::Packet(
                conn,
                switchboard_protocol::ServerPacket::Push(Push::Message(m)),
            ) => {
                assert_eq!(m.target, Target::Group(7));
                conn
            }
            other => panic!("{other:?}"),
        })
        .collect();
    pushed.sort_unstable();
    assert_eq!(pushed, vec![bob, carol]);
    match h.take() {
        StoreRequest::Append {
            ticket,
            message,
            mut inboxes,
        } => {
            assert_eq!(message.target, store::Target::Group(7));
            inboxes.sort();
            assert_eq!(
                inboxes,
                vec![Box::from("alice"), "bob".into(), "carol".into()]
            );
            h.complete(Completion::Appended {
                ticket,
                outcome: AppendOutcome::Stored,
            });
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(h.ok(alice, seq), ResponseBody::GroupSend(_)));
    let seq = h.request(dave, &group_send(7, 1));
    h.refused(dave, Command::GroupSend, seq, Status::NOT_MEMBER);
    let seq = h.request(alice, &group_send(8, 2));
    h.refused(alice, Command::GroupSend, seq, Status::NOT_FOUND);
    h.expect_nothing();
    assert_eq!(h.queued(), 0);
}
