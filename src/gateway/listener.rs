//! Listening sockets: one per transport per reactor, bound with SO_REUSEPORT.
//!
//! Every reactor binds its own listener to the same address and the kernel spreads incoming
//! connections between them, so no accept lock is shared between threads. The per-connection
//! options (TCP_NODELAY, keepalive, TCP_USER_TIMEOUT, buffer sizes) are set once on the
//! listener: Linux copies them to every socket `accept` returns, which saves four system
//! calls per connection. A test below checks that inheritance on this kernel.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};

use socket2::{Domain, Protocol, Socket, TcpKeepalive, Type};

use super::config::SocketOptions;

/// Binds a non-blocking, SO_REUSEPORT listener with `options` applied.
pub fn bind_listener(
    addr: SocketAddr,
    options: &SocketOptions,
) -> io::Result<mio::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    apply_options(&socket, options)?;
    socket.bind(&addr.into())?;
    socket.listen(options.backlog)?;
    Ok(mio::net::TcpListener::from_std(socket.into()))
}

/// Listening sockets by transport, as a process hands them to another (`--handover`).
#[derive(Debug, Default)]
pub struct Listeners {
    /// The framed-TCP sockets, one per reactor.
    pub tcp: Vec<std::net::TcpListener>,
    /// The WebSocket sockets.
    pub ws: Vec<std::net::TcpListener>,
}

impl Listeners {
    /// The reactors that serve these sockets: one per socket of the transport with more.
    pub fn reactors(&self) -> usize {
        self.tcp.len().max(self.ws.len())
    }
}

/// Copies (duplicated descriptors) of a gateway's listening sockets, kept so that a new
/// process can be handed them while the reactors go on accepting on theirs. Released when
/// the gateway drains: a copy left open would keep a socket's accept queue filling with
/// connections nobody accepts.
#[derive(Debug, Clone, Default)]
pub struct ListenerCopies(Arc<Mutex<Option<Listeners>>>);

impl ListenerCopies {
    pub(crate) fn of(
        listeners: &[(Option<mio::net::TcpListener>, Option<mio::net::TcpListener>)],
    ) -> io::Result<ListenerCopies> {
        let copy = |listener: &mio::net::TcpListener| -> io::Result<std::net::TcpListener> {
            Ok(listener.as_fd().try_clone_to_owned()?.into())
        };
        let mut copies = Listeners::default();
        for (tcp, ws) in listeners {
            if let Some(tcp) = tcp {
                copies.tcp.push(copy(tcp)?);
            }
            if let Some(ws) = ws {
                copies.ws.push(copy(ws)?);
            }
        }
        Ok(ListenerCopies(Arc::new(Mutex::new(Some(copies)))))
    }

    /// New copies of every socket, to send to another process; `None` once released.
    pub fn duplicate(&self) -> io::Result<Option<Listeners>> {
        let held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let Some(held) = held.as_ref() else {
            return Ok(None);
        };
        let copy = |all: &[std::net::TcpListener]| -> io::Result<Vec<std::net::TcpListener>> {
            all.iter().map(std::net::TcpListener::try_clone).collect()
        };
        Ok(Some(Listeners {
            tcp: copy(&held.tcp)?,
            ws: copy(&held.ws)?,
        }))
    }

    /// Closes the copies: from now on the reactors' own descriptors are the only ones here.
    pub fn release(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

fn apply_options(socket: &Socket, options: &SocketOptions) -> io::Result<()> {
    socket.set_tcp_nodelay(options.nodelay)?;
    if let Some(keepalive) = options.keepalive {
        let params = TcpKeepalive::new()
            .with_time(keepalive.idle)
            .with_interval(keepalive.interval)
            .with_retries(keepalive.probes);
        socket.set_tcp_keepalive(&params)?;
    }
    if let Some(timeout) = options.user_timeout {
        socket.set_tcp_user_timeout(Some(timeout))?;
    }
    if let Some(size) = options.recv_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    if let Some(size) = options.send_buffer {
        socket.set_send_buffer_size(size)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::config::Keepalive;
    use socket2::SockRef;
    use std::time::Duration;

    #[test]
    fn accepted_sockets_inherit_the_listener_options() {
        let options = SocketOptions {
            nodelay: true,
            keepalive: Some(Keepalive {
                idle: Duration::from_secs(25),
                interval: Duration::from_secs(7),
                probes: 4,
            }),
            user_timeout: Some(Duration::from_millis(54_000)),
            recv_buffer: None,
            send_buffer: None,
            backlog: 16,
        };
        let listener = bind_listener("127.0.0.1:0".parse().unwrap(), &options).unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let accepted = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        let sock = SockRef::from(&accepted);
        assert!(sock.tcp_nodelay().unwrap());
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.tcp_keepalive_time().unwrap(), Duration::from_secs(25));
        assert_eq!(
            sock.tcp_keepalive_interval().unwrap(),
            Duration::from_secs(7)
        );
        assert_eq!(sock.tcp_keepalive_retries().unwrap(), 4);
        assert_eq!(
            sock.tcp_user_timeout().unwrap(),
            Some(Duration::from_millis(54_000))
        );
    }

    #[test]
    fn two_listeners_share_a_port() {
        let options = SocketOptions::default();
        let first = bind_listener("127.0.0.1:0".parse().unwrap(), &options).unwrap();
        let addr = first.local_addr().unwrap();
        let second =
            bind_listener(addr, &options).expect("SO_REUSEPORT lets a second reactor bind");
        assert_eq!(second.local_addr().unwrap(), addr);
    }
}
