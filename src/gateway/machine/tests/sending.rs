//! Sending: backlogs and their accounting, the slow-consumer cap, errors, and the API a
//! completion-based driver uses (owned bytes held until the completion).

use std::io;

use super::*;

fn small_cap() -> GatewayConfig {
    GatewayConfig {
        max_message: 1000,
        max_packet: 1000,
        write_queue_cap: 0, // the floor: twice the largest message
        ..config()
    }
}

#[test]
fn what_the_kernel_refuses_waits_in_order_and_is_accounted() {
    let mut h = Harness::new(Transport::Tcp);
    h.appetite = 3;
    h.machine.send(&mut h.ws, KEY, binary(b"hello "));
    h.machine.send(&mut h.ws, KEY, binary(b"world"));
    h.settle();
    h.end_pass();
    assert_eq!(h.take_wire(), b"hel");
    assert_eq!(h.machine.backlog_bytes(), 8);
    assert_eq!(h.ws.queued(), 8);
    assert_eq!(h.ws.backlogged().collect::<Vec<_>>(), [KEY]);
    h.appetite = usize::MAX;
    h.send();
    assert_eq!(h.take_wire(), b"lo world");
    assert_eq!(h.ws.queued(), 0);
    assert_eq!(h.ws.backlogged().count(), 0);
}

#[test]
fn a_slow_consumer_is_cut_past_the_cap() {
    let mut h = Harness::with_config(&small_cap(), Transport::Tcp);
    h.appetite = 10;
    for _ in 0..3 {
        h.machine.send(&mut h.ws, KEY, binary(&[0u8; 900]));
    }
    h.settle();
    h.end_pass();
    assert!(h.closed, "2,690 bytes held against a cap of 2,000");
    assert!(matches!(
        &h.disconnects[..],
        [Disconnect::SlowConsumer { queued: 2690 }]
    ));
    assert_eq!(h.ws.queued(), 0, "its backlog left the account");
}

/// A slow consumer's backlog freed at the cut is churn, so the allocator trim that hands
/// freed memory back follows the cut even when the bytes came in before the last trim.
#[test]
fn a_backlog_freed_at_the_cut_counts_toward_the_trim() {
    let mut h = Harness::with_config(&small_cap(), Transport::Tcp);
    h.appetite = 10;
    for _ in 0..2 {
        h.machine.send(&mut h.ws, KEY, binary(&[0u8; 900]));
    }
    h.settle();
    h.end_pass();
    assert!(!h.closed, "under the cap of 2,000");
    h.ws.take_churn(); // as if the reactor trimmed here
    h.machine.send(&mut h.ws, KEY, binary(&[0u8; 900]));
    h.settle();
    h.end_pass();
    assert!(h.closed, "over the cap of 2,000");
    // The last message queued (about 900 bytes) and the freed backlog (about 2,700).
    assert!(
        h.ws.churn() >= 2600,
        "{} bytes of churn after a backlog of about 2,700 bytes was freed",
        h.ws.churn()
    );
}

#[test]
fn a_connection_over_the_cap_is_not_read() {
    let mut h = Harness::with_config(&small_cap(), Transport::Tcp);
    h.appetite = 10;
    h.echo = false;
    h.machine.send(&mut h.ws, KEY, binary(&[0u8; 900]));
    h.machine.send(&mut h.ws, KEY, binary(&[0u8; 900]));
    h.settle();
    h.end_pass();
    assert!(
        !h.machine.over_cap(&h.ws),
        "1,790 bytes queued, under the cap of 2,000"
    );
    // A half-read packet held in the connection, on top of the backlog, passes the cap.
    let mut dst = BytesMut::new();
    switchboard_codec::packet::PacketEncoder::new()
        .encode_into(1, &[0u8; 999], &mut dst)
        .unwrap();
    h.read(&dst[..500]);
    assert!(h.machine.over_cap(&h.ws));
    // The rest of that packet and a whole one behind it arrive in one read.
    let mut rest = dst[500..].to_vec();
    rest.extend_from_slice(&dst);
    h.read(&rest);
    assert!(h.messages.is_empty(), "not decoded while over the cap");
    // The kernel takes the backlog: both packets are read, nothing was lost or reordered.
    h.appetite = usize::MAX;
    h.send();
    assert!(!h.machine.over_cap(&h.ws));
    h.ws.start_turn();
    h.decode();
    assert_eq!(h.messages.len(), 2);
    assert!(h.messages.iter().all(|m| m.payload()[..] == dst[..]));
    assert_eq!(h.machine.held_bytes(), 0);
}

#[test]
fn a_write_error_tells_the_handler_and_closes() {
    let mut h = Harness::new(Transport::Tcp);
    h.machine.send(&mut h.ws, KEY, binary(b"x"));
    h.machine.send_with(&mut h.ws, KEY, |_| {
        Err(io::ErrorKind::ConnectionReset.into())
    });
    h.settle();
    assert!(h.closed);
    assert_eq!(
        h.disconnects,
        [Disconnect::Io(io::ErrorKind::ConnectionReset)]
    );
}

#[test]
fn a_completion_driver_holds_owned_bytes_until_the_completion() {
    let mut h = Harness::open_ws(&config());
    h.echo = false;
    h.machine.send(&mut h.ws, KEY, binary(b"abcdef"));
    h.settle();
    let mut held = Vec::new();
    h.machine.transmit(&mut h.ws, KEY, 64, &mut held);
    h.ws.end_pass(); // the pass ends before the completion arrives
    let offered: Vec<u8> = held.concat();
    assert_eq!(&offered[2..], b"abcdef", "a frame header, then the payload");
    assert_eq!(
        h.ws.queued(),
        offered.len(),
        "bytes in flight count as queued"
    );
    // The kernel took 4 bytes: the rest is offered again, from where it stopped.
    h.machine.on_sent(&mut h.ws, KEY, Ok(4), &mut held);
    h.settle();
    assert_eq!(h.machine.backlog_bytes(), offered.len() - 4);
    held.clear();
    h.machine.transmit(&mut h.ws, KEY, 64, &mut held);
    assert_eq!(held.concat(), offered[4..]);
    h.machine
        .on_sent(&mut h.ws, KEY, Ok(offered.len() - 4), &mut held);
    h.settle();
    assert_eq!(h.machine.backlog_bytes(), 0);
    assert_eq!(h.ws.queued(), 0);
    assert!(h.machine.outgoing.is_empty());
}

#[test]
fn a_completion_error_closes_and_later_completions_are_ignored() {
    let mut h = Harness::new(Transport::Tcp);
    h.machine.send(&mut h.ws, KEY, binary(b"x"));
    let mut held = Vec::new();
    h.machine.transmit(&mut h.ws, KEY, 64, &mut held);
    h.machine.on_sent(
        &mut h.ws,
        KEY,
        Err(io::ErrorKind::BrokenPipe.into()),
        &mut held,
    );
    h.settle();
    assert!(h.closed);
    h.machine
        .on_sent(&mut h.ws, KEY, Ok(1), &mut vec![Bytes::from_static(b"x")]);
    h.settle(); // would panic on an event after Close
}

#[test]
fn a_closing_tcp_connection_sends_fin_once_everything_is_out() {
    let mut h = Harness::new(Transport::Tcp);
    h.appetite = 2;
    h.machine.send(&mut h.ws, KEY, binary(b"abcd"));
    h.machine.close(
        &mut h.ws,
        KEY,
        CloseCode::NORMAL,
        Disconnect::ClosedByServer(CloseCode::NORMAL),
    );
    h.settle();
    h.end_pass();
    assert!(!h.fin, "bytes still owed");
    h.send();
    assert!(h.fin);
    assert_eq!(h.take_wire(), b"abcd");
}
