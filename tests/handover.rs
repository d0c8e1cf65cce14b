//! Restart with no refused or reset connection (`--handover`), on the real `switchboard
//! serve` binary: a client connects about 2,000 times a second (each connection a PING
//! answered, then closed) while a new process takes the listening sockets over and the old
//! one drains and exits; not one connect fails or is reset. Meanwhile an SDK client sends
//! messages one after another, through its reconnect to the new process: every message
//! acknowledged before, during and after is stored once, and the two processes, overlapping
//! with one node id, never made the same message id. On SQLite in the data directory, and
//! again on PostgreSQL (`on_postgres::`), where the two processes share the one database
//! through the overlap.

mod chat_common;

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use chat_common::process::ServeProcess;
use chat_common::{token, unique_user, Transport};
use switchboard::logic::snowflake::id_sequence;
use switchboard_sdk::{Client, ClientConfig};

/// Connections a churn thread opens per second; two threads.
const PER_THREAD: u32 = 1_000;

/// What the churning client saw.
#[derive(Debug, Default)]
struct Tally {
    connects: u64,
    answered: u64,
    /// Refused, reset or timed out: what a restart must not cause.
    failed: Vec<String>,
    /// Closed cleanly before the answer (a drain's close of a connection it had just accepted).
    closed_unanswered: u64,
}

fn ping() -> Vec<u8> {
    let mut bytes = BytesMut::new();
    switchboard_protocol::Request::Ping
        .encode(1, &mut bytes)
        .expect("encode PING");
    bytes.to_vec()
}

/// One connection: connect, PING, read the 16-byte answer (NOT_LOGGED_IN), close.
fn one_connection(addr: SocketAddr, ping: &[u8], tally: &mut Tally) {
    tally.connects += 1;
    let failed = |tally: &mut Tally, what: &str, e: io::Error| {
        tally.failed.push(format!("{what}: {e} ({:?})", e.kind()));
    };
    let mut stream = match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Ok(stream) => stream,
        Err(e) => return failed(tally, "connect", e),
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if let Err(e) = stream.write_all(ping) {
        return failed(tally, "write", e);
    }
    let mut answer = [0u8; 16];
    let mut got = 0;
    while got < answer.len() {
        match stream.read(&mut answer[got..]) {
            Ok(0) => {
                tally.closed_unanswered += 1;
                return;
            }
            Ok(n) => got += n,
            Err(e) => return failed(tally, "read", e),
        }
    }
    assert_eq!(&answer[..4], b"SWB1");
    tally.answered += 1;
}

fn churn(addr: SocketAddr, stop: Arc<AtomicBool>) -> Tally {
    let ping = ping();
    let mut tally = Tally::default();
    let started = Instant::now();
    let interval = Duration::from_secs(1) / PER_THREAD;
    let mut n = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let due = started + interval * n;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        one_connection(addr, &ping, &mut tally);
        n += 1;
    }
    tally
}

#[test]
fn a_restart_with_handover_refuses_no_connection_and_keeps_every_acknowledged_message() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let data = dir.path().join("data");
    let socket = dir.path().join("handover.sock");
    let socket = socket.to_str().expect("a UTF-8 path");
    let args = [
        "--handover",
        socket,
        "--drain-period",
        "2s",
        "--drain-reconnect-delay",
        "200ms",
        "--request-rate",
        "0",
    ];
    let old = ServeProcess::spawn(&data, &args);
    let (tcp, ws, admin) = (old.tcp, old.ws, old.admin);
    // Logged-in clients that keep the old process draining for the whole period.
    let held: Vec<_> = (0..20)
        .map(|i| {
            let transport = if i % 2 == 0 {
                Transport::Tcp
            } else {
                Transport::Ws
            };
            old.login(transport, &unique_user("held"), None)
        })
        .collect();

    let stop = Arc::new(AtomicBool::new(false));
    let churners: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || churn(tcp, stop))
        })
        .collect();
    let bob = unique_user("bob");
    let sender = {
        let stop = stop.clone();
        let bob = bob.clone();
        let alice = unique_user("alice");
        let endpoint = format!("tcp://{tcp}");
        std::thread::spawn(move || {
            let config = ClientConfig::new([endpoint], token(&alice, None)).expect("a config");
            let client = Client::connect(config).expect("alice connects");
            let mut acked = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let ack = client
                    .send(&bob, format!("message {n}"))
                    .expect("acknowledged");
                acked.push(ack.msg_id);
                std::thread::sleep(Duration::from_millis(5));
            }
            client.close();
            acked
        })
    };

    std::thread::sleep(Duration::from_secs(1));
    let restarted_at = Instant::now();
    let new = ServeProcess::spawn(&data, &args);
    assert_eq!(
        (new.tcp, new.ws, new.admin),
        (tcp, ws, admin),
        "the same sockets"
    );
    let status = old.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "the old process exited with {status:?}");
    let old_gone = restarted_at.elapsed();
    assert!(
        old_gone >= Duration::from_secs(1),
        "the old process did not drain: {old_gone:?}"
    );
    drop(held);
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let tallies: Vec<Tally> = churners
        .into_iter()
        .map(|c| c.join().expect("churn"))
        .collect();
    let acked = sender.join().expect("the sender");

    let connects: u64 = tallies.iter().map(|t| t.connects).sum();
    let answered: u64 = tallies.iter().map(|t| t.answered).sum();
    let unanswered: u64 = tallies.iter().map(|t| t.closed_unanswered).sum();
    let failed: Vec<&String> = tallies.iter().flat_map(|t| &t.failed).collect();
    eprintln!(
        "{connects} connects ({answered} answered, {unanswered} closed by the drain before \
         their answer, {} failed); the old process exited {old_gone:?} after the new one \
         started; {} messages acknowledged",
        failed.len(),
        acked.len()
    );
    assert!(failed.is_empty(), "failed connections: {failed:?}");
    let seconds = old_gone.as_secs_f64() + 2.0;
    assert!(
        connects as f64 >= 1_000.0 * seconds,
        "only {connects} connects in {seconds:.1} s"
    );
    assert!(
        answered * 100 >= connects * 99,
        "{answered} of {connects} answered"
    );

    // Every acknowledged message is stored once; the new process made some of them, in the
    // other half of the sequence.
    let unique: HashSet<u64> = acked.iter().copied().collect();
    assert_eq!(unique.len(), acked.len(), "a message id given twice");
    assert!(
        acked.iter().any(|&id| id_sequence(id) >= 2048),
        "no message acknowledged by the new process"
    );
    let mut bob_conn = new.login(Transport::Tcp, &bob, None);
    let stored: Vec<u64> = bob_conn.sync_all().iter().map(|m| m.msg_id).collect();
    let stored_set: HashSet<u64> = stored.iter().copied().collect();
    assert_eq!(stored_set.len(), stored.len(), "an inbox entry twice");
    let missing: Vec<&u64> = acked.iter().filter(|id| !stored_set.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not stored: {missing:?}"
    );
    new.signal_term();
}

crate::on_postgres_too!(
    a_restart_with_handover_refuses_no_connection_and_keeps_every_acknowledged_message
);
