//! Hierarchical timer wheel: at most one deadline per connection, keyed by the reactor's slab key.
//! Time is an integer tick passed in by the caller (no clock inside). `insert`, `cancel` and
//! `deadline` are O(1), `next_deadline` is O(levels), `advance` is O(levels + entries it moves).
//! A key never fires before its deadline, and `advance(now)` fires every key due by `now`.
//! Never allocates in steady state; 100% safe code (links are `u32` indices, not pointers).
//!
//! # Levels
//!
//! Six levels of 64 slots. A slot of level `l` covers `64^l` ticks; level `l` reaches deadlines
//! whose slot is 1 to 63 slots after the slot holding `now`, so between `63 * 64^l` and
//! `64^(l+1) - 1` ticks ahead. With the reactor's 10 ms tick:
//!
//! | level | slot width   | reach ahead            |
//! |-------|--------------|------------------------|
//! | 0     | 1 (10 ms)    | 63 ticks (0.63 s)      |
//! | 1     | 64 (0.64 s)  | ~2^12 ticks (41 s)     |
//! | 2     | 2^12 (41 s)  | ~2^18 ticks (44 min)   |
//! | 3     | 2^18 (44 min)| ~2^24 ticks (47 h)     |
//! | 4     | 2^24 (47 h)  | ~2^30 ticks (124 days) |
//! | 5     | 2^30 (124 d) | ~2^36 ticks (21 years) |
//!
//! An entry goes to the lowest level that reaches its deadline. A deadline beyond level 5's reach
//! is parked in the level-5 slot farthest ahead and placed again when that slot comes due; it is
//! clamped, never lost. A deadline at or before `now` at insert goes to a due list and fires on
//! the next `advance`.
//!
//! # Invariants
//!
//! - The slot under `now` is empty on every level, so each occupied slot starts 1..=63 slots
//!   ahead, and its start tick is unambiguous: `((now >> 6l) + distance) << 6l`.
//! - An entry's slot starts after `now` and at or before its deadline. `advance(now)` empties
//!   every slot that starts by `now`, fires the entries whose deadline is `<= now` and places
//!   the others again from the new `now` (a strictly lower level, except for clamped entries).
//!   Hence nothing fires early (the deadline is compared, not the slot) and nothing fires late
//!   (a due entry's slot started by its deadline, so it was emptied).

#![forbid(unsafe_code)]

mod level;

use std::fmt;

use level::{place, Level, LEVELS, NIL, SLOTS};

/// `Entry::list` of a key with no pending deadline.
const IDLE: u16 = u16::MAX;
/// `Entry::list` of a key in the due list (deadline already reached, fires on next `advance`).
const DUE: u16 = (LEVELS * SLOTS) as u16;

/// The wheel's record of one slab key: 24 bytes, pending or not.
#[derive(Clone, Copy, Debug)]
struct Entry {
    deadline: u64,
    prev: u32,
    next: u32,
    /// Which list holds the entry: `level * 64 + slot`, [`DUE`], or [`IDLE`].
    list: u16,
}

impl Entry {
    const IDLE: Entry = Entry {
        deadline: 0,
        prev: NIL,
        next: NIL,
        list: IDLE,
    };
}

fn slot_list(level: usize, slot: usize) -> u16 {
    (level * SLOTS + slot) as u16
}

/// A hierarchical timer wheel holding at most one deadline per slab key.
///
/// Keys are `usize` slab keys below `u32::MAX`; storage grows to the largest key inserted
/// (24 bytes a key) and is reused afterwards. See the module docs for levels and guarantees.
pub struct TimerWheel {
    /// The tick of the last `advance`; no entry in a level has a deadline at or before it.
    now: u64,
    levels: [Level; LEVELS],
    entries: Vec<Entry>,
    /// Entries whose deadline had passed when inserted.
    due_head: u32,
    /// At most the smallest deadline in the due list (not raised by a cancel).
    due_min: u64,
    pending: usize,
}

impl Default for TimerWheel {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for TimerWheel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerWheel")
            .field("now", &self.now)
            .field("pending", &self.pending)
            .field("next_deadline", &self.next_deadline())
            .finish_non_exhaustive()
    }
}

impl TimerWheel {
    /// An empty wheel at tick 0.
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// An empty wheel at tick 0 with room for keys `0..keys` without allocating.
    pub fn with_capacity(keys: usize) -> Self {
        TimerWheel {
            now: 0,
            levels: [Level::EMPTY; LEVELS],
            entries: Vec::with_capacity(keys),
            due_head: NIL,
            due_min: u64::MAX,
            pending: 0,
        }
    }

    /// The tick of the last [`advance`](Self::advance) (0 before the first).
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Number of keys with a pending deadline.
    pub fn len(&self) -> usize {
        self.pending
    }

    /// True when no key has a pending deadline.
    pub fn is_empty(&self) -> bool {
        self.pending == 0
    }

    /// Sets `key`'s deadline to `deadline`, replacing any pending one, and returns the replaced
    /// deadline. A deadline at or before [`now`](Self::now) fires on the next `advance`.
    ///
    /// Allocates only when `key` is beyond every key seen so far.
    ///
    /// # Panics
    /// If `key >= u32::MAX` (slab keys of one reactor never come near).
    pub fn insert(&mut self, key: usize, deadline: u64) -> Option<u64> {
        let index = u32::try_from(key)
            .ok()
            .filter(|&index| index != NIL)
            .expect("timer wheel keys must be below u32::MAX");
        if key >= self.entries.len() {
            self.entries.resize(key + 1, Entry::IDLE);
        }
        let replaced = self.unlink(index);
        self.entries[key].deadline = deadline;
        if deadline <= self.now {
            self.due_min = self.due_min.min(deadline);
            self.link(index, DUE);
        } else {
            self.schedule(index);
        }
        if replaced.is_none() {
            self.pending += 1;
        }
        replaced
    }

    /// Removes `key`'s pending deadline; false if it had none (never set, cancelled, or fired).
    pub fn cancel(&mut self, key: usize) -> bool {
        let Ok(index) = u32::try_from(key) else {
            return false;
        };
        if key >= self.entries.len() || self.unlink(index).is_none() {
            return false;
        }
        self.pending -= 1;
        true
    }

    /// `key`'s pending deadline, if any.
    pub fn deadline(&self, key: usize) -> Option<u64> {
        self.entries
            .get(key)
            .filter(|entry| entry.list != IDLE)
            .map(|entry| entry.deadline)
    }

    /// A tick at which to call [`advance`](Self::advance) next, `None` if nothing is pending.
    ///
    /// Never later than the earliest pending deadline, but it may be earlier: it is the start of
    /// the earliest occupied slot, which is the deadline itself on level 0 and a multiple of
    /// `64^l` on level `l` (an advance to it moves entries down a level and may fire none). With
    /// keys inserted in the past it is at most their smallest deadline, so at most `now`.
    pub fn next_deadline(&self) -> Option<u64> {
        let due = (self.due_head != NIL).then_some(self.due_min);
        (0..LEVELS)
            .filter_map(|level| self.levels[level].next_slot_start(level, self.now))
            .chain(due)
            .min()
    }

    /// Moves the wheel to tick `now` and appends to `fired` (in no particular order) every key
    /// whose deadline is `<= now`, each once, removing their deadlines. A `now` before
    /// [`now`](Self::now) leaves the time unchanged (past-deadline inserts still fire).
    ///
    /// Costs O(levels) plus O(1) per entry fired or moved down a level, whatever the jump.
    /// Allocates only if `fired` must grow; reuse it across calls.
    pub fn advance(&mut self, now: u64, fired: &mut Vec<usize>) {
        let now = now.max(self.now);
        // Every slot starting in (self.now, now] is emptied into the due list first, so that
        // re-placing from the new `now` can never land in a slot still waiting to be emptied.
        for level in 0..LEVELS {
            let mut due = self.levels[level].due_between(level, self.now, now);
            while due != 0 {
                let slot = due.trailing_zeros() as usize;
                due &= due - 1;
                let mut index = self.levels[level].take(slot);
                while index != NIL {
                    let next = self.entries[index as usize].next;
                    self.link(index, DUE);
                    index = next;
                }
            }
        }
        self.now = now;
        let mut index = std::mem::replace(&mut self.due_head, NIL);
        self.due_min = u64::MAX;
        while index != NIL {
            let entry = &mut self.entries[index as usize];
            let next = entry.next;
            if entry.deadline <= now {
                entry.list = IDLE;
                self.pending -= 1;
                fired.push(index as usize);
            } else {
                self.schedule(index);
            }
            index = next;
        }
    }

    /// Puts an entry whose deadline is after `now` into the slot that covers it.
    fn schedule(&mut self, index: u32) {
        let (level, slot) = place(self.now, self.entries[index as usize].deadline);
        self.link(index, slot_list(level, slot));
    }

    fn head(&self, list: u16) -> u32 {
        if list == DUE {
            self.due_head
        } else {
            let list = usize::from(list);
            self.levels[list / SLOTS].head(list % SLOTS)
        }
    }

    fn set_head(&mut self, list: u16, first: u32) {
        if list == DUE {
            self.due_head = first;
        } else {
            let list = usize::from(list);
            self.levels[list / SLOTS].set_head(list % SLOTS, first);
        }
    }

    /// Pushes an entry (not in any list) at the front of `list`.
    fn link(&mut self, index: u32, list: u16) {
        let first = self.head(list);
        let entry = &mut self.entries[index as usize];
        entry.prev = NIL;
        entry.next = first;
        entry.list = list;
        if first != NIL {
            self.entries[first as usize].prev = index;
        }
        self.set_head(list, index);
    }

    /// Takes an entry out of its list; returns its deadline if it was pending.
    fn unlink(&mut self, index: u32) -> Option<u64> {
        let Entry {
            deadline,
            prev,
            next,
            list,
        } = self.entries[index as usize];
        if list == IDLE {
            return None;
        }
        if prev == NIL {
            self.set_head(list, next);
        } else {
            self.entries[prev as usize].next = next;
        }
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
        self.entries[index as usize] = Entry {
            deadline,
            ..Entry::IDLE
        };
        Some(deadline)
    }
}

#[cfg(test)]
mod tests;
