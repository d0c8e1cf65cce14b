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

impl<S: Store, O: Outlet> LogicCore<S, O> {
    /// Runs until the gateway side hangs up (every inbound sender dropped). A batch is
    /// dropped once its events are handled: a byte-bounded queue counts it until then.
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
                    Ok(batch) => {
                        let now = unix_now_ms();
                        for event in batch {
                            self.handle_inbound(event, now);
                        }
                        self.publish_gauges();
                    }
                    Err(_) => return,
                },
                recv(completions) -> completion => {
                    if let Ok(completion) = completion {
                        self.handle_completion(completion, unix_now_ms());
                        self.publish_gauges();
                    }
                },
                default(sleep.min(MAX_SLEEP)) => {}
            }
            now = unix_now_ms();
            self.handle_timeout(now);
        }
    }
}
