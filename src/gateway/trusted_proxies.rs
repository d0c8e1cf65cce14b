//! Which peers may send a PROXY protocol header (the `--trusted-proxies CIDR,...` list), and
//! on which listeners a header is expected (`--proxy-protocol [all|tcp|ws]`).
//!
//! Sans-I/O: parsed once from the option's text, asked with a peer address per accepted
//! connection. An IPv4 client reaching a dual-stack listener shows up as an IPv4-mapped IPv6
//! address (`::ffff:10.0.0.1`); both the list and the peer are brought to their canonical
//! family first, so `10.0.0.0/8` matches it and `::ffff:10.0.0.0/104` means `10.0.0.0/8`.
//! A network with host bits set (`10.0.0.1/8`) is refused rather than widened: a typo there
//! would silently trust more peers than meant. CIDR parsing and containment are `ipnet`'s.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net};

use super::handler::Transport;

/// Why a `--trusted-proxies` element was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustedProxiesError {
    /// Not an address nor `address/prefix-length` of either family.
    #[error("{element:?} is not an IP address or CIDR network")]
    NotANetwork {
        /// The element as written.
        element: String,
    },
    /// A network whose address has bits set past its prefix.
    #[error("{element:?} has host bits set; did you mean {network}?")]
    HostBits {
        /// The element as written.
        element: String,
        /// The network the prefix length describes.
        network: IpNet,
    },
}

/// A set of networks whose peers are trusted to send a PROXY header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
}

impl TrustedProxies {
    /// Whether `peer` lies in one of the networks (IPv4-mapped IPv6 peers as IPv4).
    pub fn contains(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.networks.iter().any(|network| network.contains(&peer))
    }

    /// Whether the list is empty (no peer is trusted).
    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    /// The networks, in canonical form, in the order given.
    pub fn networks(&self) -> &[IpNet] {
        &self.networks
    }
}

impl FromStr for TrustedProxies {
    type Err = TrustedProxiesError;

    /// A comma-separated list of networks (`10.0.0.0/8`) or single addresses (`192.0.2.7`);
    /// spaces around elements and empty elements are ignored.
    fn from_str(list: &str) -> Result<Self, Self::Err> {
        let networks = list
            .split(',')
            .map(str::trim)
            .filter(|element| !element.is_empty())
            .map(network)
            .collect::<Result<_, _>>()?;
        Ok(TrustedProxies { networks })
    }
}

impl fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, network) in self.networks.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{network}")?;
        }
        Ok(())
    }
}

/// The listeners whose connections must open with a PROXY header: both, or one of them when
/// a balancer fronts only that one (the other reached directly, or through an L7 proxy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyListeners {
    /// The framed-TCP listener.
    pub tcp: bool,
    /// The WebSocket listener.
    pub ws: bool,
}

impl ProxyListeners {
    /// Both listeners.
    pub const ALL: ProxyListeners = ProxyListeners {
        tcp: true,
        ws: true,
    };
    /// Neither.
    pub const NONE: ProxyListeners = ProxyListeners {
        tcp: false,
        ws: false,
    };

    /// Whether connections on `transport`'s listener open with a PROXY header.
    pub fn covers(self, transport: Transport) -> bool {
        match transport {
            Transport::Tcp => self.tcp,
            Transport::WebSocket => self.ws,
        }
    }
}

impl Default for ProxyListeners {
    fn default() -> Self {
        ProxyListeners::ALL
    }
}

/// A `--proxy-protocol` value that names no listener.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a listener list: all, none, tcp, ws or tcp,ws")]
pub struct ProxyListenersError(String);

impl FromStr for ProxyListeners {
    type Err = ProxyListenersError;

    /// `all` (or `true`), `none` (or `false`), or a comma-separated list of `tcp` and `ws`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let refused = || ProxyListenersError(text.to_owned());
        match text.trim() {
            "all" | "true" => return Ok(ProxyListeners::ALL),
            "none" | "false" => return Ok(ProxyListeners::NONE),
            _ => {}
        }
        let mut listeners = ProxyListeners::NONE;
        for element in text.split(',').map(str::trim) {
            match element {
                "tcp" => listeners.tcp = true,
                "ws" => listeners.ws = true,
                _ => return Err(refused()),
            }
        }
        Ok(listeners)
    }
}

impl fmt::Display for ProxyListeners {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match (self.tcp, self.ws) {
            (true, true) => "all",
            (true, false) => "tcp",
            (false, true) => "ws",
            (false, false) => "none",
        })
    }
}

fn network(element: &str) -> Result<IpNet, TrustedProxiesError> {
    let parsed = match element.parse::<IpNet>() {
        Ok(network) => network,
        Err(_) => match element.parse::<IpAddr>() {
            Ok(address) => IpNet::from(address),
            Err(_) => {
                return Err(TrustedProxiesError::NotANetwork {
                    element: element.to_owned(),
                })
            }
        },
    };
    if parsed.trunc() != parsed {
        return Err(TrustedProxiesError::HostBits {
            element: element.to_owned(),
            network: parsed.trunc(),
        });
    }
    Ok(canonical(parsed))
}

/// An IPv6 network inside `::ffff:0:0/96` as the IPv4 network it stands for.
fn canonical(network: IpNet) -> IpNet {
    let IpNet::V6(v6) = network else {
        return network;
    };
    // `to_ipv4_mapped` answers only for `::ffff:a.b.c.d`: with 96 prefix bits or more, the
    // whole network lies inside `::ffff:0:0/96`.
    match v6.addr().to_ipv4_mapped() {
        Some(v4) if v6.prefix_len() >= 96 => {
            IpNet::V4(Ipv4Net::new(v4, v6.prefix_len() - 96).expect("at most 32"))
        }
        _ => network,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_listeners_parse_and_print() {
        let (tcp, ws) = (
            ProxyListeners {
                tcp: true,
                ws: false,
            },
            ProxyListeners {
                tcp: false,
                ws: true,
            },
        );
        for (text, listeners) in [
            ("all", ProxyListeners::ALL),
            ("true", ProxyListeners::ALL),
            ("tcp,ws", ProxyListeners::ALL),
            (" ws , tcp ", ProxyListeners::ALL),
            ("tcp", tcp),
            ("ws", ws),
            ("none", ProxyListeners::NONE),
            ("false", ProxyListeners::NONE),
        ] {
            assert_eq!(text.parse::<ProxyListeners>(), Ok(listeners), "{text}");
            assert_eq!(listeners.to_string().parse(), Ok(listeners));
        }
        for bad in ["", "udp", "tcp,", "websocket", "tcp;ws"] {
            assert!(bad.parse::<ProxyListeners>().is_err(), "{bad:?}");
        }
        assert!(tcp.covers(Transport::Tcp) && !tcp.covers(Transport::WebSocket));
        assert!(!ws.covers(Transport::Tcp) && ws.covers(Transport::WebSocket));
    }

    fn trusted(list: &str) -> TrustedProxies {
        list.parse().unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn matches_ipv4_and_ipv6_networks() {
        let list = trusted("10.0.0.0/8, 192.0.2.7 ,2001:db8::/32");
        assert!(list.contains(ip("10.1.2.3")));
        assert!(list.contains(ip("192.0.2.7")));
        assert!(!list.contains(ip("192.0.2.8")));
        assert!(!list.contains(ip("11.0.0.1")));
        assert!(list.contains(ip("2001:db8:ffff::1")));
        assert!(!list.contains(ip("2001:db9::1")));
    }

    #[test]
    fn ipv4_mapped_peers_match_ipv4_networks() {
        let list = trusted("10.0.0.0/8");
        assert!(list.contains(ip("::ffff:10.9.8.7")));
        assert!(!list.contains(ip("::ffff:11.0.0.1")));
    }

    #[test]
    fn ipv4_mapped_networks_mean_ipv4_networks() {
        let list = trusted("::ffff:10.0.0.0/104,::ffff:192.0.2.1");
        assert_eq!(list.to_string(), "10.0.0.0/8,192.0.2.1/32");
        assert!(list.contains(ip("10.200.0.1")));
        assert!(list.contains(ip("::ffff:192.0.2.1")));
        assert!(!list.contains(ip("192.0.2.2")));
    }

    #[test]
    fn a_plain_ipv6_network_does_not_swallow_ipv4_peers() {
        let list = trusted("::/0");
        assert!(list.contains(ip("2001:db8::1")));
        assert!(!list.contains(ip("10.0.0.1")));
        assert!(!list.contains(ip("::ffff:10.0.0.1")));
    }

    #[test]
    fn empty_list_trusts_nobody() {
        let list = trusted(" , ");
        assert!(list.is_empty());
        assert!(!list.contains(ip("127.0.0.1")));
    }

    #[test]
    fn host_bits_are_refused_with_the_network_meant() {
        assert_eq!(
            "192.168.1.0/16".parse::<TrustedProxies>(),
            Err(TrustedProxiesError::HostBits {
                element: "192.168.1.0/16".into(),
                network: "192.168.0.0/16".parse().unwrap(),
            })
        );
    }

    #[test]
    fn garbage_is_refused_with_the_element() {
        for element in [
            "10.0.0.0/33",
            "10.0.0",
            "example.com",
            "2001:db8::/129",
            "10.0.0.0/",
        ] {
            assert_eq!(
                format!("127.0.0.1,{element}").parse::<TrustedProxies>(),
                Err(TrustedProxiesError::NotANetwork {
                    element: element.into()
                }),
                "{element}"
            );
        }
    }
}
