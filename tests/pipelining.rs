//! A client that pipelines gets every message back, in order, on both transports: thousands of
//! small messages written back to back, far more than one reactor turn decodes (its frame
//! budget), while the echoes are read on another thread. Before the fix beside the frame budget
//! in `reactor/input.rs`, a read that finished an unfinished frame just as the budget ran out
//! dropped the rest of that read, and the stream misframed: WebSocket clients were closed with
//! 1002 ("reserved bits set"), framed-TCP clients lost echoes and were closed for bad framing,
//! within a few MB (both tests failed on that code; they send 39 and 47 MB).

mod common;

use std::io::{Read, Write};
use std::thread;
use std::time::{Duration, Instant};

use switchboard::gateway::GatewayConfig;
use switchboard_codec::ws::OpCode;

use common::{packet, test_config, TcpClient, TestGateway, WsClient};

/// Messages sent, in batches written whole.
const BATCH: usize = 500;
const BATCHES: usize = 600;
const PAYLOAD: usize = 125;
/// Every echo must be back within this time.
const WITHIN: Duration = Duration::from_secs(30);

fn payload(i: usize) -> [u8; PAYLOAD] {
    [(i % 251) as u8; PAYLOAD]
}

/// Writes `batch` `BATCHES` times from another thread, reads `expected` bytes of echoes on this
/// one (or until the server closes or `WITHIN` passes), and returns them.
fn pipeline(stream: &std::net::TcpStream, batch: Vec<u8>, expected: usize) -> Vec<u8> {
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = stream.try_clone().expect("clone");
    let writing = thread::spawn(move || {
        for _ in 0..BATCHES {
            if writer.write_all(&batch).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + WITHIN;
    let mut echoed = Vec::with_capacity(expected);
    let mut buf = vec![0u8; 64 << 10];
    while echoed.len() < expected && Instant::now() < deadline {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => echoed.extend_from_slice(&buf[..n]),
            Err(e) if common::is_timeout(&e) => {}
            Err(_) => break,
        }
    }
    let _ = writing.join();
    echoed
}

#[test]
fn pipelined_websocket_messages_all_come_back_in_order() {
    let gateway = TestGateway::echo(GatewayConfig {
        workers: 1,
        ..test_config()
    });
    let client = WsClient::connect(gateway.ws_addr());
    let batch: Vec<u8> = (0..BATCH)
        .flat_map(|i| WsClient::frame(OpCode::Binary, true, &payload(i)))
        .collect();
    // The server's frames are unmasked: 2 header bytes (0x82, 125) and the payload.
    let frame_len = 2 + PAYLOAD;
    let echoed = pipeline(&client.stream, batch, BATCH * BATCHES * frame_len);
    for (n, frame) in echoed.chunks(frame_len).enumerate() {
        assert_eq!(
            frame[..2],
            [0x82, PAYLOAD as u8],
            "echo {n} is not the next binary message: {:02x?}",
            &frame[..frame.len().min(8)]
        );
        assert_eq!(frame[2..], payload(n % BATCH), "echo {n} out of order");
    }
    assert_eq!(echoed.len(), BATCH * BATCHES * frame_len, "echoes missing");
}

#[test]
fn pipelined_tcp_packets_all_come_back_in_order() {
    let gateway = TestGateway::echo(GatewayConfig {
        workers: 1,
        ..test_config()
    });
    let client = TcpClient::connect(gateway.tcp_addr());
    let batch: Vec<u8> = (0..BATCH)
        .flat_map(|i| packet((i % 1000) as u16 + 1, &payload(i)))
        .collect();
    let packet_len = packet(1, &payload(0)).len();
    let echoed = pipeline(&client.stream, batch, BATCH * BATCHES * packet_len);
    for (n, echo) in echoed.chunks(packet_len).enumerate() {
        let i = n % BATCH;
        assert_eq!(echo, packet((i % 1000) as u16 + 1, &payload(i)), "echo {n}");
    }
    assert_eq!(echoed.len(), BATCH * BATCHES * packet_len, "echoes missing");
}
