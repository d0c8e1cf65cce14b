//! `--processes P`: re-executes this binary as P workers, each with its share of the
//! connections, user ids and source addresses, and merges the JSON summaries they print.
//! The parent samples the server itself, since its pid is one process for all workers.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use switchboard_loadtest::engine::unix_ms;
use switchboard_loadtest::server_stats::{self, ProcSample};
use switchboard_loadtest::{RunConfig, Summary};

/// Worker `index`'s share of `config` among `processes`.
pub fn share(config: &RunConfig, index: usize, processes: usize) -> RunConfig {
    let processes = processes.max(1);
    let mut mine = config.clone();
    let base = config.conns / processes;
    mine.conns = base + usize::from(index < config.conns % processes);
    mine.ramp_per_s = config.ramp_per_s / processes as f64;
    mine.rate = config.rate / processes as f64;
    mine.server_pid = None;
    if processes > 1 {
        mine.user_prefix = format!("{}w{index}-", config.user_prefix);
        mine.progress = config.progress.as_ref().map(|_| format!("[w{index}] "));
        if config.source_ips.len() >= processes {
            mine.source_ips = config
                .source_ips
                .iter()
                .skip(index)
                .step_by(processes)
                .copied()
                .collect();
        }
    }
    mine
}

/// Runs `processes` workers with the same command line and merges their summaries.
pub fn run(config: &RunConfig, processes: usize) -> Result<Summary, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let baseline = config
        .server_pid
        .and_then(|pid| server_stats::sample(pid).ok());
    let mut children = Vec::new();
    for index in 0..processes {
        let child = Command::new(&exe)
            .args(&args)
            .arg("--worker")
            .arg(index.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start worker {index}: {e}"))?;
        children.push(child);
    }
    // Sample the server while the workers still hold their connections: shortly before the
    // end of the run (their drain is the last part of it).
    // Meanwhile sample its CPU time every 100 ms, to take the reading nearest to the moment
    // the last worker opened its window.
    let started = Instant::now();
    let before_end = config.duration.saturating_sub(config.drain / 2);
    let mut cpu_samples: Vec<(u64, ProcSample)> = Vec::new();
    while let Some(left) = before_end.checked_sub(started.elapsed()) {
        std::thread::sleep(Duration::from_millis(100).min(left));
        if let Some(s) = config
            .server_pid
            .and_then(|pid| server_stats::sample(pid).ok())
        {
            cpu_samples.push((unix_ms(), s));
        }
    }
    let last = config
        .server_pid
        .and_then(|pid| server_stats::sample(pid).ok());
    let mut merged: Option<Summary> = None;
    for (index, child) in children.into_iter().enumerate() {
        let output = child
            .wait_with_output()
            .map_err(|e| format!("worker {index}: {e}"))?;
        let text = String::from_utf8_lossy(&output.stdout);
        let line = text.lines().last().unwrap_or_default();
        let summary = serde_json::from_str(line)
            .ok()
            .and_then(|v| Summary::from_worker_json(&v))
            .ok_or_else(|| format!("worker {index} failed ({})", output.status))?;
        match &mut merged {
            Some(m) => m.merge(&summary),
            None => merged = Some(summary),
        }
    }
    let mut summary = merged.ok_or("no workers")?;
    if let (Some(base), Some(last)) = (baseline, last) {
        summary.server_rss_bytes = Some(last.rss_bytes);
        let open = summary.connected.saturating_sub(
            summary
                .failed
                .iter()
                .filter(|(k, _)| k.starts_with("dropped_"))
                .map(|(_, v)| v)
                .sum(),
        );
        if open > 0 {
            summary.rss_per_conn_bytes =
                Some((last.rss_bytes as f64 - base.rss_bytes as f64) / open as f64);
        }
        let window_cpu = summary.window_start_unix_ms.and_then(|start| {
            cpu_samples
                .iter()
                .find(|(at, _)| *at >= start)
                .map(|(_, cpu)| cpu.clone())
        });
        let from = window_cpu.unwrap_or(base);
        summary.server_cpu_s = Some(last.cpu_s - from.cpu_s);
        summary.server_user_cpu_s = Some(last.user_cpu_s - from.user_cpu_s);
        summary.server_threads_cpu_s = last.threads_since(&from);
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_loadtest::{Scenario, Target};

    #[test]
    fn shares_add_up_and_get_distinct_users_and_sources() {
        let mut config =
            RunConfig::new(Scenario::Idle, Target::parse("tcp://127.0.0.1:9").unwrap());
        config.conns = 10;
        config.rate = 300.0;
        config.source_ips = switchboard_loadtest::parse_source_ips("127.0.0.1-127.0.0.4").unwrap();
        let shares: Vec<RunConfig> = (0..3).map(|i| share(&config, i, 3)).collect();
        assert_eq!(shares.iter().map(|s| s.conns).sum::<usize>(), 10);
        assert_eq!(shares[0].conns, 4);
        assert_eq!(shares[1].rate, 100.0);
        assert_ne!(shares[0].user_prefix, shares[1].user_prefix);
        assert_eq!(shares[0].source_ips.len(), 2);
        assert_eq!(shares[1].source_ips.len(), 1);
        assert_eq!(share(&config, 0, 1).user_prefix, "lt");
    }
}
