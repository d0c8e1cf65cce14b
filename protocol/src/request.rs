//! `Request`: what a client sends, decoded on the server and encoded by the SDK.
//!
//! Every request payload is `seq u32` then the command's fields. Decoding refuses a payload
//! that is not consumed exactly, and its error keeps the `seq` whenever one could be read, so
//! the server can answer even a malformed request on the client's own sequence number.

use bytes::{Bytes, BytesMut};

use crate::limits::{MAX_CLIENT_VERSION_LEN, MAX_SYNC_FETCH_IDS, MAX_TOKEN_LEN};
use crate::response::encode_error;
use crate::wire::{write_packet, ListField, Reader, StrField, Writer};
use crate::{Command, DecodeError, EncodeError, Status, Text};

const TOKEN: StrField = StrField::new("login.token", 1, MAX_TOKEN_LEN);
const CLIENT_VERSION: StrField = StrField::new("login.client_version", 0, MAX_CLIENT_VERSION_LEN);
const SEND_TO: StrField = StrField::user_id("send.to");
const FETCH_IDS: ListField = ListField {
    name: "sync_fetch.ids",
    max: MAX_SYNC_FETCH_IDS,
    min_item_len: 8,
};
const GROUP_NAME: StrField = StrField::group_name("group_create.name");
const MEMBERS: ListField = ListField {
    name: "group_create.members",
    max: u16::MAX as usize,
    min_item_len: 3,
};
const MEMBER: StrField = StrField::user_id("group_create.members");

/// A client's request, without its `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// 0x0001 PING: a heartbeat.
    Ping,
    /// 0x0010 LOGIN: authenticate this connection.
    Login {
        /// A JWT (HS256) whose `sub` is the user id, with `exp` and an optional `dev`.
        token: Text,
        /// Free text naming the client build, e.g. "sdk-rust/0.1"; may be empty.
        client_version: Text,
    },
    /// 0x0011 LOGOUT: end the session; the server answers, then closes.
    Logout,
    /// 0x0020 SEND: a direct message.
    Send {
        /// The recipient's user id.
        to: Text,
        /// Chosen by the sender, unique among its messages, reused when resending.
        client_msg_id: u64,
        /// The body, opaque to the server.
        body: Bytes,
    },
    /// 0x0021 GROUP_SEND: a message to a group the sender belongs to.
    GroupSend {
        /// The group.
        group_id: u64,
        /// As for `Send`.
        client_msg_id: u64,
        /// The body, opaque to the server.
        body: Bytes,
    },
    /// 0x0030 SYNC_INDEX: ids of stored messages after a position.
    SyncIndex {
        /// List ids greater than this and than the device kind's acknowledged position
        /// (0: from the acknowledged position).
        after: u64,
        /// Most ids wanted; 0 or over 500 means 500 (see `limits::sync_index_limit`).
        limit: u16,
    },
    /// 0x0031 SYNC_FETCH: stored messages by id (at most 100 ids).
    SyncFetch {
        /// The ids wanted, usually from SYNC_INDEX.
        ids: Vec<u64>,
    },
    /// 0x0032 SYNC_ACK: every message up to this id is stored on the device.
    SyncAck {
        /// The highest acknowledged message id.
        upto: u64,
    },
    /// 0x0033 SYNC_LIST: ids of the inbox's entries after a cursor, in inbox order.
    SyncList {
        /// A cursor from an earlier SYNC_LIST answer (opaque), or 0: from the device kind's
        /// acknowledged position. Entries at or before the acknowledged position are never
        /// listed either way.
        after: u64,
        /// Most ids wanted; 0 or over 500 means 500 (see `limits::sync_index_limit`).
        limit: u16,
    },
    /// 0x0034 SYNC_CONFIRM: every entry up to this cursor is stored on the device.
    SyncConfirm {
        /// A cursor from a SYNC_LIST answer.
        upto: u64,
    },
    /// 0x0040 GROUP_CREATE: a new group owned by the sender.
    GroupCreate {
        /// The group's name, 1..=64 bytes.
        name: Text,
        /// The initial members besides the sender (duplicates and the sender are ignored).
        members: Vec<Text>,
    },
    /// 0x0041 GROUP_JOIN: join a group.
    GroupJoin {
        /// The group.
        group_id: u64,
    },
    /// 0x0042 GROUP_QUIT: leave a group.
    GroupQuit {
        /// The group.
        group_id: u64,
    },
    /// 0x0043 GROUP_DETAIL: a group's name, owner and members.
    GroupDetail {
        /// The group.
        group_id: u64,
    },
}

/// Why a request could not be decoded, with what the server needs to answer it anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The command is not a request this crate knows (a response or push number included).
    /// Answered with UNKNOWN_COMMAND.
    #[error("unknown request command {command:#06x}")]
    UnknownCommand {
        /// The packet's command.
        command: u16,
        /// The payload's first four bytes, if it has them.
        seq: Option<u32>,
    },
    /// The payload does not parse. Answered with MALFORMED.
    #[error("malformed {} request: {error}", command.name())]
    Malformed {
        /// The request's command.
        command: Command,
        /// The request's seq, unless the payload is too short to hold one.
        seq: Option<u32>,
        /// What was wrong.
        error: DecodeError,
    },
}

impl RequestError {
    /// The packet's command number.
    pub fn command_code(&self) -> u16 {
        match *self {
            RequestError::UnknownCommand { command, .. } => command,
            RequestError::Malformed { command, .. } => command.code(),
        }
    }

    /// The seq to answer with: the request's, or 0 when none could be read.
    pub fn seq(&self) -> u32 {
        match *self {
            RequestError::UnknownCommand { seq, .. } | RequestError::Malformed { seq, .. } => {
                seq.unwrap_or(0)
            }
        }
    }

    /// The status to answer with: UNKNOWN_COMMAND or MALFORMED.
    pub fn status(&self) -> Status {
        match self {
            RequestError::UnknownCommand { .. } => Status::UNKNOWN_COMMAND,
            RequestError::Malformed { .. } => Status::MALFORMED,
        }
    }

    /// Appends the whole error response packet (`command | 0x8000`, seq, status) to `dst`.
    pub fn encode_response(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        encode_error(self.command_code(), self.seq(), self.status(), dst)
    }
}

impl Request {
    /// The request's command.
    pub fn command(&self) -> Command {
        match self {
            Request::Ping => Command::Ping,
            Request::Login { .. } => Command::Login,
            Request::Logout => Command::Logout,
            Request::Send { .. } => Command::Send,
            Request::GroupSend { .. } => Command::GroupSend,
            Request::SyncIndex { .. } => Command::SyncIndex,
            Request::SyncFetch { .. } => Command::SyncFetch,
            Request::SyncAck { .. } => Command::SyncAck,
            Request::SyncList { .. } => Command::SyncList,
            Request::SyncConfirm { .. } => Command::SyncConfirm,
            Request::GroupCreate { .. } => Command::GroupCreate,
            Request::GroupJoin { .. } => Command::GroupJoin,
            Request::GroupQuit { .. } => Command::GroupQuit,
            Request::GroupDetail { .. } => Command::GroupDetail,
        }
    }

    /// Decodes the payload of a packet with `command`: its seq and the request.
    ///
    /// `bytes` and `str` fields share `payload`'s buffer; only `SyncFetch` and `GroupCreate`
    /// allocate (their lists).
    pub fn decode(command: u16, payload: Bytes) -> Result<(u32, Request), RequestError> {
        let Some(known) = Command::from_code(command) else {
            let seq = payload.first_chunk::<4>().map(|b| u32::from_be_bytes(*b));
            return Err(RequestError::UnknownCommand { command, seq });
        };
        let mut r = Reader::new(payload);
        let malformed = |seq, error| RequestError::Malformed {
            command: known,
            seq,
            error,
        };
        let seq = r.u32("seq").map_err(|error| malformed(None, error))?;
        let request = Self::read(known, &mut r)
            .and_then(|request| r.finish().map(|()| request))
            .map_err(|error| malformed(Some(seq), error))?;
        Ok((seq, request))
    }

    fn read(command: Command, r: &mut Reader) -> Result<Request, DecodeError> {
        Ok(match command {
            Command::Ping => Request::Ping,
            Command::Login => Request::Login {
                token: r.text(TOKEN)?,
                client_version: r.text(CLIENT_VERSION)?,
            },
            Command::Logout => Request::Logout,
            Command::Send => Request::Send {
                to: r.text(SEND_TO)?,
                client_msg_id: r.u64("send.client_msg_id")?,
                body: r.bytes("send.body")?,
            },
            Command::GroupSend => Request::GroupSend {
                group_id: r.u64("group_send.group_id")?,
                client_msg_id: r.u64("group_send.client_msg_id")?,
                body: r.bytes("group_send.body")?,
            },
            Command::SyncIndex => Request::SyncIndex {
                after: r.u64("sync_index.after")?,
                limit: r.u16("sync_index.limit")?,
            },
            Command::SyncFetch => Request::SyncFetch {
                ids: r.u64_list(FETCH_IDS)?,
            },
            Command::SyncAck => Request::SyncAck {
                upto: r.u64("sync_ack.upto")?,
            },
            Command::SyncList => Request::SyncList {
                after: r.u64("sync_list.after")?,
                limit: r.u16("sync_list.limit")?,
            },
            Command::SyncConfirm => Request::SyncConfirm {
                upto: r.u64("sync_confirm.upto")?,
            },
            Command::GroupCreate => Request::GroupCreate {
                name: r.text(GROUP_NAME)?,
                members: r.text_list(MEMBERS, MEMBER)?,
            },
            Command::GroupJoin => Request::GroupJoin {
                group_id: r.u64("group_join.group_id")?,
            },
            Command::GroupQuit => Request::GroupQuit {
                group_id: r.u64("group_quit.group_id")?,
            },
            Command::GroupDetail => Request::GroupDetail {
                group_id: r.u64("group_detail.group_id")?,
            },
        })
    }

    /// Appends the whole request packet (header, seq, fields) to `dst`.
    ///
    /// Refuses a value the decoder would refuse (a length or count outside its limit); on
    /// error `dst` is left as it was.
    pub fn encode(&self, seq: u32, dst: &mut BytesMut) -> Result<(), EncodeError> {
        write_packet(self.command().code(), dst, |w| {
            w.u32(seq);
            self.write(w)
        })
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        match self {
            Request::Ping | Request::Logout => {}
            Request::Login {
                token,
                client_version,
            } => {
                w.text(TOKEN, token.as_str())?;
                w.text(CLIENT_VERSION, client_version.as_str())?;
            }
            Request::Send {
                to,
                client_msg_id,
                body,
            } => {
                w.text(SEND_TO, to.as_str())?;
                w.u64(*client_msg_id);
                w.bytes("send.body", body)?;
            }
            Request::GroupSend {
                group_id,
                client_msg_id,
                body,
            } => {
                w.u64(*group_id);
                w.u64(*client_msg_id);
                w.bytes("group_send.body", body)?;
            }
            Request::SyncIndex { after, limit } | Request::SyncList { after, limit } => {
                w.u64(*after);
                w.u16(*limit);
            }
            Request::SyncFetch { ids } => w.u64_list(FETCH_IDS, ids)?,
            Request::SyncAck { upto } | Request::SyncConfirm { upto } => w.u64(*upto),
            Request::GroupCreate { name, members } => {
                w.text(GROUP_NAME, name.as_str())?;
                w.text_list(MEMBERS, MEMBER, members)?;
            }
            Request::GroupJoin { group_id }
            | Request::GroupQuit { group_id }
            | Request::GroupDetail { group_id } => w.u64(*group_id),
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
