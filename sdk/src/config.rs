//! `ClientConfig`: where to connect, how to log in, and every timer of a client.
//!
//! Endpoints are tried in list order, then around again with backoff (client-side load
//! balancing and failover). The token is fixed or minted anew by a provider before every
//! login, so a reconnect after the token expired can still log in. `Debug` never prints a token.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use switchboard_codec::packet::DEFAULT_MAX_PAYLOAD;

use crate::backoff::Backoff;
use crate::endpoint::{Endpoint, EndpointError};

/// Mints a login token (the application's backend is usually behind it); an `Err` is a
/// message for the log and for [`ConnectError::Token`](crate::ConnectError::Token).
pub type TokenProvider = Arc<dyn Fn() -> Result<String, String> + Send + Sync>;

/// Where the LOGIN token comes from.
#[derive(Clone)]
pub enum TokenSource {
    /// The same token at every login.
    Static(String),
    /// A fresh token from the provider before every login.
    Provider(TokenProvider),
}

impl TokenSource {
    /// The token for the next login.
    pub fn token(&self) -> Result<String, String> {
        match self {
            TokenSource::Static(token) => Ok(token.clone()),
            TokenSource::Provider(provider) => provider(),
        }
    }
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::Static(_) => f.write_str("Static(..)"),
            TokenSource::Provider(_) => f.write_str("Provider(..)"),
        }
    }
}

/// What a client connects to and how it behaves.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Gateways in order of preference: `tcp://host:port` or `ws://host:port/path`.
    pub endpoints: Vec<Endpoint>,
    /// The login token, or its provider.
    pub token: TokenSource,
    /// The longest one TCP connect may take (default 5 s); then the next endpoint is tried.
    pub connect_timeout: Duration,
    /// The longest a request waits for its answer (default 10 s); LOGIN included. A blocking
    /// send waits this long for its ack.
    pub request_timeout: Duration,
    /// PING after this long without sending anything (default 30 s; the server's
    /// `idle_timeout_ms / 2` when that is shorter). Nothing received for 2.5 times this
    /// counts as a dead connection, which is then reconnected.
    pub heartbeat_interval: Duration,
    /// The waits between reconnect rounds (and between resends of a message the server
    /// refused as BUSY, INTERNAL or RATE_LIMITED).
    pub backoff: Backoff,
    /// How long [`Client::connect`](crate::Client::connect) keeps trying before it gives up
    /// with `Unreachable` (default 30 s).
    pub initial_connect_timeout: Duration,
    /// Sent in LOGIN (default `sdk-rust/<crate version>`; at most 64 bytes).
    pub client_version: String,
    /// How many recently delivered messages are remembered to drop repeats, by `msg_id` and
    /// by sender and `client_msg_id` (default 4096).
    pub dedupe_window: usize,
    /// The longest packet payload accepted from the server (default 1 MiB: the server's
    /// `--max-packet`). Over WebSocket a message of this plus the 10-byte packet header is
    /// accepted (docs/protocol.md §1: one limit, on the payload, on both transports).
    pub max_packet: u32,
    /// The TLS client settings for `tls://` and `wss://` endpoints: whom to trust. `None`
    /// (the default) trusts the system's root certificates; [`ClientConfig::trust_pem`] trusts
    /// given CAs (a private CA, a test's self-signed certificate) instead.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl ClientConfig {
    /// A configuration with the defaults, the given endpoints and a fixed token.
    pub fn new<I, S>(endpoints: I, token: impl Into<String>) -> Result<Self, EndpointError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let endpoints = endpoints
            .into_iter()
            .map(|s| s.as_ref().parse())
            .collect::<Result<Vec<Endpoint>, _>>()?;
        Ok(ClientConfig {
            endpoints,
            token: TokenSource::Static(token.into()),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(30),
            backoff: Backoff::default(),
            initial_connect_timeout: Duration::from_secs(30),
            client_version: concat!("sdk-rust/", env!("CARGO_PKG_VERSION")).to_owned(),
            dedupe_window: 4096,
            max_packet: DEFAULT_MAX_PAYLOAD,
            tls: None,
        })
    }

    /// Trusts only the CA certificates (or self-signed server certificates) in `pem` for
    /// `tls://` and `wss://` endpoints.
    pub fn trust_pem(mut self, pem: &[u8]) -> Result<Self, TlsTrustError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| TlsTrustError(e.to_string()))?;
            roots.add(cert).map_err(|e| TlsTrustError(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(TlsTrustError("no CERTIFICATE in the PEM".into()));
        }
        self.tls = Some(tls_config(roots)?);
        Ok(self)
    }

    /// Replaces the token with a provider called before every login.
    pub fn token_provider(
        mut self,
        provider: impl Fn() -> Result<String, String> + Send + Sync + 'static,
    ) -> Self {
        self.token = TokenSource::Provider(Arc::new(provider));
        self
    }
}

/// Why TLS trust could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("TLS trust: {0}")]
pub struct TlsTrustError(pub String);

/// A TLS client configuration (ring, TLS 1.3 and 1.2) trusting `roots`.
pub(crate) fn tls_config(
    roots: rustls::RootCertStore,
) -> Result<Arc<rustls::ClientConfig>, TlsTrustError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsTrustError(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The system's root certificates (what `tls: None` trusts), read once per process.
pub(crate) fn system_tls() -> Result<Arc<rustls::ClientConfig>, TlsTrustError> {
    static SYSTEM: std::sync::OnceLock<Result<Arc<rustls::ClientConfig>, TlsTrustError>> =
        std::sync::OnceLock::new();
    SYSTEM
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(TlsTrustError("no system root certificates found".into()));
            }
            tls_config(roots)
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_parses_endpoints_and_sets_the_defaults() {
        let config = ClientConfig::new(["tcp://127.0.0.1:9000", "ws://h:1/x"], "t").unwrap();
        assert_eq!(config.endpoints.len(), 2);
        assert_eq!(config.endpoints[1].to_string(), "ws://h:1/x");
        assert_eq!(config.heartbeat_interval, Duration::from_secs(30));
        assert_eq!(config.backoff.initial, Duration::from_millis(200));
        assert_eq!(config.token.token().unwrap(), "t");
        assert!(config.client_version.starts_with("sdk-rust/"));
        assert!(ClientConfig::new(["nope"], "t").is_err());
    }

    #[test]
    fn a_provider_is_asked_at_every_login_and_debug_hides_tokens() {
        let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counter = Arc::clone(&calls);
        let config = ClientConfig::new(["tcp://h:1"], "secret-token")
            .unwrap()
            .token_provider(move || {
                let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(format!("token-{n}"))
            });
        assert_eq!(config.token.token().unwrap(), "token-0");
        assert_eq!(config.token.token().unwrap(), "token-1");
        let static_config = ClientConfig::new(["tcp://h:1"], "secret-token").unwrap();
        assert!(!format!("{static_config:?}").contains("secret-token"));
    }
}
