//! Counters and histograms written by one thread and read by any, and the Prometheus text
//! format they are scraped in.
//!
//! Every block of metrics has exactly one writer: a reactor thread, the logic core's thread or
//! the store's thread. A [`Counter`] is then a relaxed atomic that its writer bumps with a plain
//! load and store (no locked instruction, no cache line shared between writers); a scrape on
//! the admin thread reads each block and sums the per-reactor ones. A second writer would lose
//! increments, never corrupt memory: keep one block per thread. Counters that several threads
//! bump rarely (the admin API's own) use [`Counter::add_shared`].

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A monotonic count with a single writer.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the block's owning thread may call this (see the module comment).
    #[inline]
    pub fn add(&self, n: u64) {
        let value = self.0.load(Ordering::Relaxed);
        self.0.store(value.wrapping_add(n), Ordering::Relaxed);
    }

    /// Adds one (owning thread only).
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n` from any thread (a locked add: for rare events only).
    pub fn add_shared(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The count so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down, set by its single writer.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    /// Sets the value (owning thread only).
    #[inline]
    pub fn set(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }

    /// The value last set.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A histogram over fixed upper bounds, single writer. Observations above the last bound
/// count only in `+Inf` (the total).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Box<[Counter]>,
    count: Counter,
    /// The sum, in millionths of the unit, so it stays an integer.
    sum_micros: Counter,
}

/// Bounds for durations in seconds: 50 µs to 5 s.
pub const SECONDS_BOUNDS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
];

/// Bounds for sizes (requests in a batch, and the like): 1 to 4096.
pub const SIZE_BOUNDS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
];

impl Histogram {
    /// An empty histogram over `bounds` (ascending).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| Counter::default()).collect(),
            count: Counter::default(),
            sum_micros: Counter::default(),
        }
    }

    /// Counts one observation of `value` (owning thread only).
    pub fn observe(&self, value: f64) {
        if let Some(index) = self.bounds.iter().position(|&bound| value <= bound) {
            self.buckets[index].inc();
        }
        self.count.inc();
        self.sum_micros.add((value * 1e6) as u64);
    }

    /// Counts one duration, in seconds.
    pub fn observe_duration(&self, elapsed: Duration) {
        self.observe(elapsed.as_secs_f64());
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.get()
    }

    /// The sum of the observations so far (to the microsecond, or the millionth).
    pub fn sum(&self) -> f64 {
        self.sum_micros.get() as f64 / 1e6
    }

    /// A copy of the counts, for summing several histograms before rendering.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: self.bounds,
            buckets: self.buckets.iter().map(Counter::get).collect(),
            count: self.count.get(),
            sum_micros: self.sum_micros.get(),
        }
    }
}

/// The counts of one or more histograms over the same bounds.
#[derive(Debug, Clone)]
pub struct HistogramSnapshot {
    bounds: &'static [f64],
    buckets: Vec<u64>,
    count: u64,
    sum_micros: u64,
}

impl HistogramSnapshot {
    /// Adds another histogram's counts (same bounds).
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        debug_assert_eq!(self.bounds, other.bounds);
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine += theirs;
        }
        self.count += other.count;
        self.sum_micros += other.sum_micros;
    }
}

/// The Prometheus text exposition format (version 0.0.4), written family by family.
#[derive(Debug, Default)]
pub struct PrometheusText {
    out: String,
}

/// What kind of family a metric is.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// Only goes up (restarts at zero with the process).
    Counter,
    /// Goes up and down.
    Gauge,
}

impl PrometheusText {
    /// A family of one or more samples: `samples` pairs a label set (`transport="ws"`, or empty)
    /// with its value.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind, samples: &[(&str, u64)]) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            if labels.is_empty() {
                let _ = writeln!(self.out, "{name} {value}");
            } else {
                let _ = writeln!(self.out, "{name}{{{labels}}} {value}");
            }
        }
    }

    /// One counter without labels.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, help, Kind::Counter, &[("", value)]);
    }

    /// One gauge without labels.
    pub fn gauge(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, help, Kind::Gauge, &[("", value)]);
    }

    /// A histogram family.
    pub fn histogram(&mut self, name: &str, help: &str, histogram: &HistogramSnapshot) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, count) in histogram.bounds.iter().zip(&histogram.buckets) {
            cumulative += count;
            let _ = writeln!(self.out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = histogram.count;
        let sum = histogram.sum_micros as f64 / 1e6;
        let _ = writeln!(self.out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(self.out, "{name}_sum {sum}\n{name}_count {count}");
    }

    /// The text written so far.
    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_renders_cumulative_buckets_its_sum_and_count() {
        let histogram = Histogram::new(&[1.0, 10.0]);
        for value in [0.5, 2.0, 3.0, 100.0] {
            histogram.observe(value);
        }
        let mut text = PrometheusText::default();
        text.histogram("x", "an example", &histogram.snapshot());
        let text = text.finish();
        assert!(text.contains("# TYPE x histogram\n"), "{text}");
        assert!(text.contains("x_bucket{le=\"1\"} 1\n"), "{text}");
        assert!(text.contains("x_bucket{le=\"10\"} 3\n"), "{text}");
        assert!(text.contains("x_bucket{le=\"+Inf\"} 4\n"), "{text}");
        assert!(text.contains("x_sum 105.5\nx_count 4\n"), "{text}");
    }

    #[test]
    fn merged_snapshots_add_up() {
        let (a, b) = (Histogram::new(SIZE_BOUNDS), Histogram::new(SIZE_BOUNDS));
        a.observe(3.0);
        b.observe(3.0);
        b.observe(5000.0);
        let mut sum = a.snapshot();
        sum.merge(&b.snapshot());
        assert_eq!(sum.count, 3);
        assert_eq!(sum.buckets[2], 2, "two in the bucket up to 4");
    }

    #[test]
    fn families_with_labels() {
        let mut text = PrometheusText::default();
        text.family(
            "c_total",
            "help",
            Kind::Counter,
            &[("transport=\"tcp\"", 2), ("transport=\"ws\"", 3)],
        );
        text.gauge("g", "a gauge", 7);
        assert_eq!(
            text.finish(),
            "# HELP c_total help\n# TYPE c_total counter\nc_total{transport=\"tcp\"} 2\n\
             c_total{transport=\"ws\"} 3\n# HELP g a gauge\n# TYPE g gauge\ng 7\n"
        );
    }
}
