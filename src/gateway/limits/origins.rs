//! `--allowed-origins`: which web pages' scripts may open a WebSocket to the gateway.
//!
//! A browser sends the page's origin (`https://chat.example.com`) with every WebSocket
//! upgrade; an upgrade whose Origin is not in the list is refused with 403. An upgrade
//! without an Origin header is let through: browsers always send one, so its absence means
//! a native app, a server or a load generator, which could write any Origin it liked anyway.
//! The allowlist stops other sites' pages from using a visitor's browser, not other programs.
//! Origins compare as the browser serializes them (`scheme://host[:port]`), ASCII case
//! ignored; `null` (sandboxed pages, files) may be listed like any other.

use std::fmt;
use std::str::FromStr;

/// The origins allowed to open WebSockets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedOrigins {
    origins: Vec<Box<str>>,
}

/// Why an `--allowed-origins` element was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowedOriginsError {
    /// Not `scheme://host[:port]` (nor `null`): a path, a wildcard or a bare host name would
    /// never equal what a browser sends.
    #[error(
        "{0:?} is not an origin like https://chat.example.com (scheme://host[:port], no path)"
    )]
    NotAnOrigin(String),
}

impl AllowedOrigins {
    /// Whether an upgrade with this Origin header (or none) may proceed.
    pub fn allows(&self, origin: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        let origin = origin.trim();
        self.origins
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(origin))
    }

    /// Whether the list is empty (then no browser page may connect).
    pub fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }
}

impl FromStr for AllowedOrigins {
    type Err = AllowedOriginsError;

    /// A comma-separated list; spaces around elements and empty elements are ignored, and a
    /// trailing `/` is dropped (`https://a.example/` is `https://a.example`).
    fn from_str(list: &str) -> Result<Self, Self::Err> {
        let origins = list
            .split(',')
            .map(str::trim)
            .filter(|element| !element.is_empty())
            .map(|element| {
                let origin = element.strip_suffix('/').unwrap_or(element);
                if origin.eq_ignore_ascii_case("null") || is_origin(origin) {
                    Ok(origin.to_ascii_lowercase().into_boxed_str())
                } else {
                    Err(AllowedOriginsError::NotAnOrigin(element.to_owned()))
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(AllowedOrigins { origins })
    }
}

/// `scheme://host[:port]` with a non-empty scheme and host and nothing after them.
fn is_origin(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once("://") else {
        return false;
    };
    let scheme_ok = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    let host_ok =
        !rest.is_empty() && !rest.contains(['/', '?', '#', '*', '@', ' ']) && rest.is_ascii();
    scheme_ok && host_ok
}

impl fmt::Display for AllowedOrigins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origins.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_origins_pass_others_are_refused_and_none_passes() {
        let allowed: AllowedOrigins = "https://chat.example.com, http://localhost:8080/,null"
            .parse()
            .unwrap();
        assert!(allowed.allows(Some("https://chat.example.com")));
        assert!(allowed.allows(Some("HTTPS://Chat.Example.com")));
        assert!(allowed.allows(Some("http://localhost:8080")));
        assert!(allowed.allows(Some("null")));
        assert!(!allowed.allows(Some("https://evil.example")));
        assert!(!allowed.allows(Some("https://chat.example.com.evil.example")));
        assert!(
            !allowed.allows(Some("http://chat.example.com")),
            "scheme counts"
        );
        assert!(
            !allowed.allows(Some("http://localhost:8081")),
            "port counts"
        );
        assert!(allowed.allows(None), "no Origin: not a browser");
        assert_eq!(
            allowed.to_string(),
            "https://chat.example.com,http://localhost:8080,null"
        );
    }

    #[test]
    fn things_that_are_not_origins_are_refused() {
        for bad in [
            "chat.example.com",
            "https://chat.example.com/app",
            "https://*.example.com",
            "https://",
            "://x",
            "https://user@host",
        ] {
            assert_eq!(
                bad.parse::<AllowedOrigins>(),
                Err(AllowedOriginsError::NotAnOrigin(bad.to_owned())),
                "{bad}"
            );
        }
        assert!("".parse::<AllowedOrigins>().unwrap().is_empty());
    }
}
