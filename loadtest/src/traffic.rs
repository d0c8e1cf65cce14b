//! `Traffic`: what a ready connection sends and how it reads what comes back, per scenario.
//! Every timed message carries `[send time µs u64][sender index u32]` at the front of its
//! body (or echo payload), so latency needs no per-message state: an echo is timed on its
//! return, a chat or group message at each recipient. The heartbeat PING carries its send
//! time in its `seq`, and so does a SEND or GROUP_SEND, whose response (the ack) is timed by it.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use switchboard::logic::token::{mint, unix_now_secs};
use switchboard_codec::packet::PacketHeader;
use switchboard_protocol::{Push, Request, ResponseBody, ServerPacket, Text};

use crate::config::{RunConfig, Scenario};
use crate::conn::{self, Conn, Ctx, Kind, State};
use crate::link;
use switchboard_codec::client_link::LinkEvent;

/// The command of echo packets on framed TCP (an echo server sends any packet back as is).
const ECHO_COMMAND: u16 = 1;
/// Timestamp and sender index: the smallest timed body.
pub const MIN_SIZE: usize = 12;
const CLIENT_VERSION: &str = "switchboard-loadtest/0.1";
const DEVICE: &str = "loadtest";
const TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// Scenario state shared by the connections of one engine.
pub struct Traffic {
    /// Group ids by group index, once each group's owner has created it.
    groups: Vec<Option<u64>>,
    next_client_msg_id: u64,
    /// A request packet being built (scratch).
    packet: BytesMut,
    /// A body or echo payload being built (scratch).
    body: Vec<u8>,
}

impl Traffic {
    /// The state for `config`'s scenario.
    pub fn new(config: &RunConfig) -> Traffic {
        let groups = match config.scenario {
            Scenario::Group => config.conns.div_ceil(config.group_size.max(2)),
            _ => 0,
        };
        Traffic {
            groups: vec![None; groups],
            next_client_msg_id: 1,
            packet: BytesMut::new(),
            body: Vec::new(),
        }
    }
}

/// The user id of connection `index`.
pub fn user_id(config: &RunConfig, index: u32) -> String {
    format!("{}{index}", config.user_prefix)
}

/// The members of the group connection `index` belongs to: `(group, first index, count)`.
fn group_of(config: &RunConfig, index: u32) -> (usize, u32, u32) {
    let size = config.group_size.max(2) as u32;
    let group = index / size;
    let first = group * size;
    let count = size.min(config.conns as u32 - first);
    (group as usize, first, count)
}

/// Frames `packet` (a whole Switchboard packet) for `conn` into `ctx.out`.
fn push_packet(conn: &Conn, ctx: &mut Ctx) {
    let key = ctx.random();
    let packet = std::mem::take(&mut ctx.traffic.packet);
    conn.link.send(&packet, key, &mut ctx.out);
    ctx.traffic.packet = packet;
    ctx.traffic.packet.clear();
}

fn encode_request(conn: &Conn, ctx: &mut Ctx, seq: u32, request: &Request) -> Result<(), Kind> {
    request
        .encode(seq, &mut ctx.traffic.packet)
        .map_err(|_| "encode".to_string())?;
    push_packet(conn, ctx);
    Ok(())
}

/// Writes a timed body of `ctx.config.size` bytes into `ctx.traffic.body`.
fn timed_body(conn: &Conn, ctx: &mut Ctx) {
    let now = ctx.now_us();
    let body = &mut ctx.traffic.body;
    body.clear();
    body.extend_from_slice(&now.to_be_bytes());
    body.extend_from_slice(&conn.index.to_be_bytes());
    body.resize(ctx.config.size.max(MIN_SIZE), b'x');
}

/// The send time and sender index at the front of a timed body.
fn read_timed(body: &[u8]) -> Option<(u64, u32)> {
    let ts = u64::from_be_bytes(body.get(..8)?.try_into().ok()?);
    let sender = u32::from_be_bytes(body.get(8..12)?.try_into().ok()?);
    Some((ts, sender))
}

/// Queues one timed echo for an echo server: a packet on TCP, a raw binary message on WS.
fn send_echo(conn: &Conn, ctx: &mut Ctx) {
    timed_body(conn, ctx);
    let body = std::mem::take(&mut ctx.traffic.body);
    if conn.link_is_ws() {
        let key = ctx.random();
        conn.link.send(&body, key, &mut ctx.out);
    } else {
        let header = PacketHeader {
            command: ECHO_COMMAND,
            payload_len: body.len() as u32,
        };
        ctx.traffic.packet.extend_from_slice(&header.to_bytes());
        ctx.traffic.packet.extend_from_slice(&body);
        push_packet(conn, ctx);
    }
    ctx.traffic.body = body;
}

/// Sends LOGIN with a token minted for the connection's user.
pub fn login(conn: &mut Conn, ctx: &mut Ctx) -> Result<(), Kind> {
    let secret = ctx.config.jwt_secret.as_deref().unwrap_or_default();
    let user = user_id(&ctx.config, conn.index);
    let token = mint(secret, &user, Some(DEVICE), TOKEN_TTL, unix_now_secs())
        .map_err(|_| "mint".to_string())?;
    let request = Request::Login {
        token: Text::from(token),
        client_version: Text::from(CLIENT_VERSION),
    };
    encode_request(conn, ctx, 1, &request)
}

/// A heartbeat: PING to a chat server, a small timed echo to an echo server (none while the
/// echo scenario's own traffic keeps the connection busy). Counted only in `idle`.
pub fn heartbeat(conn: &mut Conn, ctx: &mut Ctx) -> Result<(), Kind> {
    let counted = ctx.config.scenario == Scenario::Idle;
    if ctx.config.ws_ping && conn.link_is_ws() {
        let now = ctx.now_us().to_be_bytes();
        let key = ctx.random();
        conn.link.send_ping(&now, key, &mut ctx.out);
    } else if ctx.config.logs_in() {
        let seq = ctx.now_us() as u32;
        encode_request(conn, ctx, seq, &Request::Ping)?;
    } else if counted {
        send_echo(conn, ctx);
    } else {
        return Ok(());
    }
    if counted {
        ctx.counters.sent += 1;
        ctx.counters.expected += 1;
    }
    Ok(())
}

/// A connection became ready: a group's owner creates its group; a late connection joins
/// an unpaced run already under way.
pub fn on_ready(conn: &mut Conn, ctx: &mut Ctx) -> Result<(), Kind> {
    if ctx.config.scenario == Scenario::Group {
        let (group, first, count) = group_of(&ctx.config, conn.index);
        if conn.index == first && ctx.traffic.groups.get(group).is_some() {
            let members = (first + 1..first + count)
                .map(|i| Text::from(user_id(&ctx.config, i)))
                .collect();
            let request = Request::GroupCreate {
                name: Text::from(format!("lt-group-{group}")),
                members,
            };
            encode_request(conn, ctx, group as u32, &request)?;
        }
    }
    if ctx.sending && ctx.config.rate <= 0.0 {
        fill_window(conn, ctx)?;
    }
    Ok(())
}

/// Sends until the connection's window is full (or it has nothing to send).
pub fn fill_window(conn: &mut Conn, ctx: &mut Ctx) -> Result<(), Kind> {
    while send_one(conn, ctx)? {}
    Ok(())
}

/// Sends one scenario message if the connection may; `false` if it may not now.
pub fn send_one(conn: &mut Conn, ctx: &mut Ctx) -> Result<bool, Kind> {
    if !ctx.sending || conn.state != State::Ready || conn.inflight >= ctx.config.inflight.max(1) {
        return Ok(false);
    }
    let recipients = match ctx.config.scenario {
        Scenario::Idle => return Ok(false),
        Scenario::Echo if !ctx.config.logs_in() => {
            send_echo(conn, ctx);
            1
        }
        Scenario::Echo | Scenario::Chat => {
            let peer = conn.index ^ 1;
            if peer as usize >= ctx.config.conns {
                return Ok(false);
            }
            timed_body(conn, ctx);
            let request = Request::Send {
                to: Text::from(user_id(&ctx.config, peer)),
                client_msg_id: next_client_msg_id(ctx),
                body: Bytes::copy_from_slice(&ctx.traffic.body),
            };
            // The seq carries the send time: the response (the ack) is timed by it.
            let seq = ctx.now_us() as u32;
            encode_request(conn, ctx, seq, &request)?;
            1
        }
        Scenario::Group => {
            let (group, _, count) = group_of(&ctx.config, conn.index);
            let Some(Some(group_id)) = ctx.traffic.groups.get(group).copied() else {
                return Ok(false);
            };
            if count < 2 {
                return Ok(false);
            }
            timed_body(conn, ctx);
            let request = Request::GroupSend {
                group_id,
                client_msg_id: next_client_msg_id(ctx),
                body: Bytes::copy_from_slice(&ctx.traffic.body),
            };
            let seq = ctx.now_us() as u32;
            encode_request(conn, ctx, seq, &request)?;
            u64::from(count - 1)
        }
    };
    conn.inflight += 1;
    ctx.counters.sent += 1;
    ctx.counters.expected += recipients;
    Ok(true)
}

fn next_client_msg_id(ctx: &mut Ctx) -> u64 {
    let id = ctx.traffic.next_client_msg_id;
    ctx.traffic.next_client_msg_id += 1;
    id
}

/// Handles one event from the server (the upgrade is the engine's).
pub fn on_incoming(conn: &mut Conn, ctx: &mut Ctx, event: LinkEvent) -> Result<(), Kind> {
    match event {
        LinkEvent::Upgraded(_) | LinkEvent::Ping(_) => Ok(()),
        LinkEvent::Close(frame) => Err(link::close_kind(frame.as_ref())),
        LinkEvent::Text(_) => Err("ws_text".into()),
        LinkEvent::Pong(payload) => {
            if ctx.config.scenario == Scenario::Idle {
                if let Ok(sent) = <[u8; 8]>::try_from(&payload[..]) {
                    let latency = ctx.now_us().saturating_sub(u64::from_be_bytes(sent));
                    ctx.counters.record_receipt(latency);
                }
            }
            Ok(())
        }
        LinkEvent::Binary(payload) => on_echo(conn, ctx, &payload),
        LinkEvent::Packet(packet) if !ctx.config.logs_in() => on_echo(conn, ctx, &packet.payload),
        LinkEvent::Packet(packet) => match ServerPacket::decode(packet.command, packet.payload) {
            Ok(ServerPacket::Response(response)) => on_response(conn, ctx, response),
            Ok(ServerPacket::Push(Push::Message(message))) => {
                if let Some((ts, sender)) = read_timed(&message.body) {
                    if sender != conn.index {
                        let latency = ctx.now_us().saturating_sub(ts);
                        ctx.counters.record_receipt(latency);
                    }
                }
                Ok(())
            }
            Ok(ServerPacket::Push(Push::Kicked { reason, .. })) => {
                Err(format!("kicked_{}", reason.code()))
            }
            // A draining server's suggestion; its KICKED follows and ends the connection.
            Ok(ServerPacket::Push(Push::ReconnectAfter { .. })) => Ok(()),
            Err(e) if e.is_unknown_push() => Ok(()),
            Err(_) => Err("bad_packet".into()),
        },
    }
}

fn on_echo(conn: &mut Conn, ctx: &mut Ctx, payload: &[u8]) -> Result<(), Kind> {
    let Some((ts, _)) = read_timed(payload) else {
        return Err("bad_echo".into());
    };
    ctx.counters.record_receipt(ctx.now_us().saturating_sub(ts));
    conn.inflight = conn.inflight.saturating_sub(1);
    if ctx.sending && ctx.config.rate <= 0.0 {
        fill_window(conn, ctx)?;
    }
    Ok(())
}

fn on_response(
    conn: &mut Conn,
    ctx: &mut Ctx,
    response: switchboard_protocol::Response,
) -> Result<(), Kind> {
    match (&response.result, conn.state) {
        (Ok(ResponseBody::Login(_)), State::LoggingIn) => conn::ready(conn, ctx),
        (Err(status), State::LoggingIn) => Err(format!("login_{status}")),
        (Ok(ResponseBody::Pong(_)), _) => {
            if ctx.config.scenario == Scenario::Idle {
                let latency = (ctx.now_us() as u32).wrapping_sub(response.seq);
                ctx.counters.record_receipt(u64::from(latency));
            }
            Ok(())
        }
        (Ok(ResponseBody::GroupCreate(created)), _) => {
            if let Some(slot) = ctx.traffic.groups.get_mut(response.seq as usize) {
                *slot = Some(created.group_id);
            }
            Ok(())
        }
        (Err(status), _) if response.command == 0x0040 => Err(format!("group_create_{status}")),
        (result, _) if response.command == 0x0020 || response.command == 0x0021 => {
            conn.inflight = conn.inflight.saturating_sub(1);
            if result.is_ok() {
                let latency = (ctx.now_us() as u32).wrapping_sub(response.seq);
                ctx.counters.record_ack(u64::from(latency));
            }
            if let Err(status) = result {
                // Refused (BUSY, TOO_LARGE...): nothing will be delivered for it.
                let recipients = if response.command == 0x0021 {
                    u64::from(group_of(&ctx.config, conn.index).2.saturating_sub(1))
                } else {
                    1
                };
                ctx.counters.expected = ctx.counters.expected.saturating_sub(recipients);
                *ctx.counters.refused.entry(status.to_string()).or_default() += 1;
            }
            if ctx.sending && ctx.config.rate <= 0.0 {
                fill_window(conn, ctx)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::Target;

    fn config(conns: usize, group_size: usize) -> RunConfig {
        let mut c = RunConfig::new(Scenario::Group, Target::parse("tcp://127.0.0.1:9").unwrap());
        c.conns = conns;
        c.group_size = group_size;
        c
    }

    #[test]
    fn groups_partition_the_connections_and_the_last_is_smaller() {
        let c = config(25, 10);
        assert_eq!(group_of(&c, 0), (0, 0, 10));
        assert_eq!(group_of(&c, 19), (1, 10, 10));
        assert_eq!(group_of(&c, 24), (2, 20, 5));
        assert_eq!(Traffic::new(&c).groups.len(), 3);
    }

    #[test]
    fn timed_bodies_round_trip() {
        let mut body = 123_456u64.to_be_bytes().to_vec();
        body.extend_from_slice(&7u32.to_be_bytes());
        body.extend_from_slice(b"pad");
        assert_eq!(read_timed(&body), Some((123_456, 7)));
        assert_eq!(read_timed(&body[..11]), None);
    }

    #[test]
    fn user_ids_carry_the_prefix() {
        let mut c = config(2, 2);
        c.user_prefix = "w3-".into();
        assert_eq!(user_id(&c, 42), "w3-42");
    }
}
