//! The SDK with the admin listener of a real chat server: a client finds its gateways through
//! `/router`, a message the backend API sends reaches it live, and one sent while its user was
//! offline reaches it by sync at the next connect; a backend kick stops it.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use support::{config, token, wait_for, SECRET};
use switchboard::admin::{request_body_limit, AdminConfig, IO_TIMEOUT};
use switchboard::gateway::GatewayConfig;
use switchboard::logic::LogicConfig;
use switchboard::serve::{ChatServer, StoreConfigPatch};
use switchboard_sdk::{Client, Event, KickReason, StopReason};

const API_TOKEN: &str = "sdk-tests-admin-token";

/// One HTTP exchange; the status and the body.
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Authorization: Bearer {API_TOKEN}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    (status, serde_json::from_str(body).expect("JSON"))
}

fn start(data: &std::path::Path) -> ChatServer {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let gateway = GatewayConfig {
        tcp: Some(any),
        ws: Some(any),
        workers: 1,
        drain_timeout: Duration::from_secs(2),
        ..GatewayConfig::default()
    };
    let logic = LogicConfig {
        jwt_secret: SECRET.to_vec(),
        ..LogicConfig::default()
    };
    let admin = AdminConfig {
        addr: any,
        token: Some(API_TOKEN.into()),
        advertise: Vec::new(),
        max_request_body: request_body_limit(logic.max_body),
        io_timeout: IO_TIMEOUT,
    };
    let store = StoreConfigPatch::default();
    ChatServer::start_with_admin(gateway, logic, data.to_path_buf(), store, Some(admin))
        .expect("the chat server starts")
}

fn connect(endpoints: &[String], user: &str) -> Client {
    Client::connect(config(endpoints, token(user, None))).expect("connects")
}

#[test]
fn api_messages_reach_sdk_clients_live_and_by_sync_and_a_kick_stops_them() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let server = start(dir.path());
    let admin = server.admin_addr().expect("an admin listener");
    let (status, router) = http(admin, "GET", "/router", "");
    assert_eq!(status, 200);
    let endpoints: Vec<String> = router["endpoints"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|e| e.as_str().expect("a string").to_owned())
        .collect();
    assert_eq!(endpoints.len(), 2);

    // Offline: stored, then synced at the next connect.
    let send = |key: &str, text: &str| {
        let body = format!(
            r#"{{"from": "shop", "to": "dana", "body": "{text}", "idempotency_key": "{key}"}}"#
        );
        http(admin, "POST", "/api/v1/messages", &body)
    };
    let (status, stored) = send("offline-1", "while you were away");
    assert_eq!(status, 200, "{stored}");
    let client = connect(&endpoints, "dana");
    let synced = wait_for(client.events(), "the synced message", |e| match e {
        Event::Message(m) => Some(m.clone()),
        _ => None,
    });
    assert_eq!(
        synced.msg_id.to_string(),
        stored["msg_id"].as_str().unwrap()
    );
    assert_eq!(&synced.body[..], b"while you were away");

    // Online: pushed.
    let (status, live) = send("live-1", "right now");
    assert_eq!(status, 200, "{live}");
    let pushed = wait_for(client.events(), "the pushed message", |e| match e {
        Event::Message(m) if &m.body[..] == b"right now" => Some(m.clone()),
        _ => None,
    });
    assert_eq!(pushed.from.as_str(), "shop");

    let (status, kicked) = http(admin, "POST", "/api/v1/users/dana/kick", "");
    assert_eq!(
        (status, kicked["kicked"].clone()),
        (200, serde_json::json!(["default"]))
    );
    let reason = wait_for(client.events(), "KICKED", |e| match e {
        Event::Kicked { reason, .. } => Some(*reason),
        _ => None,
    });
    assert_eq!(reason, KickReason::ENDED_BY_SERVICE);
    let stopped = wait_for(client.events(), "Stopped", |e| match e {
        Event::Stopped { reason } => Some(reason.clone()),
        _ => None,
    });
    assert!(
        matches!(stopped, StopReason::Kicked { reason, .. } if reason == KickReason::ENDED_BY_SERVICE),
        "{stopped:?}"
    );
    drop(client);
    server.shutdown();
}
