//! `DedupeWindow`: the last `capacity` message ids delivered, so a message pushed live and
//! then listed again by sync (or resent across a reconnect) reaches the app once.
//!
//! Bounded: the oldest id is forgotten when a new one would pass the capacity, and memory is
//! allocated as ids arrive (an idle client holds none). Never refuses an id it has forgotten.

use std::collections::{HashSet, VecDeque};

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
