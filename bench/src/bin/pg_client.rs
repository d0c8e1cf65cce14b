//! Which PostgreSQL client the store's writer thread uses, measured (issue #13): the
//! synchronous `postgres` crate (every statement waits for its answer) against `tokio-postgres`
//! on a single-threaded runtime of the thread's own (statements that do not depend on each
//! other go out together: pipelining). Both run the PostgreSQL engine's append transaction
//! (the statements of src/store/postgres/execute.rs: BEGIN, the two lookups, the inbox counter
//! upsert, the two `unnest` inserts, COMMIT) on the store's own schema, one writer, batches of
//! B messages with two inbox entries each, `synchronous_commit = on`, against a PostgreSQL this
//! program starts on a temporary directory (tests/shared/postgres.rs). Prints a table and
//! one JSON line per row: batches/s, messages/s, per-batch latency, and CPU per message of this
//! thread and of the PostgreSQL server (postmaster and children).

use std::error::Error;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use hdrhistogram::Histogram;
use switchboard::store::postgres::append_statements::{
    BUMP, FIND_IDS, FIND_KEYS, INSERT_INBOX, INSERT_MESSAGES,
};
use switchboard::store::{PostgresConfig, PostgresStore};
use tokio_postgres::types::ToSql;

#[path = "../../../tests/shared/postgres.rs"]
mod pg_server;

type BoxError = Box<dyn Error + Send + Sync>;

#[derive(Parser, Debug)]
#[command(
    name = "pg_client",
    about = "postgres (sync) vs tokio-postgres (pipelined) for the store's writer"
)]
struct Args {
    /// Batch sizes to run (messages per transaction), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,256")]
    batch: Vec<usize>,
    /// Messages per (client, batch size) row.
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
}

/// One batch's parameter arrays: messages from 100 senders to 100 recipients, as the store
/// would bind them (sequences made up: the counter's answer is not waited for here either way,
/// so both clients send the same rows).
struct Batch {
    froms: Vec<String>,
    keys: Vec<i64>,
    ids: Vec<i64>,
    times: Vec<i64>,
    kinds: Vec<i16>,
    tos: Vec<Option<String>>,
    groups: Vec<Option<i64>>,
    bodies: Vec<Vec<u8>>,
    users: Vec<String>,
    counts: Vec<i64>,
    e_users: Vec<String>,
    e_seqs: Vec<i64>,
    e_ids: Vec<i64>,
    e_times: Vec<i64>,
}

fn batch(first_id: i64, size: usize, now_ms: i64) -> Batch {
    let mut b = Batch {
        froms: vec![],
        keys: vec![],
        ids: vec![],
        times: vec![],
        kinds: vec![],
        tos: vec![],
        groups: vec![],
        bodies: vec![],
        users: vec![],
        counts: vec![],
        e_users: vec![],
        e_seqs: vec![],
        e_ids: vec![],
        e_times: vec![],
    };
    let mut counts = std::collections::BTreeMap::<String, i64>::new();
    for i in 0..size as i64 {
        let id = first_id + i;
        let (from, to) = (
            format!("sender{}", id % 100),
            format!("recipient{}", id % 100),
        );
        b.froms.push(from.clone());
        b.keys.push(id);
        b.ids.push(id);
        b.times.push(now_ms);
        b.kinds.push(0);
        b.tos.push(Some(to.clone()));
        b.groups.push(None);
        b.bodies.push(vec![b'x'; 100]);
        for user in [to, from] {
            *counts.entry(user.clone()).or_default() += 1;
            b.e_users.push(user);
            b.e_seqs.push(id);
            b.e_ids.push(id);
            b.e_times.push(now_ms);
        }
    }
    (b.users, b.counts) = counts.into_iter().unzip();
    b
}

/// The sync crate: each statement waits for its answer (seven round trips a batch).
fn run_sync(url: &str, batches: &[Batch]) -> Result<Histogram<u64>, BoxError> {
    let mut client = postgres::Client::connect(url, postgres::NoTls)?;
    let st: Vec<postgres::Statement> = [FIND_KEYS, FIND_IDS, BUMP, INSERT_MESSAGES, INSERT_INBOX]
        .iter()
        .map(|sql| client.prepare(sql))
        .collect::<Result<_, _>>()?;
    let mut latency = Histogram::new(3)?;
    for b in batches {
        let started = Instant::now();
        client.batch_execute("BEGIN")?;
        client.query(&st[0], &[&b.froms, &b.keys])?;
        client.query(&st[1], &[&b.ids])?;
        client.query(&st[2], &[&b.users, &b.counts])?;
        client.execute(
            &st[3],
            &[
                &b.ids, &b.times, &b.froms, &b.kinds, &b.tos, &b.groups, &b.keys, &b.bodies,
            ],
        )?;
        client.execute(&st[4], &[&b.e_users, &b.e_seqs, &b.e_ids, &b.e_times])?;
        client.batch_execute("COMMIT")?;
        latency.record(started.elapsed().as_micros() as u64)?;
    }
    Ok(latency)
}

/// tokio-postgres, pipelined as the store does it: BEGIN with the lookups, the counters, the
/// inserts with COMMIT (three waits a batch).
fn run_pipelined(url: &str, batches: &[Batch]) -> Result<Histogram<u64>, BoxError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        let mut st = Vec::new();
        for sql in [FIND_KEYS, FIND_IDS, BUMP, INSERT_MESSAGES, INSERT_INBOX] {
            st.push(client.prepare(sql).await?);
        }
        let mut latency = Histogram::new(3)?;
        for b in batches {
            let keys: [&(dyn ToSql + Sync); 2] = [&b.froms, &b.keys];
            let ids: [&(dyn ToSql + Sync); 1] = [&b.ids];
            let messages: [&(dyn ToSql + Sync); 8] = [
                &b.ids, &b.times, &b.froms, &b.kinds, &b.tos, &b.groups, &b.keys, &b.bodies,
            ];
            let entries: [&(dyn ToSql + Sync); 4] = [&b.e_users, &b.e_seqs, &b.e_ids, &b.e_times];
            let started = Instant::now();
            tokio::try_join!(
                client.batch_execute("BEGIN"),
                client.query(&st[0], &keys),
                client.query(&st[1], &ids)
            )?;
            client.query(&st[2], &[&b.users, &b.counts]).await?;
            tokio::try_join!(
                client.execute(&st[3], &messages),
                client.execute(&st[4], &entries),
                client.batch_execute("COMMIT")
            )?;
            latency.record(started.elapsed().as_micros() as u64)?;
        }
        Ok::<_, BoxError>(latency)
    })
}

/// This thread's user + system CPU time.
fn thread_cpu() -> Duration {
    // SAFETY: getrusage writes one rusage into the zeroed struct we own; RUSAGE_THREAD reads
    // the calling thread's counters and has no other effect.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn load_average_1m() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let server = pg_server::server();
    let ticks_per_s = switchboard_loadtest::os::clock_ticks_per_second();
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    println!(
        "{:<14} {:>6} {:>10} {:>12} {:>9} {:>9} {:>11} {:>11} {:>6}",
        "client",
        "batch",
        "batches/s",
        "messages/s",
        "p50 µs",
        "p99 µs",
        "client µs/m",
        "server µs/m",
        "load"
    );
    let mut next_id = 1;
    for &size in &args.batch {
        for client in ["postgres", "tokio-postgres"] {
            // A fresh database per row, migrated by the store itself.
            let url = pg_server::fresh_database();
            let (tx, _rx) = crossbeam_channel::unbounded();
            let (store, thread) = PostgresStore::open(PostgresConfig::new(url.clone()), tx)?;
            drop(store);
            thread.join()?;
            let count = (args.messages / size).max(1);
            let batches: Vec<Batch> = (0..count)
                .map(|i| batch(next_id + (i * size) as i64, size, now_ms))
                .collect();
            next_id += (count * size) as i64;
            let (cpu0, server0, started) = (thread_cpu(), server.cpu_ticks(), Instant::now());
            let latency = match client {
                "postgres" => run_sync(&url, &batches)?,
                _ => run_pipelined(&url, &batches)?,
            };
            let wall = started.elapsed().as_secs_f64();
            let cpu = (thread_cpu() - cpu0).as_secs_f64();
            let server_s = (server.cpu_ticks() - server0) as f64 / ticks_per_s;
            let messages = (count * size) as f64;
            let row = (
                count as f64 / wall,
                messages / wall,
                latency.value_at_quantile(0.5),
                latency.value_at_quantile(0.99),
                cpu * 1e6 / messages,
                server_s * 1e6 / messages,
                load_average_1m(),
            );
            println!(
                "{:<14} {:>6} {:>10.0} {:>12.0} {:>9} {:>9} {:>11.1} {:>11.1} {:>6.2}",
                client, size, row.0, row.1, row.2, row.3, row.4, row.5, row.6
            );
            println!(
                r#"{{"client":"{client}","batch":{size},"batches_per_s":{:.0},"messages_per_s":{:.0},"p50_us":{},"p99_us":{},"client_cpu_us_per_msg":{:.2},"server_cpu_us_per_msg":{:.2},"load_1m":{:.2}}}"#,
                row.0, row.1, row.2, row.3, row.4, row.5, row.6
            );
        }
    }
    Ok(())
}
