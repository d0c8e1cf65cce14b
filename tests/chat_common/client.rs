//! A blocking chat client for the tests: the wire protocol of docs/protocol.md over framed TCP
//! or WebSocket (one binary message per packet), built on the protocol crate, the codec's
//! `ClientLink` (pongs and the close echo included) and the sockets of `tests/shared`. Packets read
//! while waiting for something else are held, in order, for later calls, so responses are
//! matched by `seq` and pushes are never lost. Every read has a deadline; a server that sends
//! something the protocol does not allow fails the test with a panic.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use switchboard_codec::client_link::{ClientLink, LinkEvent, WsMessages};
use switchboard_codec::packet::HEADER_LEN;
use switchboard_codec::ws::handshake::ClientRequest;
use switchboard_codec::ws::{CloseCode, OpCode};
use switchboard_protocol::{
    ChatMessage, GroupDetailOk, LoginOk, Push, Request, Response, ResponseBody, SendOk,
    ServerPacket, Status, SyncFetchOk, SyncIndexOk, SyncListOk, Text,
};

use super::shared::socket::connect;
use super::shared::ws::{mask_key, upgrade, WsClient};
use super::{Transport, IO_TIMEOUT};

#[allow(unused_imports)] // not every test binary names it
pub use super::shared::packet;

/// How the server ended a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closure {
    /// The code of the server's WebSocket close frame (`None` on TCP, or an empty close).
    pub ws_close: Option<CloseCode>,
    /// The stream ended with a reset rather than a FIN.
    pub reset: bool,
    /// Bytes of an incomplete packet left when the stream ended.
    pub leftover: usize,
}

/// What reading a connection found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// One whole packet.
    Packet(ServerPacket),
    /// The server closed the connection (after every packet before it was returned).
    Closed(Closure),
    /// Nothing arrived within the wait.
    Silent,
}

/// A connected client, logged in or not.
pub struct ChatClient {
    stream: TcpStream,
    transport: Transport,
    inbound: BytesMut,
    link: ClientLink,
    /// The server's close frame, once it came: nothing more is decoded after it.
    ws_close: Option<Option<CloseCode>>,
    ended: Option<Closure>,
    held: VecDeque<ServerPacket>,
    next_seq: u32,
    /// The longest packet received so far, header included (on WebSocket: the message).
    largest_packet: usize,
}

/// Packet payloads read by default: room for the largest the tests make the server send.
const MAX_PAYLOAD: u32 = 16 << 20;

/// A link for `transport` on a connection already upgraded (if WebSocket).
fn link(transport: Transport, max_payload: u32) -> ClientLink {
    match transport {
        Transport::Tcp => ClientLink::tcp(max_payload),
        Transport::Ws => ClientLink::ws_upgraded(WsMessages::Packets { max_payload }),
    }
}

impl ChatClient {
    /// Connects (and, over WebSocket, completes the upgrade); panics on failure.
    pub fn connect(transport: Transport, addr: SocketAddr) -> ChatClient {
        let mut stream = connect(addr);
        let (link, inbound) = match transport {
            Transport::Tcp => (link(transport, MAX_PAYLOAD), BytesMut::new()),
            Transport::Ws => {
                let host = addr.to_string();
                let request = ClientRequest::new(&host, "/");
                let messages = WsMessages::Packets {
                    max_payload: MAX_PAYLOAD,
                };
                // Bytes after the 101 are the server's first frames: they stay to be decoded.
                let (link, _, inbound) = upgrade(&mut stream, &request, messages);
                (link, inbound)
            }
        };
        ChatClient {
            stream,
            transport,
            inbound,
            link,
            ws_close: None,
            ended: None,
            held: VecDeque::new(),
            next_seq: 1,
            largest_packet: 0,
        }
    }

    /// Reads with the limits docs/protocol.md tells client authors to set for a server whose
    /// packet payloads are at most `max_packet`: that payload on TCP, and on WebSocket a
    /// message of that plus the 10-byte header. A larger packet from the server fails the test.
    pub fn with_documented_limit(mut self, max_packet: u32) -> ChatClient {
        self.link = link(self.transport, max_packet);
        self
    }

    /// The longest packet received so far, header included (on WebSocket: the whole message).
    pub fn largest_packet(&self) -> usize {
        self.largest_packet
    }

    /// The transport this client uses.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    // ---- writing --------------------------------------------------------------------------

    /// Writes raw bytes; fails once the server has closed the connection.
    pub fn send_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends one WebSocket frame (fin set, masked); only on WebSocket.
    pub fn send_ws(&mut self, opcode: OpCode, payload: &[u8]) -> io::Result<()> {
        assert_eq!(self.transport, Transport::Ws, "a WebSocket frame over TCP");
        self.send_bytes(&WsClient::frame(opcode, true, payload))
    }

    /// Sends `bytes` as what the transport carries packets in: as they are on TCP, one binary
    /// message on WebSocket. `bytes` need not be a valid packet.
    pub fn send_unit(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self.transport {
            Transport::Tcp => self.send_bytes(bytes),
            Transport::Ws => self.send_ws(OpCode::Binary, bytes),
        }
    }

    /// Sends whole packets back to back in one write (on WebSocket, one binary message each),
    /// so the server reads them at once.
    pub fn send_at_once(&mut self, packets: &[Vec<u8>]) {
        let bytes: Vec<u8> = match self.transport {
            Transport::Tcp => packets.concat(),
            Transport::Ws => packets
                .iter()
                .flat_map(|p| WsClient::frame(OpCode::Binary, true, p))
                .collect(),
        };
        self.send_bytes(&bytes).expect("send packets");
    }

    /// Sends one packet with any command and payload (well formed or not).
    pub fn send_packet(&mut self, command: u16, payload: &[u8]) {
        self.send_unit(&packet(command, payload))
            .expect("send a packet");
    }

    /// Sends `request` under the next sequence number and returns that number.
    pub fn send_request(&mut self, request: &Request) -> u32 {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.send_request_seq(seq, request);
        seq
    }

    /// Sends `request` under `seq`.
    pub fn send_request_seq(&mut self, seq: u32, request: &Request) {
        let mut bytes = BytesMut::new();
        request.encode(seq, &mut bytes).expect("encode a request");
        self.send_unit(&bytes).expect("send a request");
    }

    /// Sends LOGIN with `token` and returns its seq, without waiting.
    pub fn send_login(&mut self, token: &str) -> u32 {
        self.send_request(&Request::Login {
            token: Text::from(token),
            client_version: Text::from("chat-tests/1"),
        })
    }

    // ---- reading --------------------------------------------------------------------------

    /// The next packet (held ones first), the end of the connection, or silence after `within`.
    pub fn next_event(&mut self, within: Duration) -> Event {
        match self.held.pop_front() {
            Some(packet) => Event::Packet(packet),
            None => self.read_wire(Instant::now() + within),
        }
    }

    /// The response to `seq`, holding every other packet read meanwhile; panics if none comes.
    pub fn response(&mut self, seq: u32) -> Response {
        let found = self.held.iter().position(|p| is_response_to(p, seq));
        if let Some(index) = found {
            match self.held.remove(index) {
                Some(ServerPacket::Response(response)) => return response,
                other => unreachable!("held packet changed: {other:?}"),
            }
        }
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            match self.read_wire(deadline) {
                Event::Packet(ServerPacket::Response(r)) if r.seq == seq => return r,
                Event::Packet(other) => self.held.push_back(other),
                Event::Closed(closure) => {
                    panic!("closed before the response to seq {seq}: {closure:?}")
                }
                Event::Silent => panic!("no response to seq {seq} within {IO_TIMEOUT:?}"),
            }
        }
    }

    /// Sends `request` and waits for its answer: the body, or the refusal's status.
    pub fn call(&mut self, request: &Request) -> Result<ResponseBody, Status> {
        let command = request.command().code();
        let seq = self.send_request(request);
        let response = self.response(seq);
        assert_eq!(
            response.command, command,
            "the response's command is the request's"
        );
        response.result
    }

    /// The next push (held ones first), holding responses read meanwhile; `None` on silence
    /// or the end of the connection.
    pub fn next_push(&mut self, within: Duration) -> Option<Push> {
        let found = self
            .held
            .iter()
            .position(|p| matches!(p, ServerPacket::Push(_)));
        if let Some(index) = found {
            match self.held.remove(index) {
                Some(ServerPacket::Push(push)) => return Some(push),
                other => unreachable!("held packet changed: {other:?}"),
            }
        }
        let deadline = Instant::now() + within;
        loop {
            match self.read_wire(deadline) {
                Event::Packet(ServerPacket::Push(push)) => return Some(push),
                Event::Packet(other) => self.held.push_back(other),
                Event::Closed(_) | Event::Silent => return None,
            }
        }
    }

    /// The next push, which must be a MESSAGE.
    pub fn expect_message(&mut self) -> ChatMessage {
        match self.next_push(IO_TIMEOUT) {
            Some(Push::Message(message)) => message,
            other => panic!("expected a MESSAGE push, got {other:?}"),
        }
    }

    /// Checks no push is waiting: a PING round trip, since the server answers it after
    /// everything it already queued for this connection.
    pub fn assert_no_push(&mut self) {
        self.ping();
        let pushes: Vec<&ServerPacket> = self
            .held
            .iter()
            .filter(|p| matches!(p, ServerPacket::Push(_)))
            .collect();
        assert!(pushes.is_empty(), "unexpected pushes: {pushes:?}");
    }

    /// Reads until the server closes the connection and returns the packets that came first;
    /// panics if it is still open after `within`.
    pub fn expect_closed(&mut self, within: Duration) -> (Vec<ServerPacket>, Closure) {
        let mut before: Vec<ServerPacket> = self.held.drain(..).collect();
        let deadline = Instant::now() + within;
        loop {
            match self.read_wire(deadline) {
                Event::Packet(packet) => before.push(packet),
                Event::Closed(closure) => return (before, closure),
                Event::Silent => {
                    panic!("still open after {within:?}; packets meanwhile: {before:?}")
                }
            }
        }
    }

    /// Whether the connection is still open: a PING answered within [`IO_TIMEOUT`].
    pub fn is_open(&mut self) -> bool {
        let seq = self.send_request(&Request::Ping);
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            match self.read_wire(deadline) {
                Event::Packet(ServerPacket::Response(r)) if r.seq == seq => return true,
                Event::Packet(other) => self.held.push_back(other),
                Event::Closed(_) | Event::Silent => return false,
            }
        }
    }

    /// One packet off the wire: decoded from what is buffered, or read until `deadline`.
    fn read_wire(&mut self, deadline: Instant) -> Event {
        loop {
            if let Some(packet) = self.decode_buffered() {
                return Event::Packet(packet);
            }
            if let Some(closure) = &self.ended {
                return Event::Closed(closure.clone());
            }
            if !self.read_more(deadline) && self.ended.is_none() {
                return Event::Silent;
            }
        }
    }

    /// One read onto `inbound`: true if bytes came, false on the deadline or the end (which
    /// sets `ended`).
    fn read_more(&mut self, deadline: Instant) -> bool {
        let mut buf = [0u8; 64 << 10];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.stream
                .set_read_timeout(Some(left))
                .expect("read timeout");
            let end = |reset: bool, leftover: usize, ws_close: Option<Option<CloseCode>>| Closure {
                ws_close: ws_close.flatten(),
                reset,
                leftover,
            };
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.ended = Some(end(false, self.inbound.len(), self.ws_close));
                    return false;
                }
                Ok(n) => {
                    self.inbound.extend_from_slice(&buf[..n]);
                    return true;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    self.ended = Some(end(true, self.inbound.len(), self.ws_close));
                    return false;
                }
                Err(e) => panic!("read from the chat server failed: {e}"),
            }
        }
    }

    /// The next whole packet in `inbound`, if there is one. Pings are answered and the
    /// server's close is echoed, as a client must (the server then ends the stream).
    fn decode_buffered(&mut self) -> Option<ServerPacket> {
        loop {
            let mut replies = BytesMut::new();
            let event = self.link.read(&mut self.inbound, mask_key(), &mut replies);
            // The server may be gone already: what matters is what it sent.
            let _ = self.stream.write_all(&replies);
            match event {
                Ok(Some(LinkEvent::Packet(packet))) => {
                    self.largest_packet =
                        self.largest_packet.max(HEADER_LEN + packet.payload.len());
                    return Some(decode_server_packet(packet.command, packet.payload));
                }
                Ok(Some(LinkEvent::Close(frame))) => self.ws_close = Some(frame.map(|f| f.code)),
                Ok(Some(LinkEvent::Ping(_) | LinkEvent::Pong(_))) => {}
                Ok(Some(other)) => panic!("{other:?} on a chat connection"),
                Ok(None) => return None,
                Err(e) => panic!("the server broke the framing: {e}"),
            }
        }
    }

    // ---- requests -------------------------------------------------------------------------

    /// LOGIN with `token`.
    pub fn login(&mut self, token: &str) -> Result<LoginOk, Status> {
        let seq = self.send_login(token);
        match self.response(seq).result? {
            ResponseBody::Login(ok) => Ok(ok),
            other => panic!("LOGIN answered with {other:?}"),
        }
    }

    /// PING; returns the server's clock.
    pub fn ping(&mut self) -> u64 {
        match self.call(&Request::Ping) {
            Ok(ResponseBody::Pong(pong)) => pong.server_time_ms,
            other => panic!("PING answered with {other:?}"),
        }
    }

    /// SEND to `to`.
    pub fn send_direct(
        &mut self,
        to: &str,
        client_msg_id: u64,
        body: &[u8],
    ) -> Result<SendOk, Status> {
        match self.call(&direct(to, client_msg_id, body))? {
            ResponseBody::Send(ok) => Ok(ok),
            other => panic!("SEND answered with {other:?}"),
        }
    }

    /// GROUP_SEND to `group_id`.
    pub fn send_group(
        &mut self,
        group_id: u64,
        client_msg_id: u64,
        body: &[u8],
    ) -> Result<SendOk, Status> {
        let request = Request::GroupSend {
            group_id,
            client_msg_id,
            body: Bytes::copy_from_slice(body),
        };
        match self.call(&request)? {
            ResponseBody::GroupSend(ok) => Ok(ok),
            other => panic!("GROUP_SEND answered with {other:?}"),
        }
    }

    /// SYNC_INDEX; panics on a refusal.
    pub fn sync_index(&mut self, after: u64, limit: u16) -> SyncIndexOk {
        match self.call(&Request::SyncIndex { after, limit }) {
            Ok(ResponseBody::SyncIndex(index)) => index,
            other => panic!("SYNC_INDEX answered with {other:?}"),
        }
    }

    /// One SYNC_FETCH; panics on a refusal.
    pub fn sync_fetch(&mut self, ids: &[u64]) -> SyncFetchOk {
        match self.call(&Request::SyncFetch { ids: ids.to_vec() }) {
            Ok(ResponseBody::SyncFetch(fetch)) => fetch,
            other => panic!("SYNC_FETCH answered with {other:?}"),
        }
    }

    /// SYNC_ACK; panics on a refusal.
    pub fn sync_ack(&mut self, upto: u64) {
        match self.call(&Request::SyncAck { upto }) {
            Ok(ResponseBody::SyncAck) => {}
            other => panic!("SYNC_ACK answered with {other:?}"),
        }
    }

    /// SYNC_LIST: the ids after `after` (a cursor, 0 for the acknowledged position), or the
    /// refusal's status.
    pub fn try_sync_list(&mut self, after: u64, limit: u16) -> Result<SyncListOk, Status> {
        match self.call(&Request::SyncList { after, limit })? {
            ResponseBody::SyncList(list) => Ok(list),
            other => panic!("SYNC_LIST answered with {other:?}"),
        }
    }

    /// SYNC_LIST; panics on a refusal.
    pub fn sync_list(&mut self, after: u64, limit: u16) -> SyncListOk {
        self.try_sync_list(after, limit)
            .unwrap_or_else(|status| panic!("SYNC_LIST refused with {status:?}"))
    }

    /// SYNC_CONFIRM up to a cursor, or the refusal's status.
    pub fn try_sync_confirm(&mut self, upto: u64) -> Result<(), Status> {
        match self.call(&Request::SyncConfirm { upto })? {
            ResponseBody::SyncConfirm => Ok(()),
            other => panic!("SYNC_CONFIRM answered with {other:?}"),
        }
    }

    /// The messages of `ids`, fetched at most 100 at a time and again from `covered` on.
    pub fn fetch_all(&mut self, ids: &[u64]) -> Vec<ChatMessage> {
        let mut messages = Vec::new();
        for chunk in ids.chunks(100) {
            let mut from = 0;
            while from < chunk.len() {
                let fetch = self.sync_fetch(&chunk[from..]);
                assert!(
                    fetch.covered >= 1,
                    "SYNC_FETCH covered nothing of {chunk:?}"
                );
                from += usize::from(fetch.covered);
                messages.extend(fetch.messages);
            }
        }
        messages
    }

    /// A whole sync as docs/protocol.md §9 lays it out (SYNC_LIST pages of `limit` by cursor,
    /// fetch, SYNC_CONFIRM each page's cursor); returns every message fetched.
    pub fn sync_all_paged(&mut self, limit: u16) -> Vec<ChatMessage> {
        let mut all = Vec::new();
        let mut after = 0;
        for _ in 0..10_000 {
            let list = self.sync_list(after, limit);
            all.extend(self.fetch_all(&list.ids));
            if !list.ids.is_empty() {
                self.try_sync_confirm(list.cursor)
                    .expect("SYNC_CONFIRM of a listed cursor");
            }
            after = list.cursor;
            if !list.more {
                return all;
            }
            assert!(!list.ids.is_empty(), "SYNC_LIST: more = true with no ids");
        }
        panic!("a sync that never ends");
    }

    /// The legacy sync (SYNC_INDEX by msg_id, SYNC_ACK of each page's last id), as clients
    /// written before SYNC_LIST do it; returns every message fetched.
    pub fn sync_all_legacy(&mut self) -> Vec<ChatMessage> {
        let mut all = Vec::new();
        let mut after = 0;
        for _ in 0..10_000 {
            let index = self.sync_index(after, 500);
            all.extend(self.fetch_all(&index.ids));
            if let Some(&last) = index.ids.last() {
                self.sync_ack(last);
                after = last;
            }
            if !index.more {
                return all;
            }
            assert!(!index.ids.is_empty(), "SYNC_INDEX: more = true with no ids");
        }
        panic!("a sync that never ends");
    }

    /// [`sync_all_paged`](Self::sync_all_paged) with pages of 500.
    pub fn sync_all(&mut self) -> Vec<ChatMessage> {
        self.sync_all_paged(500)
    }

    /// Every message a sync would deliver, without acknowledging any.
    pub fn sync_peek(&mut self) -> Vec<ChatMessage> {
        let mut all = Vec::new();
        let mut after = 0;
        for _ in 0..10_000 {
            let list = self.sync_list(after, 500);
            all.extend(self.fetch_all(&list.ids));
            if !list.more {
                return all;
            }
            after = list.cursor;
        }
        panic!("a sync that never ends");
    }

    /// GROUP_CREATE; the new group's id.
    pub fn group_create(&mut self, name: &str, members: &[&str]) -> Result<u64, Status> {
        let request = Request::GroupCreate {
            name: Text::from(name),
            members: members.iter().map(|m| Text::from(*m)).collect(),
        };
        match self.call(&request)? {
            ResponseBody::GroupCreate(created) => Ok(created.group_id),
            other => panic!("GROUP_CREATE answered with {other:?}"),
        }
    }

    /// GROUP_JOIN.
    pub fn group_join(&mut self, group_id: u64) -> Result<(), Status> {
        match self.call(&Request::GroupJoin { group_id })? {
            ResponseBody::GroupJoin => Ok(()),
            other => panic!("GROUP_JOIN answered with {other:?}"),
        }
    }

    /// GROUP_QUIT.
    pub fn group_quit(&mut self, group_id: u64) -> Result<(), Status> {
        match self.call(&Request::GroupQuit { group_id })? {
            ResponseBody::GroupQuit => Ok(()),
            other => panic!("GROUP_QUIT answered with {other:?}"),
        }
    }

    /// GROUP_DETAIL.
    pub fn group_detail(&mut self, group_id: u64) -> Result<GroupDetailOk, Status> {
        match self.call(&Request::GroupDetail { group_id })? {
            ResponseBody::GroupDetail(detail) => Ok(detail),
            other => panic!("GROUP_DETAIL answered with {other:?}"),
        }
    }
}

/// A SEND request.
pub fn direct(to: &str, client_msg_id: u64, body: &[u8]) -> Request {
    Request::Send {
        to: Text::from(to),
        client_msg_id,
        body: Bytes::copy_from_slice(body),
    }
}

fn is_response_to(packet: &ServerPacket, seq: u32) -> bool {
    matches!(packet, ServerPacket::Response(r) if r.seq == seq)
}

fn decode_server_packet(command: u16, payload: Bytes) -> ServerPacket {
    ServerPacket::decode(command, payload)
        .unwrap_or_else(|e| panic!("the server sent a packet the protocol refuses: {e}"))
}
