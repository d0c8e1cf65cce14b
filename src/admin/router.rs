//! `GET /router`: the gateway addresses a client should try, in the order given (the seed's
//! Router, which an SDK asks before it connects). `--advertise` lists them as the clients
//! must write them (`ws://chat.example.com/`, `tcp://10.0.0.7:9000`): behind a load balancer
//! or NAT only the operator knows them. Without it, the gateway's own listeners are listed;
//! a listener on an unspecified address (0.0.0.0, ::) is given with the host the request
//! was addressed to (its `Host` header), which is how this client reached the node.

use std::net::SocketAddr;

use super::{Context, Head, Reply};
use serde_json::json;

/// The answer: `{"endpoints": [...]}`, in the SDK's endpoint syntax.
pub fn router(context: &Context, head: &Head) -> Reply {
    let advertised = &context.config.advertise;
    let endpoints: Vec<String> = if !advertised.is_empty() {
        advertised.clone()
    } else if let Some(sources) = context.sources.get() {
        let host = head.host.as_deref().and_then(host_part);
        let mut own = Vec::new();
        if let Some(ws) = sources.ws {
            own.push(format!("ws://{}/", reachable(ws, host.as_deref())));
        }
        if let Some(tcp) = sources.tcp {
            own.push(format!("tcp://{}", reachable(tcp, host.as_deref())));
        }
        own
    } else {
        Vec::new()
    };
    Reply::json(200, &json!({ "endpoints": endpoints }))
}

/// The host part of a `Host` header, without its port.
fn host_part(value: &str) -> Option<String> {
    let host = match value.strip_prefix('[') {
        Some(v6) => format!("[{}]", v6.split(']').next()?),
        None => value
            .rsplit_once(':')
            .map_or(value, |(host, _)| host)
            .to_owned(),
    };
    (!host.is_empty()).then_some(host)
}

/// `addr` as a client writes it: its own IP, or for an unspecified one, `host`.
fn reachable(addr: SocketAddr, host: Option<&str>) -> String {
    match host {
        Some(host) if addr.ip().is_unspecified() => format!("{host}:{}", addr.port()),
        _ => addr.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_listener_is_given_with_the_host_the_client_used() {
        let any: SocketAddr = "0.0.0.0:9001".parse().unwrap();
        assert_eq!(
            reachable(any, Some("chat.example.com")),
            "chat.example.com:9001"
        );
        assert_eq!(reachable(any, None), "0.0.0.0:9001");
        let own: SocketAddr = "127.0.0.1:9001".parse().unwrap();
        assert_eq!(reachable(own, Some("chat.example.com")), "127.0.0.1:9001");
    }
}
