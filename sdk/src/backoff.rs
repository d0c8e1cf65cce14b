//! Exponential backoff with full jitter, for reconnect rounds and resends the server refused
//! as BUSY, INTERNAL or RATE_LIMITED.
//!
//! Attempt `n` (from 0) waits a uniformly random time in `[0, min(max, initial * multiplier^n)]`
//! ("full jitter"), so a million clients dropped at once by a dying gateway spread their
//! returns over the whole window instead of arriving together. Randomness comes in as an
//! argument, so the bounds are testable; nothing here sleeps.

use std::time::Duration;

use rand::Rng;

/// How long to wait between attempts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The ceiling of the first wait (default 200 ms).
    pub initial: Duration,
    /// The largest ceiling (default 30 s).
    pub max: Duration,
    /// How much the ceiling grows per attempt (default 2; values below 1 count as 1).
    pub multiplier: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(30),
            multiplier: 2.0,
        }
    }
}

impl Backoff {
    /// The ceiling of attempt `attempt`'s wait: `min(max, initial * multiplier^attempt)`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let growth = self.multiplier.max(1.0).powi(attempt.min(1024) as i32);
        let ceiling = self.initial.as_secs_f64() * growth;
        if ceiling.is_finite() && ceiling < self.max.as_secs_f64() {
            Duration::from_secs_f64(ceiling)
        } else {
            self.max
        }
    }

    /// The wait before attempt `attempt`: uniform in `[0, ceiling(attempt)]`.
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(attempt);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.gen_range(0..=nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn ceiling_doubles_then_caps() {
        let backoff = Backoff::default();
        assert_eq!(backoff.ceiling(0), Duration::from_millis(200));
        assert_eq!(backoff.ceiling(1), Duration::from_millis(400));
        assert_eq!(backoff.ceiling(5), Duration::from_millis(6400));
        assert_eq!(backoff.ceiling(8), Duration::from_secs(30));
        assert_eq!(backoff.ceiling(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn a_multiplier_below_one_never_shrinks_the_ceiling() {
        let backoff = Backoff {
            multiplier: 0.5,
            ..Backoff::default()
        };
        assert_eq!(backoff.ceiling(10), Duration::from_millis(200));
    }

    #[test]
    fn delays_stay_within_the_ceiling_and_spread_over_it() {
        let backoff = Backoff::default();
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in 0..12 {
            let ceiling = backoff.ceiling(attempt);
            let delays: Vec<Duration> = (0..2000)
                .map(|_| backoff.delay(attempt, &mut rng))
                .collect();
            assert!(delays.iter().all(|d| *d <= ceiling), "attempt {attempt}");
            // Full jitter: both the bottom and the top quarter of the window get used.
            assert!(delays.iter().any(|d| *d < ceiling / 4), "attempt {attempt}");
            assert!(
                delays.iter().any(|d| *d > ceiling * 3 / 4),
                "attempt {attempt}"
            );
        }
    }

    #[test]
    fn zero_initial_means_no_wait() {
        let backoff = Backoff {
            initial: Duration::ZERO,
            ..Backoff::default()
        };
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(backoff.delay(3, &mut rng), Duration::ZERO);
    }
}
