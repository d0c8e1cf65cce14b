//! The reactors' time: 10 ms ticks counted in a `u64` from the gateway's start, so a deadline
//! computed as `now + ticks` never wraps (a `u32` of 10 ms ticks wraps after 497 days of uptime,
//! and every deadline made after that was already due).
//!
//! A connection keeps only a 32-bit [`Stamp`] of its last read, to stay small; stamps are
//! compared by wrapping subtraction, which is exact for any gap under 497 days, far above
//! every interval the reactor measures with them (the read-wait, a control-frame refill).

use std::time::{Duration, Instant};

/// Milliseconds per tick: deadlines are seconds long, 10 ms is plenty of precision.
pub(crate) const TICK_MS: u64 = 10;

/// The low 32 bits of a tick, kept per connection.
pub(crate) type Stamp = u32;

/// A reactor's clock. Reads the monotonic clock; everything else is arithmetic on ticks.
pub(crate) struct ReactorClock {
    epoch: Instant,
    /// The tick count at `epoch`: 0 in service; tests start it near a wrap point.
    start: u64,
}

impl ReactorClock {
    pub(crate) fn new(start: u64) -> Self {
        ReactorClock {
            epoch: Instant::now(),
            start,
        }
    }

    /// The current tick.
    pub(crate) fn now(&self) -> u64 {
        let elapsed = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.start.saturating_add(elapsed / TICK_MS)
    }
}

/// A duration in ticks, rounded up and at least one, so a deadline is never "now".
pub(crate) fn ticks(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .div_ceil(TICK_MS)
        .max(1)
}

/// What a connection keeps of tick `now`.
pub(crate) fn stamp(now: u64) -> Stamp {
    now as u32 // the low bits on purpose: see `since`
}

/// Ticks from `then` (a stamp) to `now`.
pub(crate) fn since(now: u64, then: Stamp) -> u64 {
    u64::from(stamp(now).wrapping_sub(then))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The old wrap point of a `u32` tick count: 2^32 ticks of 10 ms, 497 days.
    const OLD_WRAP: u64 = 1 << 32;

    #[test]
    fn a_deadline_made_just_before_the_old_wrap_lies_after_it() {
        let clock = ReactorClock::new(OLD_WRAP - 5);
        let now = clock.now();
        let deadline = now + ticks(Duration::from_secs(10));
        assert!(deadline > OLD_WRAP, "{deadline} is not past the old wrap");
        assert_eq!(deadline - now, 1000);
    }

    #[test]
    fn stamps_measure_gaps_across_the_old_wrap() {
        let read_at = OLD_WRAP - 30;
        let stamp = stamp(read_at);
        assert_eq!(since(read_at, stamp), 0);
        assert_eq!(since(OLD_WRAP + 70, stamp), 100);
        assert_eq!(since(3 * OLD_WRAP + 7, super::stamp(3 * OLD_WRAP - 1)), 8);
    }

    #[test]
    fn durations_round_up_to_whole_ticks_and_never_to_zero() {
        assert_eq!(ticks(Duration::ZERO), 1);
        assert_eq!(ticks(Duration::from_millis(1)), 1);
        assert_eq!(ticks(Duration::from_millis(10)), 1);
        assert_eq!(ticks(Duration::from_millis(11)), 2);
        assert_eq!(ticks(Duration::from_secs(180)), 18_000);
        assert_eq!(ticks(Duration::MAX), u64::MAX.div_ceil(TICK_MS));
    }

    #[test]
    fn the_clock_starts_where_it_is_told_and_moves_forward() {
        let clock = ReactorClock::new(OLD_WRAP - 1);
        let first = clock.now();
        assert!(first >= OLD_WRAP - 1);
        std::thread::sleep(Duration::from_millis(25));
        assert!(clock.now() >= first + 2);
    }
}
