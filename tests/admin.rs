//! The admin listener over real sockets: health and readiness through start-up and a drain,
//! the Prometheus page following real traffic, and /router.

mod chat_common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::Duration;

use chat_common::http::{get, prometheus, request};
use chat_common::{
    loopback, unique_user, wait_until, AdminOptions, ServerOptions, TestServer, Transport,
};
use switchboard::admin::{AdminConfig, AdminServer};
use switchboard::gateway::Backend;

fn with_admin(token: Option<&str>) -> TestServer {
    TestServer::with_options(ServerOptions {
        admin: Some(AdminOptions {
            token: token.map(str::to_owned),
            ..AdminOptions::default()
        }),
        ..ServerOptions::default()
    })
}

#[test]
fn before_the_store_is_open_the_listener_is_alive_and_not_ready() {
    let config = AdminConfig {
        addr: loopback(),
        token: None,
        advertise: Vec::new(),
        max_request_body: 1 << 16,
        io_timeout: Duration::from_millis(500),
    };
    // Started, never attached: what a server looks like while its store opens.
    let admin = AdminServer::start(config, 1 << 16).expect("the admin listener starts");
    let addr = admin.addr();
    assert_eq!(get(addr, "/healthz").status, 200);
    let ready = get(addr, "/readyz");
    assert_eq!(ready.status, 503, "{ready:?}");
    assert!(ready.body.contains("starting"), "{ready:?}");
    let page = prometheus(&get(addr, "/metrics").body);
    assert_eq!(page.get("switchboard_ready"), Some(&0.0));
    assert_eq!(get(addr, "/nothing-here").status, 404);
    assert_eq!(request(addr, "POST", "/healthz", &[], b"").status, 405);
    // A request never finished does not hold a thread for longer than the I/O timeout.
    let mut stalled = std::net::TcpStream::connect(addr).expect("connect");
    stalled
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    stalled
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let _ = stalled.read_to_end(&mut rest);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "closed after the I/O timeout, not held: {:?}",
        started.elapsed()
    );
    assert_eq!(get(addr, "/healthz").status, 200, "still serving");
    admin.shutdown();
}

#[test]
fn readyz_turns_503_when_draining_while_healthz_stays_200() {
    let server = with_admin(None);
    let addr = server.admin();
    assert_eq!(get(addr, "/healthz").status, 200);
    let ready = get(addr, "/readyz");
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));
    server
        .server()
        .readiness()
        .expect("an admin listener")
        .set_draining();
    let ready = get(addr, "/readyz");
    assert_eq!(ready.status, 503);
    assert!(ready.body.contains("draining"), "{ready:?}");
    assert_eq!(get(addr, "/healthz").status, 200, "alive while draining");
    let page = prometheus(&get(addr, "/metrics").body);
    assert_eq!(page.get("switchboard_draining"), Some(&1.0));
}

fn scrape(server: &TestServer) -> HashMap<String, f64> {
    let reply = get(server.admin(), "/metrics");
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{reply:?}"
    );
    prometheus(&reply.body)
}

fn value(page: &HashMap<String, f64>, name: &str) -> f64 {
    *page
        .get(name)
        .unwrap_or_else(|| panic!("{name} is on the page"))
}

fn grew(before: &HashMap<String, f64>, after: &HashMap<String, f64>, name: &str) -> f64 {
    value(after, name) - value(before, name)
}

#[test]
fn metrics_follow_logins_messages_and_commits() {
    let server = with_admin(None);
    let before = scrape(&server);
    let (alice, bob) = (unique_user("alice"), unique_user("bob"));
    let mut sender = server.login(Transport::Ws, &alice, None);
    let mut receiver = server.login(Transport::Tcp, &bob, None);
    for id in 1..=5 {
        sender.send_direct(&bob, id, b"counted").expect("stored");
        receiver.expect_message();
    }
    let after = scrape(&server);
    assert_eq!(grew(&before, &after, "switchboard_logins_total"), 2.0);
    assert_eq!(
        grew(&before, &after, "switchboard_messages_accepted_total"),
        5.0
    );
    assert_eq!(grew(&before, &after, "switchboard_pushes_total"), 5.0);
    assert!(grew(&before, &after, "switchboard_store_commit_seconds_count") >= 5.0);
    assert!(grew(&before, &after, "switchboard_store_batch_requests_sum") >= 5.0);
    let accepted = "switchboard_connections_accepted_total";
    assert_eq!(
        grew(&before, &after, &format!("{accepted}{{transport=\"ws\"}}")),
        1.0
    );
    assert_eq!(
        grew(&before, &after, &format!("{accepted}{{transport=\"tcp\"}}")),
        1.0
    );
    assert_eq!(
        grew(&before, &after, "switchboard_websocket_handshakes_total"),
        1.0
    );
    assert_eq!(value(&after, "switchboard_connections_open"), 2.0);
    assert_eq!(value(&after, "switchboard_online_users"), 2.0);
    // Two LOGINs, five SENDs in; their answers and five pushes out.
    assert!(grew(&before, &after, "switchboard_messages_in_total") >= 7.0);
    assert!(grew(&before, &after, "switchboard_messages_out_total") >= 12.0);
    assert!(grew(&before, &after, "switchboard_bytes_in_total") > 0.0);
    assert!(grew(&before, &after, "switchboard_bytes_out_total") > 0.0);
    assert!(grew(&before, &after, "switchboard_reactor_loop_seconds_count") > 0.0);
    assert!(after.contains_key("switchboard_reactor_inbox_bytes{reactor=\"0\"}"));
    assert!(after.contains_key("switchboard_core_queue_bytes"));
    assert!(after.contains_key("switchboard_queued_bytes"));

    // A peer that closes (TCP: a FIN), a refused login: counted.
    drop(receiver);
    let closes = "switchboard_closes_total{reason=\"peer_closed\"}";
    let counted = wait_until(Duration::from_secs(5), || {
        grew(&before, &scrape(&server), closes) == 1.0
    });
    assert!(counted, "the close is counted");
    let mut stranger = server.connect(Transport::Tcp);
    assert!(stranger.login("not a token").is_err());
    let mut not_websocket =
        std::net::TcpStream::connect(server.addr(Transport::Ws)).expect("connect");
    not_websocket
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let refusals = "switchboard_refusals_total{reason=\"bad_upgrade\"}";
    let counted = wait_until(Duration::from_secs(5), || {
        grew(&before, &scrape(&server), refusals) == 1.0
    });
    assert!(counted, "the refused upgrade is counted");
    let after = scrape(&server);
    assert_eq!(
        grew(&before, &after, "switchboard_logins_refused_total"),
        1.0
    );
}

/// io_uring's empty buffer ring (ENOBUFS, reading slowed) is on the page: with two 64-byte
/// receive buffers, one 4 KiB message runs the ring dry, and still arrives whole.
#[test]
fn an_empty_receive_buffer_ring_is_counted_on_the_page() {
    let server = TestServer::with_options(ServerOptions {
        backend: Some(Backend::Uring),
        uring_recv_buffers: Some((2, 64)),
        workers: 1,
        admin: Some(AdminOptions::default()),
        ..ServerOptions::default()
    });
    assert_eq!(
        server.server().gateway().backend(),
        Backend::Uring,
        "io_uring is available on the machines the tests run on"
    );
    let family = "switchboard_recv_buffers_empty_total";
    assert_eq!(value(&scrape(&server), family), 0.0);
    let (alice, bob) = (unique_user("alice"), unique_user("bob"));
    let mut sender = server.login(Transport::Tcp, &alice, None);
    let mut receiver = server.login(Transport::Tcp, &bob, None);
    let body = vec![b'x'; 4096];
    sender.send_direct(&bob, 1, &body).expect("stored");
    assert_eq!(receiver.expect_message().body.as_ref(), &body[..]);
    let empty = value(&scrape(&server), family);
    assert!(empty > 0.0, "{family} = {empty}");
}

/// The limits' refusals are on the same page, under the same family, as the gateway's others.
#[test]
fn the_request_rate_refusals_are_on_the_metrics_page() {
    let server = TestServer::with_options(ServerOptions {
        admin: Some(AdminOptions::default()),
        message_limit: switchboard::gateway::RateLimit {
            burst: 10,
            per_second: 10,
            grace: 10,
        },
        ..ServerOptions::default()
    });
    let page = scrape(&server);
    for reason in switchboard::gateway::Refusal::ALL {
        let name = format!(
            "switchboard_refusals_total{{reason=\"{}\"}}",
            reason.label()
        );
        assert_eq!(
            value(&page, &name),
            0.0,
            "{name} is on the page from the start"
        );
    }
    let mut eager = server.login(Transport::Tcp, &unique_user("eager"), None);
    // LOGIN took one of the burst: 9 more carried out, 10 over the rate, the next closes.
    let mut packets = Vec::new();
    for seq in 100..130 {
        let mut bytes = bytes::BytesMut::new();
        switchboard_protocol::Request::GroupDetail { group_id: 999_999 }
            .encode(seq, &mut bytes)
            .expect("encode");
        packets.push(bytes.to_vec());
    }
    eager.send_at_once(&packets);
    let _ = eager.expect_closed(chat_common::IO_TIMEOUT);
    let close = "switchboard_refusals_total{reason=\"message_rate_close\"}";
    let counted = wait_until(Duration::from_secs(5), || {
        value(&scrape(&server), close) == 1.0
    });
    assert!(counted, "the close for the rate is counted");
    let page = scrape(&server);
    assert_eq!(
        value(
            &page,
            "switchboard_refusals_total{reason=\"message_over_rate\"}"
        ),
        10.0
    );
}

#[test]
fn router_lists_the_advertised_endpoints_or_the_listeners() {
    let server = with_admin(None);
    let endpoints = get(server.admin(), "/router").json()["endpoints"].clone();
    assert_eq!(
        endpoints,
        serde_json::json!([
            format!("ws://{}/", server.addr(Transport::Ws)),
            format!("tcp://{}", server.addr(Transport::Tcp)),
        ])
    );
    let advertised = vec![
        "ws://chat.example.com/".to_owned(),
        "tcp://203.0.113.7:9000".to_owned(),
    ];
    let server = TestServer::with_options(ServerOptions {
        admin: Some(AdminOptions {
            token: None,
            advertise: advertised.clone(),
        }),
        ..ServerOptions::default()
    });
    let reply = get(server.admin(), "/router");
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.json()["endpoints"], serde_json::json!(advertised));
}

#[test]
fn readyz_turns_503_at_sigterm_while_the_drain_runs() {
    use chat_common::process::ServeProcess;
    let data = tempfile::tempdir().expect("a data directory");
    let server = ServeProcess::spawn(
        data.path(),
        &[
            "--drain-timeout",
            "5s",
            "--drain-grace",
            "1s",
            "--drain-period",
            "1s",
        ],
    );
    let admin = server.admin.expect("an admin listener");
    assert_eq!(get(admin, "/readyz").status, 200);
    // A client that never closes keeps the drain going for its timeout.
    let _held = std::net::TcpStream::connect(server.tcp).expect("connect");
    assert!(wait_until(Duration::from_secs(5), || {
        prometheus(&get(admin, "/metrics").body).get("switchboard_connections_open") == Some(&1.0)
    }));
    server.signal_term();
    let draining = wait_until(Duration::from_secs(3), || {
        let ready = get(admin, "/readyz");
        ready.status == 503 && ready.body.contains("draining")
    });
    assert!(draining, "/readyz says draining during the drain");
    assert_eq!(get(admin, "/healthz").status, 200, "alive while draining");
    let status = server.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
}

// The store's commit metrics come from either engine's writer; `serve` on PostgreSQL keeps
// its admin listener.
crate::on_postgres_too!(
    metrics_follow_logins_messages_and_commits,
    readyz_turns_503_at_sigterm_while_the_drain_runs,
);
