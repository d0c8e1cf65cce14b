//! The logic core on the reactor's thread (`--logic-thread reactor`, one reactor): the store's
//! completions wake the reactor themselves. With nothing else to wake it (no other traffic,
//! no login deadline pending, the connection's read-wait far off), an ack still comes as
//! soon as its commit does; without that wake it would never come. And where `serve` puts
//! the core by default: on the reactor's thread with one reactor, on its own with more.

mod chat_common;

use std::time::{Duration, Instant};

use chat_common::process::ServeProcess;
use chat_common::{unique_user, ServerOptions, TestServer, Transport};
use switchboard::logic::LogicThread;

/// `switchboard serve` with `args` runs a thread named `logic` (the core's own) or not, and
/// serves a message either way.
fn serve_has_a_logic_thread(args: &[&str]) -> bool {
    let dir = tempfile::tempdir().expect("a temp dir");
    let server = ServeProcess::spawn(dir.path(), args);
    // The core and the reactors are started before the server announces its data directory,
    // which `spawn` waits for, but a thread names itself once it runs: until then it has the
    // process's name, as the main thread has. Wait until only the main thread has it.
    let tasks = format!("/proc/{}/task", server.pid());
    let all_named = |threads: &[String]| {
        threads.iter().any(|name| name.starts_with("reactor-"))
            && threads.iter().filter(|name| *name == "switchboard").count() == 1
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut threads = thread_names(&tasks);
    while !all_named(&threads) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        threads = thread_names(&tasks);
    }
    assert!(all_named(&threads), "{args:?}: {threads:?}");
    let (alice, bob) = (unique_user("alice"), unique_user("bob"));
    let mut receiver = server.login(Transport::Tcp, &bob, None);
    let mut sender = server.login(Transport::Ws, &alice, None);
    sender
        .send_direct(&bob, 1, b"where is the core?")
        .expect("SEND acknowledged");
    let message = receiver.expect_message();
    assert_eq!(message.body.as_ref(), b"where is the core?");
    server.kill();
    threads.contains(&"logic".to_string())
}

#[test]
fn by_default_serve_runs_the_core_on_the_reactors_thread_with_one_reactor_only() {
    assert!(!serve_has_a_logic_thread(&["--workers", "1"]));
    assert!(serve_has_a_logic_thread(&["--workers", "2"]));
    assert!(serve_has_a_logic_thread(&[
        "--workers",
        "1",
        "--logic-thread",
        "own"
    ]));
    // Asked for the reactor's thread beside two reactors: a thread of its own, as before.
    assert!(serve_has_a_logic_thread(&[
        "--workers",
        "2",
        "--logic-thread",
        "reactor"
    ]));
}

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
    let mut threads = thread_names("/proc/self/task");
    while !threads.iter().any(|name| name.starts_with("reactor-")) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        threads = thread_names("/proc/self/task");
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

/// The names of the threads listed in `tasks` (`/proc/PID/task`).
fn thread_names(tasks: &str) -> Vec<String> {
    std::fs::read_dir(tasks)
        .expect(tasks)
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .collect()
}
