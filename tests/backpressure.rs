//! Slow consumers over real sockets: a client that sends a lot and never reads is closed once
//! its write queue passes the cap, and the gateway's memory stays bounded however much such
//! clients push. Alone in its binary (and serialised within it) so the process's RSS measures
//! this gateway and nothing else.

mod common;

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use switchboard::gateway::{Disconnect, GatewayConfig};
use switchboard_codec::ws::OpCode;

use common::{
    configure, is_timeout, packet, pattern, test_config, vm_rss, EndRecorder, TestGateway, WsClient,
};

/// The largest packet payload and WebSocket message: small, so the effective cap (never below
/// twice the largest message) is the configured one.
const LARGEST: usize = 16 << 10;
/// The slow-consumer cap.
const CAP: usize = 64 << 10;
/// What a connection may hold past the cap before the check sees it: reading stops at the
/// cap, so one read's bytes (at most 64 KiB, all echoed: an epoll read, or what one io_uring
/// receive takes before it ends by itself) and one unfinished message, plus 8 KiB for frame
/// headers and a partial frame's buffer. Measured on 2026-12-03: epoll cut them holding at
/// most 124,740 bytes, io_uring 98,364; io_uring before its receives had a byte limit, up
/// to 791,456.
const PAST_CAP: usize = (64 << 10) + LARGEST + (8 << 10);

/// One test at a time, so one test's buffers do not show in the other's RSS.
static SERIAL: Mutex<()> = Mutex::new(());

fn start() -> (TestGateway, EndRecorder) {
    TestGateway::recording_ends(GatewayConfig {
        max_packet: LARGEST,
        max_message: LARGEST,
        write_queue_cap: CAP,
        ..test_config()
    })
}

/// A client socket with a small receive buffer (so it stops taking the echo early) and a
/// small send buffer (so bytes counted as sent are close to bytes the gateway read).
fn small_buffered(addr: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    socket.set_recv_buffer_size(4 << 10).unwrap();
    socket.set_send_buffer_size(64 << 10).unwrap();
    socket
        .connect(&addr.into())
        .expect("connect to the gateway");
    let stream: TcpStream = socket.into();
    configure(&stream);
    stream
}

/// Writes `chunk` over and over, never reading, until the gateway cuts the connection.
/// Returns the bytes the kernel accepted. Panics if the gateway stops reading without closing
/// (a write blocks for the whole timeout) or `limit` bytes go out without a cut.
fn push_until_cut(stream: &mut TcpStream, chunk: &[u8], limit: usize) -> usize {
    let mut sent = 0;
    while sent < limit {
        match stream.write(chunk) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => panic!("the gateway neither reads nor closes"),
            Err(_) => return sent, // reset or broken pipe: cut
        }
    }
    panic!("{sent} bytes went out without the slow consumer being cut");
}

fn assert_all_cut_as_slow_consumers(recorder: &EndRecorder, connections: usize) {
    let all_ended = common::wait_until(Duration::from_secs(3), || {
        recorder.ends.lock().unwrap().len() >= connections
    });
    let ends = recorder.ends.lock().unwrap().clone();
    assert!(all_ended, "{} of {connections} ends seen", ends.len());
    let held = ends.iter().filter_map(|end| match end {
        Disconnect::SlowConsumer { queued } => Some(*queued),
        _ => None,
    });
    let (least, most) = held.fold((usize::MAX, 0), |(lo, hi), q| (lo.min(q), hi.max(q)));
    eprintln!("{connections} cut holding {least}..={most} bytes (cap {CAP})");
    for end in &ends {
        match end {
            Disconnect::SlowConsumer { queued } => {
                assert!(*queued > CAP, "cut at {queued} bytes, under the cap {CAP}");
                assert!(
                    *queued <= CAP + PAST_CAP,
                    "{queued} bytes queued before the cut; the cap is {CAP}"
                );
            }
            other => panic!("ended as {other:?}, not as a slow consumer"),
        }
    }
}

#[test]
fn tcp_clients_that_never_read_are_cut_and_memory_stays_bounded() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (gateway, recorder) = start();
    let chunk = packet(1, &pattern(LARGEST, 5));
    // Warm up: reactor scratch buffers, allocator arenas and the first connection exist
    // before the baseline.
    let mut warm = small_buffered(gateway.tcp_addr());
    push_until_cut(&mut warm, &chunk, 64 << 20);
    drop(warm);
    gateway.wait_for_open_connections(0, Duration::from_secs(3));

    let baseline = vm_rss();
    let mut peak = baseline;
    let total = 64 << 20;
    let mut pushed = 0;
    let mut connections = 1;
    while pushed < total {
        let mut client = small_buffered(gateway.tcp_addr());
        pushed += push_until_cut(&mut client, &chunk, total);
        connections += 1;
        peak = peak.max(vm_rss());
        assert!(connections < 10_000, "bounded loop");
    }
    gateway.wait_for_open_connections(0, Duration::from_secs(3));
    peak = peak.max(vm_rss());

    // Each connection is cut with at most CAP + PAST_CAP queued and they come one after
    // another, so the gateway needs a few MiB at any moment; 24 MiB is several times that,
    // for allocator caching, and well under the 64 MiB an uncapped queue would have held.
    let growth = peak.saturating_sub(baseline);
    assert!(
        growth < 24 << 20,
        "RSS grew by {} KiB while {} KiB were pushed over {connections} connections",
        growth >> 10,
        pushed >> 10
    );
    assert_all_cut_as_slow_consumers(&recorder, connections);
}

#[test]
fn a_websocket_client_that_never_reads_is_cut() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (gateway, recorder) = start();
    let mut client = WsClient::handshake(small_buffered(gateway.ws_addr()), gateway.ws_addr());
    client.echo_binary(b"in step");
    let frame = WsClient::frame(OpCode::Binary, true, &pattern(LARGEST, 6));
    let pushed = push_until_cut(&mut client.stream, &frame, 256 << 20);
    assert!(pushed > CAP, "cut after {pushed} bytes, under the cap");
    gateway.wait_for_open_connections(0, Duration::from_secs(3));
    assert_all_cut_as_slow_consumers(&recorder, 1);
}
