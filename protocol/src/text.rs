//! `Text`: a `str` field of the wire, kept as the `Bytes` it arrived in.
//!
//! Invariant: the bytes are valid UTF-8, checked once when the value is made. Decoding a string
//! field therefore shares the packet's buffer instead of copying it into a `String`. The crate
//! forbids `unsafe`, so `as_str` re-checks the (short) bytes instead of trusting the invariant.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};

use bytes::Bytes;

/// Valid UTF-8 held in `Bytes`: user ids, device kinds, group names, tokens.
///
/// Equality, ordering and hashing are those of the string, so a `HashMap<Text, _>` can be
/// looked up with a `&str`.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Text(Bytes);

impl Text {
    /// The empty string.
    pub const fn new() -> Self {
        Text(Bytes::new())
    }

    /// A `Text` over a static string, without copying it.
    pub const fn from_static(s: &'static str) -> Self {
        Text(Bytes::from_static(s.as_bytes()))
    }

    /// Takes `bytes` if they are valid UTF-8, without copying them.
    pub fn from_utf8(bytes: Bytes) -> Result<Self, std::str::Utf8Error> {
        std::str::from_utf8(&bytes)?;
        Ok(Text(bytes))
    }

    /// The string.
    ///
    /// Costs one UTF-8 check of the bytes (a few nanoseconds for an id); hold on to the `&str`
    /// rather than calling this in a loop over a long text.
    pub fn as_str(&self) -> &str {
        // The constructors admit only valid UTF-8, so the fallback is unreachable.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The UTF-8 bytes, without a check.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The length in bytes (what the wire's `u16` length prefix counts).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the string is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The underlying bytes (a reference count, not a copy).
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl From<&str> for Text {
    /// Copies `s`.
    fn from(s: &str) -> Self {
        Text(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<String> for Text {
    /// Takes over the `String`'s buffer without copying it.
    fn from(s: String) -> Self {
        Text(Bytes::from(s))
    }
}

impl Borrow<str> for Text {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Hash for Text {
    // Hashes as `str` does, which `Borrow<str>` requires.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn from_utf8_refuses_invalid_bytes_and_keeps_valid_ones_uncopied() {
        assert!(Text::from_utf8(Bytes::from_static(b"\xff")).is_err());
        let bytes = Bytes::from_static("héllo".as_bytes());
        let text = Text::from_utf8(bytes.clone()).unwrap();
        assert_eq!(text.as_str(), "héllo");
        assert_eq!(text.len(), 6);
        assert_eq!(text.into_bytes().as_ptr(), bytes.as_ptr());
    }

    #[test]
    fn a_map_keyed_by_text_is_looked_up_by_str() {
        let mut online = HashMap::new();
        online.insert(Text::from("alice"), 1);
        assert_eq!(online.get("alice"), Some(&1));
        assert_eq!(online.get("bob"), None);
    }

    #[test]
    fn formats_as_the_string() {
        let text = Text::from_static("bob");
        assert_eq!(text.to_string(), "bob");
        assert_eq!(format!("{text:?}"), "\"bob\"");
        assert_eq!(text, "bob");
        let (a, b) = (Text::from_static("a"), Text::from_static("b"));
        assert!(a < b);
        assert!(Text::new().is_empty());
    }
}
