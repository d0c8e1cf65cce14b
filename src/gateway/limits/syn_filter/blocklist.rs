//! Which sources keep going over their per-IP limits, and until when they are blocked: the
//! sans-I/O part of the SYN filter (refusals and ticks in, blocks and releases out).
//!
//! A source is blocked when it has been refused [`BLOCK_AFTER`] times within one
//! [`WINDOW_TICKS`] window; its first penalty is the configured one, and a source blocked
//! again within [`REMEMBER_PENALTIES`] penalties of its last release gets twice its last
//! penalty, up to [`MAX_DOUBLINGS`] doublings. Keys are what the per-IP table counts by
//! (IPv4 itself, IPv6 by its /64).
//!
//! Invariants: at most [`MAX_V4`] IPv4 and [`MAX_V6`] IPv6 sources blocked at once (a source
//! over that stays refused at accept, as without the filter); the table of offenders is swept
//! of rested entries when it doubles, like the per-IP table, so it holds about twice the
//! sources refused within a window plus those remembered for a repeat.

use std::collections::HashMap;
use std::net::IpAddr;

use super::program::{MAX_V4, MAX_V6};

/// Refusals within one window that get a source blocked.
pub(crate) const BLOCK_AFTER: u32 = 20;
/// The window refusals are counted in: one second of 10 ms ticks.
pub(crate) const WINDOW_TICKS: u64 = 100;
/// A block that starts within this many penalties after the last one ended is a repeat.
const REMEMBER_PENALTIES: u64 = 4;
/// A repeat offender's penalty doubles at most this many times (10 s becomes 5 min 20 s).
pub(crate) const MAX_DOUBLINGS: u32 = 5;
/// The offenders table is first swept at this size.
const FIRST_SWEEP: usize = 1024;

#[derive(Debug, Clone, Copy)]
struct Offender {
    /// Where the current window of refusals began, and refusals in it.
    window_start: u64,
    refusals: u32,
    /// Blocked until this tick (`None`: not blocked now).
    blocked_until: Option<u64>,
    /// The last penalty given (0: never blocked) and when it ended or ends.
    penalty: u64,
    released_at: u64,
}

/// A block just given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Block {
    pub(crate) source: IpAddr,
    pub(crate) ticks: u64,
}

/// The blocked sources and the recent offenders.
#[derive(Debug)]
pub(crate) struct Blocklist {
    penalty_ticks: u64,
    offenders: HashMap<IpAddr, Offender>,
    blocked_v4: usize,
    blocked_v6: usize,
    sweep_at: usize,
}

impl Blocklist {
    /// A list giving `penalty_ticks` (at least one tick) to a first offence.
    pub(crate) fn new(penalty_ticks: u64) -> Self {
        Blocklist {
            penalty_ticks: penalty_ticks.max(1),
            offenders: HashMap::new(),
            blocked_v4: 0,
            blocked_v6: 0,
            sweep_at: FIRST_SWEEP,
        }
    }

    /// `source` (a per-IP key) was refused at tick `now`: the block this earns it, if any.
    /// A source blocked already (a SYN that reached a listener before its program changed)
    /// earns nothing more; with the list full, nothing either.
    pub(crate) fn refused(&mut self, source: IpAddr, now: u64) -> Option<Block> {
        if self.offenders.len() >= self.sweep_at {
            self.sweep(now);
        }
        let offender = self.offenders.entry(source).or_insert(Offender {
            window_start: now,
            refusals: 0,
            blocked_until: None,
            penalty: 0,
            released_at: 0,
        });
        if offender.blocked_until.is_some() {
            return None;
        }
        if now.saturating_sub(offender.window_start) >= WINDOW_TICKS {
            offender.window_start = now;
            offender.refusals = 0;
        }
        offender.refusals += 1;
        if offender.refusals < BLOCK_AFTER {
            return None;
        }
        let full = match source {
            IpAddr::V4(_) => self.blocked_v4 >= MAX_V4,
            IpAddr::V6(_) => self.blocked_v6 >= MAX_V6,
        };
        if full {
            return None;
        }
        let repeat = offender.penalty > 0
            && now.saturating_sub(offender.released_at)
                < offender.penalty.saturating_mul(REMEMBER_PENALTIES);
        let max = self.penalty_ticks << MAX_DOUBLINGS;
        let ticks = match repeat {
            true => offender.penalty.saturating_mul(2).min(max),
            false => self.penalty_ticks,
        };
        offender.penalty = ticks;
        offender.blocked_until = Some(now + ticks);
        offender.released_at = now + ticks;
        offender.refusals = 0;
        match source {
            IpAddr::V4(_) => self.blocked_v4 += 1,
            IpAddr::V6(_) => self.blocked_v6 += 1,
        }
        Some(Block { source, ticks })
    }

    /// Releases every block that ended by `now`, handing each source to `released`.
    pub(crate) fn expire(&mut self, now: u64, mut released: impl FnMut(IpAddr)) {
        for (source, offender) in self.offenders.iter_mut() {
            if offender.blocked_until.is_some_and(|until| until <= now) {
                offender.blocked_until = None;
                offender.window_start = now;
                match source {
                    IpAddr::V4(_) => self.blocked_v4 -= 1,
                    IpAddr::V6(_) => self.blocked_v6 -= 1,
                }
                released(*source);
            }
        }
    }

    /// The first tick a block ends at, if any is on.
    pub(crate) fn next_expiry(&self) -> Option<u64> {
        self.offenders
            .values()
            .filter_map(|offender| offender.blocked_until)
            .min()
    }

    /// Sources blocked now.
    pub(crate) fn blocked(&self) -> usize {
        self.blocked_v4 + self.blocked_v6
    }

    /// The blocked IPv4 sources and IPv6 /64 prefixes, each sorted (the program's input).
    pub(crate) fn sorted(&self) -> (Vec<u32>, Vec<u64>) {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for (source, offender) in &self.offenders {
            if offender.blocked_until.is_none() {
                continue;
            }
            match source {
                IpAddr::V4(address) => v4.push(u32::from(*address)),
                IpAddr::V6(address) => v6.push((u128::from(*address) >> 64) as u64),
            }
        }
        v4.sort_unstable();
        v6.sort_unstable();
        (v4, v6)
    }

    /// Forgets offenders neither blocked, nor counting refusals, nor remembered for a repeat.
    fn sweep(&mut self, now: u64) {
        self.offenders.retain(|_, offender| {
            offender.blocked_until.is_some()
                || now.saturating_sub(offender.window_start) < WINDOW_TICKS
                || (offender.penalty > 0
                    && now.saturating_sub(offender.released_at)
                        < offender.penalty.saturating_mul(REMEMBER_PENALTIES))
        });
        self.sweep_at = (self.offenders.len() * 2).max(FIRST_SWEEP);
    }

    /// Offenders held (for tests).
    #[cfg(test)]
    fn held(&self) -> usize {
        self.offenders.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const PENALTY: u64 = 1_000;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// Refuses `source` until it is blocked; the block.
    fn offend(list: &mut Blocklist, source: IpAddr, now: u64) -> Option<Block> {
        (0..BLOCK_AFTER).find_map(|_| list.refused(source, now))
    }

    #[test]
    fn a_source_refused_often_within_a_window_is_blocked_and_released_after_its_penalty() {
        let mut list = Blocklist::new(PENALTY);
        let a = ip("127.0.0.100");
        for _ in 0..BLOCK_AFTER - 1 {
            assert_eq!(list.refused(a, 10), None);
        }
        assert_eq!(
            list.refused(ip("127.0.0.1"), 10),
            None,
            "others count apart"
        );
        assert_eq!(
            list.refused(a, 10),
            Some(Block {
                source: a,
                ticks: PENALTY
            })
        );
        assert_eq!(list.refused(a, 11), None, "blocked already");
        assert_eq!(list.sorted(), (vec![0x7f00_0064], vec![]));
        assert_eq!(list.next_expiry(), Some(10 + PENALTY));
        let mut released = Vec::new();
        list.expire(10 + PENALTY - 1, |s| released.push(s));
        assert!(released.is_empty());
        list.expire(10 + PENALTY, |s| released.push(s));
        assert_eq!(released, vec![a]);
        assert_eq!(list.blocked(), 0);
        assert_eq!(list.next_expiry(), None);
        assert_eq!(list.sorted(), (vec![], vec![]));
    }

    #[test]
    fn refusals_spread_over_windows_never_block() {
        let mut list = Blocklist::new(PENALTY);
        let a = ip("10.0.0.1");
        for second in 0..100u64 {
            for _ in 0..BLOCK_AFTER - 1 {
                assert_eq!(list.refused(a, second * WINDOW_TICKS), None);
            }
        }
    }

    #[test]
    fn a_repeat_offender_gets_a_doubled_penalty_up_to_the_cap() {
        let mut list = Blocklist::new(PENALTY);
        let a = ip("10.0.0.1");
        let mut now = 0;
        let mut penalties = Vec::new();
        for _ in 0..MAX_DOUBLINGS + 3 {
            let block = offend(&mut list, a, now).expect("blocked");
            penalties.push(block.ticks);
            now += block.ticks;
            list.expire(now, |_| {});
            now += 1;
        }
        let expected: Vec<u64> = (0..MAX_DOUBLINGS + 3)
            .map(|n| PENALTY << n.min(MAX_DOUBLINGS))
            .collect();
        assert_eq!(penalties, expected);
        // Quiet for long enough, it starts over.
        now += (PENALTY << MAX_DOUBLINGS) * REMEMBER_PENALTIES;
        assert_eq!(offend(&mut list, a, now).map(|b| b.ticks), Some(PENALTY));
    }

    #[test]
    fn the_list_is_bounded_and_a_source_past_it_is_left_to_the_accept_path() {
        let mut list = Blocklist::new(PENALTY);
        for i in 0..MAX_V4 as u32 {
            let source = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            assert!(offend(&mut list, source, 5).is_some());
        }
        assert_eq!(offend(&mut list, ip("192.0.2.1"), 5), None, "IPv4 full");
        for i in 0..MAX_V6 as u128 {
            let source = IpAddr::V6(Ipv6Addr::from((0x2001_0db8u128 << 96) | (i << 64)));
            assert!(offend(&mut list, source, 5).is_some());
        }
        assert_eq!(offend(&mut list, ip("2001:db9::"), 5), None, "IPv6 full");
        assert_eq!(list.blocked(), MAX_V4 + MAX_V6);
        let (v4, v6) = list.sorted();
        assert_eq!((v4.len(), v6.len()), (MAX_V4, MAX_V6));
        list.expire(5 + PENALTY, |_| {});
        assert_eq!(list.blocked(), 0);
        assert!(offend(&mut list, ip("192.0.2.1"), 6 + PENALTY).is_some());
    }

    #[test]
    fn offenders_that_rest_are_forgotten() {
        let mut list = Blocklist::new(PENALTY);
        for i in 0..100_000u32 {
            let now = u64::from(i / 10);
            list.refused(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), now);
        }
        assert!(
            list.held() <= 4 * FIRST_SWEEP,
            "{} offenders held",
            list.held()
        );
    }
}
