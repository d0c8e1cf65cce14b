//! The io_uring backend where the kernel refuses it, and under faults: a seccomp filter that
//! refuses `io_uring_setup` (as a container's profile does) makes the gateway run on epoll with
//! one log line saying why; a buffer ring of two tiny buffers (ENOBUFS again and again) loses
//! no pipelined byte, and 1 MiB packets through four 4 KiB buffers come back whole with every
//! combination of the receive levers (incremental buffers, bundles); thousands of connections killed while their echoes are in flight leave
//! no descriptor or memory behind.

mod common;

use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard::gateway::uring::probe::deny_io_uring_on_this_thread;
use switchboard::gateway::{Backend, Gateway, GatewayConfig, UringRecv};

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

/// Bytes that show where they were: a shift by any whole number of buffers shows too.
fn distinct(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
        .collect()
}

/// Echoes of 1 MiB packets (256 buffers' worth each) through four 4 KiB buffers per reactor
/// with the receive levers `levers`: the ring runs dry all the time, and a bundle (where on)
/// spans every buffer it has. Three clients at once, each writing from a thread of its own
/// while it reads the echoes.
fn large_packets_through_a_tiny_ring(levers: UringRecv) {
    let gateway = TestGateway::echo(GatewayConfig {
        uring_recv_buffers: Some(4),
        uring_recv_buffer_len: Some(4096),
        uring_recv: levers,
        workers: 1,
        ..uring_config()
    });
    let payload = (1 << 20) - 64;
    let clients: Vec<_> = (0..3u32)
        .map(|c| {
            let client = TcpClient::connect(gateway.tcp_addr());
            let sent: Vec<Vec<u8>> = (0..4u32)
                .map(|i| packet(i as u16, &distinct(payload, c * 16 + i)))
                .collect();
            let mut writer = client.stream.try_clone().unwrap();
            let outgoing = sent.clone();
            let writing = std::thread::spawn(move || {
                for bytes in &outgoing {
                    writer.write_all(bytes).unwrap();
                }
            });
            (client, sent, writing)
        })
        .collect();
    for (mut client, sent, writing) in clients {
        for (i, sent) in sent.iter().enumerate() {
            let got = client.read_packet();
            assert_eq!(got.len(), sent.len(), "echo {i}: length");
            assert!(
                got[..] == sent[..],
                "echo {i} ({levers:?}): bytes out of place"
            );
        }
        writing.join().unwrap();
    }
    let empty = gateway.probe().totals().recv_buffers_empty;
    assert!(empty > 0, "the ring never ran dry: the test proves little");
}

#[test]
fn large_packets_through_a_tiny_ring_with_plain_whole_buffers() {
    large_packets_through_a_tiny_ring(UringRecv::NONE);
}

#[test]
fn large_packets_through_a_tiny_ring_with_incremental_buffers() {
    large_packets_through_a_tiny_ring(UringRecv {
        incremental: true,
        ..UringRecv::NONE
    });
}

#[test]
fn large_packets_through_a_tiny_ring_with_bundles() {
    large_packets_through_a_tiny_ring(UringRecv {
        bundle: true,
        ..UringRecv::NONE
    });
}

#[test]
fn large_packets_through_a_tiny_ring_with_every_lever() {
    large_packets_through_a_tiny_ring(UringRecv::ALL);
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
