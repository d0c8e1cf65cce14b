//! `Outbox`: every SEND and GROUP_SEND not yet acknowledged, in the order the app sent them.
//!
//! An entry stays until the server acks it (OK) or refuses it for good; a lost connection only
//! forgets which `seq` carried it, so after the next login every entry goes out again, oldest
//! first and before anything new, with its original `client_msg_id` (the server answers a
//! resend with the original ack and stores nothing twice). Entries refused with BUSY,
//! INTERNAL or RATE_LIMITED wait for a backoff delay, then go out again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use bytes::Bytes;
use crossbeam_channel::Sender;
use switchboard_protocol::{Request, Target, Text};

use crate::error::{Ack, SendError};

/// A message the app sent, with the channel its outcome goes to.
#[derive(Debug)]
pub struct Outgoing {
    /// The SDK's id for the message, reused by every resend.
    pub client_msg_id: u64,
    /// A user or a group.
    pub target: Target,
    /// The body.
    pub body: Bytes,
    /// Where the ack or the final refusal goes (the app may have stopped waiting).
    pub reply: Sender<Result<Ack, SendError>>,
}

impl Outgoing {
    /// The request that carries the message.
    pub fn request(&self) -> Request {
        match &self.target {
            Target::Direct(to) => Request::Send {
                to: Text::clone(to),
                client_msg_id: self.client_msg_id,
                body: self.body.clone(),
            },
            Target::Group(group_id) => Request::GroupSend {
                group_id: *group_id,
                client_msg_id: self.client_msg_id,
                body: self.body.clone(),
            },
        }
    }
}

#[derive(Debug)]
struct Entry {
    message: Outgoing,
    /// The seq of the request carrying it on the current connection, once sent.
    seq: Option<u32>,
    /// When a BUSY, INTERNAL or RATE_LIMITED refusal lets it go out again.
    retry_at: Option<Instant>,
    /// BUSY/INTERNAL/RATE_LIMITED refusals so far (the backoff attempt of the next retry).
    refusals: u32,
}

/// The unacknowledged messages, oldest first.
#[derive(Debug, Default)]
pub struct Outbox {
    /// By ticket: the order the app sent them in.
    entries: BTreeMap<u64, Entry>,
    /// The ticket of each entry on the wire, by its request's seq.
    by_seq: HashMap<u32, u64>,
    /// The `client_msg_id` of every entry.
    client_ids: HashSet<u64>,
    next_ticket: u64,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Outbox::default()
    }

    /// Queues `message` behind every earlier one; returns its ticket.
    pub fn push(&mut self, message: Outgoing) -> u64 {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.client_ids.insert(message.client_msg_id);
        let entry = Entry {
            message,
            seq: None,
            retry_at: None,
            refusals: 0,
        };
        self.entries.insert(ticket, entry);
        ticket
    }

    /// Puts every entry that is not on the wire and not waiting for a retry time on it, oldest
    /// first: `send` writes the request and returns its seq, or `None` when it could not be
    /// written (the entry then stays unsent).
    pub fn send_due(&mut self, now: Instant, mut send: impl FnMut(&Outgoing) -> Option<u32>) {
        for (ticket, entry) in &mut self.entries {
            if entry.seq.is_some() || entry.retry_at.is_some_and(|at| at > now) {
                continue;
            }
            if let Some(seq) = send(&entry.message) {
                entry.seq = Some(seq);
                entry.retry_at = None;
                self.by_seq.insert(seq, *ticket);
            }
        }
    }

    /// Records that the entry with `ticket` went out under `seq`.
    pub fn mark_sent(&mut self, ticket: u64, seq: u32) {
        if let Some(entry) = self.entries.get_mut(&ticket) {
            entry.seq = Some(seq);
            entry.retry_at = None;
            self.by_seq.insert(seq, ticket);
        }
    }

    /// Whether `seq` carries one of the entries.
    pub fn owns_seq(&self, seq: u32) -> bool {
        self.by_seq.contains_key(&seq)
    }

    /// Removes the entry `seq` carried (its answer came: an ack or a final refusal).
    pub fn complete(&mut self, seq: u32) -> Option<Outgoing> {
        let ticket = self.by_seq.remove(&seq)?;
        let message = self.entries.remove(&ticket)?.message;
        self.client_ids.remove(&message.client_msg_id);
        Some(message)
    }

    /// Whether a message with `client_msg_id` awaits its ack here.
    pub fn holds(&self, client_msg_id: u64) -> bool {
        self.client_ids.contains(&client_msg_id)
    }

    /// Takes the entry `seq` carried off the wire until `retry_at(refusals so far)`, after a
    /// BUSY, INTERNAL or RATE_LIMITED answer.
    pub fn retry_later(&mut self, seq: u32, retry_at: impl FnOnce(u32) -> Instant) {
        let Some(ticket) = self.by_seq.remove(&seq) else {
            return;
        };
        if let Some(entry) = self.entries.get_mut(&ticket) {
            entry.seq = None;
            entry.retry_at = Some(retry_at(entry.refusals));
            entry.refusals = entry.refusals.saturating_add(1);
        }
    }

    /// The connection dropped: no entry is on the wire any more. Retry times are kept.
    pub fn connection_lost(&mut self) {
        self.by_seq.clear();
        for entry in self.entries.values_mut() {
            entry.seq = None;
        }
    }

    /// The earliest retry time of an entry waiting for one.
    pub fn next_retry(&self) -> Option<Instant> {
        self.entries.values().filter_map(|e| e.retry_at).min()
    }

    /// Empties the outbox, answering every entry with `error`.
    pub fn fail_all(&mut self, error: &SendError) {
        self.by_seq.clear();
        self.client_ids.clear();
        for (_, entry) in std::mem::take(&mut self.entries) {
            let _ = entry.message.reply.send(Err(error.clone()));
        }
    }

    /// How many messages await an ack.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether every message has been acknowledged or refused.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::{unbounded, Receiver};
    use std::time::Duration;

    fn message(client_msg_id: u64) -> (Outgoing, Receiver<Result<Ack, SendError>>) {
        let (reply, rx) = unbounded();
        let message = Outgoing {
            client_msg_id,
            target: Target::Direct(Text::from("bob")),
            body: Bytes::from_static(b"hi"),
            reply,
        };
        (message, rx)
    }

    /// Sends whatever is due with seqs from `next_seq`, returning the client_msg_ids in order.
    fn flush(outbox: &mut Outbox, now: Instant, next_seq: &mut u32) -> Vec<u64> {
        let mut sent = Vec::new();
        outbox.send_due(now, |m| {
            sent.push(m.client_msg_id);
            *next_seq += 1;
            Some(*next_seq)
        });
        sent
    }

    #[test]
    fn unacked_messages_go_out_again_in_their_original_order_after_a_drop() {
        let now = Instant::now();
        let mut outbox = Outbox::new();
        let mut seq = 0;
        let mut receivers = Vec::new();
        for id in [100, 101, 102, 103] {
            let (m, rx) = message(id);
            receivers.push(rx);
            outbox.push(m);
        }
        assert_eq!(flush(&mut outbox, now, &mut seq), [100, 101, 102, 103]);
        // Acks for 101 and 103 (seqs 2 and 4) arrive, out of order; then the link drops.
        assert_eq!(outbox.complete(4).map(|m| m.client_msg_id), Some(103));
        assert_eq!(outbox.complete(2).map(|m| m.client_msg_id), Some(101));
        outbox.connection_lost();
        assert!(
            !outbox.owns_seq(1),
            "old seqs mean nothing on a new connection"
        );
        let (m, _rx) = message(104);
        outbox.push(m);
        assert_eq!(flush(&mut outbox, now, &mut seq), [100, 102, 104]);
        assert_eq!(flush(&mut outbox, now, &mut seq), Vec::<u64>::new());
        assert_eq!(outbox.len(), 3);
    }

    #[test]
    fn an_entry_that_could_not_be_written_stays_unsent_and_keeps_its_place() {
        let now = Instant::now();
        let mut outbox = Outbox::new();
        for id in [1, 2, 3] {
            outbox.push(message(id).0);
        }
        let mut calls = 0;
        outbox.send_due(now, |m| {
            calls += 1;
            (m.client_msg_id != 2).then_some(calls)
        });
        let mut seq = 10;
        assert_eq!(flush(&mut outbox, now, &mut seq), [2]);
    }

    #[test]
    fn busy_entries_wait_for_their_retry_time() {
        let now = Instant::now();
        let mut outbox = Outbox::new();
        let mut seq = 0;
        for id in [1, 2] {
            outbox.push(message(id).0);
        }
        flush(&mut outbox, now, &mut seq);
        let mut attempts = Vec::new();
        outbox.retry_later(1, |refusals| {
            attempts.push(refusals);
            now + Duration::from_millis(100)
        });
        assert_eq!(outbox.next_retry(), Some(now + Duration::from_millis(100)));
        assert_eq!(flush(&mut outbox, now, &mut seq), Vec::<u64>::new());
        let later = now + Duration::from_millis(100);
        assert_eq!(flush(&mut outbox, later, &mut seq), [1]);
        assert_eq!(outbox.next_retry(), None);
        // A second refusal counts as the second attempt.
        outbox.retry_later(seq, |refusals| {
            attempts.push(refusals);
            later
        });
        assert_eq!(attempts, [0, 1]);
    }

    #[test]
    fn mark_sent_registers_a_direct_write() {
        let mut outbox = Outbox::new();
        let ticket = outbox.push(message(9).0);
        outbox.mark_sent(ticket, 77);
        assert!(outbox.owns_seq(77));
        let mut seq = 0;
        assert_eq!(
            flush(&mut outbox, Instant::now(), &mut seq),
            Vec::<u64>::new()
        );
        assert!(outbox.holds(9));
        assert_eq!(outbox.complete(77).map(|m| m.client_msg_id), Some(9));
        assert!(outbox.is_empty());
        assert!(!outbox.holds(9));
    }

    #[test]
    fn fail_all_answers_every_waiter() {
        let mut outbox = Outbox::new();
        let (a, rx_a) = message(1);
        let (b, rx_b) = message(2);
        outbox.push(a);
        outbox.push(b);
        outbox.fail_all(&SendError::Closed);
        assert!(outbox.is_empty());
        assert_eq!(rx_a.try_recv().unwrap(), Err(SendError::Closed));
        assert_eq!(rx_b.try_recv().unwrap(), Err(SendError::Closed));
    }

    #[test]
    fn requests_carry_the_original_id_and_target() {
        let (m, _rx) = message(42);
        assert_eq!(
            m.request(),
            Request::Send {
                to: Text::from("bob"),
                client_msg_id: 42,
                body: Bytes::from_static(b"hi")
            }
        );
        let group = Outgoing {
            target: Target::Group(5),
            ..m
        };
        assert!(matches!(
            group.request(),
            Request::GroupSend {
                group_id: 5,
                client_msg_id: 42,
                ..
            }
        ));
    }
}
