//! Limits per client address, shared by every reactor: how many connections one address may
//! hold at once, and how fast it may open new ones (a rate cell per address, `burst` at once
//! and `per_second` on average).
//!
//! The address is the client's as the gateway knows it: the peer's at accept, or, with
//! `--proxy-protocol`, the source its balancer's PROXY header named (the caller asks after the
//! header). IPv4-mapped IPv6 addresses count as IPv4; an IPv6 client counts by its /64, the
//! block one subscriber usually gets, so cycling addresses inside it gains nothing.
//!
//! Invariants: an address's entry lives while it holds a connection or still owes its rate
//! cell; rested entries are swept out when a shard has doubled since its last sweep, so the
//! table holds at most about twice the addresses active within one burst's refill time. One
//! short lock per admission and per release, on one of 64 shards: connections, not messages.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::rate::{RateCell, RateLimit, Verdict};

/// Per-address limits. Zero turns a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PerIpLimit {
    /// Connections one address may hold at once (0: no limit).
    pub max_conns: u32,
    /// Connections one address may open at once after a quiet period.
    pub connect_burst: u32,
    /// Connections per second one address may open on average (0: no limit).
    pub connect_per_second: u32,
}

impl PerIpLimit {
    /// Whether any of the limits is on.
    pub fn is_on(&self) -> bool {
        self.max_conns > 0 || self.connect_per_second > 0
    }

    fn connect_rate(&self) -> RateLimit {
        RateLimit {
            burst: self.connect_burst.max(1),
            per_second: self.connect_per_second,
            grace: 0,
        }
    }
}

/// Why an address may not open another connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpRefusal {
    /// It holds [`PerIpLimit::max_conns`] already.
    TooManyConnections,
    /// It opens connections faster than the connect rate.
    ConnectRate,
}

impl std::fmt::Display for IpRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IpRefusal::TooManyConnections => "its address holds --max-conns-per-ip already",
            IpRefusal::ConnectRate => "its address connects faster than --ip-connect-rate",
        })
    }
}

const SHARDS: usize = 64;
/// A shard is swept when it has this many entries, or twice as many as after its last sweep.
const FIRST_SWEEP: usize = 1024;

#[derive(Debug)]
struct Entry {
    conns: u32,
    connects: RateCell,
}

#[derive(Debug, Default)]
struct Shard {
    entries: HashMap<IpAddr, Entry>,
    sweep_at: usize,
}

/// The table of addresses, shared by the reactors of one gateway.
#[derive(Debug)]
pub(crate) struct PerIpTable {
    limit: PerIpLimit,
    tick_ms: u64,
    hasher: std::collections::hash_map::RandomState,
    shards: Box<[Mutex<Shard>]>,
}

impl PerIpTable {
    pub(crate) fn new(limit: PerIpLimit, tick_ms: u64) -> Self {
        PerIpTable {
            limit,
            tick_ms,
            hasher: Default::default(),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
        }
    }

    /// Whether any limit is on (when not, callers skip the table entirely).
    pub(crate) fn is_on(&self) -> bool {
        self.limit.is_on()
    }

    /// A new connection from `ip` at tick `now`: counted (release it with [`Self::release`])
    /// or refused.
    pub(crate) fn admit(&self, ip: IpAddr, now: u64) -> Result<(), IpRefusal> {
        let key = client_key(ip);
        let rate = self.limit.connect_rate();
        let mut shard = self.lock(&key);
        let shard = &mut *shard;
        if shard.entries.len() >= shard.sweep_at.max(FIRST_SWEEP) {
            shard
                .entries
                .retain(|_, e| e.conns > 0 || !e.connects.is_rested(rate, now, self.tick_ms));
            shard.sweep_at = shard.entries.len() * 2;
        }
        let entry = shard.entries.entry(key).or_insert_with(|| Entry {
            conns: 0,
            connects: RateCell::new(now),
        });
        if self.limit.max_conns > 0 && entry.conns >= self.limit.max_conns {
            return Err(IpRefusal::TooManyConnections);
        }
        if entry.connects.judge(rate, now, self.tick_ms) != Verdict::Admit {
            return Err(IpRefusal::ConnectRate);
        }
        entry.conns += 1;
        Ok(())
    }

    /// A connection `admit` counted for `ip` is gone.
    pub(crate) fn release(&self, ip: IpAddr, now: u64) {
        let key = client_key(ip);
        let rate = self.limit.connect_rate();
        let mut shard = self.lock(&key);
        if let Some(entry) = shard.entries.get_mut(&key) {
            entry.conns = entry.conns.saturating_sub(1);
            if entry.conns == 0 && entry.connects.is_rested(rate, now, self.tick_ms) {
                shard.entries.remove(&key);
            }
        }
    }

    /// Connections `ip` holds now (for tests).
    #[cfg(test)]
    fn held(&self, ip: IpAddr) -> u32 {
        let key = client_key(ip);
        let shard = self.lock(&key);
        shard.entries.get(&key).map_or(0, |e| e.conns)
    }

    /// Addresses in the table (for tests).
    #[cfg(test)]
    fn entries(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entries
                    .len()
            })
            .sum()
    }

    /// The shard of `key`, locked. A panic while holding it cannot leave an entry half
    /// changed (each change is one field), so a poisoned lock is used as it is.
    fn lock(&self, key: &IpAddr) -> MutexGuard<'_, Shard> {
        self.shards[self.hasher.hash_one(key) as usize % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// What an address counts as: IPv4 (mapped or not) itself, IPv6 its /64.
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: u64 = 10;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_address_holds_at_most_max_conns_and_others_are_not_affected() {
        let table = PerIpTable::new(
            PerIpLimit {
                max_conns: 2,
                ..PerIpLimit::default()
            },
            TICK,
        );
        let a = ip("127.0.0.2");
        assert_eq!(table.admit(a, 0), Ok(()));
        assert_eq!(table.admit(a, 0), Ok(()));
        assert_eq!(table.admit(a, 0), Err(IpRefusal::TooManyConnections));
        assert_eq!(table.admit(ip("127.0.0.3"), 0), Ok(()));
        table.release(a, 1);
        assert_eq!(table.held(a), 1);
        assert_eq!(table.admit(a, 1), Ok(()), "a freed place is given again");
        table.release(a, 2);
        table.release(a, 2);
        assert_eq!(
            table.entries(),
            1,
            "an address with nothing held or owed is forgotten"
        );
    }

    #[test]
    fn connects_past_the_rate_are_refused_until_it_refills() {
        let table = PerIpTable::new(
            PerIpLimit {
                max_conns: 0,
                connect_burst: 3,
                connect_per_second: 10,
            },
            TICK,
        );
        let a = ip("10.1.2.3");
        for _ in 0..3 {
            assert_eq!(table.admit(a, 100), Ok(()));
            table.release(a, 100);
        }
        assert_eq!(table.admit(a, 100), Err(IpRefusal::ConnectRate));
        assert_eq!(
            table.entries(),
            1,
            "the address is remembered while it owes"
        );
        assert_eq!(table.admit(a, 110), Ok(()), "10 a second: one every 100 ms");
        assert_eq!(table.admit(ip("10.1.2.4"), 100), Ok(()));
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let table = PerIpTable::new(
            PerIpLimit {
                max_conns: 1,
                ..PerIpLimit::default()
            },
            TICK,
        );
        assert_eq!(table.admit(ip("2001:db8:1:2::1"), 0), Ok(()));
        assert_eq!(
            table.admit(ip("2001:db8:1:2:ffff::9"), 0),
            Err(IpRefusal::TooManyConnections)
        );
        assert_eq!(table.admit(ip("2001:db8:1:3::1"), 0), Ok(()));
        assert_eq!(table.admit(ip("192.0.2.1"), 0), Ok(()));
        assert_eq!(
            table.admit(ip("::ffff:192.0.2.1"), 0),
            Err(IpRefusal::TooManyConnections)
        );
    }

    #[test]
    fn many_addresses_that_come_and_go_leave_a_bounded_table() {
        let table = PerIpTable::new(
            PerIpLimit {
                max_conns: 10,
                connect_burst: 5,
                connect_per_second: 1,
            },
            TICK,
        );
        // 100,000 addresses, one connection each, one a millisecond-ish: each owes its cell
        // for a second (100 ticks), so only the recent ones may stay.
        for i in 0..100_000u32 {
            let now = u64::from(i / 10);
            let a = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            assert_eq!(table.admit(a, now), Ok(()));
            table.release(a, now);
        }
        let entries = table.entries();
        assert!(entries <= SHARDS * FIRST_SWEEP, "{entries} entries kept");
    }
}
