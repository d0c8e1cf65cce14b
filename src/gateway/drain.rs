//! The pace of a drain: which of the connections open when it began are due to be closed
//! by now, so that they go evenly over the drain period instead of in one burst.
//!
//! Sans-I/O and driver-independent: the driver gives the connections and the tick the drain
//! began, then asks at every pass which are due. Invariant: by tick `start + elapsed`, at
//! least `total * elapsed / period` of them (rounded up) have been handed out, and all of
//! them once the period is over; never more than that, so a reactor that wakes late catches
//! up in one pass but never runs ahead.

use std::collections::VecDeque;

use super::conn_id::ConnId;

/// The connections of one reactor still to close in a drain, and its schedule.
#[derive(Debug)]
pub(crate) struct DrainSpread {
    waiting: VecDeque<ConnId>,
    total: u64,
    handed_out: u64,
    start: u64,
    period: u64,
}

impl DrainSpread {
    /// A drain beginning at tick `start` over `period` ticks (0: everything at once).
    pub(crate) fn new(conns: Vec<ConnId>, start: u64, period: u64) -> DrainSpread {
        DrainSpread {
            total: conns.len() as u64,
            waiting: conns.into(),
            handed_out: 0,
            start,
            period,
        }
    }

    /// The next connection due at tick `now`, if any.
    pub(crate) fn next_due(&mut self, now: u64) -> Option<ConnId> {
        let elapsed = now.saturating_sub(self.start);
        let due = if elapsed >= self.period {
            self.total
        } else {
            // u128: a million connections times a period of days in ticks fits easily.
            ((self.total as u128 * elapsed as u128).div_ceil(self.period as u128)) as u64
        };
        if self.handed_out >= due {
            return None;
        }
        let conn = self.waiting.pop_front()?;
        self.handed_out += 1;
        Some(conn)
    }

    /// A connection opened after the drain began (one the kernel had queued for this
    /// reactor when it stopped accepting): closed within the period like the others.
    pub(crate) fn add(&mut self, conn: ConnId) {
        self.waiting.push_back(conn);
        self.total += 1;
    }

    /// Whether every connection has been handed out.
    #[cfg(test)]
    pub(crate) fn is_done(&self) -> bool {
        self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conns(n: u32) -> Vec<ConnId> {
        (0..n).map(|key| ConnId::new(0, key, 0)).collect()
    }

    fn due_at(spread: &mut DrainSpread, now: u64) -> usize {
        std::iter::from_fn(|| spread.next_due(now)).count()
    }

    #[test]
    fn closes_go_evenly_over_the_period() {
        let mut spread = DrainSpread::new(conns(1000), 500, 100);
        assert_eq!(due_at(&mut spread, 500), 0);
        let mut handed = 0;
        for tick in 501..=600 {
            let now = due_at(&mut spread, tick);
            assert_eq!(now, 10, "tick {tick}");
            handed += now;
        }
        assert_eq!(handed, 1000);
        assert!(spread.is_done());
    }

    #[test]
    fn a_late_wake_catches_up_without_running_ahead() {
        let mut spread = DrainSpread::new(conns(300), 0, 30);
        assert_eq!(due_at(&mut spread, 10), 100);
        assert_eq!(due_at(&mut spread, 10), 0);
        assert_eq!(due_at(&mut spread, 11), 10);
        assert_eq!(due_at(&mut spread, 1000), 190);
        assert!(spread.is_done());
    }

    #[test]
    fn few_connections_over_a_long_period_are_spread_too() {
        let mut spread = DrainSpread::new(conns(3), 0, 3000);
        let times: Vec<u64> = (0..=3000)
            .filter(|&tick| due_at(&mut spread, tick) > 0)
            .collect();
        assert_eq!(times, vec![1, 1001, 2001]);
    }

    #[test]
    fn a_connection_added_late_is_handed_out_by_the_end_of_the_period() {
        let mut spread = DrainSpread::new(conns(10), 0, 100);
        assert_eq!(due_at(&mut spread, 50), 5);
        spread.add(ConnId::new(0, 99, 0));
        let rest: Vec<ConnId> = (51..=100)
            .flat_map(|tick| std::iter::from_fn(|| spread.next_due(tick)).collect::<Vec<_>>())
            .collect();
        assert_eq!(rest.len(), 6);
        assert_eq!(rest.last(), Some(&ConnId::new(0, 99, 0)));
        assert!(spread.is_done());
    }

    #[test]
    fn a_zero_period_hands_out_everything_at_once() {
        let mut spread = DrainSpread::new(conns(5), 7, 0);
        assert_eq!(due_at(&mut spread, 7), 5);
    }
}
