//! `Pacer`: how many messages are due at an elapsed time for a target rate, so a run sends
//! `rate × t` messages by time `t` however irregular the event loop's wake-ups are.
//! Pure arithmetic; it never sleeps. A stall never turns into an unbounded burst: at most
//! `max_burst` messages are owed at once, the rest are forgiven.
//!
//! Two arrival processes. `Poisson` (the default) gives each message its own time, the gaps
//! drawn at random (exponential, mean `1 / rate`), as a population of independent clients
//! sends; the caller sleeps until [`Pacer::next_due_s`] so each goes out near its time.
//! `Even` owes `rate × t` at whatever moment it is asked, so the messages go out in bunches at
//! the caller's wake-ups; a server that batches on a timer (the store's commit delay) can lock
//! onto such bunches, which no real population does (docs/performance.md, "Arrivals").

/// How the messages of a paced run are spread in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrivals {
    /// Independent random times: exponential gaps of mean `1 / rate`.
    Poisson,
    /// `rate × elapsed` owed at each call: bunches at the caller's wake-ups.
    Even,
}

/// Messages due at a target rate (messages per second).
#[derive(Debug, Clone)]
pub struct Pacer {
    rate: f64,
    max_burst: u64,
    issued: u64,
    /// Messages forgiven after stalls, so `due` stays near `rate × elapsed − forgiven`.
    forgiven: u64,
    arrivals: Arrivals,
    /// `Poisson`: the time of the next message not yet counted as due, in seconds.
    next_arrival_s: f64,
    /// `Poisson`: the gaps' splitmix64 state (seeded, so a run can be repeated).
    rng: u64,
}

impl Pacer {
    /// A pacer for `rate` messages per second (must be positive) owing at most `max_burst`,
    /// messages evenly owed (the load generator's behaviour before `Arrivals` existed).
    pub fn new(rate: f64, max_burst: u64) -> Pacer {
        Pacer::with_arrivals(rate, max_burst, Arrivals::Even, 0)
    }

    /// A pacer whose messages arrive as `arrivals` says; `seed` picks `Poisson`'s gaps.
    pub fn with_arrivals(rate: f64, max_burst: u64, arrivals: Arrivals, seed: u64) -> Pacer {
        let mut pacer = Pacer {
            rate: rate.max(f64::MIN_POSITIVE),
            max_burst: max_burst.max(1),
            issued: 0,
            forgiven: 0,
            arrivals,
            next_arrival_s: 0.0,
            rng: seed,
        };
        pacer.next_arrival_s = pacer.gap_s();
        pacer
    }

    /// Messages to send now, `elapsed_s` seconds after the pacer's start; counts them as
    /// issued. Call [`Pacer::unsent`] for those the caller could not send after all.
    pub fn due(&mut self, elapsed_s: f64) -> u64 {
        let elapsed_s = elapsed_s.max(0.0);
        let (owed, behind) = match self.arrivals {
            Arrivals::Even => {
                let target = (self.rate * elapsed_s) as u64;
                let owed = target.saturating_sub(self.issued + self.forgiven);
                (
                    owed.min(self.max_burst),
                    owed.saturating_sub(self.max_burst),
                )
            }
            Arrivals::Poisson => {
                let mut owed = 0;
                while self.next_arrival_s <= elapsed_s && owed < self.max_burst {
                    owed += 1;
                    self.next_arrival_s += self.gap_s();
                }
                // After a stall, what the burst leaves is forgiven: about rate × the time
                // still behind, and the schedule starts again from now.
                let mut behind = 0;
                if self.next_arrival_s <= elapsed_s {
                    behind = 1 + ((elapsed_s - self.next_arrival_s) * self.rate) as u64;
                    self.next_arrival_s = elapsed_s + self.gap_s();
                }
                (owed, behind)
            }
        };
        self.forgiven += behind;
        self.issued += owed;
        owed
    }

    /// Seconds after the start at which the next message falls due: the caller's next
    /// wake-up (`Even`: when `rate × t` next reaches a whole message).
    pub fn next_due_s(&self) -> f64 {
        match self.arrivals {
            Arrivals::Even => (self.issued + self.forgiven + 1) as f64 / self.rate,
            Arrivals::Poisson => self.next_arrival_s,
        }
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

    /// One exponential gap of mean `1 / rate` seconds (`Even`: unused, 0).
    fn gap_s(&mut self) -> f64 {
        if self.arrivals == Arrivals::Even {
            return 0.0;
        }
        // 53 bits as a uniform in (0, 1]: ln never sees 0.
        let z = crate::splitmix::next(&mut self.rng);
        let uniform = ((z >> 11) + 1) as f64 / (1u64 << 53) as f64;
        -uniform.ln() / self.rate
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

    #[test]
    fn poisson_arrivals_keep_the_rate_with_random_gaps() {
        let rate = 3000.0;
        let mut p = Pacer::with_arrivals(rate, 1_000_000, Arrivals::Poisson, 7);
        // Asked every 10 µs for 20 s: each message is due once, near its own time.
        let mut gaps = Vec::new();
        let mut last = 0.0;
        let mut t = 0.0;
        while t < 20.0 {
            for _ in 0..p.due(t) {
                gaps.push(t - last);
                last = t;
            }
            t += 1e-5;
        }
        let n = gaps.len() as f64;
        assert!(
            (n - 60_000.0).abs() < 1_000.0,
            "{n} messages in 20 s at 3,000/s"
        );
        let mean = gaps.iter().sum::<f64>() / n;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / n;
        // Exponential gaps: standard deviation equal to the mean (even ones: near 0).
        let cv = var.sqrt() / mean;
        assert!((0.9..1.1).contains(&cv), "coefficient of variation {cv}");
        // Memoryless: about e^-1 of the gaps are longer than the mean.
        let longer = gaps.iter().filter(|&&g| g > 1.0 / rate).count() as f64 / n;
        assert!((0.34..0.40).contains(&longer), "{longer}");
    }

    #[test]
    fn poisson_says_when_the_next_message_falls_due() {
        let mut p = Pacer::with_arrivals(1000.0, 100, Arrivals::Poisson, 1);
        let first = p.next_due_s();
        assert!(first > 0.0);
        assert_eq!(p.due(first - 1e-9), 0);
        assert_eq!(p.due(first), 1);
        assert!(p.next_due_s() > first);
    }

    #[test]
    fn a_poisson_stall_is_capped_at_the_burst_and_the_rest_forgiven() {
        let mut p = Pacer::with_arrivals(1000.0, 50, Arrivals::Poisson, 3);
        assert_eq!(p.due(1.0), 50);
        // About 950 forgiven, none owed later: the next second brings about 1,000 again.
        assert!(p.next_due_s() > 1.0);
        let next: u64 = (1..=1000).map(|ms| p.due(1.0 + ms as f64 / 1000.0)).sum();
        assert!((850..=1150).contains(&next), "{next}");
        assert!(p.issued() < 1200, "{}", p.issued());
    }

    #[test]
    fn even_arrivals_fall_due_when_rate_times_t_reaches_a_message() {
        let mut p = Pacer::new(1000.0, 100);
        assert!((p.next_due_s() - 0.001).abs() < 1e-12);
        assert_eq!(p.due(0.0025), 2);
        assert!((p.next_due_s() - 0.003).abs() < 1e-12);
    }
}
