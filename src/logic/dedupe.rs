//! The window of recent (sender, client_msg_id) pairs that makes resends idempotent.
//!
//! A client resends every unacknowledged message after a reconnect, with the same
//! client_msg_id. A resend of a message still being stored waits for that store's commit; a
//! resend of a stored one gets the original ack at once, and neither is stored or pushed
//! again. Resends older than the window reach the store, whose unique (sender,
//! client_msg_id) index answers with the original. The window is bounded: the oldest
//! finished entries are forgotten first; entries still waiting for the store are never dropped.
//! A waiter is whoever is answered at the commit: a client's request, or a backend API call.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::tickets::Asker;

/// The dedupe key: the sender (from the session) and its id for the message.
pub type DedupeKey = (Arc<str>, u64);

/// What the window knows of a pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DedupeEntry<W = Asker> {
    /// Submitted to the store; these requests wait for its commit.
    Pending(Vec<W>),
    /// Stored with this id and time.
    Done {
        /// The message's id.
        msg_id: u64,
        /// Its server time.
        time_ms: u64,
    },
}

/// Recent pairs, bounded to `capacity` entries.
#[derive(Debug)]
pub struct Dedupe<W = Asker> {
    entries: HashMap<DedupeKey, DedupeEntry<W>>,
    order: VecDeque<DedupeKey>,
    capacity: usize,
}

impl<W> Dedupe<W> {
    /// A window of at most `capacity` finished entries.
    pub fn new(capacity: usize) -> Self {
        Dedupe {
            entries: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// The entry for a pair, if the window has it.
    pub fn get_mut(&mut self, key: &DedupeKey) -> Option<&mut DedupeEntry<W>> {
        self.entries.get_mut(key)
    }

    /// Records a pair just submitted to the store, with its first requester.
    pub fn insert_pending(&mut self, key: DedupeKey, waiter: W) {
        self.entries
            .insert(key.clone(), DedupeEntry::Pending(vec![waiter]));
        self.order.push_back(key);
        self.evict();
    }

    /// The store committed the pair: returns every request waiting for it.
    pub fn complete(&mut self, key: &DedupeKey, msg_id: u64, time_ms: u64) -> Vec<W> {
        match self
            .entries
            .insert(key.clone(), DedupeEntry::Done { msg_id, time_ms })
        {
            Some(DedupeEntry::Pending(waiters)) => waiters,
            _ => Vec::new(),
        }
    }

    /// The store failed the pair: forget it (a resend may try again) and return its waiters.
    pub fn fail(&mut self, key: &DedupeKey) -> Vec<W> {
        match self.entries.remove(key) {
            Some(DedupeEntry::Pending(waiters)) => waiters,
            _ => Vec::new(),
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the window is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn evict(&mut self) {
        let mut spared = 0;
        while self.order.len() > self.capacity && spared < self.order.len() {
            let Some(key) = self.order.pop_front() else {
                break;
            };
            match self.entries.get(&key) {
                Some(DedupeEntry::Pending(_)) => {
                    self.order.push_back(key);
                    spared += 1;
                }
                Some(DedupeEntry::Done { .. }) => {
                    self.entries.remove(&key);
                }
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logic::session::ConnKey;
    use switchboard_protocol::Command;

    fn key(user: &str, id: u64) -> DedupeKey {
        (Arc::from(user), id)
    }

    fn asker(conn: ConnKey, seq: u32) -> Asker {
        Asker {
            conn,
            seq,
            command: Command::Send,
        }
    }

    #[test]
    fn waiters_are_answered_once_when_the_store_commits() {
        let mut window = Dedupe::new(10);
        window.insert_pending(key("alice", 1), asker(1, 10));
        match window.get_mut(&key("alice", 1)) {
            Some(DedupeEntry::Pending(waiters)) => waiters.push(asker(2, 20)),
            other => panic!("expected pending, got {other:?}"),
        }
        let answered = window.complete(&key("alice", 1), 99, 1234);
        assert_eq!(answered, vec![asker(1, 10), asker(2, 20)]);
        assert_eq!(
            window.get_mut(&key("alice", 1)),
            Some(&mut DedupeEntry::Done {
                msg_id: 99,
                time_ms: 1234
            })
        );
        assert!(window.complete(&key("alice", 1), 99, 1234).is_empty());
    }

    #[test]
    fn same_client_id_from_another_sender_is_another_message() {
        let mut window = Dedupe::new(10);
        window.insert_pending(key("alice", 1), asker(1, 1));
        assert!(window.get_mut(&key("bob", 1)).is_none());
    }

    #[test]
    fn a_failure_forgets_the_pair() {
        let mut window = Dedupe::new(10);
        window.insert_pending(key("alice", 1), asker(1, 1));
        assert_eq!(window.fail(&key("alice", 1)), vec![asker(1, 1)]);
        assert!(window.get_mut(&key("alice", 1)).is_none());
    }

    #[test]
    fn the_window_forgets_the_oldest_finished_but_never_a_pending_one() {
        let mut window = Dedupe::new(2);
        window.insert_pending(key("a", 1), asker(1, 1)); // stays pending
        window.insert_pending(key("a", 2), asker(1, 2));
        window.complete(&key("a", 2), 2, 2);
        window.insert_pending(key("a", 3), asker(1, 3));
        window.complete(&key("a", 3), 3, 3);
        assert!(window.len() <= 2 + 1);
        assert!(matches!(
            window.get_mut(&key("a", 1)),
            Some(DedupeEntry::Pending(_))
        ));
        assert!(
            window.get_mut(&key("a", 2)).is_none(),
            "the oldest finished entry went first"
        );
        assert!(window.get_mut(&key("a", 3)).is_some());
    }
}
