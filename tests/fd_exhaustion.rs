//! Running out of descriptors, with the real binary under a small RLIMIT_NOFILE: the
//! connections it holds keep being served, the reactors do not spin on a listener they cannot
//! accept from, and clients waiting in the backlog are served once descriptors are freed.

mod common;

use std::io::{self, Read};
use std::time::Duration;

use common::process::EchoProcess;
use common::{packet, wait_until, TcpClient};

/// The child's descriptor limit: room for its own dozen or so (stdio, two epolls, two
/// wakers, four listeners, signal pipe) and a few dozen connections.
const FD_LIMIT: u32 = 64;
/// More clients than the limit lets it hold.
const CLIENTS: usize = 90;

/// Whether `client`'s echo of `sent` has arrived, without waiting for it.
fn echoed(client: &mut TcpClient, sent: &[u8]) -> bool {
    client.stream.set_nonblocking(true).unwrap();
    let mut got = vec![0u8; sent.len()];
    let result = client.stream.read(&mut got);
    client.stream.set_nonblocking(false).unwrap();
    match result {
        Ok(n) if n == sent.len() => {
            assert_eq!(got, sent, "a wrong echo");
            true
        }
        Ok(n) => panic!("a partial echo of {n} bytes"),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
        Err(e) => panic!("read failed: {e}"),
    }
}

#[test]
fn out_of_descriptors_it_serves_what_it_holds_and_resumes_when_freed() {
    let process = EchoProcess::spawn_with_fd_limit(FD_LIMIT, &["--workers", "2"]);
    // The kernel completes every handshake into the backlog; the gateway accepts what its
    // descriptors allow.
    let mut clients: Vec<(TcpClient, Vec<u8>)> = (0..CLIENTS)
        .map(|i| {
            let mut client = TcpClient::connect(process.tcp);
            let sent = packet(i as u16, format!("client {i}").as_bytes());
            client.send(&sent);
            (client, sent)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut waiting = Vec::new();
    let mut served = Vec::new();
    for (mut client, sent) in clients.drain(..) {
        if echoed(&mut client, &sent) {
            served.push(client);
        } else {
            waiting.push((client, sent));
        }
    }
    assert!(
        served.len() >= 20 && served.len() < FD_LIMIT as usize,
        "{} served under a limit of {FD_LIMIT} descriptors",
        served.len()
    );
    assert!(!waiting.is_empty(), "every client was served");

    // Paused accepting costs a retry every 100 ms, not a spinning reactor.
    let before = process.cpu_time();
    std::thread::sleep(Duration::from_secs(1));
    let used = process.cpu_time() - before;
    assert!(
        used < Duration::from_millis(300),
        "{used:?} of CPU in one idle second while out of descriptors"
    );
    for (i, client) in served.iter_mut().enumerate() {
        client.echo(i as u16, b"still served");
    }

    // Free more descriptors than there are waiting clients.
    served.truncate(served.len().saturating_sub(waiting.len() + 5));
    let all_served = wait_until(Duration::from_secs(5), || {
        waiting.retain_mut(|(client, sent)| !echoed(client, sent));
        waiting.is_empty()
    });
    assert!(
        all_served,
        "{} clients still wait after descriptors were freed",
        waiting.len()
    );
    for (i, client) in served.iter_mut().enumerate() {
        client.echo(i as u16, b"and the first ones too");
    }
}
