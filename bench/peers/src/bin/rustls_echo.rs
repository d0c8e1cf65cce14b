//! TLS echo server on tokio + tokio-rustls, as that crate's README writes one: accept loop,
//! `TlsAcceptor::accept` per connection in its own task, then the plaintext copied back
//! (`tokio::io::copy` on the split stream). The byte echo serves framed-TCP packets unchanged.
//! The rustls configuration is Switchboard's (src/gateway/tls.rs): ring, TLS 1.3 and 1.2,
//! tickets and a 16,384-session cache, one TLS 1.3 ticket per handshake, so a comparison of
//! handshakes measures the two ways of driving rustls, not two configurations. The certificate
//! chain and key (PEM) come from PEER_TLS_CERT and PEER_TLS_KEY.

use std::sync::Arc;

use rustls::crypto::ring as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ServerSessionMemoryCache;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

fn acceptor() -> TlsAcceptor {
    let path = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            eprintln!("rustls_echo: set {name} to a PEM file");
            std::process::exit(2)
        })
    };
    let chain = CertificateDer::pem_file_iter(path("PEER_TLS_CERT"))
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .expect("a PEM certificate chain");
    let key = PrivateKeyDer::from_pem_file(path("PEER_TLS_KEY")).expect("a PEM private key");
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("a usable certificate and key");
    config.session_storage = ServerSessionMemoryCache::new(16 * 1024);
    config.ticketer = provider::Ticketer::new().expect("a ticketer");
    config.send_tls13_tickets = 1;
    TlsAcceptor::from(Arc::new(config))
}

async fn serve(listener: TcpListener) {
    let acceptor = acceptor();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(echo(acceptor.clone(), stream));
    }
}

async fn echo(acceptor: TlsAcceptor, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Ok(tls) = acceptor.accept(stream).await else {
        return;
    };
    let (mut reader, mut writer) = tokio::io::split(tls);
    // An error here is the peer's doing (reset, bad record); the task just ends.
    let _ = tokio::io::copy(&mut reader, &mut writer).await;
}

fn main() {
    switchboard_peers::run("rustls_echo", serve);
}
