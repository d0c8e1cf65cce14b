//! The logic core on the reactor's thread (`--logic-thread reactor`, one reactor): the store's
//! completions wake the reactor themselves. With nothing else to wake it (no other traffic,
//! no login deadline pending, the connection's read-wait far off), an ack still comes as
//! soon as its commit does; without that wake it would never come.

mod chat_common;

use std::time::{Duration, Instant};

use chat_common::{unique_user, ServerOptions, TestServer, Transport};
use switchboard::logic::LogicThread;

#[test]
fn an_ack_arrives_with_no_other_traffic_to_wake_the_reactor() {
    let server = TestServer::with_options(ServerOptions {
        logic_thread: Some(LogicThread::Reactor),
        // The core's only deadlines are the connections' login deadlines, which it looks at
        // every second while any is pending: short here, and passed before the SENDs.
        login_timeout: Duration::from_secs(1),
        ..ServerOptions::default()
    });
    // The server may still be starting its threads when `with_options` returns: wait for the
    // reactor's, then look for a logic thread.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut threads = thread_names();
    while !threads.iter().any(|name| name.starts_with("reactor-")) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        threads = thread_names();
    }
    assert!(
        threads.iter().any(|name| name.starts_with("reactor-"))
            && !threads.contains(&"logic".into()),
        "one reactor and no logic thread of its own: {threads:?}"
    );
    for transport in [Transport::Tcp, Transport::Ws] {
        let (alice, bob) = (unique_user("alice"), unique_user("bob"));
        let mut alice = server.login(transport, &alice, None);
        std::thread::sleep(Duration::from_millis(1500));
        for client_msg_id in 1..=3 {
            // Let every earlier wake-up be spent, so only the commit's can bring the ack.
            std::thread::sleep(Duration::from_millis(50));
            let sent = Instant::now();
            let ack = alice
                .send_direct(&bob, client_msg_id, b"anyone there?")
                .expect("SEND acknowledged");
            assert!(ack.msg_id > 0);
            assert!(
                sent.elapsed() < Duration::from_secs(3),
                "the ack took {:?}",
                sent.elapsed()
            );
        }
    }
}

/// The names of this process's threads.
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .collect()
}
