//! Messages per second through the logic core with durable acks, and the latency persistence
//! adds (issue #4). Drives `LogicCore` and the SQLite store exactly as the gateway does, minus
//! sockets: batches of `Inbound` events in, an `Outlet` that timestamps every packet out.
//! Each configuration (SQLite: synchronous FULL/NORMAL × group commit or one transaction per
//! append; PostgreSQL, `synchronous_commit = on`: group commit or one transaction per append)
//! runs on a fresh temporary data directory or a fresh database of a PostgreSQL this program
//! starts on a temporary directory (tests/shared/postgres.rs), whose server processes' CPU is
//! counted beside the store thread's. A benchmark, not a test: it prints a table and one
//! JSON line per configuration, and fails only when the core answers something unexpected.

use std::error::Error;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use clap::{Parser, ValueEnum};
use crossbeam_channel::{Receiver, Sender};
use hdrhistogram::Histogram;
use switchboard::logic::{token, CloseWhy, Inbound, LogicConfig, LogicCore, Outlet};
use switchboard::store::{
    Engine, PostgresConfig, PostgresStore, SqliteConfig, SqliteStore, Synchronous,
};

#[path = "../../../tests/shared/postgres.rs"]
mod pg_server;
use switchboard_codec::packet::{PacketRef, HEADER_LEN};
use switchboard_codec::Decoded;
use switchboard_protocol::{Push, Request, ResponseBody, ServerPacket, Text};

type BoxError = Box<dyn Error + Send + Sync>;

const JWT_SECRET: &[u8] = b"logic-throughput bench secret";
/// No packet for this long means the core or the store is stuck: the run fails.
const STALL: Duration = Duration::from_secs(60);
/// The name the core thread is given, to find its CPU time in /proc.
const CORE_THREAD: &str = "logic-core";
/// The name `Store::open` gives the store thread.
const STORE_THREAD: &str = "store";

#[derive(Parser, Debug)]
#[command(
    name = "logic_throughput",
    about = "Durable-ack throughput of the logic core and the latency persistence adds"
)]
struct Args {
    /// SEND requests per group-commit configuration (max_batch > 1).
    #[arg(long, value_name = "N", default_value_t = 200_000)]
    messages: usize,
    /// SEND requests per one-transaction-per-append configuration (max_batch 1), which is
    /// one to two orders of magnitude slower.
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    unbatched_messages: usize,
    /// Sender/recipient pairs logged in; message k goes from sender k % pairs to its recipient.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pairs: usize,
    /// SEND requests handed to the core and not yet acknowledged, at most.
    #[arg(long, value_name = "N", default_value_t = 1_000)]
    window: usize,
    /// Events per inbound batch at most, as one reactor turn would deliver them.
    #[arg(long, value_name = "N", default_value_t = 64)]
    batch: usize,
    /// Message body size in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 100)]
    body_size: usize,
    /// Store engines to run (comma-separated).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "sqlite,postgres"
    )]
    stores: Vec<StoreKind>,
    /// SQLite synchronous modes to run (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "full,normal")]
    synchronous: Vec<SyncMode>,
    /// Store max_batch values to run (comma-separated); 1 is one transaction per append.
    #[arg(
        long,
        value_name = "N,..",
        value_delimiter = ',',
        default_value = "1024,1"
    )]
    max_batch: Vec<usize>,
    /// Where the temporary data directories go [default: the system's temp dir]. Put it on
    /// the disk you mean to measure: fsync on tmpfs costs nothing.
    #[arg(long, value_name = "DIR")]
    data_parent: Option<PathBuf>,
    /// Also append the JSON lines to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SyncMode {
    Full,
    Normal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StoreKind {
    Sqlite,
    Postgres,
}

impl SyncMode {
    fn store(self) -> Synchronous {
        match self {
            SyncMode::Full => Synchronous::Full,
            SyncMode::Normal => Synchronous::Normal,
        }
    }

    fn name(self) -> &'static str {
        match self {
            SyncMode::Full => "full",
            SyncMode::Normal => "normal",
        }
    }
}

/// One configuration to run.
#[derive(Debug, Clone, Copy)]
struct Setup {
    store: StoreKind,
    synchronous: SyncMode,
    max_batch: usize,
    messages: usize,
    pairs: usize,
    window: usize,
    batch: usize,
    body_size: usize,
}

/// What the core sent, stamped in the core's thread the moment it handed it over.
enum OutletEvent {
    Packet(u64, Bytes, Instant),
    Closed(u64, CloseWhy),
}

/// The gateway's side of the core, minus sockets: everything goes to the measuring thread.
struct ChannelOutlet {
    events: Sender<OutletEvent>,
}

impl Outlet for ChannelOutlet {
    fn push(&mut self, conn: u64, packet: Bytes) {
        let _ = self
            .events
            .send(OutletEvent::Packet(conn, packet, Instant::now()));
    }

    fn close(&mut self, conn: u64, why: CloseWhy) {
        let _ = self.events.send(OutletEvent::Closed(conn, why));
    }
}

/// Latencies in nanoseconds.
struct Latencies {
    /// Request handed to the core → the recipient's MESSAGE push (no persistence on the path).
    push: Histogram<u64>,
    /// Request handed to the core → the sender's SEND ack (after the commit).
    ack: Histogram<u64>,
    /// Per message, push → ack: what persistence adds.
    added: Histogram<u64>,
}

impl Latencies {
    fn new() -> Result<Latencies, BoxError> {
        let histogram = || Histogram::new_with_bounds(1, 600_000_000_000, 3);
        Ok(Latencies {
            push: histogram()?,
            ack: histogram()?,
            added: histogram()?,
        })
    }
}

/// CPU time of the threads that do the work, in clock ticks.
#[derive(Debug, Clone, Copy, Default)]
struct CpuTicks {
    core: u64,
    store: u64,
    driver: u64,
    /// The PostgreSQL server's processes (0 with SQLite, which runs in the store thread).
    database: u64,
}

/// One configuration's figures.
struct Outcome {
    setup: Setup,
    elapsed: Duration,
    latencies: Latencies,
    cpu: CpuTicks,
    /// The machine's 1-minute load average when the configuration started (others' work too).
    load_1m: f64,
}

impl Outcome {
    fn acks_per_s(&self) -> f64 {
        self.setup.messages as f64 / self.elapsed.as_secs_f64()
    }

    fn cpu_us_per_msg(&self, ticks: u64) -> f64 {
        ticks as f64 * 1e6 / clock_ticks_per_s() / self.setup.messages as f64
    }

    fn name(&self) -> String {
        let commit = if self.setup.max_batch > 1 {
            "group"
        } else {
            "per-append"
        };
        match self.setup.store {
            StoreKind::Sqlite => format!("{}/{}", self.setup.synchronous.name(), commit),
            StoreKind::Postgres => format!("postgres/{commit}"),
        }
    }
}

fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    if args.pairs == 0 || args.window == 0 || args.batch == 0 {
        return Err("--pairs, --window and --batch must be at least 1".into());
    }
    let parent = args.data_parent.clone().unwrap_or_else(std::env::temp_dir);
    fs::create_dir_all(&parent)?;
    let mut json = match &args.json {
        Some(path) => Some(
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        ),
        None => None,
    };
    eprintln!(
        "logic_throughput: {} pairs, window {}, batches of {}, {} B bodies, data under {}",
        args.pairs,
        args.window,
        args.batch,
        args.body_size,
        parent.display()
    );
    let mut outcomes = Vec::new();
    let mut setups = Vec::new();
    for &store in &args.stores {
        // PostgreSQL has one mode here: synchronous_commit = on, its default.
        let modes = match store {
            StoreKind::Sqlite => args.synchronous.clone(),
            StoreKind::Postgres => vec![SyncMode::Full],
        };
        for synchronous in modes {
            setups.push((store, synchronous));
        }
    }
    for (store, synchronous) in setups {
        for &max_batch in &args.max_batch {
            let setup = Setup {
                store,
                synchronous,
                max_batch,
                messages: if max_batch > 1 {
                    args.messages
                } else {
                    args.unbatched_messages
                },
                pairs: args.pairs,
                window: args.window,
                batch: args.batch,
                body_size: args.body_size,
            };
            let dir = tempfile::Builder::new()
                .prefix("logic-throughput-")
                .tempdir_in(&parent)?;
            let outcome = run(setup, dir.path().to_path_buf())?;
            let line = json_line(&outcome);
            println!("{line}");
            if let Some(file) = json.as_mut() {
                writeln!(file, "{line}")?;
            }
            outcomes.push(outcome);
        }
    }
    print!("{}", table(&outcomes));
    Ok(())
}

/// Runs one configuration: log in the pairs, then push `messages` SENDs through the core.
fn run(setup: Setup, dir: PathBuf) -> Result<Outcome, BoxError> {
    let load_1m = load_average_1m()?;
    let (completions_tx, completions_rx) = crossbeam_channel::unbounded();
    // The window bounds what is queued; a queue smaller than it would answer BUSY.
    let queue = setup.window.max(SqliteConfig::new(&dir).queue);
    let (store, store_thread) = match setup.store {
        StoreKind::Sqlite => {
            // Group commit alone, as docs/performance.md's figures of this bench were taken;
            // the commit delay is measured through the whole server (bench/store_compare.sh).
            let config = SqliteConfig {
                max_batch: setup.max_batch,
                commit_delay: Duration::ZERO,
                synchronous: setup.synchronous.store(),
                queue,
                ..SqliteConfig::new(&dir)
            };
            let (store, thread) = SqliteStore::open(config, completions_tx)?;
            (Engine::Sqlite(store), thread)
        }
        StoreKind::Postgres => {
            let config = PostgresConfig {
                max_batch: setup.max_batch,
                commit_delay: Duration::ZERO,
                queue,
                ..PostgresConfig::new(pg_server::fresh_database())
            };
            let (store, thread) = PostgresStore::open(config, completions_tx)?;
            (Engine::Postgres(store), thread)
        }
    };
    let groups = store.load_groups()?;
    let (events_tx, events) = crossbeam_channel::unbounded();
    let logic = LogicConfig {
        jwt_secret: JWT_SECRET.to_vec(),
        ..LogicConfig::default()
    };
    let core = LogicCore::new(logic, store, groups, ChannelOutlet { events: events_tx })?;
    let (to_core, inbound) = crossbeam_channel::unbounded::<Vec<Inbound>>();
    let core_thread = thread::Builder::new()
        .name(CORE_THREAD.into())
        .spawn(move || core.run(inbound, completions_rx))?;

    let result = log_in(&setup, &to_core, &events).and_then(|()| {
        let database = || match setup.store {
            StoreKind::Sqlite => 0,
            StoreKind::Postgres => pg_server::server().cpu_ticks(),
        };
        let (before, database_before) = (cpu_ticks()?, database());
        let (elapsed, latencies) = send_all(&setup, &to_core, &events)?;
        let (after, database_after) = (cpu_ticks()?, database());
        let cpu = CpuTicks {
            core: after.core.saturating_sub(before.core),
            store: after.store.saturating_sub(before.store),
            driver: after.driver.saturating_sub(before.driver),
            database: database_after.saturating_sub(database_before),
        };
        Ok(Outcome {
            setup,
            elapsed,
            latencies,
            cpu,
            load_1m,
        })
    });
    // Hanging up stops the core, whose Store handle is the last: the store commits and exits.
    drop(to_core);
    core_thread.join().map_err(|_| "the logic core panicked")?;
    store_thread.join()?;
    result
}

/// The sender's connection key for pair `i`; its recipient's is `recipient(setup, i)`.
fn sender(i: usize) -> u64 {
    1 + i as u64
}

fn recipient(setup: &Setup, i: usize) -> u64 {
    1 + (setup.pairs + i) as u64
}

fn user_of(setup: &Setup, conn: u64) -> String {
    let i = (conn - 1) as usize;
    if i < setup.pairs {
        format!("s{i}")
    } else {
        format!("r{}", i - setup.pairs)
    }
}

/// Opens every connection and logs it in, as reactors would deliver it; waits for every ack.
fn log_in(
    setup: &Setup,
    to_core: &Sender<Vec<Inbound>>,
    events: &Receiver<OutletEvent>,
) -> Result<(), BoxError> {
    let now_secs = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let conns: Vec<u64> = (0..setup.pairs)
        .flat_map(|i| [sender(i), recipient(setup, i)])
        .collect();
    let mut batch = Vec::with_capacity(conns.len() * 2);
    let mut packet = BytesMut::new();
    for &conn in &conns {
        let token = token::mint(
            JWT_SECRET,
            &user_of(setup, conn),
            None,
            Duration::from_secs(3600),
            now_secs,
        )?;
        let login = Request::Login {
            token: Text::from(token),
            client_version: Text::from("logic_throughput"),
        };
        login.encode(0, &mut packet)?;
        batch.push(Inbound::Opened(conn, ([127, 0, 0, 1], 40000).into()));
        batch.push(Inbound::Packet(conn, packet.split().freeze()));
    }
    to_core.send(batch)?;
    for _ in &conns {
        match next_event(events)? {
            OutletEvent::Packet(conn, packet, _) => match decode(&packet)? {
                ServerPacket::Response(response)
                    if matches!(response.result, Ok(ResponseBody::Login(_))) => {}
                other => {
                    return Err(
                        format!("connection {conn}: expected a LOGIN ack, got {other:?}").into(),
                    )
                }
            },
            OutletEvent::Closed(conn, why) => {
                return Err(format!("connection {conn} closed at login: {why:?}").into())
            }
        }
    }
    Ok(())
}

/// Hands `messages` SENDs to the core with at most `window` unacknowledged, and measures
/// until every ack and every push is back. Returns the time from the first hand-over to the
/// last ack or push.
fn send_all(
    setup: &Setup,
    to_core: &Sender<Vec<Inbound>>,
    events: &Receiver<OutletEvent>,
) -> Result<(Duration, Latencies), BoxError> {
    let body = Bytes::from(vec![b'x'; setup.body_size]);
    let recipients: Vec<Text> = (0..setup.pairs)
        .map(|i| Text::from(format!("r{i}")))
        .collect();
    let mut handed: Vec<Option<Instant>> = vec![None; setup.messages];
    let mut pushed: Vec<Option<Instant>> = vec![None; setup.messages];
    let mut latencies = Latencies::new()?;
    let mut packet = BytesMut::new();
    let (mut next, mut in_flight, mut acks, mut pushes) = (0usize, 0usize, 0usize, 0usize);
    let started = Instant::now();
    while acks < setup.messages || pushes < setup.messages {
        while in_flight < setup.window && next < setup.messages {
            let n = (setup.window - in_flight)
                .min(setup.batch)
                .min(setup.messages - next);
            let mut batch = Vec::with_capacity(n);
            for k in next..next + n {
                let pair = k % setup.pairs;
                let send = Request::Send {
                    to: recipients[pair].clone(),
                    client_msg_id: k as u64 + 1,
                    body: body.clone(),
                };
                send.encode(k as u32, &mut packet)?;
                batch.push(Inbound::Packet(sender(pair), packet.split().freeze()));
            }
            let now = Instant::now();
            handed[next..next + n].fill(Some(now));
            to_core.send(batch)?;
            next += n;
            in_flight += n;
        }
        let mut event = Some(next_event(events)?);
        while let Some(current) = event {
            let (conn, packet, at) = match current {
                OutletEvent::Packet(conn, packet, at) => (conn, packet, at),
                OutletEvent::Closed(conn, why) => {
                    return Err(format!("connection {conn} closed: {why:?}").into())
                }
            };
            if conn <= setup.pairs as u64 {
                let k = acked_message(conn, &packet, setup.messages)?;
                let since = handed[k].ok_or("an ack for a message never sent")?;
                latencies.ack.saturating_record(nanos(at - since));
                match pushed[k] {
                    Some(push) => latencies.added.saturating_record(nanos(at - push)),
                    None => return Err(format!("message {k} acked before it was pushed").into()),
                }
                acks += 1;
                in_flight -= 1;
            } else {
                let k = pushed_message(conn, &packet, setup.messages)?;
                if pushed[k].replace(at).is_some() {
                    return Err(format!("message {k} pushed twice").into());
                }
                let since = handed[k].ok_or("a push for a message never sent")?;
                latencies.push.saturating_record(nanos(at - since));
                pushes += 1;
            }
            event = events.try_recv().ok();
        }
    }
    Ok((started.elapsed(), latencies))
}

/// The message a sender's SEND ack is for (its seq); anything else fails the run.
fn acked_message(conn: u64, packet: &Bytes, messages: usize) -> Result<usize, BoxError> {
    match decode(packet)? {
        ServerPacket::Response(response) => match response.result {
            Ok(ResponseBody::Send(_)) if (response.seq as usize) < messages => {
                Ok(response.seq as usize)
            }
            other => Err(format!(
                "sender {conn}: SEND seq {} answered {other:?}",
                response.seq
            )
            .into()),
        },
        other => Err(format!("sender {conn}: expected a SEND ack, got {other:?}").into()),
    }
}

/// The message a recipient's MESSAGE push carries (its client_msg_id − 1).
fn pushed_message(conn: u64, packet: &Bytes, messages: usize) -> Result<usize, BoxError> {
    match decode(packet)? {
        ServerPacket::Push(Push::Message(message))
            if (1..=messages as u64).contains(&message.client_msg_id) =>
        {
            Ok((message.client_msg_id - 1) as usize)
        }
        other => Err(format!("recipient {conn}: expected a MESSAGE push, got {other:?}").into()),
    }
}

fn decode(packet: &Bytes) -> Result<ServerPacket, BoxError> {
    match PacketRef::parse(packet, u32::MAX)? {
        Decoded::Complete((parsed, used)) if used == packet.len() => Ok(ServerPacket::decode(
            parsed.command,
            packet.slice(HEADER_LEN..),
        )?),
        _ => Err("the core sent something that is not exactly one packet".into()),
    }
}

fn next_event(events: &Receiver<OutletEvent>) -> Result<OutletEvent, BoxError> {
    events
        .recv_timeout(STALL)
        .map_err(|_| format!("nothing from the core for {STALL:?}").into())
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
}

/// User + system CPU ticks of the core thread, the store thread and this thread so far.
fn cpu_ticks() -> Result<CpuTicks, BoxError> {
    let mut ticks = CpuTicks {
        driver: thread_ticks(&fs::read_to_string("/proc/thread-self/stat")?)?,
        ..CpuTicks::default()
    };
    for task in fs::read_dir("/proc/self/task")? {
        let path = task?.path();
        let Ok(comm) = fs::read_to_string(path.join("comm")) else {
            continue; // the thread ended meanwhile
        };
        let Ok(stat) = fs::read_to_string(path.join("stat")) else {
            continue;
        };
        match comm.trim_end() {
            CORE_THREAD => ticks.core = thread_ticks(&stat)?,
            STORE_THREAD => ticks.store = thread_ticks(&stat)?,
            _ => {}
        }
    }
    Ok(ticks)
}

/// utime + stime from a /proc stat line (fields 14 and 15; the name in parentheses may
/// hold spaces, so fields are counted after its closing parenthesis).
fn thread_ticks(stat: &str) -> Result<u64, BoxError> {
    let after_name = stat.rsplit_once(')').ok_or("a stat line without a name")?.1;
    let mut fields = after_name.split_whitespace().skip(11);
    let mut next = || -> Result<u64, BoxError> {
        Ok(fields.next().ok_or("a short stat line")?.parse::<u64>()?)
    };
    Ok(next()? + next()?)
}

fn load_average_1m() -> Result<f64, BoxError> {
    let loadavg = fs::read_to_string("/proc/loadavg")?;
    let first = loadavg
        .split_whitespace()
        .next()
        .ok_or("an empty /proc/loadavg")?;
    Ok(first.parse()?)
}

fn clock_ticks_per_s() -> f64 {
    switchboard_loadtest::os::clock_ticks_per_second()
}

fn us(nanos: u64) -> f64 {
    nanos as f64 / 1000.0
}

fn quantiles(h: &Histogram<u64>) -> [f64; 4] {
    [
        us(h.value_at_quantile(0.50)),
        us(h.value_at_quantile(0.90)),
        us(h.value_at_quantile(0.99)),
        us(h.max()),
    ]
}

fn json_line(o: &Outcome) -> String {
    let q = |h: &Histogram<u64>| {
        let [p50, p90, p99, max] = quantiles(h);
        format!(r#"{{"p50":{p50:.1},"p90":{p90:.1},"p99":{p99:.1},"max":{max:.1}}}"#)
    };
    let s = &o.setup;
    format!(
        concat!(
            r#"{{"bench":"logic_throughput","config":"{}","synchronous":"{}","max_batch":{},"#,
            r#""messages":{},"pairs":{},"window":{},"batch":{},"body_size":{},"seconds":{:.3},"#,
            r#""acks_per_s":{:.0},"push_us":{},"ack_us":{},"added_us":{},"#,
            r#""cpu_us_per_msg":{{"core":{:.2},"store":{:.2},"database":{:.2},"driver":{:.2}}},"#,
            r#""load_1m":{:.2}}}"#
        ),
        o.name(),
        s.synchronous.name(),
        s.max_batch,
        s.messages,
        s.pairs,
        s.window,
        s.batch,
        s.body_size,
        o.elapsed.as_secs_f64(),
        o.acks_per_s(),
        q(&o.latencies.push),
        q(&o.latencies.ack),
        q(&o.latencies.added),
        o.cpu_us_per_msg(o.cpu.core),
        o.cpu_us_per_msg(o.cpu.store),
        o.cpu_us_per_msg(o.cpu.database),
        o.cpu_us_per_msg(o.cpu.driver),
        o.load_1m,
    )
}

fn table(outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{:<22} {:>8} {:>10}  {:<31}  {:<31}  {:<23}  {:>16}  {:>5}",
        "config",
        "messages",
        "acks/s",
        "push µs p50/p90/p99/max",
        "ack µs p50/p90/p99/max",
        "added µs p50/p99/max",
        "cpu µs/msg core+store+db",
        "load"
    );
    for o in outcomes {
        let [p50, p90, p99, max] = quantiles(&o.latencies.push);
        let push = format!("{p50:.0}/{p90:.0}/{p99:.0}/{max:.0}");
        let [p50, p90, p99, max] = quantiles(&o.latencies.ack);
        let ack = format!("{p50:.0}/{p90:.0}/{p99:.0}/{max:.0}");
        let [p50, _, p99, max] = quantiles(&o.latencies.added);
        let added = format!("{p50:.0}/{p99:.0}/{max:.0}");
        let cpu = format!(
            "{:.1}+{:.1}+{:.1}",
            o.cpu_us_per_msg(o.cpu.core),
            o.cpu_us_per_msg(o.cpu.store),
            o.cpu_us_per_msg(o.cpu.database)
        );
        let _ = writeln!(
            out,
            "{:<22} {:>8} {:>10.0}  {:<31}  {:<31}  {:<23}  {:>16}  {:>5.2}",
            o.name(),
            o.setup.messages,
            o.acks_per_s(),
            push,
            ack,
            added,
            cpu,
            o.load_1m
        );
    }
    out
}
