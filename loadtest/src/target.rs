//! What the load generator aims at and where it connects from: `ws://HOST:PORT/PATH` or
//! `tcp://HOST:PORT`, and a range of local source addresses used round-robin.
//! Parsing only; a target names exactly one socket address and nothing else is ever dialed.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

/// The transport a target speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Framed TCP: Switchboard packets one after another.
    Tcp,
    /// WebSocket: an upgrade to `path`, then binary messages.
    Ws {
        /// The request path, `/` when the URL has none.
        path: String,
    },
}

/// A parsed `--target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The one address every connection goes to.
    pub addr: SocketAddr,
    /// `HOST:PORT` as written, for the WebSocket `Host` header.
    pub authority: String,
    /// How packets travel.
    pub transport: Transport,
    /// `tls://` and `wss://`: through TLS, with the host of `authority` as the server name.
    pub tls: bool,
}

/// Why a `--target` or `--source-ips` was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

impl Target {
    /// Parses `ws://HOST:PORT[/PATH]` or `tcp://HOST:PORT`; HOST may be a name, resolved once.
    pub fn parse(url: &str) -> Result<Target, ParseError> {
        let bad = |why: &str| ParseError(format!("bad target {url:?}: {why}"));
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("expected ws://HOST:PORT/PATH or tcp://HOST:PORT"))?;
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        let tls = matches!(scheme, "wss" | "tls");
        let transport = match scheme {
            "ws" | "wss" => Transport::Ws { path: path.into() },
            "tcp" | "tls" if path == "/" => Transport::Tcp,
            "tcp" | "tls" => return Err(bad("a tcp target has no path")),
            _ => return Err(bad("the scheme must be ws, wss, tcp or tls")),
        };
        let (_, port) = authority
            .rsplit_once(':')
            .ok_or_else(|| bad("the port is missing"))?;
        port.parse::<u16>()
            .map_err(|_| bad("the port is not a number"))?;
        let addr = authority
            .to_socket_addrs()
            .map_err(|e| bad(&e.to_string()))?
            .next()
            .ok_or_else(|| bad("the host resolves to no address"))?;
        Ok(Target {
            addr,
            authority: authority.into(),
            transport,
            tls,
        })
    }

    /// The host of the authority (no port, no brackets): the TLS server name.
    pub fn host(&self) -> &str {
        let host = self
            .authority
            .rsplit_once(':')
            .map_or(&*self.authority, |(h, _)| h);
        host.trim_start_matches('[').trim_end_matches(']')
    }

    /// Whether this is a WebSocket target.
    pub fn is_ws(&self) -> bool {
        matches!(self.transport, Transport::Ws { .. })
    }
}

/// Parses `FIRST-LAST` or a single IPv4 address into every address of the range, in order.
/// At most 65,536 addresses; each must be an address of this machine for `bind` to succeed,
/// which the engine reports per connection (error kind `bind`).
pub fn parse_source_ips(range: &str) -> Result<Vec<IpAddr>, ParseError> {
    let bad = |why: &str| ParseError(format!("bad source range {range:?}: {why}"));
    let (first, last) = range.split_once('-').unwrap_or((range, range));
    let first: Ipv4Addr = first.trim().parse().map_err(|_| bad("not an IPv4"))?;
    let last: Ipv4Addr = last.trim().parse().map_err(|_| bad("not an IPv4"))?;
    let (first, last) = (u32::from(first), u32::from(last));
    if last < first {
        return Err(bad("the last address is below the first"));
    }
    if last - first >= 1 << 16 {
        return Err(bad("more than 65,536 addresses"));
    }
    Ok((first..=last)
        .map(|ip| IpAddr::V4(Ipv4Addr::from(ip)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_targets_keep_their_path_and_authority() {
        let t = Target::parse("ws://127.0.0.1:9001/chat/x").unwrap();
        assert_eq!(t.addr, "127.0.0.1:9001".parse().unwrap());
        assert_eq!(t.authority, "127.0.0.1:9001");
        assert_eq!(
            t.transport,
            Transport::Ws {
                path: "/chat/x".into()
            }
        );
        let t = Target::parse("ws://127.0.0.1:9001").unwrap();
        assert_eq!(t.transport, Transport::Ws { path: "/".into() });
        assert!(t.is_ws());
    }

    #[test]
    fn tcp_targets_have_no_path() {
        let t = Target::parse("tcp://127.0.0.1:9000").unwrap();
        assert_eq!(t.transport, Transport::Tcp);
        assert!(!t.is_ws());
        assert!(Target::parse("tcp://127.0.0.1:9000/x").is_err());
    }

    #[test]
    fn tls_targets_parse() {
        let t = Target::parse("wss://127.0.0.1:9443/chat").unwrap();
        assert!(t.tls && t.is_ws());
        assert_eq!(t.host(), "127.0.0.1");
        let t = Target::parse("tls://[::1]:9443").unwrap();
        assert!(t.tls && !t.is_ws());
        assert_eq!(t.host(), "::1");
    }

    #[test]
    fn bad_targets_are_refused() {
        for url in [
            "127.0.0.1:9000",
            "http://127.0.0.1:1",
            "https://127.0.0.1:1/",
            "tls://127.0.0.1:1/x",
            "ws://127.0.0.1/",
            "ws://127.0.0.1:notaport/",
            "tcp://127.0.0.1:70000",
        ] {
            assert!(Target::parse(url).is_err(), "{url}");
        }
    }

    #[test]
    fn source_ranges_expand_in_order() {
        let ips = parse_source_ips("127.0.0.1-127.0.0.3").unwrap();
        let want: Vec<IpAddr> = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(ips, want);
        assert_eq!(parse_source_ips("127.0.0.9").unwrap().len(), 1);
        assert_eq!(parse_source_ips("127.0.0.255-127.0.1.0").unwrap().len(), 2);
    }

    #[test]
    fn bad_source_ranges_are_refused() {
        assert!(parse_source_ips("127.0.0.5-127.0.0.1").is_err());
        assert!(parse_source_ips("10.0.0.0-10.1.0.0").is_err());
        assert!(parse_source_ips("localhost").is_err());
        assert!(parse_source_ips("::1").is_err());
    }
}
