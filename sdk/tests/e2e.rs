//! The SDK against the real chat server over real loopback sockets, on both transports:
//! login (good, bad, expired), send and receive, groups, offline sync at the next connect,
//! kick, failover from dead and silent endpoints, and reconnect with resend after the server
//! is SIGKILLed and restarted on the same data.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::{
    config, dead_addr, drain_for, endpoint, now_secs, token, token_at, wait_for, ChildServer,
    TestServer, Transport, BOTH, SECRET,
};
use switchboard_sdk::{
    Client, ConnectError, Event, KickReason, RequestError, SendError, Status, StopReason, Target,
};

fn connect(server: &TestServer, transport: Transport, user: &str) -> Client {
    connect_device(server, transport, user, None)
}

fn connect_device(
    server: &TestServer,
    transport: Transport,
    user: &str,
    device: Option<&str>,
) -> Client {
    let config = config(&[server.endpoint(transport)], token(user, device));
    Client::connect(config).unwrap_or_else(|e| panic!("{user} connects over {transport:?}: {e}"))
}

fn next_message(client: &Client) -> switchboard_sdk::ChatMessage {
    wait_for(client.events(), "a message", |e| match e {
        Event::Message(m) => Some(m.clone()),
        _ => None,
    })
}

fn sync_done(client: &Client) -> usize {
    wait_for(client.events(), "SyncDone", |e| match e {
        Event::SyncDone { delivered } => Some(*delivered),
        _ => None,
    })
}

/// The ignored helper that a re-executed test binary runs as the server child process.
#[test]
#[ignore = "helper: the server child process of the kill/restart test, run by ChildServer"]
fn serve_child() {
    support::serve_child_main();
}

#[test]
fn login_good_bad_and_expired() {
    let server = TestServer::start();
    for transport in BOTH {
        let client = connect_device(&server, transport, "alice", Some("phone"));
        assert_eq!(client.login().user, "alice");
        assert_eq!(client.login().device, "phone");
        assert!(client.login().max_body > 0);
        assert_eq!(
            client.login().endpoint.to_string(),
            server.endpoint(transport)
        );
        drop(client);

        let forged = token_at(
            b"not-the-secret",
            "alice",
            None,
            Duration::from_secs(60),
            now_secs(),
        );
        let refused = Client::connect(config(&[server.endpoint(transport)], forged));
        assert!(
            matches!(refused, Err(ConnectError::LoginRefused(s)) if s == Status::INVALID_TOKEN),
            "{transport:?}: {refused:?}"
        );

        let expired = token_at(
            SECRET,
            "alice",
            None,
            Duration::from_secs(60),
            now_secs() - 3600,
        );
        let refused = Client::connect(config(&[server.endpoint(transport)], expired));
        assert!(
            matches!(refused, Err(ConnectError::LoginRefused(s)) if s == Status::TOKEN_EXPIRED),
            "{transport:?}: {refused:?}"
        );
    }
}

#[test]
fn a_token_provider_is_asked_at_login() {
    let server = TestServer::start();
    let config = config(&[server.endpoint(Transport::Tcp)], String::new())
        .token_provider(|| Ok(token("dora", None)));
    let client = Client::connect(config).expect("the provider's token logs in");
    assert_eq!(client.login().user, "dora");
    let failing = support::config(&[server.endpoint(Transport::Tcp)], String::new())
        .token_provider(|| Err("backend down".into()));
    assert!(matches!(
        Client::connect(failing),
        Err(ConnectError::Token(message)) if message == "backend down"
    ));
}

#[test]
fn send_and_receive_across_transports() {
    let server = TestServer::start();
    for (from, to) in [
        (Transport::Tcp, Transport::Ws),
        (Transport::Ws, Transport::Tcp),
    ] {
        let alice = connect(&server, from, "alice");
        let bob = connect(&server, to, "bob");
        sync_done(&bob);
        let ack = alice.send("bob", "hi bob").expect("acked");
        let got = next_message(&bob);
        assert_eq!(got.msg_id, ack.msg_id);
        assert_eq!(got.client_msg_id, ack.client_msg_id);
        assert_eq!(got.from.as_str(), "alice");
        assert_eq!(&got.body[..], b"hi bob");
        assert_eq!(got.target, Target::Direct("bob".into()));

        // Pipelined sends are acked in order of their ids and arrive in that order.
        let handles: Vec<_> = (0..20)
            .map(|i| alice.send_async("bob", format!("m{i}")))
            .collect();
        let acks: Vec<_> = handles
            .iter()
            .map(|h| h.wait(Duration::from_secs(5)).expect("acked"))
            .collect();
        assert!(acks.windows(2).all(|w| w[0].msg_id < w[1].msg_id));
        for (i, ack) in acks.iter().enumerate() {
            let got = next_message(&bob);
            assert_eq!(
                (got.msg_id, &got.body[..]),
                (ack.msg_id, format!("m{i}").as_bytes())
            );
        }
    }
}

#[test]
fn groups_create_send_detail_join_quit() {
    let server = TestServer::start();
    let alice = connect(&server, Transport::Tcp, "alice");
    let bob = connect(&server, Transport::Ws, "bob");
    let carol = connect(&server, Transport::Tcp, "carol");
    sync_done(&bob);
    sync_done(&carol);
    let group = alice.create_group("team", &["bob"]).expect("created");
    let detail = alice.group_detail(group).expect("detail");
    assert_eq!(
        (detail.name.as_str(), detail.owner.as_str()),
        ("team", "alice")
    );
    let mut members = detail.members.clone();
    members.sort();
    assert_eq!(members, ["alice", "bob"]);

    assert_eq!(
        carol.group_send(group, "not yet"),
        Err(SendError::Refused(Status::NOT_MEMBER))
    );
    carol.join_group(group).expect("joined");
    let ack = alice.group_send(group, "hello team").expect("acked");
    for member in [&bob, &carol] {
        let got = next_message(member);
        assert_eq!(
            (got.msg_id, got.target.clone()),
            (ack.msg_id, Target::Group(group))
        );
    }
    carol.quit_group(group).expect("quit");
    assert_eq!(
        carol.quit_group(group),
        Err(RequestError::Refused(Status::NOT_MEMBER))
    );
    assert_eq!(
        alice.group_detail(u64::MAX),
        Err(RequestError::Refused(Status::NOT_FOUND))
    );
}

#[test]
fn offline_messages_are_synced_at_the_next_connect_and_only_once() {
    let server = TestServer::start();
    for transport in BOTH {
        let bob_name = format!("bob-{transport:?}");
        let alice = connect(&server, Transport::Tcp, "alice");
        let acks: Vec<_> = (0..3)
            .map(|i| {
                alice
                    .send(&bob_name, format!("offline {i}"))
                    .expect("acked")
            })
            .collect();
        let bob = connect(&server, transport, &bob_name);
        let mut got = Vec::new();
        let delivered = wait_for(bob.events(), "SyncDone", |e| match e {
            Event::Message(m) => {
                got.push(m.msg_id);
                None
            }
            Event::SyncDone { delivered } => Some(*delivered),
            _ => None,
        });
        assert_eq!(delivered, 3);
        assert_eq!(got, acks.iter().map(|a| a.msg_id).collect::<Vec<_>>());
        // Give the SYNC_CONFIRM time to be stored, then a new client of the same device syncs
        // nothing.
        drop(bob);
        let bob = connect(&server, transport, &bob_name);
        assert_eq!(sync_done(&bob), 0);
    }
}

#[test]
fn pushed_messages_are_confirmed_by_cursor_and_not_synced_again() {
    let server = TestServer::start();
    for transport in BOTH {
        let bob_name = format!("pushed-bob-{transport:?}");
        let bob = connect(&server, transport, &bob_name);
        assert_eq!(sync_done(&bob), 0);
        let alice = connect(&server, Transport::Tcp, "pushed-alice");
        let sent: Vec<u64> = (0..3)
            .map(|i| {
                alice
                    .send(&bob_name, format!("live {i}"))
                    .expect("acked")
                    .msg_id
            })
            .collect();
        let got: Vec<u64> = (0..3).map(|_| next_message(&bob).msg_id).collect();
        assert_eq!(got, sent);
        // Pushes carry no cursor: the SDK confirms them with a catch-up SYNC_LIST 100 ms after
        // the burst. Ten times that, even on a loaded machine, then the same device kind again.
        std::thread::sleep(Duration::from_secs(1));
        drop(bob);
        let bob = connect(&server, transport, &bob_name);
        assert_eq!(sync_done(&bob), 0, "the pushed messages were confirmed");
    }
}

#[test]
fn a_second_login_of_the_same_device_kicks_the_first_which_stops() {
    let server = TestServer::start();
    for transport in BOTH {
        let first = connect(&server, transport, "erin");
        let _second = connect(&server, transport, "erin");
        let (reason, _text) = wait_for(first.events(), "Kicked", |e| match e {
            Event::Kicked { reason, text } => Some((*reason, text.clone())),
            _ => None,
        });
        assert_eq!(reason, KickReason::LOGGED_IN_ELSEWHERE);
        let stopped = wait_for(first.events(), "Stopped", |e| match e {
            Event::Stopped { reason } => Some(reason.clone()),
            _ => None,
        });
        assert!(matches!(stopped, StopReason::Kicked { .. }));
        assert_eq!(first.send("bob", "after the kick"), Err(SendError::Closed));
        // No reconnect: nothing follows Stopped.
        assert!(drain_for(first.events(), Duration::from_millis(300)).is_empty());
    }
}

#[test]
fn failover_skips_a_dead_and_a_silent_endpoint() {
    let server = TestServer::start();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoints = [
        endpoint(Transport::Tcp, dead_addr()),
        endpoint(Transport::Ws, silent.local_addr().expect("addr")),
        server.endpoint(Transport::Ws),
    ];
    let mut config = config(&endpoints, token("frank", None));
    config.request_timeout = Duration::from_millis(500);
    let client = Client::connect(config).expect("the third endpoint answers");
    assert_eq!(client.login().endpoint.to_string(), endpoints[2]);

    let nowhere = [endpoint(Transport::Tcp, dead_addr())];
    let mut config = support::config(&nowhere, token("frank", None));
    config.initial_connect_timeout = Duration::from_millis(600);
    assert!(matches!(
        Client::connect(config),
        Err(ConnectError::Unreachable { .. })
    ));
}

#[test]
fn after_a_kill_and_restart_unacked_sends_are_resent_and_stored_once() {
    for transport in BOTH {
        let dir = tempfile::tempdir().expect("a temp dir");
        let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let server = ChildServer::spawn(dir.path(), any, any);
        let addr = server.addr(transport);
        let alice = Client::connect(config(&[endpoint(transport, addr)], token("alice", None)))
            .expect("alice connects");
        let bob = Client::connect(config(&[endpoint(transport, addr)], token("bob", None)))
            .expect("bob connects");
        sync_done(&bob);

        // A burst, and the server dies in the middle of it: some are stored, some acked.
        let mut handles: Vec<_> = (0..25)
            .map(|i| alice.send_async("bob", format!("burst {i}")))
            .collect();
        // Then a burst the frozen server reads nothing of: sent, certainly never acked.
        server.freeze();
        let frozen: Vec<_> = (25..50)
            .map(|i| alice.send_async("bob", format!("burst {i}")))
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        let (tcp, ws) = server.kill();
        assert!(frozen.iter().all(|h| h.try_result().is_none()));
        let frozen_ids: Vec<u64> = frozen.iter().map(|h| h.client_msg_id()).collect();
        handles.extend(frozen);
        wait_for(alice.events(), "alice's Disconnected", |e| {
            matches!(e, Event::Disconnected { .. }).then_some(())
        });
        // Sent while the server is down: queued behind the burst.
        let late = alice.send_async("bob", "while down");
        let server = ChildServer::spawn(dir.path(), tcp, ws);
        let endpoint_back = wait_for(alice.events(), "alice's Reconnected", |e| match e {
            Event::Reconnected { endpoint } => Some(endpoint.to_string()),
            _ => None,
        });
        assert_eq!(endpoint_back, endpoint(transport, server.addr(transport)));

        let mut acks = Vec::new();
        for handle in handles.iter().chain([&late]) {
            let ack = handle
                .wait(Duration::from_secs(10))
                .expect("acked after the restart");
            assert_eq!(ack.client_msg_id, handle.client_msg_id());
            acks.push(ack);
        }
        // Every message reaches bob exactly once. The frozen burst was first stored after the
        // restart, so bob's copy has the id its ack named. (A message of the first burst may
        // have been pushed to bob, then lost with the server before it was stored, and stored
        // again under a new id when resent: bob still sees it once, under the first id.)
        let mut by_client_id: HashMap<u64, u64> = HashMap::new();
        while by_client_id.len() < acks.len() {
            let got = next_message(&bob);
            let earlier = by_client_id.insert(got.client_msg_id, got.msg_id);
            assert_eq!(
                earlier,
                None,
                "{transport:?}: client_msg_id {} delivered again as msg_id {} ({:?})",
                got.client_msg_id,
                got.msg_id,
                String::from_utf8_lossy(&got.body)
            );
        }
        for ack in &acks {
            let got = by_client_id.get(&ack.client_msg_id);
            assert!(got.is_some(), "{transport:?}: {ack:?} never reached bob");
            if frozen_ids.contains(&ack.client_msg_id) {
                assert_eq!(got, Some(&ack.msg_id), "{transport:?}");
            }
        }
        let extra: Vec<_> = drain_for(bob.events(), Duration::from_millis(300))
            .into_iter()
            .filter(|e| matches!(e, Event::Message(_)))
            .collect();
        assert!(
            extra.is_empty(),
            "{transport:?}: repeats after the last: {extra:?}"
        );
        drop((alice, bob));
        drop(server);
    }
}

#[test]
fn a_silent_server_is_detected_by_heartbeats_and_the_client_comes_back() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let server = ChildServer::spawn(dir.path(), any, any);
    for transport in BOTH {
        let mut config = config(
            &[endpoint(transport, server.addr(transport))],
            token("gina", None),
        );
        config.heartbeat_interval = Duration::from_millis(200);
        config.request_timeout = Duration::from_secs(1);
        let client = Client::connect(config).expect("gina connects");
        sync_done(&client);
        // Quiet but alive: pings keep it up well past 2.5 heartbeats.
        let quiet = drain_for(client.events(), Duration::from_millis(800));
        assert!(quiet.is_empty(), "{transport:?}: {quiet:?}");
        server.freeze();
        let error = wait_for(client.events(), "Disconnected", |e| match e {
            Event::Disconnected { error } => Some(error.clone()),
            _ => None,
        });
        assert!(
            matches!(error, switchboard_sdk::LinkError::Silent(_)),
            "{transport:?}: {error:?}"
        );
        server.thaw();
        wait_for(client.events(), "Reconnected", |e| {
            matches!(e, Event::Reconnected { .. }).then_some(())
        });
        client
            .send("gina", "back")
            .expect("acked after the reconnect");
    }
}

#[test]
fn a_reconnect_fails_over_to_the_next_endpoint() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let first = ChildServer::spawn(dir.path(), any, any);
    let second = TestServer::start();
    let endpoints = [
        endpoint(Transport::Tcp, first.addr(Transport::Tcp)),
        second.endpoint(Transport::Ws),
    ];
    let client = Client::connect(config(&endpoints, token("hank", None))).expect("connects");
    assert_eq!(client.login().endpoint.to_string(), endpoints[0]);
    first.kill();
    let back_on = wait_for(client.events(), "Reconnected", |e| match e {
        Event::Reconnected { endpoint } => Some(endpoint.to_string()),
        _ => None,
    });
    assert_eq!(back_on, endpoints[1]);
    client.send("hank", "on the second gateway").expect("acked");
}
