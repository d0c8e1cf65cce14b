//! `DedupeWindow`: the last `capacity` message ids delivered, so a message pushed live and
//! then listed again by sync (or resent across a reconnect) reaches the app once; and
//! `MessageDedupe`, which also keys messages by sender and `client_msg_id`.
//!
//! Bounded: the oldest id is forgotten when a new one would pass the capacity, and memory is
//! allocated as ids arrive (an idle client holds none). Never refuses an id it has forgotten.

use std::collections::{HashSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};

use switchboard_protocol::ChatMessage;

/// Drops repeats of a message by its `msg_id`, and by its sender's `(from, client_msg_id)`.
///
/// The second key catches a message a server pushed, then lost to a crash before storing it,
/// and stored again under a new `msg_id` when its sender resent it: the same message to the
/// app, so it is delivered once. (`client_msg_id` is unique per sender, docs/protocol.md 6.4.)
#[derive(Debug)]
pub struct MessageDedupe {
    ids: DedupeWindow,
    senders: DedupeWindow,
}

impl MessageDedupe {
    /// Remembers the last `capacity` messages.
    pub fn new(capacity: usize) -> Self {
        MessageDedupe {
            ids: DedupeWindow::new(capacity),
            senders: DedupeWindow::new(capacity),
        }
    }

    /// Records `message`; `true` if neither its id nor its sender's id for it was seen.
    pub fn first_time(&mut self, message: &ChatMessage) -> bool {
        let new_id = self.ids.insert(message.msg_id);
        let new_sender_id = self.senders.insert(sender_key(message));
        new_id && new_sender_id
    }

    /// Whether `msg_id` was delivered (or noted) within the window.
    pub fn seen_id(&self, msg_id: u64) -> bool {
        self.ids.contains(msg_id)
    }

    /// Records a message id without a message (this client's own, from its ack).
    pub fn note_id(&mut self, msg_id: u64) {
        self.ids.insert(msg_id);
    }
}

/// A 64-bit digest of `(from, client_msg_id)`: a false match needs a 64-bit hash collision
/// inside the window.
fn sender_key(message: &ChatMessage) -> u64 {
    let mut hasher = DefaultHasher::new();
    message.from.as_str().hash(&mut hasher);
    message.client_msg_id.hash(&mut hasher);
    hasher.finish()
}

/// A bounded set of recently seen message ids, forgetting the oldest first.
#[derive(Debug)]
pub struct DedupeWindow {
    capacity: usize,
    seen: HashSet<u64>,
    order: VecDeque<u64>,
}

impl DedupeWindow {
    /// A window remembering at most `capacity` ids (at least 1).
    pub fn new(capacity: usize) -> Self {
        DedupeWindow {
            capacity: capacity.max(1),
            seen: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// Records `id`; `true` if it is new (deliver it), `false` if it was seen within the window.
    pub fn insert(&mut self, id: u64) -> bool {
        if !self.seen.insert(id) {
            return false;
        }
        if self.order.len() == self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.seen.remove(&oldest);
            }
        }
        self.order.push_back(id);
        true
    }

    /// Whether `id` is within the window.
    pub fn contains(&self, id: u64) -> bool {
        self.seen.contains(&id)
    }

    /// How many ids the window holds.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether the window holds no id.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use switchboard_protocol::{Target, Text};

    fn message(msg_id: u64, from: &str, client_msg_id: u64) -> ChatMessage {
        ChatMessage {
            msg_id,
            server_time_ms: 0,
            from: Text::from(from),
            target: Target::Group(1),
            client_msg_id,
            body: Bytes::new(),
        }
    }

    #[test]
    fn a_message_is_new_only_if_both_its_keys_are() {
        let mut dedupe = MessageDedupe::new(16);
        assert!(dedupe.first_time(&message(1, "alice", 7)));
        assert!(!dedupe.first_time(&message(1, "alice", 7)), "same msg_id");
        assert!(
            !dedupe.first_time(&message(2, "alice", 7)),
            "stored again after a crash: same sender and client_msg_id"
        );
        assert!(
            dedupe.first_time(&message(3, "bob", 7)),
            "another sender's id 7"
        );
        assert!(dedupe.first_time(&message(4, "alice", 8)));
        dedupe.note_id(5);
        assert!(!dedupe.first_time(&message(5, "carol", 1)));
    }

    #[test]
    fn a_repeat_within_the_window_is_refused() {
        let mut window = DedupeWindow::new(3);
        assert!(window.insert(10));
        assert!(window.insert(11));
        assert!(!window.insert(10));
        assert!(!window.insert(11));
        assert_eq!(window.len(), 2);
    }

    #[test]
    fn the_oldest_id_is_forgotten_first() {
        let mut window = DedupeWindow::new(3);
        for id in [1, 2, 3, 4] {
            assert!(window.insert(id));
        }
        assert_eq!(window.len(), 3);
        assert!(!window.contains(1));
        assert!(window.contains(2) && window.contains(4));
        // Forgotten, so delivered again: the window trades exactness for bounded memory.
        assert!(window.insert(1));
        assert!(!window.contains(2));
    }

    #[test]
    fn a_refused_repeat_does_not_refresh_or_grow_the_window() {
        let mut window = DedupeWindow::new(2);
        assert!(window.insert(1));
        assert!(window.insert(2));
        assert!(!window.insert(1));
        assert!(window.insert(3));
        assert!(!window.contains(1), "1 stays the oldest despite its repeat");
        assert_eq!(window.len(), 2);
    }

    #[test]
    fn capacity_zero_still_dedupes_the_latest() {
        let mut window = DedupeWindow::new(0);
        assert!(window.insert(5));
        assert!(!window.insert(5));
        assert!(window.insert(6));
        assert!(window.insert(5));
    }
}
