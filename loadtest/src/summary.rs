//! `Summary`: the figures of one run (or of several worker processes merged) and their JSON
//! form, whose keys are the contract with scripts (tuning/experiment.sh, bench/compare.sh):
//! `scenario`, `connected`, `failed`, `sent`, `received`, `lost`, `msgs_per_sec`,
//! `latency_us`, `ack_latency_us`, `server_rss_bytes`, `rss_per_conn_bytes`, `server_cpu_s_per_million_msgs`,
//! `duration_s`. Server figures are `null` when no `--server-pid` was given.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// Latencies are recorded in µs up to one minute, three significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("static bounds are valid")
}

/// The figures of a run.
#[derive(Debug, Clone)]
pub struct Summary {
    /// `idle`, `echo`, `chat` or `group`.
    pub scenario: String,
    /// Connections asked for.
    pub conns: u64,
    /// Connections that became ready (connected, upgraded, logged in).
    pub connected: u64,
    /// Connections that failed or were dropped, by error kind.
    pub failed: BTreeMap<String, u64>,
    /// Requests the server refused (BUSY, TOO_LARGE...), by status.
    pub refused: BTreeMap<String, u64>,
    /// Messages sent (echo requests, chat sends, heartbeats).
    pub sent: u64,
    /// Messages received (echoes, deliveries, heartbeat answers).
    pub received: u64,
    /// Messages expected and never received (deliveries: one per recipient).
    pub lost: u64,
    /// Messages received during the measurement window, and the window's length.
    pub window_received: u64,
    /// Seconds from the end of the ramp to the end of the drain.
    pub window_s: f64,
    /// Send-to-receipt latency, µs.
    pub latency: Histogram<u64>,
    /// Send-to-response latency of chat sends, µs: the ack, which the server sends only once
    /// the message is durable (the push to the recipient does not wait for the commit).
    pub ack_latency: Histogram<u64>,
    /// The server's RSS at the end, before the connections close.
    pub server_rss_bytes: Option<u64>,
    /// (RSS at the end − RSS before the first connection) / connected.
    pub rss_per_conn_bytes: Option<f64>,
    /// The server's CPU seconds over the window (utime + stime).
    pub server_cpu_s: Option<f64>,
    /// The user-space part of `server_cpu_s` (utime).
    pub server_user_cpu_s: Option<f64>,
    /// `server_cpu_s` by thread name.
    pub server_threads_cpu_s: Vec<(String, f64)>,
    /// The whole run, wall clock.
    pub duration_s: f64,
    /// Seconds from the start to the moment every connection was ready (or failed).
    pub setup_s: f64,
    /// Connections ready at that moment.
    pub ready_at_setup: u64,
    /// When the window opened, wall clock (workers report it to their parent).
    pub window_start_unix_ms: Option<u64>,
    /// The load generator's own RSS at the end, before closing (summed over workers).
    pub client_rss_bytes: Option<u64>,
}

impl Summary {
    /// An empty summary for `scenario`.
    pub fn new(scenario: &str, conns: u64) -> Summary {
        Summary {
            scenario: scenario.into(),
            conns,
            connected: 0,
            failed: BTreeMap::new(),
            refused: BTreeMap::new(),
            sent: 0,
            received: 0,
            lost: 0,
            window_received: 0,
            window_s: 0.0,
            latency: new_histogram(),
            ack_latency: new_histogram(),
            server_rss_bytes: None,
            rss_per_conn_bytes: None,
            server_cpu_s: None,
            server_user_cpu_s: None,
            server_threads_cpu_s: Vec::new(),
            duration_s: 0.0,
            client_rss_bytes: None,
            setup_s: 0.0,
            ready_at_setup: 0,
            window_start_unix_ms: None,
        }
    }

    /// Messages per second over the window.
    pub fn msgs_per_sec(&self) -> f64 {
        if self.window_s > 0.0 {
            self.window_received as f64 / self.window_s
        } else {
            0.0
        }
    }

    /// Connections made ready (TCP connect, upgrade, login) per second during the setup; the
    /// ramp caps it, so give a ramp above what the server sustains to measure the server.
    pub fn handshakes_per_sec(&self) -> f64 {
        if self.setup_s > 0.0 {
            self.ready_at_setup as f64 / self.setup_s
        } else {
            0.0
        }
    }

    /// Server CPU seconds per million messages received in the window.
    pub fn server_cpu_s_per_million_msgs(&self) -> Option<f64> {
        let cpu = self.server_cpu_s?;
        (self.window_received > 0).then(|| cpu * 1e6 / self.window_received as f64)
    }

    /// Latency percentiles in µs (`None` when nothing was measured).
    pub fn latency_json(&self) -> Value {
        percentiles_json(&self.latency)
    }

    /// The ack's latency percentiles in µs (`None` when no chat send was answered).
    pub fn ack_latency_json(&self) -> Value {
        percentiles_json(&self.ack_latency)
    }

    /// The summary as the JSON object `--json` writes.
    pub fn to_json(&self) -> Value {
        json!({
            "scenario": self.scenario,
            "conns": self.conns,
            "connected": self.connected,
            "failed": self.failed,
            "refused": self.refused,
            "sent": self.sent,
            "received": self.received,
            "lost": self.lost,
            "msgs_per_sec": round1(self.msgs_per_sec()),
            "latency_us": self.latency_json(),
            "ack_latency_us": self.ack_latency_json(),
            "server_rss_bytes": self.server_rss_bytes,
            "rss_per_conn_bytes": self.rss_per_conn_bytes.map(round1),
            "server_cpu_s_per_million_msgs": self.server_cpu_s_per_million_msgs().map(round1),
            "server_cpu_s": self.server_cpu_s.map(round3),
            "server_user_cpu_s": self.server_user_cpu_s.map(round3),
            "server_threads_cpu_s": self
                .server_threads_cpu_s
                .iter()
                .map(|(name, cpu)| (name.clone(), json!(round3(*cpu))))
                .collect::<serde_json::Map<_, _>>(),
            "window_s": round3(self.window_s),
            "setup_s": round3(self.setup_s),
            "handshakes_per_sec": round1(self.handshakes_per_sec()),
            "duration_s": round3(self.duration_s),
            "client_rss_bytes": self.client_rss_bytes,
        })
    }

    /// The summary with its histogram's recorded values, for a worker to hand to its parent.
    pub fn to_worker_json(&self) -> Value {
        let mut value = self.to_json();
        let recorded = recorded_values(&self.latency);
        value["histogram"] = json!(recorded);
        value["ack_histogram"] = json!(recorded_values(&self.ack_latency));
        value["window_received"] = json!(self.window_received);
        value["ready_at_setup"] = json!(self.ready_at_setup);
        value["window_start_unix_ms"] = json!(self.window_start_unix_ms);
        value
    }

    /// Rebuilds a worker's summary from [`Summary::to_worker_json`]; `None` if malformed.
    pub fn from_worker_json(value: &Value) -> Option<Summary> {
        let u = |key: &str| value.get(key)?.as_u64();
        let f = |key: &str| value.get(key)?.as_f64();
        let mut summary = Summary::new(value.get("scenario")?.as_str()?, u("conns")?);
        summary.connected = u("connected")?;
        for (kind, count) in value.get("failed")?.as_object()? {
            summary.failed.insert(kind.clone(), count.as_u64()?);
        }
        for (status, count) in value.get("refused")?.as_object()? {
            summary.refused.insert(status.clone(), count.as_u64()?);
        }
        summary.sent = u("sent")?;
        summary.received = u("received")?;
        summary.lost = u("lost")?;
        summary.window_received = u("window_received")?;
        summary.window_s = f("window_s")?;
        summary.duration_s = f("duration_s")?;
        summary.client_rss_bytes = value.get("client_rss_bytes").and_then(Value::as_u64);
        summary.setup_s = f("setup_s")?;
        summary.ready_at_setup = u("ready_at_setup")?;
        summary.window_start_unix_ms = value.get("window_start_unix_ms").and_then(Value::as_u64);
        for pair in value.get("histogram")?.as_array()? {
            let (v, n) = (pair.get(0)?.as_u64()?, pair.get(1)?.as_u64()?);
            summary.latency.saturating_record_n(v, n);
        }
        // Absent from workers of an older build.
        if let Some(pairs) = value.get("ack_histogram").and_then(Value::as_array) {
            for pair in pairs {
                let (v, n) = (pair.get(0)?.as_u64()?, pair.get(1)?.as_u64()?);
                summary.ack_latency.saturating_record_n(v, n);
            }
        }
        Some(summary)
    }

    /// Adds another worker's figures to these (windows overlap: the longest one is kept, and
    /// messages per second add up as each worker's rate over its own window).
    pub fn merge(&mut self, other: &Summary) {
        let rate = self.msgs_per_sec() + other.msgs_per_sec();
        let handshakes = self.handshakes_per_sec() + other.handshakes_per_sec();
        self.setup_s = self.setup_s.max(other.setup_s);
        self.ready_at_setup = (handshakes * self.setup_s).round() as u64;
        self.window_start_unix_ms = self.window_start_unix_ms.max(other.window_start_unix_ms);
        self.conns += other.conns;
        self.connected += other.connected;
        for (kind, count) in &other.failed {
            *self.failed.entry(kind.clone()).or_default() += count;
        }
        for (status, count) in &other.refused {
            *self.refused.entry(status.clone()).or_default() += count;
        }
        self.sent += other.sent;
        self.received += other.received;
        self.lost += other.lost;
        self.window_received += other.window_received;
        self.window_s = self.window_s.max(other.window_s);
        if self.window_s > 0.0 {
            // Keep msgs_per_sec() equal to the sum of the workers' rates.
            self.window_received = (rate * self.window_s).round() as u64;
        }
        let _ = self.latency.add(&other.latency);
        let _ = self.ack_latency.add(&other.ack_latency);
        self.duration_s = self.duration_s.max(other.duration_s);
        self.client_rss_bytes = match (self.client_rss_bytes, other.client_rss_bytes) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
    }

    /// The human-readable final lines.
    pub fn text(&self) -> String {
        let failed: u64 = self.failed.values().sum();
        let lat = self.latency_json();
        let mut out = format!(
            "{}: connected {}/{}, failed {} {:?}\n  sent {}, received {}, lost {}, {:.0} msgs/s over {:.1} s\n  latency µs: p50 {} p90 {} p99 {} p99.9 {} max {}\n",
            self.scenario, self.connected, self.conns, failed, self.failed,
            self.sent, self.received, self.lost, self.msgs_per_sec(), self.window_s,
            lat["p50"], lat["p90"], lat["p99"], lat["p999"], lat["max"],
        );
        if !self.ack_latency.is_empty() {
            let ack = self.ack_latency_json();
            out += &format!(
                "  ack latency µs: p50 {} p90 {} p99 {} p99.9 {} max {}\n",
                ack["p50"], ack["p90"], ack["p99"], ack["p999"], ack["max"],
            );
        }
        if let Some(rss) = self.server_rss_bytes {
            out += &format!(
                "  server: RSS {:.1} MiB, {:.0} B per connection, {} CPU s per million msgs\n",
                rss as f64 / (1 << 20) as f64,
                self.rss_per_conn_bytes.unwrap_or(f64::NAN),
                self.server_cpu_s_per_million_msgs()
                    .map_or("-".into(), |v| format!("{v:.2}")),
            );
        }
        if self.window_received > 0 && !self.server_threads_cpu_s.is_empty() {
            let per_thread: Vec<String> = self
                .server_threads_cpu_s
                .iter()
                .filter(|(_, cpu)| *cpu > 0.0)
                .map(|(name, cpu)| format!("{name} {:.2}", cpu * 1e6 / self.window_received as f64))
                .collect();
            out += &format!(
                "  by thread, CPU s per million msgs: {}\n",
                per_thread.join(", ")
            );
        }
        if let Some(rss) = self.client_rss_bytes {
            out += &format!("  loadtest RSS {:.1} MiB\n", rss as f64 / (1 << 20) as f64);
        }
        out + &format!(
            "  setup {:.2} s ({:.0} handshakes/s), duration {:.1} s",
            self.setup_s,
            self.handshakes_per_sec(),
            self.duration_s
        )
    }
}

fn percentiles_json(histogram: &Histogram<u64>) -> Value {
    if histogram.is_empty() {
        return json!({"p50": null, "p90": null, "p99": null, "p999": null, "max": null});
    }
    let q = |q: f64| histogram.value_at_quantile(q);
    json!({
        "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p999": q(0.999),
        "max": histogram.max(),
    })
}

fn recorded_values(histogram: &Histogram<u64>) -> Vec<[u64; 2]> {
    histogram
        .iter_recorded()
        .map(|v| [v.value_iterated_to(), v.count_at_value()])
        .collect()
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Summary {
        let mut s = Summary::new("echo", 10);
        s.connected = 9;
        s.failed.insert("refused".into(), 1);
        s.sent = 100;
        s.received = 98;
        s.lost = 2;
        s.window_received = 50;
        s.window_s = 2.0;
        for v in 1..=100 {
            s.latency.record(v * 10).unwrap();
        }
        s.duration_s = 3.0;
        s.setup_s = 0.5;
        s.ready_at_setup = 9;
        s
    }

    #[test]
    fn json_has_every_key_the_issue_lists() {
        let json = sample().to_json();
        for key in [
            "scenario",
            "connected",
            "failed",
            "sent",
            "received",
            "lost",
            "msgs_per_sec",
            "latency_us",
            "server_rss_bytes",
            "rss_per_conn_bytes",
            "server_cpu_s_per_million_msgs",
            "duration_s",
        ] {
            assert!(json.get(key).is_some(), "{key} missing");
        }
        for key in ["p50", "p90", "p99", "p999", "max"] {
            assert!(json["latency_us"][key].is_u64(), "{key}");
        }
        assert_eq!(json["failed"]["refused"], 1);
        assert_eq!(json["msgs_per_sec"], 25.0);
        assert_eq!(json["latency_us"]["max"], 1000);
        assert!(json["server_rss_bytes"].is_null());
        assert_eq!(json["handshakes_per_sec"], 18.0);
    }

    #[test]
    fn server_figures_divide_by_window_messages() {
        let mut s = sample();
        s.server_cpu_s = Some(0.5);
        assert_eq!(s.server_cpu_s_per_million_msgs(), Some(10_000.0));
        s.window_received = 0;
        assert_eq!(s.server_cpu_s_per_million_msgs(), None);
    }

    #[test]
    fn worker_json_round_trips_and_merges() {
        let a = sample();
        let back = Summary::from_worker_json(&a.to_worker_json()).unwrap();
        assert_eq!(back.latency.len(), 100);
        assert_eq!(back.failed, a.failed);
        let mut merged = a.clone();
        merged.merge(&back);
        assert_eq!(merged.connected, 18);
        assert_eq!(merged.sent, 200);
        assert_eq!(merged.failed["refused"], 2);
        assert_eq!(merged.latency.len(), 200);
        assert_eq!(merged.msgs_per_sec(), 50.0);
        assert_eq!(merged.handshakes_per_sec(), 36.0);
    }
}
