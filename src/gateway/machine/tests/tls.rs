//! The TLS phase with no socket: a rustls client in memory talks to the machine through the
//! harness. Framed TCP is admitted only once the handshake is done; packets echo through the
//! session; an idle established session holds no buffer; garbage gets an alert and a close;
//! the handshake deadline applies.

use std::io::{Read, Write};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use super::*;
use crate::gateway::tls::TlsAcceptor;

struct Tls {
    harness: Harness,
    client: ClientConnection,
    _dir: tempfile::TempDir,
}

fn tls_harness(transport: Transport) -> Tls {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    let config = GatewayConfig {
        tls: Some(TlsAcceptor::from_pem_files(&cert, &key).unwrap()),
        ..config()
    };
    let mut roots = RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client_config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    Tls {
        harness: Harness::with_config(&config, transport),
        client: ClientConnection::new(Arc::new(client_config), name).unwrap(),
        _dir: dir,
    }
}

impl Tls {
    /// Moves records both ways until neither side has anything to say.
    fn exchange(&mut self) {
        for _ in 0..10 {
            let mut to_server = Vec::new();
            while self.client.wants_write() {
                self.client.write_tls(&mut to_server).unwrap();
            }
            if !to_server.is_empty() {
                self.harness.read(&to_server);
            }
            self.harness.end_pass();
            let to_client = self.harness.take_wire();
            if to_client.is_empty() && to_server.is_empty() {
                return;
            }
            if !to_client.is_empty() {
                self.client.read_tls(&mut &to_client[..]).unwrap();
                self.client.process_new_packets().unwrap();
            }
        }
    }
}

#[test]
fn framed_tcp_is_admitted_after_the_handshake_and_echoes_through_the_session() {
    let mut t = tls_harness(Transport::Tcp);
    assert_eq!(t.harness.machine.phase(), Phase::TlsHandshake);
    assert_eq!(
        t.harness.opened, 0,
        "nobody is admitted before the TLS handshake"
    );
    assert!(
        t.harness.deadline.is_some(),
        "the handshake deadline is set"
    );
    t.exchange();
    assert!(!t.client.is_handshaking());
    assert_eq!(t.harness.opened, 1);
    assert_eq!(t.harness.machine.phase(), Phase::Open);

    let mut packet = bytes::BytesMut::new();
    switchboard_codec::packet::PacketEncoder::new()
        .encode_into(1, b"hello", &mut packet)
        .unwrap();
    t.client.writer().write_all(&packet).unwrap();
    t.exchange();
    let mut echoed = vec![0; packet.len()];
    t.client.reader().read_exact(&mut echoed).unwrap();
    assert_eq!(echoed, &packet[..]);
    // Idle again: no buffer anywhere, the session's included.
    assert_eq!(t.harness.machine.held_bytes(), 0);
    assert!(t.harness.machine.inbound.is_none());
    assert!(t.harness.machine.outgoing.is_empty());
}

#[test]
fn garbage_gets_an_alert_and_the_connection_closes_before_admission() {
    let mut t = tls_harness(Transport::WebSocket);
    t.harness.read(UPGRADE);
    t.harness.end_pass();
    let wire = t.harness.take_wire();
    assert_eq!(wire.first(), Some(&21), "an alert record: {wire:?}");
    assert_eq!(t.harness.opened, 0);
    assert!(t.harness.fin, "FIN after the alert");
    assert_eq!(t.harness.ws.take_tls_handshakes(), [0, 1]);
}

#[test]
fn a_handshake_cut_by_end_of_stream_is_a_failed_one() {
    let mut t = tls_harness(Transport::Tcp);
    let mut hello = Vec::new();
    t.client.write_tls(&mut hello).unwrap();
    t.harness.read(&hello);
    t.harness.end_pass();
    assert!(
        !t.harness.take_wire().is_empty(),
        "the server's first flight"
    );
    t.harness.eof();
    assert!(t.harness.closed);
    assert_eq!(t.harness.opened, 0);
    assert_eq!(t.harness.ws.take_tls_handshakes(), [0, 1]);
}

#[test]
fn a_handshake_cut_by_a_reset_is_a_failed_one() {
    let mut t = tls_harness(Transport::WebSocket);
    let mut hello = Vec::new();
    t.client.write_tls(&mut hello).unwrap();
    t.harness.read(&hello[..hello.len() / 2]);
    t.harness.end_pass();
    t.harness
        .machine
        .on_read_error(&mut t.harness.ws, KEY, std::io::ErrorKind::ConnectionReset);
    t.harness.settle();
    assert!(t.harness.closed);
    assert_eq!(t.harness.ws.take_tls_handshakes(), [0, 1]);
}

#[test]
fn a_connect_and_close_with_no_byte_is_no_handshake() {
    let mut t = tls_harness(Transport::Tcp);
    t.harness.eof();
    assert!(t.harness.closed);
    assert_eq!(t.harness.ws.take_tls_handshakes(), [0, 0]);
}

#[test]
fn a_handshake_that_stalls_ends_at_the_deadline() {
    let mut t = tls_harness(Transport::Tcp);
    t.harness.read(&[22, 3, 1, 0, 200, 1]);
    t.harness.end_pass();
    t.harness.fire(false);
    assert!(t.harness.closed);
    assert_eq!(t.harness.opened, 0);
    assert_eq!(t.harness.ws.take_tls_handshakes(), [0, 1]);
}
