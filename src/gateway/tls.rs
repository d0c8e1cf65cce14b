//! TLS settings of the listeners: the certificate and key read from PEM files, the rustls
//! server configuration every connection's session is made from, and the reload that swaps
//! the certificate in place (SIGHUP) without touching open connections.
//!
//! Invariants: the certificate a handshake uses is read once per handshake from an
//! [`ArcSwap`] (no lock, no allocation); a reload that fails (a missing file, bad PEM, a key
//! that does not match the certificate) leaves the certificate in use untouched. Sessions
//! already established keep their keys: a reload only changes what new handshakes present.
//!
//! Provider: ring. It builds with a C compiler only (aws-lc-rs needs cmake and a longer build
//! on the CI's fresh clone), it is what rustls' own examples and benchmarks ran longest, and
//! for the suites offered (AES-GCM, ChaCha20-Poly1305, X25519, ECDSA and RSA signatures) the
//! handshake rate of both is close; measured in docs/performance.md ("TLS handshakes").

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::ring as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

/// TLS sessions resumable from the server-side cache (TLS 1.2 session IDs, and TLS 1.3 when
/// a client does not take tickets); tickets need no server memory and are issued too.
const SESSION_CACHE: usize = 16 * 1024;

/// Why a certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error of the read.
        source: std::io::Error,
    },
    /// The file holds no (valid) PEM object of the kind wanted.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// rustls refused the key or the pair (key type unsupported, key does not match the
    /// certificate).
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
}

/// The TLS side of both listeners: the server configuration and the certificate behind it.
#[derive(Clone)]
pub struct TlsAcceptor {
    config: Arc<ServerConfig>,
    certificate: Arc<ReloadableCert>,
}

impl fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("cert", &self.certificate.cert_path)
            .field("key", &self.certificate.key_path)
            .finish()
    }
}

impl TlsAcceptor {
    /// Reads the certificate chain (PEM, leaf first) and private key (PEM: PKCS#8, PKCS#1 or
    /// SEC1) and builds the configuration: TLS 1.3 and 1.2, ALPN-free, session resumption by
    /// tickets and by a server-side cache.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
        let loaded = load_certified_key(cert, key)?;
        let certificate = Arc::new(ReloadableCert {
            current: ArcSwap::from(loaded),
            cert_path: cert.to_path_buf(),
            key_path: key.to_path_buf(),
        });
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(provider::default_provider()))
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
                .with_no_client_auth()
                .with_cert_resolver(certificate.clone());
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
        config.ticketer = provider::Ticketer::new()?;
        // One ticket per handshake (the default is two): a client reconnects one at a time.
        config.send_tls13_tickets = 1;
        Ok(TlsAcceptor {
            config: Arc::new(config),
            certificate,
        })
    }

    /// Reads the certificate and key files again; new handshakes present what they now hold.
    /// On error the certificate in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let loaded = load_certified_key(&self.certificate.cert_path, &self.certificate.key_path)?;
        self.certificate.current.store(loaded);
        Ok(())
    }

    /// The configuration sessions are made from.
    pub(crate) fn server_config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }
}

/// The certificate new handshakes present, swapped whole by a reload.
struct ReloadableCert {
    current: ArcSwap<CertifiedKey>,
    cert_path: PathBuf,
    key_path: PathBuf,
}

impl fmt::Debug for ReloadableCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadableCert")
            .field("cert", &self.cert_path)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn load_certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let pem_error = |path: &Path, what: String| TlsError::Pem {
        path: path.to_path_buf(),
        what,
    };
    let cert_pem = read(cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(cert, format!("bad PEM certificate: {e}")))?;
    if chain.is_empty() {
        return Err(pem_error(cert, "no CERTIFICATE in the file".into()));
    }
    let key_pem = read(key)?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| pem_error(key, format!("no usable PEM private key: {e}")))?;
    let certified = CertifiedKey::from_der(chain, key_der, &provider::default_provider())?;
    Ok(Arc::new(certified))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}
