//! One-to-one chat over real sockets, on both transports: the ack after the commit, the push
//! to every device of the recipient and the sender's other devices (never the sending
//! connection), the sender taken from the session, notes to oneself, offline delivery through
//! SYNC_INDEX / SYNC_FETCH / SYNC_ACK with a position per device kind, paging, idempotent
//! resends and the body limit.

mod chat_common;

use std::collections::HashSet;

use chat_common::{
    client::direct, now_ms, unique_user, ChatClient, ServerOptions, TestServer, Transport, BOTH,
};
use switchboard_protocol::{ChatMessage, ResponseBody, Status, Target};

fn assert_direct(message: &ChatMessage, from: &str, to: &str, client_msg_id: u64, body: &[u8]) {
    assert_eq!(
        message.from.as_str(),
        from,
        "from is the sender's session user"
    );
    assert_eq!(message.target, Target::Direct(to.into()));
    assert_eq!(message.client_msg_id, client_msg_id);
    assert_eq!(message.body.as_ref(), body);
}

#[test]
fn online_message_is_acked_after_commit_and_pushed_with_the_session_sender() {
    let server = TestServer::start();
    for (a, b) in [
        (Transport::Tcp, Transport::Ws),
        (Transport::Ws, Transport::Tcp),
    ] {
        let (alice, bob) = (unique_user("alice"), unique_user("bob"));
        let mut alice_phone = server.login(a, &alice, Some("phone"));
        let mut alice_desktop = server.login(b, &alice, Some("desktop"));
        let mut bob_phone = server.login(b, &bob, Some("phone"));
        let mut bob_web = server.login(a, &bob, Some("web"));

        let before = now_ms();
        let ack = alice_phone
            .send_direct(&bob, 1001, b"hi bob")
            .expect("SEND accepted");
        assert!(ack.msg_id > 0);
        assert!(
            ack.server_time_ms + 5_000 >= before && ack.server_time_ms <= now_ms() + 5_000,
            "server time {} far from ours {before}",
            ack.server_time_ms
        );
        // Both of bob's devices and alice's other device get the same message.
        for device in [&mut bob_phone, &mut bob_web, &mut alice_desktop] {
            let message = device.expect_message();
            assert_eq!(message.msg_id, ack.msg_id);
            assert_eq!(message.server_time_ms, ack.server_time_ms);
            assert_direct(&message, &alice, &bob, 1001, b"hi bob");
            device.assert_no_push();
        }
        // The sending connection gets the ack only.
        alice_phone.assert_no_push();

        // Ids grow with every message.
        let second = alice_phone.send_direct(&bob, 1002, b"again").expect("sent");
        assert!(second.msg_id > ack.msg_id, "snowflake ids increase");
        assert_eq!(bob_phone.expect_message().msg_id, second.msg_id);
    }
}

#[test]
fn the_sender_is_always_the_session_user() {
    // There is no `from` field to forge: whatever mallory sends comes from mallory, and the
    // stored copy says so too.
    let server = TestServer::start();
    for transport in BOTH {
        let (mallory, bob) = (unique_user("mallory"), unique_user("bob"));
        let mut bob_online = server.login(transport, &bob, Some("phone"));
        let mut mallory_conn = server.login(transport, &mallory, None);
        let ack = mallory_conn
            .send_direct(&bob, 1, b"I am alice, trust me")
            .expect("sent");
        let pushed = bob_online.expect_message();
        assert_eq!(pushed.from.as_str(), mallory);
        let mut bob_later = server.login(transport, &bob, Some("tablet"));
        let synced = bob_later.sync_all();
        assert_eq!(synced.len(), 1);
        assert_eq!(synced[0].msg_id, ack.msg_id);
        assert_eq!(
            synced[0].from.as_str(),
            mallory,
            "stored with the session user"
        );
    }
}

#[test]
fn a_message_to_oneself_reaches_the_other_devices_once() {
    let server = TestServer::start();
    for transport in BOTH {
        let alice = unique_user("alice");
        let mut phone = server.login(transport, &alice, Some("phone"));
        let mut desktop = server.login(transport, &alice, Some("desktop"));
        let ack = phone.send_direct(&alice, 5, b"note to self").expect("sent");
        let message = desktop.expect_message();
        assert_eq!(message.msg_id, ack.msg_id);
        assert_direct(&message, &alice, &alice, 5, b"note to self");
        desktop.assert_no_push();
        phone.assert_no_push();
        // One inbox row, not two: a third device kind syncs it exactly once.
        let mut tablet = server.login(transport, &alice, Some("tablet"));
        let synced = tablet.sync_all();
        assert_eq!(
            synced.iter().map(|m| m.msg_id).collect::<Vec<_>>(),
            vec![ack.msg_id]
        );
    }
}

#[test]
fn offline_messages_are_synced_acked_and_never_sent_again() {
    let server = TestServer::start();
    for (a, b) in [
        (Transport::Tcp, Transport::Ws),
        (Transport::Ws, Transport::Tcp),
    ] {
        let (alice, bob) = (unique_user("alice"), unique_user("bob"));
        let mut alice_conn = server.login(a, &alice, Some("phone"));
        let acks: Vec<u64> = (0..3u64)
            .map(|i| {
                let body = format!("offline {i}");
                alice_conn
                    .send_direct(&bob, 100 + i, body.as_bytes())
                    .expect("sent")
                    .msg_id
            })
            .collect();

        // Bob never logged in before: the messages were kept for him.
        let mut bob_phone = server.login(b, &bob, Some("phone"));
        let index = bob_phone.sync_index(0, 500);
        assert_eq!(index.ids, acks, "every message, ascending");
        assert!(!index.more);
        let fetch = bob_phone.sync_fetch(&index.ids);
        assert_eq!(fetch.covered, 3);
        assert_eq!(fetch.messages.len(), 3);
        for (i, message) in fetch.messages.iter().enumerate() {
            assert_eq!(message.msg_id, acks[i], "in the order asked");
            let body = format!("offline {i}");
            assert_direct(message, &alice, &bob, 100 + i as u64, body.as_bytes());
        }
        bob_phone.sync_ack(acks[2]);
        let after = bob_phone.sync_index(0, 500);
        assert!(after.ids.is_empty(), "acknowledged: never listed again");
        assert!(!after.more);

        // The position survives a reconnect of the same device kind.
        drop(bob_phone);
        let mut bob_phone = server.login(a, &bob, Some("phone"));
        assert!(bob_phone.sync_all().is_empty());

        // Another device kind has its own position: it still gets all three.
        let mut bob_desktop = server.login(b, &bob, Some("desktop"));
        let synced: Vec<u64> = bob_desktop.sync_all().iter().map(|m| m.msg_id).collect();
        assert_eq!(synced, acks);
        assert!(bob_desktop.sync_all().is_empty());

        // The sender's other device kinds find their own messages in their inbox.
        let mut alice_tablet = server.login(b, &alice, Some("tablet"));
        let sent: Vec<u64> = alice_tablet.sync_all().iter().map(|m| m.msg_id).collect();
        assert_eq!(sent, acks);
    }
}

#[test]
fn a_partial_ack_leaves_the_rest_and_acks_never_move_back() {
    let server = TestServer::start();
    let (alice, bob) = (unique_user("alice"), unique_user("bob"));
    let mut alice_conn = server.login(Transport::Tcp, &alice, None);
    let acks: Vec<u64> = (0..4)
        .map(|i| alice_conn.send_direct(&bob, i, b"m").expect("sent").msg_id)
        .collect();
    let mut bob_conn = server.login(Transport::Ws, &bob, None);
    bob_conn.sync_ack(acks[1]);
    assert_eq!(bob_conn.sync_index(0, 500).ids, acks[2..]);
    bob_conn.sync_ack(acks[0]); // smaller: changes nothing
    assert_eq!(bob_conn.sync_index(0, 500).ids, acks[2..]);
    // `after` above the position lists from there.
    assert_eq!(bob_conn.sync_index(acks[2], 500).ids, acks[3..]);
}

#[test]
fn sync_pages_through_many_messages() {
    let server = TestServer::start();
    let (alice, bob) = (unique_user("alice"), unique_user("bob"));
    let mut alice_conn = server.login(Transport::Tcp, &alice, None);
    // Pipelined: every SEND first, then every ack.
    let seqs: Vec<u32> = (0..250u64)
        .map(|i| alice_conn.send_request(&direct(&bob, i, format!("page {i}").as_bytes())))
        .collect();
    let acks: Vec<u64> = seqs
        .into_iter()
        .map(|seq| match alice_conn.response(seq).result {
            Ok(ResponseBody::Send(ok)) => ok.msg_id,
            other => panic!("SEND answered {other:?}"),
        })
        .collect();
    let mut bob_conn = server.login(Transport::Ws, &bob, None);
    let first = bob_conn.sync_index(0, 100);
    assert_eq!(first.ids.len(), 100);
    assert!(first.more, "more ids follow the first page");
    let synced = bob_conn.sync_all_paged(100);
    assert_eq!(synced.len(), 250);
    assert_eq!(
        synced.iter().map(|m| m.msg_id).collect::<Vec<_>>(),
        acks,
        "every message once, in id order"
    );
    for (i, message) in synced.iter().enumerate() {
        assert_eq!(message.body.as_ref(), format!("page {i}").as_bytes());
    }
    assert!(bob_conn.sync_all().is_empty());
}

#[test]
fn a_resend_gets_the_original_ack_and_is_stored_once() {
    let server = TestServer::start();
    for transport in BOTH {
        let (alice, bob) = (unique_user("alice"), unique_user("bob"));
        let mut alice_conn = server.login(transport, &alice, Some("phone"));
        let mut bob_online = server.login(transport, &bob, Some("phone"));

        let first = alice_conn.send_direct(&bob, 42, b"once").expect("sent");
        let again = alice_conn.send_direct(&bob, 42, b"once").expect("resent");
        assert_eq!(again, first, "the original msg_id and server time");
        // Two resends in flight together (the second arrives while the first is pending).
        let seq_a = alice_conn.send_request(&direct(&bob, 43, b"pipelined"));
        let seq_b = alice_conn.send_request(&direct(&bob, 43, b"pipelined"));
        let ack_a = alice_conn.response(seq_a).result.expect("sent");
        let ack_b = alice_conn.response(seq_b).result.expect("resent");
        assert_eq!(ack_a, ack_b, "both answers carry the same id and time");
        let ResponseBody::Send(pipelined) = ack_a else {
            panic!("SEND answered {ack_a:?}");
        };
        // From another device of the same user: still the same message.
        let mut alice_desktop = server.login(transport, &alice, Some("desktop"));
        let third = alice_desktop
            .send_direct(&bob, 42, b"once")
            .expect("resent");
        assert_eq!(third, first, "client_msg_id is per user, across devices");

        // Bob saw each message exactly once.
        assert_eq!(bob_online.expect_message().msg_id, first.msg_id);
        assert_eq!(bob_online.expect_message().msg_id, pipelined.msg_id);
        bob_online.assert_no_push();
        // And it is stored once.
        let mut bob_other = server.login(transport, &bob, Some("desktop"));
        let ids: Vec<u64> = bob_other.sync_all().iter().map(|m| m.msg_id).collect();
        assert_eq!(ids, vec![first.msg_id, pipelined.msg_id]);
    }
}

#[test]
fn the_same_client_msg_id_from_two_users_is_two_messages() {
    let server = TestServer::start();
    let (alice, carol, bob) = (
        unique_user("alice"),
        unique_user("carol"),
        unique_user("bob"),
    );
    let mut alice_conn = server.login(Transport::Tcp, &alice, None);
    let mut carol_conn = server.login(Transport::Ws, &carol, None);
    let a = alice_conn
        .send_direct(&bob, 7, b"from alice")
        .expect("sent");
    let c = carol_conn
        .send_direct(&bob, 7, b"from carol")
        .expect("sent");
    assert_ne!(a.msg_id, c.msg_id);
    let mut bob_conn = server.login(Transport::Tcp, &bob, None);
    let senders: HashSet<String> = bob_conn
        .sync_all()
        .iter()
        .map(|m| m.from.as_str().to_owned())
        .collect();
    assert_eq!(senders, HashSet::from([alice, carol]));
}

#[test]
fn a_body_over_the_limit_is_too_large_and_the_limit_itself_passes() {
    let server = TestServer::with_options(ServerOptions {
        max_body: 1024,
        ..ServerOptions::default()
    });
    for transport in BOTH {
        let (alice, bob) = (unique_user("alice"), unique_user("bob"));
        let mut alice_conn = server.login(transport, &alice, None);
        assert_eq!(
            alice_conn.send_direct(&bob, 1, &[b'x'; 1025]),
            Err(Status::TOO_LARGE)
        );
        assert!(alice_conn.is_open(), "a refusal does not close");
        let ok = alice_conn
            .send_direct(&bob, 2, &[b'y'; 1024])
            .expect("at the limit");
        let mut bob_conn = server.login(transport, &bob, None);
        let synced = bob_conn.sync_all();
        assert_eq!(synced.len(), 1, "the refused body was not stored");
        assert_eq!(synced[0].msg_id, ok.msg_id);
        assert_eq!(synced[0].body.len(), 1024);
    }
}

#[test]
fn a_resend_with_other_content_still_gets_the_original_ack_and_stores_nothing() {
    let server = TestServer::start();
    let (alice, bob, carol) = (
        unique_user("alice"),
        unique_user("bob"),
        unique_user("carol"),
    );
    let mut alice_conn = server.login(Transport::Tcp, &alice, None);
    let first = alice_conn.send_direct(&bob, 9, b"original").expect("sent");
    let other = alice_conn
        .send_direct(&carol, 9, b"changed my mind")
        .expect("answered");
    assert_eq!(other, first, "the key is (sender, client_msg_id) alone");
    let mut carol_conn = server.login(Transport::Ws, &carol, None);
    assert!(carol_conn.sync_all().is_empty(), "nothing stored for carol");
    let mut bob_conn = server.login(Transport::Ws, &bob, None);
    let synced = bob_conn.sync_all();
    assert_eq!(synced.len(), 1);
    assert_eq!(synced[0].body.as_ref(), b"original");
}

#[test]
fn sync_fetch_never_returns_another_users_messages() {
    let server = TestServer::start();
    for transport in BOTH {
        let (alice, bob, eve) = (unique_user("alice"), unique_user("bob"), unique_user("eve"));
        let mut alice_conn = server.login(transport, &alice, None);
        let secret = alice_conn
            .send_direct(&bob, 1, b"for bob only")
            .expect("sent");
        let mut eve_conn = server.login(transport, &eve, None);
        let mine = alice_conn.send_direct(&eve, 2, b"for eve").expect("sent");
        // Eve guesses bob's message id: skipped silently, covered still counts it.
        let fetch = eve_conn.sync_fetch(&[secret.msg_id, mine.msg_id, secret.msg_id + 1]);
        assert_eq!(fetch.covered, 3);
        assert_eq!(
            fetch.messages.iter().map(|m| m.msg_id).collect::<Vec<_>>(),
            vec![mine.msg_id]
        );
        assert_eq!(eve_conn.sync_index(0, 500).ids, vec![mine.msg_id]);
        // Acknowledging past bob's id does not touch bob's position.
        eve_conn.sync_ack(secret.msg_id + 1_000_000);
        let mut bob_conn = server.login(transport, &bob, None);
        assert_eq!(bob_conn.sync_index(0, 500).ids, vec![secret.msg_id]);
    }
}

#[test]
fn sync_fetch_stops_before_the_packet_limit_and_covers_the_rest_later() {
    let server = TestServer::start();
    let (alice, bob) = (unique_user("alice"), unique_user("bob"));
    let mut alice_conn = server.login(Transport::Tcp, &alice, None);
    // 24 bodies of 60 KiB: about 1.4 MiB, more than one 1 MiB packet holds.
    let body = |i: u64| vec![b'a' + (i % 26) as u8; 60 * 1024];
    let acks: Vec<u64> = (0..24u64)
        .map(|i| {
            alice_conn
                .send_direct(&bob, i, &body(i))
                .expect("sent")
                .msg_id
        })
        .collect();
    for transport in BOTH {
        let device = format!("{transport:?}").to_lowercase();
        let mut bob_conn = server.login(transport, &bob, Some(&device));
        let ids = bob_conn.sync_index(0, 500).ids;
        assert_eq!(ids, acks);
        let first = bob_conn.sync_fetch(&ids);
        assert!(
            first.covered >= 1 && usize::from(first.covered) < ids.len(),
            "{transport:?}: covered {} of {}",
            first.covered,
            ids.len()
        );
        assert_eq!(first.messages.len(), usize::from(first.covered));
        let payload: usize = 10
            + first
                .messages
                .iter()
                .map(|m| m.encoded_len())
                .sum::<usize>();
        assert!(
            payload <= 1 << 20,
            "{transport:?}: a {payload}-byte response"
        );
        let all = bob_conn.fetch_all(&ids);
        assert_eq!(all.iter().map(|m| m.msg_id).collect::<Vec<_>>(), acks);
        for (i, message) in all.iter().enumerate() {
            assert_eq!(message.body.as_ref(), body(i as u64).as_slice());
        }
    }
}

#[test]
fn sync_index_caps_its_limit_at_500() {
    let server = TestServer::start();
    let (alice, bob) = (unique_user("alice"), unique_user("bob"));
    let mut alice_conn = server.login(Transport::Tcp, &alice, None);
    let seqs: Vec<u32> = (0..520u64)
        .map(|i| alice_conn.send_request(&direct(&bob, i, b"x")))
        .collect();
    for seq in seqs {
        assert!(alice_conn.response(seq).result.is_ok());
    }
    let mut bob_conn = server.login(Transport::Ws, &bob, None);
    for limit in [0, 501, u16::MAX] {
        let index = bob_conn.sync_index(0, limit);
        assert_eq!(index.ids.len(), 500, "limit {limit} means 500");
        assert!(index.more);
    }
    let small = bob_conn.sync_index(0, 3);
    assert_eq!(small.ids.len(), 3);
    assert_eq!(bob_conn.sync_all().len(), 520);
}

#[test]
fn pushes_from_many_senders_arrive_once_each_in_ascending_id_order() {
    const SENDERS: usize = 4;
    const EACH: u64 = 50;
    let server = TestServer::start();
    let bob = unique_user("bob");
    for transport in BOTH {
        let mut bob_conn = server.login(transport, &bob, None);
        let mut senders: Vec<ChatClient> = (0..SENDERS)
            .map(|i| server.login(BOTH[i % 2], &unique_user("sender"), None))
            .collect();
        // Interleaved and pipelined, so the core sees them mixed.
        let mut pending = Vec::new();
        for i in 0..EACH {
            for (s, sender) in senders.iter_mut().enumerate() {
                pending.push((s, sender.send_request(&direct(&bob, i, b"burst"))));
            }
        }
        let mut acked = HashSet::new();
        for (s, seq) in pending {
            match senders[s].response(seq).result {
                Ok(ResponseBody::Send(ok)) => assert!(acked.insert(ok.msg_id)),
                other => panic!("SEND answered {other:?}"),
            }
        }
        let mut last = 0;
        for _ in 0..acked.len() {
            let message = bob_conn.expect_message();
            assert!(message.msg_id > last, "{transport:?}: pushes out of order");
            assert!(acked.contains(&message.msg_id));
            last = message.msg_id;
        }
        bob_conn.assert_no_push();
        bob_conn.sync_all();
    }
}

crate::on_postgres_too!(
    online_message_is_acked_after_commit_and_pushed_with_the_session_sender,
    the_sender_is_always_the_session_user,
    a_message_to_oneself_reaches_the_other_devices_once,
    offline_messages_are_synced_acked_and_never_sent_again,
    a_partial_ack_leaves_the_rest_and_acks_never_move_back,
    sync_pages_through_many_messages,
    a_resend_gets_the_original_ack_and_is_stored_once,
    the_same_client_msg_id_from_two_users_is_two_messages,
    a_body_over_the_limit_is_too_large_and_the_limit_itself_passes,
    a_resend_with_other_content_still_gets_the_original_ack_and_stores_nothing,
    sync_fetch_never_returns_another_users_messages,
    sync_fetch_stops_before_the_packet_limit_and_covers_the_rest_later,
    sync_index_caps_its_limit_at_500,
    pushes_from_many_senders_arrive_once_each_in_ascending_id_order,
);
