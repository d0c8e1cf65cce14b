//! One connection as its reactor holds it: socket, lifecycle phase, protocol state, and the
//! bytes of an unfinished frame, if any.
//!
//! Invariants: `inbound` is `Some` only while it holds the start of a frame (an idle
//! connection holds no read buffer); `outgoing` holds no queue while idle; the handler is told
//! of the end of an admitted connection exactly once (`admitted` is cleared when it is).

use std::net::SocketAddr;

use bytes::BytesMut;
use mio::net::TcpStream;
use switchboard_codec::proxy::ProxyHeader;
use switchboard_codec::ws::handshake::ServerHandshake;
use switchboard_codec::ws::{MessageReader, Server};

use super::control::{ControlLimit, ControlRate};
use super::handler::Transport;
use super::outgoing::Outgoing;

/// Where a connection is in its life. Each phase gives the connection's one timer its
/// meaning: the handshake deadline, the read-wait (heartbeat), or the close linger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// `--proxy-protocol`: waiting for the PROXY header that must open the connection, under
    /// the handshake deadline. Nothing else is read and the handler has not been asked yet.
    ProxyHeader,
    /// WebSocket: waiting for the complete upgrade request.
    Handshake,
    /// Serving messages.
    Open,
    /// WebSocket: we sent a close frame and read on until the peer's close frame arrives.
    AwaitingCloseReply,
    /// Not reading any more; writing what is queued, then FIN.
    Flushing,
    /// FIN sent; discarding input until the peer's FIN, so the kernel never answers our last
    /// bytes with a reset.
    Lingering,
}

/// The per-transport parser state.
pub(crate) enum Protocol {
    /// Before the PROXY header: the codec's parser keeps no state between reads (the bytes so
    /// far wait in `inbound`), so this needs none either.
    ProxyHeader,
    /// Framed packets; the reactor's shared `PacketDecoder` needs no per-connection state.
    Tcp,
    /// WebSocket before the 101: the incremental request parser (boxed: short-lived).
    WsHandshake(Box<ServerHandshake>),
    /// WebSocket after the 101: frames, reassembly and UTF-8 state.
    Ws(MessageReader<Server>),
}

pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    pub(crate) generation: u32,
    /// Timer tick of the last successful read (the heartbeat needs no timer operation per read).
    pub(crate) last_read: u32,
    pub(crate) phase: Phase,
    pub(crate) transport: Transport,
    /// The handler accepted it and has not yet been told it ended.
    pub(crate) admitted: bool,
    /// Already in this pass's list of connections to flush.
    pub(crate) dirty: bool,
    /// WebSocket control frames it may still send.
    pub(crate) control: ControlRate,
    /// Boxed: a `BytesMut` is 32 bytes, and most connections are idle most of the time.
    pub(crate) inbound: Option<Box<BytesMut>>,
    pub(crate) outgoing: Outgoing,
    pub(crate) protocol: Protocol,
    pub(crate) peer: SocketAddr,
}

impl Conn {
    pub(crate) fn new(
        stream: TcpStream,
        peer: SocketAddr,
        transport: Transport,
        generation: u32,
        now: u32,
        control: ControlLimit,
        proxy_header: bool,
    ) -> Conn {
        let (phase, protocol) = if proxy_header {
            (Phase::ProxyHeader, Protocol::ProxyHeader)
        } else {
            first_phase(transport)
        };
        Conn {
            stream,
            generation,
            last_read: now,
            phase,
            transport,
            admitted: false,
            dirty: false,
            control: ControlRate::new(control, now),
            inbound: None,
            outgoing: Outgoing::default(),
            protocol,
            peer,
        }
    }

    /// Every byte the server holds for this connection: the write backlog, the unfinished
    /// inbound frame and the fragments of an unfinished message. (This pass's pushes are not
    /// counted: they are bounded by the per-pass read budget and gone by the end of the pass.)
    pub(crate) fn held_bytes(&self) -> usize {
        let inbound = self.inbound.as_ref().map_or(0, |b| b.capacity());
        let reassembly = match &self.protocol {
            Protocol::Ws(reader) => reader.held_bytes(),
            Protocol::ProxyHeader | Protocol::Tcp | Protocol::WsHandshake(_) => 0,
        };
        self.outgoing.backlog_bytes() + inbound + reassembly
    }

    /// Whether input still means something (as opposed to being discarded while closing).
    pub(crate) fn reads_frames(&self) -> bool {
        matches!(
            self.phase,
            Phase::ProxyHeader | Phase::Handshake | Phase::Open | Phase::AwaitingCloseReply
        )
    }

    /// Ends the PROXY phase with the `header` that opened the connection: the client it names
    /// becomes the peer (a LOCAL or UNKNOWN header keeps the real one, as the spec asks), and
    /// the transport's own first phase begins. Returns the peer before the header, the
    /// balancer's address for a proxied connection.
    pub(crate) fn proxy_header_read(&mut self, header: ProxyHeader) -> SocketAddr {
        let real = self.peer;
        if let ProxyHeader::Proxied { source, .. } = header {
            self.peer = source;
        }
        (self.phase, self.protocol) = first_phase(self.transport);
        real
    }
}

/// Where a connection of `transport` starts once any PROXY header is read.
fn first_phase(transport: Transport) -> (Phase, Protocol) {
    match transport {
        Transport::Tcp => (Phase::Open, Protocol::Tcp),
        Transport::WebSocket => (
            Phase::Handshake,
            Protocol::WsHandshake(Box::new(ServerHandshake::new())),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A million of these live in one process: keep an eye on the size. (152 until the
    /// control-frame bucket took 8 bytes: 8 MB per million connections, against a ping flood
    /// that cost hundreds of MiB.)
    #[test]
    fn a_connection_stays_small() {
        let size = std::mem::size_of::<Conn>();
        assert!(size <= 160, "Conn grew to {size} bytes");
    }
}
