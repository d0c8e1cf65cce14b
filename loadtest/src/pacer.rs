//! `Pacer`: how many messages are due at an elapsed time for a target rate, so a run sends
//! `rate × t` messages by time `t` however irregular the event loop's wake-ups are.
//! Pure arithmetic; it never sleeps. A stall never turns into an unbounded burst: at most
//! `max_burst` messages are owed at once, the rest are forgiven.

/// Messages due at a target rate (messages per second).
#[derive(Debug, Clone)]
pub struct Pacer {
    rate: f64,
    max_burst: u64,
    issued: u64,
    /// Messages forgiven after stalls, so `due` stays near `rate × elapsed − forgiven`.
    forgiven: u64,
}

impl Pacer {
    /// A pacer for `rate` messages per second (must be positive) owing at most `max_burst`.
    pub fn new(rate: f64, max_burst: u64) -> Pacer {
        Pacer {
            rate: rate.max(f64::MIN_POSITIVE),
            max_burst: max_burst.max(1),
            issued: 0,
            forgiven: 0,
        }
    }

    /// Messages to send now, `elapsed_s` seconds after the pacer's start; counts them as
    /// issued. Call [`Pacer::unsent`] for those the caller could not send after all.
    pub fn due(&mut self, elapsed_s: f64) -> u64 {
        let target = (self.rate * elapsed_s.max(0.0)) as u64;
        let owed = target.saturating_sub(self.issued + self.forgiven);
        let now = owed.min(self.max_burst);
        self.forgiven += owed - now;
        self.issued += now;
        now
    }

    /// Gives back `n` messages `due` returned that found no connection ready to send them:
    /// they are forgiven (the window is full, the rate is beyond what the target sustains).
    pub fn unsent(&mut self, n: u64) {
        let n = n.min(self.issued);
        self.issued -= n;
        self.forgiven += n;
    }

    /// Messages issued so far.
    pub fn issued(&self) -> u64 {
        self.issued
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_rate_times_elapsed() {
        let mut p = Pacer::new(1000.0, 1_000_000);
        assert_eq!(p.due(0.0), 0);
        assert_eq!(p.due(0.0105), 10);
        assert_eq!(p.due(0.0105), 0);
        assert_eq!(p.due(1.0), 990);
        assert_eq!(p.issued(), 1000);
    }

    #[test]
    fn a_stall_is_capped_at_the_burst_and_the_rest_forgiven() {
        let mut p = Pacer::new(1000.0, 50);
        assert_eq!(p.due(1.0), 50);
        // The 950 beyond the burst are forgiven, not owed later.
        assert_eq!(p.due(1.0015), 1);
        assert_eq!(p.issued(), 51);
    }

    #[test]
    fn unsent_messages_are_not_owed_again() {
        let mut p = Pacer::new(100.0, 1000);
        assert_eq!(p.due(1.0), 100);
        p.unsent(40);
        assert_eq!(p.issued(), 60);
        assert_eq!(p.due(1.0), 0);
        assert_eq!(p.due(1.1), 10);
    }

    #[test]
    fn slow_rates_issue_whole_messages() {
        let mut p = Pacer::new(0.5, 10);
        assert_eq!(p.due(1.9), 0);
        assert_eq!(p.due(2.0), 1);
        assert_eq!(p.due(3.9), 0);
    }
}
