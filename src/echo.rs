//! Echo mode: every WebSocket message comes back unchanged with its opcode, every framed TCP
//! packet comes back unchanged. It exercises the whole gateway (handshake, framing, close
//! handshake, heartbeats, backpressure) with no chat logic, for conformance suites and load
//! tests.

use crate::gateway::{Admission, ConnId, ConnInfo, Disconnect, Handler, Message, Outbox};

/// The echo handler; it keeps no state.
#[derive(Debug, Default, Clone, Copy)]
pub struct EchoHandler;

impl Handler for EchoHandler {
    fn open(&mut self, _out: &mut Outbox<'_>, _conn: ConnId, _info: &ConnInfo<'_>) -> Admission {
        Admission::ACCEPT
    }

    fn message(&mut self, out: &mut Outbox<'_>, conn: ConnId, message: Message) {
        out.send(conn, message);
    }

    fn disconnect(&mut self, _out: &mut Outbox<'_>, _conn: ConnId, _reason: &Disconnect) {}
}
