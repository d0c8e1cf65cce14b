//! Memory per idle connection (issue #3): starts a fresh `switchboard echo`, opens N WebSocket
//! and N framed-TCP connections that each make one echo round trip, leaves them idle, and
//! reports the server's RSS delta per connection (WS phase, TCP phase, overall) and the
//! kernel's memory per socket. A benchmark, not a test: it prints figures and fails only when
//! the server misbehaves. Loopback only; always stops by itself (read timeouts, SIGTERM then
//! SIGKILL for the server, RST for every client socket so no run leaves TIME_WAIT behind).

use std::error::Error;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use clap::Parser;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use switchboard_codec::packet::{PacketEncoder, HEADER_LEN};
use switchboard_codec::ws::handshake::{ClientHandshake, ClientRequest};
use switchboard_codec::ws::{Client, FrameEncoder, Message, MessageReader, OpCode, ReaderConfig};
use switchboard_codec::Decoded;

#[path = "idle_memory/server.rs"]
mod server;
#[path = "idle_memory/tls.rs"]
mod tls;

use server::ServerProcess;

type BoxError = Box<dyn Error + Send + Sync>;

/// The echo payload: small, like an idle client's heartbeat.
const PAYLOAD: &[u8] = b"idle-memory probe";
const ECHO_COMMAND: u16 = 1;
/// A read that takes longer means the server is stuck; the run fails instead of hanging.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// File descriptors the tool and the server need besides the connections.
const FD_SLACK: u64 = 64;

#[derive(Parser, Debug)]
#[command(
    name = "idle_memory",
    about = "Server RSS per idle WebSocket and TCP connection, on a fresh switchboard echo"
)]
struct Args {
    /// The switchboard binary (default: `<workspace>/target/release/switchboard`).
    #[arg(long, value_name = "PATH")]
    server_bin: Option<PathBuf>,
    /// WebSocket connections to open.
    #[arg(long, value_name = "N", default_value_t = 9_000)]
    ws: usize,
    /// Framed-TCP connections to open.
    #[arg(long, value_name = "N", default_value_t = 9_000)]
    tcp: usize,
    /// The server's reactor threads (its --workers) [default: the server's, one per core].
    #[arg(long, value_name = "W")]
    workers: Option<usize>,
    /// Loopback source addresses, used round-robin: `FIRST-LAST` or a single address.
    #[arg(long, value_name = "RANGE", default_value = "127.0.0.1-127.0.0.20")]
    source_ips: String,
    /// Connections set up in lock step (connect all, request all, read all answers).
    #[arg(long, value_name = "N", default_value_t = 256)]
    batch: usize,
    /// Wait after the server is listening before the baseline reading, in ms.
    #[arg(long, value_name = "MS", default_value_t = 1_000)]
    settle_ms: u64,
    /// Idle time after each phase before its reading, in ms.
    #[arg(long, value_name = "MS", default_value_t = 2_000)]
    idle_ms: u64,
    /// Open the TCP connections first (to see which phase pays the one-time costs).
    #[arg(long)]
    tcp_first: bool,
    /// Runs, each on a fresh server process; more than one adds a median/min/max summary.
    #[arg(long, value_name = "R", default_value_t = 1)]
    repeat: usize,
    /// Another server instead of `switchboard echo` (bench/compare.sh's peers): a shell command
    /// with {ws_port} and {tcp_port} for the free loopback ports, ready once it prints a line
    /// starting with "listening on". It must exec the server (its PID is the one measured);
    /// --server-bin and --workers are ignored; use --tcp 0 if it has no framed-TCP listener.
    #[arg(long, value_name = "CMD")]
    server_cmd: Option<String>,
    /// Both listeners speak TLS (a certificate generated for the run): every connection makes
    /// a full TLS handshake, then the same one echo, and stays idle. Connections are opened
    /// one after the other, not in lock step.
    #[arg(long)]
    tls: bool,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("idle_memory: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), BoxError> {
    let limit = switchboard_loadtest::os::raise_nofile_limit()?;
    let needed = (args.ws + args.tcp) as u64 + FD_SLACK;
    if needed > limit {
        return Err(format!(
            "{} connections need {needed} descriptors per process; RLIMIT_NOFILE allows {limit}",
            args.ws + args.tcp
        )
        .into());
    }
    let sources = parse_source_ips(&args.source_ips)?;
    let server_bin = args.server_bin.clone().unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/switchboard")
    });
    println!("machine: {}", machine_line());
    let mut runs = Vec::new();
    for index in 0..args.repeat.max(1) {
        let run = measure_once(args, &server_bin, &sources)?;
        run.print_table(index + 1);
        println!("{}", run.json(args));
        runs.push(run);
    }
    if runs.len() > 1 {
        print_summary(args, &runs);
    }
    Ok(())
}

// ---- one run ---------------------------------------------------------------------------------

/// The server's memory as /proc/PID/status reports it, in KiB, and its thread count.
#[derive(Debug, Clone, Copy, Default)]
struct ProcMemory {
    rss_kib: u64,
    anon_kib: u64,
    threads: u64,
}

/// System-wide kernel figures: TCP socket buffer pages (sockstat) and slab memory (meminfo).
#[derive(Debug, Clone, Copy, Default)]
struct KernelMemory {
    tcp_inuse: u64,
    tcp_mem_pages: u64,
    slab_kib: u64,
}

struct Reading {
    server: ProcMemory,
    kernel: KernelMemory,
}

struct Phase {
    name: &'static str,
    conns: usize,
    setup: Duration,
    after: Reading,
}

struct RunResult {
    baseline: Reading,
    phases: Vec<Phase>,
}

fn measure_once(
    args: &Args,
    server_bin: &PathBuf,
    sources: &[Ipv4Addr],
) -> Result<RunResult, BoxError> {
    let tls = if args.tls {
        Some(tls::TlsSetup::new()?)
    } else {
        None
    };
    let mut server = match &args.server_cmd {
        Some(template) => ServerProcess::start_command(template)?,
        None => ServerProcess::start(server_bin, args.workers, tls.as_ref())?,
    };
    std::thread::sleep(Duration::from_millis(args.settle_ms));
    let baseline = server.reading()?;
    let mut held: Vec<TcpStream> = Vec::with_capacity(args.ws + args.tcp);
    let mut phases = Vec::new();
    let order: [(&'static str, usize); 2] = if args.tcp_first {
        [("tcp", args.tcp), ("ws", args.ws)]
    } else {
        [("ws", args.ws), ("tcp", args.tcp)]
    };
    let mut source = sources.iter().copied().cycle();
    for (name, conns) in order {
        if conns == 0 {
            continue;
        }
        let started = Instant::now();
        if let Some(tls) = &tls {
            let target = if name == "ws" {
                server.ws_addr
            } else {
                server.tcp_addr
            };
            for _ in 0..conns {
                let stream = connect_from(source.next().expect("cycle"), target)?;
                held.push(match name {
                    "ws" => tls.open_ws(stream, target)?,
                    _ => tls.open_tcp(stream)?,
                });
            }
        }
        for start in (0..conns)
            .step_by(args.batch.max(1))
            .filter(|_| tls.is_none())
        {
            let count = args.batch.max(1).min(conns - start);
            let batch = match name {
                "ws" => open_ws_batch(server.ws_addr, &mut source, count)?,
                _ => open_tcp_batch(server.tcp_addr, &mut source, count)?,
            };
            held.extend(batch);
        }
        let setup = started.elapsed();
        std::thread::sleep(Duration::from_millis(args.idle_ms));
        phases.push(Phase {
            name,
            conns,
            setup,
            after: server.reading()?,
        });
    }
    close_with_reset(held);
    server.stop();
    Ok(RunResult { baseline, phases })
}

/// Drops every client socket with SO_LINGER 0: an RST instead of a FIN, so neither end keeps
/// the 4-tuple in TIME_WAIT and the next run finds every source port free.
fn close_with_reset(streams: Vec<TcpStream>) {
    for stream in streams {
        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    }
}

// ---- clients ---------------------------------------------------------------------------------

fn connect_from(source: Ipv4Addr, server: SocketAddr) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.bind(&SockAddr::from(SocketAddrV4::new(source, 0)))?;
    socket.connect(&SockAddr::from(server))?;
    socket.set_tcp_nodelay(true)?;
    socket.set_read_timeout(Some(READ_TIMEOUT))?;
    Ok(socket.into())
}

/// Reads until `done` accepts the bytes gathered so far; an EOF or a timeout is an error.
fn read_until<T>(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    mut done: impl FnMut(&mut BytesMut) -> Result<Option<T>, BoxError>,
) -> Result<T, BoxError> {
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(value) = done(buf)? {
            return Ok(value);
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err("the server closed a connection during setup".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Upgrades `count` connections (each waits for its 101), then makes each echo one binary
/// message; connections of a batch move in lock step so their round trips overlap.
fn open_ws_batch(
    server: SocketAddr,
    source: &mut impl Iterator<Item = Ipv4Addr>,
    count: usize,
) -> Result<Vec<TcpStream>, BoxError> {
    let host = server.to_string();
    let request = ClientRequest::new(&host, "/");
    let mut streams = Vec::with_capacity(count);
    let mut handshakes = Vec::with_capacity(count);
    let mut out = BytesMut::with_capacity(512);
    for _ in 0..count {
        let mut stream = connect_from(source.next().expect("cycle"), server)?;
        out.clear();
        let handshake = ClientHandshake::start(&request, random_bytes(), &mut out)?;
        stream.write_all(&out)?;
        streams.push(stream);
        handshakes.push(handshake);
    }
    let mut encoder = FrameEncoder::<Client>::new();
    for (stream, handshake) in streams.iter_mut().zip(&mut handshakes) {
        let mut buf = BytesMut::new();
        read_until(stream, &mut buf, |buf| {
            Ok(match handshake.decode(buf)? {
                Decoded::Complete(_) => Some(()),
                Decoded::NeedMore => None,
            })
        })?;
        if !buf.is_empty() {
            return Err("the server sent bytes after its 101 unasked".into());
        }
        out.clear();
        let key: [u8; 4] = random_bytes();
        encoder.encode_masked(OpCode::Binary, true, PAYLOAD, key, &mut out);
        stream.write_all(&out)?;
    }
    for stream in &mut streams {
        let mut reader = MessageReader::<Client>::new(ReaderConfig::default());
        let mut buf = BytesMut::new();
        let message = read_until(stream, &mut buf, |buf| {
            Ok(match reader.read(buf)? {
                Decoded::Complete(message) => Some(message),
                Decoded::NeedMore => None,
            })
        })?;
        match message {
            Message::Binary(payload) if payload.as_ref() == PAYLOAD => {}
            other => return Err(format!("unexpected WebSocket echo: {other:?}").into()),
        }
    }
    Ok(streams)
}

/// Connects `count` framed-TCP clients and makes each echo one packet.
fn open_tcp_batch(
    server: SocketAddr,
    source: &mut impl Iterator<Item = Ipv4Addr>,
    count: usize,
) -> Result<Vec<TcpStream>, BoxError> {
    let mut packet = BytesMut::new();
    PacketEncoder::new().encode_into(ECHO_COMMAND, PAYLOAD, &mut packet)?;
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        let mut stream = connect_from(source.next().expect("cycle"), server)?;
        stream.write_all(&packet)?;
        streams.push(stream);
    }
    let mut echo = vec![0u8; HEADER_LEN + PAYLOAD.len()];
    for stream in &mut streams {
        stream.read_exact(&mut echo)?;
        if echo != packet.as_ref() {
            return Err("the TCP echo differs from the packet sent".into());
        }
    }
    Ok(streams)
}

/// Bytes for WebSocket nonces and masking keys: splitmix64 seeded from the clock and pid.
/// Not cryptographic; a benchmark client needs keys that differ, not keys that are secret.
fn random_bytes<const N: usize>() -> [u8; N] {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
                ^ u64::from(std::process::id()) << 32,
        );
    }
    let mut out = [0u8; N];
    for chunk in out.chunks_mut(8) {
        let word = STATE.with(|state| {
            let next = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
            state.set(next);
            let mut z = next;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        });
        chunk.copy_from_slice(&word.to_ne_bytes()[..chunk.len()]);
    }
    out
}

fn parse_source_ips(range: &str) -> Result<Vec<Ipv4Addr>, BoxError> {
    let (first, last) = range.split_once('-').unwrap_or((range, range));
    let first: Ipv4Addr = first.trim().parse()?;
    let last: Ipv4Addr = last.trim().parse()?;
    let (first, last) = (u32::from(first), u32::from(last));
    if last < first || last - first >= 1 << 16 {
        return Err(format!("bad source range {range:?}").into());
    }
    let ips: Vec<Ipv4Addr> = (first..=last).map(Ipv4Addr::from).collect();
    if let Some(ip) = ips.iter().find(|ip| !ip.is_loopback()) {
        return Err(format!("{ip} is not a loopback address: this tool stays on loopback").into());
    }
    Ok(ips)
}

// ---- /proc -----------------------------------------------------------------------------------

/// The number after `key` on the line of `text` that starts with it.
fn field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
}

fn read_proc_memory(pid: u32) -> Result<ProcMemory, BoxError> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let get = |key: &str| field(&status, key).ok_or_else(|| format!("no {key} in status"));
    Ok(ProcMemory {
        rss_kib: get("VmRSS:")?,
        anon_kib: get("RssAnon:")?,
        threads: get("Threads:")?,
    })
}

fn read_kernel_memory() -> Result<KernelMemory, BoxError> {
    let sockstat = fs::read_to_string("/proc/net/sockstat")?;
    let tcp = sockstat
        .lines()
        .find_map(|line| line.strip_prefix("TCP:"))
        .ok_or("no TCP line in /proc/net/sockstat")?;
    let words: Vec<&str> = tcp.split_whitespace().collect();
    let tcp_value = |name: &str| {
        words
            .windows(2)
            .find(|pair| pair[0] == name)
            .and_then(|pair| pair[1].parse().ok())
            .ok_or_else(|| format!("no TCP {name} in sockstat"))
    };
    let meminfo = fs::read_to_string("/proc/meminfo")?;
    Ok(KernelMemory {
        tcp_inuse: tcp_value("inuse")?,
        tcp_mem_pages: tcp_value("mem")?,
        slab_kib: field(&meminfo, "Slab:").ok_or("no Slab in /proc/meminfo")?,
    })
}

fn machine_line() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']))
        .unwrap_or("unknown");
    format!("{cpus} cpus, kernel {}, {model}", kernel.trim())
}

// ---- reporting -------------------------------------------------------------------------------

/// Bytes per connection between two readings (KiB granularity: ±1024/conns bytes).
fn per_conn(before_kib: u64, after_kib: u64, conns: usize) -> f64 {
    (after_kib as f64 - before_kib as f64) * 1024.0 / conns.max(1) as f64
}

/// The figures of one run: (label, bytes per connection) rows, in print order.
struct Figures {
    rows: Vec<(String, f64)>,
}

impl RunResult {
    fn last(&self) -> &Reading {
        self.phases.last().map_or(&self.baseline, |p| &p.after)
    }

    fn total_conns(&self) -> usize {
        self.phases.iter().map(|p| p.conns).sum()
    }

    fn figures(&self) -> Figures {
        let mut rows = Vec::new();
        let mut before = &self.baseline;
        for phase in &self.phases {
            let (b, a) = (&before.server, &phase.after.server);
            rows.push((
                format!("{}_rss_b_per_conn", phase.name),
                per_conn(b.rss_kib, a.rss_kib, phase.conns),
            ));
            rows.push((
                format!("{}_anon_b_per_conn", phase.name),
                per_conn(b.anon_kib, a.anon_kib, phase.conns),
            ));
            before = &phase.after;
        }
        let (b, a, n) = (&self.baseline, self.last(), self.total_conns());
        rows.push((
            "all_rss_b_per_conn".into(),
            per_conn(b.server.rss_kib, a.server.rss_kib, n),
        ));
        rows.push((
            "all_anon_b_per_conn".into(),
            per_conn(b.server.anon_kib, a.server.anon_kib, n),
        ));
        // Both ends of every loopback connection are sockets of this machine.
        let sockets = 2 * n;
        rows.push((
            "kernel_tcp_mem_b_per_socket".into(),
            per_conn(
                b.kernel.tcp_mem_pages * 4,
                a.kernel.tcp_mem_pages * 4,
                sockets,
            ),
        ));
        rows.push((
            "kernel_slab_b_per_socket".into(),
            per_conn(b.kernel.slab_kib, a.kernel.slab_kib, sockets),
        ));
        Figures { rows }
    }

    fn print_table(&self, run: usize) {
        let base = &self.baseline;
        println!(
            "\nrun {run}: baseline RSS {} KiB (anon {} KiB), {} threads, TCP sockets in use {}",
            base.server.rss_kib, base.server.anon_kib, base.server.threads, base.kernel.tcp_inuse
        );
        println!(
            "{:<6} {:>7} {:>9} {:>11} {:>11} {:>11} {:>11} {:>8}",
            "phase", "conns", "setup s", "RSS KiB", "anon KiB", "B/conn", "anon B/c", "threads"
        );
        let mut before = base;
        for phase in &self.phases {
            let (b, a) = (&before.server, &phase.after.server);
            println!(
                "{:<6} {:>7} {:>9.2} {:>11} {:>11} {:>11.1} {:>11.1} {:>8}",
                phase.name,
                phase.conns,
                phase.setup.as_secs_f64(),
                a.rss_kib,
                a.anon_kib,
                per_conn(b.rss_kib, a.rss_kib, phase.conns),
                per_conn(b.anon_kib, a.anon_kib, phase.conns),
                a.threads,
            );
            before = &phase.after;
        }
        let figures = self.figures();
        let get = |name: &str| {
            figures
                .rows
                .iter()
                .find(|(label, _)| label == name)
                .map_or(f64::NAN, |row| row.1)
        };
        println!(
            "all    {:>7} {:>9} {:>11} {:>11} {:>11.1} {:>11.1}",
            self.total_conns(),
            "",
            self.last().server.rss_kib,
            self.last().server.anon_kib,
            get("all_rss_b_per_conn"),
            get("all_anon_b_per_conn"),
        );
        println!(
            "kernel, system-wide, per socket end: TCP buffers {:.0} B (sockstat mem), slab {:.0} B (meminfo Slab); TCP in use {}",
            get("kernel_tcp_mem_b_per_socket"),
            get("kernel_slab_b_per_socket"),
            self.last().kernel.tcp_inuse,
        );
    }

    fn json(&self, args: &Args) -> String {
        let mut fields = vec![
            format!("\"workers\":{}", json_workers(args)),
            format!("\"ws\":{}", args.ws),
            format!("\"tcp\":{}", args.tcp),
            format!("\"tls\":{}", args.tls),
            format!("\"baseline_rss_kib\":{}", self.baseline.server.rss_kib),
            format!("\"final_rss_kib\":{}", self.last().server.rss_kib),
            format!("\"threads\":{}", self.last().server.threads),
        ];
        for phase in &self.phases {
            fields.push(format!(
                "\"{}_setup_s\":{:.3}",
                phase.name,
                phase.setup.as_secs_f64()
            ));
        }
        for (label, value) in self.figures().rows {
            fields.push(format!("\"{label}\":{value:.1}"));
        }
        format!("{{\"bench\":\"idle_memory\",{}}}", fields.join(","))
    }
}

fn json_workers(args: &Args) -> String {
    args.workers.map_or("null".into(), |w| w.to_string())
}

fn print_summary(args: &Args, runs: &[RunResult]) {
    let figures: Vec<Figures> = runs.iter().map(RunResult::figures).collect();
    println!(
        "\nsummary over {} runs (B per connection; kernel: B per socket end)",
        runs.len()
    );
    println!("{:<30} {:>9} {:>9} {:>9}", "figure", "median", "min", "max");
    let mut json = Vec::new();
    for (row, (label, _)) in figures[0].rows.iter().enumerate() {
        let mut values: Vec<f64> = figures.iter().map(|f| f.rows[row].1).collect();
        values.sort_by(f64::total_cmp);
        let (median, min, max) = (median(&values), values[0], values[values.len() - 1]);
        println!("{label:<30} {median:>9.1} {min:>9.1} {max:>9.1}");
        json.push(format!(
            "\"{label}\":{{\"median\":{median:.1},\"min\":{min:.1},\"max\":{max:.1}}}"
        ));
    }
    println!(
        "{{\"bench\":\"idle_memory_summary\",\"runs\":{},\"workers\":{},\"ws\":{},\"tcp\":{},{}}}",
        runs.len(),
        json_workers(args),
        args.ws,
        args.tcp,
        json.join(",")
    );
}

/// The median of sorted values.
fn median(sorted: &[f64]) -> f64 {
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// The one system call std does not wrap (raising the file limit comes from the load
/// generator's `os` module). The `unsafe` block is a plain libc call with no memory arguments.
mod os {
    /// Sends SIGTERM to `pid` (our own child, not yet reaped, so the pid is still ours).
    pub(super) fn terminate(pid: u32) {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return;
        };
        // SAFETY: kill has no memory arguments; the pid is a child we have not waited for.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn terminate_stops_a_child() {
        let mut child = Command::new("sleep").arg("30").spawn().expect("sleep");
        os::terminate(child.id());
        let status = child.wait().expect("wait");
        assert!(!status.success());
    }

    #[test]
    fn source_ranges_are_loopback_only() {
        let ips = parse_source_ips("127.0.0.1-127.0.0.3").expect("range");
        assert_eq!(
            ips,
            ["127.0.0.1", "127.0.0.2", "127.0.0.3"].map(|s| s.parse::<Ipv4Addr>().unwrap())
        );
        assert_eq!(parse_source_ips("127.0.0.9").expect("one").len(), 1);
        assert!(parse_source_ips("10.0.0.1-10.0.0.2").is_err());
        assert!(parse_source_ips("127.0.0.5-127.0.0.1").is_err());
    }

    #[test]
    fn proc_fields_parse() {
        let status = "Name:\tx\nVmRSS:\t  1234 kB\nRssAnon:\t 99 kB\nThreads:\t3\n";
        assert_eq!(field(status, "VmRSS:"), Some(1234));
        assert_eq!(field(status, "RssAnon:"), Some(99));
        assert_eq!(field(status, "Threads:"), Some(3));
        assert_eq!(field(status, "VmSwap:"), None);
        assert_eq!(per_conn(1000, 2000, 1024), 1000.0);
    }
}
