//! The two ways to drive the sans-I/O [`LogicCore`], the only places besides its owner that
//! read the clock.
//!
//! [`LogicCore::run`] is the core's own thread: it feeds the core the gateway's event batches
//! and the store's completions as they come, each with the time it is handled, and wakes for
//! the core's next deadline. Never waits on anything but its two inputs.
//!
//! [`LogicCore::turn`] is a turn on a thread the core does not own (`serve` with one
//! reactor, by default: that reactor's, which handed it its events just before): the completions
//! queued by now and the deadlines passed, for an outlet that never holds. The owner waits
//! in its own way, at most until the time `turn` returns, and must be woken for completions
//! (`store::CompletionWake`).

use std::time::Duration;

use crossbeam_channel::{select, Receiver};

use super::core::{Inbound, LogicCore};
use super::outlet::Outlet;
use super::snowflake::unix_now_ms;
use crate::store::{Completion, Store};

/// The longest sleep without input: wall-clock time may jump, so deadlines are looked at
/// again at least this often.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// While the outlet holds pushes, it is offered them again at least this often, even if no
/// room signal comes.
const HOLD_RETRY: Duration = Duration::from_millis(10);

/// Inputs taken in one turn besides the one that woke it, at most, so timers still run
/// under a flood.
const MAX_TAKEN_PER_TURN: usize = 1024;

impl<S: Store, O: Outlet> LogicCore<S, O> {
    /// Runs until the gateway side hangs up (every inbound sender dropped). A batch is
    /// dropped once its events are handled: a byte-bounded queue counts it until then.
    ///
    /// A turn handles the input that woke it and whatever else is queued by then (a commit's
    /// completions come together), then flushes the outlet: the reactors are woken once per
    /// turn, not once per answer.
    ///
    /// While the outlet holds pushes the gateway had no room for, the core stops in the
    /// middle of its batch and takes no new one until the outlet has handed them over (it is
    /// offered them again on the gateway's room signal, or every [`HOLD_RETRY`]); the
    /// store's completions and the timers go on meanwhile.
    pub fn run<B: IntoIterator<Item = Inbound>>(
        mut self,
        inbound: Receiver<B>,
        completions: Receiver<Completion>,
    ) {
        let room = self.replies.room();
        let no_input = crossbeam_channel::never::<B>();
        // The rest of a batch whose handling stopped because the outlet was holding.
        let mut rest: Option<B::IntoIter> = None;
        let mut now = unix_now_ms();
        loop {
            let holding = self.replies.holding();
            let mut sleep = match self.next_timeout() {
                Some(deadline) => Duration::from_millis(deadline.saturating_sub(now)),
                None => MAX_SLEEP,
            };
            if holding {
                sleep = sleep.min(HOLD_RETRY);
            } else if rest.is_some() {
                sleep = Duration::ZERO; // the stopped batch goes on at once (`take_queued`)
            }
            let input = if holding || rest.is_some() {
                &no_input
            } else {
                &inbound
            };
            select! {
                recv(input) -> batch => match batch {
                    Ok(batch) => rest = self.handle_events(batch.into_iter(), unix_now_ms()),
                    Err(_) => return,
                },
                recv(completions) -> completion => {
                    if let Ok(completion) = completion {
                        self.handle_completion(completion, unix_now_ms());
                    }
                },
                recv(room) -> _ => self.flush(),
                default(sleep.min(MAX_SLEEP)) => self.flush(),
            }
            self.take_queued(&inbound, &completions, &mut rest);
            self.publish_gauges();
            now = unix_now_ms();
            self.handle_timeout(now);
            self.flush();
        }
    }

    /// One turn on a thread the core does not own, after its owner handed it this turn's
    /// events ([`LogicCore::handle_inbound`]): the completions queued by now, the deadlines
    /// passed by `now`, the gauges, the outlet's flush. Returns how long the owner may wait
    /// before the next turn if nothing wakes it (`None`: until something does). For an
    /// outlet that never holds: one whose pushes go straight to its connections' write
    /// queues, bounded by their own caps.
    pub fn turn(&mut self, completions: &Receiver<Completion>, now: u64) -> Option<Duration> {
        debug_assert!(
            !self.replies.holding(),
            "turn is for an outlet that never holds"
        );
        for _ in 0..MAX_TAKEN_PER_TURN {
            let Ok(completion) = completions.try_recv() else {
                break;
            };
            self.handle_completion(completion, now);
        }
        self.handle_timeout(now);
        self.publish_gauges();
        self.flush();
        if !completions.is_empty() {
            return Some(Duration::ZERO); // more than a turn's worth: the next pass takes the rest
        }
        // At most MAX_SLEEP: the deadline is wall-clock time, which may jump.
        self.next_timeout()
            .map(|deadline| Duration::from_millis(deadline.saturating_sub(now)).min(MAX_SLEEP))
    }

    /// Handles `events` in order until the outlet holds pushes; then returns the rest, to
    /// be handled once it has handed them over.
    fn handle_events<I: Iterator<Item = Inbound>>(&mut self, mut events: I, now: u64) -> Option<I> {
        while let Some(event) = events.next() {
            self.handle_inbound(event, now);
            if self.replies.holding() {
                return Some(events);
            }
        }
        None
    }

    /// Handles what is already queued on either input, alternating, without waiting; input
    /// only while the outlet is not holding (first the rest of a stopped batch).
    fn take_queued<B: IntoIterator<Item = Inbound>>(
        &mut self,
        inbound: &Receiver<B>,
        completions: &Receiver<Completion>,
        rest: &mut Option<B::IntoIter>,
    ) {
        let now = unix_now_ms();
        for _ in 0..MAX_TAKEN_PER_TURN {
            let mut took = false;
            if let Ok(completion) = completions.try_recv() {
                self.handle_completion(completion, now);
                took = true;
            }
            if self.replies.holding() {
                // What it holds may fit now.
                self.replies.flush();
            }
            if !self.replies.holding() {
                if let Some(events) = rest.take() {
                    *rest = self.handle_events(events, now);
                    took = true;
                } else if let Ok(batch) = inbound.try_recv() {
                    *rest = self.handle_events(batch.into_iter(), now);
                    took = true;
                }
            }
            if !took {
                return;
            }
        }
    }
}
