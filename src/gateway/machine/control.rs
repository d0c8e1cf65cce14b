//! Rules that keep control frames from being free, without sockets or clocks of their own.
//!
//! [`ControlLimit`] is judged per connection by a rate cell (`limits::rate`, a token bucket in
//! four bytes): a client may send `burst` control frames at once and `per_second` on average;
//! the frame past that gets the connection closed with 1008 (policy violation).
//!
//! [`PongSlots`] bounds the pongs of one reactor pass: the first [`PONGS_IN_PLACE`] pings of a
//! connection in a pass are answered in place (in order with the data around it; Autobahn 2.10 expects ten pings sent at once to get
//! ten pongs), later ones only replace one owed pong sent at the end of the pass. RFC 6455
//! §5.5.3 lets an endpoint that got several pings before it could reply answer only the most
//! recent one, so even with the rate limit raised a ping flood costs the server at most 17
//! pongs per connection per pass instead of a queue of them.

use std::collections::HashMap;

use bytes::Bytes;

use super::super::limits::RateLimit;

/// The documented limit on control frames (ping, pong; close ends the connection anyway).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlLimit {
    /// Frames a connection may send at once after a quiet period.
    pub burst: u32,
    /// Frames per second a connection may send on average, indefinitely (0: no limit).
    pub per_second: u32,
}

impl Default for ControlLimit {
    /// A client pings every 15–60 s; a burst of 20 and 5 per second leave a wide margin for
    /// any client that is not flooding.
    fn default() -> Self {
        ControlLimit {
            burst: 20,
            per_second: 5,
        }
    }
}

impl ControlLimit {
    /// The limit as the per-connection rate cell judges it: no grace, the frame past the
    /// rate closes (`per_second == 0`: no limit).
    pub(crate) fn rate(self) -> RateLimit {
        RateLimit {
            burst: self.burst,
            per_second: self.per_second,
            grace: 0,
        }
    }
}

/// Pings of one connection answered in place per pass; later ones share one owed pong.
pub(crate) const PONGS_IN_PLACE: u16 = 16;

/// The pongs of one reactor pass: how many pings of each connection were answered, and the
/// one pong each still owes, if any.
#[derive(Default)]
pub(crate) struct PongSlots {
    slots: HashMap<usize, (u16, Option<Bytes>)>,
}

impl PongSlots {
    /// A ping from `key`: true while it is among the first [`PONGS_IN_PLACE`] of this pass
    /// (answer it now); otherwise its payload replaces any earlier one owed, copied (at most
    /// 125 bytes) so the slot does not keep a shared read buffer alive.
    pub(crate) fn answer_now(&mut self, key: usize, payload: &[u8]) -> bool {
        let (answered, owed) = self.slots.entry(key).or_default();
        if *answered < PONGS_IN_PLACE {
            *answered += 1;
            return true;
        }
        *owed = Some(Bytes::copy_from_slice(payload));
        false
    }

    /// The pong owed to `key`, if any, leaving its slot empty.
    pub(crate) fn take(&mut self, key: usize) -> Option<Bytes> {
        self.slots.get_mut(&key).and_then(|(_, owed)| owed.take())
    }

    /// Forgets `key` (the connection is gone; its key may be reused this pass).
    pub(crate) fn forget(&mut self, key: usize) {
        self.slots.remove(&key);
    }

    /// Whether no ping was seen this pass.
    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Starts a new pass, keeping the table's memory only while it is small.
    pub(crate) fn clear(&mut self) {
        self.slots.clear();
        if self.slots.capacity() > 1024 {
            self.slots.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_pings_of_a_pass_and_the_latest_are_answered() {
        let mut slots = PongSlots::default();
        for _ in 0..PONGS_IN_PLACE {
            assert!(slots.answer_now(4, b"in place"));
        }
        assert!(!slots.answer_now(4, b"second"));
        assert!(!slots.answer_now(4, b"third"));
        assert!(slots.answer_now(9, b"other"));
        assert_eq!(slots.take(4).as_deref(), Some(&b"third"[..]));
        assert_eq!(slots.take(4), None, "owed once");
        assert_eq!(slots.take(9), None, "answered in place, owes nothing");
        slots.forget(4);
        assert!(slots.answer_now(4, b"a new connection in the slot"));
        slots.clear();
        assert!(slots.is_empty());
        assert!(slots.answer_now(9, b"next pass"));
    }
}
