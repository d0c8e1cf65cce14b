//! One level of the timer wheel (64 slot lists and a bitmap of the occupied ones) and the tick
//! arithmetic that decides which level and slot a deadline lives in. Invariant kept by the wheel:
//! a level's slot under `now` is always empty, so every occupied slot starts 1..=63 slots ahead.
//! Pure integer arithmetic: no clock, no allocation, no unsafe.

/// Levels in the wheel; with [`SLOTS`] slots each they reach 2^36 ticks ahead.
pub(super) const LEVELS: usize = 6;
/// Slots per level. Must be 64: one bit per slot in a `u64` bitmap.
pub(super) const SLOTS: usize = 64;
/// log2(SLOTS): a slot of level `l` is `1 << (SLOT_BITS * l)` ticks wide.
const SLOT_BITS: u32 = 6;
/// The null link of the intrusive lists.
pub(super) const NIL: u32 = u32::MAX;
/// The level that takes deadlines beyond every level's reach (they are re-cascaded later).
pub(super) const TOP: usize = LEVELS - 1;

const fn shift(level: usize) -> u32 {
    SLOT_BITS * level as u32
}

/// Ticks covered by one slot of `level`: 64^level.
#[cfg(test)]
pub(super) const fn slot_width(level: usize) -> u64 {
    1 << shift(level)
}

/// Which of `level`'s slots covers `tick`; slot indices wrap every 64 slots.
pub(super) const fn slot_for(tick: u64, level: usize) -> usize {
    ((tick >> shift(level)) as usize) & (SLOTS - 1)
}

/// The lowest level whose ring reaches `deadline` from `now`, or `None` when none does
/// (then the entry is parked in the top level, see [`place`]). Requires `deadline > now`.
///
/// A level reaches a deadline when the deadline's slot is at most 63 slots after the slot of
/// `now`: the slot of `now` itself must stay empty, or a full turn would be ambiguous.
pub(super) fn level_for(now: u64, deadline: u64) -> Option<usize> {
    debug_assert!(deadline > now, "deadline {deadline} not after now {now}");
    (0..LEVELS).find(|&level| (deadline >> shift(level)) - (now >> shift(level)) < SLOTS as u64)
}

/// The (level, slot) that holds `deadline` seen from `now`. Requires `deadline > now`.
///
/// A deadline beyond the top level's reach goes to the top slot farthest from `now` (63 slots
/// ahead); that slot starts before the deadline, so the entry is re-placed then, never fired.
pub(super) fn place(now: u64, deadline: u64) -> (usize, usize) {
    match level_for(now, deadline) {
        Some(level) => (level, slot_for(deadline, level)),
        None => (TOP, (slot_for(now, TOP) + SLOTS - 1) % SLOTS),
    }
}

/// 64 slot lists of one level. A slot holds the index of its first entry, or [`NIL`]; bit `s`
/// of `occupied` is set exactly when slot `s` is not empty.
#[derive(Debug)]
pub(super) struct Level {
    occupied: u64,
    heads: [u32; SLOTS],
}

impl Level {
    pub(super) const EMPTY: Level = Level {
        occupied: 0,
        heads: [NIL; SLOTS],
    };

    #[cfg(test)]
    pub(super) fn occupied(&self) -> u64 {
        self.occupied
    }

    pub(super) fn head(&self, slot: usize) -> u32 {
        self.heads[slot]
    }

    /// Makes `first` the head of `slot`, keeping the bitmap in step.
    pub(super) fn set_head(&mut self, slot: usize, first: u32) {
        self.heads[slot] = first;
        if first == NIL {
            self.occupied &= !(1 << slot);
        } else {
            self.occupied |= 1 << slot;
        }
    }

    /// Empties `slot` and returns its former head, so the caller can walk the detached list.
    pub(super) fn take(&mut self, slot: usize) -> u32 {
        let first = self.heads[slot];
        self.set_head(slot, NIL);
        first
    }

    /// The start tick of the first occupied slot after `now` on this level (`level` is its
    /// index), or `None` if the level is empty.
    pub(super) fn next_slot_start(&self, level: usize, now: u64) -> Option<u64> {
        if self.occupied == 0 {
            return None;
        }
        let ahead = self
            .occupied
            .rotate_right(slot_for(now, level) as u32)
            .trailing_zeros();
        debug_assert!(ahead >= 1, "slot under now is occupied at level {level}");
        // Cannot overflow: an occupied slot starts at or before some entry's deadline (a u64).
        Some(((now >> shift(level)) + u64::from(ahead)) << shift(level))
    }

    /// Bitmap of the occupied slots that start in `(from, to]`: the slots that a move of the
    /// clock from `from` to `to` must empty.
    pub(super) fn due_between(&self, level: usize, from: u64, to: u64) -> u64 {
        let crossed = (to >> shift(level)).saturating_sub(from >> shift(level));
        let due = match crossed {
            0 => 0,
            1..=63 => ((1u64 << crossed) - 1).rotate_left(slot_for(from, level) as u32 + 1),
            _ => u64::MAX,
        };
        self.occupied & due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_width_is_64_to_the_level() {
        for level in 0..LEVELS {
            assert_eq!(slot_width(level), 64u64.pow(level as u32));
        }
    }

    #[test]
    fn slot_for_sweeps_every_slot_of_every_level_and_wraps() {
        for level in 0..LEVELS {
            let width = slot_width(level);
            for slot in 0..SLOTS as u64 {
                let start = slot * width;
                assert_eq!(slot_for(start, level), slot as usize);
                assert_eq!(slot_for(start + width - 1, level), slot as usize);
                // One and many full turns later, the same slot.
                assert_eq!(slot_for(start + 64 * width, level), slot as usize);
                assert_eq!(slot_for(start + 1000 * 64 * width, level), slot as usize);
            }
        }
        assert_eq!(slot_for(u64::MAX, 0), 63);
        assert_eq!(slot_for(u64::MAX, TOP), 63);
    }

    #[test]
    fn level_for_from_zero_is_the_base64_digit_count() {
        for bit in 0..36 {
            for deadline in [1u64 << bit, (1 << bit) + 1, (2 << bit) - 1] {
                assert_eq!(
                    level_for(0, deadline),
                    Some(bit / 6),
                    "deadline {deadline:#x}"
                );
            }
        }
        assert_eq!(level_for(0, 1 << 36), None);
        assert_eq!(level_for(0, u64::MAX), None);
    }

    #[test]
    fn level_for_boundaries_from_many_nows() {
        let nows = (0..300)
            .chain([4095, 4096, (1 << 30) - 1, (1 << 36) - 7, 1 << 40])
            .chain([u64::MAX - (1 << 37), u64::MAX - 64]);
        for now in nows {
            assert_eq!(level_for(now, now + 1), Some(0), "now {now}");
            for level in 0..LEVELS {
                // The last tick of the slot 63 slots past the slot of `now`.
                if (now >> shift(level)) + SLOTS as u64 > u64::MAX >> shift(level) {
                    continue; // that slot lies past u64::MAX
                }
                let last = (((now >> shift(level)) + SLOTS as u64) << shift(level)) - 1;
                assert_eq!(level_for(now, last), Some(level), "now {now} last {last}");
                let beyond = (level + 1 < LEVELS).then_some(level + 1);
                assert_eq!(level_for(now, last + 1), beyond, "now {now} last {last}");
            }
        }
    }

    #[test]
    fn level_for_is_not_an_xor_of_bits() {
        // 64 is one slot boundary away from 10, but only 54 ticks: level 0 still reaches it.
        assert_eq!(level_for(10, 64), Some(0));
        assert_eq!(level_for(10, 73), Some(0));
        assert_eq!(level_for(10, 74), Some(1));
    }

    #[test]
    fn place_beyond_reach_parks_in_the_top_slot_before_now() {
        let top_width = slot_width(TOP);
        for now_slot in [0u64, 1, 17, 63, 64, 65] {
            let now = now_slot * top_width + 12345;
            let (level, slot) = place(now, now + 64 * top_width);
            assert_eq!(level, TOP);
            assert_eq!(slot, (now_slot as usize + 63) % SLOTS);
            assert_eq!(place(now, u64::MAX), (TOP, slot));
        }
        // Within reach, the top level uses the deadline's own slot.
        assert_eq!(place(0, 63 * top_width), (TOP, 63));
    }

    #[test]
    fn place_never_uses_the_slot_under_now() {
        for now in [0u64, 5, 63, 64, 4095, 4097, 1 << 33] {
            for deadline in (now + 1..now + 20_000).step_by(7) {
                let (level, slot) = place(now, deadline);
                assert_ne!(slot, slot_for(now, level), "now {now} deadline {deadline}");
            }
        }
    }

    #[test]
    fn set_head_and_take_keep_the_bitmap_in_step() {
        let mut level = Level::EMPTY;
        level.set_head(5, 7);
        level.set_head(63, 9);
        assert_eq!(level.occupied, (1 << 5) | (1 << 63));
        assert_eq!(level.take(5), 7);
        assert_eq!(level.head(5), NIL);
        assert_eq!(level.occupied, 1 << 63);
        assert_eq!(level.take(5), NIL);
        assert_eq!(level.take(63), 9);
        assert_eq!(level.occupied, 0);
    }

    #[test]
    fn next_slot_start_wraps_past_slot_63() {
        let mut level = Level::EMPTY;
        assert_eq!(level.next_slot_start(0, 60), None);
        level.set_head(6, 1);
        // From tick 60 the next slot 6 is tick 70, one turn after tick 6.
        assert_eq!(level.next_slot_start(0, 60), Some(70));
        level.set_head(62, 2);
        assert_eq!(level.next_slot_start(0, 60), Some(62));
        // Level 2 (4096-tick slots), now in slot 63 of some turn: slot 6 starts 7 slots on.
        let mut level2 = Level::EMPTY;
        level2.set_head(6, 1);
        let now = (3 * 64 + 63) * 4096 + 100;
        assert_eq!(level2.next_slot_start(2, now), Some((4 * 64 + 6) * 4096));
    }

    #[test]
    fn due_between_selects_the_crossed_slots_only() {
        let mut level = Level::EMPTY;
        for slot in 0..SLOTS {
            level.set_head(slot, slot as u32);
        }
        let width = slot_width(1);
        let now = 62 * width + 3; // slot 62 of level 1
        assert_eq!(level.due_between(1, now, now + width - 4), 0);
        assert_eq!(level.due_between(1, now, 63 * width), 1 << 63);
        assert_eq!(level.due_between(1, now, 64 * width), (1 << 63) | 1);
        assert_eq!(level.due_between(1, now, 65 * width + 1), (1 << 63) | 0b11);
        assert_eq!(level.due_between(1, now, now + 63 * width), !(1 << 62));
        assert_eq!(level.due_between(1, now, now + 64 * width), u64::MAX);
        assert_eq!(level.due_between(1, now, u64::MAX), u64::MAX);
        assert_eq!(level.due_between(1, now, now), 0);
    }
}
