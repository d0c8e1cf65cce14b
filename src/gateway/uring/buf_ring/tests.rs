//! The buffer ring driven by the kernel for real: loopback TCP pairs, multishot receives
//! (plain and bundles), a ring run dry, incremental buffers shared by several connections with
//! receives cancelled and sockets closed mid-buffer, growing, shrinking and page release.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;

use io_uring::{cqueue, opcode, types, IoUring};

use super::*;

fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (client, server)
}

fn ring() -> IoUring {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(64)
        .unwrap()
}

/// Arms a multishot receive on `fd` with user data `tag`; a bundle with `bundle`.
fn arm(ring: &mut IoUring, fd: i32, group: u16, tag: u64, bundle: bool) {
    let recv = match bundle {
        false => opcode::RecvMulti::new(types::Fd(fd), group).build(),
        true => opcode::RecvMultiBundle::new(types::Fd(fd), group).build(),
    };
    // SAFETY: the receive selects its buffer from the group; it holds no pointer of ours.
    unsafe { ring.submission().push(&recv.user_data(tag)).unwrap() };
}

/// Waits (at most 5 s) for completions and returns them.
fn reap(ring: &mut IoUring) -> Vec<cqueue::Entry> {
    let ts = types::Timespec::new().sec(5);
    let args = types::SubmitArgs::new().timespec(&ts);
    match ring.submitter().submit_with_args(1, &args) {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::ETIME) => {}
        Err(e) => panic!("io_uring_enter: {e}"),
    }
    let cqes: Vec<cqueue::Entry> = ring.completion().collect();
    assert!(!cqes.is_empty(), "no completion within 5 s");
    cqes
}

/// What one receive loop saw.
#[derive(Default)]
struct Received {
    bytes: Vec<u8>,
    /// How many times the ring ran dry (ENOBUFS).
    empty: usize,
    /// How many times the kernel ended the receive (ENOBUFS, or a bundle that emptied the
    /// ring: it ends with its bytes rather than with ENOBUFS).
    ended: usize,
    /// The most buffers one completion spanned.
    widest: usize,
}

/// Reads completions of one multishot receive until `want` bytes arrived, re-arming it when
/// the kernel ends it (ENOBUFS, or a full completion queue); with `grow`, an empty ring grows
/// as the driver grows it.
fn receive(
    ring: &mut IoUring,
    bufs: &mut BufRing,
    fd: i32,
    want: usize,
    grow: bool,
    bundle: bool,
) -> Received {
    let mut got = Received::default();
    arm(ring, fd, bufs.group(), 7, bundle);
    while got.bytes.len() < want {
        for cqe in reap(ring) {
            assert_eq!(cqe.user_data(), 7);
            let flags = cqe.flags();
            if cqe.result() == -libc::ENOBUFS {
                got.empty += 1;
                if grow {
                    bufs.grow();
                }
            } else if cqe.result() == 0 {
                // The peer closed: only after everything it sent.
                assert!(got.bytes.len() >= want, "end of stream before all bytes");
            } else {
                assert!(cqe.result() > 0, "receive failed: {}", cqe.result());
                let bid = cqueue::buffer_select(flags).expect("a buffer was selected");
                let filled = bufs.filled(bid, cqe.result() as usize);
                got.widest = got.widest.max(filled.buffers());
                filled.slices().for_each(|s| got.bytes.extend_from_slice(s));
                if filled.emptied_ring() && !cqueue::more(flags) {
                    drop(filled);
                    got.empty += 1;
                    if grow {
                        bufs.grow();
                    }
                }
            }
            if !cqueue::more(flags) && got.bytes.len() < want {
                got.ended += 1;
                arm(ring, fd, bufs.group(), 7, bundle);
            }
        }
        bufs.end_batch();
    }
    got
}

/// Bytes that show where they were: a mix-up of two positions shows.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
        .collect()
}

#[test]
fn a_receive_lands_in_a_provided_buffer_that_comes_back_after_use() {
    let mut ring = ring();
    let mut bufs = BufRing::register(&ring.submitter(), 1, 4, 64, false).unwrap();
    let (mut client, server) = pair();
    // More rounds than buffers: each buffer must come back for the next round.
    for round in 0..10u8 {
        let message = [round; 40];
        client.write_all(&message).unwrap();
        let got = receive(&mut ring, &mut bufs, server.as_raw_fd(), 40, false, false);
        assert_eq!((got.bytes.as_slice(), got.empty), (&message[..], 0));
    }
    bufs.unregister(&ring.submitter()).unwrap();
}

#[test]
fn an_empty_ring_slows_the_receive_and_loses_no_byte() {
    let mut ring = ring();
    // Two 16-byte buffers for 1,000 bytes: the receive runs dry again and again.
    let mut bufs = BufRing::register(&ring.submitter(), 2, 2, 16, false).unwrap();
    let (mut client, server) = pair();
    let sent = pattern(1000, 1);
    client.write_all(&sent).unwrap();
    let got = receive(&mut ring, &mut bufs, server.as_raw_fd(), 1000, false, false);
    assert_eq!(got.bytes, sent);
    assert!(
        got.empty > 0,
        "the ring never ran dry: the test proves nothing"
    );
    bufs.unregister(&ring.submitter()).unwrap();
}

#[test]
fn incremental_buffers_serve_many_receives_each() {
    let mut ring = ring();
    let mut bufs = BufRing::register(&ring.submitter(), 3, 2, 4096, true).unwrap();
    assert!(
        bufs.is_incremental(),
        "Linux 6.12+ has incremental consumption"
    );
    let (mut client, server) = pair();
    let mut all = Vec::new();
    for round in 0..50u8 {
        let message = [round; 10];
        client.write_all(&message).unwrap();
        all.extend(receive(&mut ring, &mut bufs, server.as_raw_fd(), 10, false, false).bytes);
    }
    // 500 bytes in 50 receives from two 4 KiB buffers: without incremental consumption
    // the third round would already need the first buffer back.
    let expected: Vec<u8> = (0..50u8).flat_map(|r| [r; 10]).collect();
    assert_eq!(all, expected);
    assert_eq!(
        bufs.consumed.iter().map(|&c| c as usize).sum::<usize>(),
        500
    );
    bufs.unregister(&ring.submitter()).unwrap();
}

/// One connection of the shared-ring test: its sockets, what was sent, what came.
struct Stream {
    client: Option<TcpStream>,
    server: Option<TcpStream>,
    sent: Vec<u8>,
    got: Vec<u8>,
    armed: bool,
    /// Its receive was cancelled and it is not to be armed again (closed mid-buffer).
    closed: bool,
}

/// Incremental buffers are shared: one buffer holds, one after the other, the bytes of
/// whichever connections received while it was at the ring's head. This drives that the way
/// the gateway does under backpressure: several connections receiving into a small ring of
/// small buffers (so every buffer is partly used by one connection and finished by another,
/// and the ring runs dry), receives cancelled while a buffer is half used and armed again
/// later, a connection closed for good mid-buffer, the ring grown while a buffer is partly
/// used, and asked to shrink. Every byte must land in its own stream, in order, and every
/// completion must start in the buffer at the ring's head (`filled` checks that).
fn shared_ring_under_cancels_and_closes(incremental: bool, bundle: bool) {
    const CONNS: usize = 4;
    let mut ring = ring();
    let mut bufs =
        BufRing::register_growing(&ring.submitter(), 8, 16, 2, 100, incremental).unwrap();
    assert_eq!(bufs.is_incremental(), incremental);
    let mut streams: Vec<Stream> = (0..CONNS)
        .map(|_| {
            let (client, server) = pair();
            Stream {
                client: Some(client),
                server: Some(server),
                sent: Vec::new(),
                got: Vec::new(),
                armed: false,
                closed: false,
            }
        })
        .collect();
    let mut rng = 0x9e37_79b9_u32;
    let mut next = move |n: u32| {
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        rng % n
    };
    let (mut empty, mut partial_cancels) = (0, 0);
    for round in 0..300u32 {
        // Each live connection sends 1..=250 bytes (up to two and a half buffers).
        for (i, s) in streams.iter_mut().enumerate() {
            if s.closed {
                continue;
            }
            let chunk = pattern(1 + next(250) as usize, round * 31 + i as u32);
            s.client.as_mut().unwrap().write_all(&chunk).unwrap();
            s.sent.extend_from_slice(&chunk);
            if !s.armed {
                arm(
                    &mut ring,
                    s.server.as_ref().unwrap().as_raw_fd(),
                    8,
                    i as u64,
                    bundle,
                );
                s.armed = true;
            }
        }
        // Reap until every live stream has everything it was sent, with a cancel in between.
        let victim = next(CONNS as u32) as usize;
        let mut cancelled = false;
        loop {
            let done = streams
                .iter()
                .all(|s| s.closed || s.got.len() == s.sent.len());
            if done {
                break;
            }
            for cqe in reap(&mut ring) {
                if take(&mut bufs, &mut streams, &cqe, bundle) {
                    empty += 1;
                    if next(2) == 0 {
                        bufs.grow();
                    }
                }
            }
            bufs.end_batch();
            assert_eq!(bufs.head_mismatch(), None);
            // Cancel one receive in the middle of the round, while buffers are partly used.
            if !cancelled && streams[victim].armed {
                cancelled = true;
                if bufs
                    .queue
                    .front()
                    .is_some_and(|&b| bufs.consumed[usize::from(b)] > 0)
                {
                    partial_cancels += 1;
                }
                let cancel = opcode::AsyncCancel::new(victim as u64)
                    .build()
                    .user_data(u64::MAX);
                // SAFETY: a cancel holds no pointer.
                unsafe { ring.submission().push(&cancel).unwrap() };
            }
            // Re-arm what ended (ENOBUFS, a cancel, the completion queue).
            for (i, s) in streams.iter_mut().enumerate() {
                if !s.armed && !s.closed && s.got.len() < s.sent.len() {
                    arm(
                        &mut ring,
                        s.server.as_ref().unwrap().as_raw_fd(),
                        8,
                        i as u64,
                        bundle,
                    );
                    s.armed = true;
                }
            }
        }
        // Midway, connection 0 is closed for good: its receive cancelled while its last bytes
        // sat in a partly used buffer, its sockets dropped. The others go on.
        if round == 150 {
            let s = &mut streams[0];
            if s.armed {
                let cancel = opcode::AsyncCancel::new(0).build().user_data(u64::MAX);
                // SAFETY: a cancel holds no pointer.
                unsafe { ring.submission().push(&cancel).unwrap() };
                while streams[0].armed {
                    for cqe in reap(&mut ring) {
                        take(&mut bufs, &mut streams, &cqe, bundle);
                    }
                }
            }
            let s = &mut streams[0];
            s.closed = true;
            s.client = None;
            s.server = None;
        }
        if round == 200 {
            bufs.shrink_to(2);
        }
    }
    for (i, s) in streams.iter().enumerate() {
        assert_eq!(s.got.len(), s.sent.len(), "stream {i}: bytes missing");
        assert!(s.got == s.sent, "stream {i}: bytes out of place");
    }
    assert!(empty > 0, "the ring never ran dry: the test proves little");
    if incremental {
        assert!(partial_cancels > 0, "no cancel hit a partly used buffer");
    }
    bufs.unregister(&ring.submitter()).unwrap();
}

/// Carries out one completion of the shared-ring test; returns whether the ring was empty (the
/// receive ended without bytes, or a bundle ended having emptied it).
fn take(bufs: &mut BufRing, streams: &mut [Stream], cqe: &cqueue::Entry, bundle: bool) -> bool {
    if cqe.user_data() == u64::MAX {
        return false; // a cancel's own completion
    }
    let i = cqe.user_data() as usize;
    let flags = cqe.flags();
    if !cqueue::more(flags) {
        streams[i].armed = false;
    }
    match cqe.result() {
        n if n > 0 => {
            let bid = cqueue::buffer_select(flags).expect("a buffer was selected");
            let incremental = bufs.is_incremental();
            let filled = bufs.filled(bid, n as usize);
            if !bundle && incremental {
                // Without a bundle the kernel's flag must agree with the walk.
                assert_eq!(cqueue::buffer_more(flags), bufs_partly_used(&filled));
            }
            let s = &mut streams[i];
            filled.slices().for_each(|b| s.got.extend_from_slice(b));
            !cqueue::more(flags) && filled.emptied_ring()
        }
        n if n == -libc::ENOBUFS => true,
        n => {
            assert_eq!(n, -libc::ECANCELED, "receive failed");
            false
        }
    }
}

/// Whether the last piece of `filled` left its buffer partly used (incremental only).
fn bufs_partly_used(filled: &Filled<'_>) -> bool {
    filled.ring.pieces.last().is_some_and(|p| !p.used_up)
}

#[test]
fn incremental_buffers_shared_by_connections_keep_every_stream_under_cancels_and_closes() {
    shared_ring_under_cancels_and_closes(true, false);
}

#[test]
fn whole_buffers_shared_by_connections_keep_every_stream_under_cancels_and_closes() {
    shared_ring_under_cancels_and_closes(false, false);
}

#[test]
fn incremental_bundles_shared_by_connections_keep_every_stream_under_cancels_and_closes() {
    shared_ring_under_cancels_and_closes(true, true);
}

#[test]
fn whole_bundles_shared_by_connections_keep_every_stream_under_cancels_and_closes() {
    shared_ring_under_cancels_and_closes(false, true);
}

/// 1 MiB messages through a ring of 8 buffers of 4 KiB: far more than the ring holds, so the
/// receive runs dry again and again; a writer thread keeps the socket full.
fn large_messages(incremental: bool, bundle: bool) -> Received {
    let mut ring = ring();
    let mut bufs = BufRing::register(&ring.submitter(), 9, 8, 4096, incremental).unwrap();
    let (mut client, server) = pair();
    let sent: Vec<u8> = (0..4).flat_map(|m| pattern(1 << 20, m)).collect();
    let writer = {
        let sent = sent.clone();
        std::thread::spawn(move || client.write_all(&sent).unwrap())
    };
    let got = receive(
        &mut ring,
        &mut bufs,
        server.as_raw_fd(),
        sent.len(),
        false,
        bundle,
    );
    writer.join().unwrap();
    assert_eq!(got.bytes.len(), sent.len());
    assert!(got.bytes == sent, "bytes out of place");
    assert!(
        got.ended > 0,
        "the ring never ran dry: the test proves little"
    );
    bufs.unregister(&ring.submitter()).unwrap();
    got
}

#[test]
fn bundles_carry_large_messages_across_buffers_with_a_tiny_ring() {
    for incremental in [false, true] {
        let got = large_messages(incremental, true);
        assert!(
            got.widest > 1,
            "no bundle spanned two buffers (incremental: {incremental})"
        );
    }
}

#[test]
fn plain_receives_carry_large_messages_a_buffer_at_a_time_with_a_tiny_ring() {
    for incremental in [false, true] {
        let got = large_messages(incremental, false);
        assert!(
            got.widest <= 2,
            "a plain receive spanned {} buffers",
            got.widest
        );
    }
}

#[test]
fn a_ring_that_runs_dry_grows_and_loses_no_byte() {
    let mut ring = ring();
    let mut bufs = BufRing::register_growing(&ring.submitter(), 5, 8, 2, 16, false).unwrap();
    assert_eq!(bufs.in_service(), 2);
    let (mut client, server) = pair();
    let sent = pattern(1000, 5);
    client.write_all(&sent).unwrap();
    let got = receive(&mut ring, &mut bufs, server.as_raw_fd(), 1000, true, false);
    assert_eq!(got.bytes, sent);
    assert!(
        got.empty > 0,
        "the ring never ran dry: the test proves nothing"
    );
    // 2 -> 4 -> 8, and no further: the ring holds 8.
    assert_eq!(bufs.in_service(), 8);
    assert_eq!(bufs.grow(), 0);
    bufs.unregister(&ring.submitter()).unwrap();
}

#[test]
fn a_ring_shrinks_back_after_a_burst_and_grows_again() {
    let mut ring = ring();
    // 64 buffers of one page each, 2 in service at first.
    let mut bufs = BufRing::register_growing(&ring.submitter(), 10, 64, 2, 4096, false).unwrap();
    let (mut client, server) = pair();
    let fd = server.as_raw_fd();
    // A burst of 1 MiB grows the ring to all 64.
    let burst = pattern(1 << 20, 10);
    let writer = {
        let burst = burst.clone();
        let mut client = client.try_clone().unwrap();
        std::thread::spawn(move || client.write_all(&burst).unwrap())
    };
    let got = receive(&mut ring, &mut bufs, fd, burst.len(), true, false);
    writer.join().unwrap();
    assert!(got.bytes == burst);
    assert_eq!(bufs.in_service(), 64);
    assert!(bufs.take_peak() > 4, "the burst used few buffers per batch");

    // Quiet traffic after the shrink: buffers coming back are parked until 4 are in service.
    bufs.shrink_to(4);
    for round in 0..80u32 {
        let message = pattern(100, round);
        client.write_all(&message).unwrap();
        let got = receive(&mut ring, &mut bufs, fd, 100, true, false);
        assert_eq!(got.bytes, message);
    }
    assert_eq!(bufs.in_service(), 4);
    // Released, then 100 small receives: only the buffers in service are touched again.
    bufs.release_pages().unwrap();
    for round in 0..100u32 {
        let message = pattern(100, 1000 + round);
        client.write_all(&message).unwrap();
        assert_eq!(
            receive(&mut ring, &mut bufs, fd, 100, true, false).bytes,
            message
        );
    }
    let resident = bufs.buffers.resident_pages();
    assert!(
        resident <= 4,
        "{resident} pages resident from 4 buffers in service"
    );

    // The next burst grows it again (parked buffers first) and loses nothing.
    let burst = pattern(256 << 10, 11);
    let writer = {
        let burst = burst.clone();
        std::thread::spawn(move || client.write_all(&burst).unwrap())
    };
    let got = receive(&mut ring, &mut bufs, fd, burst.len(), true, false);
    writer.join().unwrap();
    assert!(got.bytes == burst);
    assert!(bufs.in_service() > 4, "the ring did not grow again");
    assert_eq!(
        bufs.published(),
        64,
        "growing again took never-used buffers"
    );
    bufs.unregister(&ring.submitter()).unwrap();
}

/// Resident pages of the buffers after `rounds` small receives, one at a time, from a
/// ring of 64 buffers of 16 KiB with `initial` of them put in at first.
fn resident_after_small_receives(initial: u16, rounds: u8) -> usize {
    let mut ring = ring();
    let mut bufs =
        BufRing::register_growing(&ring.submitter(), 6, 64, initial, 16 << 10, false).unwrap();
    let (mut client, server) = pair();
    for round in 0..rounds {
        let message = [round; 100];
        client.write_all(&message).unwrap();
        let got = receive(&mut ring, &mut bufs, server.as_raw_fd(), 100, true, false);
        assert_eq!(got.bytes, message);
    }
    let resident = bufs.buffers.resident_pages();
    bufs.unregister(&ring.submitter()).unwrap();
    resident
}

#[test]
fn a_quiet_ring_touches_only_the_buffers_it_put_in() {
    // 200 receives walk a full ring of 64 buffers three times over: each buffer's first
    // page is written. From a ring of 4 that never ran dry, only those 4 pages are.
    let full = resident_after_small_receives(64, 200);
    let growing = resident_after_small_receives(4, 200);
    assert!(full >= 64, "a full ring touched only {full} pages");
    assert!(growing <= 4, "a ring of 4 buffers touched {growing} pages");
}

fn released_pages_leave_the_ring_resident_in_nothing_and_working(incremental: bool) {
    let mut ring = ring();
    let mut bufs = BufRing::register(&ring.submitter(), 7, 64, 16 << 10, incremental).unwrap();
    let (mut client, server) = pair();
    let mut all = (Vec::new(), Vec::new());
    let mut round_trip = |bufs: &mut BufRing, round: u32| {
        // 5,000 bytes a round: incremental buffers are walked through too.
        let message = pattern(5000, round);
        client.write_all(&message).unwrap();
        let got = receive(&mut ring, bufs, server.as_raw_fd(), 5000, false, false);
        all.0.extend(message);
        all.1.extend(got.bytes);
    };
    for round in 0..250 {
        round_trip(&mut bufs, round);
    }
    assert!(bufs.used_since_release());
    assert!(bufs.buffers.resident_pages() >= 64);
    // With incremental buffers one is partly used now: its unread rest is still to come.
    bufs.release_pages().unwrap();
    assert_eq!(bufs.buffers.resident_pages(), 0);
    assert!(!bufs.used_since_release());
    // The ring still works: each buffer faults in again as the kernel fills it.
    for round in 250..500 {
        round_trip(&mut bufs, round);
    }
    assert!(all.0 == all.1, "bytes lost or out of place");
    assert!(bufs.buffers.resident_pages() >= 64);
    bufs.unregister(&ring.submitter()).unwrap();
}

#[test]
fn released_whole_buffers_leave_nothing_resident_and_the_ring_working() {
    released_pages_leave_the_ring_resident_in_nothing_and_working(false);
}

#[test]
fn released_incremental_buffers_leave_nothing_resident_and_the_ring_working() {
    released_pages_leave_the_ring_resident_in_nothing_and_working(true);
}

#[test]
fn odd_sizes_are_refused() {
    let ring = ring();
    let err = BufRing::register(&ring.submitter(), 4, 3, 64, false).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn a_completion_left_unaccounted_garbles_the_next_one_and_the_head_check_says_so() {
    // How an incremental stream gets garbled: a completion whose bytes nobody takes through
    // `filled` (say, for a connection already gone) leaves `consumed` behind the kernel, and
    // the next completion in the same buffer is read from where the skipped one started.
    let mut ring = ring();
    let mut bufs = BufRing::register(&ring.submitter(), 11, 2, 4096, true).unwrap();
    let (mut client, server) = pair();
    let fd = server.as_raw_fd();
    arm(&mut ring, fd, 11, 7, false);
    client.write_all(b"skipped!").unwrap();
    let mut skipped = Vec::new();
    while skipped.is_empty() {
        skipped = reap(&mut ring);
    }
    assert_eq!(skipped[0].result(), 8);
    assert!(cqueue::buffer_more(skipped[0].flags()));
    // Not accounted: the kernel's head entry is 8 bytes ahead of ours.
    assert!(bufs.head_mismatch().is_some());
    client.write_all(b"next one").unwrap();
    let cqe = reap(&mut ring).remove(0);
    let bid = cqueue::buffer_select(cqe.flags()).unwrap();
    let filled = bufs.filled(bid, cqe.result() as usize);
    let read: Vec<u8> = filled.slices().flatten().copied().collect();
    assert_eq!(
        read, b"skipped!",
        "the next completion reads the skipped bytes"
    );
    drop(filled);
    bufs.unregister(&ring.submitter()).unwrap();
}
