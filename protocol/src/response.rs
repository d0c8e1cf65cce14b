//! Responses: `seq u32 | status u16 | body`, under the request's command with 0x8000 set.
//!
//! Only an OK response carries a body, and which body is fixed by the command, so
//! `ResponseBody` names the command itself: a body can never go out under the wrong one.
//! Encoders write whole packets; on error they leave the destination as it was.

use bytes::BytesMut;

use crate::limits::{MAX_DEVICE_LEN, MAX_SYNC_FETCH_IDS, MAX_SYNC_INDEX_LIMIT};
use crate::push::MESSAGE_MIN_LEN;
use crate::wire::{write_packet, ListField, Reader, StrField, Writer};
use crate::{ChatMessage, Command, DecodeError, EncodeError, Status, Text, RESPONSE_BIT};

const LOGIN_USER: StrField = StrField::user_id("login_ok.user");
const LOGIN_DEVICE: StrField = StrField::new("login_ok.device", 1, MAX_DEVICE_LEN);
const INDEX_IDS: ListField = ListField {
    name: "sync_index_ok.ids",
    max: MAX_SYNC_INDEX_LIMIT as usize,
    min_item_len: 8,
};
const LIST_IDS: ListField = ListField {
    name: "sync_list_ok.ids",
    max: MAX_SYNC_INDEX_LIMIT as usize,
    min_item_len: 8,
};
const MESSAGES: ListField = ListField {
    name: "sync_fetch_ok.messages",
    max: MAX_SYNC_FETCH_IDS,
    min_item_len: MESSAGE_MIN_LEN,
};
const DETAIL_NAME: StrField = StrField::group_name("group_detail_ok.name");
const DETAIL_OWNER: StrField = StrField::user_id("group_detail_ok.owner");
const DETAIL_MEMBERS: ListField = ListField {
    name: "group_detail_ok.members",
    max: u16::MAX as usize,
    min_item_len: 3,
};
const DETAIL_MEMBER: StrField = StrField::user_id("group_detail_ok.members");

/// PING's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PongOk {
    /// The server's clock, Unix milliseconds.
    pub server_time_ms: u64,
}

/// LOGIN's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginOk {
    /// The user id (the token's `sub`).
    pub user: Text,
    /// The device kind (the token's `dev`, or "default").
    pub device: Text,
    /// The server's clock, Unix milliseconds.
    pub server_time_ms: u64,
    /// The server closes a connection silent for this long; PING at least every half of it.
    pub idle_timeout_ms: u32,
    /// The longest message body the server accepts, in bytes.
    pub max_body: u32,
}

/// SEND's and GROUP_SEND's body, sent once the message is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendOk {
    /// The message's id.
    pub msg_id: u64,
    /// When the server accepted it, Unix milliseconds.
    pub server_time_ms: u64,
}

/// SYNC_INDEX's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncIndexOk {
    /// Message ids, ascending, at most 500.
    pub ids: Vec<u64>,
    /// Whether more ids follow the last one.
    pub more: bool,
}

/// SYNC_LIST's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncListOk {
    /// Message ids in inbox order (the order the server committed them), at most 500.
    pub ids: Vec<u64>,
    /// Whether more entries follow the last one.
    pub more: bool,
    /// The cursor after the last entry listed (or the cursor the listing started from, when
    /// nothing was listed): `after` for the next page, `upto` for SYNC_CONFIRM. Opaque.
    pub cursor: u64,
}

/// SYNC_FETCH's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncFetchOk {
    /// How many of the requested ids, from the front, this response covers; ask again for the
    /// rest. Fewer than requested when the next message would not fit in the packet.
    pub covered: u16,
    /// The messages of the covered ids, in request order; unknown, purged or foreign ids are
    /// skipped.
    pub messages: Vec<ChatMessage>,
}

impl SyncFetchOk {
    /// The payload bytes of an OK SYNC_FETCH response with no messages (seq, status, covered,
    /// count). Each message adds its `ChatMessage::encoded_len`; the server stops before the
    /// payload would pass the packet maximum.
    pub const EMPTY_PAYLOAD_LEN: usize = 4 + 2 + 2 + 2;
}

/// GROUP_CREATE's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCreated {
    /// The new group's id.
    pub group_id: u64,
}

/// GROUP_DETAIL's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDetailOk {
    /// The group's name.
    pub name: Text,
    /// The owner's user id (also listed in `members`).
    pub owner: Text,
    /// Every member's user id.
    pub members: Vec<Text>,
}

/// The body of an OK response, by the command it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseBody {
    /// PING -> PONG.
    Pong(PongOk),
    /// LOGIN.
    Login(LoginOk),
    /// LOGOUT (empty).
    Logout,
    /// SEND.
    Send(SendOk),
    /// GROUP_SEND.
    GroupSend(SendOk),
    /// SYNC_INDEX.
    SyncIndex(SyncIndexOk),
    /// SYNC_FETCH.
    SyncFetch(SyncFetchOk),
    /// SYNC_ACK (empty).
    SyncAck,
    /// SYNC_LIST.
    SyncList(SyncListOk),
    /// SYNC_CONFIRM (empty).
    SyncConfirm,
    /// GROUP_CREATE.
    GroupCreate(GroupCreated),
    /// GROUP_JOIN (empty).
    GroupJoin,
    /// GROUP_QUIT (empty).
    GroupQuit,
    /// GROUP_DETAIL.
    GroupDetail(GroupDetailOk),
}

impl ResponseBody {
    /// The request command this body answers.
    pub fn command(&self) -> Command {
        match self {
            ResponseBody::Pong(_) => Command::Ping,
            ResponseBody::Login(_) => Command::Login,
            ResponseBody::Logout => Command::Logout,
            ResponseBody::Send(_) => Command::Send,
            ResponseBody::GroupSend(_) => Command::GroupSend,
            ResponseBody::SyncIndex(_) => Command::SyncIndex,
            ResponseBody::SyncFetch(_) => Command::SyncFetch,
            ResponseBody::SyncAck => Command::SyncAck,
            ResponseBody::SyncList(_) => Command::SyncList,
            ResponseBody::SyncConfirm => Command::SyncConfirm,
            ResponseBody::GroupCreate(_) => Command::GroupCreate,
            ResponseBody::GroupJoin => Command::GroupJoin,
            ResponseBody::GroupQuit => Command::GroupQuit,
            ResponseBody::GroupDetail(_) => Command::GroupDetail,
        }
    }

    /// Appends the whole OK response packet for the request `seq` to `dst`.
    pub fn encode(&self, seq: u32, dst: &mut BytesMut) -> Result<(), EncodeError> {
        write_packet(self.command().response_code(), dst, |w| {
            w.u32(seq);
            w.u16(Status::OK.code());
            self.write(w)
        })
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        match self {
            ResponseBody::Logout
            | ResponseBody::SyncAck
            | ResponseBody::SyncConfirm
            | ResponseBody::GroupJoin
            | ResponseBody::GroupQuit => {}
            ResponseBody::Pong(pong) => w.u64(pong.server_time_ms),
            ResponseBody::Login(login) => {
                w.text(LOGIN_USER, login.user.as_str())?;
                w.text(LOGIN_DEVICE, login.device.as_str())?;
                w.u64(login.server_time_ms);
                w.u32(login.idle_timeout_ms);
                w.u32(login.max_body);
            }
            ResponseBody::Send(ok) | ResponseBody::GroupSend(ok) => {
                w.u64(ok.msg_id);
                w.u64(ok.server_time_ms);
            }
            ResponseBody::SyncIndex(index) => {
                w.u64_list(INDEX_IDS, &index.ids)?;
                w.bool(index.more);
            }
            ResponseBody::SyncList(list) => {
                w.u64_list(LIST_IDS, &list.ids)?;
                w.bool(list.more);
                w.u64(list.cursor);
            }
            ResponseBody::SyncFetch(fetch) => {
                w.u16(fetch.covered);
                w.count(MESSAGES, fetch.messages.len())?;
                for message in &fetch.messages {
                    message.write(w)?;
                }
            }
            ResponseBody::GroupCreate(created) => w.u64(created.group_id),
            ResponseBody::GroupDetail(detail) => {
                w.text(DETAIL_NAME, detail.name.as_str())?;
                w.text(DETAIL_OWNER, detail.owner.as_str())?;
                w.text_list(DETAIL_MEMBERS, DETAIL_MEMBER, &detail.members)?;
            }
        }
        Ok(())
    }

    pub(crate) fn read(command: Command, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(match command {
            Command::Ping => ResponseBody::Pong(PongOk {
                server_time_ms: r.u64("pong.server_time_ms")?,
            }),
            Command::Login => ResponseBody::Login(LoginOk {
                user: r.text(LOGIN_USER)?,
                device: r.text(LOGIN_DEVICE)?,
                server_time_ms: r.u64("login_ok.server_time_ms")?,
                idle_timeout_ms: r.u32("login_ok.idle_timeout_ms")?,
                max_body: r.u32("login_ok.max_body")?,
            }),
            Command::Logout => ResponseBody::Logout,
            Command::Send => ResponseBody::Send(read_send_ok(r)?),
            Command::GroupSend => ResponseBody::GroupSend(read_send_ok(r)?),
            Command::SyncIndex => ResponseBody::SyncIndex(SyncIndexOk {
                ids: r.u64_list(INDEX_IDS)?,
                more: r.bool("sync_index_ok.more")?,
            }),
            Command::SyncFetch => {
                let covered = r.u16("sync_fetch_ok.covered")?;
                let count = r.count(MESSAGES)?;
                let mut messages = Vec::with_capacity(count);
                for _ in 0..count {
                    messages.push(ChatMessage::read(r)?);
                }
                ResponseBody::SyncFetch(SyncFetchOk { covered, messages })
            }
            Command::SyncAck => ResponseBody::SyncAck,
            Command::SyncList => ResponseBody::SyncList(SyncListOk {
                ids: r.u64_list(LIST_IDS)?,
                more: r.bool("sync_list_ok.more")?,
                cursor: r.u64("sync_list_ok.cursor")?,
            }),
            Command::SyncConfirm => ResponseBody::SyncConfirm,
            Command::GroupCreate => ResponseBody::GroupCreate(GroupCreated {
                group_id: r.u64("group_created.group_id")?,
            }),
            Command::GroupJoin => ResponseBody::GroupJoin,
            Command::GroupQuit => ResponseBody::GroupQuit,
            Command::GroupDetail => ResponseBody::GroupDetail(GroupDetailOk {
                name: r.text(DETAIL_NAME)?,
                owner: r.text(DETAIL_OWNER)?,
                members: r.text_list(DETAIL_MEMBERS, DETAIL_MEMBER)?,
            }),
        })
    }
}

fn read_send_ok(r: &mut Reader) -> Result<SendOk, DecodeError> {
    Ok(SendOk {
        msg_id: r.u64("send_ok.msg_id")?,
        server_time_ms: r.u64("send_ok.server_time_ms")?,
    })
}

/// Appends a body-less response packet: `request_command | 0x8000`, `seq`, `status`.
///
/// For refusals (any status but OK). `request_command` is the raw number, so an unknown
/// command can be answered too.
pub fn encode_error(
    request_command: u16,
    seq: u32,
    status: Status,
    dst: &mut BytesMut,
) -> Result<(), EncodeError> {
    write_packet(request_command | RESPONSE_BIT, dst, |w| {
        w.u32(seq);
        w.u16(status.code());
        Ok(())
    })
}

/// A decoded response, as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The request's command number (the packet's command without 0x8000).
    pub command: u16,
    /// The request's seq, echoed (0 if the server could not read it).
    pub seq: u32,
    /// The body if the status is OK, or the refusal.
    pub result: Result<ResponseBody, Status>,
}

impl Response {
    /// Appends the whole response packet to `dst`. An OK result goes out under its body's
    /// command (`self.command` is not consulted), so a body cannot be sent under another one.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        match &self.result {
            Ok(body) => body.encode(self.seq, dst),
            Err(status) => encode_error(self.command, self.seq, *status, dst),
        }
    }
}

#[cfg(test)]
#[path = "response_tests.rs"]
mod tests;
