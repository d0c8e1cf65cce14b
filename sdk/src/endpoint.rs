//! `Endpoint`: one gateway address, `tcp://host:port` or `ws://host[:port][/path]`, and their
//! TLS forms `tls://host:port` and `wss://host[:port][/path]`.
//!
//! Parsing is strict and never panics: a scheme other than `tcp`, `tls`, `ws` or `wss`, a missing host, a
//! missing TCP port, a port outside 1..=65535, or anything after the authority of a TCP
//! address is refused with the variant naming it. `Display` writes the string back.

use std::fmt;
use std::str::FromStr;

/// A gateway address the client can connect to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// Framed TCP: packets straight on the byte stream.
    Tcp {
        /// A host name or IP address (an IPv6 address without its brackets).
        host: String,
        /// The port.
        port: u16,
        /// `tls://`: the packets go through TLS.
        tls: bool,
    },
    /// WebSocket: each packet is one binary message.
    Ws {
        /// A host name or IP address (an IPv6 address without its brackets).
        host: String,
        /// The port (80 when the address names none).
        port: u16,
        /// The request path with its query, starting with `/` (`/` when the address names none).
        path: String,
        /// `wss://`: the WebSocket runs over TLS.
        tls: bool,
    },
}

/// Why a string is not an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// No `scheme://` prefix.
    #[error("missing scheme: expected tcp://host:port or ws://host:port/path")]
    MissingScheme,
    /// A scheme other than `tcp`, `tls`, `ws` and `wss`.
    #[error("unsupported scheme {0:?}: expected tcp, tls, ws or wss")]
    UnsupportedScheme(String),
    /// Nothing between `://` and the port or path.
    #[error("missing host")]
    MissingHost,
    /// A `[` without its `]`, or characters that cannot be in a host.
    #[error("invalid host {0:?}")]
    InvalidHost(String),
    /// A TCP address without `:port`.
    #[error("missing port: tcp addresses need one")]
    MissingPort,
    /// A port that is not a number in 1..=65535.
    #[error("invalid port {0:?}")]
    InvalidPort(String),
    /// A TCP address with a path, query or fragment after its port.
    #[error("unexpected {0:?} after a tcp address")]
    TrailingPath(String),
    /// A WebSocket path with a fragment or characters a request line cannot carry.
    #[error("invalid path {0:?}")]
    InvalidPath(String),
}

const DEFAULT_WS_PORT: u16 = 80;
const DEFAULT_WSS_PORT: u16 = 443;

impl Endpoint {
    /// The host to resolve.
    pub fn host(&self) -> &str {
        match self {
            Endpoint::Tcp { host, .. } | Endpoint::Ws { host, .. } => host,
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        match self {
            Endpoint::Tcp { port, .. } | Endpoint::Ws { port, .. } => *port,
        }
    }

    /// Whether the connection runs over TLS (`tls://`, `wss://`).
    pub fn is_tls(&self) -> bool {
        match self {
            Endpoint::Tcp { tls, .. } | Endpoint::Ws { tls, .. } => *tls,
        }
    }

    /// `host:port` as an HTTP `Host` header writes it (IPv6 in brackets).
    pub fn authority(&self) -> String {
        let host = self.host();
        if host.contains(':') {
            format!("[{host}]:{}", self.port())
        } else {
            format!("{host}:{}", self.port())
        }
    }
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (scheme, rest) = s.split_once("://").ok_or(EndpointError::MissingScheme)?;
        let (is_ws, tls) = match scheme.to_ascii_lowercase().as_str() {
            "tcp" => (false, false),
            "tls" => (false, true),
            "ws" => (true, false),
            "wss" => (true, true),
            _ => return Err(EndpointError::UnsupportedScheme(scheme.to_owned())),
        };
        let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(split);
        let (host, port) = split_authority(authority)?;
        if is_ws {
            let path = if tail.is_empty() {
                "/".to_owned()
            } else if tail.starts_with('/') {
                tail.to_owned()
            } else {
                format!("/{tail}")
            };
            if path.contains('#') || !path.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(EndpointError::InvalidPath(path));
            }
            Ok(Endpoint::Ws {
                host,
                port: port.unwrap_or(if tls {
                    DEFAULT_WSS_PORT
                } else {
                    DEFAULT_WS_PORT
                }),
                path,
                tls,
            })
        } else {
            if !tail.is_empty() && tail != "/" {
                return Err(EndpointError::TrailingPath(tail.to_owned()));
            }
            let port = port.ok_or(EndpointError::MissingPort)?;
            Ok(Endpoint::Tcp { host, port, tls })
        }
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_authority(authority: &str) -> Result<(String, Option<u16>), EndpointError> {
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| EndpointError::InvalidHost(authority.to_owned()))?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| EndpointError::InvalidHost(authority.to_owned()))?,
            ),
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(EndpointError::MissingHost);
    }
    let host_ok = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'%'));
    if !host_ok {
        return Err(EndpointError::InvalidHost(host.to_owned()));
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(port) if port != 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(port),
            _ => return Err(EndpointError::InvalidPort(p.to_owned())),
        },
    };
    Ok((host.to_owned(), port))
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp { tls: false, .. } => write!(f, "tcp://{}", self.authority()),
            Endpoint::Tcp { tls: true, .. } => write!(f, "tls://{}", self.authority()),
            Endpoint::Ws { path, tls, .. } => {
                let scheme = if *tls { "wss" } else { "ws" };
                write!(f, "{scheme}://{}{path}", self.authority())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> Endpoint {
        Endpoint::Tcp {
            host: host.into(),
            port,
            tls: false,
        }
    }

    fn ws(host: &str, port: u16, path: &str) -> Endpoint {
        Endpoint::Ws {
            host: host.into(),
            port,
            path: path.into(),
            tls: false,
        }
    }

    #[test]
    fn parses_tcp_and_ws_addresses() {
        assert_eq!("tcp://127.0.0.1:9000".parse(), Ok(tcp("127.0.0.1", 9000)));
        assert_eq!("tcp://gw.example:1/".parse(), Ok(tcp("gw.example", 1)));
        assert_eq!(
            "ws://127.0.0.1:9001/chat?v=1".parse(),
            Ok(ws("127.0.0.1", 9001, "/chat?v=1"))
        );
        assert_eq!("WS://host".parse(), Ok(ws("host", 80, "/")));
        assert_eq!("ws://host:81?x".parse(), Ok(ws("host", 81, "/?x")));
    }

    #[test]
    fn parses_tls_and_wss_addresses() {
        let tls: Endpoint = "tls://gw.example:9443".parse().unwrap();
        assert!(tls.is_tls() && matches!(tls, Endpoint::Tcp { port: 9443, .. }));
        let wss: Endpoint = "wss://gw.example/chat".parse().unwrap();
        assert!(wss.is_tls() && matches!(wss, Endpoint::Ws { port: 443, .. }));
        assert!(!"ws://gw.example".parse::<Endpoint>().unwrap().is_tls());
        assert_eq!(
            "tls://gw.example".parse::<Endpoint>(),
            Err(EndpointError::MissingPort)
        );
    }

    #[test]
    fn parses_bracketed_ipv6() {
        assert_eq!("tcp://[::1]:9000".parse(), Ok(tcp("::1", 9000)));
        assert_eq!("ws://[fe80::1]/".parse(), Ok(ws("fe80::1", 80, "/")));
        assert_eq!(tcp("::1", 9000).authority(), "[::1]:9000");
    }

    #[test]
    fn refusals_name_what_is_wrong() {
        let err = |s: &str| s.parse::<Endpoint>().unwrap_err();
        assert_eq!(err("127.0.0.1:9000"), EndpointError::MissingScheme);
        assert_eq!(
            err("http://h:1"),
            EndpointError::UnsupportedScheme("http".into())
        );
        assert_eq!(err("tcp://:9000"), EndpointError::MissingHost);
        assert_eq!(err("tcp://host"), EndpointError::MissingPort);
        assert_eq!(err("tcp://host:0"), EndpointError::InvalidPort("0".into()));
        assert_eq!(
            err("tcp://host:65536"),
            EndpointError::InvalidPort("65536".into())
        );
        assert_eq!(
            err("tcp://host:+1"),
            EndpointError::InvalidPort("+1".into())
        );
        assert_eq!(
            err("tcp://host:1/x"),
            EndpointError::TrailingPath("/x".into())
        );
        assert_eq!(
            err("tcp://[::1:9000"),
            EndpointError::InvalidHost("[::1:9000".into())
        );
        assert_eq!(err("tcp://a b:1"), EndpointError::InvalidHost("a b".into()));
        assert_eq!(
            err("ws://h/a#frag"),
            EndpointError::InvalidPath("/a#frag".into())
        );
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "tcp://127.0.0.1:9000",
            "ws://localhost:9001/",
            "ws://[::1]:80/p?q=1",
            "tcp://[::1]:7",
            "tls://gw.example:9443",
            "wss://gw.example:443/chat",
        ] {
            let endpoint: Endpoint = s.parse().unwrap();
            assert_eq!(endpoint.to_string(), s);
            assert_eq!(endpoint.to_string().parse(), Ok(endpoint));
        }
    }
}
