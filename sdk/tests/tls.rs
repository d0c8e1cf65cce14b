//! The SDK over TLS against the real chat server with a certificate the test generates:
//! `tls://` and `wss://` endpoints, a message each way across them, and a client that does not
//! trust the certificate failing to connect (it never logs in over an unverified link).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::{config, gateway_config, token, wait_for, SECRET};
use switchboard::gateway::{GatewayConfig, TlsAcceptor};
use switchboard::logic::LogicConfig;
use switchboard::serve::{ChatServer, StoreConfigPatch};
use switchboard_sdk::{Client, ClientConfig, ConnectError, Event};

struct TlsServer {
    server: Option<ChatServer>,
    tcp: SocketAddr,
    ws: SocketAddr,
    cert_pem: String,
    _dir: tempfile::TempDir,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
    }
}

fn start() -> TlsServer {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert, key) = (dir.path().join("gw.crt"), dir.path().join("gw.key"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let gateway = GatewayConfig {
        tls: Some(TlsAcceptor::from_pem_files(&cert, &key).unwrap()),
        ..gateway_config(any, any)
    };
    let logic = LogicConfig {
        jwt_secret: SECRET.to_vec(),
        ..LogicConfig::default()
    };
    let data = dir.path().join("data");
    let server =
        ChatServer::start(gateway, logic, data, StoreConfigPatch::default()).expect("starts");
    TlsServer {
        tcp: server.gateway().tcp_addr().unwrap(),
        ws: server.gateway().ws_addr().unwrap(),
        server: Some(server),
        cert_pem: certified.cert.pem(),
        _dir: dir,
    }
}

fn trusting(server: &TlsServer, endpoint: String, user: &str) -> ClientConfig {
    config(&[endpoint], token(user, None))
        .trust_pem(server.cert_pem.as_bytes())
        .expect("the test certificate")
}

fn next_message(client: &Client) -> switchboard_sdk::ChatMessage {
    wait_for(client.events(), "a message", |e| match e {
        Event::Message(m) => Some(m.clone()),
        _ => None,
    })
}

#[test]
fn messages_cross_between_tls_and_wss_clients() {
    let server = start();
    let tls = format!("tls://localhost:{}", server.tcp.port());
    let wss = format!("wss://localhost:{}/", server.ws.port());
    let alice = Client::connect(trusting(&server, tls, "alice")).expect("alice over tls://");
    let bob = Client::connect(trusting(&server, wss, "bob")).expect("bob over wss://");
    wait_for(bob.events(), "SyncDone", |e| {
        matches!(e, Event::SyncDone { .. }).then_some(())
    });
    let ack = alice.send("bob", "hi over tls").expect("acked");
    let got = next_message(&bob);
    assert_eq!(
        (got.msg_id, &got.body[..]),
        (ack.msg_id, &b"hi over tls"[..])
    );
    let back = bob.send("alice", "hi over wss").expect("acked");
    let got = next_message(&alice);
    assert_eq!(
        (got.msg_id, &got.body[..]),
        (back.msg_id, &b"hi over wss"[..])
    );
}

#[test]
fn a_client_that_does_not_trust_the_certificate_never_logs_in() {
    let server = start();
    let mut untrusting = config(
        &[format!("tls://localhost:{}", server.tcp.port())],
        token("mallory", None),
    );
    untrusting.initial_connect_timeout = Duration::from_secs(2);
    // Trusts another certificate only.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let untrusting = untrusting.trust_pem(other.cert.pem().as_bytes()).unwrap();
    match Client::connect(untrusting) {
        Err(ConnectError::Unreachable { last, .. }) => {
            let said = last.to_string();
            assert!(said.to_lowercase().contains("certificate"), "{said}");
        }
        other => panic!("expected Unreachable with a certificate error, got {other:?}"),
    }
}
