//! `tls://` and `wss://` targets: a rustls client session per connection, trusting the CA
//! given with `--tls-ca` (a test's or a private CA's certificate, PEM). The engine reads and
//! writes plaintext through [`read`] and [`write`]; records rustls could not hand the socket
//! yet go out with [`flush`] on the next writable event. The session buffers what is written
//! before its handshake is done, so the upgrade or login goes out right after it.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

/// The client configuration trusting the certificates in the PEM file at `ca`.
pub fn trust(ca: &Path) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("{}: {e}", ca.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no CERTIFICATE", ca.display()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A session to `host` (the name the certificate must carry).
pub(crate) fn session(
    config: &Arc<ClientConfig>,
    host: &str,
) -> Result<Box<ClientConnection>, String> {
    let name = ServerName::try_from(host.to_owned()).map_err(|_| "tls_bad_name".to_string())?;
    let conn = ClientConnection::new(config.clone(), name).map_err(|_| "tls_setup".to_string())?;
    Ok(Box::new(conn))
}

/// Plaintext read through `tls`; `Ok(0)` is the end of the stream.
pub(crate) fn read(
    stream: &mut TcpStream,
    tls: &mut ClientConnection,
    buf: &mut [u8],
) -> io::Result<usize> {
    loop {
        match tls.reader().read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        if tls.read_tls(stream)? == 0 {
            return Ok(0);
        }
        let state = tls.process_new_packets();
        flush(stream, tls)?;
        state.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    }
}

/// Plaintext write through `tls`: what the session took (its records go out as far as the
/// socket takes them).
pub(crate) fn write(
    stream: &mut TcpStream,
    tls: &mut ClientConnection,
    buf: &[u8],
) -> io::Result<usize> {
    let n = tls.writer().write(buf)?;
    flush(stream, tls)?;
    if n == 0 && !buf.is_empty() {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    Ok(n)
}

/// Hands the socket the records waiting in `tls`, until done or it would block.
pub(crate) fn flush(stream: &mut TcpStream, tls: &mut ClientConnection) -> io::Result<()> {
    while tls.wants_write() {
        match tls.write_tls(stream) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
