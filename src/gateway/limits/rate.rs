//! A rate as one `u32` per connection: the generic cell-rate algorithm (GCRA), the token
//! bucket written as the time its next cell is due. `burst` messages may come at once and
//! `per_second` on average; past that, `grace` more are let through marked as over the rate
//! (each pushing the due time further on, so a sender that ignores the marks runs out of
//! them), and the next one says close.
//!
//! Sans-I/O: time comes in as the reactor's ticks. The due time is kept in 1/1024 of a tick
//! (about 10 µs) so that rates of thousands a second keep their precision; that count wraps
//! every 11.6 hours of silence, and a due time further ahead than any sender could have pushed
//! it is taken for a stale one (a long-idle connection's) and started afresh, so the wrap costs
//! no refusal. Refusals never move the due time, so a closed-for-flooding verdict is final
//! only because the caller closes.

/// Units of the due time per reactor tick.
const UNITS_PER_TICK: u64 = 1024;

/// A rate limit: `burst` at once, `per_second` on average, then `grace` marked as over it
/// before the verdict is to close. `per_second == 0` turns it off. Messages read in one
/// reactor tick (10 ms) count as simultaneous, so a burst under a hundredth of the rate caps
/// the rate at the burst per tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Messages (or frames) accepted at once after a quiet period.
    pub burst: u32,
    /// Messages per second accepted on average, indefinitely; 0: no limit.
    pub per_second: u32,
    /// Messages past the rate still let through, marked [`Verdict::OverRate`], before
    /// [`Verdict::Close`]: room for a handler to answer "slow down" (0: close at once).
    pub grace: u32,
}

impl RateLimit {
    /// No limit at all.
    pub const OFF: RateLimit = RateLimit {
        burst: 0,
        per_second: 0,
        grace: 0,
    };

    /// Whether this limit judges anything.
    pub fn is_on(&self) -> bool {
        self.per_second > 0
    }

    /// Units between two messages at the average rate (at least 1).
    fn interval(&self, tick_ms: u64) -> u64 {
        let units_per_second = UNITS_PER_TICK * 1000 / tick_ms.max(1);
        let per_second = u64::from(self.per_second.max(1));
        ((units_per_second + per_second / 2) / per_second).max(1)
    }
}

/// What one message is, judged against a [`RateLimit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limit.
    Admit,
    /// Past the limit, within its grace: the handler decides (the chat server answers
    /// RATE_LIMITED).
    OverRate,
    /// Past the limit and its grace: close the connection.
    Close,
}

/// One connection's cell: when its next message is due, in 1/1024 ticks, wrapping.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RateCell {
    due: u32,
}

impl RateCell {
    /// A cell with its whole burst available at tick `now`.
    pub(crate) fn new(now: u64) -> Self {
        RateCell { due: units(now) }
    }

    /// Judges one message at tick `now` (`tick_ms` milliseconds per tick).
    pub(crate) fn judge(&mut self, limit: RateLimit, now: u64, tick_ms: u64) -> Verdict {
        if !limit.is_on() {
            return Verdict::Admit;
        }
        let interval = limit.interval(tick_ms);
        let tolerance = interval * u64::from(limit.burst.saturating_sub(1));
        let most_ahead = tolerance + interval * (u64::from(limit.grace) + 1);
        let now = units(now);
        let mut ahead = u64::from(self.due.wrapping_sub(now));
        if ahead > most_ahead {
            // In the past (wrapped), or stale from before a long silence: start afresh.
            ahead = 0;
        }
        let verdict = if ahead <= tolerance {
            Verdict::Admit
        } else if ahead <= tolerance + interval * u64::from(limit.grace) {
            Verdict::OverRate
        } else {
            return Verdict::Close;
        };
        self.due = now.wrapping_add((ahead + interval).min(u64::from(u32::MAX)) as u32);
        verdict
    }
}

impl RateCell {
    /// Whether the whole burst is available again at `now` (nothing owed): a cell in this
    /// state says nothing a fresh one would not, so it may be forgotten.
    pub(crate) fn is_rested(&self, limit: RateLimit, now: u64, tick_ms: u64) -> bool {
        if !limit.is_on() {
            return true;
        }
        let interval = limit.interval(tick_ms);
        let most_ahead =
            interval * (u64::from(limit.burst.saturating_sub(1)) + u64::from(limit.grace) + 1);
        let ahead = u64::from(self.due.wrapping_sub(units(now)));
        ahead == 0 || ahead > most_ahead
    }
}

fn units(ticks: u64) -> u32 {
    ticks.wrapping_mul(UNITS_PER_TICK) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: u64 = 10;

    fn limit(burst: u32, per_second: u32, grace: u32) -> RateLimit {
        RateLimit {
            burst,
            per_second,
            grace,
        }
    }

    fn run(cell: &mut RateCell, limit: RateLimit, now: u64, n: usize) -> Vec<Verdict> {
        (0..n).map(|_| cell.judge(limit, now, TICK)).collect()
    }

    #[test]
    fn a_burst_then_the_grace_then_close() {
        let l = limit(3, 2, 2);
        let mut cell = RateCell::new(100);
        use Verdict::*;
        assert_eq!(
            run(&mut cell, l, 100, 6),
            [Admit, Admit, Admit, OverRate, OverRate, Close]
        );
        assert_eq!(
            cell.judge(l, 100, TICK),
            Close,
            "a close does not move the due time"
        );
    }

    #[test]
    fn without_grace_the_first_message_past_the_burst_closes() {
        let l = limit(3, 2, 0);
        let mut cell = RateCell::new(0);
        use Verdict::*;
        assert_eq!(run(&mut cell, l, 0, 4), [Admit, Admit, Admit, Close]);
        // 2 a second: one message's credit every 500 ms (50 ticks).
        let mut cell = RateCell::new(0);
        run(&mut cell, l, 0, 3);
        assert_eq!(cell.judge(l, 49, TICK), Close);
        assert_eq!(cell.judge(l, 50, TICK), Admit);
        assert_eq!(cell.judge(l, 50, TICK), Close);
    }

    #[test]
    fn a_sender_at_the_rate_is_never_marked() {
        let l = limit(5, 100, 0);
        let mut cell = RateCell::new(0);
        // 100 a second is one a tick.
        for tick in 0..100_000u64 {
            assert_eq!(cell.judge(l, tick, TICK), Verdict::Admit, "tick {tick}");
        }
    }

    #[test]
    fn a_sender_that_slows_down_after_over_rate_is_served_again() {
        let l = limit(2, 10, 5);
        let mut cell = RateCell::new(0);
        assert_eq!(
            run(&mut cell, l, 0, 4),
            [
                Verdict::Admit,
                Verdict::Admit,
                Verdict::OverRate,
                Verdict::OverRate
            ]
        );
        // Two over-rate messages cost two intervals (200 ms) of waiting on top: served again
        // at 300 ms, not at 100 ms.
        let mut early = cell;
        assert_eq!(early.judge(l, 29, TICK), Verdict::OverRate);
        assert_eq!(cell.judge(l, 30, TICK), Verdict::Admit);
    }

    #[test]
    fn fast_rates_keep_their_precision() {
        // Messages within one tick arrive at once as far as the cell knows: a burst under a
        // tick's worth of the rate would cap the rate at the burst per tick.
        let l = limit(50, 4000, 0);
        let mut cell = RateCell::new(0);
        // One second (ticks 0 to 100): 4000 admitted on top of the burst, give or take the
        // rounding of the interval (26 units for 25.6).
        let mut admitted = 0;
        for tick in 0..=100u64 {
            while cell.judge(l, tick, TICK) == Verdict::Admit {
                admitted += 1;
            }
        }
        assert!((3970..=4100).contains(&admitted), "{admitted} in a second");
    }

    #[test]
    fn a_quiet_connection_never_holds_more_than_the_burst() {
        let l = limit(3, 2, 0);
        let mut cell = RateCell::new(0);
        use Verdict::*;
        assert_eq!(run(&mut cell, l, 100_000, 4), [Admit, Admit, Admit, Close]);
    }

    #[test]
    fn the_wrap_of_the_due_time_is_harmless() {
        let l = limit(3, 2, 0);
        // 2^32 units is 2^22 ticks: start just before the wrap, and long after several.
        for start in [(1u64 << 22) - 3, 5 * (1u64 << 22) + 17, u64::MAX / 2048] {
            let mut cell = RateCell::new(start);
            assert_eq!(run(&mut cell, l, start, 3), [Verdict::Admit; 3]);
            assert_eq!(cell.judge(l, start, TICK), Verdict::Close);
            assert_eq!(
                cell.judge(l, start + 50, TICK),
                Verdict::Admit,
                "across the wrap"
            );
            // Silent for hours, or for a whole wrap and a bit: the full burst again.
            for later in [start + 360_000, start + (1 << 22) + 7] {
                let mut cell = cell;
                assert_eq!(run(&mut cell, l, later, 3), [Verdict::Admit; 3], "{later}");
            }
        }
    }

    #[test]
    fn a_cell_rests_once_its_debt_is_paid() {
        let l = limit(3, 2, 0);
        let mut cell = RateCell::new(0);
        assert!(cell.is_rested(l, 0, TICK));
        run(&mut cell, l, 0, 2);
        assert!(!cell.is_rested(l, 0, TICK));
        assert!(!cell.is_rested(l, 99, TICK));
        assert!(cell.is_rested(l, 100, TICK), "two intervals later");
        assert!(cell.is_rested(l, 100_000, TICK));
    }

    #[test]
    fn off_admits_everything() {
        let mut cell = RateCell::new(0);
        assert!(run(&mut cell, RateLimit::OFF, 0, 10_000)
            .iter()
            .all(|v| *v == Verdict::Admit));
    }

    #[test]
    fn a_cell_is_four_bytes() {
        assert_eq!(std::mem::size_of::<RateCell>(), 4);
    }
}
