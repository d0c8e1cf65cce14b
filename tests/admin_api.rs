//! The backend API over real sockets: a send reaches the recipient's devices and the store
//! (a later sync finds it), a repeated key is one message, kicks and device lists, stats, and
//! every refusal (no or wrong token, API off, oversized or malformed bodies) does nothing.

mod chat_common;

use std::net::SocketAddr;

use chat_common::http::{request, HttpReply};
use chat_common::{unique_user, AdminOptions, ServerOptions, TestServer, Transport, ADMIN_TOKEN};
use serde_json::{json, Value};
use switchboard_protocol::{KickReason, Push, ServerPacket, Target};

fn server(token: Option<&str>) -> TestServer {
    TestServer::with_options(ServerOptions {
        admin: Some(AdminOptions {
            token: token.map(str::to_owned),
            ..AdminOptions::default()
        }),
        ..ServerOptions::default()
    })
}

fn call(addr: SocketAddr, method: &str, path: &str, body: &Value) -> HttpReply {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    request(addr, method, path, &[("Authorization", &auth)], &body)
}

fn send(addr: SocketAddr, body: Value) -> HttpReply {
    call(addr, "POST", "/api/v1/messages", &body)
}

#[test]
fn a_send_reaches_every_device_and_the_store() {
    let server = server(Some(ADMIN_TOKEN));
    let (shop, bob) = (unique_user("shop"), unique_user("bob"));
    let mut phone = server.login(Transport::Tcp, &bob, Some("phone"));
    let mut desktop = server.login(Transport::Ws, &bob, Some("desktop"));
    let reply = send(
        server.admin(),
        json!({"from": shop, "to": bob, "body": "your order shipped", "idempotency_key": "order-1"}),
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    let msg_id: u64 = reply.json()["msg_id"]
        .as_str()
        .expect("msg_id is a string")
        .parse()
        .expect("decimal");
    for device in [&mut phone, &mut desktop] {
        let message = device.expect_message();
        assert_eq!(message.msg_id, msg_id);
        assert_eq!(message.from.as_str(), shop);
        assert_eq!(message.target, Target::Direct(bob.as_str().into()));
        assert_eq!(&message.body[..], b"your order shipped");
    }
    // Stored: a device that was offline gets it by sync.
    let mut tablet = server.login(Transport::Tcp, &bob, Some("tablet"));
    let synced = tablet.sync_peek();
    assert_eq!(
        synced.iter().map(|m| m.msg_id).collect::<Vec<_>>(),
        [msg_id]
    );
    // The sender's inbox has it too, like a client's SEND.
    let mut sender = server.login(Transport::Tcp, &shop, None);
    assert_eq!(sender.sync_peek().len(), 1);
}

#[test]
fn a_repeated_key_is_one_message() {
    let server = server(Some(ADMIN_TOKEN));
    let (shop, bob) = (unique_user("shop"), unique_user("bob"));
    let mut phone = server.login(Transport::Tcp, &bob, None);
    let body = json!({"from": shop, "to": bob, "body": "once", "idempotency_key": "k-42"});
    let first = send(server.admin(), body.clone());
    let again = send(server.admin(), body);
    assert_eq!((first.status, again.status), (200, 200));
    assert_eq!(first.json(), again.json(), "the same id and time");
    phone.expect_message();
    phone.assert_no_push();
    let other = send(
        server.admin(),
        json!({"from": shop, "to": bob, "body_base64": "AAEC", "idempotency_key": "k-43"}),
    );
    assert_ne!(other.json()["msg_id"], first.json()["msg_id"]);
    assert_eq!(&phone.expect_message().body[..], [0, 1, 2]);
    let mut late = server.login(Transport::Ws, &bob, Some("tablet"));
    assert_eq!(late.sync_peek().len(), 2);
}

#[test]
fn a_group_send_needs_a_member_as_sender() {
    let server = server(Some(ADMIN_TOKEN));
    let (alice, bob, stranger) = (unique_user("alice"), unique_user("bob"), unique_user("x"));
    let mut owner = server.login(Transport::Tcp, &alice, None);
    let group = owner.group_create("team", &[&bob]).expect("created");
    let mut member = server.login(Transport::Ws, &bob, None);
    let as_string = json!({"from": bob, "group_id": group.to_string(), "body": "hi team",
        "idempotency_key": "g-1"});
    let reply = send(server.admin(), as_string);
    assert_eq!(reply.status, 200, "{reply:?}");
    let message = owner.expect_message();
    assert_eq!(message.target, Target::Group(group));
    assert_eq!(message.from.as_str(), bob);
    assert_eq!(member.expect_message().msg_id, message.msg_id);
    let outsider = send(
        server.admin(),
        json!({"from": stranger, "group_id": group, "body": "let me in", "idempotency_key": "g-2"}),
    );
    assert_eq!(outsider.status, 403, "{outsider:?}");
    assert_eq!(outsider.json()["error"], "not_member");
    let missing = send(
        server.admin(),
        json!({"from": bob, "group_id": 1, "body": "?", "idempotency_key": "g-3"}),
    );
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"], "group_not_found");
    owner.assert_no_push();
}

fn kicked_reason(packets: &[ServerPacket]) -> Option<KickReason> {
    packets.iter().find_map(|p| match p {
        ServerPacket::Push(Push::Kicked { reason, .. }) => Some(*reason),
        _ => None,
    })
}

#[test]
fn devices_are_listed_and_kicked_by_kind_or_all() {
    let server = server(Some(ADMIN_TOKEN));
    let bob = unique_user("bob");
    let addr = server.admin();
    let mut phone = server.login(Transport::Tcp, &bob, Some("phone"));
    let mut desktop = server.login(Transport::Ws, &bob, Some("desktop"));
    let devices = call(
        addr,
        "GET",
        &format!("/api/v1/users/{bob}/devices"),
        &Value::Null,
    );
    assert_eq!(devices.status, 200);
    let mut kinds: Vec<String> = devices.json()["devices"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|d| d["device"].as_str().expect("a kind").to_owned())
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["desktop", "phone"]);

    let path = format!("/api/v1/users/{bob}/kick");
    let one = call(addr, "POST", &path, &json!({"device": "phone"}));
    assert_eq!(one.json(), json!({"user": bob, "kicked": ["phone"]}));
    let (packets, _) = phone.expect_closed(chat_common::IO_TIMEOUT);
    assert_eq!(kicked_reason(&packets), Some(KickReason::ENDED_BY_SERVICE));
    assert!(desktop.is_open(), "the other kind stays");

    let all = call(addr, "POST", &path, &Value::Null);
    assert_eq!(all.json(), json!({"user": bob, "kicked": ["desktop"]}));
    let (packets, closure) = desktop.expect_closed(chat_common::IO_TIMEOUT);
    assert_eq!(kicked_reason(&packets), Some(KickReason::ENDED_BY_SERVICE));
    assert_eq!(closure.ws_close.map(|c| c.0), Some(4003));
    let none = call(
        addr,
        "GET",
        &format!("/api/v1/users/{bob}/devices"),
        &Value::Null,
    );
    assert_eq!(none.json(), json!({"user": bob, "devices": []}));
}

#[test]
fn stats_count_the_server() {
    let server = server(Some(ADMIN_TOKEN));
    let _online = server.login(Transport::Tcp, &unique_user("carol"), None);
    let stats = call(server.admin(), "GET", "/api/v1/stats", &Value::Null);
    assert_eq!(stats.status, 200);
    let stats = stats.json();
    assert_eq!(stats["online_users"], 1);
    assert_eq!(stats["connections_open"], 1);
    assert_eq!(stats["ready"], true);
}

#[test]
fn refused_calls_do_nothing_and_say_why() {
    let server = server(Some(ADMIN_TOKEN));
    let addr = server.admin();
    let bob = unique_user("bob");
    let mut phone = server.login(Transport::Tcp, &bob, None);
    let body =
        json!({"from": "shop", "to": bob, "body": "x", "idempotency_key": "nope"}).to_string();
    let without = request(addr, "POST", "/api/v1/messages", &[], body.as_bytes());
    assert_eq!(without.status, 401);
    assert_eq!(without.json()["error"], "unauthorized");
    assert!(without.header("www-authenticate").is_some());
    let wrong = request(
        addr,
        "POST",
        "/api/v1/messages",
        &[("Authorization", "Bearer admin-token-for-the-testz")],
        body.as_bytes(),
    );
    assert_eq!(wrong.status, 401);
    let kick = request(addr, "POST", &format!("/api/v1/users/{bob}/kick"), &[], b"");
    assert_eq!(kick.status, 401);
    phone.assert_no_push();
    assert!(phone.is_open(), "not kicked");
    assert!(phone.sync_peek().is_empty(), "nothing stored");

    let malformed = call(addr, "POST", "/api/v1/messages", &json!("not an object"));
    assert_eq!(malformed.status, 400);
    assert_eq!(malformed.json()["error"], "malformed_json");
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let broken = request(
        addr,
        "POST",
        "/api/v1/messages",
        &[("Authorization", &auth)],
        b"{\"from\": ",
    );
    assert_eq!(broken.json()["error"], "malformed_json");
    let unknown_field = send(
        addr,
        json!({"from": "shop", "to": bob, "body": "x", "idempotency_key": "k", "urgent": true}),
    );
    assert_eq!(unknown_field.status, 400);
    let both = send(
        addr,
        json!({"from": "shop", "to": bob, "group_id": 1, "body": "x", "idempotency_key": "k"}),
    );
    assert_eq!(both.json()["error"], "bad_request");
    // Refused on its declared length, before any of it is sent (as curl waits for a
    // 100 Continue before a large body): no unread body for the close to reset.
    let oversized = oversized_head(addr, switchboard::admin::request_body_limit(65_536) + 1);
    assert_eq!(oversized.status, 413);
    assert_eq!(oversized.json()["error"], "body_too_large");
    let long_body = "y".repeat(65_537);
    let too_long = send(
        addr,
        json!({"from": "shop", "to": bob, "body": long_body, "idempotency_key": "k"}),
    );
    assert_eq!(too_long.status, 413);
    assert_eq!(too_long.json()["error"], "message_too_large");
    let nowhere = call(addr, "GET", "/api/v1/teapot", &Value::Null);
    assert_eq!(nowhere.status, 404);
    phone.assert_no_push();
    assert!(phone.sync_peek().is_empty(), "still nothing stored");
}

#[test]
fn without_a_token_the_api_is_off() {
    let server = server(None);
    let reply = call(server.admin(), "GET", "/api/v1/stats", &Value::Null);
    assert_eq!(reply.status, 403);
    assert_eq!(reply.json()["error"], "api_disabled");
    assert!(
        reply.json()["message"]
            .as_str()
            .is_some_and(|m| m.contains("--admin-token")),
        "{reply:?}"
    );
}

#[test]
fn a_refused_call_is_logged_with_the_peer() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let data = tempfile::tempdir().expect("a data directory");
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--ws", "127.0.0.1:0", "--tcp", "127.0.0.1:0"])
        .args(["--admin", "127.0.0.1:0", "--log-format", "json", "--data"])
        .arg(data.path())
        .env("SWITCHBOARD_JWT_SECRET", "log-test-secret")
        .env("SWITCHBOARD_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn switchboard serve");
    let stdout = BufReader::new(child.stdout.take().expect("piped"));
    let admin: SocketAddr = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|line| {
            let rest = line.strip_prefix("switchboard serve: admin on http://")?;
            rest.trim_end_matches('/').parse().ok()
        })
        .expect("the admin address is announced");
    let reply = request(admin, "GET", "/api/v1/stats", &[], b"");
    assert_eq!(reply.status, 401);
    let _ = child.kill();
    let _ = child.wait();
    let stderr = BufReader::new(child.stderr.take().expect("piped"));
    let logged = stderr.lines().map_while(Result::ok).any(|line| {
        let Ok(entry) = serde_json::from_str::<Value>(&line) else {
            return false;
        };
        let fields = &entry["fields"];
        fields["message"] == "backend API call refused"
            && fields["error"] == "unauthorized"
            && fields["peer"]
                .as_str()
                .is_some_and(|peer| peer.starts_with("127.0.0.1:"))
    });
    assert!(logged, "a warn line names the refusal and the peer");
}

/// A request that declares `length` bytes of body and waits for the answer before sending
/// any (`Expect: 100-continue`).
fn oversized_head(addr: SocketAddr, length: usize) -> HttpReply {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(chat_common::IO_TIMEOUT))
        .expect("timeout");
    let head = format!(
        "POST /api/v1/messages HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
         Content-Length: {length}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).expect("write");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("the answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP answer");
    HttpReply {
        status: head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status"),
        headers: Vec::new(),
        body: body.to_owned(),
    }
}

// The backend's sends take the clients' SEND path into whichever store runs.
crate::on_postgres_too!(
    a_send_reaches_every_device_and_the_store,
    a_repeated_key_is_one_message,
    a_group_send_needs_a_member_as_sender,
);
