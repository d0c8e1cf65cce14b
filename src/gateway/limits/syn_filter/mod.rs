//! The SYN filter: sources that keep going over their per-IP limits lose their SYNs in the
//! kernel for a while, so a reconnecting flood stops costing a reactor an accept and a close
//! per attempt (and the flooder's `connect` waits on SYN retransmits instead of looping).
//!
//! The per-IP table refuses at accept as before; each such refusal (never one made after a
//! PROXY header, never one of a `--trusted-proxies` address: the kernel sees the balancer
//! there) is reported here. A source refused [`blocklist::BLOCK_AFTER`] times within a second
//! is blocked for the penalty (doubling on repeat), and the classic BPF program built from the
//! blocklist (`program.rs`) is attached to every listening socket by its own reactor, which
//! compares the list's generation with the one it attached at the start of each pass. A block
//! reaches a reactor at its next wake-up (the blocked source's next accept on it, at worst);
//! the reactors wake for the first block to end ([`SynFilter::next_expiry`]).
//!
//! Invariants: the program passes everything but bare SYNs from blocked sources (accepted
//! sockets inherit it); no program is attached while nothing is blocked; one short lock per
//! refusal at accept and per block's end, none per packet or message.

use std::net::SocketAddr;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use socket2::{SockFilter, SockRef};
use tracing::{info, warn};

use super::per_ip::client_key;
use crate::gateway::trusted_proxies::TrustedProxies;

mod blocklist;
mod program;

use blocklist::Blocklist;
use program::syn_filter_program;

/// Whether over-rate sources are blocked in the kernel, and for how long at first.
#[derive(Debug, Clone)]
pub struct SynFilterConfig {
    /// Block sources that keep going over the per-IP limits (which must be on to matter).
    pub enabled: bool,
    /// The first block of a source; a repeat doubles it, five times at most.
    pub penalty: Duration,
    /// Sources never blocked: the load balancers of `--trusted-proxies` (every client behind
    /// one has its address as far as the kernel knows).
    pub exempt: Option<TrustedProxies>,
}

impl Default for SynFilterConfig {
    fn default() -> Self {
        SynFilterConfig {
            enabled: true,
            penalty: Duration::from_secs(10),
            exempt: None,
        }
    }
}

/// The program as the reactors attach it: `None` while nothing is blocked (detach).
pub(crate) type Program = Option<Arc<[SockFilter]>>;

struct State {
    list: Blocklist,
    generation: u64,
    program: Program,
}

/// The blocklist shared by the reactors of one gateway, and the program made from it.
pub(crate) struct SynFilter {
    config: SynFilterConfig,
    tick_ms: u64,
    state: Mutex<State>,
    /// `State::generation`, readable without the lock at the start of every pass.
    generation: AtomicU64,
    /// The first tick a block ends (`u64::MAX`: none).
    next_expiry: AtomicU64,
    blocked_now: AtomicU64,
    blocks_total: AtomicU64,
}

impl std::fmt::Debug for SynFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SynFilter")
            .field("config", &self.config)
            .field("blocked_now", &self.blocked_now)
            .finish_non_exhaustive()
    }
}

impl SynFilter {
    pub(crate) fn new(config: SynFilterConfig, tick_ms: u64) -> Self {
        let penalty_ticks = (config.penalty.as_millis() as u64).div_ceil(tick_ms);
        SynFilter {
            config,
            tick_ms,
            state: Mutex::new(State {
                list: Blocklist::new(penalty_ticks),
                generation: 0,
                program: None,
            }),
            generation: AtomicU64::new(0),
            next_expiry: AtomicU64::new(u64::MAX),
            blocked_now: AtomicU64::new(0),
            blocks_total: AtomicU64::new(0),
        }
    }

    /// The per-IP limits refused a connection from `peer` at accept (its own address, no
    /// PROXY header involved) at tick `now`.
    pub(crate) fn refused(&self, peer: SocketAddr, now: u64) {
        if !self.config.enabled
            || self
                .config
                .exempt
                .as_ref()
                .is_some_and(|exempt| exempt.contains(peer.ip()))
        {
            return;
        }
        let mut state = self.lock();
        let Some(block) = state.list.refused(client_key(peer.ip()), now) else {
            return;
        };
        let seconds = block.ticks * self.tick_ms / 1000;
        info!(%peer, source = %block.source, seconds,
            "source blocked: it keeps going over the per-IP limits; its SYNs are dropped by the kernel until released");
        self.blocks_total.fetch_add(1, Ordering::Relaxed);
        self.rebuild(&mut state);
    }

    /// Releases the blocks that ended by `now` (cheap when none did: one atomic load).
    pub(crate) fn expire(&self, now: u64) {
        if now < self.next_expiry.load(Ordering::Acquire) {
            return;
        }
        let mut state = self.lock();
        let mut released = 0;
        state.list.expire(now, |source| {
            released += 1;
            info!(%source, "source released: its SYNs reach the listeners again");
        });
        if released > 0 {
            self.rebuild(&mut state);
        }
    }

    /// The generation of the program (changes with every block and release).
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The program now and its generation.
    pub(crate) fn program(&self) -> (u64, Program) {
        let state = self.lock();
        (state.generation, state.program.clone())
    }

    /// The first tick a block ends at, if any is on.
    pub(crate) fn next_expiry(&self) -> Option<u64> {
        Some(self.next_expiry.load(Ordering::Acquire)).filter(|&tick| tick != u64::MAX)
    }

    /// Sources blocked now.
    pub(crate) fn blocked_now(&self) -> u64 {
        self.blocked_now.load(Ordering::Relaxed)
    }

    /// Blocks given since the start.
    pub(crate) fn blocks_total(&self) -> u64 {
        self.blocks_total.load(Ordering::Relaxed)
    }

    fn rebuild(&self, state: &mut State) {
        let (v4, v6) = state.list.sorted();
        state.program = (!v4.is_empty() || !v6.is_empty()).then(|| {
            syn_filter_program(&v4, &v6)
                .into_iter()
                .map(|i| SockFilter::new(i.code, i.jt, i.jf, i.k))
                .collect()
        });
        state.generation += 1;
        self.generation.store(state.generation, Ordering::Release);
        let expiry = state.list.next_expiry().unwrap_or(u64::MAX);
        self.next_expiry.store(expiry, Ordering::Release);
        self.blocked_now
            .store(state.list.blocked() as u64, Ordering::Relaxed);
    }

    /// A panic while holding the lock leaves the list as it was between two whole changes.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Puts `program` on a listening socket, replacing its last one atomically (`None`: takes it
/// off). Unprivileged: the socket is our own.
pub(crate) fn attach(listener: BorrowedFd<'_>, program: &Program) -> std::io::Result<()> {
    let socket = SockRef::from(&listener);
    match program {
        Some(program) => socket.attach_filter(program),
        None => match socket.detach_filter() {
            // Nothing was attached.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            other => other,
        },
    }
}

/// Logs a failed attach once per reactor (the refusals stay at accept meanwhile).
pub(crate) fn attach_failed(reactor: usize, error: &std::io::Error, warned: &mut bool) {
    if !std::mem::replace(warned, true) {
        warn!(reactor, %error, "could not attach the SYN filter to a listener; over-rate sources stay refused at accept");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::os::fd::AsFd;

    #[test]
    fn the_kernel_takes_the_largest_program() {
        let filter = SynFilter::new(
            SynFilterConfig {
                penalty: Duration::from_secs(1),
                ..Default::default()
            },
            10,
        );
        for i in 0..program::MAX_V4 as u32 + 10 {
            let peer = SocketAddr::from((std::net::Ipv4Addr::from(0x0a00_0000 + i), 1));
            for _ in 0..blocklist::BLOCK_AFTER {
                filter.refused(peer, 3);
            }
        }
        for i in 0..program::MAX_V6 as u128 + 10 {
            let ip = std::net::Ipv6Addr::from((0x2001_0db8u128 << 96) | (i << 64) | 1);
            for _ in 0..blocklist::BLOCK_AFTER {
                filter.refused(SocketAddr::from((ip, 1)), 3);
            }
        }
        assert_eq!(
            filter.blocked_now(),
            (program::MAX_V4 + program::MAX_V6) as u64
        );
        let (_, program) = filter.program();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        attach(listener.as_fd(), &program).expect("the kernel refused the program");
        filter.expire(100 + 3);
        assert_eq!(filter.blocked_now(), 0);
        let (_, program) = filter.program();
        assert!(program.is_none());
        attach(listener.as_fd(), &program).unwrap();
        attach(listener.as_fd(), &program).unwrap();
    }

    #[test]
    fn trusted_proxies_are_never_blocked_and_off_means_off() {
        let exempt: TrustedProxies = "127.0.0.0/24".parse().unwrap();
        let filter = SynFilter::new(
            SynFilterConfig {
                exempt: Some(exempt),
                ..Default::default()
            },
            10,
        );
        let off = SynFilter::new(
            SynFilterConfig {
                enabled: false,
                ..Default::default()
            },
            10,
        );
        for _ in 0..10 * blocklist::BLOCK_AFTER {
            filter.refused("127.0.0.9:1".parse().unwrap(), 0);
            off.refused("127.0.1.9:1".parse().unwrap(), 0);
        }
        assert_eq!((filter.blocked_now(), off.blocked_now()), (0, 0));
        for _ in 0..blocklist::BLOCK_AFTER {
            filter.refused("127.0.1.9:1".parse().unwrap(), 0);
        }
        assert_eq!(filter.blocked_now(), 1);
        assert_eq!(filter.generation(), 1);
        assert_eq!(filter.next_expiry(), Some(1000));
    }
}
