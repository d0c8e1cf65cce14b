//! The `Sec-WebSocket-Key` nonce and the `Sec-WebSocket-Accept` proof derived from it
//! (RFC 6455 §4.2.2 step 5.4). The key is kept in its base64 text form because that text, not
//! the 16 decoded bytes, is what gets hashed. Never generates randomness: the caller brings it.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha1::{Digest, Sha1};

/// The GUID every WebSocket server appends to the client's key before hashing.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `base64(SHA-1(key ++ GUID))`, the value of `Sec-WebSocket-Accept` for a request carrying
/// `Sec-WebSocket-Key: key` (the key as sent, in base64).
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(ACCEPT_GUID);
    let mut accept = [0; 28];
    // 20 bytes of digest are always exactly 28 base64 characters, so this cannot fail.
    let _ = STANDARD.encode_slice(sha.finalize(), &mut accept);
    accept
}

/// A valid `Sec-WebSocket-Key`: 24 base64 characters that decode to exactly 16 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct WebSocketKey([u8; 24]);

impl WebSocketKey {
    /// The key for a client request, from 16 random bytes the caller drew.
    pub fn from_nonce(nonce: [u8; 16]) -> Self {
        let mut key = [0; 24];
        // 16 bytes are always exactly 24 base64 characters, so this cannot fail.
        let _ = STANDARD.encode_slice(nonce, &mut key);
        WebSocketKey(key)
    }

    /// A received header value, if it is canonical padded base64 of exactly 16 bytes.
    pub fn parse(value: &[u8]) -> Option<Self> {
        let key: [u8; 24] = value.try_into().ok()?;
        // Room for what 24 characters could hold at most, so only the content can fail.
        let mut nonce = [0; 18];
        match STANDARD.decode_slice(key, &mut nonce) {
            Ok(16) => Some(WebSocketKey(key)),
            _ => None,
        }
    }

    /// The key as it appears on the wire.
    pub fn as_bytes(&self) -> &[u8; 24] {
        &self.0
    }

    /// The key as it appears on the wire.
    pub fn as_str(&self) -> &str {
        // Only base64 alphabet bytes are ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The `Sec-WebSocket-Accept` value that answers this key.
    pub fn accept(&self) -> [u8; 28] {
        accept_key(&self.0)
    }
}

impl fmt::Debug for WebSocketKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("WebSocketKey").field(&self.as_str()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6455_section_1_3_accept_example() {
        assert_eq!(
            &accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn rfc6455_sample_nonce_encodes_to_the_sample_key() {
        let key = WebSocketKey::from_nonce(*b"the sample nonce");
        assert_eq!(key.as_str(), "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(&key.accept(), b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn parse_accepts_exactly_sixteen_bytes_of_canonical_base64() {
        let key = WebSocketKey::parse(b"dGhlIHNhbXBsZSBub25jZQ==").unwrap();
        assert_eq!(key.as_bytes(), b"dGhlIHNhbXBsZSBub25jZQ==");
        // 15 bytes, 17 bytes, no padding, non-canonical trailing bits, bad alphabet.
        for bad in [
            &b"dGhlIHNhbXBsZSBub25j"[..],
            b"dGhlIHNhbXBsZSBub25jZWQ=",
            b"dGhlIHNhbXBsZSBub25jZQ",
            b"dGhlIHNhbXBsZSBub25jZR==",
            b"dGhlIHNhbXBsZSBub25jZ*==",
            b"",
        ] {
            assert_eq!(WebSocketKey::parse(bad), None, "{:?}", bad);
        }
    }
}
