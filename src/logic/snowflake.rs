//! Snowflake message ids: unique, time-ordered 64-bit ids made without coordination.
//!
//! Invariant: one [`SnowflakeGenerator`] hands out strictly increasing ids, whatever its clock
//! does; a clock that steps backwards never yields a duplicate or a smaller id. It never reads
//! the clock itself unless asked ([`SnowflakeGenerator::next_id_now`]), never sleeps, never spins.
//!
//! Layout, most significant bit first:
//!
//! ```text
//!  63  62                                   22 21          12 11            0
//! +---+---------------------------------------+--------------+--------------+
//! | 0 | milliseconds since 2026-01-01T00:00Z  |   node id    |   sequence   |
//! |   |               41 bits                 |   10 bits    |   12 bits    |
//! +---+---------------------------------------+--------------+--------------+
//! ```
//!
//! The top bit stays zero, so every id is also a positive `i64` (SQLite's INTEGER). 41 bits of
//! milliseconds last 2^41 ms ≈ 69.7 years: ids run out in September 2095. Up to 1024 nodes, each
//! issuing up to 4096 ids per millisecond.
//!
//! Two processes of one node overlap while a restart hands the listeners over (README,
//! "Operations"), with the same node id. Each then keeps to one half of every millisecond's
//! sequence ([`IdLane`]: the old one to the half it had, or the low half if it had the whole;
//! the new one to the other), and the new one starts after the old one's last millisecond, so
//! no id is made twice. A lane is kept for the process's life: 2,048 ids per millisecond.
//!
//! When the clock steps backwards, the generator keeps its last millisecond and goes on counting
//! the sequence. When the sequence of a millisecond is used up (4096 ids), it borrows the next
//! millisecond: logical time runs ahead of the wall clock for a while, and the clock catches up
//! later. The time read back from an id ([`id_time_ms`]) is this logical time, so it can be a
//! little ahead of the wall clock, never behind the previous id's.

use std::time::{SystemTime, UNIX_EPOCH};

use thiserror::Error;

/// The custom epoch, 2026-01-01T00:00:00Z, in milliseconds since the Unix epoch.
pub const EPOCH_UNIX_MS: u64 = 1_767_225_600_000;

/// Bits of the millisecond field.
pub const TIME_BITS: u32 = 41;
/// Bits of the node id field.
pub const NODE_BITS: u32 = 10;
/// Bits of the per-millisecond sequence field.
pub const SEQUENCE_BITS: u32 = 12;

/// The largest node id (1023).
pub const MAX_NODE_ID: u16 = (1 << NODE_BITS) - 1;
/// The last millisecond since [`EPOCH_UNIX_MS`] an id can carry.
pub const MAX_TIME_MS: u64 = (1 << TIME_BITS) - 1;
const MAX_SEQUENCE: u16 = (1 << SEQUENCE_BITS) - 1;

const NODE_SHIFT: u32 = SEQUENCE_BITS;
const TIME_SHIFT: u32 = SEQUENCE_BITS + NODE_BITS;

/// A node id outside `0..=1023` was configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("snowflake node id {node} is out of range (0..={max})", max = MAX_NODE_ID)]
pub struct NodeIdOutOfRange {
    /// The refused node id.
    pub node: u16,
}

/// No id can be made: the logical clock would pass the last representable millisecond
/// (September 2095, or a clock reading that far in the future).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("snowflake ids exhausted: {ms} ms after 2026-01-01 is beyond the 41-bit range")]
pub struct IdSpaceExhausted {
    /// The millisecond since [`EPOCH_UNIX_MS`] that could not be encoded.
    pub ms: u64,
}

/// The part of each millisecond's sequence a generator gives out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdLane {
    /// All 4,096: the only process of its node id.
    #[default]
    Whole,
    /// 0..=2047.
    Low,
    /// 2048..=4095.
    High,
}

impl IdLane {
    /// The first and last sequence number of the lane.
    const fn range(self) -> (u16, u16) {
        const HALF: u16 = 1 << (SEQUENCE_BITS - 1);
        match self {
            IdLane::Whole => (0, MAX_SEQUENCE),
            IdLane::Low => (0, HALF - 1),
            IdLane::High => (HALF, MAX_SEQUENCE),
        }
    }

    /// What a process keeps when a new one takes over: its half, or the low half.
    pub const fn keep(self) -> IdLane {
        match self {
            IdLane::Whole | IdLane::Low => IdLane::Low,
            IdLane::High => IdLane::High,
        }
    }

    /// The half a new process takes beside an old one that keeps `self` (after [`keep`]).
    ///
    /// [`keep`]: IdLane::keep
    pub const fn other(self) -> IdLane {
        match self {
            IdLane::Whole | IdLane::Low => IdLane::High,
            IdLane::High => IdLane::Low,
        }
    }

    /// The lane's number on the handover socket.
    pub const fn code(self) -> u8 {
        match self {
            IdLane::Whole => 0,
            IdLane::Low => 1,
            IdLane::High => 2,
        }
    }

    /// The lane numbered `code`, if any.
    pub const fn from_code(code: u8) -> Option<IdLane> {
        match code {
            0 => Some(IdLane::Whole),
            1 => Some(IdLane::Low),
            2 => Some(IdLane::High),
            _ => None,
        }
    }
}

/// Makes the ids of one node. Not shared between threads: the logic core owns one.
#[derive(Debug, Clone)]
pub struct SnowflakeGenerator {
    node: u16,
    lane: IdLane,
    /// The (millisecond since the epoch, sequence) of the last id issued, if any.
    last: Option<(u64, u16)>,
}

impl SnowflakeGenerator {
    /// A generator for node `node` (from configuration; `0..=1023`).
    pub fn new(node: u16) -> Result<Self, NodeIdOutOfRange> {
        if node > MAX_NODE_ID {
            return Err(NodeIdOutOfRange { node });
        }
        Ok(Self {
            node,
            lane: IdLane::Whole,
            last: None,
        })
    }

    /// From now on, gives out only sequence numbers of `lane` (ids still increase).
    pub fn restrict(&mut self, lane: IdLane) {
        self.lane = lane;
    }

    /// The lane given out now.
    pub fn lane(&self) -> IdLane {
        self.lane
    }

    /// Makes every later id's millisecond (since the Unix epoch) later than `unix_ms`: a new
    /// process starts after the last millisecond the old one used.
    pub fn start_after(&mut self, unix_ms: u64) {
        let ms = unix_ms.saturating_sub(EPOCH_UNIX_MS);
        if self.last.is_none_or(|(last_ms, _)| last_ms < ms) {
            self.last = Some((ms, MAX_SEQUENCE));
        }
    }

    /// The (logical) millisecond of the last id made, since the Unix epoch.
    pub fn last_ms(&self) -> Option<u64> {
        self.last.map(|(ms, _)| ms + EPOCH_UNIX_MS)
    }

    /// This generator's node id.
    pub fn node(&self) -> u16 {
        self.node
    }

    /// The next id, given the wall clock in milliseconds since the Unix epoch.
    ///
    /// The id is greater than every id this generator issued before, whatever `now_unix_ms`
    /// is. A reading before 2026 counts as the epoch itself. A reading past 2095 is refused
    /// and leaves the generator as it was, so a single wild reading does not poison it.
    pub fn next_id(&mut self, now_unix_ms: u64) -> Result<u64, IdSpaceExhausted> {
        let now = now_unix_ms.saturating_sub(EPOCH_UNIX_MS);
        let (first, last) = self.lane.range();
        let (ms, sequence) = match self.last {
            Some((last_ms, last_sequence)) if now <= last_ms => {
                if last_sequence < first {
                    // Restricted to the high half within a millisecond begun lower.
                    (last_ms, first)
                } else if last_sequence < last {
                    (last_ms, last_sequence + 1)
                } else {
                    // The millisecond is full: borrow the next one rather than wait for it.
                    (last_ms + 1, first)
                }
            }
            _ => (now, first),
        };
        if ms > MAX_TIME_MS {
            return Err(IdSpaceExhausted { ms });
        }
        self.last = Some((ms, sequence));
        Ok(ms << TIME_SHIFT | u64::from(self.node) << NODE_SHIFT | u64::from(sequence))
    }

    /// [`next_id`](Self::next_id) with the system clock.
    pub fn next_id_now(&mut self) -> Result<u64, IdSpaceExhausted> {
        self.next_id(unix_now_ms())
    }
}

/// The system clock in milliseconds since the Unix epoch (0 if it reads before 1970).
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The (logical) time an id was made, in milliseconds since the Unix epoch.
pub fn id_time_ms(id: u64) -> u64 {
    ((id >> TIME_SHIFT) & MAX_TIME_MS) + EPOCH_UNIX_MS
}

/// The smallest id any node can make at `unix_ms` (0 before the epoch): every id made at or
/// after that millisecond is at least this, every id made before it is smaller.
pub fn first_id_at(unix_ms: u64) -> u64 {
    let ms = unix_ms.saturating_sub(EPOCH_UNIX_MS).min(MAX_TIME_MS);
    ms << TIME_SHIFT
}

/// The node that made an id.
pub fn id_node(id: u64) -> u16 {
    // The mask keeps 10 bits, so the cast cannot truncate.
    ((id >> NODE_SHIFT) & u64::from(MAX_NODE_ID)) as u16
}

/// The sequence number of an id within its millisecond.
pub fn id_sequence(id: u64) -> u16 {
    (id & u64::from(MAX_SEQUENCE)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: u64 = EPOCH_UNIX_MS + 1_000_000;

    #[test]
    fn an_old_and_a_new_process_of_one_node_never_make_the_same_id() {
        let mut old = SnowflakeGenerator::new(5).unwrap();
        let mut ids = std::collections::HashSet::new();
        let mut last_old = 0;
        for _ in 0..3000 {
            last_old = old.next_id(T0).unwrap();
            assert!(ids.insert(last_old));
        }
        // The handover: the old keeps the low half, the new takes the high one and starts
        // after the old's last millisecond.
        old.restrict(old.lane().keep());
        let mut new = SnowflakeGenerator::new(5).unwrap();
        new.restrict(old.lane().other());
        new.start_after(old.last_ms().unwrap());
        assert_eq!((old.lane(), new.lane()), (IdLane::Low, IdLane::High));
        let mut last_new = 0;
        for round in 0..10_000u64 {
            let now = T0 + round / 3000;
            let id = old.next_id(now).unwrap();
            assert!(id > last_old && ids.insert(id), "old made {id} again");
            assert!(id_sequence(id) < 2048);
            last_old = id;
            let id = new.next_id(now).unwrap();
            assert!(id > last_new && ids.insert(id), "new made {id} again");
            assert!(id_sequence(id) >= 2048);
            last_new = id;
        }
        // The next handover: the new (high) keeps its half, the one after it takes the low.
        assert_eq!(new.lane().keep(), IdLane::High);
        assert_eq!(new.lane().keep().other(), IdLane::Low);
        for lane in [IdLane::Whole, IdLane::Low, IdLane::High] {
            assert_eq!(IdLane::from_code(lane.code()), Some(lane));
        }
    }

    #[test]
    fn epoch_is_2026_01_01_utc() {
        // 56 years of 365 days plus 14 leap days (1972..=2024), in milliseconds.
        assert_eq!(EPOCH_UNIX_MS, (56 * 365 + 14) * 86_400_000);
    }

    #[test]
    fn range_is_about_69_years() {
        let years = MAX_TIME_MS as f64 / (365.25 * 86_400_000.0);
        assert!((69.0..70.0).contains(&years), "{years}");
    }

    #[test]
    fn node_id_range_is_checked() {
        assert!(SnowflakeGenerator::new(0).is_ok());
        assert_eq!(SnowflakeGenerator::new(1023).unwrap().node(), 1023);
        assert_eq!(
            SnowflakeGenerator::new(1024).unwrap_err(),
            NodeIdOutOfRange { node: 1024 }
        );
        assert!(SnowflakeGenerator::new(u16::MAX).is_err());
    }

    #[test]
    fn extractors_read_back_time_node_and_sequence() {
        let mut generator = SnowflakeGenerator::new(1023).unwrap();
        let first = generator.next_id(T0).unwrap();
        let second = generator.next_id(T0).unwrap();
        assert_eq!(id_time_ms(first), T0);
        assert_eq!(id_node(first), 1023);
        assert_eq!(id_sequence(first), 0);
        assert_eq!(id_sequence(second), 1);
        assert_eq!(id_time_ms(second), T0);
    }

    #[test]
    fn ids_are_positive_i64_even_at_the_end_of_the_range() {
        let mut generator = SnowflakeGenerator::new(MAX_NODE_ID).unwrap();
        let id = generator.next_id(EPOCH_UNIX_MS + MAX_TIME_MS).unwrap();
        assert!(i64::try_from(id).is_ok());
        assert_eq!(id_time_ms(id), EPOCH_UNIX_MS + MAX_TIME_MS);
        assert_eq!(id_node(id), MAX_NODE_ID);
    }

    #[test]
    fn a_new_millisecond_restarts_the_sequence() {
        let mut generator = SnowflakeGenerator::new(7).unwrap();
        generator.next_id(T0).unwrap();
        generator.next_id(T0).unwrap();
        let id = generator.next_id(T0 + 1).unwrap();
        assert_eq!((id_time_ms(id), id_sequence(id)), (T0 + 1, 0));
    }

    #[test]
    fn clock_stepping_backwards_keeps_ids_increasing() {
        let mut generator = SnowflakeGenerator::new(3).unwrap();
        let before = generator.next_id(T0).unwrap();
        let after_step_back = generator.next_id(T0 - 5_000).unwrap();
        let still_back = generator.next_id(T0 - 4_000).unwrap();
        assert!(before < after_step_back && after_step_back < still_back);
        // The generator stays on its last millisecond and counts the sequence on.
        assert_eq!(id_time_ms(still_back), T0);
        assert_eq!(id_sequence(still_back), 2);
        // Once the clock has caught up, time moves again.
        let caught_up = generator.next_id(T0 + 1).unwrap();
        assert_eq!((id_time_ms(caught_up), id_sequence(caught_up)), (T0 + 1, 0));
    }

    #[test]
    fn sequence_overflow_borrows_the_next_millisecond() {
        let mut generator = SnowflakeGenerator::new(1).unwrap();
        let mut previous = 0;
        for expected_sequence in 0..=MAX_SEQUENCE {
            let id = generator.next_id(T0).unwrap();
            assert_eq!(id_sequence(id), expected_sequence);
            assert!(id > previous);
            previous = id;
        }
        let borrowed = generator.next_id(T0).unwrap();
        assert!(borrowed > previous);
        assert_eq!((id_time_ms(borrowed), id_sequence(borrowed)), (T0 + 1, 0));
        // The real T0 + 1 arriving later continues after the borrowed id.
        let next = generator.next_id(T0 + 1).unwrap();
        assert_eq!((id_time_ms(next), id_sequence(next)), (T0 + 1, 1));
    }

    #[test]
    fn clock_before_the_epoch_counts_as_the_epoch() {
        let mut generator = SnowflakeGenerator::new(0).unwrap();
        let id = generator.next_id(0).unwrap();
        assert_eq!(id_time_ms(id), EPOCH_UNIX_MS);
        assert!(generator.next_id(0).unwrap() > id);
    }

    #[test]
    fn a_reading_past_the_range_is_refused_without_harm() {
        let mut generator = SnowflakeGenerator::new(0).unwrap();
        let id = generator.next_id(T0).unwrap();
        let wild = EPOCH_UNIX_MS + MAX_TIME_MS + 1;
        assert_eq!(
            generator.next_id(wild),
            Err(IdSpaceExhausted {
                ms: MAX_TIME_MS + 1
            })
        );
        let next = generator.next_id(T0).unwrap();
        assert_eq!((id_time_ms(next), id_sequence(next)), (T0, 1));
        assert!(next > id);
    }

    #[test]
    fn borrowing_past_the_last_millisecond_is_refused() {
        let mut generator = SnowflakeGenerator::new(0).unwrap();
        let last = EPOCH_UNIX_MS + MAX_TIME_MS;
        for _ in 0..=MAX_SEQUENCE {
            generator.next_id(last).unwrap();
        }
        assert!(generator.next_id(last).is_err());
        assert!(generator.next_id(last).is_err());
    }

    #[test]
    fn system_clock_ids_increase() {
        let mut generator = SnowflakeGenerator::new(9).unwrap();
        let first = generator.next_id_now().unwrap();
        let second = generator.next_id_now().unwrap();
        assert!(second > first);
        assert_eq!(id_node(second), 9);
        assert!(id_time_ms(first) >= EPOCH_UNIX_MS);
    }

    proptest! {
        #[test]
        fn ids_strictly_increase_under_any_clock(
            node in 0..=MAX_NODE_ID,
            start in EPOCH_UNIX_MS..EPOCH_UNIX_MS + (1 << 40),
            // Steps up and down, many of them zero so sequences fill and overflow.
            steps in prop::collection::vec(
                prop_oneof![3 => Just(0i64), 2 => -3i64..=3, 1 => -100_000i64..=100_000],
                1..6_000,
            ),
        ) {
            let mut generator = SnowflakeGenerator::new(node).unwrap();
            let mut clock = start;
            let mut previous: Option<u64> = None;
            for step in steps {
                clock = clock.saturating_add_signed(step);
                let id = generator.next_id(clock).unwrap();
                prop_assert_eq!(id_node(id), node);
                if let Some(previous) = previous {
                    prop_assert!(id > previous, "{} after {}", id, previous);
                    prop_assert!(id_time_ms(id) >= id_time_ms(previous));
                }
                previous = Some(id);
            }
        }
    }

    #[test]
    fn first_id_at_bounds_the_ids_of_that_millisecond() {
        let t = EPOCH_UNIX_MS + 123_456;
        let mut gen = SnowflakeGenerator::new(MAX_NODE_ID).unwrap();
        let before = gen.next_id(t - 1).unwrap();
        let at = SnowflakeGenerator::new(0).unwrap().next_id(t).unwrap();
        assert!(before < first_id_at(t));
        assert!(first_id_at(t) <= at);
        assert_eq!(id_time_ms(first_id_at(t)), t);
        assert_eq!(first_id_at(0), 0, "before the epoch");
    }
}
