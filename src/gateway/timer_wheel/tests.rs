use std::collections::BTreeMap;

use proptest::prelude::*;

use super::level::{slot_for, slot_width, TOP};
use super::*;

/// Walks every list and asserts the invariants of the module docs.
fn check(wheel: &TimerWheel) {
    let now = wheel.now;
    let mut linked = 0;
    for level in 0..LEVELS {
        let width = slot_width(level);
        for slot in 0..SLOTS {
            let mut index = wheel.levels[level].head(slot);
            let bit = wheel.levels[level].occupied() & (1 << slot) != 0;
            assert_eq!(bit, index != NIL, "bitmap of level {level} slot {slot}");
            if index == NIL {
                continue;
            }
            assert_ne!(slot, slot_for(now, level), "slot under now occupied");
            let distance = (slot + SLOTS - slot_for(now, level)) % SLOTS;
            let start = (now / width)
                .checked_add(distance as u64)
                .and_then(|slots| slots.checked_mul(width))
                .expect("slot start overflows");
            let mut prev = NIL;
            while index != NIL {
                let entry = wheel.entries[index as usize];
                assert_eq!(entry.list, slot_list(level, slot));
                assert_eq!(entry.prev, prev);
                assert!(start > now, "slot starts at {start}, not after now {now}");
                assert!(
                    start <= entry.deadline,
                    "slot starts after deadline {entry:?}"
                );
                linked += 1;
                prev = index;
                index = entry.next;
            }
        }
    }
    let (mut index, mut prev) = (wheel.due_head, NIL);
    while index != NIL {
        let entry = wheel.entries[index as usize];
        assert_eq!((entry.list, entry.prev), (DUE, prev));
        assert!(entry.deadline <= now && wheel.due_min <= entry.deadline);
        linked += 1;
        prev = index;
        index = entry.next;
    }
    let marked = wheel.entries.iter().filter(|e| e.list != IDLE).count();
    assert_eq!((linked, marked), (wheel.pending, wheel.pending));
}

/// (level, slot) holding `key`, or `None` if it is idle or due.
fn location(wheel: &TimerWheel, key: usize) -> Option<(usize, usize)> {
    let list = usize::from(wheel.entries.get(key)?.list);
    (list < LEVELS * SLOTS).then_some((list / SLOTS, list % SLOTS))
}

fn advance(wheel: &mut TimerWheel, now: u64) -> Vec<usize> {
    let mut fired = Vec::new();
    wheel.advance(now, &mut fired);
    check(wheel);
    fired.sort_unstable();
    fired
}

/// No key fired. Typed, because a bare `[]` stops type-checking once serde_json is in the crate
/// graph (jsonwebtoken brings it): it adds `impl PartialEq<Value> for usize`.
const NONE_FIRED: [usize; 0] = [];

#[test]
fn entry_is_at_most_24_bytes() {
    assert!(std::mem::size_of::<Entry>() <= 24);
}

#[test]
fn fires_at_the_deadline_not_before() {
    let mut wheel = TimerWheel::new();
    assert_eq!(wheel.insert(5, 10), None);
    assert_eq!(wheel.next_deadline(), Some(10));
    assert_eq!(advance(&mut wheel, 9), NONE_FIRED);
    assert_eq!(wheel.deadline(5), Some(10));
    assert_eq!(advance(&mut wheel, 10), [5]);
    assert_eq!(
        (wheel.deadline(5), wheel.len(), wheel.next_deadline()),
        (None, 0, None)
    );
    assert_eq!(advance(&mut wheel, 1000), NONE_FIRED);
}

#[test]
fn cascades_between_every_pair_of_adjacent_levels() {
    for level in 1..LEVELS {
        let mut wheel = TimerWheel::new();
        let (width, lower) = (slot_width(level), slot_width(level - 1));
        let deadline = 2 * width + 3 * lower;
        wheel.insert(7, deadline);
        assert_eq!(location(&wheel, 7), Some((level, 2)));
        assert_eq!(wheel.next_deadline(), Some(2 * width));
        assert_eq!(advance(&mut wheel, 2 * width - 1), NONE_FIRED);
        assert_eq!(location(&wheel, 7), Some((level, 2)));
        assert_eq!(advance(&mut wheel, 2 * width), NONE_FIRED, "level {level}");
        assert_eq!(location(&wheel, 7), Some((level - 1, 3)), "level {level}");
        assert_eq!(wheel.next_deadline(), Some(deadline));
        assert_eq!(advance(&mut wheel, deadline - 1), NONE_FIRED);
        assert_eq!(advance(&mut wheel, deadline), [7], "level {level}");
    }
}

#[test]
fn descends_one_level_per_slot_start_from_the_top() {
    // Every base-64 digit is 2: level 5 slot 2, then level 4 slot 2, ... level 0 slot 2.
    let deadline = (0..LEVELS).map(|level| 2 * slot_width(level)).sum::<u64>();
    let mut wheel = TimerWheel::new();
    wheel.insert(1, deadline);
    for level in (0..LEVELS).rev() {
        assert_eq!(location(&wheel, 1), Some((level, 2)));
        let start = wheel.next_deadline().unwrap();
        assert_eq!(start, deadline & !(slot_width(level) - 1));
        let fired = advance(&mut wheel, start);
        assert_eq!(fired.is_empty(), level > 0, "level {level}");
    }
    assert!(wheel.is_empty());
}

#[test]
fn slot_indices_wrap_past_63() {
    let mut wheel = TimerWheel::new();
    advance(&mut wheel, 60);
    wheel.insert(3, 70);
    assert_eq!(location(&wheel, 3), Some((0, 6)));
    assert_eq!(wheel.next_deadline(), Some(70));
    assert_eq!(advance(&mut wheel, 64), NONE_FIRED);
    assert_eq!(advance(&mut wheel, 69), NONE_FIRED);
    assert_eq!(advance(&mut wheel, 70), [3]);
}

#[test]
fn top_level_wraps_into_the_next_turn() {
    let top = slot_width(TOP);
    let mut wheel = TimerWheel::new();
    advance(&mut wheel, 63 * top + 5); // top slot 63, the last of the first turn
    let deadline = 64 * top + 10 * top + 7; // top slot 10 of the second turn
    wheel.insert(9, deadline);
    assert_eq!(location(&wheel, 9), Some((TOP, 10)));
    assert_eq!(wheel.next_deadline(), Some(74 * top));
    assert_eq!(advance(&mut wheel, 64 * top + 10), NONE_FIRED);
    assert_eq!(location(&wheel, 9), Some((TOP, 10)));
    assert_eq!(advance(&mut wheel, deadline - 1), NONE_FIRED);
    assert_eq!(advance(&mut wheel, deadline), [9]);
}

#[test]
fn deadlines_beyond_the_top_are_clamped_and_fire_on_time() {
    let top = slot_width(TOP);
    for (start, deadline) in [
        (0, (1u64 << 40) + 12_345),
        (5 * top + 1, 5 * top + 64 * top),
        (u64::MAX - (1 << 40), u64::MAX),
    ] {
        let mut wheel = TimerWheel::new();
        advance(&mut wheel, start);
        wheel.insert(4, deadline);
        let parked = (slot_for(start, TOP) + 63) % SLOTS;
        assert_eq!(location(&wheel, 4), Some((TOP, parked)));
        let mut wakeups = 0;
        loop {
            let at = wheel.next_deadline().unwrap();
            assert!(at > wheel.now() && at <= deadline);
            let fired = advance(&mut wheel, at);
            wakeups += 1;
            if at == deadline {
                assert_eq!(fired, [4]);
                break;
            }
            assert_eq!(
                fired, NONE_FIRED,
                "fired early at {at}, deadline {deadline}"
            );
        }
        assert!(wakeups <= 64 + LEVELS, "{wakeups} wakeups");
    }
}

#[test]
fn huge_jumps_fire_everything_due_and_keep_the_rest() {
    let mut wheel = TimerWheel::new();
    let deadlines = [
        1,
        63,
        64,
        4095,
        4097,
        1 << 20,
        1 << 35,
        1 << 36,
        1 << 50,
        u64::MAX,
    ];
    for (key, &deadline) in deadlines.iter().enumerate() {
        wheel.insert(key, deadline);
    }
    assert_eq!(advance(&mut wheel, (1 << 36) - 1), [0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(advance(&mut wheel, (1 << 50) - 1), [7]);
    assert_eq!(wheel.deadline(8), Some(1 << 50));
    assert_eq!(advance(&mut wheel, u64::MAX - 1), [8]);
    assert_eq!(advance(&mut wheel, u64::MAX), [9]);
    // At the end of time every deadline is already due.
    wheel.insert(3, u64::MAX);
    assert_eq!(advance(&mut wheel, u64::MAX), [3]);
}

#[test]
fn deadlines_in_the_past_fire_on_the_next_advance() {
    let mut wheel = TimerWheel::new();
    advance(&mut wheel, 100);
    wheel.insert(1, 50);
    wheel.insert(2, 100);
    wheel.insert(3, 101);
    assert_eq!(location(&wheel, 1), None);
    assert_eq!(wheel.deadline(1), Some(50));
    assert_eq!(wheel.next_deadline(), Some(50));
    // Even a clock that did not move (or went back) fires them, and time does not go back.
    assert_eq!(advance(&mut wheel, 90), [1, 2]);
    assert_eq!(wheel.now(), 100);
    assert_eq!(wheel.next_deadline(), Some(101));
    assert_eq!(advance(&mut wheel, 101), [3]);
}

#[test]
fn cancel_after_fire_is_false_and_nothing_fires_later() {
    let mut wheel = TimerWheel::new();
    wheel.insert(2, 30);
    assert_eq!(advance(&mut wheel, 30), [2]);
    assert!(!wheel.cancel(2));
    assert_eq!(advance(&mut wheel, 1 << 40), NONE_FIRED);
    assert!(!wheel.cancel(2));
    assert!(!wheel.cancel(99) && !wheel.cancel(usize::MAX));
    assert_eq!(wheel.deadline(99), None);
}

#[test]
fn cancel_before_fire_removes_from_every_list() {
    let mut wheel = TimerWheel::new();
    advance(&mut wheel, 10);
    for (key, deadline) in [(0, 5), (1, 20), (2, 5000), (3, 1 << 40)] {
        wheel.insert(key, deadline);
        assert!(wheel.cancel(key), "key {key}");
        assert!(!wheel.cancel(key));
        check(&wheel);
    }
    assert_eq!((wheel.len(), wheel.next_deadline()), (0, None));
    assert_eq!(advance(&mut wheel, u64::MAX), NONE_FIRED);
}

#[test]
fn reinserting_a_fired_key_fires_it_again() {
    let mut wheel = TimerWheel::new();
    wheel.insert(6, 100);
    assert_eq!(advance(&mut wheel, 150), [6]);
    assert_eq!(wheel.insert(6, 5000), None);
    assert_eq!(advance(&mut wheel, 4999), NONE_FIRED);
    assert_eq!(advance(&mut wheel, 5000), [6]);
}

#[test]
fn insert_replaces_an_earlier_and_a_later_deadline() {
    let mut wheel = TimerWheel::new();
    wheel.insert(1, 100);
    assert_eq!(wheel.insert(1, 5000), Some(100)); // later
    assert_eq!((wheel.len(), wheel.deadline(1)), (1, Some(5000)));
    assert_eq!(advance(&mut wheel, 4999), NONE_FIRED);
    assert_eq!(wheel.insert(1, 6000), Some(5000));
    assert_eq!(wheel.insert(1, 5010), Some(6000)); // earlier
    assert_eq!(advance(&mut wheel, 5009), NONE_FIRED);
    assert_eq!(advance(&mut wheel, 5010), [1]);
    assert_eq!(advance(&mut wheel, 7000), NONE_FIRED);
}

#[test]
fn many_keys_in_one_slot() {
    let mut wheel = TimerWheel::new();
    for key in 0..1000 {
        wheel.insert(key, 40);
    }
    // The list head (last pushed), its tail (first pushed) and a middle one.
    assert!(wheel.cancel(999) && wheel.cancel(0) && wheel.cancel(500));
    check(&wheel);
    let fired = advance(&mut wheel, 40);
    let expected: Vec<usize> = (1..999).filter(|&key| key != 500).collect();
    assert_eq!(fired, expected);
    assert!(wheel.is_empty());
}

#[test]
fn steady_state_does_not_allocate() {
    let mut wheel = TimerWheel::with_capacity(256);
    let mut fired = Vec::with_capacity(256);
    let capacities = (wheel.entries.capacity(), fired.capacity());
    for round in 0..50u64 {
        fired.clear();
        for key in 0..256usize {
            wheel.insert(key, wheel.now() + 1 + (key as u64 * 37 + round) % 10_000);
        }
        for key in (0..256).step_by(3) {
            wheel.cancel(key);
        }
        wheel.advance(wheel.now() + 5_000, &mut fired);
    }
    assert!(!fired.is_empty());
    assert_eq!((wheel.entries.capacity(), fired.capacity()), capacities);
}

#[test]
#[should_panic(expected = "below u32::MAX")]
fn keys_must_fit_a_link() {
    TimerWheel::new().insert(u32::MAX as usize, 1);
}

#[derive(Clone, Debug)]
enum Op {
    Insert { key: usize, ahead: u64, past: bool },
    Cancel { key: usize },
    Advance { ahead: u64 },
}

const KEYS: usize = 24;

/// Tick distances a few ticks either side of a level's reach (64^1 ..= 64^6).
fn level_boundaries() -> impl Strategy<Value = u64> {
    (1..=6u32, -3i64..=3).prop_map(|(level, off)| 64u64.pow(level).wrapping_add_signed(off))
}

/// Deadline distances: everyday ranges, level boundaries, clamping, and the end of time.
fn ticks() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0..200u64,
        3 => level_boundaries(),
        2 => 0..1u64 << 38,
        1 => any::<u64>(),
    ]
}

fn ops() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..KEYS, ticks(), prop::bool::weighted(0.1))
            .prop_map(|(key, ahead, past)| Op::Insert { key, ahead, past }),
        2 => (0..KEYS).prop_map(|key| Op::Cancel { key }),
        4 => prop_oneof![12 => 0..300u64, 6 => level_boundaries(), 3 => 0..1u64 << 38, 1 => any::<u64>()]
            .prop_map(|ahead| Op::Advance { ahead }),
    ]
}

fn starts() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        (0..10_000u64).prop_map(|back| (1 << 36) - back),
        (0..1u64 << 40).prop_map(|back| u64::MAX - back),
        any::<u64>(),
    ]
}

proptest! {
    #[test]
    fn agrees_with_a_btreemap_model(start in starts(), ops in prop::collection::vec(ops(), 1..150)) {
        let mut wheel = TimerWheel::new();
        let mut model = BTreeMap::<usize, u64>::new();
        let mut fired = Vec::new();
        wheel.advance(start, &mut fired);
        prop_assert!(fired.is_empty());
        for op in ops {
            let now = wheel.now();
            match op {
                Op::Insert { key, ahead, past } => {
                    let deadline = if past { now.saturating_sub(ahead) } else { now.saturating_add(ahead) };
                    prop_assert_eq!(wheel.insert(key, deadline), model.insert(key, deadline));
                }
                Op::Cancel { key } => prop_assert_eq!(wheel.cancel(key), model.remove(&key).is_some()),
                Op::Advance { ahead } => {
                    let now = now.saturating_add(ahead);
                    fired.clear();
                    wheel.advance(now, &mut fired);
                    prop_assert_eq!(wheel.now(), now);
                    fired.sort_unstable();
                    let due: Vec<usize> = model.iter().filter(|&(_, &d)| d <= now).map(|(&k, _)| k).collect();
                    for key in &due {
                        model.remove(key);
                    }
                    prop_assert_eq!(&fired, &due);
                }
            }
            check(&wheel);
            let now = wheel.now();
            for key in 0..KEYS {
                prop_assert_eq!(wheel.deadline(key), model.get(&key).copied());
            }
            prop_assert_eq!(wheel.len(), model.len());
            match (model.values().min(), wheel.next_deadline()) {
                (None, next) => prop_assert_eq!(next, None),
                (Some(&earliest), Some(next)) => {
                    prop_assert!(next <= earliest, "next {} after earliest {}", next, earliest);
                    prop_assert!(earliest <= now || next > now, "next {} not after now {}", next, now);
                }
                (Some(_), None) => prop_assert!(false, "pending keys but no next deadline"),
            }
        }
    }
}
