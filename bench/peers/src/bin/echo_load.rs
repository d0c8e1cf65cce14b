//! A stand-in WebSocket echo load for bench/compare.sh until `loadtest echo` lands: one thread,
//! N connections, K binary messages of B bytes in flight on each, latency from send to echo.
//! Prints the JSON summary loadtest writes (same keys, so compare.sh reads either), measuring
//! only the window after a warm-up. Aims only at the URL it is given; stops by itself.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::{Bytes, Message};

struct Config {
    target: String,
    conns: usize,
    size: usize,
    inflight: usize,
    duration: Duration,
    warmup: Duration,
    server_pid: Option<u32>,
    json: Option<String>,
    /// Loopback source addresses used round-robin, so TIME_WAIT of earlier runs (ours or
    /// anyone's on this machine) does not run one address out of ports.
    sources: Vec<Ipv4Addr>,
}

fn parse_args() -> Config {
    let usage = || -> ! {
        eprintln!(
            "usage: echo_load --target ws://HOST:PORT/ [--conns N] [--size B] [--inflight K] \
             [--duration S] [--warmup S] [--server-pid PID] [--json FILE] \
             [--source-ips FIRST-LAST]"
        );
        std::process::exit(2)
    };
    let mut config = Config {
        target: String::new(),
        conns: 100,
        size: 20,
        inflight: 1,
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(1),
        server_pid: None,
        json: None,
        sources: vec![Ipv4Addr::LOCALHOST],
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| usage());
        // Durations may carry loadtest's "s" suffix: compare.sh passes both clients the same.
        let number = || {
            let digits = value.strip_suffix('s').unwrap_or(&value);
            digits.parse::<u64>().unwrap_or_else(|_| usage())
        };
        match flag.as_str() {
            "--target" => config.target = value.clone(),
            "--conns" => config.conns = number() as usize,
            "--size" => config.size = number() as usize,
            "--inflight" => config.inflight = (number() as usize).max(1),
            "--duration" => config.duration = Duration::from_secs(number()),
            "--warmup" => config.warmup = Duration::from_secs(number()),
            "--server-pid" => config.server_pid = Some(number() as u32),
            "--json" => config.json = Some(value.clone()),
            "--source-ips" => config.sources = parse_sources(&value).unwrap_or_else(|| usage()),
            _ => usage(),
        }
    }
    if !config.target.starts_with("ws://") {
        usage();
    }
    config
}

/// `FIRST-LAST` or one address, loopback only.
fn parse_sources(range: &str) -> Option<Vec<Ipv4Addr>> {
    let (first, last) = range.split_once('-').unwrap_or((range, range));
    let (first, last): (Ipv4Addr, Ipv4Addr) = (first.parse().ok()?, last.parse().ok()?);
    let ips: Vec<Ipv4Addr> = (u32::from(first)..=u32::from(last))
        .map(Ipv4Addr::from)
        .collect();
    (!ips.is_empty() && ips.len() <= 1 << 16 && ips.iter().all(Ipv4Addr::is_loopback))
        .then_some(ips)
}

async fn connect(target: &str, source: Ipv4Addr) -> Result<WebSocket, Box<dyn std::error::Error>> {
    let url = target.strip_prefix("ws://").ok_or("not a ws:// URL")?;
    let authority = url.split('/').next().unwrap_or(url);
    let server: SocketAddr = authority.parse()?;
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    let stream = socket.connect(server).await?;
    stream.set_nodelay(true)?;
    let (ws, _) = tokio_tungstenite::client_async(target, stream).await?;
    Ok(ws)
}

/// What every connection's task adds to; one thread, so Cell and RefCell suffice.
struct Tally {
    recording: Cell<bool>,
    sent: Cell<u64>,
    received: Cell<u64>,
    failed: Cell<u64>,
    latency_us: RefCell<Histogram<u64>>,
}

type WebSocket = tokio_tungstenite::WebSocketStream<TcpStream>;

async fn drive(ws: WebSocket, payload: Bytes, inflight: usize, tally: Rc<Tally>) {
    let (mut sink, mut stream) = ws.split();
    let mut sent_at = VecDeque::with_capacity(inflight);
    for _ in 0..inflight {
        if sink.feed(Message::Binary(payload.clone())).await.is_err() {
            tally.failed.set(tally.failed.get() + 1);
            return;
        }
        sent_at.push_back(Instant::now());
    }
    if sink.flush().await.is_err() {
        tally.failed.set(tally.failed.get() + 1);
        return;
    }
    while let Some(message) = stream.next().await {
        match message {
            Ok(Message::Binary(echo)) if echo.len() == payload.len() => {
                let started = sent_at.pop_front().expect("an echo answers a message sent");
                if tally.recording.get() {
                    let us = started.elapsed().as_micros() as u64;
                    let _ = tally.latency_us.borrow_mut().record(us.max(1));
                    tally.received.set(tally.received.get() + 1);
                }
            }
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            _ => break,
        }
        if sink.send(Message::Binary(payload.clone())).await.is_err() {
            break;
        }
        sent_at.push_back(Instant::now());
        if tally.recording.get() {
            tally.sent.set(tally.sent.get() + 1);
        }
    }
    tally.failed.set(tally.failed.get() + 1);
}

/// utime + stime of a process in seconds (USER_HZ is 100 on Linux), and its VmRSS in bytes.
fn server_usage(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((ticks as f64 / 100.0, rss_kib * 1024))
}

async fn run(config: Config) -> String {
    let tally = Rc::new(Tally {
        recording: Cell::new(false),
        sent: Cell::new(0),
        received: Cell::new(0),
        failed: Cell::new(0),
        latency_us: RefCell::new(Histogram::new_with_bounds(1, 60_000_000, 3).expect("bounds")),
    });
    let payload = Bytes::from(vec![b'x'; config.size]);
    let mut connected = 0;
    let mut connect_failed = 0;
    let mut sources = config.sources.iter().copied().cycle();
    for _ in 0..config.conns {
        let source = sources.next().expect("at least one source address");
        match tokio::time::timeout(Duration::from_secs(5), connect(&config.target, source)).await {
            Ok(Ok(ws)) => {
                connected += 1;
                tokio::task::spawn_local(drive(
                    ws,
                    payload.clone(),
                    config.inflight,
                    tally.clone(),
                ));
            }
            outcome => {
                if connect_failed == 0 {
                    match outcome {
                        Ok(Err(e)) => eprintln!("echo_load: connect from {source}: {e}"),
                        _ => eprintln!("echo_load: connect from {source}: timed out"),
                    }
                }
                connect_failed += 1;
            }
        }
    }
    tokio::time::sleep(config.warmup).await;
    let before = config.server_pid.and_then(server_usage);
    let started = Instant::now();
    tally.recording.set(true);
    tokio::time::sleep(config.duration).await;
    tally.recording.set(false);
    let elapsed = started.elapsed().as_secs_f64();
    let after = config.server_pid.and_then(server_usage);
    let received = tally.received.get();
    let histogram = tally.latency_us.borrow();
    let cpu = match (before, after) {
        (Some((b, _)), Some((a, _))) if received > 0 => {
            format!("{:.3}", (a - b) * 1e6 / received as f64)
        }
        _ => "null".into(),
    };
    let rss = after.map_or("null".into(), |(_, rss)| rss.to_string());
    format!(
        "{{\"scenario\":\"echo\",\"client\":\"echo_load\",\"connected\":{connected},\
         \"failed\":{{\"connect\":{connect_failed},\"dropped\":{}}},\"sent\":{},\"received\":{received},\
         \"lost\":0,\"msgs_per_sec\":{:.0},\"latency_us\":{{\"p50\":{},\"p90\":{},\"p99\":{},\"p999\":{},\"max\":{}}},\
         \"server_rss_bytes\":{rss},\"rss_per_conn_bytes\":null,\"server_cpu_s_per_million_msgs\":{cpu},\
         \"duration_s\":{elapsed:.3}}}",
        tally.failed.get(),
        tally.sent.get(),
        received as f64 / elapsed,
        histogram.value_at_quantile(0.5),
        histogram.value_at_quantile(0.9),
        histogram.value_at_quantile(0.99),
        histogram.value_at_quantile(0.999),
        histogram.max(),
    )
}

fn main() {
    let config = parse_args();
    let json_path = config.json.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let summary = tokio::task::LocalSet::new().block_on(&runtime, run(config));
    println!("{summary}");
    if let Some(path) = json_path {
        if let Err(e) = std::fs::write(&path, format!("{summary}\n")) {
            eprintln!("echo_load: cannot write {path}: {e}");
            std::process::exit(1);
        }
    }
    // The connections are not closed politely: exiting drops them all at once.
    std::process::exit(0);
}
