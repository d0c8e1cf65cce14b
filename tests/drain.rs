//! The drain without a reconnect storm on the real `switchboard serve` binary, started by
//! `POST /admin/drain`: `/readyz` turns 503 at once while newcomers are still served for the
//! grace; then every connection is closed, spread over the period (the close times, read by
//! one thread per client, fall in every part of it), each logged-in client told
//! RECONNECT_AFTER (delays spread within `--drain-reconnect-delay`) and
//! KICKED(SERVER_SHUTDOWN), WebSocket with 1012; clients keep sending until then, and every
//! message acknowledged before or during the drain is in the store after the exit.

mod chat_common;

use std::time::{Duration, Instant};

use bytes::BytesMut;
use chat_common::client::direct;
use chat_common::http::{get, request};
use chat_common::process::ServeProcess;
use chat_common::{unique_user, ChatClient, Event, Transport, ADMIN_TOKEN};
use switchboard_codec::ws::CloseCode;
use switchboard_protocol::{KickReason, Push, ResponseBody, ServerPacket};

const CLIENTS: usize = 24;
const GRACE: Duration = Duration::from_secs(1);
const PERIOD: Duration = Duration::from_secs(3);

/// What one client saw of the drain.
#[derive(Debug)]
struct Seen {
    transport: Transport,
    acked: Vec<u64>,
    reconnect_after: Option<u32>,
    kicked: Option<KickReason>,
    ws_close: Option<CloseCode>,
    closed_at: Duration,
}

/// Sends to `to` one message at a time until the server closes the connection.
fn send_until_closed(mut client: ChatClient, to: String, started: Instant, id: u64) -> Seen {
    let transport = client.transport();
    let mut seen = Seen {
        transport,
        acked: Vec::new(),
        reconnect_after: None,
        kicked: None,
        ws_close: None,
        closed_at: Duration::ZERO,
    };
    let mut seq = 0u32;
    let mut waiting = false;
    loop {
        if !waiting && seen.kicked.is_none() {
            seq += 1;
            let client_msg_id = id * 1_000_000 + u64::from(seq);
            let mut bytes = BytesMut::new();
            direct(&to, client_msg_id, b"through the drain")
                .encode(seq, &mut bytes)
                .expect("encode");
            // The server may have closed already: what it answers is what counts.
            waiting = client.send_unit(&bytes).is_ok();
        }
        match client.next_event(Duration::from_secs(10)) {
            Event::Packet(ServerPacket::Response(response)) => {
                assert_eq!(response.seq, seq, "one request at a time");
                match response.result {
                    Ok(ResponseBody::Send(ok)) => seen.acked.push(ok.msg_id),
                    other => panic!("SEND answered {other:?}"),
                }
                waiting = false;
                std::thread::sleep(Duration::from_millis(20));
            }
            Event::Packet(ServerPacket::Push(Push::ReconnectAfter { delay_ms })) => {
                assert!(seen.kicked.is_none(), "RECONNECT_AFTER after KICKED");
                seen.reconnect_after = Some(delay_ms);
            }
            Event::Packet(ServerPacket::Push(Push::Kicked { reason, .. })) => {
                seen.kicked = Some(reason);
            }
            Event::Packet(other) => panic!("unexpected {other:?}"),
            Event::Closed(closure) => {
                seen.closed_at = started.elapsed();
                seen.ws_close = closure.ws_close;
                assert!(!closure.reset, "reset instead of a close: {seen:?}");
                return seen;
            }
            Event::Silent => panic!("no answer and no close within 10 s: {seen:?}"),
        }
    }
}

#[test]
fn a_drain_spreads_closes_over_the_period_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let args = [
        "--drain-grace",
        "1s",
        "--drain-period",
        "3s",
        "--drain-reconnect-delay",
        "2s",
        "--drain-timeout",
        "5s",
        "--request-rate",
        "0",
    ];
    let env = [("SWITCHBOARD_ADMIN_TOKEN", ADMIN_TOKEN)];
    let server = ServeProcess::spawn_with_env(dir.path(), &args, &env);
    let admin = server.admin.expect("an admin listener");
    let bob = unique_user("bob");
    let clients: Vec<ChatClient> = (0..CLIENTS)
        .map(|i| {
            let transport = if i % 2 == 0 {
                Transport::Tcp
            } else {
                Transport::Ws
            };
            server.login(transport, &unique_user("sender"), None)
        })
        .collect();

    // A wrong token drains nothing.
    let refused = request(
        admin,
        "POST",
        "/admin/drain",
        &[("Authorization", "Bearer nope")],
        b"",
    );
    assert_eq!(refused.status, 401);
    assert_eq!(get(admin, "/readyz").status, 200);

    let started = Instant::now();
    let senders: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            let to = bob.clone();
            std::thread::spawn(move || send_until_closed(client, to, started, i as u64))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let drained = request(
        admin,
        "POST",
        "/admin/drain",
        &[("Authorization", &bearer)],
        b"",
    );
    let drain_at = started.elapsed();
    assert_eq!(drained.status, 202, "{}", drained.body);
    assert_eq!(drained.json()["period_ms"], 3000);
    let ready = get(admin, "/readyz");
    assert_eq!(
        (ready.status, ready.body.trim()),
        (503, "not ready: draining")
    );
    // In the grace a newcomer is still served (the balancer may not have noticed yet).
    let mut newcomer = server.login(Transport::Tcp, &unique_user("late"), None);
    newcomer.ping();
    drop(newcomer);

    let seen: Vec<Seen> = senders
        .into_iter()
        .map(|sender| sender.join().expect("a sender"))
        .collect();
    let status = server.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "exit status {status:?}");

    // Every client: RECONNECT_AFTER within the maximum, KICKED(SERVER_SHUTDOWN), 1012 on WS.
    let mut delays = std::collections::HashSet::new();
    for client in &seen {
        let delay = client.reconnect_after.expect("RECONNECT_AFTER");
        assert!(delay <= 2000, "{client:?}");
        delays.insert(delay);
        assert_eq!(
            client.kicked,
            Some(KickReason::SERVER_SHUTDOWN),
            "{client:?}"
        );
        let expected = (client.transport == Transport::Ws).then_some(CloseCode::SERVICE_RESTART);
        assert_eq!(client.ws_close, expected, "{client:?}");
        assert!(!client.acked.is_empty(), "{client:?}");
    }
    assert!(
        delays.len() > CLIENTS / 2,
        "suggested delays not spread: {delays:?}"
    );

    // The closes: none in the grace, spread over the period in thirds.
    let mut times: Vec<Duration> = seen
        .iter()
        .map(|c| c.closed_at.saturating_sub(drain_at))
        .collect();
    times.sort();
    eprintln!("close times after POST /admin/drain: {times:?}");
    assert!(times[0] >= GRACE - Duration::from_millis(100), "{times:?}");
    let third = PERIOD / 3;
    let slack = Duration::from_millis(300);
    for part in 0..3u32 {
        let from = GRACE + third * part;
        let count = times
            .iter()
            .filter(|&&t| t + slack >= from && t < from + third + slack)
            .count();
        assert!(
            (CLIENTS / 6..=CLIENTS / 2 + 2).contains(&count),
            "{count} of {CLIENTS} closes in third {part} of the period: {times:?}"
        );
    }

    // Nothing acknowledged is lost: bob finds every acknowledged message after a restart.
    let server = ServeProcess::spawn(dir.path(), &[]);
    let mut bob_conn = server.login(Transport::Tcp, &bob, None);
    let stored: std::collections::HashSet<u64> =
        bob_conn.sync_all().iter().map(|m| m.msg_id).collect();
    let acked: Vec<u64> = seen.iter().flat_map(|c| c.acked.iter().copied()).collect();
    eprintln!("{} acknowledged, {} stored", acked.len(), stored.len());
    let missing: Vec<&u64> = acked.iter().filter(|id| !stored.contains(id)).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
}
