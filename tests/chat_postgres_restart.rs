//! PostgreSQL restarted under load, with the real `switchboard serve --store postgres://...`:
//! while it is away the senders are answered BUSY (never INTERNAL, never silence), the server
//! reconnects by itself once it is back, and of everything acknowledged nothing is lost or
//! stored twice (a resend of a message whose ack was lost in the cut gets the original ack).
//! Its own test binary: the restart would disturb tests sharing the server.

mod chat_common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_common::pg_server;
use chat_common::process::ServeProcess;
use chat_common::{unique_user, Transport};
use switchboard_protocol::Status;

const SENDERS: usize = 4;
/// Acknowledged messages per sender, at least, and some of them after the restart.
const EACH: u64 = 150;

#[test]
fn postgres_restarted_under_load_answers_busy_then_serves_again_losing_nothing() {
    chat_common::with_postgres(restart_under_load);
}

fn restart_under_load() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let server = ServeProcess::spawn(dir.path(), &[]);
    let bob = unique_user("bob");
    let acked_total = Arc::new(AtomicUsize::new(0));
    let restarted = Arc::new(AtomicBool::new(false));
    let busy_total = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            let mut client = server.login(Transport::Tcp, &unique_user("alice"), None);
            let (bob, acked_total, restarted, busy_total) = (
                bob.clone(),
                acked_total.clone(),
                restarted.clone(),
                busy_total.clone(),
            );
            std::thread::spawn(move || {
                let mut acked: HashMap<u64, u64> = HashMap::new();
                let mut after_restart = 0;
                let deadline = Instant::now() + Duration::from_secs(90);
                let mut client_msg_id = 0;
                while (acked.len() as u64) < EACH || after_restart < 10 {
                    assert!(Instant::now() < deadline, "sender {s} never got its acks");
                    let body = format!("sender {s} message {client_msg_id}");
                    match client.send_direct(&bob, client_msg_id, body.as_bytes()) {
                        Ok(ok) => {
                            acked.insert(client_msg_id, ok.msg_id);
                            acked_total.fetch_add(1, Ordering::Relaxed);
                            if restarted.load(Ordering::Acquire) {
                                after_restart += 1;
                            }
                            client_msg_id += 1;
                        }
                        // The same client_msg_id again, a moment later, as a client does.
                        Err(Status::BUSY) => {
                            busy_total.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(other) => panic!("sender {s}: {other:?} while PostgreSQL restarts"),
                    }
                }
                acked
            })
        })
        .collect();
    let pg = pg_server::server();
    assert!(
        chat_common::wait_until(Duration::from_secs(30), || {
            acked_total.load(Ordering::Relaxed) >= 100
        }),
        "the load never got going"
    );
    pg.stop();
    let busy_before = busy_total.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(1500));
    let busy_while_away = busy_total.load(Ordering::Relaxed) - busy_before;
    pg.restart();
    restarted.store(true, Ordering::Release);
    let acked: Vec<HashMap<u64, u64>> = senders
        .into_iter()
        .map(|t| t.join().expect("a sender thread"))
        .collect();
    assert!(
        busy_while_away > 0,
        "no sender was told BUSY while PostgreSQL was down"
    );

    // Everything acknowledged is there, once: bob syncs every message.
    let mut receiver = server.login(Transport::Ws, &bob, None);
    let synced = receiver.sync_all();
    let ids: Vec<u64> = synced.iter().map(|m| m.msg_id).collect();
    let distinct: HashSet<u64> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), ids.len(), "a message synced twice");
    let bodies: HashSet<&[u8]> = synced.iter().map(|m| &m.body[..]).collect();
    assert_eq!(bodies.len(), synced.len(), "a message stored twice");
    let all_acked: HashSet<u64> = acked.iter().flat_map(|a| a.values().copied()).collect();
    let lost: Vec<&u64> = all_acked.difference(&distinct).collect();
    assert!(lost.is_empty(), "acknowledged and lost: {lost:?}");
    // Nothing beyond what was acknowledged (a message whose ack the cut swallowed was resent
    // under its client_msg_id and acknowledged then, with the same id).
    assert_eq!(distinct.len(), all_acked.len());
    server.kill();
}
