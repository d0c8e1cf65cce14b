//! SEND and GROUP_SEND: checks, idempotency, the store append, the pushes, the acks.
//!
//! Order of effects for a new message: refusals first (too large, not a member), then an id,
//! then the store append; only once the store has taken it are the recipients' devices (and
//! the sender's other devices) pushed the message, and only once it has committed is the
//! sender acknowledged. A resend of a (sender, client_msg_id) pair still in the dedupe window
//! is answered from the window and never stored or pushed again.

use std::sync::Arc;

use bytes::Bytes;
use switchboard_protocol::{ChatMessage, Command, ResponseBody, SendOk, Status, Target, Text};
use tracing::warn;

use super::backend::{BackendAnswer, Waiter};
use super::core::LogicCore;
use super::dedupe::{DedupeEntry, DedupeKey};
use super::group_cache::Refusal;
use super::outlet::Outlet;
use super::session::ConnKey;
use super::tickets::Then;
use crate::store::{self, AppendOutcome, Completion, Store, StoreRequest, StoredMessage};

/// A message as its sender asked for it, before the store has it.
pub(super) struct Outgoing {
    /// The session's user, never a payload field.
    sender: Arc<str>,
    target: Target,
    client_msg_id: u64,
    body: Bytes,
}

impl Outgoing {
    pub(super) fn new(sender: Arc<str>, target: Target, client_msg_id: u64, body: Bytes) -> Self {
        Outgoing {
            sender,
            target,
            client_msg_id,
            body,
        }
    }
}

impl Outgoing {
    /// The message as the store keeps it, and the inboxes it goes into: the recipients', and
    /// the sender's (for its other devices) unless it is one of them.
    fn to_store(
        &self,
        recipients: &[Arc<str>],
        id: u64,
        time_ms: u64,
    ) -> (StoredMessage, Vec<Box<str>>) {
        let mut inboxes: Vec<Box<str>> = recipients.iter().map(|r| Box::from(&**r)).collect();
        if !recipients.contains(&self.sender) {
            inboxes.push(Box::from(&*self.sender));
        }
        let stored = StoredMessage {
            id,
            time_ms,
            from: Box::from(&*self.sender),
            target: match &self.target {
                Target::Direct(to) => store::Target::Direct(Box::from(to.as_str())),
                Target::Group(id) => store::Target::Group(*id),
            },
            client_msg_id: self.client_msg_id,
            body: self.body.clone(),
        };
        (stored, inboxes)
    }
}

impl<S: Store, O: Outlet> LogicCore<S, O> {
    /// A message from a client or the backend: refused, answered from the dedupe window, or
    /// appended and pushed, its `waiter` answered at the commit.
    pub(super) fn send(&mut self, waiter: Waiter, message: Outgoing) {
        if message.body.len() > self.config.max_body as usize {
            return self.refuse_waiter(waiter, Status::TOO_LARGE);
        }
        let key: DedupeKey = (message.sender.clone(), message.client_msg_id);
        let Some(waiter) = self.answered_from_window(waiter, &key) else {
            self.metrics.sends_repeated.inc();
            return;
        };
        let recipients = match self.recipients(&message) {
            Ok(recipients) => recipients,
            Err(refusal) => return self.refuse_waiter(waiter, refusal_status(refusal)),
        };
        let msg_id = match self.ids.next_id(self.now_ms) {
            Ok(id) => id,
            Err(error) => {
                warn!(%error, "cannot assign a message id");
                return self.refuse_waiter(waiter, Status::INTERNAL);
            }
        };
        let time_ms = self.now_ms;
        let (stored, inboxes) = message.to_store(&recipients, msg_id, time_ms);
        let then = Then::Stored {
            key: key.clone(),
            msg_id,
            time_ms,
        };
        let append = |ticket| StoreRequest::Append {
            ticket,
            message: stored,
            inboxes,
        };
        // The append's completion answers the dedupe window's waiters, not an asker.
        if let Err(status) = self.tickets.submit(None, then, append) {
            self.metrics.sends_busy.inc();
            return self.refuse_waiter(waiter, status); // nothing pushed, nothing remembered
        }
        self.metrics.messages_accepted.inc();
        let from = waiter.conn();
        self.dedupe.insert_pending(key, waiter);
        let chat = ChatMessage {
            msg_id,
            server_time_ms: time_ms,
            from: Text::from(&*message.sender),
            target: message.target,
            client_msg_id: message.client_msg_id,
            body: message.body,
        };
        self.fan_out(from, &message.sender, &recipients, &chat);
    }

    /// Answers a resend the dedupe window knows: at once if stored, after the pending commit
    /// otherwise. Gives the waiter back if the window does not know the pair.
    fn answered_from_window(&mut self, waiter: Waiter, key: &DedupeKey) -> Option<Waiter> {
        match self.dedupe.get_mut(key) {
            Some(DedupeEntry::Done { msg_id, time_ms }) => {
                let ok = SendOk {
                    msg_id: *msg_id,
                    server_time_ms: *time_ms,
                };
                self.ack_waiter(waiter, ok);
                None
            }
            Some(DedupeEntry::Pending(waiters)) => {
                waiters.push(waiter);
                None
            }
            None => Some(waiter),
        }
    }

    fn ack_waiter(&mut self, waiter: Waiter, ok: SendOk) {
        match waiter {
            Waiter::Client(asker) => self.reply(asker, send_ok(asker.command, ok)),
            Waiter::Backend(reply) => {
                let _ = reply.send(BackendAnswer::Sent(ok));
            }
        }
    }

    /// Who gets the message: the addressee, or every member of a group the sender is in.
    fn recipients(&self, message: &Outgoing) -> Result<Vec<Arc<str>>, Refusal> {
        match &message.target {
            Target::Direct(to) => Ok(vec![Arc::from(to.as_str())]),
            Target::Group(group_id) => {
                let group = self.groups.check_member(*group_id, &message.sender)?;
                Ok(group.members.iter().cloned().collect())
            }
        }
    }

    /// Pushes the message to every online device of the recipients and of the sender, except
    /// the connection it came from. Encoded once; every connection gets the same bytes.
    fn fan_out(
        &mut self,
        from: Option<ConnKey>,
        sender: &str,
        recipients: &[Arc<str>],
        chat: &ChatMessage,
    ) {
        let push = match chat.encode_push() {
            Ok(push) => push,
            Err(error) => {
                warn!(%error, "cannot encode a push");
                return;
            }
        };
        let sender_too = (!recipients.iter().any(|r| **r == *sender)).then_some(sender);
        let users = recipients.iter().map(|r| &**r).chain(sender_too);
        for user in users {
            for device in self.sessions.devices(user) {
                if Some(device.conn) != from {
                    self.metrics.pushes.inc();
                    self.replies.push(device.conn, push.clone());
                }
            }
        }
    }

    /// The append's completion: every request waiting for the pair gets the same answer. A
    /// duplicate the store caught (a resend older than the window) is answered with the
    /// original id and time.
    pub(super) fn on_stored(&mut self, key: DedupeKey, ours: (u64, u64), completion: Completion) {
        let (msg_id, time_ms) = match completion {
            Completion::Appended { outcome, .. } => match outcome {
                AppendOutcome::Stored => ours,
                AppendOutcome::Duplicate { id, time_ms } => (id, time_ms),
            },
            other => {
                warn!(?other, "storing a message failed");
                let status = super::core::failure_status(&other);
                for waiter in self.dedupe.fail(&key) {
                    self.refuse_waiter(waiter, status);
                }
                return;
            }
        };
        for waiter in self.dedupe.complete(&key, msg_id, time_ms) {
            let ok = SendOk {
                msg_id,
                server_time_ms: time_ms,
            };
            self.ack_waiter(waiter, ok);
        }
    }
}

fn send_ok(command: Command, ok: SendOk) -> ResponseBody {
    if command == Command::GroupSend {
        ResponseBody::GroupSend(ok)
    } else {
        ResponseBody::Send(ok)
    }
}

/// The status a group refusal is answered with.
pub(super) fn refusal_status(refusal: Refusal) -> Status {
    match refusal {
        Refusal::NotFound => Status::NOT_FOUND,
        Refusal::Full => Status::GROUP_FULL,
        Refusal::NotMember => Status::NOT_MEMBER,
    }
}
