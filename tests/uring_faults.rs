//! The io_uring backend where the kernel refuses it, and under faults: a seccomp filter that
//! refuses `io_uring_setup` (as a container's profile does) makes the gateway run on epoll with
//! one log line saying why; a buffer ring of two tiny buffers (ENOBUFS again and again) loses
//! no pipelined byte; thousands of connections killed while their echoes are in flight leave
//! no descriptor or memory behind.

mod common;

use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard::gateway::uring::probe::deny_io_uring_on_this_thread;
use switchboard::gateway::{Backend, Gateway, GatewayConfig};

use common::{packet, pattern, test_config, vm_rss, TcpClient, TestGateway};

fn uring_config() -> GatewayConfig {
    GatewayConfig {
        backend: Backend::Uring,
        ..test_config()
    }
}

/// Log lines, kept for the test to read.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_kernel_that_refuses_io_uring_gets_epoll_and_one_line_saying_why() {
    let lines = Lines::default();
    let writer = lines.clone();
    let backend = std::thread::spawn(move || {
        deny_io_uring_on_this_thread().expect("a seccomp filter");
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let gateway = Gateway::start(uring_config(), |_, _| switchboard::echo::EchoHandler)
                .expect("the gateway starts on epoll");
            let backend = gateway.backend();
            let mut client = TcpClient::connect(gateway.tcp_addr().unwrap());
            client.echo(1, b"served on epoll");
            gateway.shutdown();
            backend
        })
    })
    .join()
    .unwrap();
    assert_eq!(backend, Backend::Epoll);
    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    let why: Vec<&str> = text.lines().filter(|l| l.contains("io_uring")).collect();
    assert_eq!(why.len(), 1, "one line, not one per reactor: {text}");
    assert!(
        why[0].contains("running on epoll") && why[0].contains("seccomp"),
        "{}",
        why[0]
    );
}

#[test]
fn an_empty_buffer_ring_slows_pipelined_input_and_loses_no_byte() {
    // Two 64-byte buffers per reactor: every pass of a pipelining client runs the ring dry.
    let gateway = TestGateway::echo(GatewayConfig {
        uring_recv_buffers: Some(2),
        uring_recv_buffer_len: Some(64),
        workers: 1,
        ..uring_config()
    });
    let mut clients: Vec<TcpClient> = (0..4)
        .map(|_| TcpClient::connect(gateway.tcp_addr()))
        .collect();
    let mut sent = vec![Vec::new(); clients.len()];
    for i in 0..500u16 {
        for (client, sent) in clients.iter_mut().zip(&mut sent) {
            let bytes = packet(i, &pattern(usize::from(i % 200), i as u8));
            client.send(&bytes);
            sent.extend(bytes);
        }
    }
    for (client, sent) in clients.iter_mut().zip(&sent) {
        let mut got = Vec::new();
        for _ in 0..500 {
            got.extend(client.read_packet());
        }
        assert_eq!(&got, sent, "bytes lost or reordered");
    }
    let empty = gateway.probe().totals().recv_buffers_empty;
    assert!(empty > 0, "the ring never ran dry: the test proves nothing");
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn connections_killed_mid_send_give_back_their_descriptors_and_memory() {
    let gateway = TestGateway::echo(uring_config());
    let payload = packet(7, &pattern(60 << 10, 9));
    let round = |count: usize| {
        let clients: Vec<TcpStream> = (0..count)
            .map(|_| {
                let mut stream = TcpStream::connect(gateway.tcp_addr()).unwrap();
                // Several echoes' worth, never read: the gateway's sends wait on a full peer.
                for _ in 0..8 {
                    stream.write_all(&payload).unwrap();
                }
                stream
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        for stream in &clients {
            // Reset, not FIN: the gateway's sends in flight fail under it.
            socket2::SockRef::from(stream)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        }
        drop(clients);
        gateway.wait_for_open_connections(0, Duration::from_secs(10));
    };
    round(200); // warm: the allocator's arenas, the reactors' buffers
    let (fds, rss) = (open_fds(), vm_rss());
    for _ in 0..5 {
        round(400);
    }
    // The reactors close a socket only after its last completion: give the stragglers time.
    assert!(
        common::wait_until(Duration::from_secs(5), || open_fds() <= fds),
        "{} descriptors open, {fds} before",
        open_fds()
    );
    let grown = vm_rss().saturating_sub(rss);
    assert!(grown < 32 << 20, "RSS grew by {} KiB", grown >> 10);
}
