//! The logic core's thread: the only place that reads the clock and waits on channels.
//!
//! It feeds the sans-I/O [`LogicCore`] the gateway's event batches and the store's
//! completions as they come, each with the time it is handled, and wakes for the core's next
//! deadline. Never waits on anything but its two inputs.

use std::time::Duration;

use crossbeam_channel::{select, Receiver};

use super::core::{Inbound, LogicCore};
use super::outlet::Outlet;
use super::snowflake::unix_now_ms;
use crate::store::{Completion, Store};

/// The longest sleep without input: wall-clock time may jump, so deadlines are looked at
/// again at least this often.
const MAX_SLEEP: Duration = Duration::from_secs(1);

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
    pub fn run<B: IntoIterator<Item = Inbound>>(
        mut self,
        inbound: Receiver<B>,
        completions: Receiver<Completion>,
    ) {
        let mut now = unix_now_ms();
        loop {
            let sleep = match self.next_timeout() {
                Some(deadline) => Duration::from_millis(deadline.saturating_sub(now)),
                None => MAX_SLEEP,
            };
            select! {
                recv(inbound) -> batch => match batch {
                    Ok(batch) => self.handle_batch(batch, unix_now_ms()),
                    Err(_) => return,
                },
                recv(completions) -> completion => {
                    if let Ok(completion) = completion {
                        self.handle_completion(completion, unix_now_ms());
                    }
                },
                default(sleep.min(MAX_SLEEP)) => {}
            }
            self.take_queued(&inbound, &completions);
            self.publish_gauges();
            now = unix_now_ms();
            self.handle_timeout(now);
            self.flush();
        }
    }

    fn handle_batch<B: IntoIterator<Item = Inbound>>(&mut self, batch: B, now: u64) {
        for event in batch {
            self.handle_inbound(event, now);
        }
    }

    /// Handles what is already queued on either input, alternating, without waiting.
    fn take_queued<B: IntoIterator<Item = Inbound>>(
        &mut self,
        inbound: &Receiver<B>,
        completions: &Receiver<Completion>,
    ) {
        let now = unix_now_ms();
        for _ in 0..MAX_TAKEN_PER_TURN {
            let mut took = false;
            if let Ok(completion) = completions.try_recv() {
                self.handle_completion(completion, now);
                took = true;
            }
            if let Ok(batch) = inbound.try_recv() {
                self.handle_batch(batch, now);
                took = true;
            }
            if !took {
                return;
            }
        }
    }
}
