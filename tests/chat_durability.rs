//! The real `switchboard serve` binary and its data directory: every acknowledged message
//! survives a SIGKILL and is synced after a restart (resends of it still answered with the
//! original ack), a SIGTERM drains and keeps what was acknowledged, the command-line limits
//! reach the clients, and messages older than `--retention` are purged and never synced.

mod chat_common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chat_common::client::direct;
use chat_common::process::ServeProcess;
use chat_common::{token, unique_user, ChatClient, Transport, IO_TIMEOUT};
use switchboard_protocol::{ResponseBody, SendOk, ServerPacket, Target};

fn body_of(client_msg_id: u64) -> Vec<u8> {
    format!("durable message {client_msg_id}").into_bytes()
}

#[test]
fn acknowledged_messages_survive_sigkill_and_restart() {
    const SENT: u64 = 2_000;
    const KILL_AFTER: usize = 100;
    let dir = tempfile::tempdir().expect("a temp dir");
    let (alice, bob) = (unique_user("alice"), unique_user("bob"));

    // 1,000 SENDs pipelined per connection: far past the request rate a chat client is held
    // to (docs/protocol.md §5), which is not what this test is about.
    let unlimited = ["--request-rate", "0"];
    let server = ServeProcess::spawn(dir.path(), &unlimited);
    let mut alice_tcp = server.login(Transport::Tcp, &alice, None);
    let mut alice_ws = server.login(Transport::Ws, &alice, Some("desktop"));
    // Pipelined over both transports; the server is killed while the later half is in flight.
    let mut in_flight: Vec<(Transport, u32, u64)> = Vec::new();
    for client_msg_id in 0..SENT {
        let client = if client_msg_id % 2 == 0 {
            &mut alice_tcp
        } else {
            &mut alice_ws
        };
        let seq = client.send_request(&direct(&bob, client_msg_id, &body_of(client_msg_id)));
        in_flight.push((client.transport(), seq, client_msg_id));
    }
    let mut acked: HashMap<u64, SendOk> = HashMap::new();
    for (transport, seq, client_msg_id) in &in_flight {
        if acked.len() >= KILL_AFTER {
            break;
        }
        let client = match transport {
            Transport::Tcp => &mut alice_tcp,
            Transport::Ws => &mut alice_ws,
        };
        match client.response(*seq).result {
            Ok(ResponseBody::Send(ok)) => {
                acked.insert(*client_msg_id, ok);
            }
            other => panic!("SEND {client_msg_id} answered {other:?}"),
        }
    }
    server.kill();
    // Acks that reached our socket buffers before the kill count too: read what is left.
    let read_so_far = acked.len();
    for client in [&mut alice_tcp, &mut alice_ws] {
        let transport = client.transport();
        let (late, _closure) = client.expect_closed(IO_TIMEOUT);
        for packet in late {
            let ServerPacket::Response(response) = packet else {
                continue;
            };
            let Ok(ResponseBody::Send(ok)) = response.result else {
                panic!("a refusal before the kill: {response:?}");
            };
            let &(_, _, client_msg_id) = in_flight
                .iter()
                .find(|(t, seq, _)| *t == transport && *seq == response.seq)
                .expect("a response to a request we sent");
            acked.insert(client_msg_id, ok);
        }
    }
    drop((alice_tcp, alice_ws));
    assert!(acked.len() >= KILL_AFTER);

    let server = ServeProcess::spawn(dir.path(), &unlimited);
    let mut bob_conn = server.login(Transport::Ws, &bob, None);
    let synced = bob_conn.sync_all();
    let mut seen = HashSet::new();
    for message in &synced {
        assert!(
            seen.insert(message.client_msg_id),
            "stored twice: {message:?}"
        );
        assert_eq!(message.from.as_str(), alice);
        assert_eq!(message.target, Target::Direct(bob.as_str().into()));
        assert_eq!(message.body.as_ref(), body_of(message.client_msg_id));
        if let Some(ack) = acked.get(&message.client_msg_id) {
            assert_eq!(
                (message.msg_id, message.server_time_ms),
                (ack.msg_id, ack.server_time_ms)
            );
        }
    }
    let lost: Vec<u64> = acked
        .keys()
        .filter(|id| !seen.contains(id))
        .copied()
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged but lost in the SIGKILL: {lost:?}"
    );

    // A resend after the restart is answered from the store with the original ack.
    let mut alice_again = server.login(Transport::Tcp, &alice, None);
    let (&some_id, &original) = acked.iter().next().expect("acks");
    let resent = alice_again
        .send_direct(&bob, some_id, &body_of(some_id))
        .expect("resent");
    assert_eq!(
        resent, original,
        "the original msg_id and time after a restart"
    );
    // New ids stay above every id handed out before the crash.
    let newest_before = acked.values().map(|ok| ok.msg_id).max().expect("acks");
    let fresh = alice_again
        .send_direct(&bob, SENT + 1, b"after the restart")
        .expect("sent");
    assert!(fresh.msg_id > newest_before);
    let after: Vec<u64> = bob_conn.sync_all().iter().map(|m| m.msg_id).collect();
    assert_eq!(after, vec![fresh.msg_id], "the resend stored nothing new");
    eprintln!(
        "durability: {SENT} sent, {} acknowledged before SIGKILL ({read_so_far} read before it), \
         {} synced after the restart",
        acked.len(),
        synced.len()
    );
}

#[test]
fn sigterm_drains_and_keeps_what_was_acknowledged() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (alice, bob) = (unique_user("alice"), unique_user("bob"));
    let drain = [
        "--drain-timeout",
        "3s",
        "--drain-grace",
        "0s",
        "--drain-period",
        "1s",
    ];
    let server = ServeProcess::spawn(dir.path(), &drain);
    let mut alice_conn = server.login(Transport::Tcp, &alice, None);
    let mut bob_ws = server.login(Transport::Ws, &bob, None);
    let acks: Vec<u64> = (0..20)
        .map(|i| {
            alice_conn
                .send_direct(&bob, i, &body_of(i))
                .expect("sent")
                .msg_id
        })
        .collect();
    for &id in &acks {
        assert_eq!(bob_ws.expect_message().msg_id, id);
    }
    let started = Instant::now();
    server.signal_term();
    alice_conn.expect_closed(IO_TIMEOUT);
    bob_ws.expect_closed(IO_TIMEOUT);
    let status = server.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "exit status {status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "drained in {:?}",
        started.elapsed()
    );

    let server = ServeProcess::spawn(dir.path(), &[]);
    let mut bob_conn = server.login(Transport::Tcp, &bob, Some("desktop"));
    let ids: Vec<u64> = bob_conn.sync_all().iter().map(|m| m.msg_id).collect();
    assert_eq!(ids, acks);
}

#[test]
fn command_line_limits_reach_the_clients() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let server = ServeProcess::spawn(
        dir.path(),
        &[
            "--max-body",
            "2048",
            "--read-wait",
            "45s",
            "--group-member-limit",
            "2",
        ],
    );
    let user = unique_user("alice");
    let mut client = ChatClient::connect(Transport::Ws, server.ws);
    let ok = client.login(&token(&user, Some("web"))).expect("logged in");
    assert_eq!(ok.max_body, 2048);
    assert_eq!(ok.idle_timeout_ms, 45_000);
    assert_eq!(
        client.send_direct("bob", 1, &[0; 2049]),
        Err(switchboard_protocol::Status::TOO_LARGE)
    );
    assert_eq!(
        client.group_create("trio", &["bob", "carol"]),
        Err(switchboard_protocol::Status::GROUP_FULL)
    );
    client.group_create("duo", &["bob"]).expect("two fit");
}

#[test]
fn messages_older_than_the_retention_are_never_synced() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (alice, bob) = (unique_user("alice"), unique_user("bob"));
    let retention = ["--retention", "1s"];

    let server = ServeProcess::spawn(dir.path(), &retention);
    let mut alice_conn = server.login(Transport::Tcp, &alice, None);
    let old = alice_conn.send_direct(&bob, 1, b"old news").expect("sent");
    server.kill();
    drop(alice_conn);
    // Past the retention: the store purges at start (and every minute after).
    std::thread::sleep(Duration::from_millis(1_500));

    let server = ServeProcess::spawn(dir.path(), &retention);
    let mut alice_conn = server.login(Transport::Tcp, &alice, None);
    let fresh = alice_conn.send_direct(&bob, 2, b"fresh").expect("sent");
    let mut bob_conn = server.login(Transport::Ws, &bob, None);
    let index = bob_conn.sync_index(0, 500);
    assert_eq!(index.ids, vec![fresh.msg_id], "the old message is purged");
    // Fetching the purged id by hand finds nothing either.
    let fetch = bob_conn.sync_fetch(&[old.msg_id, fresh.msg_id]);
    assert_eq!(
        fetch.messages.iter().map(|m| m.msg_id).collect::<Vec<_>>(),
        vec![fresh.msg_id]
    );
    // Once purged, its client_msg_id may be reused: a new message, not the old ack.
    let reused = alice_conn.send_direct(&bob, 1, b"new news").expect("sent");
    assert_ne!(reused.msg_id, old.msg_id);
    let ids: Vec<u64> = bob_conn.sync_all().iter().map(|m| m.msg_id).collect();
    assert_eq!(ids, vec![fresh.msg_id, reused.msg_id]);
}

crate::on_postgres_too!(
    acknowledged_messages_survive_sigkill_and_restart,
    sigterm_drains_and_keeps_what_was_acknowledged,
    command_line_limits_reach_the_clients,
    messages_older_than_the_retention_are_never_synced,
);
