//! GROUP_CREATE, GROUP_JOIN, GROUP_QUIT, GROUP_DETAIL: the cache follows commits only, and the
//! member limit holds with joins in flight.

use switchboard_protocol::{Command, Request, ResponseBody, Status, Text};

use super::{config, disk_full, group, Harness};
use crate::logic::LogicConfig;
use crate::store::{Completion, GroupRecord, StoreError, StoreRequest};

fn limited(limit: usize, groups: Vec<GroupRecord>) -> Harness {
    let config = LogicConfig {
        group_member_limit: limit,
        ..config()
    };
    Harness::with(config, groups)
}

fn members(h: &mut Harness, conn: u64, group_id: u64) -> Vec<String> {
    let seq = h.request(conn, &Request::GroupDetail { group_id });
    match h.ok(conn, seq) {
        ResponseBody::GroupDetail(detail) => detail
            .members
            .iter()
            .map(|m| m.as_str().to_owned())
            .collect(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn create_stores_the_owner_and_distinct_members_and_caches_after_the_commit() {
    let mut h = Harness::new();
    let alice = h.login("alice", "phone");
    let create = Request::GroupCreate {
        name: Text::from("team"),
        members: vec![
            Text::from("carol"),
            Text::from("bob"),
            Text::from("alice"),
            Text::from("bob"),
        ],
    };
    let seq = h.request(alice, &create);
    let request = h.take();
    let id = match &request {
        StoreRequest::GroupCreate { group, .. } => {
            let stored: Vec<&str> = group.members.iter().map(|m| &**m).collect();
            assert_eq!(stored, vec!["alice", "carol", "bob"]);
            assert_eq!((&*group.name, &*group.owner), ("team", "alice"));
            group.id
        }
        other => panic!("{other:?}"),
    };
    let detail = h.request(alice, &Request::GroupDetail { group_id: id });
    h.refused(alice, Command::GroupDetail, detail, Status::NOT_FOUND);
    h.commit(&request);
    match h.ok(alice, seq) {
        ResponseBody::GroupCreate(created) => assert_eq!(created.group_id, id),
        other => panic!("{other:?}"),
    }
    assert_eq!(members(&mut h, alice, id), vec!["alice", "bob", "carol"]);
    assert_eq!(h.core.groups.version(id), Some(1));
    h.expect_nothing();
}

#[test]
fn create_over_the_limit_is_group_full_and_a_failed_create_is_internal() {
    let mut h = limited(2, Vec::new());
    let alice = h.login("alice", "phone");
    let create = |names: &[&str]| Request::GroupCreate {
        name: Text::from("g"),
        members: names.iter().map(|n| Text::from(*n)).collect(),
    };
    let seq = h.request(alice, &create(&["bob", "carol"]));
    h.refused(alice, Command::GroupCreate, seq, Status::GROUP_FULL);
    assert_eq!(h.queued(), 0);
    let seq = h.request(alice, &create(&["bob"]));
    let ticket = h.take().ticket();
    let error = StoreError::GroupExists { id: 1 };
    h.complete(Completion::Failed { ticket, error });
    h.refused(alice, Command::GroupCreate, seq, Status::INTERNAL);
    assert!(h.core.groups.is_empty());
    h.expect_nothing();
}

#[test]
fn join_and_quit_change_the_cache_only_when_committed() {
    let mut h = Harness::with(config(), vec![group(7, &["alice"])]);
    let alice = h.login("alice", "phone");
    let bob = h.login("bob", "phone");
    let join = h.request(bob, &Request::GroupJoin { group_id: 7 });
    let request = h.take();
    assert!(
        matches!(&request, StoreRequest::GroupJoin { group_id: 7, user, .. } if &**user == "bob")
    );
    assert_eq!(
        members(&mut h, alice, 7),
        vec!["alice"],
        "not before the commit"
    );
    let send = Request::GroupSend {
        group_id: 7,
        client_msg_id: 1,
        body: bytes::Bytes::from_static(b"early"),
    };
    let early = h.request(bob, &send);
    h.refused(bob, Command::GroupSend, early, Status::NOT_MEMBER);
    h.commit(&request);
    assert_eq!(h.ok(bob, join), ResponseBody::GroupJoin);
    assert_eq!(members(&mut h, alice, 7), vec!["alice", "bob"]);
    assert_eq!(h.core.groups.version(7), Some(2));
    let quit = h.request(bob, &Request::GroupQuit { group_id: 7 });
    let request = h.take();
    assert_eq!(members(&mut h, alice, 7), vec!["alice", "bob"]);
    h.commit(&request);
    assert_eq!(h.ok(bob, quit), ResponseBody::GroupQuit);
    assert_eq!(members(&mut h, alice, 7), vec!["alice"]);
    h.expect_nothing();
}

#[test]
fn unknown_groups_and_non_members_are_refused_without_the_store() {
    let mut h = Harness::with(config(), vec![group(7, &["alice"])]);
    let bob = h.login("bob", "phone");
    let seq = h.request(bob, &Request::GroupJoin { group_id: 8 });
    h.refused(bob, Command::GroupJoin, seq, Status::NOT_FOUND);
    let seq = h.request(bob, &Request::GroupQuit { group_id: 8 });
    h.refused(bob, Command::GroupQuit, seq, Status::NOT_FOUND);
    let seq = h.request(bob, &Request::GroupQuit { group_id: 7 });
    h.refused(bob, Command::GroupQuit, seq, Status::NOT_MEMBER);
    let seq = h.request(bob, &Request::GroupDetail { group_id: 8 });
    h.refused(bob, Command::GroupDetail, seq, Status::NOT_FOUND);
    assert_eq!(h.queued(), 0);
    h.expect_nothing();
}

#[test]
fn a_full_group_refuses_a_join() {
    let mut h = limited(2, vec![group(7, &["alice", "bob"])]);
    let carol = h.login("carol", "phone");
    let seq = h.request(carol, &Request::GroupJoin { group_id: 7 });
    h.refused(carol, Command::GroupJoin, seq, Status::GROUP_FULL);
    assert_eq!(h.queued(), 0);
    // A member joining again adds nobody, so it is not refused.
    let bob = h.login("bob", "phone");
    let seq = h.request(bob, &Request::GroupJoin { group_id: 7 });
    h.commit_next();
    assert_eq!(h.ok(bob, seq), ResponseBody::GroupJoin);
}

/// Regression (issue #13, finding 3): the limit was checked against committed members only, so
/// two joins in flight both passed and the group committed one member over the limit.
#[test]
fn two_joins_in_flight_cannot_both_pass_the_member_limit() {
    let mut h = limited(3, vec![group(7, &["alice", "bob"])]);
    let carol = h.login("carol", "phone");
    let dave = h.login("dave", "phone");
    let first = h.request(carol, &Request::GroupJoin { group_id: 7 });
    let second = h.request(dave, &Request::GroupJoin { group_id: 7 });
    h.refused(dave, Command::GroupJoin, second, Status::GROUP_FULL);
    assert_eq!(h.queued(), 1, "only one join reached the store");
    h.commit_next();
    assert_eq!(h.ok(carol, first), ResponseBody::GroupJoin);
    assert_eq!(h.core.groups.get(7).unwrap().members.len(), 3);
    h.expect_nothing();
}

#[test]
fn a_join_that_fails_or_is_busy_gives_its_room_back() {
    let mut h = limited(3, vec![group(7, &["alice", "bob"])]);
    let carol = h.login("carol", "phone");
    let dave = h.login("dave", "phone");
    h.set_store_capacity(0);
    let busy = h.request(carol, &Request::GroupJoin { group_id: 7 });
    h.refused(carol, Command::GroupJoin, busy, Status::BUSY);
    h.set_store_capacity(16);
    let failing = h.request(carol, &Request::GroupJoin { group_id: 7 });
    let ticket = h.take().ticket();
    let error = disk_full();
    h.complete(Completion::Failed { ticket, error });
    h.refused(carol, Command::GroupJoin, failing, Status::INTERNAL);
    assert_eq!(h.core.groups.joins_in_flight(), 0);
    let seq = h.request(dave, &Request::GroupJoin { group_id: 7 });
    h.commit_next();
    assert_eq!(h.ok(dave, seq), ResponseBody::GroupJoin);
    assert_eq!(members(&mut h, dave, 7), vec!["alice", "bob", "dave"]);
    h.expect_nothing();
}

#[test]
fn a_join_failed_by_an_unavailable_store_is_busy() {
    let mut h = limited(3, vec![group(7, &["alice", "bob"])]);
    let carol = h.login("carol", "phone");
    let seq = h.request(carol, &Request::GroupJoin { group_id: 7 });
    let ticket = h.take().ticket();
    let error = StoreError::Unavailable {
        detail: "connection lost".into(),
    };
    h.complete(Completion::Failed { ticket, error });
    h.refused(carol, Command::GroupJoin, seq, Status::BUSY);
    assert_eq!(h.core.groups.joins_in_flight(), 0);
    h.expect_nothing();
}

#[test]
fn a_detail_over_the_packet_limit_is_internal_never_sent() {
    // A group kept from a larger --group-member-limit, then --max-packet lowered.
    let names: Vec<String> = (0..50).map(|i| format!("member{i:02}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let config = LogicConfig {
        max_packet: 200,
        ..config()
    };
    let mut h = Harness::with(config, vec![group(7, &names)]);
    let alice = h.login("member00", "phone");
    let seq = h.request(alice, &Request::GroupDetail { group_id: 7 });
    h.refused(alice, Command::GroupDetail, seq, Status::INTERNAL);
    h.expect_nothing();
}

#[test]
fn a_failed_quit_is_internal_and_leaves_the_member_and_a_busy_create_is_busy() {
    let mut h = Harness::with(config(), vec![group(7, &["alice", "bob"])]);
    let bob = h.login("bob", "phone");
    let quit = h.request(bob, &Request::GroupQuit { group_id: 7 });
    let ticket = h.take().ticket();
    let error = disk_full();
    h.complete(Completion::Failed { ticket, error });
    h.refused(bob, Command::GroupQuit, quit, Status::INTERNAL);
    assert_eq!(members(&mut h, bob, 7), vec!["alice", "bob"]);
    assert_eq!(h.core.groups.version(7), Some(1));
    h.set_store_capacity(0);
    let create = Request::GroupCreate {
        name: Text::from("g"),
        members: Vec::new(),
    };
    let seq = h.request(bob, &create);
    h.refused(bob, Command::GroupCreate, seq, Status::BUSY);
    let seq = h.request(bob, &Request::GroupQuit { group_id: 7 });
    h.refused(bob, Command::GroupQuit, seq, Status::BUSY);
    assert_eq!(h.core.requests_in_flight(), 0);
    h.expect_nothing();
}

/// While another process shares the store (a handover), group changes are answered BUSY
/// and reach no store; once the groups are reloaded, the cache is the store's and changes
/// go through again.
#[test]
fn group_changes_wait_for_a_handover_to_end_and_the_reload_replaces_the_cache() {
    let mut h = Harness::new();
    let alice = h.login("alice", "phone");
    let (answer, ids) = crossbeam_channel::bounded(1);
    let now = h.now_ms;
    h.core
        .handle_inbound(crate::logic::Inbound::HandOver(answer), now);
    let handed = ids.try_recv().expect("the core answers at once");
    assert_eq!(handed.kept, crate::logic::snowflake::IdLane::Low);
    let changes = [
        (
            Command::GroupCreate,
            Request::GroupCreate {
                name: Text::from("team"),
                members: vec![Text::from("bob")],
            },
        ),
        (Command::GroupJoin, Request::GroupJoin { group_id: 7 }),
        (Command::GroupQuit, Request::GroupQuit { group_id: 7 }),
    ];
    for (command, request) in &changes {
        let seq = h.request(alice, request);
        h.refused(alice, *command, seq, Status::BUSY);
    }
    assert_eq!(h.queued(), 0, "a refused change reached the store");
    // The other process added group 7 meanwhile; the reload brings it in.
    let now = h.now_ms;
    h.core.handle_inbound(
        crate::logic::Inbound::ReloadGroups(vec![group(7, &["carol", "dan"])]),
        now,
    );
    assert_eq!(members(&mut h, alice, 7), vec!["carol", "dan"]);
    let seq = h.request(alice, &Request::GroupJoin { group_id: 7 });
    let join = h.take();
    assert!(matches!(join, StoreRequest::GroupJoin { .. }), "{join:?}");
    h.commit(&join);
    assert_eq!(h.ok(alice, seq), ResponseBody::GroupJoin);
}

/// A handover the new process never finished (no READY): group changes go through again.
#[test]
fn a_withdrawn_handover_lets_group_changes_through_again() {
    let mut h = Harness::with(config(), vec![group(7, &["carol"])]);
    let alice = h.login("alice", "phone");
    let (answer, _ids) = crossbeam_channel::bounded(1);
    let now = h.now_ms;
    h.core
        .handle_inbound(crate::logic::Inbound::HandOver(answer), now);
    let seq = h.request(alice, &Request::GroupJoin { group_id: 7 });
    h.refused(alice, Command::GroupJoin, seq, Status::BUSY);
    h.core
        .handle_inbound(crate::logic::Inbound::HandOverWithdrawn, now);
    let seq = h.request(alice, &Request::GroupJoin { group_id: 7 });
    let join = h.take();
    h.commit(&join);
    assert_eq!(h.ok(alice, seq), ResponseBody::GroupJoin);
}
