//! SYNC_LIST, SYNC_FETCH and SYNC_CONFIRM (and the legacy SYNC_INDEX, SYNC_ACK): reading an
//! inbox back, and moving a device's position.
//!
//! Positions are sequences of the user's inbox, assigned by the store at commit, so a listing
//! never passes over an entry that commits late (docs/protocol.md §9). SYNC_LIST and
//! SYNC_CONFIRM carry that sequence as the client's cursor; the legacy SYNC_INDEX and SYNC_ACK
//! speak msg_ids, which the store translates to the entry's sequence. On the wire a cursor
//! also carries a tag of its inbox (`cursor.rs`): one of another user's inbox, or of the old
//! kind (a bare sequence), is refused here; one past the inbox's last sequence by the store.
//! Either way BAD_CURSOR, and nothing changes.
//!
//! Retention is applied here as well as in the store: a message older than the retention
//! window is never listed or fetched, even before the store's purge has removed it. A
//! SYNC_FETCH answer keeps the requested order and stays within one packet (`covered` tells
//! the client how many of its ids the answer accounts for).

use std::collections::HashMap;

use switchboard_protocol::{
    limits, ChatMessage, Command, ResponseBody, Status, SyncFetchOk, SyncIndexOk, SyncListOk,
    Target, Text,
};
use tracing::info;

use super::core::LogicCore;
use super::cursor;
use super::outlet::Outlet;
use super::snowflake;
use super::tickets::{Asker, Then};
use crate::store::{self, Completion, InboxPoint, Store, StoreError, StoreRequest, StoredMessage};

impl<S: Store, O: Outlet> LogicCore<S, O> {
    /// SYNC_LIST: a cursor of this user's inbox (see `cursor.rs`), or BAD_CURSOR at once.
    pub(super) fn sync_list(
        &mut self,
        asker: Asker,
        user: &str,
        device: &str,
        after: u64,
        limit: u16,
    ) {
        match cursor::decode(user, after) {
            Some(seq) => self.sync_index(asker, user, device, InboxPoint::Seq(seq), limit),
            None => self.refuse_foreign_cursor(asker, after),
        }
    }

    /// SYNC_CONFIRM: as SYNC_LIST, a cursor of this user's inbox or BAD_CURSOR.
    pub(super) fn sync_confirm(&mut self, asker: Asker, user: &str, device: &str, upto: u64) {
        match cursor::decode(user, upto) {
            Some(seq) => self.sync_ack(asker, user, device, InboxPoint::Seq(seq)),
            None => self.refuse_foreign_cursor(asker, upto),
        }
    }

    fn refuse_foreign_cursor(&mut self, asker: Asker, cursor: u64) {
        let conn = asker.conn;
        info!(conn, cursor, command = ?asker.command, "refused: a cursor of another inbox or of the old kind");
        self.refuse(asker, Status::BAD_CURSOR);
    }

    pub(super) fn sync_index(
        &mut self,
        asker: Asker,
        user: &str,
        device: &str,
        after: InboxPoint,
        limit: u16,
    ) {
        // Ids are time-ordered: ids below the retention floor are expired.
        let floor_id = self.retention_floor_id();
        let inbox = matches!(after, InboxPoint::Seq(_)).then(|| user.into());
        self.ask_store(asker, Then::Index { inbox }, |ticket| {
            StoreRequest::SyncIndex {
                ticket,
                user: user.into(),
                device: device.into(),
                after,
                floor_id,
                limit: u32::from(limits::sync_index_limit(limit)),
            }
        });
    }

    pub(super) fn sync_fetch(&mut self, asker: Asker, user: &str, ids: Vec<u64>) {
        let then = Then::Fetch { ids: ids.clone() };
        self.ask_store(asker, then, |ticket| StoreRequest::SyncFetch {
            ticket,
            user: user.into(),
            ids,
        });
    }

    pub(super) fn sync_ack(&mut self, asker: Asker, user: &str, device: &str, upto: InboxPoint) {
        self.ask_store(asker, Then::Acked, |ticket| StoreRequest::SyncAck {
            ticket,
            user: user.into(),
            device: device.into(),
            upto,
        });
    }

    /// `inbox`: the user whose cursor SYNC_LIST answers with.
    pub(super) fn on_index(&mut self, asker: Asker, inbox: Option<&str>, completion: Completion) {
        match completion {
            Completion::SyncIndex {
                ids, more, cursor, ..
            } => {
                let body = if asker.command == Command::SyncList {
                    let cursor = cursor::encode(inbox.unwrap_or_default(), cursor);
                    ResponseBody::SyncList(SyncListOk { ids, more, cursor })
                } else {
                    ResponseBody::SyncIndex(SyncIndexOk { ids, more })
                };
                self.reply(asker, body)
            }
            other => self.sync_failed(asker, &other),
        }
    }

    /// A refused cursor is the client's mistake (BAD_CURSOR); anything else is the store's.
    fn sync_failed(&mut self, asker: Asker, completion: &Completion) {
        match completion {
            Completion::Failed {
                error: StoreError::CursorAhead { cursor, last },
                ..
            } => {
                let conn = asker.conn;
                info!(conn, cursor, last, command = ?asker.command, "refused: a cursor past the inbox");
                self.refuse(asker, Status::BAD_CURSOR);
            }
            other => self.store_failed(asker, other),
        }
    }

    pub(super) fn on_fetched(&mut self, asker: Asker, ids: &[u64], completion: Completion) {
        match completion {
            Completion::SyncFetch { messages, .. } => {
                let body = self.fetch_response(ids, messages);
                self.reply(asker, ResponseBody::SyncFetch(body));
            }
            other => self.store_failed(asker, &other),
        }
    }

    pub(super) fn on_acked(&mut self, asker: Asker, completion: Completion) {
        match completion {
            Completion::Done { .. } if asker.command == Command::SyncConfirm => {
                self.reply(asker, ResponseBody::SyncConfirm)
            }
            Completion::Done { .. } => self.reply(asker, ResponseBody::SyncAck),
            other => self.sync_failed(asker, &other),
        }
    }

    /// The SYNC_FETCH answer: messages in request order, as many as fit in one packet.
    fn fetch_response(&self, ids: &[u64], messages: Vec<StoredMessage>) -> SyncFetchOk {
        let mut by_id: HashMap<u64, StoredMessage> =
            messages.into_iter().map(|m| (m.id, m)).collect();
        let mut size = SyncFetchOk::EMPTY_PAYLOAD_LEN;
        let mut out = Vec::new();
        let mut covered = 0u16;
        let oldest_ms = self.retention_start_ms();
        for id in ids {
            if let Some(stored) = by_id.remove(id).filter(|m| m.time_ms >= oldest_ms) {
                let message = to_chat_message(stored);
                let len = message.encoded_len();
                if size + len > self.config.max_packet && covered > 0 {
                    break;
                }
                size += len;
                out.push(message);
            }
            covered += 1;
        }
        SyncFetchOk {
            covered,
            messages: out,
        }
    }

    /// The time of the oldest message inside the retention window.
    fn retention_start_ms(&self) -> u64 {
        let retention_ms = self.config.retention.as_millis() as u64;
        self.now_ms.saturating_sub(retention_ms)
    }

    /// The smallest id a message inside the retention window can have, minus one.
    fn retention_floor_id(&self) -> u64 {
        snowflake::first_id_at(self.retention_start_ms()).saturating_sub(1)
    }
}

fn to_chat_message(stored: StoredMessage) -> ChatMessage {
    ChatMessage {
        msg_id: stored.id,
        server_time_ms: stored.time_ms,
        from: Text::from(&*stored.from),
        target: match stored.target {
            store::Target::Direct(to) => Target::Direct(Text::from(&*to)),
            store::Target::Group(id) => Target::Group(id),
        },
        client_msg_id: stored.client_msg_id,
        body: stored.body,
    }
}
