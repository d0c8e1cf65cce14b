//! Rules that keep control frames from being free, without sockets or clocks of their own.
//!
//! [`ControlRate`] is a token bucket per connection: a client may send `burst` control frames
//! at once and `per_second` on average; the frame that finds the bucket empty gets the
//! connection closed with 1008 (policy violation). [`PongSlots`] bounds the pongs of one
//! reactor pass: the first [`PONGS_IN_PLACE`] pings of a connection in a pass are answered in
//! place (in order with the data around it; Autobahn 2.10 expects ten pings sent at once to get
//! ten pongs), later ones only replace one owed pong sent at the end of the pass. RFC 6455
//! §5.5.3 lets an endpoint that got several pings before it could reply answer only the most
//! recent one, so even with the rate limit raised a ping flood costs the server at most 17
//! pongs per connection per pass instead of a queue of them.
//!
//! Time comes in as the reactor's ticks (milliseconds since its start divided by `tick_ms`).

use std::collections::HashMap;

use bytes::Bytes;

/// The documented limit on control frames (ping, pong; close ends the connection anyway).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlLimit {
    /// Frames a connection may send at once after a quiet period.
    pub burst: u32,
    /// Frames per second a connection may send on average, indefinitely.
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

/// Thousandths of a frame, so that refills by the millisecond stay whole numbers.
const MILLI: u64 = 1000;

/// One connection's token bucket. 8 bytes: one lives in every connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ControlRate {
    /// Credit in thousandths of a frame.
    credit: u32,
    /// Tick of the last refill.
    last: u32,
}

impl ControlRate {
    /// A full bucket at `now`.
    pub(crate) fn new(limit: ControlLimit, now: u32) -> Self {
        ControlRate {
            credit: Self::full(limit),
            last: now,
        }
    }

    fn full(limit: ControlLimit) -> u32 {
        (u64::from(limit.burst) * MILLI).min(u64::from(u32::MAX)) as u32
    }

    /// Takes one frame's credit at tick `now` (`tick_ms` milliseconds per tick). False: the
    /// connection went over the limit.
    pub(crate) fn admit(&mut self, limit: ControlLimit, now: u32, tick_ms: u64) -> bool {
        let elapsed_ms = u64::from(now.wrapping_sub(self.last)) * tick_ms;
        // credit is in milli-frames and per_second frames per 1000 ms: one milli-frame per
        // millisecond per frame-per-second.
        let refill = elapsed_ms.saturating_mul(u64::from(limit.per_second));
        let credit = (u64::from(self.credit) + refill).min(u64::from(Self::full(limit)));
        self.last = now;
        if credit < MILLI {
            self.credit = credit as u32;
            return false;
        }
        self.credit = (credit - MILLI) as u32;
        true
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

    const LIMIT: ControlLimit = ControlLimit {
        burst: 3,
        per_second: 2,
    };

    #[test]
    fn a_burst_then_the_rate() {
        let mut rate = ControlRate::new(LIMIT, 0);
        assert!(rate.admit(LIMIT, 0, 10));
        assert!(rate.admit(LIMIT, 0, 10));
        assert!(rate.admit(LIMIT, 0, 10));
        assert!(!rate.admit(LIMIT, 0, 10), "the burst is spent");
        // 2 per second: one frame's credit every 500 ms (50 ticks of 10 ms).
        assert!(!rate.admit(LIMIT, 49, 10));
        assert!(rate.admit(LIMIT, 50, 10));
        assert!(!rate.admit(LIMIT, 50, 10));
    }

    #[test]
    fn a_quiet_connection_never_holds_more_than_the_burst() {
        let mut rate = ControlRate::new(LIMIT, 0);
        let later = 100_000;
        for _ in 0..3 {
            assert!(rate.admit(LIMIT, later, 10));
        }
        assert!(!rate.admit(LIMIT, later, 10));
    }

    #[test]
    fn a_steady_client_at_the_rate_is_never_cut() {
        let mut rate = ControlRate::new(LIMIT, 0);
        for second in 0..1000u32 {
            assert!(rate.admit(LIMIT, second * 100, 10));
            assert!(rate.admit(LIMIT, second * 100 + 50, 10));
        }
    }

    #[test]
    fn a_flood_is_cut_after_the_burst() {
        let mut rate = ControlRate::new(LIMIT, 7);
        let admitted = (0..1000).take_while(|_| rate.admit(LIMIT, 7, 10)).count();
        assert_eq!(admitted, 3);
    }

    #[test]
    fn the_tick_counter_wrapping_is_harmless() {
        let mut rate = ControlRate::new(LIMIT, u32::MAX - 10);
        for _ in 0..3 {
            assert!(rate.admit(LIMIT, u32::MAX - 10, 10));
        }
        assert!(rate.admit(LIMIT, 40, 10), "51 ticks later, across the wrap");
    }

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

    #[test]
    fn control_rate_is_small() {
        assert_eq!(std::mem::size_of::<ControlRate>(), 8);
    }
}
