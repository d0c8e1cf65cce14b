//! `loadtest`: the command line. Parses the options into a `RunConfig`, raises the file
//! limit, runs the engine (or P worker processes, each a re-exec of this binary with its
//! share of the connections), prints the summary and writes it as JSON.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use switchboard_loadtest::{os, parse_source_ips, RunConfig, Scenario, Summary, Target};

mod workers;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ScenarioArg {
    Idle,
    Echo,
    Chat,
    Group,
}

#[derive(Parser, Debug, Clone)]
#[command(name = "loadtest", about = "Switchboard's load generator")]
struct Args {
    /// idle: connect, log in, heartbeat, hold. echo: timed echoes. chat: 1:1 pairs. group: fan-out.
    #[arg(value_enum)]
    scenario: ScenarioArg,
    /// ws://HOST:PORT/PATH or tcp://HOST:PORT (wss:// and tls:// with --tls-ca); the only
    /// address connections go to.
    #[arg(long)]
    target: String,
    /// The CA certificate (PEM) a wss:// or tls:// target's certificate must verify with.
    #[arg(long)]
    tls_ca: Option<std::path::PathBuf>,
    /// Connections in total (over all processes).
    #[arg(long, default_value_t = 100)]
    conns: usize,
    /// New connections per second in total, `N/s` or `N`.
    #[arg(long, default_value = "5000/s")]
    ramp: String,
    /// The whole run, ramp and drain included (e.g. 30s, 2m).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// The end of the run during which nothing new is sent, for answers in flight.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    drain: Duration,
    /// Source addresses to bind round-robin, `FIRST-LAST` or one address.
    #[arg(long)]
    source_ips: Option<String>,
    /// The server's pid: its RSS and CPU time are read from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// The server's JWT secret: connections log in (a chat server) with tokens minted with it.
    #[arg(long)]
    jwt_secret: Option<String>,
    /// Message body / echo payload bytes (at least 12).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Total messages per second, or 0 / `unlimited` for as fast as the in-flight windows allow.
    #[arg(long, default_value = "unlimited")]
    rate: String,
    /// How paced messages are spread: `poisson`, each at its own random time (independent
    /// clients), or `even`, `rate × t` owed at each wake-up of the 1-ms loop (bunches; the
    /// only kind before 2026-12-04).
    #[arg(long, default_value = "poisson", value_parser = ["poisson", "even"])]
    arrivals: String,
    /// Messages awaiting their answer per connection.
    #[arg(long, default_value_t = 1)]
    inflight: u32,
    /// Members per group (scenario group).
    #[arg(long, default_value_t = 10)]
    group_size: usize,
    /// Heartbeat interval of a ready connection.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    heartbeat: Duration,
    /// Heartbeat with WebSocket pings (timed by their pongs) instead of PING or an echo.
    #[arg(long)]
    ws_ping: bool,
    /// A connection not connected, upgraded and logged in within this time fails.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    setup_timeout: Duration,
    /// User ids are this prefix and the connection's index.
    #[arg(long, default_value = "lt")]
    user_prefix: String,
    /// Worker processes, each with its share of the connections.
    #[arg(long, default_value_t = 1)]
    processes: usize,
    /// Write the summary as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
    /// Internal: run as worker I of P, print the summary as JSON on stdout.
    #[arg(long, hide = true, value_name = "I")]
    worker: Option<usize>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadtest: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let config = build_config(args)?;
    let paced = config.rate > 0.0;
    let limit = os::raise_nofile_limit()?;
    if let Some(index) = args.worker {
        let config = workers::share(&config, index, args.processes);
        check_fds(config.conns, limit)?;
        let summary = switchboard_loadtest::run(config)?;
        println!("{}", summary.to_worker_json());
        return Ok(());
    }
    let summary = if args.processes > 1 {
        workers::run(&config, args.processes)?
    } else {
        check_fds(config.conns, limit)?;
        switchboard_loadtest::run(config)?
    };
    if let Some(path) = &args.json {
        let mut json = summary.to_json();
        // Paced runs say how their messages were spread (figures of the two kinds differ).
        if paced {
            json["arrivals"] = args.arrivals.as_str().into();
        }
        std::fs::write(path, format!("{json:#}\n"))?;
    }
    // A closed stdout (`| head`) must not lose the JSON written above, nor panic.
    let _ = writeln!(std::io::stdout(), "{}", summary.text());
    Ok(())
}

/// File descriptors a process needs besides its connections.
const FD_SLACK: u64 = 32;

fn check_fds(conns: usize, limit: u64) -> Result<(), String> {
    if conns as u64 + FD_SLACK > limit {
        return Err(format!(
            "{conns} connections need {} descriptors; RLIMIT_NOFILE allows {limit}: use --processes",
            conns as u64 + FD_SLACK
        ));
    }
    Ok(())
}

fn build_config(args: &Args) -> Result<RunConfig, Box<dyn std::error::Error>> {
    let scenario = match args.scenario {
        ScenarioArg::Idle => Scenario::Idle,
        ScenarioArg::Echo => Scenario::Echo,
        ScenarioArg::Chat => Scenario::Chat,
        ScenarioArg::Group => Scenario::Group,
    };
    let mut config = RunConfig::new(scenario, Target::parse(&args.target)?);
    if matches!(scenario, Scenario::Chat | Scenario::Group) && args.jwt_secret.is_none() {
        return Err("chat and group log in to a chat server: --jwt-secret is required".into());
    }
    if args.size < switchboard_loadtest::MIN_SIZE {
        return Err(format!("--size must be at least {}", switchboard_loadtest::MIN_SIZE).into());
    }
    if args.drain >= args.duration {
        return Err("--drain must be shorter than --duration".into());
    }
    config.tls = match (&args.tls_ca, config.target.tls) {
        (Some(ca), true) => Some(switchboard_loadtest::tls::trust(ca)?),
        (None, true) => return Err("a wss:// or tls:// target needs --tls-ca".into()),
        (_, false) => None,
    };
    config.conns = args.conns;
    config.ramp_per_s = parse_ramp(&args.ramp)?;
    config.duration = args.duration;
    config.drain = args.drain;
    if let Some(range) = &args.source_ips {
        config.source_ips = parse_source_ips(range)?;
    }
    config.server_pid = args.server_pid;
    config.jwt_secret = args.jwt_secret.as_ref().map(|s| s.as_bytes().to_vec());
    config.size = args.size;
    config.rate = parse_rate(&args.rate)?;
    config.arrivals = match args.arrivals.as_str() {
        "even" => switchboard_loadtest::pacer::Arrivals::Even,
        _ => switchboard_loadtest::pacer::Arrivals::Poisson,
    };
    config.inflight = args.inflight.max(1);
    config.group_size = args.group_size.max(2);
    config.heartbeat = args.heartbeat.max(Duration::from_millis(10));
    config.ws_ping = args.ws_ping;
    config.setup_timeout = args.setup_timeout;
    config.user_prefix = args.user_prefix.clone();
    config.progress = (!args.quiet).then(String::new);
    Ok(config)
}

/// `N/s` or `N`, positive.
fn parse_ramp(text: &str) -> Result<f64, String> {
    let number = text.strip_suffix("/s").unwrap_or(text);
    match number.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("bad --ramp {text:?}: expected N/s with N > 0")),
    }
}

/// `unlimited`, `0`, or a positive number of messages per second.
fn parse_rate(text: &str) -> Result<f64, String> {
    if text == "unlimited" {
        return Ok(0.0);
    }
    match text
        .strip_suffix("/s")
        .unwrap_or(text)
        .trim()
        .parse::<f64>()
    {
        Ok(v) if v >= 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("bad --rate {text:?}: expected N/s or unlimited")),
    }
}

/// Keeps `Summary` in scope for workers.rs's signature docs.
#[allow(dead_code)]
fn _summary_type(_: &Summary) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramps_and_rates_parse() {
        assert_eq!(parse_ramp("2000/s"), Ok(2000.0));
        assert_eq!(parse_ramp("50"), Ok(50.0));
        assert!(parse_ramp("0/s").is_err());
        assert!(parse_ramp("fast").is_err());
        assert_eq!(parse_rate("unlimited"), Ok(0.0));
        assert_eq!(parse_rate("100000/s"), Ok(100_000.0));
        assert!(parse_rate("-1").is_err());
    }
}
