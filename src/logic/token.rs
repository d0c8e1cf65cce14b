//! Login tokens: HS256 JWTs that the application's backend signs with a secret it shares with us.
//!
//! A token names a user (`sub`), an expiry (`exp`, seconds since the Unix epoch) and optionally a
//! device kind (`dev`, default "default"). Only HS256 is accepted: `alg: none` and every other
//! algorithm are refused before the signature is looked at, and no claim is trusted before the
//! signature checks out. Time is an argument, never read here; no input makes this panic.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Longest token accepted, in bytes; longer ones are refused before any decoding.
pub const MAX_TOKEN_LEN: usize = 4096;
/// Longest user id (`sub`), in bytes.
pub const MAX_USER_LEN: usize = 64;
/// Longest device kind (`dev`), in bytes.
pub const MAX_DEVICE_LEN: usize = 32;
/// The device kind of a token without `dev`.
pub const DEFAULT_DEVICE: &str = "default";

/// Who a verified token speaks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The user id, from `sub`.
    pub user: String,
    /// The device kind, from `dev` or [`DEFAULT_DEVICE`]. One connection per (user, device).
    pub device: String,
}

/// Why a token was refused. [`TokenError::Expired`] maps to the TOKEN_EXPIRED status, every
/// other variant to INVALID_TOKEN (see [`TokenError::is_expired`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TokenError {
    /// Signed by us and well formed, but `now` is at or past `exp` (plus the leeway).
    #[error("token expired at {exp} (now {now})")]
    Expired {
        /// The token's `exp`, seconds since the Unix epoch.
        exp: u64,
        /// The time it was checked at.
        now: u64,
    },
    /// Longer than [`MAX_TOKEN_LEN`].
    #[error("token is {len} bytes, more than {max}")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not three base64url parts, or a header or claims that are not the JSON they should be.
    #[error("token is malformed")]
    Malformed,
    /// The header names another algorithm than HS256 (`none`, RS256, ES256, HS384, ...).
    #[error("token algorithm {alg:?} is not HS256")]
    UnsupportedAlgorithm {
        /// The header's `alg`, cut to 16 characters.
        alg: String,
    },
    /// The signature is not ours: another secret, or the token was altered.
    #[error("token signature does not match")]
    BadSignature,
    /// No `sub` claim.
    #[error("token has no sub claim")]
    MissingSubject,
    /// No `exp` claim: every token must expire.
    #[error("token has no exp claim")]
    MissingExpiry,
    /// `sub` is empty, longer than [`MAX_USER_LEN`] bytes, or holds a control character.
    #[error("token sub is not 1..={MAX_USER_LEN} bytes without control characters")]
    BadSubject,
    /// `dev` is not 1..=[`MAX_DEVICE_LEN`] bytes of `[a-z0-9_-]`.
    #[error("token dev is not 1..={MAX_DEVICE_LEN} bytes of [a-z0-9_-]")]
    BadDevice,
    /// The token carries `nbf` and `now` is before it (minus the leeway).
    #[error("token not valid before {nbf} (now {now})")]
    NotYetValid {
        /// The token's `nbf`, seconds since the Unix epoch.
        nbf: u64,
        /// The time it was checked at.
        now: u64,
    },
}

impl TokenError {
    /// True for [`TokenError::Expired`] (the TOKEN_EXPIRED status: the client should fetch a
    /// new token); false for every refusal that means INVALID_TOKEN.
    pub fn is_expired(&self) -> bool {
        matches!(self, TokenError::Expired { .. })
    }
}

/// Why a token could not be minted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MintError {
    /// The user id would be refused by [`TokenVerifier::verify`].
    #[error("user id must be 1..={MAX_USER_LEN} bytes without control characters")]
    BadSubject,
    /// The device kind would be refused by [`TokenVerifier::verify`].
    #[error("device kind must be 1..={MAX_DEVICE_LEN} bytes of [a-z0-9_-]")]
    BadDevice,
    /// The JWT library failed to sign.
    #[error("cannot sign the token: {0}")]
    Signing(String),
}

/// Checks login tokens against the shared secret. Build it once and share it; `verify` takes
/// `&self`.
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
    leeway_secs: u64,
}

impl TokenVerifier {
    /// A verifier for tokens signed with `secret`, with zero leeway on `exp` and `nbf`.
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // The library reads the system clock for exp/nbf; we check them against the caller's
        // `now` instead, so it only checks the algorithm and the signature.
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.leeway = 0;
        Self {
            key: DecodingKey::from_secret(secret),
            validation,
            leeway_secs: 0,
        }
    }

    /// Tolerate clocks that differ by up to `leeway` (whole seconds) on `exp` and `nbf`.
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway_secs = leeway.as_secs();
        self
    }

    /// The identity `token` speaks for, if it is ours and valid at `now_secs` (seconds since
    /// the Unix epoch). A token is valid while `now_secs < exp + leeway` (RFC 7519 §4.1.4).
    pub fn verify(&self, token: &str, now_secs: u64) -> Result<Identity, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong {
                len: token.len(),
                max: MAX_TOKEN_LEN,
            });
        }
        check_algorithm(token)?;
        let claims = jsonwebtoken::decode::<ReceivedClaims>(token, &self.key, &self.validation)
            .map_err(|e| refusal_of(e.kind()))?
            .claims;
        let user = claims.sub.ok_or(TokenError::MissingSubject)?;
        if !is_valid_user_id(&user) {
            return Err(TokenError::BadSubject);
        }
        let device = match claims.dev {
            Some(device) if is_valid_device(&device) => device,
            Some(_) => return Err(TokenError::BadDevice),
            None => DEFAULT_DEVICE.to_owned(),
        };
        let exp = claims.exp.ok_or(TokenError::MissingExpiry)?;
        if now_secs >= exp.saturating_add(self.leeway_secs) {
            return Err(TokenError::Expired { exp, now: now_secs });
        }
        if let Some(nbf) = claims.nbf {
            if now_secs.saturating_add(self.leeway_secs) < nbf {
                return Err(TokenError::NotYetValid { nbf, now: now_secs });
            }
        }
        Ok(Identity { user, device })
    }

    /// [`verify`](Self::verify) at the system clock's time.
    pub fn verify_now(&self, token: &str) -> Result<Identity, TokenError> {
        self.verify(token, unix_now_secs())
    }
}

impl fmt::Debug for TokenVerifier {
    // Never print the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("leeway_secs", &self.leeway_secs)
            .finish_non_exhaustive()
    }
}

/// A token for `user` on `device` (none: [`DEFAULT_DEVICE`]), issued at `now_secs` and valid
/// for `ttl` (whole seconds), signed HS256 with `secret`. What the application's backend does;
/// here for `switchboard token` and tests.
pub fn mint(
    secret: &[u8],
    user: &str,
    device: Option<&str>,
    ttl: Duration,
    now_secs: u64,
) -> Result<String, MintError> {
    if !is_valid_user_id(user) {
        return Err(MintError::BadSubject);
    }
    if device.is_some_and(|device| !is_valid_device(device)) {
        return Err(MintError::BadDevice);
    }
    let claims = MintedClaims {
        sub: user,
        exp: now_secs.saturating_add(ttl.as_secs()),
        iat: now_secs,
        dev: device,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|e| MintError::Signing(e.to_string()))
}

/// Whether `user` is an acceptable user id: 1..=64 bytes, no control characters.
pub fn is_valid_user_id(user: &str) -> bool {
    (1..=MAX_USER_LEN).contains(&user.len()) && !user.chars().any(char::is_control)
}

/// Whether `device` is an acceptable device kind: 1..=32 bytes of `[a-z0-9_-]`.
pub fn is_valid_device(device: &str) -> bool {
    (1..=MAX_DEVICE_LEN).contains(&device.len())
        && device
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// The system clock in seconds since the Unix epoch (0 if it reads before 1970).
pub fn unix_now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[derive(Deserialize)]
struct ReceivedClaims {
    sub: Option<String>,
    exp: Option<u64>,
    nbf: Option<u64>,
    dev: Option<String>,
}

#[derive(Serialize)]
struct MintedClaims<'a> {
    sub: &'a str,
    exp: u64,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    dev: Option<&'a str>,
}

#[derive(Deserialize)]
struct HeaderAlgorithm {
    alg: String,
}

/// Refuses any algorithm but HS256 by name, so `none` and the asymmetric algorithms get a
/// refusal that says so rather than a generic parse error from the library.
fn check_algorithm(token: &str) -> Result<(), TokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let header = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| TokenError::Malformed)?;
    let header: HeaderAlgorithm =
        serde_json::from_slice(&header).map_err(|_| TokenError::Malformed)?;
    if header.alg != "HS256" {
        return Err(TokenError::UnsupportedAlgorithm {
            alg: header.alg.chars().take(16).collect(),
        });
    }
    Ok(())
}

fn refusal_of(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::InvalidAlgorithmName => {
            TokenError::UnsupportedAlgorithm { alg: String::new() }
        }
        _ => TokenError::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &[u8] = b"test secret, 32 bytes or longer!";
    const NOW: u64 = 1_780_000_000;
    const HOUR: Duration = Duration::from_secs(3600);

    fn verifier() -> TokenVerifier {
        TokenVerifier::new(SECRET)
    }

    fn b64(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    /// A token with any claims, signed properly with `secret` under `alg`.
    fn signed(alg: Algorithm, secret: &[u8], claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    fn valid_claims() -> serde_json::Value {
        serde_json::json!({ "sub": "alice", "exp": NOW + 60 })
    }

    #[test]
    fn round_trip_with_device() {
        let token = mint(SECRET, "alice", Some("phone"), HOUR, NOW).unwrap();
        let identity = verifier().verify(&token, NOW).unwrap();
        assert_eq!(
            identity,
            Identity {
                user: "alice".into(),
                device: "phone".into()
            }
        );
    }

    #[test]
    fn round_trip_without_device_is_the_default_device() {
        let token = mint(SECRET, "bob@example.com", None, HOUR, NOW).unwrap();
        let identity = verifier().verify(&token, NOW + 3599).unwrap();
        assert_eq!(identity.user, "bob@example.com");
        assert_eq!(identity.device, DEFAULT_DEVICE);
    }

    #[test]
    fn a_backend_token_with_iat_and_extra_claims_is_accepted() {
        let claims = serde_json::json!({
            "sub": "ünïcode user", "exp": NOW + 10, "iat": NOW - 5, "dev": "web_2-x",
            "aud": "chat", "iss": "backend", "roles": ["admin"]
        });
        let identity = verifier()
            .verify(&signed(Algorithm::HS256, SECRET, claims), NOW)
            .unwrap();
        assert_eq!(identity.user, "ünïcode user");
        assert_eq!(identity.device, "web_2-x");
    }

    #[test]
    fn expiry_boundary_is_exclusive() {
        let token = mint(SECRET, "alice", None, Duration::from_secs(10), NOW).unwrap();
        assert!(verifier().verify(&token, NOW + 9).is_ok());
        let refused = verifier().verify(&token, NOW + 10).unwrap_err();
        assert_eq!(
            refused,
            TokenError::Expired {
                exp: NOW + 10,
                now: NOW + 10
            }
        );
        assert!(refused.is_expired());
        assert!(verifier()
            .verify(&token, NOW + 100_000)
            .unwrap_err()
            .is_expired());
    }

    #[test]
    fn leeway_extends_expiry_when_configured() {
        let token = mint(SECRET, "alice", None, Duration::from_secs(10), NOW).unwrap();
        let lenient = verifier().with_leeway(Duration::from_secs(5));
        assert!(lenient.verify(&token, NOW + 14).is_ok());
        assert!(lenient.verify(&token, NOW + 15).unwrap_err().is_expired());
    }

    #[test]
    fn zero_ttl_is_expired_at_once() {
        let token = mint(SECRET, "alice", None, Duration::ZERO, NOW).unwrap();
        assert!(verifier().verify(&token, NOW).unwrap_err().is_expired());
    }

    #[test]
    fn not_before_is_honoured() {
        let claims = serde_json::json!({ "sub": "alice", "exp": NOW + 60, "nbf": NOW + 10 });
        let token = signed(Algorithm::HS256, SECRET, claims);
        assert_eq!(
            verifier().verify(&token, NOW),
            Err(TokenError::NotYetValid {
                nbf: NOW + 10,
                now: NOW
            })
        );
        assert!(verifier().verify(&token, NOW + 10).is_ok());
    }

    #[test]
    fn alg_none_built_by_hand_is_refused() {
        let claims = b64(&valid_claims().to_string());
        for alg in ["none", "None", "NONE"] {
            let header = b64(&format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
            for token in [format!("{header}.{claims}."), format!("{header}.{claims}")] {
                let refused = verifier().verify(&token, NOW).unwrap_err();
                assert!(!refused.is_expired());
                if token.ends_with('.') {
                    assert_eq!(
                        refused,
                        TokenError::UnsupportedAlgorithm { alg: alg.into() }
                    );
                } else {
                    assert_eq!(refused, TokenError::Malformed);
                }
            }
        }
    }

    #[test]
    fn asymmetric_algorithms_are_refused() {
        let claims = b64(&valid_claims().to_string());
        let signature = URL_SAFE_NO_PAD.encode([7u8; 64]);
        for alg in ["RS256", "RS512", "PS256", "ES256", "ES384", "EdDSA"] {
            let header = b64(&format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
            let token = format!("{header}.{claims}.{signature}");
            assert_eq!(
                verifier().verify(&token, NOW),
                Err(TokenError::UnsupportedAlgorithm { alg: alg.into() })
            );
        }
    }

    #[test]
    fn other_hmac_algorithms_with_the_right_secret_are_refused() {
        for alg in [Algorithm::HS384, Algorithm::HS512] {
            let token = signed(alg, SECRET, valid_claims());
            assert!(matches!(
                verifier().verify(&token, NOW),
                Err(TokenError::UnsupportedAlgorithm { .. })
            ));
        }
    }

    #[test]
    fn another_secret_is_a_bad_signature() {
        let token = mint(b"someone else's secret", "alice", None, HOUR, NOW).unwrap();
        assert_eq!(
            verifier().verify(&token, NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn altered_claims_are_a_bad_signature() {
        let token = mint(SECRET, "alice", None, HOUR, NOW).unwrap();
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = b64(&serde_json::json!({ "sub": "mallory", "exp": NOW + 60 }).to_string());
        parts[1] = &forged;
        assert_eq!(
            verifier().verify(&parts.join("."), NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn an_expired_token_with_a_bad_signature_is_invalid_not_expired() {
        let token = mint(b"another secret", "alice", None, Duration::ZERO, NOW).unwrap();
        assert_eq!(
            verifier().verify(&token, NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let header = b64(r#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = b64(&valid_claims().to_string());
        let cases = [
            String::new(),
            "abc".into(),
            "a.b".into(),
            "a.b.c.d".into(),
            "...".into(),
            format!("!!.{claims}.sig"),
            format!("{}.{claims}.sig", b64("not json")),
            format!("{}.{claims}.sig", b64(r#"{"typ":"JWT"}"#)),
            format!("{header}.{}.sig", b64("[1,2]")),
            format!("{header}.%%%.sig"),
        ];
        for token in cases {
            let refused = verifier().verify(&token, NOW).unwrap_err();
            assert!(
                matches!(refused, TokenError::Malformed | TokenError::BadSignature),
                "{token:?}: {refused:?}"
            );
        }
        assert_eq!(verifier().verify("a.b", NOW), Err(TokenError::Malformed));
    }

    #[test]
    fn claims_of_the_wrong_type_are_malformed() {
        for claims in [
            serde_json::json!({ "sub": 42, "exp": NOW + 60 }),
            serde_json::json!({ "sub": "alice", "exp": "tomorrow" }),
            serde_json::json!({ "sub": "alice", "exp": -1 }),
            serde_json::json!({ "sub": "alice", "exp": NOW + 60, "dev": 1 }),
        ] {
            let token = signed(Algorithm::HS256, SECRET, claims);
            assert_eq!(verifier().verify(&token, NOW), Err(TokenError::Malformed));
        }
    }

    #[test]
    fn too_long_tokens_are_refused_before_decoding() {
        let token = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(
            verifier().verify(&token, NOW),
            Err(TokenError::TooLong {
                len: MAX_TOKEN_LEN + 1,
                max: MAX_TOKEN_LEN
            })
        );
    }

    #[test]
    fn missing_sub_and_missing_exp_are_refused() {
        let no_sub = signed(
            Algorithm::HS256,
            SECRET,
            serde_json::json!({ "exp": NOW + 60 }),
        );
        assert_eq!(
            verifier().verify(&no_sub, NOW),
            Err(TokenError::MissingSubject)
        );
        let no_exp = signed(
            Algorithm::HS256,
            SECRET,
            serde_json::json!({ "sub": "alice" }),
        );
        assert_eq!(
            verifier().verify(&no_exp, NOW),
            Err(TokenError::MissingExpiry)
        );
    }

    #[test]
    fn bad_subjects_are_refused() {
        for sub in [
            "",
            "ali\nce",
            "tab\there",
            "del\u{7f}",
            "c1\u{85}",
            &"x".repeat(65),
        ] {
            let claims = serde_json::json!({ "sub": sub, "exp": NOW + 60 });
            let token = signed(Algorithm::HS256, SECRET, claims);
            assert_eq!(
                verifier().verify(&token, NOW),
                Err(TokenError::BadSubject),
                "{sub:?}"
            );
            assert_eq!(
                mint(SECRET, sub, None, HOUR, NOW),
                Err(MintError::BadSubject)
            );
        }
        // 64 bytes is the limit, counted in bytes, not characters.
        assert!(is_valid_user_id(&"x".repeat(64)));
        assert!(!is_valid_user_id(&"é".repeat(33)));
    }

    #[test]
    fn bad_devices_are_refused() {
        for dev in ["", "Phone", "a b", "pad.", "ü", &"d".repeat(33)] {
            let claims = serde_json::json!({ "sub": "alice", "exp": NOW + 60, "dev": dev });
            let token = signed(Algorithm::HS256, SECRET, claims);
            assert_eq!(
                verifier().verify(&token, NOW),
                Err(TokenError::BadDevice),
                "{dev:?}"
            );
            assert_eq!(
                mint(SECRET, "alice", Some(dev), HOUR, NOW),
                Err(MintError::BadDevice)
            );
        }
        assert!(is_valid_device(&"d".repeat(32)));
        assert!(is_valid_device("ipad_2-pro"));
    }

    #[test]
    fn only_expired_maps_to_token_expired() {
        assert!(TokenError::Expired { exp: 1, now: 1 }.is_expired());
        for refusal in [
            TokenError::Malformed,
            TokenError::BadSignature,
            TokenError::UnsupportedAlgorithm { alg: "none".into() },
            TokenError::MissingSubject,
            TokenError::MissingExpiry,
            TokenError::BadSubject,
            TokenError::BadDevice,
            TokenError::TooLong { len: 1, max: 0 },
            TokenError::NotYetValid { nbf: 2, now: 1 },
        ] {
            assert!(!refusal.is_expired(), "{refusal:?}");
        }
    }

    #[test]
    fn debug_does_not_print_the_secret() {
        let printed = format!("{:?}", verifier());
        assert!(!printed.contains("test secret"), "{printed}");
        assert!(printed.contains("TokenVerifier"));
    }

    proptest! {
        #[test]
        fn arbitrary_input_is_refused_without_panicking(token in ".{0,300}") {
            prop_assert!(verifier().verify(&token, NOW).is_err());
        }

        #[test]
        fn arbitrary_three_part_input_is_refused(
            a in "[A-Za-z0-9_-]{0,60}", b in "[A-Za-z0-9_-]{0,60}", c in "[A-Za-z0-9_-]{0,60}",
        ) {
            let token = [a, b, c].join(".");
            prop_assert!(verifier().verify(&token, NOW).is_err());
        }
    }
}
