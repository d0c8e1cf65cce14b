//! The target server's resident memory and CPU time (in all, in user space, and per thread
//! name), read from `/proc/PID/status`, `/proc/PID/stat` and `/proc/PID/task/*/stat`
//! (`--server-pid`). Reading only; a vanished process is an error, never
//! a panic.

use std::fs;
use std::io;

/// One reading of a process.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcSample {
    /// VmRSS, in bytes.
    pub rss_bytes: u64,
    /// utime + stime, in seconds.
    pub cpu_s: f64,
    /// utime alone, in seconds: the server's own code, where stime is the kernel's work on its
    /// behalf (on loopback, much of it the peer's receive path).
    pub user_cpu_s: f64,
    /// utime + stime per thread name (threads of one name summed: `reactor-0`, `logic`,
    /// `store`...), in seconds; which thread is the bottleneck.
    pub threads: Vec<(String, f64)>,
}

impl ProcSample {
    /// CPU seconds per thread name from `earlier` to this sample (threads that started in
    /// between count from zero).
    pub fn threads_since(&self, earlier: &ProcSample) -> Vec<(String, f64)> {
        self.threads
            .iter()
            .map(|(name, now)| {
                let before = earlier
                    .threads
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or(0.0, |(_, cpu)| *cpu);
                (name.clone(), now - before)
            })
            .collect()
    }
}

/// Reads `pid`'s RSS and CPU time now.
pub fn sample(pid: u32) -> io::Result<ProcSample> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let rss_kib = status_field(&status, "VmRSS:").ok_or_else(|| bad("no VmRSS"))?;
    let (user, system) = cpu_ticks(&stat).ok_or_else(|| bad("unreadable /proc/PID/stat"))?;
    let hz = crate::os::clock_ticks_per_second();
    Ok(ProcSample {
        rss_bytes: rss_kib * 1024,
        cpu_s: (user + system) as f64 / hz,
        user_cpu_s: user as f64 / hz,
        threads: thread_cpu(pid, hz),
    })
}

/// utime + stime by thread name, from `/proc/PID/task/*/stat`; a thread that exits while
/// being read is skipped.
fn thread_cpu(pid: u32, hz: f64) -> Vec<(String, f64)> {
    let mut threads: Vec<(String, f64)> = Vec::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return threads;
    };
    for task in tasks.flatten() {
        let Ok(stat) = fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(name), Some((user, system))) = (comm(&stat), cpu_ticks(&stat)) else {
            continue;
        };
        let cpu = (user + system) as f64 / hz;
        match threads.iter_mut().find(|(n, _)| n == name) {
            Some((_, total)) => *total += cpu,
            None => threads.push((name.to_string(), cpu)),
        }
    }
    threads.sort_by(|a, b| a.0.cmp(&b.0));
    threads
}

/// The `comm` field of a stat line: between the first '(' and the last ')'.
fn comm(stat: &str) -> Option<&str> {
    stat.get(stat.find('(')? + 1..stat.rfind(')')?)
}

/// The number after `key` on the line that starts with it (`/proc/PID/status` style).
pub fn status_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
}

/// (utime, stime) in clock ticks: fields 14 and 15 of `/proc/PID/stat`, counted after the
/// `comm` field, which is parenthesised and may itself hold spaces and parentheses.
pub fn cpu_ticks(stat: &str) -> Option<(u64, u64)> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace();
    // after_comm starts at field 3 (state); utime is field 14.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_skip_a_comm_with_spaces_and_parentheses() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 1 2 3";
        assert_eq!(cpu_ticks(stat), Some((250, 75)));
        assert_eq!(cpu_ticks("42 (x) S 1"), None);
        assert_eq!(comm(stat), Some("a (b) c"));
    }

    #[test]
    fn status_fields_parse() {
        let status = "Name:\tx\nVmRSS:\t  1234 kB\nThreads:\t3\n";
        assert_eq!(status_field(status, "VmRSS:"), Some(1234));
        assert_eq!(status_field(status, "VmSwap:"), None);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_bytes > 0);
        assert!(s.cpu_s >= 0.0);
    }
}
